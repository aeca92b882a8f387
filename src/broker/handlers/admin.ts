/** ApiVersions, Metadata, CreateTopics, DeleteTopics, ListOffsets: MessagePack bodies. */
import { RillError, errorCodeOf } from '../../lib/errors.js';
import { requestHeaderBytes } from '../../lib/limits.js';
import { apiVersionRanges, OffsetSpec } from '../../wire/apis.js';
import { decodeCreateTopicsRequest, decodeDeleteTopicsRequest, decodeListOffsetsRequest, decodeMetadataRequest, normalizeTopicConfig } from '../../wire/control.js';
import { decodeMsgpack } from '../../wire/msgpack.js';
import { msgpackReply, type Reply, type RequestContext } from '../connection.js';
import type { PartitionManager } from '../partition-manager.js';
import { topicNameProblem } from '../topic-registry.js';

export const brokerVersion = '0.1.0';

export function body(context: RequestContext): unknown {
  return decodeMsgpack(context.frame.subarray(requestHeaderBytes));
}

export function handleApiVersions(): Reply {
  const apiVersions = [...apiVersionRanges].map(([apiKey, [minVersion, maxVersion]]) => ({ apiKey, minVersion, maxVersion }));
  return msgpackReply({ apiVersions, brokerVersion });
}

export function handleMetadata(context: RequestContext, partitions: PartitionManager, self: { nodeId: number; host: string; port: number }): Reply {
  const request = decodeMetadataRequest(body(context));
  const names = request.topics ?? partitions.registry.list().map((t) => t.name);
  const topics = names.map((name) => {
    const definition = partitions.registry.get(name);
    if (definition === undefined) {
      const code = topicNameProblem(name) === null ? 'UNKNOWN_TOPIC_OR_PARTITION' : 'INVALID_TOPIC_NAME';
      return { name, errorCode: errorCodeOf(code), partitions: [], config: null };
    }
    const list = Array.from({ length: definition.partitions }, (_, partition) => ({ partition, leader: self.nodeId, errorCode: 0 }));
    return { name, errorCode: 0, partitions: list, config: definition.config };
  });
  return msgpackReply({ brokers: [self], controllerId: self.nodeId, topics });
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

export function handleCreateTopics(context: RequestContext, partitions: PartitionManager, onChange: () => void): Reply {
  const request = decodeCreateTopicsRequest(body(context));
  const topics = request.topics.map((topic) => topicResult(topic.name, () => partitions.create(topic.name, topic.partitions, normalizeTopicConfig(topic.config))));
  onChange();
  return msgpackReply({ topics });
}

export function handleDeleteTopics(context: RequestContext, partitions: PartitionManager, onChange: () => void): Reply {
  const request = decodeDeleteTopicsRequest(body(context));
  const topics = request.topics.map((name) => topicResult(name, () => {
    const problem = topicNameProblem(name);
    if (problem !== null) throw new RillError('INVALID_TOPIC_NAME', problem);
    partitions.delete(name);
  }));
  onChange();
  return msgpackReply({ topics });
}

export function handleListOffsets(context: RequestContext, partitions: PartitionManager): Reply {
  const request = decodeListOffsetsRequest(body(context));
  const topics = request.topics.map((topic) => ({
    name: topic.name,
    partitions: topic.partitions.map(({ partition: index, timestamp }) => {
      const partition = partitions.get(topic.name, index);
      if (partition === undefined) return { partition: index, errorCode: errorCodeOf('UNKNOWN_TOPIC_OR_PARTITION'), offset: -1n, timestamp: -1 };
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
  }));
  return msgpackReply({ topics });
}
