/**
 * A partition of a topic, and its key in maps: shared by the consumer-group coordinator and the
 * cluster's controller so both name partitions the same way. Pure: no I/O.
 */

export interface TopicPartition {
  topic: string;
  partition: number;
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

/** Orders partitions by topic then partition number. */
export function compareTopicPartitions(a: TopicPartition, b: TopicPartition): number {
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1;
  return a.partition - b.partition;
}

/** Code-unit order, independent of locale: what every deterministic sort in Rill uses. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
