/**
 * MessagePack bodies of the admin operations: IncrementalAlterConfigs (44), DescribeConfigs (32),
 * CreatePartitions (37), DeleteGroups (42), DeleteRecords (21). Field-by-field descriptions live
 * in protocol/apis/. Request decoders bound every field; topic config entries are shape-checked
 * here and given meaning by the broker (topic-config.ts), so a bad key fails one resource.
 */
import { requestSchema as rq, responseSchema as rs, type Schema } from './schema.js';
import { decodeConfigEntries, decodeConfigNames, type ConfigEntries, type TopicConfig } from './topic-config.js';
import { decodeFullConfig, decodeTopicPartitions } from './control.js';
import { bodyStringBytesMax, groupIdBytesMax, offsetMax, requestGroupsMax, requestPartitionsMax, requestTopicsMax, topicNameBytesMax } from '../lib/limits.js';

/** Request decoders accept names up to this so an invalid name gets a per-item error (as CreateTopics). */
const itemNameBytesMax = 1024;

export type ConfigResourceType = 'topic' | 'broker';
const resourceTypes: readonly string[] = ['topic', 'broker'];

function resourceType(s: Schema, value: unknown, path: string): ConfigResourceType {
  const type = s.string(value, path, 16);
  if (!resourceTypes.includes(type)) s.fail(path, "'topic' or 'broker'", type);
  return type as ConfigResourceType;
}

function errorFields(e: Record<string, unknown>, path: string): { errorCode: number; errorMessage: string } {
  return { errorCode: rs.int(e.errorCode, `${path}.errorCode`, -32768, 32767), errorMessage: rs.string(e.errorMessage ?? '', `${path}.errorMessage`) };
}

// ---- IncrementalAlterConfigs ------------------------------------------------------------------

export interface AlterConfigResource {
  type: ConfigResourceType;
  name: string;
  /** Entries to set, as sent (Rill or Kafka names; integers or decimal strings). */
  set: ConfigEntries;
  /** Names to reset to their defaults. */
  reset: string[];
}

export function decodeAlterConfigsRequest(value: unknown): { resources: AlterConfigResource[] } {
  const obj = rq.object(value, 'body');
  return {
    resources: rq.array(obj.resources, 'resources', requestTopicsMax).map((r, i) => {
      const path = `resources[${i}]`;
      const e = rq.object(r, path);
      return {
        type: resourceType(rq, e.type, `${path}.type`),
        name: rq.string(e.name, `${path}.name`, itemNameBytesMax),
        set: decodeConfigEntries(rq, e.set, `${path}.set`),
        reset: decodeConfigNames(rq, e.reset, `${path}.reset`),
      };
    }),
  };
}

export interface AlterConfigResult {
  type: ConfigResourceType;
  name: string;
  errorCode: number;
  errorMessage: string;
  /** The topic's config after the change; null on error. */
  config: TopicConfig | null;
}

export function decodeAlterConfigsResponse(value: unknown): AlterConfigResult[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.resources, 'resources', requestTopicsMax).map((r, i) => {
    const path = `resources[${i}]`;
    const e = rs.object(r, path);
    return {
      type: resourceType(rs, e.type, `${path}.type`),
      name: rs.string(e.name, `${path}.name`, itemNameBytesMax),
      ...errorFields(e, path),
      config: e.config === null || e.config === undefined ? null : decodeFullConfig(e.config, `${path}.config`),
    };
  });
}

// ---- DescribeConfigs --------------------------------------------------------------------------

export function decodeDescribeConfigsRequest(value: unknown): { resources: { type: ConfigResourceType; name: string }[] } {
  const obj = rq.object(value, 'body');
  return {
    resources: rq.array(obj.resources, 'resources', requestTopicsMax).map((r, i) => {
      const path = `resources[${i}]`;
      const e = rq.object(r, path);
      return { type: resourceType(rq, e.type, `${path}.type`), name: rq.string(e.name ?? '', `${path}.name`, itemNameBytesMax) };
    }),
  };
}

export type ConfigSource = 'default' | 'file' | 'env' | 'flag' | 'topic';
const configSources: readonly string[] = ['default', 'file', 'env', 'flag', 'topic'];

export interface ConfigEntryBody {
  name: string;
  /** nil, bool, integer, float or string; nil when secret (masked). */
  value: unknown;
  source: string;
  secret: boolean;
}

export interface DescribeConfigsResult {
  type: ConfigResourceType;
  name: string;
  errorCode: number;
  errorMessage: string;
  entries: ConfigEntryBody[];
}

function entryValue(value: unknown, path: string): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'boolean' || typeof value === 'bigint') return value;
  if (typeof value === 'number') return value;
  return rs.string(value, path);
}

export function decodeDescribeConfigsResponse(value: unknown): DescribeConfigsResult[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.resources, 'resources', requestTopicsMax).map((r, i) => {
    const path = `resources[${i}]`;
    const e = rs.object(r, path);
    return {
      type: resourceType(rs, e.type, `${path}.type`),
      name: rs.string(e.name, `${path}.name`, itemNameBytesMax),
      ...errorFields(e, path),
      entries: rs.array(e.entries ?? [], `${path}.entries`).map((c, j) => {
        const cpath = `${path}.entries[${j}]`;
        const ce = rs.object(c, cpath);
        const source = rs.string(ce.source, `${cpath}.source`, 16);
        if (!configSources.includes(source)) rs.fail(`${cpath}.source`, configSources.join(' | '), source);
        return {
          name: rs.string(ce.name, `${cpath}.name`, bodyStringBytesMax),
          value: entryValue(ce.value, `${cpath}.value`),
          source,
          secret: rs.optionalBoolean(ce.secret, `${cpath}.secret`) ?? false,
        };
      }),
    };
  });
}

// ---- CreatePartitions -------------------------------------------------------------------------

export function decodeCreatePartitionsRequest(value: unknown): { topics: { name: string; count: number }[] } {
  const obj = rq.object(value, 'body');
  return {
    topics: rq.array(obj.topics, 'topics', requestTopicsMax).map((t, i) => {
      const e = rq.object(t, `topics[${i}]`);
      // Any i32: the broker answers a count outside 1..topicPartitionsMax per topic (INVALID_PARTITIONS).
      return { name: rq.string(e.name, `topics[${i}].name`, itemNameBytesMax), count: rq.int(e.count, `topics[${i}].count`, -0x80000000, 0x7fffffff) };
    }),
  };
}

// The response is the CreateTopics one: decodeTopicResults in control.ts.

// ---- AlterPlacement (Rill's own, key 1002) ------------------------------------------------------

export interface AlterPlacementRequest {
  action: 'rebalance' | 'decommission';
  /** The broker to empty (decommission); -1 for rebalance. */
  brokerId: number;
}

export function decodeAlterPlacementRequest(value: unknown): AlterPlacementRequest {
  const obj = rq.object(value, 'body');
  const action = rq.string(obj.action, 'action', 32);
  if (action !== 'rebalance' && action !== 'decommission') rq.fail('action', '"rebalance" or "decommission"', action);
  const brokerId = rq.int(obj.brokerId, 'brokerId', -1, 0x7fffffff);
  if (action === 'decommission' && brokerId < 0) rq.fail('brokerId', 'the broker to empty (decommission)', brokerId);
  return { action: action as AlterPlacementRequest['action'], brokerId: action === 'rebalance' ? -1 : brokerId };
}

/** The moves the controller started: partitions and their replicas before and after. */
export interface AlterPlacementResponse {
  moves: { topic: string; partition: number; from: number[]; to: number[] }[];
}

export function decodeAlterPlacementResponse(value: unknown): AlterPlacementResponse {
  const obj = rs.object(value, 'body');
  return {
    moves: rs.array(obj.moves, 'moves', requestPartitionsMax).map((m, i) => {
      const e = rs.object(m, `moves[${i}]`);
      const ids = (v: unknown, path: string): number[] => rs.array(v, path, 32).map((id, k) => rs.int(id, `${path}[${k}]`, 0, 0x7fffffff));
      return { topic: rs.string(e.topic, `moves[${i}].topic`, topicNameBytesMax), partition: rs.int(e.partition, `moves[${i}].partition`, 0, 0x7fffffff), from: ids(e.from, `moves[${i}].from`), to: ids(e.to, `moves[${i}].to`) };
    }),
  };
}

// ---- DeleteGroups -----------------------------------------------------------------------------

export function decodeDeleteGroupsRequest(value: unknown): { groupIds: string[] } {
  const obj = rq.object(value, 'body');
  return { groupIds: rq.array(obj.groupIds, 'groupIds', requestGroupsMax).map((g, i) => rq.string(g, `groupIds[${i}]`, groupIdBytesMax)) };
}

export interface GroupResult {
  groupId: string;
  errorCode: number;
  errorMessage: string;
}

export function decodeDeleteGroupsResponse(value: unknown): GroupResult[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.groups, 'groups', requestGroupsMax).map((g, i) => {
    const e = rs.object(g, `groups[${i}]`);
    return { groupId: rs.string(e.groupId, `groups[${i}].groupId`, groupIdBytesMax), ...errorFields(e, `groups[${i}]`) };
  });
}

// ---- DeleteRecords ----------------------------------------------------------------------------

/** beforeOffset value meaning "up to the high watermark". */
export const deleteToHighWatermark = -1n;

export interface DeleteRecordsTopic {
  name: string;
  partitions: { partition: number; beforeOffset: bigint }[];
}

export function decodeDeleteRecordsRequest(value: unknown): { topics: DeleteRecordsTopic[] } {
  return {
    topics: decodeTopicPartitions(value, (pe, path) => ({
      partition: rq.int(pe.partition, `${path}.partition`, 0, 0x7fffffff),
      beforeOffset: rq.bigint(pe.beforeOffset, `${path}.beforeOffset`, -1n, offsetMax),
    })),
  };
}

export interface DeleteRecordsPartitionResult {
  partition: number;
  errorCode: number;
  errorMessage: string;
  /** The partition's log start offset after the deletion; -1 on error. */
  lowWatermark: bigint;
}

export function decodeDeleteRecordsResponse(value: unknown): { name: string; partitions: DeleteRecordsPartitionResult[] }[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.topics, 'topics', requestTopicsMax).map((t, i) => {
    const e = rs.object(t, `topics[${i}]`);
    return {
      name: rs.string(e.name, `topics[${i}].name`, topicNameBytesMax),
      partitions: rs.array(e.partitions, `topics[${i}].partitions`, requestPartitionsMax).map((p, j) => {
        const path = `topics[${i}].partitions[${j}]`;
        const pe = rs.object(p, path);
        return {
          partition: rs.int(pe.partition, `${path}.partition`, 0, 0x7fffffff),
          ...errorFields(pe, path),
          lowWatermark: rs.bigint(pe.lowWatermark, `${path}.lowWatermark`, -1n, offsetMax),
        };
      }),
    };
  });
}
