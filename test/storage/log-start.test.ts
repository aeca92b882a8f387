/**
 * DeleteRecords at the storage level: the log start offset moves, whole segments below it go,
 * it survives clean reopens and crash-style reopens (recover: true without close), reads below
 * it are OFFSET_OUT_OF_RANGE, and everything at or above it is intact. A model property drives
 * random appends, deletes and reopens; examples cover the crash windows between the steps.
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/lib/clock.js';
import { RillError } from '../../src/lib/errors.js';
import { nodeFileOps } from '../../src/storage/file-ops.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { decodeLogStart, encodeLogStart, readLogStart, writeLogStart } from '../../src/storage/log-start.js';
import { logStartFileName } from '../../src/storage/segment-files.js';
import type { PartitionLog } from '../../src/storage/partition-log.js';
import { readBaseOffset } from '../../src/wire/record-batch.js';
import { type Appended, appendBatch, caughtRillError, makeBatch, openLog, readAll, removeTempDirs, segmentFiles, tempDir, testConfig } from './helpers.js';

afterAll(removeTempDirs);

const config = testConfig({ segmentBytes: 1024 });

type Op =
  | { kind: 'append'; records: number; valueBytes: number }
  | { kind: 'delete'; fraction: number }
  | { kind: 'reopen'; crash: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('append' as const), records: fc.integer({ min: 1, max: 5 }), valueBytes: fc.integer({ min: 1, max: 200 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const), crash: fc.boolean() }) },
);

/** The log must hold exactly the appended batches that end at or above `start`, and nothing below it. */
function checkLog(log: PartitionLog, dir: string, appended: Appended[], start: number, nextOffset: number): void {
  expect(log.logStartOffset).toBe(start);
  expect(log.nextOffset).toBe(nextOffset);
  if (start > 0) expect(caughtRillError(() => log.read(start - 1, 1024)).code).toBe('OFFSET_OUT_OF_RANGE');
  const expected = appended.filter((a) => a.lastOffset >= start).map((a) => a.bytes.toString('hex'));
  expect(readAll(log, start).map((b) => b.toString('hex'))).toEqual(expected);
  // No segment lies wholly below the start: the second segment (if any) starts above it.
  const bases = log.segmentBaseOffsets;
  expect(bases[0]!).toBeLessThanOrEqual(Math.max(start, bases[0]!));
  if (bases.length > 1) expect(bases[1]!).toBeGreaterThan(start);
  expect(segmentFiles(dir, '.log').length).toBe(bases.length);
}

describe('deleteRecordsBefore (model)', () => {
  it('random appends, deletes and reopens: start offset and remaining data match the model', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
      const dir = tempDir('rill-log-start');
      const clock = new ManualClock(1_000);
      let log = openLog(dir, config, { recover: false, clock });
      const appended: Appended[] = [];
      let start = 0;
      let seed = 0;
      for (const op of ops) {
        if (op.kind === 'append') {
          appended.push(appendBatch(log, makeBatch(op.records, op.valueBytes, clock.nowMs(), seed++)));
        } else if (op.kind === 'delete') {
          const target = Math.floor(op.fraction * log.nextOffset);
          const result = await log.deleteRecordsBefore(target);
          start = Math.max(start, target);
          expect(result).toBe(start);
        } else {
          if (!op.crash) log.close();
          // A crash: the old log is dropped without close (no index, no checkpoint); its
          // descriptors leak for the test's lifetime only.
          log = openLog(dir, config, { recover: op.crash, clock });
        }
        const next = appended.length === 0 ? 0 : appended[appended.length - 1]!.lastOffset + 1;
        checkLog(log, dir, appended, start, next);
      }
      log.close();
    }), { numRuns: 60 });
  });
});

describe('deleteRecordsBefore (examples)', () => {
  it('above the log end is OFFSET_OUT_OF_RANGE and changes nothing; at or below the start is a no-op', async () => {
    const dir = tempDir('rill-log-start');
    const log = openLog(dir, config, { recover: false });
    appendBatch(log, makeBatch(10, 10));
    await expect(log.deleteRecordsBefore(11)).rejects.toMatchObject({ code: 'OFFSET_OUT_OF_RANGE' });
    expect(log.logStartOffset).toBe(0);
    expect(await log.deleteRecordsBefore(4)).toBe(4);
    expect(await log.deleteRecordsBefore(2)).toBe(4);
    expect(fs.existsSync(path.join(dir, logStartFileName))).toBe(true);
    log.close();
  });

  it('deleting up to the log end rolls the active segment so its file goes too; appends continue at the same offset', async () => {
    const dir = tempDir('rill-log-start');
    const log = openLog(dir, config, { recover: false });
    for (let i = 0; i < 5; i++) appendBatch(log, makeBatch(3, 300, 1_000, i));
    const end = log.nextOffset;
    expect(await log.deleteRecordsBefore(end)).toBe(end);
    expect(log.segmentBaseOffsets).toEqual([end]);
    expect(segmentFiles(dir, '.log')).toEqual([`${String(end).padStart(20, '0')}.log`]);
    const next = appendBatch(log, makeBatch(2, 10, 1_000, 99));
    expect(next.baseOffset).toBe(end);
    log.close();
    const reopened = openLog(dir, config, { recover: true });
    expect(reopened.logStartOffset).toBe(end);
    expect(readAll(reopened).map((b) => readBaseOffset(b, 0))).toEqual([end]);
    reopened.close();
  });

  it('a crash after the start was written but before segments were deleted: the next open deletes them', async () => {
    const dir = tempDir('rill-log-start');
    const log = openLog(dir, config, { recover: false });
    const appended: Appended[] = [];
    for (let i = 0; i < 8; i++) appended.push(appendBatch(log, makeBatch(2, 300, 1_000, i)));
    log.close();
    const segmentsBefore = segmentFiles(dir, '.log').length;
    expect(segmentsBefore).toBeGreaterThan(2);
    // Step 2 done, step 3 not: only the file moved.
    writeLogStart(nodeFileOps, dir, 9);
    const reopened = openLog(dir, config, { recover: true });
    expect(reopened.logStartOffset).toBe(9);
    expect(reopened.segmentBaseOffsets[1] ?? Infinity).toBeGreaterThan(9);
    expect(segmentFiles(dir, '.log').length).toBeLessThan(segmentsBefore);
    expect(readAll(reopened).map((b) => b.toString('hex'))).toEqual(appended.filter((a) => a.lastOffset >= 9).map((a) => a.bytes.toString('hex')));
    reopened.close();
  });

  it('a directory whose segments are gone starts at the log start, never at 0 (offsets are not reused)', async () => {
    const dir = tempDir('rill-log-start');
    const log = openLog(dir, config, { recover: false });
    for (let i = 0; i < 4; i++) appendBatch(log, makeBatch(5, 100, 1_000, i));
    await log.deleteRecordsBefore(log.nextOffset);
    log.close();
    for (const name of segmentFiles(dir, '.log')) fs.unlinkSync(path.join(dir, name));
    const reopened = openLog(dir, config, { recover: true });
    expect(reopened.logStartOffset).toBe(20);
    expect(reopened.nextOffset).toBe(20);
    reopened.close();
  });

  it('a log cut below its start by damage restarts empty at the start', async () => {
    const dir = tempDir('rill-log-start');
    const log = openLog(dir, testConfig(), { recover: false });
    for (let i = 0; i < 4; i++) appendBatch(log, makeBatch(5, 100, 1_000, i));
    log.close();
    writeLogStart(nodeFileOps, dir, 18);
    // Damage the tail batch: recovery cuts the log back to 15, below the start.
    const [segment] = segmentFiles(dir, '.log');
    const file = path.join(dir, segment!);
    fs.truncateSync(file, fs.statSync(file).size - 1);
    fs.rmSync(path.join(dir, 'recovery-point'), { force: true });
    const reopened = openLog(dir, testConfig(), { recover: true });
    expect(reopened.logStartOffset).toBe(18);
    expect(reopened.nextOffset).toBe(18);
    expect(appendBatch(reopened, makeBatch(1, 1)).baseOffset).toBe(18);
    reopened.close();
  });

  it('retention keeps working after a delete, and ListOffsets-earliest style reads follow whichever start is larger', async () => {
    const dir = tempDir('rill-log-start');
    const clock = new ManualClock(10_000);
    const log = openLog(dir, testConfig({ segmentBytes: 1024, retentionMs: 1_000 }), { recover: false, clock });
    for (let i = 0; i < 6; i++) appendBatch(log, makeBatch(2, 400, 1_000 + i, i));
    expect(await log.deleteRecordsBefore(3)).toBe(3);
    const retention = log.applyRetention(clock.nowMs());
    expect(retention.deletedSegments).toBeGreaterThan(0);
    expect(log.logStartOffset).toBe(log.segmentBaseOffsets[0]);
    expect(log.logStartOffset).toBeGreaterThan(3);
    expect(log.offsetForTimestamp(0)).toBe(log.logStartOffset);
    log.close();
  });

  it('the start is written through FileOps: a failed write is DISK_FULL / STORAGE_ERROR and nothing moves', async () => {
    const dir = tempDir('rill-log-start');
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(dir, config, { recover: false, fileOps });
    for (let i = 0; i < 4; i++) appendBatch(log, makeBatch(2, 300, 1_000, i));
    await log.flush();
    fileOps.inject('writev', 'ENOSPC');
    const error = await log.deleteRecordsBefore(5).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RillError);
    expect((error as RillError).code).toBe('DISK_FULL');
    expect(log.logStartOffset).toBe(0);
    expect(readLogStart(nodeFileOps, dir).logStartOffset).toBe(0);
    log.close();
  });

  it('the file format rejects damage', () => {
    const bytes = encodeLogStart(123_456);
    expect(decodeLogStart(bytes)).toBe(123_456);
    for (let i = 0; i < bytes.length; i++) {
      const damaged = Buffer.from(bytes);
      damaged[i]! ^= 0x01;
      expect(typeof decodeLogStart(damaged), `byte ${i}`).toBe('string');
    }
    expect(typeof decodeLogStart(bytes.subarray(0, 19))).toBe('string');
  });
});
