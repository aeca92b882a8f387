/**
 * Stable 32-bit hashes for placement decisions (the consumer-group assignor, replica placement).
 * murmur3 (x86, 32-bit) of the UTF-8 bytes: the same on every broker and every version, so two
 * brokers (or a controller and its successor) given the same inputs decide the same thing.
 * Pure, like the CRC beside it.
 */
import murmurhash from 'murmurhash';

const utf8 = new TextEncoder();

/** murmur3 of the UTF-8 bytes of `value`, as an unsigned 32-bit integer. */
export function murmur3(value: string, seed: number): number {
  return murmurhash.v3(utf8.encode(value), seed);
}
