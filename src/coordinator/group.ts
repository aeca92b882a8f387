/**
 * One consumer group's state and the per-member reconciliation (see coordinator.ts for the
 * state machines). The single safety rule lives here: a partition is held (assigned or pending
 * revocation) by at most one member, enforced by the `holders` index and asserted on every grant.
 */
import { assert } from '../lib/assert.js';
import type { GroupRecord, HeldPartition, RebalanceEvent } from './records.js';
import {
  compareStrings,
  parsePartitionKey,
  partitionKey,
  sortedPartitions,
  type PartitionKey,
  type TopicPartition,
} from './types.js';

/**
 * stable                 the member runs the target assignment of the group's assignment epoch
 * awaiting-heartbeat     the target changed; the member learns it at its next heartbeat
 * unrevoked-partitions   the member must release pendingRevocation before it moves to the new epoch
 * unreleased-partitions  the member is at the new epoch but waits for partitions others still hold
 */
export type MemberState = 'stable' | 'awaiting-heartbeat' | 'unrevoked-partitions' | 'unreleased-partitions';

/** empty: no members; reconciling: some member is not yet running its target; stable: all are. */
export type GroupState = 'empty' | 'reconciling' | 'stable';

export interface CommittedOffset {
  offset: bigint;
  metadata: string;
  commitTimestampMs: number;
}

export class Member {
  clientId = '';
  host = '';
  sessionTimeoutMs = 0;
  rebalanceTimeoutMs = 0;
  /** Sorted, unique. */
  subscribedTopics: string[] = [];
  /** 0 until the first reconciliation; then the assignment epoch the member runs. */
  memberEpoch = 0;
  /** The epoch before the last bump: a heartbeat carrying it means our last response was lost. */
  previousMemberEpoch = -1;
  /** Partitions the member may consume now, with the epoch each was given at (KIP-1251 style). */
  readonly assigned = new Map<PartitionKey, number>();
  /** Partitions the member must release; it may still commit them until it reports the release. */
  readonly pendingRevocation = new Map<PartitionKey, number>();
  /** Volatile (not persisted): null means "start counting at the next tick or heartbeat". */
  sessionDeadlineMs: number | null = null;
  revocationDeadlineMs: number | null = null;

  constructor(readonly memberId: string) {}

  /** The epoch a partition was given at, if the member holds it (assigned or being revoked). */
  heldEpoch(key: PartitionKey): number | undefined {
    return this.assigned.get(key) ?? this.pendingRevocation.get(key);
  }

  holds(key: PartitionKey): boolean {
    return this.assigned.has(key) || this.pendingRevocation.has(key);
  }
}

export class Group {
  groupEpoch = 0;
  assignmentEpoch = 0;
  /** Target assignment per member id, computed by the assignor at assignmentEpoch. */
  target = new Map<string, Set<PartitionKey>>();
  /** Partition counts of subscribed topics the target was computed with. */
  partitionCounts = new Map<string, number>();
  readonly members = new Map<string, Member>();
  readonly offsets = new Map<PartitionKey, CommittedOffset>();
  /** Sorted by groupEpoch, at most historyMax entries. */
  history: RebalanceEvent[] = [];
  private readonly holders = new Map<PartitionKey, string>();

  constructor(
    readonly groupId: string,
    private readonly historyMax: number,
  ) {}

  holderOf(key: PartitionKey): string | undefined {
    return this.holders.get(key);
  }

  grant(member: Member, key: PartitionKey, assignmentEpoch: number): void {
    assert(!this.holders.has(key), `partition ${key} granted while held by ${this.holders.get(key)}`);
    member.assigned.set(key, assignmentEpoch);
    this.holders.set(key, member.memberId);
  }

  startRevocation(member: Member, key: PartitionKey, deadlineMs: number): void {
    const epoch = member.assigned.get(key);
    assert(epoch !== undefined, 'revoking a partition the member is not assigned');
    member.assigned.delete(key);
    member.pendingRevocation.set(key, epoch);
    member.revocationDeadlineMs = deadlineMs;
  }

  release(member: Member, key: PartitionKey): void {
    member.assigned.delete(key);
    member.pendingRevocation.delete(key);
    if (this.holders.get(key) === member.memberId) this.holders.delete(key);
    if (member.pendingRevocation.size === 0) member.revocationDeadlineMs = null;
  }

  releaseAll(member: Member): void {
    for (const key of [...member.assigned.keys(), ...member.pendingRevocation.keys()]) this.release(member, key);
  }

  removeMember(member: Member): void {
    this.releaseAll(member);
    this.members.delete(member.memberId);
  }

  targetOf(memberId: string): ReadonlySet<PartitionKey> {
    return this.target.get(memberId) ?? new Set();
  }

  /**
   * Moves a member one step towards its target. Returns true if anything changed.
   *   1. While partitions are pending revocation, nothing else happens (revoke before assign).
   *   2. Assigned partitions no longer in the target start revocation; the epoch stays.
   *   3. Otherwise the member moves to the assignment epoch and takes every target partition
   *      no other member holds; the rest it gets at a later heartbeat, once they are released.
   */
  reconcile(member: Member, nowMs: number): boolean {
    if (member.pendingRevocation.size > 0) return false;
    const target = this.targetOf(member.memberId);
    const toRevoke = [...member.assigned.keys()].filter((key) => !target.has(key));
    if (toRevoke.length > 0) {
      for (const key of toRevoke) this.startRevocation(member, key, nowMs + member.rebalanceTimeoutMs);
      return true;
    }
    let changed = false;
    if (member.memberEpoch !== this.assignmentEpoch) {
      member.previousMemberEpoch = member.memberEpoch;
      member.memberEpoch = this.assignmentEpoch;
      changed = true;
    }
    for (const key of target) {
      if (member.assigned.has(key) || this.holders.has(key)) continue;
      this.grant(member, key, member.memberEpoch);
      changed = true;
    }
    return changed;
  }

  /** A member reported what it owns: pending revocations it no longer owns are released. */
  releaseUnowned(member: Member, owned: ReadonlySet<PartitionKey>): boolean {
    let changed = false;
    for (const key of [...member.pendingRevocation.keys()]) {
      if (owned.has(key)) continue;
      this.release(member, key);
      changed = true;
    }
    return changed;
  }

  memberState(member: Member): MemberState {
    if (member.pendingRevocation.size > 0) return 'unrevoked-partitions';
    const target = this.targetOf(member.memberId);
    const mustRevoke = [...member.assigned.keys()].some((key) => !target.has(key));
    if (member.memberEpoch !== this.assignmentEpoch || mustRevoke) return 'awaiting-heartbeat';
    for (const key of target) if (!member.assigned.has(key)) return 'unreleased-partitions';
    return 'stable';
  }

  state(): GroupState {
    if (this.members.size === 0) return 'empty';
    for (const member of this.members.values()) {
      if (this.memberState(member) !== 'stable') return 'reconciling';
    }
    return 'stable';
  }

  /** Inserts or replaces the event of its epoch, keeping the newest historyMax events. */
  putHistory(event: RebalanceEvent): void {
    const index = this.history.findIndex((existing) => existing.groupEpoch === event.groupEpoch);
    if (index >= 0) this.history[index] = event;
    else this.history.push(event);
    this.history.sort((a, b) => a.groupEpoch - b.groupEpoch);
    if (this.history.length > this.historyMax) this.history.splice(0, this.history.length - this.historyMax);
  }

  // -------------------------------------------------------------------------------------------
  // Records: built from the state, so what is persisted is exactly what is in memory.
  // -------------------------------------------------------------------------------------------

  groupRecord(): GroupRecord {
    const memberIds = [...this.target.keys()].sort(compareStrings);
    return {
      type: 'group',
      groupId: this.groupId,
      groupEpoch: this.groupEpoch,
      assignmentEpoch: this.assignmentEpoch,
      partitionCounts: [...this.partitionCounts].sort(([a], [b]) => compareStrings(a, b)).map(([topic, count]) => ({ topic, count })),
      target: memberIds.map((memberId) => ({ memberId, partitions: sortedPartitions(this.target.get(memberId)!) })),
    };
  }

  memberRecord(member: Member): GroupRecord {
    return {
      type: 'member',
      groupId: this.groupId,
      memberId: member.memberId,
      clientId: member.clientId,
      host: member.host,
      sessionTimeoutMs: member.sessionTimeoutMs,
      rebalanceTimeoutMs: member.rebalanceTimeoutMs,
      subscribedTopics: [...member.subscribedTopics],
      memberEpoch: member.memberEpoch,
      previousMemberEpoch: member.previousMemberEpoch,
      assigned: heldPartitions(member.assigned),
      pendingRevocation: heldPartitions(member.pendingRevocation),
    };
  }

  offsetRecord(key: PartitionKey): GroupRecord {
    const { topic, partition } = parsePartitionKey(key);
    const committed = this.offsets.get(key);
    if (committed === undefined) return { type: 'offset-deleted', groupId: this.groupId, topic, partition };
    return { type: 'offset', groupId: this.groupId, topic, partition, ...committed };
  }

  // -------------------------------------------------------------------------------------------
  // Replay
  // -------------------------------------------------------------------------------------------

  restoreGroup(record: Extract<GroupRecord, { type: 'group' }>): void {
    this.groupEpoch = record.groupEpoch;
    this.assignmentEpoch = record.assignmentEpoch;
    this.partitionCounts = new Map(record.partitionCounts.map(({ topic, count }) => [topic, count]));
    this.target = new Map(
      record.target.map(({ memberId, partitions }) => [memberId, new Set(partitions.map(keyOf))]),
    );
  }

  /**
   * Replaces a member. A partition another member already holds is skipped: records we wrote
   * never conflict, and if a damaged log ever did, safety (one holder) wins over the record.
   */
  restoreMember(record: Extract<GroupRecord, { type: 'member' }>): void {
    const existing = this.members.get(record.memberId);
    if (existing !== undefined) this.removeMember(existing);
    const member = new Member(record.memberId);
    member.clientId = record.clientId;
    member.host = record.host;
    member.sessionTimeoutMs = record.sessionTimeoutMs;
    member.rebalanceTimeoutMs = record.rebalanceTimeoutMs;
    member.subscribedTopics = [...record.subscribedTopics];
    member.memberEpoch = record.memberEpoch;
    member.previousMemberEpoch = record.previousMemberEpoch;
    this.members.set(member.memberId, member);
    for (const held of record.assigned) this.restoreHeld(member, held, member.assigned);
    for (const held of record.pendingRevocation) this.restoreHeld(member, held, member.pendingRevocation);
  }

  private restoreHeld(member: Member, held: HeldPartition, into: Map<PartitionKey, number>): void {
    const key = keyOf(held);
    if (this.holders.has(key)) return;
    into.set(key, held.assignmentEpoch);
    this.holders.set(key, member.memberId);
  }
}

function keyOf(tp: TopicPartition): PartitionKey {
  return partitionKey(tp.topic, tp.partition);
}

function heldPartitions(held: ReadonlyMap<PartitionKey, number>): HeldPartition[] {
  return sortedPartitions(held.keys()).map((tp) => ({
    ...tp,
    assignmentEpoch: held.get(partitionKey(tp.topic, tp.partition))!,
  }));
}
