/**
 * The sparse offset index of one segment: entries of (offset relative to the segment's base,
 * byte position of the batch starting at that offset), strictly increasing in both. Kept in
 * growable typed arrays; written to `<base>.index` when the segment is rolled or closed.
 *
 * File format: `count` entries of 8 bytes, big-endian: u32 relativeOffset, u32 positionBytes.
 * No header and no checksum: an index is a cache. On open it is trusted only if well-formed
 * (see `parseIndexFile`); a lookup that lands on a batch whose base offset disagrees with the
 * entry makes the log rebuild the index from the batch headers.
 */
import { assert } from '../lib/assert.js';

export const indexEntryBytes = 8;
const initialCapacityEntries = 64;

export class OffsetIndex {
  private relativeOffsets: Uint32Array;
  private positions: Uint32Array;
  private countEntries = 0;

  constructor(capacityEntries = initialCapacityEntries) {
    this.relativeOffsets = new Uint32Array(Math.max(1, capacityEntries));
    this.positions = new Uint32Array(Math.max(1, capacityEntries));
  }

  get count(): number {
    return this.countEntries;
  }

  relativeOffsetAt(entry: number): number {
    return this.relativeOffsets[entry]!;
  }

  positionAt(entry: number): number {
    return this.positions[entry]!;
  }

  add(relativeOffset: number, positionBytes: number): void {
    assert(relativeOffset >= 0 && relativeOffset <= 0xffff_ffff, `relative offset ${relativeOffset} does not fit u32`);
    assert(positionBytes >= 0 && positionBytes <= 0xffff_ffff, `position ${positionBytes} does not fit u32`);
    const last = this.countEntries - 1;
    if (last >= 0) {
      assert(relativeOffset > this.relativeOffsets[last]! && positionBytes > this.positions[last]!, 'index entries must increase');
    }
    if (this.countEntries === this.positions.length) this.grow();
    this.relativeOffsets[this.countEntries] = relativeOffset;
    this.positions[this.countEntries] = positionBytes;
    this.countEntries++;
  }

  /** Index of the last entry whose relative offset is <= `relativeOffset`, or -1. */
  floorEntry(relativeOffset: number): number {
    let low = 0;
    let high = this.countEntries - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      if (this.relativeOffsets[mid]! <= relativeOffset) {
        found = mid;
        low = mid + 1;
      } else {
        high = mid - 1;
      }
    }
    return found;
  }

  /** Drops entries at or after `positionBytes` (the log was truncated there). */
  truncateToPosition(positionBytes: number): void {
    while (this.countEntries > 0 && this.positions[this.countEntries - 1]! >= positionBytes) this.countEntries--;
  }

  toFileBytes(): Buffer {
    const bytes = Buffer.allocUnsafe(this.countEntries * indexEntryBytes);
    for (let entry = 0; entry < this.countEntries; entry++) {
      bytes.writeUInt32BE(this.relativeOffsets[entry]!, entry * indexEntryBytes);
      bytes.writeUInt32BE(this.positions[entry]!, entry * indexEntryBytes + 4);
    }
    return bytes;
  }

  private grow(): void {
    const capacity = this.positions.length * 2;
    const relativeOffsets = new Uint32Array(capacity);
    const positions = new Uint32Array(capacity);
    relativeOffsets.set(this.relativeOffsets);
    positions.set(this.positions);
    this.relativeOffsets = relativeOffsets;
    this.positions = positions;
  }
}

/**
 * Parses an index file; returns the index, or the reason it cannot be trusted: size not a
 * multiple of 8, entries not strictly increasing, or a position at/after the log's end.
 */
export function parseIndexFile(bytes: Buffer, logSizeBytes: number): OffsetIndex | string {
  if (bytes.length % indexEntryBytes !== 0) return `size ${bytes.length} is not a multiple of ${indexEntryBytes}`;
  const countEntries = bytes.length / indexEntryBytes;
  const index = new OffsetIndex(countEntries);
  let previousOffset = -1;
  let previousPosition = -1;
  for (let entry = 0; entry < countEntries; entry++) {
    const relativeOffset = bytes.readUInt32BE(entry * indexEntryBytes);
    const positionBytes = bytes.readUInt32BE(entry * indexEntryBytes + 4);
    if (relativeOffset <= previousOffset || positionBytes <= previousPosition) return `entry ${entry} does not increase`;
    if (positionBytes >= logSizeBytes) return `entry ${entry} position ${positionBytes} is beyond the log size ${logSizeBytes}`;
    index.add(relativeOffset, positionBytes);
    previousOffset = relativeOffset;
    previousPosition = positionBytes;
  }
  return index;
}
