/**
 * The leader's view of one partition's followers, for one leadership (one leader epoch): how far
 * each has fetched and fsynced, the high watermark, when an acks 'all' batch may be
 * acknowledged, and which ISR changes to propose. Kafka's Partition (maybeExpandIsr,
 * maybeShrinkIsr, maybeIncrementLeaderHW, checkEnoughReplicasReachOffset) is the reference;
 * where Rill differs it says so. Deterministic: time comes from the injected clock; no I/O.
 * The caller does the I/O: it reports fetches and its own appends and fsyncs, writes proposed
 * ISR changes to etcd (changeIsr + CAS, controller-logic.ts) and hands back every partition
 * state it reads (applyState). A new leadership starts a new tracker.
 *
 * Offsets are "next offset" positions (exclusive ends), as a log end offset is: a follower with
 * fsyncedOffset 10 holds offsets 0..9 on disk.
 *
 * Per follower
 *   logEndOffset, fsyncedOffset   as the follower reported them in its latest fetch (unknown
 *                                 until its first fetch in this leadership).
 *   lastCaughtUpTimeMs            Kafka's definition: the latest fetch time at which its log end
 *                                 offset had reached the leader's log end offset, either as of
 *                                 that fetch or as of its previous fetch (then the previous
 *                                 fetch's time counts). ISR members start at the leadership's
 *                                 start time, others at 0.
 *   lastDurableTimeMs             the same rule on the fsynced offset, looking back up to
 *                                 fetchHistoryDepth fetches: a follower may report its fsync a
 *                                 few fetches late (group commit) without being called lagging.
 *
 * High watermark (HW): the offset below which every batch is fsynced on every replica of the
 * maximal ISR (Kafka's KIP-497 term: the committed ISR plus the members a pending change would
 * add; removals count only once committed), and on every eligible follower outside it that is
 * caught up by time (it is about to join: Kafka waits for it too, so a follower under steady load
 * can reach the HW and join). Rill differs from Kafka here: Kafka uses log end offsets (replicated
 * to memory); Rill uses fsynced offsets, so acks 'all' keeps its single-broker meaning (on disk,
 * on every in-sync replica). Like Kafka since KIP-966, the HW does not move while the committed
 * ISR is smaller than minInSyncReplicas. It never moves back: a new minimum below it (a
 * follower's report lost fsynced data) leaves it where it is. It starts at the HW this broker
 * had as a follower, which is never above what the ISR holds.
 *
 * acks 'all': before appending, the committed ISR must have minInSyncReplicas members, else
 * NOT_ENOUGH_REPLICAS (nothing written). A batch ending at offset E is acknowledged once
 * HW >= E and the committed ISR still has minInSyncReplicas members; once HW >= E with a
 * smaller ISR it fails with NOT_ENOUGH_REPLICAS_AFTER_APPEND (the batch is in the log; a retry
 * may write it twice unless the producer is idempotent). A tracker that learned it is no longer
 * leader (or was told to stop, e.g. its lease is in doubt) acknowledges nothing more (NOT_LEADER).
 *
 * ISR changes, one in flight at a time: proposeIsrChange, then the adapter builds the state with
 * changeIsr, CASes it, and calls isrChangeSettled with what etcd holds afterwards (written, lost
 * to a newer write, or not written at all because changeIsr dropped a dead newcomer):
 *   shrink   an ISR follower (never the leader) whose offset is behind the leader's log end and
 *            whose lastCaughtUpTimeMs or lastDurableTimeMs is more than replicaLagMaxMs ago; or
 *            at once, one that reports less fsynced than the HW (it lost acknowledged data).
 *   expand   a replica outside the ISR that has reported, is eligible (alive, per the caller),
 *            and has fsynced at least the HW and the start offset of this leader epoch (so its
 *            log holds this epoch's start: it truncated what diverged). Kafka asks the same of
 *            the log end offset; Rill asks it of the fsynced offset, so adding a member never
 *            lowers the HW.
 *   Shrinks are proposed before expansions. The ISR may shrink to the leader alone.
 */
import { assert } from '../lib/assert.js';
import type { Clock } from '../lib/clock.js';
import { RillError } from '../lib/errors.js';
import { partitionStateProblem, type PartitionState } from './controller-logic.js';

/** Fetches remembered per follower for lastDurableTimeMs (lastCaughtUpTimeMs uses 2, as Kafka). */
export const fetchHistoryDepth = 4;

export interface ReplicaTrackerOptions {
  clock: Clock;
  leaderId: number;
  /** The partition state that made this broker leader, as read from etcd. */
  state: PartitionState;
  /** The leader's log end and fsynced offsets as it takes over; the log end is this epoch's start offset. */
  logEndOffset: bigint;
  fsyncedOffset: bigint;
  /** The HW this broker knew as a follower (its checkpoint); at most fsyncedOffset. */
  highWatermark: bigint;
  minInSyncReplicas: number;
  replicaLagMaxMs: number;
  /**
   * Whether the cluster considers a broker alive (its lease holds): only such a follower joins
   * the ISR or holds the HW back while about to join. Default: every broker.
   */
  eligible?: (brokerId: number) => boolean;
}

export interface FollowerReport {
  logEndOffset: bigint;
  fsyncedOffset: bigint;
}

export interface FollowerView {
  readonly brokerId: number;
  /** undefined until the follower's first fetch in this leadership. */
  readonly logEndOffset: bigint | undefined;
  readonly fsyncedOffset: bigint | undefined;
  readonly lastCaughtUpTimeMs: number;
  readonly lastDurableTimeMs: number;
  readonly inIsr: boolean;
}

export interface IsrProposal {
  /** The ISR to write, in replica order. */
  readonly isr: readonly number[];
  readonly removed: readonly number[];
  readonly added: readonly number[];
  /** The state version it is based on: the CAS compares it. */
  readonly version: number;
  readonly leaderEpoch: number;
}

export type AcksAllStatus = { status: 'acknowledge' } | { status: 'wait' } | { status: 'fail'; error: RillError };

interface Fetch {
  timeMs: number;
  /** The leader's log end offset when it served the fetch. */
  leaderLogEndOffset: bigint;
}

interface Follower {
  brokerId: number;
  logEndOffset: bigint | undefined;
  fsyncedOffset: bigint | undefined;
  lastCaughtUpTimeMs: number;
  lastDurableTimeMs: number;
  /** Newest first, at most fetchHistoryDepth. */
  fetches: Fetch[];
}

const unknownOffset = -1n;

/** States reach the tracker decoded and checked by the adapter; a bad one here is a bug. */
function assertValid(state: PartitionState): void {
  const problem = partitionStateProblem(state);
  assert(problem === undefined, `tracker: invalid partition state: ${problem}`);
}

function newFollower(brokerId: number, caughtUpTimeMs: number): Follower {
  return {
    brokerId,
    logEndOffset: undefined,
    fsyncedOffset: undefined,
    lastCaughtUpTimeMs: caughtUpTimeMs,
    lastDurableTimeMs: caughtUpTimeMs,
    fetches: [],
  };
}

export class ReplicaTracker {
  readonly leaderId: number;
  readonly leaderEpoch: number;
  /** This epoch's first offset: the leader's log end when it took over. */
  readonly epochStartOffset: bigint;
  readonly minInSyncReplicas: number;
  readonly replicaLagMaxMs: number;
  private readonly clock: Clock;
  private readonly eligible: (brokerId: number) => boolean;
  private replicas: readonly number[];
  private committedIsr: readonly number[];
  private version: number;
  private pending: IsrProposal | undefined;
  private readonly followers = new Map<number, Follower>();
  private leaderLogEndOffset: bigint;
  private leaderFsyncedOffset: bigint;
  private hw: bigint;
  private fencedBy: RillError | undefined;

  constructor(options: ReplicaTrackerOptions) {
    const { state, leaderId } = options;
    assertValid(state);
    assert(state.leader === leaderId && state.isr.includes(leaderId), 'tracker: the state does not name this broker leader');
    assert(options.minInSyncReplicas >= 1 && options.replicaLagMaxMs > 0, 'tracker: bad options');
    const { logEndOffset, fsyncedOffset, highWatermark } = options;
    assert(highWatermark >= 0n && highWatermark <= fsyncedOffset && fsyncedOffset <= logEndOffset, 'tracker: bad offsets');
    this.clock = options.clock;
    this.eligible = options.eligible ?? (() => true);
    this.leaderId = leaderId;
    this.leaderEpoch = state.leaderEpoch;
    this.epochStartOffset = options.logEndOffset;
    this.minInSyncReplicas = options.minInSyncReplicas;
    this.replicaLagMaxMs = options.replicaLagMaxMs;
    this.replicas = state.replicas;
    this.committedIsr = state.isr;
    this.version = state.version;
    this.leaderLogEndOffset = options.logEndOffset;
    this.leaderFsyncedOffset = options.fsyncedOffset;
    this.hw = options.highWatermark;
    const nowMs = this.clock.nowMs();
    for (const brokerId of state.replicas) {
      if (brokerId === leaderId) continue;
      // As Kafka: ISR members get replicaLagMaxMs from the start of the leadership to fetch.
      this.followers.set(brokerId, newFollower(brokerId, state.isr.includes(brokerId) ? nowMs : 0));
    }
  }

  get highWatermark(): bigint {
    return this.hw;
  }

  /** The committed ISR (as in etcd at `stateVersion`). */
  get isr(): readonly number[] {
    return this.committedIsr;
  }

  /** The committed ISR plus the members a pending change would add: what the HW waits for. */
  get maximalIsr(): readonly number[] {
    const added = this.pending?.added ?? [];
    return this.replicas.filter((id) => this.committedIsr.includes(id) || added.includes(id));
  }

  get stateVersion(): number {
    return this.version;
  }

  get pendingChange(): IsrProposal | undefined {
    return this.pending;
  }

  /** Set once this broker must no longer act as leader: the error to answer with. */
  get fenced(): RillError | undefined {
    return this.fencedBy;
  }

  followerViews(): FollowerView[] {
    return [...this.followers.values()].map((f) => ({
      brokerId: f.brokerId,
      logEndOffset: f.logEndOffset,
      fsyncedOffset: f.fsyncedOffset,
      lastCaughtUpTimeMs: f.lastCaughtUpTimeMs,
      lastDurableTimeMs: f.lastDurableTimeMs,
      inIsr: this.committedIsr.includes(f.brokerId),
    }));
  }

  /** Whether `brokerId` is a follower in this tracker's view of the replicas. */
  hasFollower(brokerId: number): boolean {
    return this.followers.has(brokerId);
  }

  /** The leader appended: its log end offset is now `logEndOffset`. */
  leaderAppended(logEndOffset: bigint): void {
    assert(logEndOffset >= this.leaderLogEndOffset, 'tracker: the leader log end went back');
    this.leaderLogEndOffset = logEndOffset;
  }

  /** The leader's own fsync completed up to `fsyncedOffset`. */
  leaderFsynced(fsyncedOffset: bigint): void {
    assert(fsyncedOffset >= this.leaderFsyncedOffset && fsyncedOffset <= this.leaderLogEndOffset, 'tracker: bad leader fsync');
    this.leaderFsyncedOffset = fsyncedOffset;
    this.updateHighWatermark();
  }

  /**
   * A follower fetched, reporting its log end and fsynced offsets. The report comes from the
   * network: a log end beyond the leader's gets OFFSET_OUT_OF_RANGE (the follower must truncate
   * first), a fsynced offset beyond its log end INVALID_ARGUMENT.
   */
  followerFetched(brokerId: number, report: FollowerReport): void {
    const follower = this.followers.get(brokerId);
    if (follower === undefined) throw new RillError('INVALID_ARGUMENT', `broker ${brokerId} is not a follower of this partition`);
    if (report.logEndOffset > this.leaderLogEndOffset) {
      throw new RillError('OFFSET_OUT_OF_RANGE', `log end ${report.logEndOffset} is beyond the leader's ${this.leaderLogEndOffset}`);
    }
    if (report.fsyncedOffset > report.logEndOffset || report.fsyncedOffset < 0n) {
      throw new RillError('INVALID_ARGUMENT', `fsynced offset ${report.fsyncedOffset} is outside 0..${report.logEndOffset}`);
    }
    const nowMs = this.clock.nowMs();
    follower.fetches.unshift({ timeMs: nowMs, leaderLogEndOffset: this.leaderLogEndOffset });
    follower.fetches.length = Math.min(follower.fetches.length, fetchHistoryDepth);
    follower.lastCaughtUpTimeMs = Math.max(follower.lastCaughtUpTimeMs, caughtUpAsOf(report.logEndOffset, follower.fetches, 2));
    const durableAsOfMs = caughtUpAsOf(report.fsyncedOffset, follower.fetches, fetchHistoryDepth);
    follower.lastDurableTimeMs = Math.max(follower.lastDurableTimeMs, durableAsOfMs);
    follower.logEndOffset = report.logEndOffset;
    follower.fsyncedOffset = report.fsyncedOffset;
    this.updateHighWatermark();
  }

  private isCaughtUpByTime(follower: Follower, nowMs: number): boolean {
    const behind = (offset: bigint | undefined) => (offset ?? unknownOffset) < this.leaderLogEndOffset;
    if (behind(follower.logEndOffset) && nowMs - follower.lastCaughtUpTimeMs > this.replicaLagMaxMs) return false;
    if (behind(follower.fsyncedOffset) && nowMs - follower.lastDurableTimeMs > this.replicaLagMaxMs) return false;
    return true;
  }

  private updateHighWatermark(): void {
    if (this.fencedBy !== undefined || this.committedIsr.length < this.minInSyncReplicas) return;
    const nowMs = this.clock.nowMs();
    const maximal = this.maximalIsr;
    let candidate = this.leaderFsyncedOffset;
    for (const follower of this.followers.values()) {
      const aboutToJoin = follower.fsyncedOffset !== undefined && this.eligible(follower.brokerId) && this.isCaughtUpByTime(follower, nowMs);
      const waitFor = maximal.includes(follower.brokerId) || aboutToJoin;
      if (!waitFor) continue;
      const fsynced = follower.fsyncedOffset ?? unknownOffset;
      if (fsynced < candidate) candidate = fsynced;
    }
    if (candidate > this.hw) this.hw = candidate;
  }

  /** Before appending an acks 'all' batch: throws NOT_ENOUGH_REPLICAS (or NOT_LEADER) if it may not be written. */
  checkAcksAllAppend(): void {
    if (this.fencedBy !== undefined) throw this.fencedBy;
    if (this.committedIsr.length < this.minInSyncReplicas) {
      throw new RillError(
        'NOT_ENOUGH_REPLICAS',
        `${this.committedIsr.length} in-sync replica(s) [${this.committedIsr.join(', ')}], minInSyncReplicas is ${this.minInSyncReplicas}`,
      );
    }
  }

  /** Whether an acks 'all' batch that ends at `endOffset` (its last offset + 1) may be acknowledged now. */
  acksAllStatus(endOffset: bigint): AcksAllStatus {
    if (this.fencedBy !== undefined) return { status: 'fail', error: this.fencedBy };
    if (this.hw < endOffset) return { status: 'wait' };
    if (this.committedIsr.length >= this.minInSyncReplicas) return { status: 'acknowledge' };
    const detail = `the ISR shrank to ${this.committedIsr.length}, below minInSyncReplicas ${this.minInSyncReplicas}`;
    return { status: 'fail', error: new RillError('NOT_ENOUGH_REPLICAS_AFTER_APPEND', detail) };
  }

  acksAllReady(endOffset: bigint): boolean {
    return this.acksAllStatus(endOffset).status === 'acknowledge';
  }

  /**
   * The ISR change to write now, or undefined (nothing to change, one already in flight, or
   * fenced). `eligible` says which brokers may join (default: the tracker's `eligible` option).
   */
  proposeIsrChange(eligible: (brokerId: number) => boolean = this.eligible): IsrProposal | undefined {
    if (this.pending !== undefined || this.fencedBy !== undefined) return undefined;
    const nowMs = this.clock.nowMs();
    const removed = this.committedIsr.filter((id) => {
      const follower = this.followers.get(id);
      if (follower === undefined) return false;
      const lostAcknowledged = follower.fsyncedOffset !== undefined && follower.fsyncedOffset < this.hw;
      return lostAcknowledged || !this.isCaughtUpByTime(follower, nowMs);
    });
    const added = removed.length > 0 ? [] : this.replicas.filter((id) => this.mayJoin(id, eligible));
    if (removed.length === 0 && added.length === 0) return undefined;
    const stays = (id: number) => this.committedIsr.includes(id) && !removed.includes(id);
    const isr = this.replicas.filter((id) => stays(id) || added.includes(id));
    this.pending = { isr, removed, added, version: this.version, leaderEpoch: this.leaderEpoch };
    return this.pending;
  }

  private mayJoin(brokerId: number, eligible: (brokerId: number) => boolean): boolean {
    const follower = this.followers.get(brokerId);
    if (follower === undefined || this.committedIsr.includes(brokerId) || follower.fsyncedOffset === undefined) return false;
    return eligible(brokerId) && follower.fsyncedOffset >= this.hw && follower.fsyncedOffset >= this.epochStartOffset;
  }

  /**
   * A partition state read from etcd (a watch, or isrChangeSettled). A newer leader epoch, or
   * another leader, fences this tracker for good. Otherwise the committed ISR becomes the state's,
   * and a pending change based on an older version is settled (written or overtaken; either way
   * etcd now says what counts). Older versions than the last applied are ignored.
   */
  applyState(state: PartitionState): void {
    assertValid(state);
    if (state.version < this.version || this.fencedBy !== undefined) return;
    if (state.leaderEpoch < this.leaderEpoch) return;
    if (state.leaderEpoch > this.leaderEpoch || state.leader !== this.leaderId) {
      this.fence(new RillError('NOT_LEADER', `leader epoch ${state.leaderEpoch} is led by ${state.leader}`));
      return;
    }
    this.version = state.version;
    this.replicas = state.replicas;
    this.committedIsr = state.isr;
    if (this.pending !== undefined && state.version > this.pending.version) this.pending = undefined;
    for (const id of [...this.followers.keys()]) if (!state.replicas.includes(id)) this.followers.delete(id);
    for (const id of state.replicas) if (id !== this.leaderId && !this.followers.has(id)) this.followers.set(id, newFollower(id, 0));
    this.updateHighWatermark();
  }

  /**
   * The adapter's attempt to write the pending change is over, whatever became of it; `current`
   * is what etcd holds now (the state it wrote, or the one it read after a failed CAS).
   */
  isrChangeSettled(current: PartitionState): void {
    this.pending = undefined;
    this.applyState(current);
  }

  /** Stop acting as leader (a newer leader exists, or this broker's lease is in doubt). */
  fence(error: RillError = new RillError('NOT_LEADER', 'this broker stopped leading the partition')): void {
    this.fencedBy ??= error;
    this.pending = undefined;
  }
}

/**
 * The latest fetch time as of which `offset` had reached the leader's log end, looking at the
 * newest `depth` fetches (newest first; the first is the current one). Kafka's rule is depth 2.
 * Returns 0 if none qualifies.
 */
function caughtUpAsOf(offset: bigint, fetches: readonly Fetch[], depth: number): number {
  for (let index = 0; index < Math.min(depth, fetches.length); index += 1) {
    if (offset >= fetches[index]!.leaderLogEndOffset) return fetches[index]!.timeMs;
  }
  return 0;
}
