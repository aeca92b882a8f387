/**
 * Model test of the leader's tracker, with a fake clock and the truth kept beside it: the
 * leader's log end and fsynced offsets, and for each follower what it really holds and has
 * fsynced (a crash loses what was not fsynced). Followers fetch (reporting what they hold),
 * fsync, crash, come back, stall; the leader appends (acks all batches go through
 * checkAcksAllAppend) and fsyncs; the tracker's ISR proposals are written to a fake etcd with
 * changeIsr and a CAS (isrChangeSettled after each attempt), while the controller removes dead
 * followers on its own; the tracker sees etcd only when the model delivers a state (after its
 * own CAS, or a watch).
 *
 * After every step:
 *   - the HW never goes down and is never above the leader's fsynced offset, nor above what any
 *     member of the ISR (the tracker's, and etcd's) really has fsynced;
 *   - a batch acknowledged with acks all is fsynced on every member of etcd's ISR, and on at
 *     least minInSyncReplicas replicas; none is appended while the ISR is below that minimum;
 *   - a follower is proposed for removal only if, for replicaLagMaxMs, it never reported holding
 *     and having fsynced the leader's whole log; one silent for longer, while the leader has more,
 *     is proposed;
 *   - a follower is proposed for addition only if it reported, alive, fsynced at least the HW and
 *     the start of the leader's epoch.
 * At the end, once every follower is alive and fetching, the ISR is whole again and every
 * appended batch is acknowledged.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { changeIsr, type PartitionState } from '../../src/cluster/controller-logic.js';
import { ReplicaTracker, type IsrProposal } from '../../src/cluster/replica-tracker.js';
import { ManualClock } from '../../src/lib/clock.js';
import { RillError } from '../../src/lib/errors.js';

const lagMs = 1000;
const leaderId = 0;
const followerIds = [1, 2, 3];

interface TrueFollower {
  logEnd: bigint;
  fsynced: bigint;
  alive: boolean;
  /** Last time it reported holding and having fsynced the leader's whole log. */
  lastWholeReportMs: number;
  lastReportMs: number;
}

interface Batch {
  end: bigint;
  outcome: 'pending' | 'acknowledged' | 'failed';
}

class Model {
  readonly clock = new ManualClock(50_000);
  readonly tracker: ReplicaTracker;
  readonly followers = new Map<number, TrueFollower>();
  etcd: PartitionState;
  leaderLogEnd = 100n;
  leaderFsynced = 100n;
  readonly batches: Batch[] = [];
  inFlight: IsrProposal | undefined;
  lastHighWatermark: bigint;

  constructor(
    readonly minInSyncReplicas: number,
    initialIsr: number[],
  ) {
    const replicas = [leaderId, ...followerIds];
    this.etcd = { replicas, leader: leaderId, leaderEpoch: 3, partitionEpoch: 5, isr: [leaderId, ...initialIsr], version: 9 };
    for (const id of followerIds) {
      // ISR members hold the whole log; the others are behind (as after a restart).
      const held = initialIsr.includes(id) ? 100n : 60n;
      this.followers.set(id, { logEnd: held, fsynced: held, alive: true, lastWholeReportMs: -Infinity, lastReportMs: this.clock.nowMs() });
    }
    this.tracker = new ReplicaTracker({
      clock: this.clock,
      leaderId,
      state: this.etcd,
      logEndOffset: this.leaderLogEnd,
      fsyncedOffset: this.leaderFsynced,
      highWatermark: 90n,
      minInSyncReplicas,
      replicaLagMaxMs: lagMs,
      eligible: (id) => this.follower(id).alive,
    });
    this.lastHighWatermark = this.tracker.highWatermark;
    for (const id of initialIsr) this.followers.get(id)!.lastWholeReportMs = this.clock.nowMs();
  }

  follower(id: number): TrueFollower {
    return this.followers.get(id)!;
  }

  produce(records: number): void {
    try {
      this.tracker.checkAcksAllAppend();
    } catch (error) {
      expect((error as RillError).code).toBe('NOT_ENOUGH_REPLICAS');
      expect(this.tracker.isr.length).toBeLessThan(this.minInSyncReplicas);
      return;
    }
    expect(this.tracker.isr.length).toBeGreaterThanOrEqual(this.minInSyncReplicas);
    this.leaderLogEnd += BigInt(records);
    this.tracker.leaderAppended(this.leaderLogEnd);
    this.batches.push({ end: this.leaderLogEnd, outcome: 'pending' });
  }

  leaderFsync(): void {
    this.leaderFsynced = this.leaderLogEnd;
    this.tracker.leaderFsynced(this.leaderFsynced);
  }

  /** The follower reports what it holds, then receives up to `records` more. */
  fetch(id: number, records: number): void {
    const follower = this.follower(id);
    if (!follower.alive) return;
    this.tracker.followerFetched(id, { logEndOffset: follower.logEnd, fsyncedOffset: follower.fsynced });
    follower.lastReportMs = this.clock.nowMs();
    if (follower.logEnd === this.leaderLogEnd && follower.fsynced === this.leaderLogEnd) follower.lastWholeReportMs = this.clock.nowMs();
    const received = follower.logEnd + BigInt(records);
    follower.logEnd = received < this.leaderLogEnd ? received : this.leaderLogEnd;
  }

  fsync(id: number): void {
    const follower = this.follower(id);
    if (follower.alive) follower.fsynced = follower.logEnd;
  }

  crash(id: number): void {
    const follower = this.follower(id);
    follower.alive = false;
    follower.logEnd = follower.fsynced;
  }

  /** The controller removes dead followers from the ISR in etcd (the tracker learns on a watch). */
  controllerRemovesDead(): void {
    const isr = this.etcd.isr.filter((id) => id === leaderId || this.follower(id).alive);
    if (isr.length === this.etcd.isr.length) return;
    this.etcd = { ...this.etcd, isr, partitionEpoch: this.etcd.partitionEpoch + 1, version: this.etcd.version + 1 };
  }

  propose(): void {
    const hwBefore = this.tracker.highWatermark;
    const nowMs = this.clock.nowMs();
    const silent = this.tracker.isr.filter((id) => {
      const follower = this.followers.get(id);
      return follower !== undefined && nowMs - follower.lastReportMs > lagMs && follower.logEnd < this.leaderLogEnd;
    });
    const hadPending = this.tracker.pendingChange !== undefined;
    const proposal = this.tracker.proposeIsrChange();
    if (!hadPending && silent.length > 0) {
      expect(proposal?.removed, `silent followers ${silent} kept in the ISR`).toEqual(expect.arrayContaining(silent));
    }
    if (proposal === undefined) return;
    for (const id of proposal.removed) {
      expect(nowMs - this.follower(id).lastWholeReportMs, `follower ${id} removed within the lag time`).toBeGreaterThan(lagMs);
    }
    for (const id of proposal.added) {
      const view = this.tracker.followerViews().find((f) => f.brokerId === id)!;
      expect(this.follower(id).alive).toBe(true);
      expect(view.fsyncedOffset! >= hwBefore && view.fsyncedOffset! >= this.tracker.epochStartOffset).toBe(true);
    }
    this.inFlight = proposal;
  }

  /** The adapter writes the proposal (CAS on its version) and hands the tracker what etcd holds. */
  resolve(): void {
    const proposal = this.inFlight;
    if (proposal === undefined) return;
    this.inFlight = undefined;
    const alive = new Set([leaderId, ...followerIds.filter((id) => this.follower(id).alive)]);
    if (this.etcd.version === proposal.version) {
      const next = changeIsr(this.etcd, { leaderId, leaderEpoch: proposal.leaderEpoch, isr: proposal.isr }, alive);
      if (next !== undefined) this.etcd = { ...next, version: this.etcd.version + 1 };
    }
    this.tracker.isrChangeSettled(this.etcd);
  }

  settleAcks(): void {
    for (const batch of this.batches) {
      if (batch.outcome !== 'pending') continue;
      const status = this.tracker.acksAllStatus(batch.end);
      if (status.status === 'wait') continue;
      if (status.status === 'fail') {
        batch.outcome = 'failed';
        continue;
      }
      batch.outcome = 'acknowledged';
      for (const id of this.etcd.isr) {
        expect(this.fsyncedBy(id) >= batch.end, `acknowledged ${batch.end} but ${id} fsynced ${this.fsyncedBy(id)}`).toBe(true);
      }
      const holders = [leaderId, ...followerIds].filter((id) => this.fsyncedBy(id) >= batch.end);
      expect(holders.length).toBeGreaterThanOrEqual(this.minInSyncReplicas);
    }
  }

  fsyncedBy(id: number): bigint {
    return id === leaderId ? this.leaderFsynced : this.follower(id).fsynced;
  }

  expectInvariants(): void {
    const hw = this.tracker.highWatermark;
    expect(hw >= this.lastHighWatermark, 'the HW went down').toBe(true);
    this.lastHighWatermark = hw;
    expect(hw <= this.leaderFsynced).toBe(true);
    for (const id of new Set([...this.tracker.isr, ...this.tracker.maximalIsr, ...this.etcd.isr])) {
      expect(this.fsyncedBy(id) >= hw, `HW ${hw} above what ${id} fsynced (${this.fsyncedBy(id)})`).toBe(true);
    }
  }
}

type Command =
  | { kind: 'produce'; records: number }
  | { kind: 'leader-fsync' | 'propose' | 'resolve' | 'controller' | 'watch' }
  | { kind: 'fetch'; follower: number; records: number }
  | { kind: 'fsync' | 'crash' | 'revive' | 'catch-up'; follower: number }
  | { kind: 'time'; ms: number };

const follower = fc.constantFrom(...followerIds);
const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('produce' as const), records: fc.integer({ min: 1, max: 5 }) }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constantFrom('leader-fsync' as const, 'propose' as const, 'resolve' as const) }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constantFrom('controller' as const, 'watch' as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('fetch' as const), follower, records: fc.integer({ min: 0, max: 30 }) }), weight: 8 },
  { arbitrary: fc.record({ kind: fc.constantFrom('fsync' as const, 'catch-up' as const), follower }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constantFrom('crash' as const, 'revive' as const), follower }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('time' as const), ms: fc.integer({ min: 0, max: 1500 }) }), weight: 4 },
);

function run(model: Model, command: Command): void {
  switch (command.kind) {
    case 'produce':
      return model.produce(command.records);
    case 'leader-fsync':
      return model.leaderFsync();
    case 'propose':
      return model.propose();
    case 'resolve':
      return model.resolve();
    case 'controller':
      return model.controllerRemovesDead();
    case 'watch':
      return model.tracker.applyState(model.etcd);
    case 'fetch':
      return model.fetch(command.follower, command.records);
    case 'fsync':
      return model.fsync(command.follower);
    case 'catch-up':
      // A well-behaved follower: fetch everything, fsync, report it.
      model.fetch(command.follower, Number.MAX_SAFE_INTEGER);
      model.fsync(command.follower);
      return model.fetch(command.follower, 0);
    case 'crash':
      return model.crash(command.follower);
    case 'revive':
      model.follower(command.follower).alive = true;
      return;
    case 'time':
      return model.clock.advance(command.ms);
  }
}

describe('replica tracker model', () => {
  it('keeps the HW and every acks all acknowledgement below what the whole ISR fsynced', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.subarray(followerIds),
        fc.array(commandArbitrary, { minLength: 10, maxLength: 150 }),
        (minInSyncReplicas, initialIsr, commands) => {
          const model = new Model(minInSyncReplicas, initialIsr);
          for (const command of commands) {
            run(model, command);
            model.settleAcks();
            model.expectInvariants();
          }
          // Everyone comes back and fetches well: the ISR heals and every batch gets its answer.
          for (const id of followerIds) model.follower(id).alive = true;
          for (let round = 0; round < 12; round += 1) {
            model.leaderFsync();
            for (const id of followerIds) run(model, { kind: 'catch-up', follower: id });
            model.resolve();
            model.tracker.applyState(model.etcd);
            model.propose();
            model.resolve();
            model.clock.advance(100);
            model.settleAcks();
            model.expectInvariants();
          }
          expect(model.tracker.isr).toEqual([leaderId, ...followerIds]);
          expect(model.tracker.highWatermark).toBe(model.leaderLogEnd);
          if (minInSyncReplicas <= 4) expect(model.batches.filter((b) => b.outcome === 'pending')).toEqual([]);
        },
      ),
      { numRuns: 500 },
    );
  });
});
