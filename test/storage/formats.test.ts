/** The on-disk formats of the storage's own files: the sparse index and the recovery-point checkpoint. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OffsetIndex, parseIndexFile } from '../../src/storage/offset-index.js';
import { checkpointBytes, decodeCheckpoint, encodeCheckpoint } from '../../src/storage/checkpoint.js';
import { classifyDirectory, segmentFileStem } from '../../src/storage/segment-files.js';

describe('offset index', () => {
  it('finds the floor entry of any offset, and round-trips through its file format', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat({ max: 1_000_000 }), { maxLength: 300 }), fc.nat({ max: 1_100_000 }), (raw, probe) => {
        const offsets = [...raw].sort((a, b) => a - b);
        const index = new OffsetIndex(1);
        offsets.forEach((offset, i) => index.add(offset, i * 4096 + 1));
        const expected = offsets.findLastIndex((offset) => offset <= probe);
        expect(index.floorEntry(probe)).toBe(expected);
        const parsed = parseIndexFile(index.toFileBytes(), offsets.length * 4096 + 2);
        expect(parsed).toBeInstanceOf(OffsetIndex);
        expect((parsed as OffsetIndex).count).toBe(offsets.length);
        if (expected >= 0) expect((parsed as OffsetIndex).positionAt(expected)).toBe(expected * 4096 + 1);
      }),
    );
  });

  it('rejects index files that are not well-formed', () => {
    const entry = (relativeOffset: number, positionBytes: number): Buffer => {
      const bytes = Buffer.alloc(8);
      bytes.writeUInt32BE(relativeOffset, 0);
      bytes.writeUInt32BE(positionBytes, 4);
      return bytes;
    };
    expect(parseIndexFile(Buffer.alloc(7), 100)).toMatch(/multiple of 8/);
    expect(parseIndexFile(Buffer.concat([entry(5, 10), entry(5, 20)]), 100)).toMatch(/does not increase/);
    expect(parseIndexFile(Buffer.concat([entry(5, 10), entry(6, 10)]), 100)).toMatch(/does not increase/);
    expect(parseIndexFile(entry(5, 100), 100)).toMatch(/beyond the log size/);
    expect(parseIndexFile(Buffer.alloc(0), 0)).toBeInstanceOf(OffsetIndex);
  });

  it('drops entries at or after a truncation point', () => {
    const index = new OffsetIndex();
    index.add(0, 0);
    index.add(10, 5000);
    index.add(20, 9000);
    index.truncateToPosition(5000);
    expect(index.count).toBe(1);
  });
});

describe('recovery-point checkpoint', () => {
  it('round-trips any offset and rejects any single flipped bit', () => {
    fc.assert(
      fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: checkpointBytes * 8 - 1 }), (offset, bit) => {
        const bytes = encodeCheckpoint(offset);
        expect(decodeCheckpoint(bytes)).toBe(offset);
        bytes[bit >> 3] = bytes[bit >> 3]! ^ (1 << (bit & 7));
        expect(typeof decodeCheckpoint(bytes)).toBe('string');
      }),
    );
    expect(decodeCheckpoint(Buffer.alloc(3))).toMatch(/size/);
  });
});

describe('segment file names', () => {
  it('are 20-digit base offsets; anything else is classified, not guessed', () => {
    expect(segmentFileStem(1234)).toBe('00000000000000001234');
    const listing = classifyDirectory([
      '00000000000000000100.log', '00000000000000000000.log', '00000000000000000100.index',
      '1.log', 'x.tmp', 'recovery-point', '99999999999999999999.log',
    ]);
    expect(listing.segmentBaseOffsets).toEqual([0, 100]);
    expect([...listing.indexBaseOffsets]).toEqual([100]);
    expect(listing.tempFiles).toEqual(['x.tmp']);
    expect(listing.ignoredFiles).toEqual(['1.log', '99999999999999999999.log']);
  });
});
