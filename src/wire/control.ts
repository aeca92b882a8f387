/**
 * MessagePack bodies of the control APIs: ApiVersions, Metadata, CreateTopics, DeleteTopics,
 * ListOffsets. Field-by-field descriptions live in protocol/apis/. Decoders validate every field.
 */
import { requestSchema as rq, responseSchema as rs, type Obj, type Schema } from './schema.js';
import {
  clusterNameBytesMax, rackBytesMax, replicationFactorMax, requestTopicsMax, requestPartitionsMax, topicNameBytesMax, topicPartitionsMax, offsetMax,
} from '../lib/limits.js';
import { decodeConfigEntries, defaultTopicConfig, normalizeTopicConfig, topicConfigBounds, topicConfigKeys, type ConfigEntries, type TopicConfig } from './topic-config.js';

// ---- Topic configuration ---------------------------------------------------------------------
// Keys, defaults, bounds and Kafka's dotted aliases live in topic-config.ts.

export {
  type TopicConfig, type ConfigEntries, defaultTopicConfig, topicConfigKeys, topicConfigAliases, topicConfigNames, normalizeTopicConfig,
  minInSyncReplicasFor,
} from './topic-config.js';

/**
 * Validates a partial config from a request (shape, then meaning): a bad shape is DecodeError
 * MALFORMED_REQUEST; an unknown key or a bad value is RillError INVALID_CONFIG.
 */
export function decodeTopicConfig(value: unknown, path: string): Partial<TopicConfig> {
  return normalizeTopicConfig(decodeConfigEntries(rq, value, path));
}

// ---- ApiVersions ------------------------------------------------------------------------------

export interface ApiVersionsResponse {
  apiVersions: { apiKey: number; minVersion: number; maxVersion: number }[];
  brokerVersion: string;
}

export function decodeApiVersionsResponse(value: unknown): ApiVersionsResponse {
  const obj = rs.object(value, 'body');
  return {
    apiVersions: rs.array(obj.apiVersions, 'apiVersions').map((entry, i) => {
      const e = rs.object(entry, `apiVersions[${i}]`);
      return {
        apiKey: rs.int(e.apiKey, 'apiKey', 0, 0xffff),
        minVersion: rs.int(e.minVersion, 'minVersion', 0, 0xffff),
        maxVersion: rs.int(e.maxVersion, 'maxVersion', 0, 0xffff),
      };
    }),
    brokerVersion: rs.string(obj.brokerVersion, 'brokerVersion'),
  };
}

// ---- Metadata ---------------------------------------------------------------------------------

export interface MetadataRequest {
  /** null: every topic. */
  topics: string[] | null;
}

export function decodeMetadataRequest(value: unknown): MetadataRequest {
  const obj = rq.object(value, 'body');
  if (obj.topics === null || obj.topics === undefined) return { topics: null };
  return { topics: rq.array(obj.topics, 'topics', requestTopicsMax).map((t, i) => rq.string(t, `topics[${i}]`, topicNameBytesMax)) };
}

export interface BrokerInfo {
  nodeId: number;
  host: string;
  port: number;
  /** null: none given (and what a broker without the field means). */
  rack: string | null;
  /**
   * False only for the answering broker when it is not registered in its cluster (its etcd lease
   * lapsed, or etcd is unreachable): it still serves what it holds. Absent: true.
   */
  alive: boolean;
}

export interface PartitionMetadata {
  partition: number;
  /** nodeId of the leader; -1: none (an election is under way, or the partition is offline). */
  leader: number;
  /** The leader's epoch (+1 at every leader change); -1: not known. */
  leaderEpoch: number;
  /** Brokers holding a copy, preferred leader first. */
  replicas: number[];
  /** In-sync replicas: a subset of replicas, holding everything acknowledged with acks all. */
  isr: number[];
  errorCode: number;
}

export interface TopicMetadata {
  name: string;
  errorCode: number;
  /** Replicas per partition; 0: not known (the topic has an error, or is not placed yet). */
  replicationFactor: number;
  partitions: PartitionMetadata[];
  config: TopicConfig | null;
}

export interface MetadataResponse {
  brokers: BrokerInfo[];
  controllerId: number;
  /** The controller's epoch (larger at every election); 0: a single broker; -1: no controller. */
  controllerEpoch: number;
  /** The cluster's name; null: a single broker, in no cluster. */
  cluster: string | null;
  topics: TopicMetadata[];
}

export function decodeMetadataResponse(value: unknown): MetadataResponse {
  const obj = rs.object(value, 'body');
  return {
    brokers: rs.array(obj.brokers, 'brokers').map((b, i) => {
      const e = rs.object(b, `brokers[${i}]`);
      return {
        nodeId: rs.int(e.nodeId, 'nodeId', -1, 0x7fffffff),
        host: rs.string(e.host, 'host'),
        port: rs.int(e.port, 'port', 0, 65535),
        rack: rs.optionalString(e.rack, `brokers[${i}].rack`, rackBytesMax) ?? null,
        alive: rs.optionalBoolean(e.alive, `brokers[${i}].alive`) ?? true,
      };
    }),
    controllerId: rs.int(obj.controllerId, 'controllerId', -1, 0x7fffffff),
    controllerEpoch: rs.optionalInt(obj.controllerEpoch, 'controllerEpoch', -1, Number.MAX_SAFE_INTEGER) ?? (rs.int(obj.controllerId, 'controllerId', -1, 0x7fffffff) === -1 ? -1 : 0),
    cluster: rs.optionalString(obj.cluster, 'cluster', clusterNameBytesMax) ?? null,
    topics: rs.array(obj.topics, 'topics').map((t, i) => {
      const e = rs.object(t, `topics[${i}]`);
      const errorCode = rs.int(e.errorCode, `topics[${i}].errorCode`, -32768, 32767);
      return {
        name: rs.string(e.name, 'name', topicNameBytesMax),
        errorCode,
        replicationFactor: rs.optionalInt(e.replicationFactor, `topics[${i}].replicationFactor`, 0, replicationFactorMax) ?? (errorCode === 0 ? 1 : 0),
        partitions: rs.array(e.partitions, 'partitions', topicPartitionsMax).map((p, j) => decodePartitionMetadata(p, `topics[${i}].partitions[${j}]`)),
        config: e.config === null || e.config === undefined ? null : decodeFullConfig(e.config),
      };
    }),
  };
}

/**
 * One partition of a Metadata response. A broker that predates replication sends neither
 * leaderEpoch, replicas nor isr: it is a single broker, so the leader is the one replica.
 */
function decodePartitionMetadata(value: unknown, path: string): PartitionMetadata {
  const pe = rs.object(value, path);
  const leader = rs.int(pe.leader, `${path}.leader`, -1, 0x7fffffff);
  const alone = leader >= 0 ? [leader] : [];
  return {
    partition: rs.int(pe.partition, `${path}.partition`, 0, topicPartitionsMax - 1),
    leader,
    leaderEpoch: rs.optionalInt(pe.leaderEpoch, `${path}.leaderEpoch`, -1, 0x7fffffff) ?? 0,
    replicas: pe.replicas === undefined || pe.replicas === null ? alone : nodeIds(pe.replicas, `${path}.replicas`),
    isr: pe.isr === undefined || pe.isr === null ? [...alone] : nodeIds(pe.isr, `${path}.isr`),
    errorCode: rs.int(pe.errorCode, `${path}.errorCode`, -32768, 32767),
  };
}

/** A replica or ISR list: at most twice replicationFactorMax node ids (old and new while replicas move). */
function nodeIds(value: unknown, path: string): number[] {
  return rs.array(value, path, replicationFactorMax * 2).map((id, k) => rs.int(id, `${path}[${k}]`, 0, 0x7fffffff));
}

/** A whole topic config in a response; a missing key takes its default. */
export function decodeFullConfig(value: unknown, path = 'config'): TopicConfig {
  const obj = rs.object(value, path);
  const config = { ...defaultTopicConfig };
  for (const key of topicConfigKeys) {
    if (obj[key] !== undefined) config[key] = rs.int(obj[key], `${path}.${key}`, topicConfigBounds[key][0], topicConfigBounds[key][1]);
  }
  return config;
}

// ---- CreateTopics / DeleteTopics --------------------------------------------------------------

export interface CreateTopicRequest {
  name: string;
  partitions: number;
  /**
   * As sent (any i32): -1 (or absent) is the broker's default; the broker checks the rest per
   * topic (replicationFactorProblem), so a bad value fails one topic with INVALID_REPLICATION_FACTOR.
   */
  replicationFactor: number;
  /** As sent: the broker normalizes it per topic (normalizeTopicConfig), so a bad key fails one topic. */
  config: ConfigEntries;
}

/** What CreateTopics' `replicationFactor` -1 means: this many replicas, or every live broker if fewer. */
export const replicationFactorDefault = 3;

/**
 * Why a topic cannot have `requested` replicas (as sent: -1 is the default) when `liveBrokers`
 * brokers are alive, or null if it can. The text goes with INVALID_REPLICATION_FACTOR.
 */
export function replicationFactorProblem(requested: number, liveBrokers: number): string | null {
  if (requested === -1) return liveBrokers >= 1 ? null : 'no live broker to hold the replicas';
  if (!Number.isInteger(requested) || requested < 1 || requested > replicationFactorMax) {
    return `replication factor ${requested} is outside 1..${replicationFactorMax} (or -1 for the broker's default)`;
  }
  if (requested > liveBrokers) return `replication factor ${requested} is larger than the ${liveBrokers} live broker(s)`;
  return null;
}

/** The replication factor a topic gets: `requested`, or for -1 the default capped by the live brokers. */
export function effectiveReplicationFactor(requested: number, liveBrokers: number): number {
  return requested === -1 ? Math.min(replicationFactorDefault, liveBrokers) : requested;
}

export function decodeCreateTopicsRequest(value: unknown): { topics: CreateTopicRequest[] } {
  const obj = rq.object(value, 'body');
  return {
    topics: rq.array(obj.topics, 'topics', requestTopicsMax).map((t, i) => {
      const e = rq.object(t, `topics[${i}]`);
      return {
        name: rq.string(e.name, `topics[${i}].name`, 1024),
        partitions: rq.int(e.partitions, `topics[${i}].partitions`, -0x80000000, 0x7fffffff),
        replicationFactor: rq.optionalInt(e.replicationFactor, `topics[${i}].replicationFactor`, -0x80000000, 0x7fffffff) ?? -1,
        config: decodeConfigEntries(rq, e.config, `topics[${i}].config`),
      };
    }),
  };
}

export function decodeDeleteTopicsRequest(value: unknown): { topics: string[] } {
  const obj = rq.object(value, 'body');
  return { topics: rq.array(obj.topics, 'topics', requestTopicsMax).map((t, i) => rq.string(t, `topics[${i}]`, 1024)) };
}

export interface TopicResult {
  name: string;
  errorCode: number;
  errorMessage: string;
}

export function decodeTopicResults(value: unknown): TopicResult[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.topics, 'topics').map((t, i) => {
    const e = rs.object(t, `topics[${i}]`);
    return { name: rs.string(e.name, 'name', 1024), errorCode: rs.int(e.errorCode, 'errorCode', -32768, 32767), errorMessage: rs.string(e.errorMessage ?? '', 'errorMessage') };
  });
}

// ---- ListOffsets ------------------------------------------------------------------------------

export interface ListOffsetsPartition {
  partition: number;
  /** -1 latest, -2 earliest, otherwise a timestamp in ms: the first offset whose timestamp >= it. */
  timestamp: number;
}

export interface ListOffsetsRequest {
  topics: { name: string; partitions: ListOffsetsPartition[] }[];
}

/**
 * A body's `topics: [{ name, partitions: [...] }]`, bounded: at most requestTopicsMax topics
 * and requestPartitionsMax partitions in all; `partition` decodes one partition entry. `s` is the
 * request schema unless given (pass the response schema for a response body).
 */
export function decodeTopicPartitions<P>(value: unknown, partition: (entry: Obj, path: string) => P, s: Schema = rq): { name: string; partitions: P[] }[] {
  const obj = s.object(value, 'body');
  let total = 0;
  return s.array(obj.topics, 'topics', requestTopicsMax).map((t, i) => {
    const e = s.object(t, `topics[${i}]`);
    const partitions = s.array(e.partitions, `topics[${i}].partitions`, requestPartitionsMax);
    total += partitions.length;
    if (total > requestPartitionsMax) s.fail('topics', `at most ${requestPartitionsMax} partitions in all`, total);
    return {
      name: s.string(e.name, `topics[${i}].name`, topicNameBytesMax),
      partitions: partitions.map((p, j) => partition(s.object(p, `topics[${i}].partitions[${j}]`), `topics[${i}].partitions[${j}]`)),
    };
  });
}

export function decodeListOffsetsRequest(value: unknown): ListOffsetsRequest {
  return {
    topics: decodeTopicPartitions(value, (pe) => ({ partition: rq.int(pe.partition, 'partition', 0, 0x7fffffff), timestamp: rq.int(pe.timestamp, 'timestamp', -2, Number.MAX_SAFE_INTEGER) })),
  };
}

export interface ListOffsetsPartitionResult {
  partition: number;
  errorCode: number;
  offset: bigint;
  timestamp: number;
}

export function decodeListOffsetsResponse(value: unknown): { name: string; partitions: ListOffsetsPartitionResult[] }[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.topics, 'topics').map((t, i) => {
    const e = rs.object(t, `topics[${i}]`);
    return {
      name: rs.string(e.name, 'name', topicNameBytesMax),
      partitions: rs.array(e.partitions, 'partitions').map((p, j) => {
        const pe = rs.object(p, `topics[${i}].partitions[${j}]`);
        return {
          partition: rs.int(pe.partition, 'partition', 0, 0x7fffffff),
          errorCode: rs.int(pe.errorCode, 'errorCode', -32768, 32767),
          offset: rs.bigint(pe.offset, 'offset', -1n, offsetMax),
          timestamp: rs.int(pe.timestamp, 'timestamp', -1, Number.MAX_SAFE_INTEGER),
        };
      }),
    };
  });
}

/** Every control response with a non-zero top-level errorCode carries this body. */
export function decodeErrorBody(value: unknown): { message: string } {
  try {
    const obj = rs.object(value, 'body');
    return { message: typeof obj.message === 'string' ? obj.message.slice(0, 4096) : '' };
  } catch {
    return { message: '' };
  }
}
