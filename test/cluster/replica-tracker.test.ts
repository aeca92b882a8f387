import { describe, expect, it } from 'vitest';
import type { PartitionState } from '../../src/cluster/controller-logic.js';
import { ReplicaTracker, type ReplicaTrackerOptions } from '../../src/cluster/replica-tracker.js';
import { ManualClock } from '../../src/lib/clock.js';

const lagMs = 1000;

function setup(overrides: Partial<ReplicaTrackerOptions> = {}, state: Partial<PartitionState> = {}): { tracker: ReplicaTracker; clock: ManualClock } {
  const clock = new ManualClock(10_000);
  const full: PartitionState = { replicas: [1, 2, 3], leader: 1, leaderEpoch: 7, partitionEpoch: 3, isr: [1, 2, 3], version: 40, ...state };
  const tracker = new ReplicaTracker({
    clock,
    leaderId: 1,
    state: full,
    logEndOffset: 10n,
    fsyncedOffset: 10n,
    highWatermark: 4n,
    minInSyncReplicas: 2,
    replicaLagMaxMs: lagMs,
    ...overrides,
  });
  return { tracker, clock };
}

const report = (logEndOffset: number, fsyncedOffset = logEndOffset) => ({ logEndOffset: BigInt(logEndOffset), fsyncedOffset: BigInt(fsyncedOffset) });
const view = (tracker: ReplicaTracker, id: number) => tracker.followerViews().find((f) => f.brokerId === id)!;

describe('ReplicaTracker: caught-up times', () => {
  it('uses Kafka\'s definition: caught up as of this fetch, or as of the previous one', () => {
    const { tracker, clock } = setup();
    expect(view(tracker, 2).lastCaughtUpTimeMs).toBe(10_000); // ISR members start at the leadership's start
    clock.set(11_000);
    tracker.followerFetched(2, report(5)); // behind the leader's 10
    expect(view(tracker, 2).lastCaughtUpTimeMs).toBe(10_000);
    tracker.leaderAppended(20n);
    clock.set(12_000);
    tracker.followerFetched(2, report(10)); // reached what the leader had at the previous fetch
    expect(view(tracker, 2).lastCaughtUpTimeMs).toBe(11_000);
    clock.set(13_000);
    tracker.followerFetched(2, report(20)); // reached the leader's log end now
    expect(view(tracker, 2).lastCaughtUpTimeMs).toBe(13_000);
  });

  it('gives the fsynced offset a few fetches to catch up (group commit) before it counts as lagging', () => {
    const { tracker, clock } = setup({ highWatermark: 0n });
    // A follower that reports, in each fetch, the data of the previous response as appended and
    // the data of the one before as fsynced, while the leader appends 10 between fetches.
    const fetches = [
      { atMs: 10_100, leaderEnd: 20n, logEnd: 10, fsynced: 0 },
      { atMs: 10_200, leaderEnd: 30n, logEnd: 20, fsynced: 10 },
      { atMs: 10_300, leaderEnd: 40n, logEnd: 30, fsynced: 20 },
    ];
    for (const fetch of fetches) {
      clock.set(fetch.atMs);
      tracker.leaderAppended(fetch.leaderEnd);
      tracker.followerFetched(2, report(fetch.logEnd, fetch.fsynced));
    }
    // Log end 30 is what the leader had at the previous fetch (10_200); fsynced 20, at the one before.
    expect(view(tracker, 2).lastCaughtUpTimeMs).toBe(10_200);
    expect(view(tracker, 2).lastDurableTimeMs).toBe(10_100);
  });
});

describe('ReplicaTracker: high watermark', () => {
  it('is the least fsynced offset over the ISR, leader included, once every member has reported', () => {
    const { tracker } = setup();
    tracker.leaderAppended(30n);
    tracker.leaderFsynced(30n);
    tracker.followerFetched(2, report(30, 25));
    expect(tracker.highWatermark).toBe(4n); // broker 3 has not reported yet
    tracker.followerFetched(3, report(30, 20));
    expect(tracker.highWatermark).toBe(20n);
    tracker.followerFetched(3, report(30, 30));
    expect(tracker.highWatermark).toBe(25n);
    tracker.leaderAppended(40n);
    tracker.followerFetched(2, report(40, 40));
    expect(tracker.highWatermark).toBe(30n); // the leader's own fsync bounds it
  });

  it('never goes back, and does not move while the ISR is below minInSyncReplicas', () => {
    const { tracker } = setup({ minInSyncReplicas: 3 }, { isr: [1, 2] });
    tracker.followerFetched(2, report(10));
    expect(tracker.highWatermark).toBe(4n);
    const { tracker: other } = setup({}, { isr: [1, 2] });
    other.followerFetched(2, report(10, 8));
    expect(other.highWatermark).toBe(8n);
    other.followerFetched(2, report(10, 8));
    expect(other.highWatermark).toBe(8n);
  });

  it('waits for a caught-up follower about to join the ISR', () => {
    const { tracker } = setup({}, { isr: [1, 2] });
    tracker.followerFetched(3, report(10)); // caught up with the leader's log end: by time, in sync
    tracker.leaderAppended(20n);
    tracker.leaderFsynced(20n);
    tracker.followerFetched(2, report(20));
    expect(tracker.highWatermark).toBe(10n);
    tracker.followerFetched(3, report(20));
    expect(tracker.highWatermark).toBe(20n);
  });
});

describe('ReplicaTracker: acks all', () => {
  it('refuses to append below minInSyncReplicas, waits for the HW, acknowledges at it', () => {
    const { tracker } = setup({}, { isr: [1] });
    expect(() => tracker.checkAcksAllAppend()).toThrow(/NOT_ENOUGH_REPLICAS: 1 in-sync replica/);
    const { tracker: healthy } = setup({}, { isr: [1, 2] });
    healthy.checkAcksAllAppend();
    healthy.leaderAppended(15n);
    healthy.leaderFsynced(15n);
    expect(healthy.acksAllStatus(15n)).toEqual({ status: 'wait' });
    healthy.followerFetched(2, report(15, 12));
    expect(healthy.acksAllReady(12n)).toBe(true);
    expect(healthy.acksAllReady(15n)).toBe(false);
  });

  it('fails with NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below the minimum after the HW passed', () => {
    const { tracker } = setup({}, { isr: [1, 2] });
    tracker.followerFetched(2, report(10));
    tracker.applyState({ replicas: [1, 2, 3], leader: 1, leaderEpoch: 7, partitionEpoch: 4, isr: [1], version: 41 });
    const status = tracker.acksAllStatus(10n);
    expect(status.status === 'fail' && status.error.code).toBe('NOT_ENOUGH_REPLICAS_AFTER_APPEND');
  });

  it('acknowledges nothing once a newer leader epoch exists', () => {
    const { tracker } = setup({}, { isr: [1, 2] });
    tracker.applyState({ replicas: [1, 2, 3], leader: 2, leaderEpoch: 8, partitionEpoch: 4, isr: [2], version: 41 });
    expect(tracker.acksAllStatus(1n)).toMatchObject({ status: 'fail', error: { code: 'NOT_LEADER' } });
    expect(() => tracker.checkAcksAllAppend()).toThrow(/NOT_LEADER/);
    expect(tracker.proposeIsrChange()).toBeUndefined();
  });
});

describe('ReplicaTracker: ISR changes', () => {
  it('shrinks only after replicaLagMaxMs behind, and one change at a time', () => {
    const { tracker, clock } = setup();
    tracker.leaderAppended(20n);
    tracker.followerFetched(2, report(20));
    tracker.followerFetched(3, report(10));
    clock.advance(lagMs);
    expect(tracker.proposeIsrChange()).toBeUndefined();
    clock.advance(1);
    expect(tracker.proposeIsrChange()).toEqual({ isr: [1, 2], removed: [3], added: [], version: 40, leaderEpoch: 7 });
    expect(tracker.proposeIsrChange()).toBeUndefined();
    expect(tracker.maximalIsr).toEqual([1, 2, 3]); // the removal counts once committed
    tracker.applyState({ replicas: [1, 2, 3], leader: 1, leaderEpoch: 7, partitionEpoch: 4, isr: [1, 2], version: 41 });
    expect(tracker.pendingChange).toBeUndefined();
    expect(tracker.isr).toEqual([1, 2]);
    // A change that was not written (nothing to write) is settled explicitly.
    tracker.followerFetched(3, report(20));
    expect(tracker.proposeIsrChange()).toMatchObject({ added: [3], version: 41 });
    tracker.isrChangeSettled({ replicas: [1, 2, 3], leader: 1, leaderEpoch: 7, partitionEpoch: 4, isr: [1, 2], version: 41 });
    expect(tracker.pendingChange).toBeUndefined();
    expect(tracker.isr).toEqual([1, 2]);
  });

  it('expands once a follower has fsynced the HW and this epoch\'s start, and only an eligible one', () => {
    const { tracker } = setup({ highWatermark: 2n }, { isr: [1, 2] });
    tracker.followerFetched(2, report(10));
    tracker.followerFetched(3, report(8, 8));
    expect(tracker.proposeIsrChange()).toBeUndefined(); // 8 < epoch start 10
    tracker.leaderAppended(20n);
    tracker.leaderFsynced(20n);
    tracker.followerFetched(2, report(20));
    expect(tracker.highWatermark).toBe(20n);
    tracker.followerFetched(3, report(20, 15));
    expect(tracker.proposeIsrChange()).toBeUndefined(); // holds the HW, but has not fsynced it
    tracker.followerFetched(3, report(20, 20));
    expect(tracker.proposeIsrChange((id) => id !== 3)).toBeUndefined();
    expect(tracker.proposeIsrChange()).toMatchObject({ isr: [1, 2, 3], added: [3] });
    expect(tracker.maximalIsr).toEqual([1, 2, 3]);
  });

  it('removes at once a member that reports less fsynced than the HW (it lost acknowledged data)', () => {
    const { tracker } = setup();
    tracker.followerFetched(2, report(10));
    tracker.followerFetched(3, report(10));
    expect(tracker.highWatermark).toBe(10n);
    tracker.followerFetched(3, report(6, 6));
    expect(tracker.proposeIsrChange()).toMatchObject({ removed: [3] });
  });

  it('rejects reports a follower cannot make', () => {
    const { tracker } = setup();
    expect(() => tracker.followerFetched(2, report(11))).toThrow(/OFFSET_OUT_OF_RANGE/);
    expect(() => tracker.followerFetched(2, report(5, 6))).toThrow(/INVALID_ARGUMENT/);
    expect(() => tracker.followerFetched(9, report(5))).toThrow(/not a follower/);
  });
});
