/** ApiVersions, Metadata, CreateTopics, DeleteTopics, ListOffsets: MessagePack bodies. */
import { RillError, errorCodeOf } from '../../lib/errors.js';
import { assert } from '../../lib/assert.js';
import { replicationFactorMax, requestHeaderBytes } from '../../lib/limits.js';
import { apiVersionRanges, OffsetSpec } from '../../wire/apis.js';
import {
  decodeCreateTopicsRequest, decodeDeleteTopicsRequest, decodeListOffsetsRequest, decodeMetadataRequest, normalizeTopicConfig, replicationFactorProblem,
  type PartitionMetadata, type TopicMetadata,
} from '../../wire/control.js';
import { decodeMsgpack } from '../../wire/msgpack.js';
import { msgpackReply, type Reply, type RequestContext } from '../connection.js';
import type { PartitionManager } from '../partition-manager.js';
import { topicNameProblem, type TopicDefinition } from '../topic-registry.js';
import { clusterResource, type Access, type Operation } from '../access.js';
import type { Connection } from '../connection.js';
import type { BrokerInfo } from '../../wire/control.js';

/** What Metadata says about the brokers: this one alone, or the live brokers of its cluster. */
export interface MetadataBrokers {
  brokers: BrokerInfo[];
  controllerId: number;
  controllerEpoch: number;
  cluster: string | null;
}

/** Who holds one partition, as the cluster's partition state says. */
export interface ReplicaAssignment {
  leader: number;
  leaderEpoch: number;
  replicas: readonly number[];
  isr: readonly number[];
}

/**
 * The cluster's replica placement as Metadata reports it. Undefined: not known yet (the topic is
 * being placed, or this broker has not read its state): Metadata answers LEADER_NOT_AVAILABLE.
 */
export interface ReplicationView {
  assignment(topic: string, partition: number): ReplicaAssignment | undefined;
  replicationFactor(topic: string): number | undefined;
}

export const brokerVersion = '0.1.0';

export function body(context: RequestContext): unknown {
  return decodeMsgpack(context.frame.subarray(requestHeaderBytes));
}

export function handleApiVersions(): Reply {
  const apiVersions = [...apiVersionRanges].map(([apiKey, [minVersion, maxVersion]]) => ({ apiKey, minVersion, maxVersion }));
  return msgpackReply({ apiVersions, brokerVersion });
}

/** Throws TOPIC_AUTHORIZATION_FAILED unless the connection's principal may do `operation` on the topic. */
export function requireTopic(access: Access, connection: Connection, name: string, operation: Operation): void {
  if (access.enforced && !access.allows(connection, 'topic', name, operation)) {
    throw new RillError('TOPIC_AUTHORIZATION_FAILED', `${connection.principal ?? 'this connection'} may not ${operation} topic "${name}"`);
  }
}

/** Throws CLUSTER_AUTHORIZATION_FAILED unless the connection's principal may do `operation` on the cluster. */
export function requireCluster(access: Access, connection: Connection, operation: Operation): void {
  if (access.enforced && !access.allows(connection, 'cluster', clusterResource, operation)) {
    throw new RillError('CLUSTER_AUTHORIZATION_FAILED', `${connection.principal ?? 'this connection'} may not ${operation} the cluster`);
  }
}

/**
 * Metadata: all topics the principal may describe (the others are not shown, as if absent), or
 * the named ones, where a topic it may not describe answers TOPIC_AUTHORIZATION_FAILED whether it
 * exists or not.
 */
export function handleMetadata(
  context: RequestContext, partitions: PartitionManager, cluster: MetadataBrokers, selfId: number, access: Access, replication: ReplicationView | null = null,
): Reply {
  const request = decodeMetadataRequest(body(context));
  const { connection } = context;
  // Listing every topic leaves out the hidden ones quietly (not a denial); naming one is asking for it.
  const names = request.topics ?? partitions.registry.list().map((t) => t.name).filter((name) => !access.enforced || access.allowsQuietly(connection, 'topic', name, 'describe'));
  const topics = names.map((name): TopicMetadata => {
    if (request.topics !== null && access.enforced && !access.allows(connection, 'topic', name, 'describe')) {
      return { name, errorCode: errorCodeOf('TOPIC_AUTHORIZATION_FAILED'), replicationFactor: 0, partitions: [], config: null };
    }
    const definition = partitions.registry.get(name);
    if (definition === undefined) {
      const code = topicNameProblem(name) === null ? 'UNKNOWN_TOPIC_OR_PARTITION' : 'INVALID_TOPIC_NAME';
      return { name, errorCode: errorCodeOf(code), replicationFactor: 0, partitions: [], config: null };
    }
    return topicMetadata(definition, selfId, replication);
  });
  return msgpackReply({ brokers: cluster.brokers, controllerId: cluster.controllerId, controllerEpoch: cluster.controllerEpoch, cluster: cluster.cluster, topics });
}

/**
 * One known topic's partitions. Without a replication view (a single broker, or a cluster whose
 * partitions are not replicated yet) this broker leads every partition it holds, alone, at epoch 0.
 * With one, each partition is as the view says, LEADER_NOT_AVAILABLE when it has no leader (offline,
 * or an election under way); one the view does not know yet has no leader and no replicas.
 */
export function topicMetadata(definition: TopicDefinition, selfId: number, replication: ReplicationView | null): TopicMetadata {
  const { name, config } = definition;
  const indexes = Array.from({ length: definition.partitions }, (_, partition) => partition);
  if (replication === null) {
    const partitions = indexes.map((partition): PartitionMetadata => ({
      partition, leader: selfId, leaderEpoch: 0, replicas: [selfId], isr: [selfId], errorCode: 0,
    }));
    return { name, errorCode: 0, replicationFactor: 1, partitions, config };
  }
  const partitions = indexes.map((partition): PartitionMetadata => {
    const assignment = replication.assignment(name, partition);
    if (assignment === undefined) {
      return { partition, leader: -1, leaderEpoch: -1, replicas: [], isr: [], errorCode: errorCodeOf('LEADER_NOT_AVAILABLE') };
    }
    const { leader, leaderEpoch, replicas, isr } = assignment;
    // What clients' decoders bound: a view outside it would make every Metadata answer unreadable.
    assert(replicas.length <= replicationFactorMax * 2 && isr.length <= replicas.length && leaderEpoch >= -1, `metadata: bad assignment of ${name}/${partition}`);
    const errorCode = leader < 0 ? errorCodeOf('LEADER_NOT_AVAILABLE') : 0;
    return { partition, leader, leaderEpoch, replicas: [...replicas], isr: [...isr], errorCode };
  });
  return { name, errorCode: 0, replicationFactor: replication.replicationFactor(name) ?? 0, partitions, config };
}

export function topicResult(name: string, action: () => void): { name: string; errorCode: number; errorMessage: string } {
  try {
    action();
    return { name, errorCode: 0, errorMessage: '' };
  } catch (error) {
    if (!(error instanceof RillError)) throw error;
    return { name, errorCode: error.errorCode, errorMessage: error.message };
  }
}

/** CreateTopics: create on the cluster allows every name; create on a topic (literal or prefix) allows that name. */
export function handleCreateTopics(context: RequestContext, partitions: PartitionManager, onChange: () => void, access: Access): Reply {
  const request = decodeCreateTopicsRequest(body(context));
  const { connection } = context;
  // Asked quietly: a principal allowed by topic ACLs is not a cluster denial worth a log line.
  const anyName = !access.enforced || access.allowsQuietly(connection, 'cluster', clusterResource, 'create');
  const topics = request.topics.map((topic) => topicResult(topic.name, () => {
    if (!anyName) requireTopic(access, connection, topic.name, 'create');
    // One broker, no replication yet: it alone can hold the replicas.
    const replicationProblem = replicationFactorProblem(topic.replicationFactor, 1);
    if (replicationProblem !== null) throw new RillError('INVALID_REPLICATION_FACTOR', replicationProblem);
    partitions.create(topic.name, topic.partitions, normalizeTopicConfig(topic.config));
  }));
  onChange();
  return msgpackReply({ topics });
}

export function handleDeleteTopics(context: RequestContext, partitions: PartitionManager, onChange: () => void, access: Access): Reply {
  const request = decodeDeleteTopicsRequest(body(context));
  const topics = request.topics.map((name) => topicResult(name, () => {
    requireTopic(access, context.connection, name, 'delete');
    const problem = topicNameProblem(name);
    if (problem !== null) throw new RillError('INVALID_TOPIC_NAME', problem);
    partitions.delete(name);
  }));
  onChange();
  return msgpackReply({ topics });
}

export function handleListOffsets(context: RequestContext, partitions: PartitionManager, access: Access): Reply {
  const request = decodeListOffsetsRequest(body(context));
  const topics = request.topics.map((topic) => {
    const allowed = !access.enforced || access.allows(context.connection, 'topic', topic.name, 'describe');
    return {
      name: topic.name,
      partitions: topic.partitions.map(({ partition: index, timestamp }) => {
        if (!allowed) return { partition: index, errorCode: errorCodeOf('TOPIC_AUTHORIZATION_FAILED'), offset: -1n, timestamp: -1 };
        const partition = partitions.get(topic.name, index);
        if (partition === undefined) return { partition: index, errorCode: errorCodeOf('UNKNOWN_TOPIC_OR_PARTITION'), offset: -1n, timestamp: -1 };
        // In a cluster only the leader answers (its high watermark is the end consumers see).
        const refused = partition.replication?.clientError() ?? null;
        if (refused !== null) return { partition: index, errorCode: refused.errorCode, offset: -1n, timestamp: -1 };
        const end = partition.highWatermark;
        let offset: number;
        if (timestamp === OffsetSpec.latest) offset = end;
        else if (timestamp === OffsetSpec.earliest) offset = partition.log.logStartOffset;
        else {
          const found = partition.log.offsetForTimestamp(timestamp);
          offset = found < end ? found : -1;
        }
        return { partition: index, errorCode: 0, offset: BigInt(offset), timestamp: -1 };
      }),
    };
  });
  return msgpackReply({ topics });
}
