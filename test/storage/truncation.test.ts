/**
 * Truncation of a partition log for replication (PartitionLog.truncateTo / resetTo, and the
 * Partition methods over them), by example: where the cut lands, what reads, appends, reopens and
 * the leader epochs see afterwards, and that nothing cut comes back after a crash. The model
 * property is in truncation.property.test.ts, the failure cases in truncation-faults.test.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/lib/clock.js';
import { RillError } from '../../src/lib/errors.js';
import { Partition } from '../../src/broker/partition.js';
import { readCheckpoint } from '../../src/storage/checkpoint.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { nodeFileOps } from '../../src/storage/file-ops.js';
import { readLogStart } from '../../src/storage/log-start.js';
import type { PartitionLog } from '../../src/storage/partition-log.js';
import { readBaseOffset, stampPartitionLeaderEpoch } from '../../src/wire/record-batch.js';
import { type Appended, appendBatch, caughtRillError, makeBatch, openLog, readAll, removeTempDirs, segmentFiles, tempDir, testConfig } from './helpers.js';
import { PowerLossFileOps } from './power-loss-file-ops.js';

afterEach(removeTempDirs);

/** About 270 bytes per batch of 2 records with 100-byte values: 3 batches per segment. */
const smallSegments = testConfig({ segmentBytes: 900 });

function fill(log: PartitionLog, batches: number, recordsPerBatch = 2, firstSeed = 0): Appended[] {
  const appended: Appended[] = [];
  for (let i = 0; i < batches; i++) appended.push(appendBatch(log, makeBatch(recordsPerBatch, 100, 1_000 + i, firstSeed + i)));
  return appended;
}

function hex(buffers: Buffer[]): string[] {
  return buffers.map((buffer) => buffer.toString('hex'));
}

function expectHolds(log: PartitionLog, expected: Appended[]): void {
  expect(hex(readAll(log))).toEqual(hex(expected.map((entry) => entry.bytes)));
  expect(log.nextOffset).toBe(expected.length === 0 ? log.logStartOffset : expected.at(-1)!.lastOffset + 1);
}

async function rejection(promise: Promise<unknown>): Promise<RillError> {
  const error = await promise.then(() => null, (e: unknown) => e);
  expect(error).toBeInstanceOf(RillError);
  return error as RillError;
}

describe('truncateTo', () => {
  it('inside the active segment: cuts at a batch boundary; reads, appends and reopens agree', async () => {
    const dir = tempDir('rill-truncate');
    const log = openLog(dir, testConfig(), { recover: false });
    const appended = fill(log, 5); // offsets 0..9, batches at 0, 2, 4, 6, 8
    expect(await log.truncateTo(6)).toBe(6);
    expect(log.nextOffset).toBe(6);
    expect(log.flushedOffset).toBe(6);
    expectHolds(log, appended.slice(0, 3));
    expect(caughtRillError(() => log.read(7, 1024)).code).toBe('OFFSET_OUT_OF_RANGE');
    expect(log.read(6, 1024).batches).toEqual([]);
    const next = appendBatch(log, makeBatch(3, 50, 5_000, 77));
    expect(next.baseOffset).toBe(6);
    log.close();
    const reopened = openLog(dir, testConfig(), { recover: false });
    expectHolds(reopened, [...appended.slice(0, 3), next]);
    reopened.close();
  });

  it('inside a batch: floors to the start of the batch holding the offset', async () => {
    const log = openLog(tempDir('rill-truncate'), testConfig(), { recover: false });
    const appended = fill(log, 4, 5); // batches at 0, 5, 10, 15
    expect(await log.truncateTo(13)).toBe(10);
    expectHolds(log, appended.slice(0, 2));
    expect(await log.truncateTo(6)).toBe(5);
    expectHolds(log, appended.slice(0, 1));
    log.close();
  });

  it('at a segment boundary: the segments from there on are deleted; the previous one becomes active again', async () => {
    const dir = tempDir('rill-truncate');
    const log = openLog(dir, smallSegments, { recover: false });
    const appended = fill(log, 9);
    const bases = log.segmentBaseOffsets;
    expect(bases.length).toBeGreaterThanOrEqual(3);
    const boundary = bases[2]!;
    expect(await log.truncateTo(boundary)).toBe(boundary);
    expect(log.segmentBaseOffsets).toEqual(bases.slice(0, 2));
    expect(segmentFiles(dir, '.log')).toHaveLength(2);
    // The segment that is active again has no index file (it is being appended to).
    expect(segmentFiles(dir, '.index')).toEqual([`${String(bases[0]).padStart(20, '0')}.index`]);
    expectHolds(log, appended.filter((entry) => entry.lastOffset < boundary));
    const more = fill(log, 4, 2, 50);
    expect(more[0]!.baseOffset).toBe(boundary);
    log.close();
    const reopened = openLog(dir, smallSegments, { recover: true });
    expectHolds(reopened, [...appended.filter((entry) => entry.lastOffset < boundary), ...more]);
    reopened.close();
  });

  it('across several segments, into a sealed one: cut there, everything after deleted, the recovery point lowered', async () => {
    const dir = tempDir('rill-truncate');
    const log = openLog(dir, smallSegments, { recover: false });
    const appended = fill(log, 15);
    await log.flush();
    const bases = log.segmentBaseOffsets;
    expect(bases.length).toBeGreaterThanOrEqual(5);
    const target = bases[1]! + 3; // inside the second segment's second batch
    const expectedEnd = bases[1]! + 2;
    expect(await log.truncateTo(target)).toBe(expectedEnd);
    expect(log.segmentBaseOffsets).toEqual(bases.slice(0, 2));
    expect(segmentFiles(dir, '.log')).toHaveLength(2);
    expect(readCheckpoint(nodeFileOps, dir).recoveryPointOffset).toBeLessThanOrEqual(expectedEnd);
    expectHolds(log, appended.filter((entry) => entry.lastOffset < expectedEnd));
    const more = fill(log, 6, 2, 100);
    expect(more[0]!.baseOffset).toBe(expectedEnd);
    log.close();
    const reopened = openLog(dir, smallSegments, { recover: false });
    expectHolds(reopened, [...appended.filter((entry) => entry.lastOffset < expectedEnd), ...more]);
    reopened.close();
  });

  it('to the first segment base: keeps that segment, empty', async () => {
    const dir = tempDir('rill-truncate');
    const log = openLog(dir, smallSegments, { recover: false });
    fill(log, 7);
    expect(await log.truncateTo(0)).toBe(0);
    expect(log.segmentBaseOffsets).toEqual([0]);
    expect(fs.statSync(path.join(dir, segmentFiles(dir, '.log')[0]!)).size).toBe(0);
    expect(readAll(log)).toEqual([]);
    expect(appendBatch(log, makeBatch(1, 10)).baseOffset).toBe(0);
    log.close();
  });

  it('at or past the log end changes nothing and syncs nothing', async () => {
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(tempDir('rill-truncate'), testConfig(), { recover: false, fileOps });
    const appended = fill(log, 3);
    const syncs = fileOps.calls.fdatasync + fileOps.calls.fsyncDir;
    expect(await log.truncateTo(6)).toBe(6);
    expect(await log.truncateTo(1_000)).toBe(6);
    expect(fileOps.calls.fdatasync + fileOps.calls.fsyncDir).toBe(syncs);
    expectHolds(log, appended);
    log.close();
  });

  it('below the log start is OFFSET_OUT_OF_RANGE and changes nothing', async () => {
    const log = openLog(tempDir('rill-truncate'), testConfig(), { recover: false });
    const appended = fill(log, 5);
    await log.deleteRecordsBefore(4);
    for (const bad of [3, -1, 2.5, Number.NaN]) expect((await rejection(log.truncateTo(bad))).code).toBe('OFFSET_OUT_OF_RANGE');
    expect(log.nextOffset).toBe(10);
    expectHolds(log, appended.slice(2));
    log.close();
  });

  it('when the batch holding the offset starts below the log start: the log restarts empty at the start', async () => {
    const dir = tempDir('rill-truncate');
    const log = openLog(dir, testConfig(), { recover: false });
    fill(log, 3, 4); // batches 0..3, 4..7, 8..11
    await log.deleteRecordsBefore(5);
    expect(await log.truncateTo(6)).toBe(5);
    expect(log.logStartOffset).toBe(5);
    expect(log.nextOffset).toBe(5);
    expect(appendBatch(log, makeBatch(2, 10)).baseOffset).toBe(5);
    log.close();
    const reopened = openLog(dir, testConfig(), { recover: true });
    expect(reopened.logStartOffset).toBe(5);
    expect(readAll(reopened).map((batch) => readBaseOffset(batch, 0))).toEqual([5]);
    reopened.close();
  });

  it('drops the leader epochs that start at or after the new end, durably', async () => {
    const dir = tempDir('rill-truncate');
    const log = openLog(dir, smallSegments, { recover: false });
    const appendInEpoch = (epoch: number): void => {
      if (log.leaderEpochs.latestEpoch < epoch) log.leaderEpochs.assign(epoch, log.nextOffset);
      const batch = makeBatch(2, 100, 1_000, epoch);
      stampPartitionLeaderEpoch(batch, 0, epoch);
      appendBatch(log, batch);
    };
    for (const epoch of [1, 1, 1, 2, 2, 4, 4, 4]) appendInEpoch(epoch);
    expect(log.leaderEpochs.entries).toEqual([{ epoch: 1, startOffset: 0 }, { epoch: 2, startOffset: 6 }, { epoch: 4, startOffset: 10 }]);
    expect(await log.truncateTo(9)).toBe(8);
    expect(log.leaderEpochs.entries).toEqual([{ epoch: 1, startOffset: 0 }, { epoch: 2, startOffset: 6 }]);
    expect(log.leaderEpochs.endOffsetFor(2, log.nextOffset)).toEqual({ epoch: 2, endOffset: 8 });
    expect(await log.truncateTo(6)).toBe(6);
    expect(log.leaderEpochs.entries).toEqual([{ epoch: 1, startOffset: 0 }]);
    appendInEpoch(5);
    log.close();
    const reopened = openLog(dir, smallSegments, { recover: true });
    expect(reopened.leaderEpochs.entries).toEqual([{ epoch: 1, startOffset: 0 }, { epoch: 5, startOffset: 6 }]);
    reopened.close();
  });

  it('forgets the max timestamp of the batches it cut', async () => {
    const log = openLog(tempDir('rill-truncate'), testConfig(), { recover: false });
    appendBatch(log, makeBatch(2, 10, 1_000));
    appendBatch(log, makeBatch(2, 10, 2_000));
    appendBatch(log, makeBatch(2, 10, 9_000));
    expect(log.offsetForTimestamp(5_000)).toBe(4);
    await log.truncateTo(4);
    expect(log.offsetForTimestamp(5_000)).toBe(4); // nextOffset: no batch that new
    expect(log.offsetForTimestamp(1_500)).toBe(2);
    log.close();
  });

  it('waits for a running flush round, and no round reports a flushed offset past the new end', async () => {
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(tempDir('rill-truncate'), testConfig(), { recover: false, fileOps });
    fill(log, 3);
    const release = fileOps.holdFsyncs();
    const flushed = log.flush();
    fill(log, 2, 2, 10);
    let truncated = false;
    const truncation = log.truncateTo(2).then((end) => ((truncated = true), end));
    const secondFlush = log.flush();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(truncated).toBe(false);
    release();
    expect(await flushed).toBe(6);
    expect(await secondFlush).toBeGreaterThanOrEqual(6);
    expect(await truncation).toBe(2);
    expect(log.flushedOffset).toBe(2);
    expect(log.nextOffset).toBe(2);
    appendBatch(log, makeBatch(1, 10));
    expect(await log.flush()).toBe(3);
    log.close();
  });

  it('waits for a round that starts after its own flush, so that round cannot report past the new end', async () => {
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(tempDir('rill-truncate'), testConfig(), { recover: false, fileOps });
    fill(log, 3);
    const releaseFirst = fileOps.holdFsyncs();
    let truncated = false;
    const truncation = log.truncateTo(2).then((end) => ((truncated = true), end)); // its flush: round 1
    fill(log, 2, 2, 10);
    const laterFlush = log.flush(); // queued: round 2, to offset 10
    releaseFirst();
    const releaseSecond = fileOps.holdFsyncs(); // round 2 starts when round 1 settles, and waits here
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(truncated).toBe(false);
    expect(log.nextOffset).toBe(10);
    releaseSecond();
    expect(await laterFlush).toBe(10);
    expect(await truncation).toBe(2);
    expect(log.flushedOffset).toBe(2);
    log.close();
  });

  it('a power loss right after it returns does not bring the cut records back', async () => {
    const dir = tempDir('rill-truncate');
    const fileOps = new PowerLossFileOps(dir);
    const log = openLog(dir, smallSegments, { recover: true, fileOps });
    const appended = fill(log, 12);
    await log.flush();
    const end = await log.truncateTo(appended[7]!.baseOffset);
    fileOps.powerLoss();
    const reopened = openLog(dir, smallSegments, { recover: true, fileOps });
    expect(end).toBe(appended[7]!.baseOffset);
    expectHolds(reopened, appended.slice(0, 7));
    // And again with appends after the cut that were never flushed: they go, the cut stays.
    fill(reopened, 3, 2, 40);
    fileOps.powerLoss();
    const again = openLog(dir, smallSegments, { recover: true, fileOps });
    expectHolds(again, appended.slice(0, 7));
    again.close();
    expect(fileOps.powerLosses).toBe(2);
  });
});

describe('the recovery point after a cut', () => {
  // A recovery point left above the new end would make a later recovery trust segments written
  // after the cut as if they had been fsynced (it trusts every segment below the one holding the
  // recovery point), report them as flushed, and lose them to the next power loss.
  for (const [name, cut] of [
    ['truncateTo', (log: PartitionLog) => log.truncateTo(0)],
    ['resetTo', (log: PartitionLog) => log.resetTo(0)],
  ] as const) {
    it(`${name}: a stale recovery point never makes recovery trust data appended after the cut`, async () => {
      const dir = tempDir('rill-truncate');
      const fileOps = new PowerLossFileOps(dir);
      const log = openLog(dir, smallSegments, { recover: true, fileOps });
      fill(log, 9);
      await log.flush(); // the recovery point is now 18
      await cut(log);
      expect(readCheckpoint(nodeFileOps, dir).recoveryPointOffset).toBe(0);
      const appended = fill(log, 9, 2, 20); // rolls twice below offset 18, nothing fsynced
      fileOps.crash();
      const recovered = openLog(dir, smallSegments, { recover: true, fileOps });
      expect(recovered.flushedOffset).toBe(18);
      fileOps.powerLoss();
      const reopened = openLog(dir, smallSegments, { recover: true, fileOps });
      expectHolds(reopened, appended);
      reopened.close();
    });
  }
});

describe('resetTo', () => {
  it('above the log end: one empty segment at the new start, persisted; appends continue there', async () => {
    const dir = tempDir('rill-reset');
    const log = openLog(dir, smallSegments, { recover: false });
    fill(log, 8);
    log.leaderEpochs.assign(3, 0);
    await log.resetTo(1_000);
    expect(log.logStartOffset).toBe(1_000);
    expect(log.nextOffset).toBe(1_000);
    expect(log.flushedOffset).toBe(1_000);
    expect(log.segmentBaseOffsets).toEqual([1_000]);
    expect(segmentFiles(dir, '.log')).toEqual(['00000000000000001000.log']);
    expect(readLogStart(nodeFileOps, dir).logStartOffset).toBe(1_000);
    expect(log.leaderEpochs.entries).toEqual([]);
    expect(caughtRillError(() => log.read(999, 1024)).code).toBe('OFFSET_OUT_OF_RANGE');
    const next = appendBatch(log, makeBatch(2, 10));
    expect(next.baseOffset).toBe(1_000);
    log.close();
    const reopened = openLog(dir, smallSegments, { recover: false });
    expect(reopened.logStartOffset).toBe(1_000);
    expectHolds(reopened, [next]);
    reopened.close();
  });

  it('inside the log, at a segment base, and below the current start', async () => {
    const dir = tempDir('rill-reset');
    const log = openLog(dir, smallSegments, { recover: false });
    fill(log, 8);
    const base = log.segmentBaseOffsets[1]!;
    await log.resetTo(base);
    expect(log.segmentBaseOffsets).toEqual([base]);
    expect(readAll(log)).toEqual([]);
    await log.resetTo(base + 3);
    expect(log.logStartOffset).toBe(base + 3);
    await log.resetTo(1);
    expect(log.logStartOffset).toBe(1);
    expect(log.nextOffset).toBe(1);
    const next = appendBatch(log, makeBatch(2, 10));
    expect(next.baseOffset).toBe(1);
    expect((await rejection(log.resetTo(-5))).code).toBe('OFFSET_OUT_OF_RANGE');
    log.close();
    const reopened = openLog(dir, smallSegments, { recover: true });
    expect(reopened.logStartOffset).toBe(1);
    expectHolds(reopened, [next]);
    reopened.close();
  });

  it('survives a crash and a power loss right after it returns', async () => {
    const dir = tempDir('rill-reset');
    const fileOps = new PowerLossFileOps(dir);
    const log = openLog(dir, smallSegments, { recover: true, fileOps });
    fill(log, 8);
    await log.resetTo(500);
    fileOps.crash();
    const afterCrash = openLog(dir, smallSegments, { recover: true, fileOps });
    expect([afterCrash.logStartOffset, afterCrash.nextOffset]).toEqual([500, 500]);
    fill(afterCrash, 2);
    await afterCrash.resetTo(40);
    fileOps.powerLoss();
    const afterPowerLoss = openLog(dir, smallSegments, { recover: true, fileOps });
    expect([afterPowerLoss.logStartOffset, afterPowerLoss.nextOffset]).toEqual([40, 40]);
    expect(readAll(afterPowerLoss)).toEqual([]);
    afterPowerLoss.close();
  });
});

describe('Partition.truncateTo / resetTo', () => {
  function partitionOver(dir: string, fileOps = new FaultInjectingFileOps()): { partition: Partition; fileOps: FaultInjectingFileOps } {
    const log = openLog(dir, smallSegments, { recover: true, fileOps, clock: new ManualClock(0) });
    const partition = new Partition('t', 0, log, () => openLog(dir, smallSegments, { recover: true, fileOps, clock: new ManualClock(0) }));
    return { partition, fileOps };
  }

  function batchesOf(count: number, firstSeed: number): Array<{ batch: Buffer; recordsCount: number; maxTimestampMs: number }> {
    return Array.from({ length: count }, (_, i) => ({ batch: makeBatch(2, 100, 1_000, firstSeed + i), recordsCount: 2, maxTimestampMs: 1_001 }));
  }

  it('the high watermark follows the end down; pending acks=all batches past the cut are dropped, those below released', async () => {
    const { partition } = partitionOver(tempDir('rill-partition-truncate'));
    partition.append(batchesOf(3, 0), false); // 0..5, visible at once
    partition.publish();
    partition.append(batchesOf(1, 3), true); // 6..7, pending an fsync
    partition.append(batchesOf(2, 4), true); // 8..11, pending
    partition.publish();
    expect(partition.highWatermark).toBe(6);
    let wakeUps = 0;
    partition.onAdvance(() => wakeUps++);
    expect(await partition.truncateTo(9)).toBe(8);
    // 6..7 is durable now (the cut fsyncs); 8.. is gone.
    expect(partition.highWatermark).toBe(8);
    expect(partition.hasPendingDurable).toBe(false);
    expect(wakeUps).toBe(1);
    expect(await partition.truncateTo(2)).toBe(2);
    expect(partition.highWatermark).toBe(2);
    expect(wakeUps).toBe(2);
    expect((await rejection(partition.truncateTo(-1))).code).toBe('OFFSET_OUT_OF_RANGE');
    expect(partition.append(batchesOf(1, 9), false)).toBe(2);
    partition.close();
  });

  it('resetTo moves the high watermark to the new start', async () => {
    const { partition } = partitionOver(tempDir('rill-partition-truncate'));
    partition.append(batchesOf(4, 0), true);
    await partition.flush();
    expect(partition.highWatermark).toBe(8);
    await partition.resetTo(100);
    expect(partition.highWatermark).toBe(100);
    expect(partition.log.logStartOffset).toBe(100);
    expect(partition.append(batchesOf(1, 5), false)).toBe(100);
    partition.close();
  });

  it('a failed cut takes the reopen path: STORAGE_ERROR, then a recovered log the caller can truncate again', async () => {
    const dir = tempDir('rill-partition-truncate');
    const { partition, fileOps } = partitionOver(dir);
    partition.append(batchesOf(6, 0), true);
    await partition.flush();
    const before = hex(readAll(partition.log));
    fileOps.inject('ftruncate', 'EIO');
    const error = await rejection(partition.truncateTo(5));
    expect(error.code).toBe('STORAGE_ERROR');
    expect(partition.reopenCount).toBe(1);
    expect(partition.isOffline).toBe(false);
    const reopened = hex(readAll(partition.log));
    expect(before.slice(0, reopened.length)).toEqual(reopened);
    expect(partition.log.nextOffset).toBeGreaterThanOrEqual(4);
    expect(await partition.truncateTo(5)).toBe(4);
    expect(partition.highWatermark).toBe(4);
    partition.close();
  });
});
