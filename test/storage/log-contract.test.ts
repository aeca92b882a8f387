/**
 * The partition log contract (NATS-style: one suite, every file layer). Runs over the real
 * node:fs layer and over the fault-injecting layer with no faults armed (plus slow fsyncs), so
 * the fault tests elsewhere exercise the same behaviour the broker relies on.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/lib/clock.js';
import { RillError } from '../../src/lib/errors.js';
import { nodeFileOps, type FileOps } from '../../src/storage/file-ops.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { readBaseOffset, readLastOffsetDelta } from '../../src/wire/record-batch.js';
import { type Appended, appendBatch, makeBatch, openLog, readAll, removeTempDirs, segmentFiles, tempDir, testConfig } from './helpers.js';

class SlowFsyncFileOps extends FaultInjectingFileOps {
  override async fdatasync(fd: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 2));
    return super.fdatasync(fd);
  }
}

const fileLayers: Array<[string, () => FileOps]> = [
  ['node:fs', () => nodeFileOps],
  ['fault-injecting (no faults)', () => new FaultInjectingFileOps()],
  ['fault-injecting (slow fsync)', () => new SlowFsyncFileOps()],
];

afterEach(removeTempDirs);

function expectRillError(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RillError);
    expect((err as RillError).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe.each(fileLayers)('PartitionLog contract over %s', (_name, makeFileOps) => {
  function appendMany(dir: string, count: number, segmentBytes = 4096): { appended: Appended[]; fileOps: FileOps } {
    const fileOps = makeFileOps();
    const log = openLog(dir, testConfig({ segmentBytes }), { recover: true, fileOps });
    const appended: Appended[] = [];
    for (let i = 0; i < count; i++) appended.push(appendBatch(log, makeBatch(1 + (i % 7), 20 + ((i * 37) % 300), 1000 + i * 10, i)));
    log.close();
    return { appended, fileOps };
  }

  it('starts an empty directory at offset 0', () => {
    const log = openLog(tempDir(), testConfig(), { recover: true, fileOps: makeFileOps() });
    expect([log.logStartOffset, log.nextOffset, log.flushedOffset]).toEqual([0, 0, 0]);
    expect(log.read(0, 1000).batches).toEqual([]);
    log.close();
  });

  it('assigns dense offsets, stamps them into the batch, and reads every offset back byte for byte across rolls', () => {
    const dir = tempDir();
    const log = openLog(dir, testConfig({ segmentBytes: 2048 }), { recover: true, fileOps: makeFileOps() });
    const appended: Appended[] = [];
    for (let i = 0; i < 60; i++) appended.push(appendBatch(log, makeBatch(1 + (i % 5), 10 + i * 3, 1000, i)));
    expect(log.segmentCount).toBeGreaterThan(5);
    let expectedBase = 0;
    for (const entry of appended) {
      expect(entry.baseOffset).toBe(expectedBase);
      expect(readBaseOffset(entry.bytes, 0)).toBe(entry.baseOffset);
      expectedBase = entry.lastOffset + 1;
    }
    expect(log.nextOffset).toBe(expectedBase);
    for (const entry of appended) {
      for (let offset = entry.baseOffset; offset <= entry.lastOffset; offset++) {
        const result = log.read(offset, 1, log.nextOffset);
        expect(result.batches.length).toBe(1);
        expect(result.batches[0]!.equals(entry.bytes)).toBe(true);
        expect(result.nextFetchOffset).toBe(entry.lastOffset + 1);
      }
    }
    expect(Buffer.concat(readAll(log)).equals(Buffer.concat(appended.map((entry) => entry.bytes)))).toBe(true);
    log.close();
  });

  it('returns whole batches up to maxBytes (at least one), never past endOffset, contiguous in `bytes`', () => {
    const log = openLog(tempDir(), testConfig(), { recover: true, fileOps: makeFileOps() });
    const appended = Array.from({ length: 10 }, (_, i) => appendBatch(log, makeBatch(3, 100, 1000, i)));
    const size = appended[0]!.bytes.length;
    const twoAndABit = log.read(4, size * 2 + 10, log.nextOffset);
    expect(twoAndABit.batches.map((b) => readBaseOffset(b, 0))).toEqual([3, 6]);
    expect(twoAndABit.bytes.equals(Buffer.concat(twoAndABit.batches))).toBe(true);
    expect(log.read(4, 1, log.nextOffset).batches.length).toBe(1);
    const visible = log.read(0, 1 << 20, 7);
    expect(visible.batches.map((b) => readBaseOffset(b, 0))).toEqual([0, 3]);
    expect(log.read(6, 1 << 20, 7).batches).toEqual([]);
    expect(log.read(log.nextOffset, 1000).batches).toEqual([]);
    expectRillError(() => log.read(log.nextOffset + 1, 1000), 'OFFSET_OUT_OF_RANGE');
    expectRillError(() => log.read(-1, 1000), 'OFFSET_OUT_OF_RANGE');
    log.close();
  });

  it('appendMany writes several batches with one write, all at consecutive offsets', () => {
    const fileOps = new FaultInjectingFileOps(makeFileOps());
    const log = openLog(tempDir(), testConfig(), { recover: true, fileOps });
    appendBatch(log, makeBatch(2, 10));
    const batches = [makeBatch(3, 10, 1, 1), makeBatch(1, 10, 1, 2), makeBatch(5, 10, 1, 3)];
    const writesBefore = fileOps.calls.writev;
    const first = log.appendMany(batches.map((batch) => ({ batch, recordsCount: readLastOffsetDelta(batch, 0) + 1, maxTimestampMs: 1 })));
    expect(fileOps.calls.writev - writesBefore).toBe(1);
    expect(first).toBe(2);
    expect(log.nextOffset).toBe(11);
    expect(readAll(log, 2).map((b) => readBaseOffset(b, 0))).toEqual([2, 5, 6]);
    log.close();
  });

  it('keeps everything across a clean reopen and across a recovering reopen', () => {
    const dir = tempDir();
    const { appended } = appendMany(dir, 80);
    for (const recover of [false, true]) {
      const all = Buffer.concat(appended.map((entry) => entry.bytes));
      const log = openLog(dir, testConfig({ segmentBytes: 4096 }), { recover, fileOps: makeFileOps() });
      expect(log.recovery.truncatedBytes).toBe(0);
      expect(log.nextOffset).toBe(appended.at(-1)!.lastOffset + 1);
      expect(log.flushedOffset).toBe(log.nextOffset);
      expect(Buffer.concat(readAll(log)).equals(all)).toBe(true);
      const next = appendBatch(log, makeBatch(2, 10));
      expect(next.baseOffset).toBe(appended.at(-1)!.lastOffset + 1);
      appended.push(next);
      log.close();
    }
  });

  it('finds offsets through the sparse index after a roll, a reopen, and a rebuild of a deleted or corrupt index', () => {
    const dir = tempDir();
    const { appended } = appendMany(dir, 200, 16 * 1024);
    const indexes = segmentFiles(dir, '.index');
    expect(indexes.length).toBeGreaterThan(1);
    // Sealed segments of 16 KiB have entries every >= 4 KiB.
    expect(fs.statSync(path.join(dir, indexes[0]!)).size).toBeGreaterThanOrEqual(3 * 8);
    const checkAll = (): void => {
      const log = openLog(dir, testConfig({ segmentBytes: 16 * 1024 }), { recover: false, fileOps: makeFileOps() });
      for (const entry of appended) expect(log.read(entry.lastOffset, 1, log.nextOffset).batches[0]!.equals(entry.bytes)).toBe(true);
      log.close();
    };
    checkAll();
    fs.unlinkSync(path.join(dir, indexes[0]!));
    fs.writeFileSync(path.join(dir, indexes[1]!), Buffer.from([1, 2, 3]));
    checkAll();
    // Well-formed but wrong (points into the middle of a batch): repaired at read time.
    const wrong = Buffer.alloc(8);
    wrong.writeUInt32BE(1, 0);
    wrong.writeUInt32BE(7, 4);
    fs.writeFileSync(path.join(dir, indexes[0]!), wrong);
    checkAll();
    expect(segmentFiles(dir, '.index').length).toBe(indexes.length);
  });

  it('deletes whole segments by age, never the active one, and advances logStartOffset', () => {
    const clock = new ManualClock(10_000);
    const dir = tempDir();
    const log = openLog(dir, testConfig({ segmentBytes: 2048, retentionMs: 5_000 }), { recover: true, fileOps: makeFileOps(), clock });
    for (let i = 0; i < 30; i++) appendBatch(log, makeBatch(2, 200, 1_000 + i * 100, i));
    const segmentsBefore = log.segmentCount;
    expect(log.applyRetention(5_000)).toEqual({ deletedSegments: 0, deletedBytes: 0 });
    const result = log.applyRetention(1_000_000);
    expect(result.deletedSegments).toBe(segmentsBefore - 1);
    expect(log.segmentCount).toBe(1);
    expect(log.logStartOffset).toBe(log.segmentBaseOffsets[0]);
    expect(log.logStartOffset).toBeGreaterThan(0);
    expectRillError(() => log.read(log.logStartOffset - 1, 1000), 'OFFSET_OUT_OF_RANGE');
    expect(log.read(log.logStartOffset, 1000).batches.length).toBeGreaterThan(0);
    expect(segmentFiles(dir, '.log').length).toBe(1);
    log.close();
    const reopened = openLog(dir, testConfig(), { recover: false, fileOps: makeFileOps() });
    expect(reopened.logStartOffset).toBe(log.logStartOffset);
    reopened.close();
  });

  it('deletes by age only the old prefix', () => {
    const log = openLog(tempDir(), testConfig({ segmentBytes: 2048, retentionMs: 1_000 }), { recover: true, fileOps: makeFileOps() });
    for (let i = 0; i < 10; i++) appendBatch(log, makeBatch(2, 200, 1_000, i));
    const oldSegments = log.segmentCount;
    for (let i = 0; i < 10; i++) appendBatch(log, makeBatch(2, 200, 100_000, i));
    const result = log.applyRetention(50_000);
    expect(result.deletedSegments).toBeGreaterThan(0);
    expect(result.deletedSegments).toBeLessThanOrEqual(oldSegments);
    expect(log.offsetForTimestamp(100_000)).toBeGreaterThanOrEqual(log.logStartOffset);
    log.close();
  });

  it('deletes oldest segments while the partition holds more than retentionBytes', () => {
    const log = openLog(tempDir(), testConfig({ segmentBytes: 2048, retentionBytes: 5000 }), { recover: true, fileOps: makeFileOps() });
    for (let i = 0; i < 40; i++) appendBatch(log, makeBatch(2, 200, 1_000, i));
    const before = log.sizeBytes;
    const result = log.applyRetention(0);
    expect(result.deletedBytes).toBe(before - log.sizeBytes);
    expect(log.sizeBytes).toBeLessThanOrEqual(5000);
    expect(log.segmentCount).toBeGreaterThanOrEqual(1);
    const tiny = openLog(tempDir(), testConfig({ segmentBytes: 2048, retentionBytes: 0 }), { recover: true, fileOps: makeFileOps() });
    for (let i = 0; i < 20; i++) appendBatch(tiny, makeBatch(2, 200, 1_000, i));
    tiny.applyRetention(0);
    expect(tiny.segmentCount).toBe(1);
    expect(tiny.nextOffset).toBe(40);
    expect(tiny.read(tiny.logStartOffset, 100).batches.length).toBeGreaterThan(0);
    log.close();
    tiny.close();
  });

  it('rolls by segmentMs', () => {
    const clock = new ManualClock(0);
    const log = openLog(tempDir(), testConfig({ segmentMs: 1000 }), { recover: true, fileOps: makeFileOps(), clock });
    appendBatch(log, makeBatch(1, 10));
    appendBatch(log, makeBatch(1, 10));
    expect(log.segmentCount).toBe(1);
    clock.advance(1000);
    appendBatch(log, makeBatch(1, 10));
    expect(log.segmentBaseOffsets).toEqual([0, 2]);
    log.close();
  });

  it('finds the first offset whose batch maxTimestamp >= a timestamp', () => {
    const log = openLog(tempDir(), testConfig({ segmentBytes: 2048 }), { recover: true, fileOps: makeFileOps() });
    const appended = Array.from({ length: 30 }, (_, i) => appendBatch(log, makeBatch(3, 100, 10_000 + i * 1000, i)));
    // Batch i holds timestamps 10_000 + i*1000 .. +2.
    expect(log.offsetForTimestamp(0)).toBe(0);
    expect(log.offsetForTimestamp(10_000 + 7 * 1000)).toBe(appended[7]!.baseOffset);
    expect(log.offsetForTimestamp(10_000 + 7 * 1000 + 2)).toBe(appended[7]!.baseOffset);
    expect(log.offsetForTimestamp(10_000 + 7 * 1000 + 3)).toBe(appended[8]!.baseOffset);
    expect(log.offsetForTimestamp(1e12)).toBe(log.nextOffset);
    log.close();
  });

  it('flush() makes flushedOffset reach what was appended before it; the flush policy says when', async () => {
    const clock = new ManualClock(0);
    const log = openLog(tempDir(), testConfig({ flushMessages: 10, flushMs: 500, segmentBytes: 2048 }), { recover: true, fileOps: makeFileOps(), clock });
    expect(log.needsFlush(0)).toBe(false);
    appendBatch(log, makeBatch(4, 10));
    expect(log.needsFlush(0)).toBe(false);
    expect(log.needsFlush(500)).toBe(true);
    appendBatch(log, makeBatch(6, 10));
    expect(log.needsFlush(0)).toBe(true);
    for (let i = 0; i < 20; i++) appendBatch(log, makeBatch(1, 300));
    expect(log.flushedOffset).toBe(0);
    const target = log.nextOffset;
    expect(await log.flush()).toBe(target);
    expect(log.flushedOffset).toBe(target);
    expect(log.needsFlush(10_000)).toBe(false);
    expect(await log.flush()).toBe(target);
    log.close();
  });

  it('remove() deletes the directory', () => {
    const dir = tempDir();
    const log = openLog(dir, testConfig(), { recover: true, fileOps: makeFileOps() });
    appendBatch(log, makeBatch(1, 10));
    log.remove();
    expect(fs.existsSync(dir)).toBe(false);
  });
});
