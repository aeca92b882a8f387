/**
 * Truncation when the disk fails, through the fault-injecting file layer stacked on the
 * power-loss simulator (a failed fsync syncs nothing). Every file call truncateTo / resetTo make
 * is failed in turn (each faultable op, at its first, second, ... call, until the operation gets
 * through without meeting the fault); then the process dies or the machine loses power, and the
 * log is reopened with recovery. What we guarantee, and check:
 *
 *   - the failed call throws STORAGE_ERROR, and the log refuses appends and flushes until it is
 *     reopened (as after a failed fsync); a read failure while finding the cut changes nothing
 *   - truncateTo: the reopened log is a prefix (same offsets, same bytes) of the log before the
 *     call: never longer, possibly longer than the requested end (the caller truncates again),
 *     and never shorter than the new end would have been, even where records below it were not
 *     flushed before the call (the call flushes first); its leader epochs end within it
 *   - resetTo: the reopened log is either a prefix of the old one (possibly empty, at the old
 *     start) or the new empty log at the new start; never a mix
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RillError } from '../../src/lib/errors.js';
import { type FaultOp, FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import type { PartitionLog } from '../../src/storage/partition-log.js';
import { stampPartitionLeaderEpoch } from '../../src/wire/record-batch.js';
import { type Appended, appendBatch, caughtRillError, makeBatch, openLog, readAll, removeTempDirs, tempDir, testConfig } from './helpers.js';
import { PowerLossFileOps } from './power-loss-file-ops.js';

afterEach(removeTempDirs);

const config = testConfig({ segmentBytes: 900 });
/** Every faultable call a truncation makes (durable writes go through open, writev, fdatasync, rename, fsyncDir). */
const faultOps: FaultOp[] = ['ftruncate', 'fdatasync', 'fsyncDir', 'writev', 'open', 'rename'];
/** resetTo deletes every segment: it cuts none. */
const resetFaultOps = faultOps.filter((op) => op !== 'ftruncate');
const callsMax = 30;

interface Setup {
  dir: string;
  power: PowerLossFileOps;
  faults: FaultInjectingFileOps;
  log: PartitionLog;
  appended: Appended[];
}

/** 12 batches of 2 records over 4 segments, in leader epochs 1 (offsets 0..11) and 2 (12..23). */
function setUp(flushAll: boolean): Setup {
  const dir = tempDir('rill-truncation-faults');
  const power = new PowerLossFileOps(dir);
  const faults = new FaultInjectingFileOps(power);
  const log = openLog(dir, config, { recover: true, fileOps: faults });
  const appended: Appended[] = [];
  for (let i = 0; i < 12; i++) {
    const epoch = i < 6 ? 1 : 2;
    if (log.leaderEpochs.latestEpoch < epoch) log.leaderEpochs.assign(epoch, log.nextOffset);
    const batch = makeBatch(2, 100, 1_000 + i, i);
    stampPartitionLeaderEpoch(batch, 0, epoch);
    appended.push(appendBatch(log, batch));
  }
  return { dir, power, faults, log, appended };
}

function hex(buffers: Buffer[]): string[] {
  return buffers.map((buffer) => buffer.toString('hex'));
}

async function outcome<T>(promise: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return promise.then((value) => ({ value }), (error: unknown) => ({ error }));
}

/** The failed log: STORAGE_ERROR thrown, appends and flushes refused. */
async function expectFailedLog(log: PartitionLog, error: unknown): Promise<void> {
  expect(error).toBeInstanceOf(RillError);
  expect((error as RillError).code).toBe('STORAGE_ERROR');
  expect(log.failed).toBe(true);
  expect(caughtRillError(() => log.append(makeBatch(1, 10), 1, 1_000)).code).toBe('STORAGE_ERROR');
  await expect(log.flush()).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
}

/** The process dies or the machine loses power; the log is reopened with recovery (no faults). */
function reopenAfter(setup: Setup, how: 'crash' | 'power'): PartitionLog {
  setup.faults.crash();
  if (how === 'power') setup.power.powerLoss();
  return openLog(setup.dir, config, { recover: true, fileOps: setup.power });
}

describe('a failing file call during truncateTo', () => {
  for (const op of faultOps) {
    for (const how of ['crash', 'power'] as const) {
      it(`${op}, then a ${how}: STORAGE_ERROR, a failed log, and a reopened prefix no shorter than the new end`, async () => {
        let failures = 0;
        for (let skip = 0; skip < callsMax; skip++) {
          const setup = setUp(true);
          await setup.log.flush();
          const oldEnd = setup.log.nextOffset;
          const before = hex(readAll(setup.log));
          const newEnd = setup.appended[5]!.baseOffset; // the second segment, inside a batch
          setup.faults.inject(op, 'EIO', { skip });
          const result = await outcome(setup.log.truncateTo(newEnd + 1));
          if (setup.faults.hasPendingFaults) {
            // Never reached: the truncation went through.
            expect(result).toEqual({ value: newEnd });
            setup.faults.clearFaults();
            setup.log.close();
            break;
          }
          failures++;
          await expectFailedLog(setup.log, 'error' in result ? result.error : null);
          const reopened = reopenAfter(setup, how);
          const after = hex(readAll(reopened));
          expect(after).toEqual(before.slice(0, after.length));
          expect(reopened.nextOffset).toBeGreaterThanOrEqual(newEnd);
          expect(reopened.nextOffset).toBeLessThanOrEqual(oldEnd);
          for (const entry of reopened.leaderEpochs.entries) expect(entry.startOffset).toBeLessThan(reopened.nextOffset);
          // The caller truncates again, and it holds.
          expect(await reopened.truncateTo(newEnd + 1)).toBe(newEnd);
          reopened.close();
        }
        expect(failures).toBeGreaterThan(0);
      });
    }
  }

  it('records below the cut that were not flushed before the call survive a failed cut and a power loss', async () => {
    const setup = setUp(false);
    const oldEnd = setup.log.nextOffset;
    expect(setup.log.flushedOffset).toBe(0);
    const before = hex(readAll(setup.log));
    const newEnd = setup.appended[10]!.baseOffset; // inside the last segment: it is ftruncated
    setup.faults.inject('ftruncate', 'EIO');
    const result = await outcome(setup.log.truncateTo(newEnd));
    await expectFailedLog(setup.log, 'error' in result ? result.error : null);
    const reopened = reopenAfter(setup, 'power');
    const after = hex(readAll(reopened));
    expect(after).toEqual(before.slice(0, after.length));
    expect(reopened.nextOffset).toBeGreaterThanOrEqual(newEnd);
    expect(reopened.nextOffset).toBeLessThanOrEqual(oldEnd);
    reopened.close();
  });

  it('a read failure while finding the cut is STORAGE_ERROR and changes nothing', async () => {
    const setup = setUp(true);
    await setup.log.flush();
    const before = hex(readAll(setup.log));
    setup.faults.inject('read', 'EIO');
    const result = await outcome(setup.log.truncateTo(7));
    expect('error' in result && (result.error as RillError).code).toBe('STORAGE_ERROR');
    expect(setup.log.failed).toBe(false);
    expect(hex(readAll(setup.log))).toEqual(before);
    expect(await setup.log.truncateTo(7)).toBe(6);
    setup.log.close();
  });
});

it('a full disk while resetTo creates the fresh segment is STORAGE_ERROR too: the log is failed', async () => {
  const setup = setUp(true);
  await setup.log.flush();
  // resetTo opens: the recovery point's temp file, the log start's temp file, then the segment.
  setup.faults.inject('open', 'ENOSPC', { skip: 2 });
  const result = await outcome(setup.log.resetTo(500));
  await expectFailedLog(setup.log, 'error' in result ? result.error : null);
  expect((result as { error: RillError }).error.message).toMatch(/creating segment .*ENOSPC/);
  const reopened = reopenAfter(setup, 'power');
  expect([reopened.logStartOffset, reopened.nextOffset]).toEqual([500, 500]);
  reopened.close();
});

describe('a failing file call during resetTo', () => {
  for (const op of resetFaultOps) {
    for (const how of ['crash', 'power'] as const) {
      it(`${op}, then a ${how}: STORAGE_ERROR, a failed log, and either a prefix of the old log or the new one`, async () => {
        let failures = 0;
        for (let skip = 0; skip < callsMax; skip++) {
          const setup = setUp(true);
          await setup.log.flush();
          const before = hex(readAll(setup.log));
          const startOffset = 1_000 + skip;
          setup.faults.inject(op, 'EIO', { skip });
          const result = await outcome(setup.log.resetTo(startOffset));
          if (setup.faults.hasPendingFaults) {
            expect(result).toEqual({ value: undefined });
            expect(setup.log.nextOffset).toBe(startOffset);
            setup.faults.clearFaults();
            setup.log.close();
            break;
          }
          failures++;
          await expectFailedLog(setup.log, 'error' in result ? result.error : null);
          const reopened = reopenAfter(setup, how);
          const after = hex(readAll(reopened));
          if (reopened.logStartOffset === startOffset) {
            expect(after).toEqual([]);
            expect(reopened.nextOffset).toBe(startOffset);
          } else {
            expect(reopened.logStartOffset).toBe(0);
            expect(after).toEqual(before.slice(0, after.length));
          }
          for (const entry of reopened.leaderEpochs.entries) expect(entry.startOffset).toBeLessThanOrEqual(reopened.nextOffset);
          await reopened.resetTo(startOffset);
          expect([reopened.logStartOffset, reopened.nextOffset]).toEqual([startOffset, startOffset]);
          reopened.close();
        }
        expect(failures).toBeGreaterThan(0);
      });
    }
  }
});
