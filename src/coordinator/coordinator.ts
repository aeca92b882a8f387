/**
 * The consumer-group coordinator: a pure, deterministic state machine (KIP-848 style, assignment
 * computed on the broker). No I/O, no timers, no clock: every call takes `nowMs`, and every
 * mutating call returns the GroupRecords the broker must persist (in order, durably) before it
 * answers the client. `replay` rebuilds the state from those records at broker start.
 *
 * API (all synchronous)
 *   heartbeat(request, nowMs)             join (memberEpoch 0), heartbeat (current epoch), leave (-1)
 *   commitOffsets(request, nowMs)         per-partition results, fenced by ownership and epoch
 *   fetchOffsets(groupId, partitions?)    committed offsets, -1n where none
 *   resetOffsets(groupId, offsets, nowMs) admin; throws NON_EMPTY_GROUP while members are live
 *   deleteGroup(groupId)                  admin; throws NON_EMPTY_GROUP / GROUP_ID_NOT_FOUND
 *   onTopicsChanged(nowMs)                partition counts changed or topics deleted: rebalance,
 *                                         and drop offsets of partitions that no longer exist
 *   tick(nowMs)                           expire silent members, fence members that do not release
 *   listGroups(), describeGroup(groupId)  read-only views
 *   replay(record), snapshot()            durability
 *
 * Epochs
 *   groupEpoch       bumped when membership, a subscription, or the partition count of a
 *                    subscribed topic changes; every bump recomputes the target assignment at
 *                    once (assignmentEpoch = groupEpoch) and is logged in the rebalance history.
 *   memberEpoch      the assignment epoch a member runs. A heartbeat must carry it (or the epoch
 *                    before it, if our last response was lost and the member reports owning no
 *                    more than it holds); anything else is FENCED_MEMBER_EPOCH.
 *   assignment epoch of a partition  the member epoch at which the member was given it. A commit
 *                    carrying epoch e for partition p is accepted iff the member holds p and
 *                    epochOf(p) <= e <= memberEpoch (KIP-1251), so a group epoch bump that does not
 *                    touch p never fails commits for p.
 *
 * Group states (derived, never stored)
 *   | state       | when                                                                   |
 *   |-------------|------------------------------------------------------------------------|
 *   | empty       | no members (offsets may exist; standalone commits and resets allowed)  |
 *   | reconciling | some member does not yet run exactly its target at the assignment epoch|
 *   | stable      | every member runs exactly its target at the assignment epoch           |
 *
 *   empty --join--> reconciling --all members reconciled--> stable
 *   stable --join / leave / expiry / fence / subscription or topic change--> reconciling
 *   any --last member gone--> empty        (the group, its offsets and history stay until deleteGroup)
 *
 * Member states (per member, KIP-848's CurrentAssignmentBuilder)
 *   | state                 | meaning                                  | leaves it when                       |
 *   |-----------------------|------------------------------------------|--------------------------------------|
 *   | awaiting-heartbeat    | target changed since its last heartbeat  | next heartbeat reconciles it         |
 *   | unrevoked-partitions  | must release pendingRevocation; keeps its| a heartbeat's ownedPartitions omits  |
 *   |                       | old epoch; may still commit them         | them -> next state; or rebalance     |
 *   |                       |                                          | timeout -> fenced (removed)          |
 *   | unreleased-partitions | at the new epoch, waits for partitions   | their old owner releases them or is  |
 *   |                       | another member still holds               | removed; given at its next heartbeat |
 *   | stable                | runs exactly its target                  | the target changes                   |
 *
 *   join(epoch 0) -> [reconcile] -> stable | unreleased-partitions
 *   any --leave(-1) / session timeout / revocation timeout--> removed (partitions released)
 *
 * Revoke before assign: a partition is held (assigned or pending revocation) by at most one
 * member. It becomes free only when its holder reports it no longer owns it, leaves, or is
 * removed; only then can its new target owner be given it. Members whose target did not change
 * keep their partitions across every rebalance.
 *
 * Decisions
 *   - Rejoin: epoch 0 with a memberId already in the group means the client dropped everything
 *     (restart, or after FENCED_MEMBER_EPOCH): its partitions are released and it reconciles
 *     again without a group epoch bump (unless its subscription changed), keeping its target.
 *   - Leave of an unknown member answers NONE (leave is idempotent, so retries are harmless).
 *   - A member's session deadline is refreshed by every accepted heartbeat (not by commits), and
 *     it is removed at the first tick with nowMs >= deadline. After replay, deadlines are unset and
 *     start at the first tick or heartbeat, so a broker restart never expires anyone by itself.
 *   - A revocation must be acknowledged within the member's rebalanceTimeoutMs (default 60 s);
 *     after it the member is fenced: removed like an expired member (reason 'fenced').
 *   - Standalone commits (memberEpoch -1, Kafka's "simple consumer" commits) are accepted only
 *     while the group has no members; otherwise NON_EMPTY_GROUP per partition. They create the
 *     group if needed.
 *   - The heartbeat interval returned is min(heartbeatIntervalMs, sessionTimeoutMs / 3).
 *
 * What a client must do for "never two consumers" to hold end to end (the model test checks it):
 *   - stop consuming every partition when no heartbeat has succeeded for sessionTimeoutMs
 *     (counted from when it sent the last successful one);
 *   - treat a revocation as done only when a heartbeat whose ownedPartitions omits the revoked
 *     partitions has succeeded; if that has not happened within rebalanceTimeoutMs of the response
 *     that revoked them, drop every partition and rejoin (the coordinator fences it then);
 *   - on FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID, drop every partition and rejoin with epoch 0.
 */
import { RillError, errorCodeOf, type ErrorName } from '../lib/errors.js';
import * as limits from '../lib/limits.js';
import { assign } from './assignor.js';
import { Group, Member, type CommittedOffset, type GroupState, type MemberState } from './group.js';
import type { GroupRecord, PartitionMove, RebalanceEvent, RebalanceReason } from './records.js';
import {
  compareStrings,
  compareTopicPartitions,
  parsePartitionKey,
  partitionKey,
  sortedPartitions,
  type PartitionKey,
  type TopicPartition,
  type TopicsView,
} from './types.js';

export interface CoordinatorOptions {
  topics: TopicsView;
  /** Session timeout of a member that does not ask for one. Default 10 000. */
  sessionTimeoutMsDefault?: number;
  /** Bounds a member's requested session timeout must lie in. Defaults 1 000 / 1 800 000. */
  sessionTimeoutMsMin?: number;
  sessionTimeoutMsMax?: number;
  /** How often members should heartbeat. Default 1 000. */
  heartbeatIntervalMs?: number;
  /** Time a member has to release revoked partitions, when it does not ask. Default 60 000. */
  rebalanceTimeoutMsDefault?: number;
  /** Default limits.groupMembersMax. */
  groupMembersMax?: number;
  /** Default limits.rebalanceHistoryMax. */
  rebalanceHistoryMax?: number;
}

export interface HeartbeatRequest {
  groupId: string;
  memberId: string;
  /** 0 = join, -1 = leave, otherwise the member's current epoch. */
  memberEpoch: number;
  clientId?: string;
  host?: string;
  /** Requested on join; null/undefined = unchanged (or the broker default on join). */
  sessionTimeoutMs?: number | null;
  rebalanceTimeoutMs?: number | null;
  /** Required on join; null/undefined = unchanged afterwards. */
  subscribedTopics?: readonly string[] | null;
  /** Partitions the client currently owns; null/undefined = unchanged since the last heartbeat. */
  ownedPartitions?: readonly TopicPartition[] | null;
}

export interface HeartbeatResponse {
  errorCode: number;
  /** Why, naming the bad value, when errorCode is not 0. */
  errorMessage: string | null;
  memberId: string;
  memberEpoch: number;
  heartbeatIntervalMs: number;
  /** Partitions the member may consume now; anything it owns that is not here it must revoke. */
  assignment: TopicPartition[];
  records: GroupRecord[];
}

export interface CommitOffsetsRequest {
  groupId: string;
  /** '' (or anything) with memberEpoch -1 for a standalone commit. */
  memberId: string;
  memberEpoch: number;
  offsets: readonly { topic: string; partition: number; offset: bigint; metadata?: string }[];
}

export interface PartitionResult {
  topic: string;
  partition: number;
  errorCode: number;
}

export interface FetchedOffset {
  topic: string;
  partition: number;
  /** -1n when the group has no committed offset for the partition. */
  offset: bigint;
  metadata: string;
}

export interface MemberDescription {
  memberId: string;
  clientId: string;
  host: string;
  memberEpoch: number;
  state: MemberState;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  subscribedTopics: string[];
  /** May consume now. */
  assigned: TopicPartition[];
  /** Still held, must be released. */
  pendingRevocation: TopicPartition[];
  /** In its target but not yet given (someone else still holds them, or it has not heartbeated). */
  pendingAssignment: TopicPartition[];
  target: TopicPartition[];
}

export interface GroupDescription {
  groupId: string;
  state: GroupState;
  groupEpoch: number;
  assignmentEpoch: number;
  members: MemberDescription[];
  offsets: { topic: string; partition: number; committedOffset: bigint; metadata: string; commitTimestampMs: number }[];
  /** Oldest first; stableAfterMs = stableAtMs - atMs. */
  history: (RebalanceEvent & { stableAfterMs: number | null })[];
}

export interface GroupListing {
  groupId: string;
  state: GroupState;
  memberCount: number;
}

/** What an operation touched, turned into records from the final state at its end. */
class Changes {
  private readonly touched = new Map<
    string,
    { group: boolean; deleted: boolean; members: Set<string>; offsets: Set<PartitionKey>; events: Set<number> }
  >();

  private entry(groupId: string) {
    let entry = this.touched.get(groupId);
    if (entry === undefined) {
      entry = { group: false, deleted: false, members: new Set(), offsets: new Set(), events: new Set() };
      this.touched.set(groupId, entry);
    }
    return entry;
  }

  group(groupId: string): void {
    this.entry(groupId).group = true;
  }
  deleted(groupId: string): void {
    this.entry(groupId).deleted = true;
  }
  member(groupId: string, memberId: string): void {
    this.entry(groupId).members.add(memberId);
  }
  offset(groupId: string, key: PartitionKey): void {
    this.entry(groupId).offsets.add(key);
  }
  event(groupId: string, groupEpoch: number): void {
    this.entry(groupId).events.add(groupEpoch);
  }

  records(groups: ReadonlyMap<string, Group>): GroupRecord[] {
    const records: GroupRecord[] = [];
    for (const [groupId, entry] of this.touched) {
      const group = groups.get(groupId);
      if (group === undefined) {
        if (entry.deleted) records.push({ type: 'group-deleted', groupId });
        continue;
      }
      if (entry.group) records.push(group.groupRecord());
      for (const memberId of entry.members) {
        const member = group.members.get(memberId);
        records.push(member ? group.memberRecord(member) : { type: 'member-removed', groupId, memberId });
      }
      for (const key of entry.offsets) records.push(group.offsetRecord(key));
      for (const event of group.history) {
        if (entry.events.has(event.groupEpoch)) records.push({ type: 'rebalance', groupId, event: cloneEvent(event) });
      }
    }
    return records;
  }
}

function cloneEvent(event: RebalanceEvent): RebalanceEvent {
  return { ...event, moves: event.moves.map((move) => ({ ...move })) };
}

function byteLength(value: string): number {
  return Buffer.byteLength(value, 'utf8');
}

class RequestError extends Error {
  constructor(
    readonly code: ErrorName,
    readonly detail: string,
  ) {
    super(detail);
  }
}

export class Coordinator {
  private readonly topics: TopicsView;
  private readonly sessionTimeoutMsDefault: number;
  private readonly sessionTimeoutMsMin: number;
  private readonly sessionTimeoutMsMax: number;
  private readonly heartbeatIntervalMs: number;
  private readonly rebalanceTimeoutMsDefault: number;
  private readonly groupMembersMax: number;
  private readonly rebalanceHistoryMax: number;
  private readonly groups = new Map<string, Group>();

  constructor(options: CoordinatorOptions) {
    this.topics = options.topics;
    this.sessionTimeoutMsMin = options.sessionTimeoutMsMin ?? limits.sessionTimeoutMsMin;
    this.sessionTimeoutMsMax = options.sessionTimeoutMsMax ?? limits.sessionTimeoutMsMax;
    this.sessionTimeoutMsDefault = options.sessionTimeoutMsDefault ?? 10_000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 1000;
    this.rebalanceTimeoutMsDefault = options.rebalanceTimeoutMsDefault ?? 60_000;
    this.groupMembersMax = options.groupMembersMax ?? limits.groupMembersMax;
    this.rebalanceHistoryMax = options.rebalanceHistoryMax ?? limits.rebalanceHistoryMax;
    this.checkOptions();
  }

  private checkOptions(): void {
    const within = (name: string, value: number, min: number, max: number): void => {
      if (!Number.isSafeInteger(value) || value < min || value > max) {
        throw new RillError('INVALID_CONFIG', `${name} is ${value}; it must be an integer in [${min}, ${max}]`);
      }
    };
    within('sessionTimeoutMsMin', this.sessionTimeoutMsMin, 1, limits.sessionTimeoutMsMax);
    within('sessionTimeoutMsMax', this.sessionTimeoutMsMax, this.sessionTimeoutMsMin, limits.sessionTimeoutMsMax);
    within('sessionTimeoutMsDefault', this.sessionTimeoutMsDefault, this.sessionTimeoutMsMin, this.sessionTimeoutMsMax);
    within('heartbeatIntervalMs', this.heartbeatIntervalMs, 1, this.sessionTimeoutMsMax);
    within('rebalanceTimeoutMsDefault', this.rebalanceTimeoutMsDefault, 1, limits.rebalanceTimeoutMsMax);
    within('groupMembersMax', this.groupMembersMax, 1, limits.groupMembersMax);
    within('rebalanceHistoryMax', this.rebalanceHistoryMax, 1, limits.rebalanceHistoryMax);
  }

  // -------------------------------------------------------------------------------------------
  // Heartbeat: join, heartbeat, leave
  // -------------------------------------------------------------------------------------------

  heartbeat(request: HeartbeatRequest, nowMs: number): HeartbeatResponse {
    const changes = new Changes();
    try {
      this.checkHeartbeat(request);
      if (request.memberEpoch === -1) return this.leave(request, nowMs, changes);
      const member = request.memberEpoch === 0 ? this.join(request, nowMs, changes) : this.existingMember(request);
      const group = this.groups.get(request.groupId)!;
      if (request.memberEpoch !== 0) this.updateMember(group, member, request, nowMs, changes);
      member.sessionDeadlineMs = nowMs + member.sessionTimeoutMs;
      if (this.memberSeesTopicChange(group, member)) this.rebalance(group, 'topic-change', null, nowMs, changes);
      if (request.ownedPartitions !== null && request.ownedPartitions !== undefined) {
        const owned = new Set(request.ownedPartitions.map((tp) => partitionKey(tp.topic, tp.partition)));
        if (group.releaseUnowned(member, owned)) changes.member(group.groupId, member.memberId);
      }
      if (group.reconcile(member, nowMs)) changes.member(group.groupId, member.memberId);
      this.settle(group, nowMs, changes);
      return this.heartbeatResponse(member, changes);
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      return this.heartbeatError(request, error, changes);
    }
  }

  private heartbeatResponse(member: Member, changes: Changes): HeartbeatResponse {
    return {
      errorCode: 0,
      errorMessage: null,
      memberId: member.memberId,
      memberEpoch: member.memberEpoch,
      heartbeatIntervalMs: this.heartbeatIntervalFor(member.sessionTimeoutMs),
      assignment: sortedPartitions(member.assigned.keys()),
      records: changes.records(this.groups),
    };
  }

  private heartbeatError(request: HeartbeatRequest, error: RequestError, changes: Changes): HeartbeatResponse {
    return {
      errorCode: errorCodeOf(error.code),
      errorMessage: error.detail,
      memberId: typeof request.memberId === 'string' ? request.memberId : '',
      memberEpoch: request.memberEpoch,
      heartbeatIntervalMs: this.heartbeatIntervalMs,
      assignment: [],
      records: changes.records(this.groups),
    };
  }

  /** A member with a short session must heartbeat often enough to survive one lost heartbeat. */
  private heartbeatIntervalFor(sessionTimeoutMs: number): number {
    return Math.max(1, Math.min(this.heartbeatIntervalMs, Math.floor(sessionTimeoutMs / 3)));
  }

  private checkHeartbeat(request: HeartbeatRequest): void {
    checkGroupId(request.groupId);
    const { memberId, memberEpoch } = request;
    if (typeof memberId !== 'string' || memberId.length === 0 || byteLength(memberId) > limits.memberIdBytesMax) {
      throw new RequestError('INVALID_ARGUMENT', `memberId must be 1..${limits.memberIdBytesMax} bytes`);
    }
    if (!Number.isSafeInteger(memberEpoch) || memberEpoch < -1) {
      throw new RequestError('INVALID_ARGUMENT', `memberEpoch is ${memberEpoch}; it must be -1 (leave), 0 (join) or a member epoch`);
    }
    for (const [name, value] of [['clientId', request.clientId], ['host', request.host]] as const) {
      if (value !== undefined && (typeof value !== 'string' || byteLength(value) > limits.bodyStringBytesMax)) {
        throw new RequestError('INVALID_ARGUMENT', `${name} must be a string of at most ${limits.bodyStringBytesMax} bytes`);
      }
    }
    if (request.sessionTimeoutMs !== null && request.sessionTimeoutMs !== undefined) this.checkSessionTimeout(request.sessionTimeoutMs);
    if (request.rebalanceTimeoutMs !== null && request.rebalanceTimeoutMs !== undefined) checkRebalanceTimeout(request.rebalanceTimeoutMs);
    if (request.subscribedTopics !== null && request.subscribedTopics !== undefined) checkTopics(request.subscribedTopics);
    if (request.ownedPartitions !== null && request.ownedPartitions !== undefined) checkOwned(request.ownedPartitions);
  }

  private checkSessionTimeout(sessionTimeoutMs: number): void {
    const min = this.sessionTimeoutMsMin;
    const max = this.sessionTimeoutMsMax;
    if (!Number.isSafeInteger(sessionTimeoutMs) || sessionTimeoutMs < min || sessionTimeoutMs > max) {
      throw new RequestError('INVALID_SESSION_TIMEOUT', `sessionTimeoutMs is ${sessionTimeoutMs}; this broker accepts ${min}..${max}`);
    }
  }

  private join(request: HeartbeatRequest, nowMs: number, changes: Changes): Member {
    const existingGroup = this.groups.get(request.groupId);
    const existing = existingGroup?.members.get(request.memberId);
    if (existing !== undefined) return this.rejoin(existingGroup!, existing, request, nowMs, changes);
    if (request.subscribedTopics === null || request.subscribedTopics === undefined) {
      throw new RequestError('INVALID_ARGUMENT', 'subscribedTopics is required to join (memberEpoch 0)');
    }
    if (existingGroup !== undefined && existingGroup.members.size >= this.groupMembersMax) {
      throw new RequestError('GROUP_MAX_SIZE_REACHED', `group ${request.groupId} has ${existingGroup.members.size} members, the maximum`);
    }
    const group = existingGroup ?? this.createGroup(request.groupId, changes);
    const member = new Member(request.memberId);
    member.clientId = request.clientId ?? '';
    member.host = request.host ?? '';
    member.sessionTimeoutMs = request.sessionTimeoutMs ?? this.sessionTimeoutMsDefault;
    member.rebalanceTimeoutMs = request.rebalanceTimeoutMs ?? this.rebalanceTimeoutMsDefault;
    member.subscribedTopics = uniqueSorted(request.subscribedTopics);
    group.members.set(member.memberId, member);
    changes.member(group.groupId, member.memberId);
    this.rebalance(group, 'join', member.memberId, nowMs, changes);
    return member;
  }

  /** Epoch 0 from a known member: it dropped its partitions; it keeps its target. */
  private rejoin(group: Group, member: Member, request: HeartbeatRequest, nowMs: number, changes: Changes): Member {
    group.releaseAll(member);
    member.previousMemberEpoch = -1;
    member.memberEpoch = 0;
    changes.member(group.groupId, member.memberId);
    this.updateMember(group, member, request, nowMs, changes);
    return member;
  }

  private existingMember(request: HeartbeatRequest): Member {
    const member = this.groups.get(request.groupId)?.members.get(request.memberId);
    if (member === undefined) {
      throw new RequestError('UNKNOWN_MEMBER_ID', `member ${request.memberId} is not in group ${request.groupId}; rejoin with memberEpoch 0`);
    }
    if (request.memberEpoch === member.memberEpoch) return member;
    if (request.memberEpoch === member.previousMemberEpoch && this.ownsNoMoreThanHeld(member, request.ownedPartitions)) {
      return member;
    }
    throw new RequestError(
      'FENCED_MEMBER_EPOCH',
      `member ${request.memberId} sent epoch ${request.memberEpoch} but its epoch is ${member.memberEpoch}; release all partitions and rejoin with memberEpoch 0`,
    );
  }

  private ownsNoMoreThanHeld(member: Member, owned: readonly TopicPartition[] | null | undefined): boolean {
    if (owned === null || owned === undefined) return true;
    return owned.every((tp) => member.holds(partitionKey(tp.topic, tp.partition)));
  }

  private updateMember(group: Group, member: Member, request: HeartbeatRequest, nowMs: number, changes: Changes): void {
    const before = [member.clientId, member.host, member.sessionTimeoutMs, member.rebalanceTimeoutMs].join('\u0000');
    if (request.clientId !== undefined) member.clientId = request.clientId;
    if (request.host !== undefined) member.host = request.host;
    if (request.sessionTimeoutMs !== null && request.sessionTimeoutMs !== undefined) member.sessionTimeoutMs = request.sessionTimeoutMs;
    if (request.rebalanceTimeoutMs !== null && request.rebalanceTimeoutMs !== undefined) member.rebalanceTimeoutMs = request.rebalanceTimeoutMs;
    const after = [member.clientId, member.host, member.sessionTimeoutMs, member.rebalanceTimeoutMs].join('\u0000');
    let subscriptionChanged = false;
    if (request.subscribedTopics !== null && request.subscribedTopics !== undefined) {
      const topics = uniqueSorted(request.subscribedTopics);
      subscriptionChanged = topics.join('\u0000') !== member.subscribedTopics.join('\u0000');
      member.subscribedTopics = topics;
    }
    if (before !== after || subscriptionChanged) changes.member(group.groupId, member.memberId);
    if (subscriptionChanged) this.rebalance(group, 'subscription-change', member.memberId, nowMs, changes);
  }

  private leave(request: HeartbeatRequest, nowMs: number, changes: Changes): HeartbeatResponse {
    const group = this.groups.get(request.groupId);
    const member = group?.members.get(request.memberId);
    if (group !== undefined && member !== undefined) this.removeMember(group, member, 'leave', nowMs, changes);
    return {
      errorCode: 0,
      errorMessage: null,
      memberId: request.memberId,
      memberEpoch: -1,
      heartbeatIntervalMs: this.heartbeatIntervalMs,
      assignment: [],
      records: changes.records(this.groups),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Rebalancing
  // -------------------------------------------------------------------------------------------

  private createGroup(groupId: string, changes: Changes): Group {
    const group = new Group(groupId, this.rebalanceHistoryMax);
    this.groups.set(groupId, group);
    changes.group(groupId);
    return group;
  }

  private removeMember(group: Group, member: Member, reason: RebalanceReason, nowMs: number, changes: Changes): void {
    group.removeMember(member);
    changes.member(group.groupId, member.memberId);
    this.rebalance(group, reason, member.memberId, nowMs, changes);
  }

  /** Partition counts of every topic some member subscribes to and that exists. */
  private currentPartitionCounts(group: Group): Map<string, number> {
    const counts = new Map<string, number>();
    for (const member of group.members.values()) {
      for (const topic of member.subscribedTopics) {
        if (counts.has(topic)) continue;
        const count = this.topics.partitionCount(topic);
        if (count !== undefined && count > 0) counts.set(topic, count);
      }
    }
    return counts;
  }

  /** Bumps the group epoch and computes the new target at once, recording what moved. */
  private rebalance(group: Group, reason: RebalanceReason, memberId: string | null, nowMs: number, changes: Changes): void {
    const previous = new Map([...group.target].map(([id, keys]) => [id, [...keys].map(parsePartitionKey)]));
    const partitionCounts = this.currentPartitionCounts(group);
    const next = assign({
      members: [...group.members.values()].map((member) => ({ memberId: member.memberId, subscribedTopics: member.subscribedTopics })),
      partitionCounts,
      previous,
    });
    const nextTarget = new Map([...next].map(([id, partitions]) => [id, new Set(partitions.map((tp) => partitionKey(tp.topic, tp.partition)))]));
    const moves = targetMoves(group.target, nextTarget);
    group.groupEpoch += 1;
    group.assignmentEpoch = group.groupEpoch;
    group.target = nextTarget;
    group.partitionCounts = partitionCounts;
    group.putHistory({
      groupEpoch: group.groupEpoch,
      atMs: nowMs,
      reason,
      memberId,
      moves: moves.slice(0, limits.rebalanceMovesMax),
      movesOmitted: Math.max(0, moves.length - limits.rebalanceMovesMax),
      stableAtMs: null,
    });
    changes.group(group.groupId);
    changes.event(group.groupId, group.groupEpoch);
  }

  /**
   * A heartbeat checks only the member's own topics against the metadata of the last target, so
   * it stays O(subscriptions); onTopicsChanged checks whole groups.
   */
  private memberSeesTopicChange(group: Group, member: Member): boolean {
    for (const topic of member.subscribedTopics) {
      const count = this.topics.partitionCount(topic);
      if ((count !== undefined && count > 0 ? count : undefined) !== group.partitionCounts.get(topic)) return true;
    }
    return false;
  }

  private refreshTopicMetadata(group: Group, nowMs: number, changes: Changes): boolean {
    const counts = this.currentPartitionCounts(group);
    if (sameCounts(counts, group.partitionCounts)) return false;
    this.rebalance(group, 'topic-change', null, nowMs, changes);
    return true;
  }

  /** Marks open rebalance events stable once every member runs its target. */
  private settle(group: Group, nowMs: number, changes: Changes): void {
    // state() walks every member; only pay for it while a rebalance is open.
    if (group.history.every((event) => event.stableAtMs !== null)) return;
    if (group.state() === 'reconciling') return;
    for (const event of group.history) {
      if (event.stableAtMs !== null) continue;
      event.stableAtMs = nowMs;
      changes.event(group.groupId, event.groupEpoch);
    }
  }

  /**
   * Expires members silent for their session timeout and fences members that did not release
   * revoked partitions within their rebalance timeout. Call it often (every 100-500 ms): expiry
   * is as late as the tick interval.
   */
  tick(nowMs: number): GroupRecord[] {
    const changes = new Changes();
    for (const group of this.sortedGroups()) {
      for (const member of sortedMembers(group)) {
        member.sessionDeadlineMs ??= nowMs + member.sessionTimeoutMs;
        if (member.pendingRevocation.size > 0) member.revocationDeadlineMs ??= nowMs + member.rebalanceTimeoutMs;
        if (nowMs >= member.sessionDeadlineMs) {
          this.removeMember(group, member, 'session-timeout', nowMs, changes);
        } else if (member.revocationDeadlineMs !== null && nowMs >= member.revocationDeadlineMs) {
          this.removeMember(group, member, 'fenced', nowMs, changes);
        }
      }
      this.settle(group, nowMs, changes);
    }
    return changes.records(this.groups);
  }

  /**
   * Topics were created, deleted or grew: groups subscribed to a changed topic rebalance, and
   * committed offsets of partitions that no longer exist are deleted.
   */
  onTopicsChanged(nowMs: number): GroupRecord[] {
    const changes = new Changes();
    for (const group of this.sortedGroups()) {
      if (group.members.size > 0) this.refreshTopicMetadata(group, nowMs, changes);
      for (const key of [...group.offsets.keys()]) {
        const { topic, partition } = parsePartitionKey(key);
        const count = this.topics.partitionCount(topic);
        if (count !== undefined && partition < count) continue;
        group.offsets.delete(key);
        changes.offset(group.groupId, key);
      }
      this.settle(group, nowMs, changes);
    }
    return changes.records(this.groups);
  }

  // -------------------------------------------------------------------------------------------
  // Offsets
  // -------------------------------------------------------------------------------------------

  commitOffsets(request: CommitOffsetsRequest, nowMs: number): { results: PartitionResult[]; records: GroupRecord[] } {
    const changes = new Changes();
    const rejectAll = (code: ErrorName) => ({
      results: request.offsets.map(({ topic, partition }) => ({ topic, partition, errorCode: errorCodeOf(code) })),
      records: [],
    });
    if (!isValidGroupId(request.groupId)) return rejectAll('INVALID_GROUP_ID');
    if (request.offsets.length > limits.requestPartitionsMax) return rejectAll('INVALID_ARGUMENT');
    const standalone = request.memberEpoch === -1;
    let group = this.groups.get(request.groupId);
    const member = group?.members.get(request.memberId);
    if (standalone && group !== undefined && group.members.size > 0) return rejectAll('NON_EMPTY_GROUP');
    if (!standalone && member === undefined) return rejectAll('UNKNOWN_MEMBER_ID');
    group ??= this.createGroup(request.groupId, changes);
    const results = request.offsets.map((entry) => {
      const code = this.checkCommit(entry, member, request.memberEpoch);
      if (code === 'NONE') this.storeOffset(group, entry, nowMs, changes);
      return { topic: entry.topic, partition: entry.partition, errorCode: errorCodeOf(code) };
    });
    return { results, records: changes.records(this.groups) };
  }

  private checkCommit(
    entry: { topic: string; partition: number; offset: bigint; metadata?: string },
    member: Member | undefined,
    memberEpoch: number,
  ): ErrorName {
    if (!this.partitionExists(entry.topic, entry.partition)) return 'UNKNOWN_TOPIC_OR_PARTITION';
    if (!isValidOffset(entry.offset, entry.metadata)) return 'INVALID_ARGUMENT';
    if (member === undefined) return 'NONE';
    const assignmentEpoch = member.heldEpoch(partitionKey(entry.topic, entry.partition));
    if (assignmentEpoch === undefined) return 'NOT_PARTITION_OWNER';
    if (memberEpoch < assignmentEpoch || memberEpoch > member.memberEpoch) return 'FENCED_MEMBER_EPOCH';
    return 'NONE';
  }

  private partitionExists(topic: string, partition: number): boolean {
    if (typeof topic !== 'string' || !Number.isSafeInteger(partition) || partition < 0) return false;
    const count = this.topics.partitionCount(topic);
    return count !== undefined && partition < count;
  }

  private storeOffset(group: Group, entry: { topic: string; partition: number; offset: bigint; metadata?: string }, nowMs: number, changes: Changes): void {
    const key = partitionKey(entry.topic, entry.partition);
    const committed: CommittedOffset = { offset: entry.offset, metadata: entry.metadata ?? '', commitTimestampMs: nowMs };
    group.offsets.set(key, committed);
    changes.offset(group.groupId, key);
  }

  fetchOffsets(groupId: string, partitions?: readonly TopicPartition[]): FetchedOffset[] {
    const group = this.groups.get(groupId);
    const wanted = partitions ?? sortedPartitions(group?.offsets.keys() ?? []);
    return wanted.map(({ topic, partition }) => {
      const committed = group?.offsets.get(partitionKey(topic, partition));
      return { topic, partition, offset: committed?.offset ?? -1n, metadata: committed?.metadata ?? '' };
    });
  }

  /** Admin: sets committed offsets. All-or-nothing; throws RillError. */
  resetOffsets(groupId: string, offsets: readonly { topic: string; partition: number; offset: bigint }[], nowMs: number): GroupRecord[] {
    if (!isValidGroupId(groupId)) throw new RillError('INVALID_GROUP_ID', `group id ${JSON.stringify(groupId)} is invalid`);
    const existing = this.groups.get(groupId);
    if (existing !== undefined && existing.members.size > 0) {
      throw new RillError('NON_EMPTY_GROUP', `group ${groupId} has ${existing.members.size} live members; stop them before resetting offsets`);
    }
    for (const entry of offsets) {
      if (!this.partitionExists(entry.topic, entry.partition)) {
        throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `${entry.topic}/${entry.partition} does not exist`);
      }
      if (!isValidOffset(entry.offset, '')) throw new RillError('INVALID_ARGUMENT', `offset ${entry.offset} is outside 0..${limits.offsetMax}`);
    }
    const changes = new Changes();
    const group = existing ?? this.createGroup(groupId, changes);
    for (const entry of offsets) this.storeOffset(group, entry, nowMs, changes);
    return changes.records(this.groups);
  }

  /** Admin: deletes an empty group with its offsets and history. Throws RillError. */
  deleteGroup(groupId: string): GroupRecord[] {
    const group = this.groups.get(groupId);
    if (group === undefined) throw new RillError('GROUP_ID_NOT_FOUND', `no group ${JSON.stringify(groupId)}`);
    if (group.members.size > 0) throw new RillError('NON_EMPTY_GROUP', `group ${groupId} has ${group.members.size} live members`);
    this.groups.delete(groupId);
    const changes = new Changes();
    changes.deleted(groupId);
    return changes.records(this.groups);
  }

  /** Iteration order never depends on arrival order, so a replayed coordinator behaves the same. */
  private sortedGroups(): Group[] {
    return [...this.groups.values()].sort((a, b) => compareStrings(a.groupId, b.groupId));
  }

  // -------------------------------------------------------------------------------------------
  // Views
  // -------------------------------------------------------------------------------------------

  listGroups(): GroupListing[] {
    return [...this.groups.values()]
      .map((group) => ({ groupId: group.groupId, state: group.state(), memberCount: group.members.size }))
      .sort((a, b) => compareStrings(a.groupId, b.groupId));
  }

  /** Throws RillError GROUP_ID_NOT_FOUND. */
  describeGroup(groupId: string): GroupDescription {
    const group = this.groups.get(groupId);
    if (group === undefined) throw new RillError('GROUP_ID_NOT_FOUND', `no group ${JSON.stringify(groupId)}`);
    const members = sortedMembers(group).map((member) => describeMember(group, member));
    const offsets = sortedPartitions(group.offsets.keys()).map(({ topic, partition }) => {
      const committed = group.offsets.get(partitionKey(topic, partition))!;
      return { topic, partition, committedOffset: committed.offset, metadata: committed.metadata, commitTimestampMs: committed.commitTimestampMs };
    });
    const history = group.history.map((event) => ({
      ...cloneEvent(event),
      stableAfterMs: event.stableAtMs === null ? null : event.stableAtMs - event.atMs,
    }));
    return { groupId, state: group.state(), groupEpoch: group.groupEpoch, assignmentEpoch: group.assignmentEpoch, members, offsets, history };
  }

  /** Which member may consume a partition now (assigned to it, not being revoked), if any. */
  ownerOf(groupId: string, topic: string, partition: number): string | undefined {
    const group = this.groups.get(groupId);
    const holder = group?.holderOf(partitionKey(topic, partition));
    if (group === undefined || holder === undefined) return undefined;
    return group.members.get(holder)?.assigned.has(partitionKey(topic, partition)) ? holder : undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Durability
  // -------------------------------------------------------------------------------------------

  /** Applies one record written by this class (or by snapshot). Deadlines start at the next tick. */
  replay(record: GroupRecord): void {
    if (record.type === 'group-deleted') {
      this.groups.delete(record.groupId);
      return;
    }
    let group = this.groups.get(record.groupId);
    if (group === undefined) {
      group = new Group(record.groupId, this.rebalanceHistoryMax);
      this.groups.set(record.groupId, group);
    }
    switch (record.type) {
      case 'group':
        return group.restoreGroup(record);
      case 'member':
        return group.restoreMember(record);
      case 'member-removed': {
        const member = group.members.get(record.memberId);
        if (member !== undefined) group.removeMember(member);
        return;
      }
      case 'offset':
        group.offsets.set(partitionKey(record.topic, record.partition), {
          offset: record.offset,
          metadata: record.metadata,
          commitTimestampMs: record.commitTimestampMs,
        });
        return;
      case 'offset-deleted':
        group.offsets.delete(partitionKey(record.topic, record.partition));
        return;
      case 'rebalance':
        group.putHistory(cloneEvent(record.event));
        return;
    }
  }

  /** The fewest records that rebuild the current state (for compaction of the group log). */
  snapshot(): GroupRecord[] {
    const records: GroupRecord[] = [];
    for (const group of this.sortedGroups()) {
      records.push(group.groupRecord());
      for (const member of sortedMembers(group)) records.push(group.memberRecord(member));
      for (const { topic, partition } of sortedPartitions(group.offsets.keys())) records.push(group.offsetRecord(partitionKey(topic, partition)));
      for (const event of group.history) records.push({ type: 'rebalance', groupId: group.groupId, event: cloneEvent(event) });
    }
    return records;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function sortedMembers(group: Group): Member[] {
  return [...group.members.values()].sort((a, b) => compareStrings(a.memberId, b.memberId));
}

function describeMember(group: Group, member: Member): MemberDescription {
  const target = group.targetOf(member.memberId);
  return {
    memberId: member.memberId,
    clientId: member.clientId,
    host: member.host,
    memberEpoch: member.memberEpoch,
    state: group.memberState(member),
    sessionTimeoutMs: member.sessionTimeoutMs,
    rebalanceTimeoutMs: member.rebalanceTimeoutMs,
    subscribedTopics: [...member.subscribedTopics],
    assigned: sortedPartitions(member.assigned.keys()),
    pendingRevocation: sortedPartitions(member.pendingRevocation.keys()),
    pendingAssignment: sortedPartitions([...target].filter((key) => !member.assigned.has(key))),
    target: sortedPartitions(target),
  };
}

function isValidGroupId(groupId: unknown): groupId is string {
  if (typeof groupId !== 'string' || groupId.length === 0) return false;
  // Control characters would make ids ambiguous in logs and the CLI.
  if (/[\u0000-\u001f\u007f]/.test(groupId)) return false;
  return byteLength(groupId) <= limits.groupIdBytesMax;
}

function checkGroupId(groupId: unknown): void {
  if (!isValidGroupId(groupId)) {
    throw new RequestError('INVALID_GROUP_ID', `group id ${JSON.stringify(groupId)} must be 1..${limits.groupIdBytesMax} bytes without control characters`);
  }
}

function checkRebalanceTimeout(rebalanceTimeoutMs: number): void {
  const { rebalanceTimeoutMsMin: min, rebalanceTimeoutMsMax: max } = limits;
  if (!Number.isSafeInteger(rebalanceTimeoutMs) || rebalanceTimeoutMs < min || rebalanceTimeoutMs > max) {
    throw new RequestError('INVALID_ARGUMENT', `rebalanceTimeoutMs is ${rebalanceTimeoutMs}; it must be in ${min}..${max}`);
  }
}

function checkTopics(topics: readonly string[]): void {
  if (!Array.isArray(topics) || topics.length > limits.groupSubscribedTopicsMax) {
    throw new RequestError('INVALID_ARGUMENT', `subscribedTopics must list at most ${limits.groupSubscribedTopicsMax} topics`);
  }
  for (const topic of topics) {
    if (typeof topic !== 'string' || topic.length === 0 || byteLength(topic) > limits.topicNameBytesMax || topic.includes('\u0000')) {
      throw new RequestError('INVALID_ARGUMENT', `subscribed topic ${JSON.stringify(topic)} is not a valid topic name`);
    }
  }
}

function checkOwned(owned: readonly TopicPartition[]): void {
  if (!Array.isArray(owned) || owned.length > limits.requestPartitionsMax) {
    throw new RequestError('INVALID_ARGUMENT', `ownedPartitions must list at most ${limits.requestPartitionsMax} partitions`);
  }
  for (const tp of owned) {
    if (typeof tp?.topic !== 'string' || !Number.isSafeInteger(tp.partition) || tp.partition < 0) {
      throw new RequestError('INVALID_ARGUMENT', `owned partition ${JSON.stringify(tp)} is invalid`);
    }
  }
}

function isValidOffset(offset: unknown, metadata: unknown): boolean {
  if (typeof offset !== 'bigint' || offset < 0n || offset > limits.offsetMax) return false;
  if (metadata === undefined) return true;
  return typeof metadata === 'string' && byteLength(metadata) <= limits.offsetMetadataBytesMax;
}

function uniqueSorted(values: readonly string[]): string[] {
  return [...new Set(values)].sort(compareStrings);
}

function sameCounts(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [topic, count] of a) if (b.get(topic) !== count) return false;
  return true;
}

function targetMoves(before: ReadonlyMap<string, ReadonlySet<PartitionKey>>, after: ReadonlyMap<string, ReadonlySet<PartitionKey>>): PartitionMove[] {
  const ownerBefore = ownerIndex(before);
  const ownerAfter = ownerIndex(after);
  const keys = new Set([...ownerBefore.keys(), ...ownerAfter.keys()]);
  const moves: PartitionMove[] = [];
  for (const key of keys) {
    const from = ownerBefore.get(key) ?? null;
    const to = ownerAfter.get(key) ?? null;
    if (from !== to) moves.push({ ...parsePartitionKey(key), from, to });
  }
  return moves.sort(compareTopicPartitions);
}

function ownerIndex(target: ReadonlyMap<string, ReadonlySet<PartitionKey>>): Map<PartitionKey, string> {
  const owners = new Map<PartitionKey, string>();
  for (const [memberId, keys] of target) for (const key of keys) owners.set(key, memberId);
  return owners;
}
