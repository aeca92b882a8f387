/**
 * IncrementalAlterConfigs, DescribeConfigs, CreatePartitions, DeleteRecords (MessagePack bodies).
 * DeleteGroups lives with the other group APIs in group-host.ts. Every item succeeds or fails on
 * its own: a RillError becomes that item's errorCode and message.
 */
import { RillError } from '../../lib/errors.js';
import { decodeAlterConfigsRequest, decodeCreatePartitionsRequest, decodeDeleteRecordsRequest, decodeDescribeConfigsRequest, type ConfigResourceType } from '../../wire/admin-ops.js';
import { defaultTopicConfig, topicConfigKeys } from '../../wire/topic-config.js';
import { msgpackReply, type Reply, type RequestContext } from '../connection.js';
import type { PartitionManager } from '../partition-manager.js';
import { topicNameProblem } from '../topic-registry.js';
import { body, requireCluster, requireTopic, topicResult } from './admin.js';
import type { Access } from '../access.js';

/** One line of the broker's effective configuration (config.ts `effectiveConfig`). */
export interface BrokerConfigEntry {
  name: string;
  value: unknown;
  source: string;
  secret?: boolean;
}

function errorOf(error: unknown): { errorCode: number; errorMessage: string } {
  if (!(error instanceof RillError)) throw error;
  return { errorCode: error.errorCode, errorMessage: error.message };
}

function knownTopic(partitions: PartitionManager, name: string): void {
  const problem = topicNameProblem(name);
  if (problem !== null) throw new RillError('INVALID_TOPIC_NAME', problem);
  if (partitions.registry.get(name) === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${name}" does not exist`);
}

export function handleAlterConfigs(context: RequestContext, partitions: PartitionManager, access: Access): Reply {
  const request = decodeAlterConfigsRequest(body(context));
  const resources = request.resources.map(({ type, name, set, reset }) => {
    try {
      if (type === 'broker') requireCluster(access, context.connection, 'alter');
      else requireTopic(access, context.connection, name, 'alter');
      if (type === 'broker') throw new RillError('INVALID_CONFIG', 'the broker configuration cannot be changed at run time; change its file, environment or flags and restart');
      knownTopic(partitions, name);
      const config = partitions.alterConfig(name, set, reset);
      return { type, name, errorCode: 0, errorMessage: '', config };
    } catch (error) {
      return { type, name, ...errorOf(error), config: null };
    }
  });
  return msgpackReply({ resources });
}

/** MessagePack-friendly: scalars as they are, anything else as JSON text. */
function wireValue(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return value;
  return JSON.stringify(value);
}

export function brokerConfigEntries(entries: readonly BrokerConfigEntry[]): { name: string; value: unknown; source: string; secret: boolean }[] {
  return entries.map((entry) => {
    const secret = entry.secret === true;
    // Secrets never leave the broker: the name and source are shown, the value is nil.
    return { name: entry.name, value: secret ? null : wireValue(entry.value), source: entry.source, secret };
  });
}

function topicConfigEntries(partitions: PartitionManager, name: string): { name: string; value: unknown; source: string; secret: boolean }[] {
  knownTopic(partitions, name);
  const config = partitions.registry.get(name)!.config;
  // The registry keeps the whole config, not which keys were set: a value equal to the default reads as 'default'.
  return topicConfigKeys.map((key) => ({ name: key, value: config[key], source: config[key] === defaultTopicConfig[key] ? 'default' : 'topic', secret: false }));
}

export function handleDescribeConfigs(context: RequestContext, partitions: PartitionManager, brokerEntries: () => readonly BrokerConfigEntry[], access: Access): Reply {
  const request = decodeDescribeConfigsRequest(body(context));
  const resources = request.resources.map(({ type, name }: { type: ConfigResourceType; name: string }) => {
    try {
      if (type === 'broker') requireCluster(access, context.connection, 'describe');
      else requireTopic(access, context.connection, name, 'describe');
      const entries = type === 'broker' ? brokerConfigEntries(brokerEntries()) : topicConfigEntries(partitions, name);
      return { type, name, errorCode: 0, errorMessage: '', entries };
    } catch (error) {
      return { type, name, ...errorOf(error), entries: [] };
    }
  });
  return msgpackReply({ resources });
}

export function handleCreatePartitions(context: RequestContext, partitions: PartitionManager, onChange: () => void, access: Access): Reply {
  const request = decodeCreatePartitionsRequest(body(context));
  const topics = request.topics.map(({ name, count }) => topicResult(name, () => {
    requireTopic(access, context.connection, name, 'alter');
    knownTopic(partitions, name);
    partitions.addPartitions(name, count);
  }));
  if (topics.some((t) => t.errorCode === 0)) onChange();
  return msgpackReply({ topics });
}

export async function handleDeleteRecords(context: RequestContext, partitions: PartitionManager, access: Access): Promise<Reply> {
  const request = decodeDeleteRecordsRequest(body(context));
  const topics = [];
  for (const topic of request.topics) {
    const results = [];
    const allowed = !access.enforced || access.allows(context.connection, 'topic', topic.name, 'delete');
    for (const { partition: index, beforeOffset } of topic.partitions) {
      try {
        if (!allowed) throw new RillError('TOPIC_AUTHORIZATION_FAILED', `${context.connection.principal ?? 'this connection'} may not delete records of topic "${topic.name}"`);
        const partition = partitions.get(topic.name, index);
        if (partition === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `${topic.name}/${index} does not exist`);
        if (beforeOffset > BigInt(Number.MAX_SAFE_INTEGER)) throw new RillError('OFFSET_OUT_OF_RANGE', `offset ${beforeOffset} is above the high watermark ${partition.highWatermark}`);
        const lowWatermark = await partition.deleteRecordsBefore(Number(beforeOffset));
        results.push({ partition: index, errorCode: 0, errorMessage: '', lowWatermark: BigInt(lowWatermark) });
      } catch (error) {
        results.push({ partition: index, ...errorOf(error), lowWatermark: -1n });
      }
    }
    topics.push({ name: topic.name, partitions: results });
  }
  return msgpackReply({ topics });
}
