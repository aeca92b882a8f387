/**
 * MessagePack bodies of the consumer-group APIs: FindCoordinator, ConsumerGroupHeartbeat,
 * OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, ResetGroupOffsets. Partitions travel
 * grouped by topic: [{topic, partitions: [n, ...]}]. Field-by-field descriptions: protocol/apis/.
 */
import { requestSchema as rq, responseSchema as rs, type Schema } from './schema.js';
import { bodyStringBytesMax, groupIdBytesMax, memberIdBytesMax, offsetMax, offsetMetadataBytesMax, requestPartitionsMax, requestTopicsMax, topicNameBytesMax, topicPartitionsMax } from '../lib/limits.js';

export interface TopicPartitions {
  topic: string;
  partitions: number[];
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export function groupByTopic(list: readonly TopicPartition[]): TopicPartitions[] {
  const byTopic = new Map<string, number[]>();
  for (const { topic, partition } of list) {
    let partitions = byTopic.get(topic);
    if (partitions === undefined) byTopic.set(topic, (partitions = []));
    partitions.push(partition);
  }
  return [...byTopic].map(([topic, partitions]) => ({ topic, partitions: partitions.sort((a, b) => a - b) }));
}

export function flatten(list: readonly TopicPartitions[]): TopicPartition[] {
  return list.flatMap(({ topic, partitions }) => partitions.map((partition) => ({ topic, partition })));
}

function topicPartitions(s: Schema, value: unknown, path: string): TopicPartitions[] {
  let total = 0;
  return s.array(value, path, requestTopicsMax).map((entry, i) => {
    const e = s.object(entry, `${path}[${i}]`);
    const partitions = s.array(e.partitions, `${path}[${i}].partitions`, topicPartitionsMax).map((p, j) => s.int(p, `${path}[${i}].partitions[${j}]`, 0, topicPartitionsMax - 1));
    total += partitions.length;
    if (total > requestPartitionsMax) s.fail(path, `at most ${requestPartitionsMax} partitions`, total);
    return { topic: s.string(e.topic, `${path}[${i}].topic`, topicNameBytesMax), partitions };
  });
}

function groupId(s: Schema, value: unknown): string {
  return s.string(value, 'groupId', groupIdBytesMax);
}

// ---- FindCoordinator ----------------------------------------------------------------------------

export function decodeFindCoordinatorRequest(value: unknown): { key: string } {
  const obj = rq.object(value, 'body');
  return { key: groupId(rq, obj.key) };
}

export function decodeFindCoordinatorResponse(value: unknown): { nodeId: number; host: string; port: number } {
  const obj = rs.object(value, 'body');
  return { nodeId: rs.int(obj.nodeId, 'nodeId', -1, 0x7fffffff), host: rs.string(obj.host, 'host'), port: rs.int(obj.port, 'port', 0, 65535) };
}

// ---- ConsumerGroupHeartbeat ---------------------------------------------------------------------

export interface HeartbeatRequestBody {
  groupId: string;
  memberId: string;
  memberEpoch: number;
  clientId?: string | undefined;
  sessionTimeoutMs?: number | undefined;
  rebalanceTimeoutMs?: number | undefined;
  /** null/absent: unchanged. */
  subscribedTopics: string[] | null;
  /** null/absent: unchanged since the last heartbeat. */
  ownedPartitions: TopicPartitions[] | null;
}

export function decodeHeartbeatRequest(value: unknown): HeartbeatRequestBody {
  const obj = rq.object(value, 'body');
  return {
    groupId: groupId(rq, obj.groupId),
    memberId: rq.string(obj.memberId, 'memberId', memberIdBytesMax),
    memberEpoch: rq.int(obj.memberEpoch, 'memberEpoch', -1, 0x7fffffff),
    clientId: rq.optionalString(obj.clientId, 'clientId', bodyStringBytesMax),
    sessionTimeoutMs: rq.optionalInt(obj.sessionTimeoutMs, 'sessionTimeoutMs', 0, 0x7fffffff),
    rebalanceTimeoutMs: rq.optionalInt(obj.rebalanceTimeoutMs, 'rebalanceTimeoutMs', 0, 0x7fffffff),
    subscribedTopics: obj.subscribedTopics === undefined || obj.subscribedTopics === null
      ? null
      : rq.array(obj.subscribedTopics, 'subscribedTopics', requestTopicsMax).map((t, i) => rq.string(t, `subscribedTopics[${i}]`, topicNameBytesMax)),
    ownedPartitions: obj.ownedPartitions === undefined || obj.ownedPartitions === null ? null : topicPartitions(rq, obj.ownedPartitions, 'ownedPartitions'),
  };
}

export interface HeartbeatResponseBody {
  errorCode: number;
  errorMessage: string | null;
  memberId: string;
  memberEpoch: number;
  heartbeatIntervalMs: number;
  assignment: TopicPartitions[];
}

export function decodeHeartbeatResponse(value: unknown): HeartbeatResponseBody {
  const obj = rs.object(value, 'body');
  return {
    errorCode: rs.int(obj.errorCode, 'errorCode', -32768, 32767),
    errorMessage: rs.optionalString(obj.errorMessage, 'errorMessage') ?? null,
    memberId: rs.string(obj.memberId, 'memberId', memberIdBytesMax),
    memberEpoch: rs.int(obj.memberEpoch, 'memberEpoch', -2, 0x7fffffff),
    heartbeatIntervalMs: rs.int(obj.heartbeatIntervalMs, 'heartbeatIntervalMs', 0, 0x7fffffff),
    assignment: topicPartitions(rs, obj.assignment ?? [], 'assignment'),
  };
}

// ---- OffsetCommit / OffsetFetch -----------------------------------------------------------------

export interface CommitPartition {
  partition: number;
  offset: bigint;
  metadata?: string | undefined;
}

export interface OffsetCommitRequestBody {
  groupId: string;
  memberId: string;
  memberEpoch: number;
  topics: { name: string; partitions: CommitPartition[] }[];
}

export function decodeOffsetCommitRequest(value: unknown): OffsetCommitRequestBody {
  const obj = rq.object(value, 'body');
  let total = 0;
  return {
    groupId: groupId(rq, obj.groupId),
    memberId: rq.string(obj.memberId ?? '', 'memberId', memberIdBytesMax),
    memberEpoch: rq.int(obj.memberEpoch, 'memberEpoch', -1, 0x7fffffff),
    topics: rq.array(obj.topics, 'topics', requestTopicsMax).map((t, i) => {
      const e = rq.object(t, `topics[${i}]`);
      const partitions = rq.array(e.partitions, `topics[${i}].partitions`, topicPartitionsMax);
      total += partitions.length;
      if (total > requestPartitionsMax) rq.fail('topics', `at most ${requestPartitionsMax} partitions`, total);
      return {
        name: rq.string(e.name, `topics[${i}].name`, topicNameBytesMax),
        partitions: partitions.map((p, j) => {
          const pe = rq.object(p, `topics[${i}].partitions[${j}]`);
          return {
            partition: rq.int(pe.partition, 'partition', 0, topicPartitionsMax - 1),
            offset: rq.bigint(pe.offset, 'offset', 0n, offsetMax),
            metadata: rq.optionalString(pe.metadata, 'metadata', offsetMetadataBytesMax),
          };
        }),
      };
    }),
  };
}

export interface PartitionErrors {
  name: string;
  partitions: { partition: number; errorCode: number }[];
}

export function decodeOffsetCommitResponse(value: unknown): PartitionErrors[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.topics, 'topics').map((t, i) => {
    const e = rs.object(t, `topics[${i}]`);
    return {
      name: rs.string(e.name, 'name', topicNameBytesMax),
      partitions: rs.array(e.partitions, 'partitions').map((p, j) => {
        const pe = rs.object(p, `topics[${i}].partitions[${j}]`);
        return { partition: rs.int(pe.partition, 'partition', 0, topicPartitionsMax - 1), errorCode: rs.int(pe.errorCode, 'errorCode', -32768, 32767) };
      }),
    };
  });
}

export function decodeOffsetFetchRequest(value: unknown): { groupId: string; topics: TopicPartitions[] | null } {
  const obj = rq.object(value, 'body');
  return { groupId: groupId(rq, obj.groupId), topics: obj.topics === undefined || obj.topics === null ? null : topicPartitions(rq, obj.topics, 'topics') };
}

export interface FetchedOffsetBody {
  topic: string;
  partition: number;
  /** -1n: no committed offset. */
  offset: bigint;
  metadata: string;
}

export function decodeOffsetFetchResponse(value: unknown): FetchedOffsetBody[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.offsets, 'offsets', Number.MAX_SAFE_INTEGER).map((o, i) => {
    const e = rs.object(o, `offsets[${i}]`);
    return {
      topic: rs.string(e.topic, 'topic', topicNameBytesMax),
      partition: rs.int(e.partition, 'partition', 0, topicPartitionsMax - 1),
      offset: rs.bigint(e.offset, 'offset', -1n, offsetMax),
      metadata: rs.string(e.metadata ?? '', 'metadata', offsetMetadataBytesMax),
    };
  });
}

// ---- ListGroups / DescribeGroups / ResetGroupOffsets --------------------------------------------

export interface GroupListingBody {
  groupId: string;
  state: string;
  memberCount: number;
}

export function decodeListGroupsResponse(value: unknown): GroupListingBody[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.groups, 'groups', Number.MAX_SAFE_INTEGER).map((g, i) => {
    const e = rs.object(g, `groups[${i}]`);
    return { groupId: rs.string(e.groupId, 'groupId', groupIdBytesMax), state: rs.string(e.state, 'state'), memberCount: rs.int(e.memberCount, 'memberCount', 0, 0x7fffffff) };
  });
}

export function decodeDescribeGroupsRequest(value: unknown): { groupIds: string[] } {
  const obj = rq.object(value, 'body');
  return { groupIds: rq.array(obj.groupIds, 'groupIds', 100).map((g) => groupId(rq, g)) };
}

export interface MemberBody {
  memberId: string;
  clientId: string;
  host: string;
  memberEpoch: number;
  state: string;
  sessionTimeoutMs: number;
  subscribedTopics: string[];
  assigned: TopicPartitions[];
  pendingRevocation: TopicPartitions[];
  pendingAssignment: TopicPartitions[];
}

export interface GroupOffsetBody {
  topic: string;
  partition: number;
  /** -1n when none committed. */
  committedOffset: bigint;
  endOffset: bigint;
  /** endOffset - committedOffset, or -1n without a commit. */
  lag: bigint;
  owner: string | null;
}

export interface RebalanceBody {
  groupEpoch: number;
  atMs: number;
  reason: string;
  memberId: string | null;
  moves: { topic: string; partition: number; from: string | null; to: string | null }[];
  movesOmitted: number;
  stableAfterMs: number | null;
}

export interface GroupDescriptionBody {
  groupId: string;
  errorCode: number;
  state: string;
  groupEpoch: number;
  assignmentEpoch: number;
  members: MemberBody[];
  offsets: GroupOffsetBody[];
  history: RebalanceBody[];
}

const nullableString = (value: unknown, path: string): string | null => (value === null || value === undefined ? null : rs.string(value, path));

export function decodeDescribeGroupsResponse(value: unknown): GroupDescriptionBody[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.groups, 'groups').map((g, i) => {
    const e = rs.object(g, `groups[${i}]`);
    const path = `groups[${i}]`;
    return {
      groupId: rs.string(e.groupId, `${path}.groupId`, groupIdBytesMax),
      errorCode: rs.int(e.errorCode, `${path}.errorCode`, -32768, 32767),
      state: rs.string(e.state ?? '', `${path}.state`),
      groupEpoch: rs.int(e.groupEpoch ?? 0, `${path}.groupEpoch`, 0, 0x7fffffff),
      assignmentEpoch: rs.int(e.assignmentEpoch ?? 0, `${path}.assignmentEpoch`, 0, 0x7fffffff),
      members: rs.array(e.members ?? [], `${path}.members`).map((m, j) => {
        const me = rs.object(m, `${path}.members[${j}]`);
        return {
          memberId: rs.string(me.memberId, 'memberId'),
          clientId: rs.string(me.clientId, 'clientId'),
          host: rs.string(me.host, 'host'),
          memberEpoch: rs.int(me.memberEpoch, 'memberEpoch', -2, 0x7fffffff),
          state: rs.string(me.state, 'state'),
          sessionTimeoutMs: rs.int(me.sessionTimeoutMs, 'sessionTimeoutMs', 0, 0x7fffffff),
          subscribedTopics: rs.array(me.subscribedTopics, 'subscribedTopics').map((t) => rs.string(t, 'subscribedTopics', topicNameBytesMax)),
          assigned: topicPartitions(rs, me.assigned, 'assigned'),
          pendingRevocation: topicPartitions(rs, me.pendingRevocation, 'pendingRevocation'),
          pendingAssignment: topicPartitions(rs, me.pendingAssignment, 'pendingAssignment'),
        };
      }),
      offsets: rs.array(e.offsets ?? [], `${path}.offsets`, Number.MAX_SAFE_INTEGER).map((o, j) => {
        const oe = rs.object(o, `${path}.offsets[${j}]`);
        return {
          topic: rs.string(oe.topic, 'topic', topicNameBytesMax),
          partition: rs.int(oe.partition, 'partition', 0, topicPartitionsMax - 1),
          committedOffset: rs.bigint(oe.committedOffset, 'committedOffset', -1n, offsetMax),
          endOffset: rs.bigint(oe.endOffset, 'endOffset', -1n, offsetMax),
          lag: rs.bigint(oe.lag, 'lag', -offsetMax, offsetMax),
          owner: nullableString(oe.owner, 'owner'),
        };
      }),
      history: rs.array(e.history ?? [], `${path}.history`).map((h, j) => {
        const he = rs.object(h, `${path}.history[${j}]`);
        return {
          groupEpoch: rs.int(he.groupEpoch, 'groupEpoch', 0, 0x7fffffff),
          atMs: rs.int(he.atMs, 'atMs', 0, Number.MAX_SAFE_INTEGER),
          reason: rs.string(he.reason, 'reason'),
          memberId: nullableString(he.memberId, 'memberId'),
          moves: rs.array(he.moves, 'moves').map((mv, k) => {
            const mve = rs.object(mv, `moves[${k}]`);
            return { topic: rs.string(mve.topic, 'topic'), partition: rs.int(mve.partition, 'partition', 0, topicPartitionsMax - 1), from: nullableString(mve.from, 'from'), to: nullableString(mve.to, 'to') };
          }),
          movesOmitted: rs.int(he.movesOmitted ?? 0, 'movesOmitted', 0, 0x7fffffff),
          stableAfterMs: he.stableAfterMs === null || he.stableAfterMs === undefined ? null : rs.int(he.stableAfterMs, 'stableAfterMs', 0, Number.MAX_SAFE_INTEGER),
        };
      }),
    };
  });
}

export type ResetSpec = { to: 'earliest' } | { to: 'latest' } | { to: 'offset'; offset: bigint };

export function decodeResetOffsetsRequest(value: unknown): { groupId: string; topic: string; spec: ResetSpec } {
  const obj = rq.object(value, 'body');
  const to = rq.string(obj.to, 'to', 16);
  let spec: ResetSpec;
  if (to === 'earliest' || to === 'latest') spec = { to };
  else if (to === 'offset') spec = { to, offset: rq.bigint(obj.offset, 'offset', 0n, offsetMax) };
  else return rq.fail('to', "'earliest', 'latest' or 'offset'", to);
  return { groupId: groupId(rq, obj.groupId), topic: rq.string(obj.topic, 'topic', topicNameBytesMax), spec };
}

export function decodeResetOffsetsResponse(value: unknown): { partition: number; offset: bigint }[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.partitions, 'partitions').map((p, i) => {
    const e = rs.object(p, `partitions[${i}]`);
    return { partition: rs.int(e.partition, 'partition', 0, topicPartitionsMax - 1), offset: rs.bigint(e.offset, 'offset', 0n, offsetMax) };
  });
}
