/**
 * Kafka's default partitioner for keyed records: murmur2 of the key bytes with Kafka's seed,
 * made positive by masking the sign bit, modulo the partition count. The same key lands on the
 * same partition number as in Kafka (and Kafka-compatible clients), so co-partitioned topics
 * stay co-partitioned when data moves between systems.
 */
import murmurhash from 'murmurhash';

const kafkaMurmur2Seed = 0x9747b28c;

export function murmur2(key: Uint8Array): number {
  return murmurhash.v2(key, kafkaMurmur2Seed) | 0;
}

export function partitionForKey(key: Uint8Array, partitionCount: number): number {
  return (murmur2(key) & 0x7fffffff) % partitionCount;
}
