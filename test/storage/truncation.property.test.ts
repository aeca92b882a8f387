/**
 * Truncation as a property, against a model (the list of batches the log should hold, its start
 * and end, and its leader epochs). Random sequences of appends (one batch or several, varying
 * record counts and sizes, small segments so the log rolls), flushes, truncateTo (below the
 * start, inside, at and past the end), resetTo, DeleteRecords, and reopens of three kinds:
 *
 *   clean   close(), reopen without recovery: everything stays
 *   crash   the process dies (descriptors dropped, no close), reopen with recovery: everything
 *           written to the OS stays
 *   power   the machine loses power (power-loss-file-ops.ts: only what was fsynced stays),
 *           reopen with recovery: the log is the model cut to the flushedOffset the log reported
 *           before the loss, exactly
 *
 * After every step the log's logStartOffset, nextOffset, every batch read from logStartOffset and
 * the leader epochs match the model exactly. A truncation is not undone by any later reopen.
 * Every batch is stamped with the leader epoch of its writer, and a truncation or reset starts a
 * new epoch, as a change of leader would.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/lib/clock.js';
import { type EpochEntry, assignEntry, truncatedFromEnd, truncatedFromStart } from '../../src/storage/leader-epoch-file.js';
import type { PartitionLog } from '../../src/storage/partition-log.js';
import { RillError } from '../../src/lib/errors.js';
import { stampPartitionLeaderEpoch } from '../../src/wire/record-batch.js';
import { makeBatch, openLog, readAll, removeTempDirs, tempDir, testConfig } from './helpers.js';
import { PowerLossFileOps } from './power-loss-file-ops.js';

afterAll(removeTempDirs);

type Op =
  | { kind: 'append'; batches: Array<{ records: number; valueBytes: number }> }
  | { kind: 'flush' }
  | { kind: 'truncate'; percent: number }
  | { kind: 'reset'; delta: number }
  | { kind: 'deleteRecords'; percent: number }
  | { kind: 'reopen'; how: 'clean' | 'crash' | 'power' };

const batchSpec = fc.record({ records: fc.integer({ min: 1, max: 6 }), valueBytes: fc.integer({ min: 0, max: 300 }) });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('append' as const), batches: fc.array(batchSpec, { minLength: 1, maxLength: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('flush' as const) }) },
  // Where in [start, end]: below 0 is below the start, above 100 past the end.
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('truncate' as const), percent: fc.integer({ min: -10, max: 110 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reset' as const), delta: fc.integer({ min: -30, max: 30 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteRecords' as const), percent: fc.integer({ min: 0, max: 100 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('reopen' as const), how: fc.constantFrom('clean' as const, 'crash' as const, 'power' as const) }) },
);

interface ModelBatch {
  baseOffset: number;
  lastOffset: number;
  bytes: Buffer;
}

/** What the log must hold. Batches wholly below logStart are dropped from it. */
class Model {
  batches: ModelBatch[] = [];
  logStart = 0;
  nextOffset = 0;
  epochs: readonly EpochEntry[] = [];

  append(batch: ModelBatch): void {
    expect(batch.baseOffset).toBe(this.nextOffset);
    this.batches.push(batch);
    this.nextOffset = batch.lastOffset + 1;
  }

  /** Returns what truncateTo must return, or 'out of range'. */
  truncate(offset: number): number | 'out of range' {
    if (offset < this.logStart) return 'out of range';
    if (offset >= this.nextOffset) return this.nextOffset;
    const holding = this.batches.find((batch) => batch.baseOffset <= offset && offset <= batch.lastOffset)!;
    if (holding.baseOffset < this.logStart) {
      this.reset(this.logStart);
      return this.logStart;
    }
    this.cutTo(holding.baseOffset);
    this.epochs = truncatedFromEnd(this.epochs, holding.baseOffset);
    return holding.baseOffset;
  }

  reset(startOffset: number): void {
    this.batches = [];
    this.logStart = startOffset;
    this.nextOffset = startOffset;
    this.epochs = [];
  }

  deleteRecordsBefore(offset: number): void {
    if (offset <= this.logStart) return;
    this.logStart = offset;
    this.batches = this.batches.filter((batch) => batch.lastOffset >= offset);
    this.epochs = truncatedFromStart(this.epochs, offset);
  }

  /** Keeps the batches below `endOffset` (a batch boundary). */
  cutTo(endOffset: number): void {
    this.batches = this.batches.filter((batch) => batch.lastOffset < endOffset);
    this.nextOffset = endOffset;
  }

  /** What LeaderEpochFile.open does to the list: trim it to the log. */
  trimEpochsToLog(): void {
    this.epochs = truncatedFromStart(truncatedFromEnd(this.epochs, this.nextOffset), this.logStart);
  }
}

function hex(buffers: Buffer[]): string[] {
  return buffers.map((buffer) => buffer.toString('hex'));
}

function expectMatches(log: PartitionLog, model: Model, step: string): void {
  expect(log.logStartOffset, `logStartOffset after ${step}`).toBe(model.logStart);
  expect(log.nextOffset, `nextOffset after ${step}`).toBe(model.nextOffset);
  expect(hex(readAll(log)), `batches after ${step}`).toEqual(hex(model.batches.map((batch) => batch.bytes)));
  expect(log.leaderEpochs.entries, `leader epochs after ${step}`).toEqual(model.epochs);
  expect(log.flushedOffset).toBeLessThanOrEqual(log.nextOffset);
}

describe('truncateTo / resetTo against a model', () => {
  it('random appends, flushes, truncations, resets, deletes and clean, crash and power-loss reopens', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 50, size: 'max' }), fc.integer({ min: 600, max: 3000 }), async (ops, segmentBytes) => {
        const dir = tempDir('rill-truncation-model');
        const config = testConfig({ segmentBytes });
        const clock = new ManualClock(1_000);
        const fileOps = new PowerLossFileOps(dir);
        const open = (recover: boolean): PartitionLog => openLog(dir, config, { recover, fileOps, clock });
        let log = open(true);
        const model = new Model();
        let epoch = 1;
        let seed = 0;
        for (const op of ops) {
          const step = JSON.stringify(op);
          switch (op.kind) {
            case 'append': {
              if (log.leaderEpochs.latestEpoch < epoch) {
                log.leaderEpochs.assign(epoch, log.nextOffset);
                model.epochs = assignEntry(model.epochs, epoch, model.nextOffset);
              }
              const batches = op.batches.map((spec) => {
                const batch = makeBatch(spec.records, spec.valueBytes, clock.nowMs(), seed++);
                stampPartitionLeaderEpoch(batch, 0, epoch);
                return { batch, recordsCount: spec.records, maxTimestampMs: clock.nowMs() + spec.records - 1 };
              });
              let baseOffset = log.appendMany(batches);
              for (const { batch, recordsCount } of batches) {
                model.append({ baseOffset, lastOffset: baseOffset + recordsCount - 1, bytes: Buffer.from(batch) });
                baseOffset += recordsCount;
              }
              break;
            }
            case 'flush':
              expect(await log.flush()).toBe(model.nextOffset);
              break;
            case 'truncate': {
              const span = model.nextOffset - model.logStart;
              const offset = op.percent < 0 ? model.logStart + op.percent : Math.floor(model.logStart + (op.percent / 100) * span);
              const expected = model.truncate(offset);
              if (expected === 'out of range') {
                const error = await log.truncateTo(offset).then(() => null, (e: unknown) => e);
                expect(error).toBeInstanceOf(RillError);
                expect((error as RillError).code).toBe('OFFSET_OUT_OF_RANGE');
              } else {
                const changes = expected < log.nextOffset;
                expect(await log.truncateTo(offset), step).toBe(expected);
                if (changes) {
                  expect(log.flushedOffset).toBe(expected);
                  epoch++;
                }
              }
              break;
            }
            case 'reset': {
              const startOffset = Math.max(0, model.nextOffset + op.delta);
              await log.resetTo(startOffset);
              model.reset(startOffset);
              expect(log.flushedOffset).toBe(startOffset);
              epoch++;
              break;
            }
            case 'deleteRecords': {
              const offset = Math.floor(model.logStart + (op.percent / 100) * (model.nextOffset - model.logStart));
              await log.deleteRecordsBefore(offset);
              model.deleteRecordsBefore(offset);
              break;
            }
            case 'reopen': {
              if (op.how === 'clean') {
                log.close();
              } else if (op.how === 'crash') {
                fileOps.crash();
              } else {
                // Exactly what the log said was durable survives, no more and no less.
                model.cutTo(log.flushedOffset);
                fileOps.powerLoss();
              }
              log = open(op.how !== 'clean');
              model.trimEpochsToLog();
              break;
            }
          }
          expectMatches(log, model, step);
        }
        log.close();
      }),
      { numRuns: 120 },
    );
  });
});
