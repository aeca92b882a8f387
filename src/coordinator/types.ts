/**
 * Types shared by the coordinator, its assignor and its records. Pure: no I/O.
 * Partition naming (TopicPartition, partitionKey, ordering) lives in lib, shared with the cluster.
 */
import { compareTopicPartitions, parsePartitionKey, type PartitionKey, type TopicPartition } from '../lib/topic-partition.js';

export {
  compareStrings,
  compareTopicPartitions,
  parsePartitionKey,
  partitionKey,
  type PartitionKey,
  type TopicPartition,
} from '../lib/topic-partition.js';

/** What the coordinator needs to know about topics; the broker implements it over its partition manager. */
export interface TopicsView {
  /** Partition count of an existing topic, or undefined if the topic does not exist (or is being deleted). */
  partitionCount(topic: string): number | undefined;
}

/** Every list the coordinator returns is sorted by topic then partition. */
export function sortedPartitions(keys: Iterable<PartitionKey>): TopicPartition[] {
  return [...keys].map(parsePartitionKey).sort(compareTopicPartitions);
}
