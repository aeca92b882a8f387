/**
 * Damage the log can meet on disk, and what each open mode and read does about it.
 *
 * Decided behaviour for corruption below the recovery point (not scanned at open, to keep
 * startup O(tail)): every read checks the CRC of what it serves; the batch that fails is never
 * served and a read starting in it throws CORRUPT_LOG naming its offsets; reads that stop
 * before it, or start after it, are served as usual (Kafka-like: the rest of the partition
 * stays available). A read that would run into it stops just before it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeCheckpoint } from '../../src/storage/checkpoint.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { batchHeaderBytes, readBaseOffset } from '../../src/wire/record-batch.js';
import { type Appended, appendBatch, makeBatch, openLog, readAll, removeTempDirs, segmentFiles, tempDir, testConfig, caughtRillError } from './helpers.js';

afterEach(removeTempDirs);

const config = testConfig({ segmentBytes: 8192 });

function buildLog(dir: string, batches: number): Appended[] {
  const log = openLog(dir, config, { recover: true });
  const appended = Array.from({ length: batches }, (_, i) => appendBatch(log, makeBatch(4, 150, 1000 + i, i)));
  log.close();
  return appended;
}

function flipByte(file: string, positionBytes: number): void {
  const bytes = fs.readFileSync(file);
  bytes[positionBytes] = bytes[positionBytes]! ^ 0x40;
  fs.writeFileSync(file, bytes);
}

/** Position of `entry` inside its segment file (the first segment holds batches from offset 0). */
function positionInFirstSegment(appended: Appended[], index: number): number {
  return appended.slice(0, index).reduce((sum, entry) => sum + entry.bytes.length, 0);
}

describe('mid-log corruption below the recovery point', () => {
  it('is not scanned at open, and is detected by CRC when read: CORRUPT_LOG with the offsets, never served', () => {
    const dir = tempDir();
    const appended = buildLog(dir, 60);
    const firstSegment = path.join(dir, segmentFiles(dir, '.log')[0]!);
    const victim = 5;
    flipByte(firstSegment, positionInFirstSegment(appended, victim) + batchHeaderBytes + 10);

    const log = openLog(dir, config, { recover: true });
    expect(log.recovery.recovered).toBe(true);
    expect(log.recovery.scannedSegments).toBe(1); // only the active segment: the checkpoint bounds the scan
    expect(log.recovery.truncatedBytes).toBe(0);
    expect(log.nextOffset).toBe(appended.at(-1)!.lastOffset + 1);

    const bad = appended[victim]!;
    for (let offset = bad.baseOffset; offset <= bad.lastOffset; offset++) {
      const error = caughtRillError(() => log.read(offset, 1 << 20));
      expect(error.code).toBe('CORRUPT_LOG');
      expect(error.message).toContain(`${bad.baseOffset}..${bad.lastOffset}`);
    }
    // A read from before stops just before the bad batch; reads after it are served.
    const before = log.read(0, 1 << 20);
    expect(before.batches.map((batch) => readBaseOffset(batch, 0))).toEqual(appended.slice(0, victim).map((entry) => entry.baseOffset));
    const after = log.read(bad.lastOffset + 1, 1 << 20);
    expect(after.batches[0]!.equals(appended[victim + 1]!.bytes)).toBe(true);
    expect(readAll(log, bad.lastOffset + 1).length).toBe(appended.length - victim - 1);
    // Appends are unaffected.
    expect(appendBatch(log, makeBatch(1, 10)).baseOffset).toBe(appended.at(-1)!.lastOffset + 1);
    log.close();
  });

  it('a damaged batch header (length) is reported by reads that walk into it, not by reads past the next index entry', () => {
    const dir = tempDir();
    const appended = buildLog(dir, 60);
    const firstSegment = path.join(dir, segmentFiles(dir, '.log')[0]!);
    const victim = 2;
    flipByte(firstSegment, positionInFirstSegment(appended, victim) + 9); // inside batchLength
    const log = openLog(dir, config, { recover: false });
    expect(caughtRillError(() => log.read(appended[victim]!.baseOffset, 1000)).code).toBe('CORRUPT_LOG');
    expect(caughtRillError(() => log.read(appended[victim + 1]!.baseOffset, 1000)).code).toBe('CORRUPT_LOG');
    // Far enough on, the sparse index starts the walk after the damage.
    const later = appended[20]!;
    expect(log.read(later.baseOffset, 1).batches[0]!.equals(later.bytes)).toBe(true);
    log.close();
  });

  it('an invalid checkpoint makes recovery scan everything', () => {
    const dir = tempDir();
    const appended = buildLog(dir, 60);
    const segments = segmentFiles(dir, '.log').length;
    const checkpoint = encodeCheckpoint(1_000_000);
    checkpoint[3] = checkpoint[3]! ^ 1;
    fs.writeFileSync(path.join(dir, 'recovery-point'), checkpoint);
    const messages: string[] = [];
    const log = openLog(dir, config, { recover: true, log: (message) => messages.push(message) });
    expect(log.recovery.recoveryPointOffset).toBe(0);
    expect(log.recovery.scannedSegments).toBe(segments);
    expect(messages.some((message) => message.includes('checkpoint invalid'))).toBe(true);
    expect(readAll(log).length).toBe(appended.length);
    log.close();
  });

  it('a scan from an invalid checkpoint does find and cut mid-log corruption', () => {
    const dir = tempDir();
    const appended = buildLog(dir, 60);
    fs.unlinkSync(path.join(dir, 'recovery-point'));
    const firstSegment = path.join(dir, segmentFiles(dir, '.log')[0]!);
    flipByte(firstSegment, positionInFirstSegment(appended, 3) + batchHeaderBytes + 1);
    const log = openLog(dir, config, { recover: true });
    expect(log.nextOffset).toBe(appended[3]!.baseOffset);
    expect(log.recovery.droppedFromOffset).toBe(appended[3]!.baseOffset);
    expect(log.recovery.segmentsDeleted).toBeGreaterThan(0);
    expect(segmentFiles(dir, '.log').length).toBe(1);
    log.close();
  });
});

describe('odd directories', () => {
  it('ignores and reports files that are not segments, deletes leftover temp files and orphan indexes', () => {
    const dir = tempDir();
    buildLog(dir, 3);
    fs.writeFileSync(path.join(dir, '123.log'), 'not ours');
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not ours');
    fs.writeFileSync(path.join(dir, '00000000000000000000.index.tmp'), 'half written');
    fs.writeFileSync(path.join(dir, '00000000000000099999.index'), Buffer.alloc(8));
    const log = openLog(dir, config, { recover: true });
    expect(log.recovery.ignoredFiles.sort()).toEqual(['123.log', 'notes.txt']);
    expect(log.recovery.tempFilesDeleted).toBe(1);
    expect(fs.existsSync(path.join(dir, '00000000000000099999.index'))).toBe(false);
    expect(fs.existsSync(path.join(dir, '123.log'))).toBe(true);
    expect(log.nextOffset).toBe(12);
    log.close();
  });

  it('opens a zero-length active segment, and an empty segment after others', () => {
    const dir = tempDir();
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, '00000000000000000000.log'), '');
    const empty = openLog(dir, config, { recover: true });
    expect([empty.logStartOffset, empty.nextOffset]).toEqual([0, 0]);
    appendBatch(empty, makeBatch(5, 10));
    empty.close();
    fs.writeFileSync(path.join(dir, '00000000000000000005.log'), '');
    let expectedNext = 5;
    for (const recover of [true, false]) {
      const log = openLog(dir, config, { recover });
      expect(log.nextOffset).toBe(expectedNext);
      expect(log.segmentBaseOffsets).toEqual([0, 5]);
      expect(appendBatch(log, makeBatch(1, 10)).baseOffset).toBe(expectedNext);
      expectedNext++;
      log.close();
    }
  });

  it('a "clean" open whose active segment has a torn tail recovers it instead of trusting it', () => {
    const dir = tempDir();
    const appended = buildLog(dir, 10);
    const active = path.join(dir, segmentFiles(dir, '.log').at(-1)!);
    fs.appendFileSync(active, Buffer.alloc(30, 7));
    const log = openLog(dir, config, { recover: false });
    expect(log.recovery.recovered).toBe(true);
    expect(log.recovery.truncatedBytes).toBe(30);
    expect(log.nextOffset).toBe(appended.at(-1)!.lastOffset + 1);
    log.close();
  });

  it('a recovery scan that cuts in a middle segment deletes every later one and reports it', () => {
    const dir = tempDir();
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(dir, testConfig({ segmentBytes: 2048 }), { recover: true, fileOps });
    const appended = Array.from({ length: 30 }, (_, i) => appendBatch(log, makeBatch(2, 200, 1000, i)));
    fileOps.crash();
    const files = segmentFiles(dir, '.log');
    expect(files.length).toBeGreaterThan(3);
    const second = path.join(dir, files[1]!);
    fs.truncateSync(second, fs.statSync(second).size - 5);
    const reopened = openLog(dir, testConfig({ segmentBytes: 2048 }), { recover: true });
    expect(reopened.recovery.segmentsDeleted).toBe(files.length - 2);
    expect(reopened.recovery.reason).toMatch(/cut off|torn/);
    expect(segmentFiles(dir, '.log')).toEqual(files.slice(0, 2));
    const kept = readAll(reopened);
    expect(Buffer.concat(kept).equals(Buffer.concat(appended.slice(0, kept.length).map((entry) => entry.bytes)))).toBe(true);
    reopened.close();
  });
});
