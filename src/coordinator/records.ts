/**
 * GroupRecord: the durable form of the coordinator's state. Every record is a full upsert (or
 * tombstone) of one entity (a group's epochs and target, one member, one committed offset, one
 * rebalance event), so replaying any suffix of history in order after a snapshot is harmless and
 * the last record about an entity wins.
 *
 * parseGroupRecord validates a decoded value from disk and throws DecodeError('CORRUPT_LOG') with
 * a reason; it never trusts lengths or types.
 */
import { DecodeError } from '../lib/errors.js';
import { offsetMax } from '../lib/limits.js';
import type { TopicPartition } from './types.js';

export type RebalanceReason =
  | 'join'
  | 'leave'
  | 'session-timeout'
  | 'fenced'
  | 'subscription-change'
  | 'topic-change';

export interface PartitionMove {
  topic: string;
  partition: number;
  /** Previous target owner, null if the partition is new to the group. */
  from: string | null;
  /** New target owner, null if the partition left the group (topic deleted or unsubscribed). */
  to: string | null;
}

export interface RebalanceEvent {
  /** Group epoch the rebalance produced. */
  groupEpoch: number;
  atMs: number;
  reason: RebalanceReason;
  /** The member whose join/leave/expiry/... caused it, null for topic changes. */
  memberId: string | null;
  /** Target changes, sorted by partition; at most rebalanceMovesMax, the rest counted in movesOmitted. */
  moves: PartitionMove[];
  movesOmitted: number;
  /** When every member had reconciled to the target (the group was next Stable), null until then. */
  stableAtMs: number | null;
}

/** A partition a member holds, with the group epoch at which it was given to the member. */
export interface HeldPartition extends TopicPartition {
  assignmentEpoch: number;
}

export interface MemberAssignment {
  memberId: string;
  partitions: TopicPartition[];
}

export type GroupRecord =
  | {
      type: 'group';
      groupId: string;
      groupEpoch: number;
      assignmentEpoch: number;
      /** Partition counts of the subscribed topics the target was computed with. */
      partitionCounts: { topic: string; count: number }[];
      target: MemberAssignment[];
    }
  | {
      type: 'member';
      groupId: string;
      memberId: string;
      clientId: string;
      host: string;
      sessionTimeoutMs: number;
      rebalanceTimeoutMs: number;
      subscribedTopics: string[];
      memberEpoch: number;
      previousMemberEpoch: number;
      assigned: HeldPartition[];
      pendingRevocation: HeldPartition[];
    }
  | { type: 'member-removed'; groupId: string; memberId: string }
  | {
      type: 'offset';
      groupId: string;
      topic: string;
      partition: number;
      offset: bigint;
      metadata: string;
      commitTimestampMs: number;
    }
  | { type: 'offset-deleted'; groupId: string; topic: string; partition: number }
  | { type: 'rebalance'; groupId: string; event: RebalanceEvent }
  | { type: 'group-deleted'; groupId: string };

// ---------------------------------------------------------------------------------------------
// Validation of records read back from disk
// ---------------------------------------------------------------------------------------------

/** Arrays in a record are bounded by what the coordinator can produce: partitions of all topics. */
const recordArrayLengthMax = 10_000_000;

function fail(reason: string): never {
  throw new DecodeError('CORRUPT_LOG', `group record: ${reason}`);
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`${what} is not a map`);
  return value as Record<string, unknown>;
}

function string(value: unknown, what: string): string {
  if (typeof value !== 'string') fail(`${what} is not a string`);
  return value;
}

/** A safe integer; 64-bit integers may arrive as bigint. */
function integer(value: unknown, what: string): number {
  const asNumber = typeof value === 'bigint' ? Number(value) : value;
  if (typeof asNumber !== 'number' || !Number.isSafeInteger(asNumber)) fail(`${what} is not a safe integer`);
  return asNumber;
}

function nullable<T>(value: unknown, parse: (value: unknown) => T): T | null {
  return value === null || value === undefined ? null : parse(value);
}

function array<T>(value: unknown, what: string, parse: (item: unknown, what: string) => T): T[] {
  if (!Array.isArray(value)) fail(`${what} is not an array`);
  if (value.length > recordArrayLengthMax) fail(`${what} has ${value.length} entries`);
  return value.map((item, index) => parse(item, `${what}[${index}]`));
}

function topicPartition(value: unknown, what: string): TopicPartition {
  const map = object(value, what);
  return { topic: string(map.topic, `${what}.topic`), partition: integer(map.partition, `${what}.partition`) };
}

function heldPartition(value: unknown, what: string): HeldPartition {
  const map = object(value, what);
  return { ...topicPartition(map, what), assignmentEpoch: integer(map.assignmentEpoch, `${what}.assignmentEpoch`) };
}

function offset(value: unknown, what: string): bigint {
  const asBigint = typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : value;
  if (typeof asBigint !== 'bigint' || asBigint < 0n || asBigint > offsetMax) fail(`${what} is not an offset`);
  return asBigint;
}

const reasons: readonly RebalanceReason[] = ['join', 'leave', 'session-timeout', 'fenced', 'subscription-change', 'topic-change'];

function rebalanceEvent(value: unknown): RebalanceEvent {
  const map = object(value, 'event');
  const reason = string(map.reason, 'event.reason');
  if (!reasons.includes(reason as RebalanceReason)) fail(`unknown rebalance reason ${JSON.stringify(reason)}`);
  return {
    groupEpoch: integer(map.groupEpoch, 'event.groupEpoch'),
    atMs: integer(map.atMs, 'event.atMs'),
    reason: reason as RebalanceReason,
    memberId: nullable(map.memberId, (item) => string(item, 'event.memberId')),
    moves: array(map.moves, 'event.moves', (item, what) => {
      const move = object(item, what);
      return {
        ...topicPartition(move, what),
        from: nullable(move.from, (from) => string(from, `${what}.from`)),
        to: nullable(move.to, (to) => string(to, `${what}.to`)),
      };
    }),
    movesOmitted: integer(map.movesOmitted, 'event.movesOmitted'),
    stableAtMs: nullable(map.stableAtMs, (item) => integer(item, 'event.stableAtMs')),
  };
}

function groupRecord(map: Record<string, unknown>, groupId: string): GroupRecord {
  return {
    type: 'group',
    groupId,
    groupEpoch: integer(map.groupEpoch, 'groupEpoch'),
    assignmentEpoch: integer(map.assignmentEpoch, 'assignmentEpoch'),
    partitionCounts: array(map.partitionCounts, 'partitionCounts', (item, what) => {
      const entry = object(item, what);
      return { topic: string(entry.topic, `${what}.topic`), count: integer(entry.count, `${what}.count`) };
    }),
    target: array(map.target, 'target', (item, what) => {
      const entry = object(item, what);
      return {
        memberId: string(entry.memberId, `${what}.memberId`),
        partitions: array(entry.partitions, `${what}.partitions`, topicPartition),
      };
    }),
  };
}

function memberRecord(map: Record<string, unknown>, groupId: string): GroupRecord {
  return {
    type: 'member',
    groupId,
    memberId: string(map.memberId, 'memberId'),
    clientId: string(map.clientId, 'clientId'),
    host: string(map.host, 'host'),
    sessionTimeoutMs: integer(map.sessionTimeoutMs, 'sessionTimeoutMs'),
    rebalanceTimeoutMs: integer(map.rebalanceTimeoutMs, 'rebalanceTimeoutMs'),
    subscribedTopics: array(map.subscribedTopics, 'subscribedTopics', string),
    memberEpoch: integer(map.memberEpoch, 'memberEpoch'),
    previousMemberEpoch: integer(map.previousMemberEpoch, 'previousMemberEpoch'),
    assigned: array(map.assigned, 'assigned', heldPartition),
    pendingRevocation: array(map.pendingRevocation, 'pendingRevocation', heldPartition),
  };
}

export function parseGroupRecord(value: unknown): GroupRecord {
  const map = object(value, 'record');
  const groupId = string(map.groupId, 'groupId');
  switch (map.type) {
    case 'group':
      return groupRecord(map, groupId);
    case 'member':
      return memberRecord(map, groupId);
    case 'member-removed':
      return { type: 'member-removed', groupId, memberId: string(map.memberId, 'memberId') };
    case 'offset':
      return {
        type: 'offset',
        groupId,
        topic: string(map.topic, 'topic'),
        partition: integer(map.partition, 'partition'),
        offset: offset(map.offset, 'offset'),
        metadata: string(map.metadata, 'metadata'),
        commitTimestampMs: integer(map.commitTimestampMs, 'commitTimestampMs'),
      };
    case 'offset-deleted':
      return { type: 'offset-deleted', groupId, topic: string(map.topic, 'topic'), partition: integer(map.partition, 'partition') };
    case 'rebalance':
      return { type: 'rebalance', groupId, event: rebalanceEvent(map.event) };
    case 'group-deleted':
      return { type: 'group-deleted', groupId };
    default:
      return fail(`unknown record type ${JSON.stringify(map.type)}`);
  }
}
