/**
 * Types shared by the coordinator, its assignor and its records. Pure: no I/O.
 */

export interface TopicPartition {
  topic: string;
  partition: number;
}

/** What the coordinator needs to know about topics; the broker implements it over its partition manager. */
export interface TopicsView {
  /** Partition count of an existing topic, or undefined if the topic does not exist (or is being deleted). */
  partitionCount(topic: string): number | undefined;
}

/**
 * A partition as a map key. Topic names never contain NUL (they are [a-zA-Z0-9._-]), and
 * only partitions of existing topics become keys, so the encoding is unambiguous.
 */
export type PartitionKey = string;

export function partitionKey(topic: string, partition: number): PartitionKey {
  return `${topic}\u0000${partition}`;
}

export function parsePartitionKey(key: PartitionKey): TopicPartition {
  const separatorIndex = key.lastIndexOf('\u0000');
  return { topic: key.slice(0, separatorIndex), partition: Number(key.slice(separatorIndex + 1)) };
}

/** Orders partitions by topic then partition number: every list the coordinator returns is sorted so. */
export function compareTopicPartitions(a: TopicPartition, b: TopicPartition): number {
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1;
  return a.partition - b.partition;
}

export function sortedPartitions(keys: Iterable<PartitionKey>): TopicPartition[] {
  return [...keys].map(parsePartitionKey).sort(compareTopicPartitions);
}

export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
