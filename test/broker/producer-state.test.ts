/**
 * The idempotent-producer state machine (src/broker/producer-state.ts): the decision table,
 * sequence wrap-around, snapshots, the rebuild from a real partition log after a "crash", and a
 * property: whatever order a network delivers (re)sent batches of a producer with up to 5 in
 * flight, each batch is stored exactly once, in sequence order, duplicates are answered with
 * their original offsets, and everything else gets a typed error.
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { RillError } from '../../src/lib/errors.js';
import { producerStateBatchesMax } from '../../src/lib/limits.js';
import { PartitionProducers, ProducerStates, appendNew, decodeSnapshot, encodeSnapshot, sequenceAfter, sequenceMax } from '../../src/broker/producer-state.js';
import { Partition } from '../../src/broker/partition.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { encodeBatch } from '../../src/wire/record-batch.js';
import { removeTempDirs, tempDir, testConfig } from '../storage/helpers.js';

afterEach(() => removeTempDirs());

function codeOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    if (error instanceof RillError) return error.code;
    throw error;
  }
  return 'NONE';
}

/** A driver that applies a check and, if new, "appends" at a running offset. */
class Harness {
  nextOffset = 0;
  constructor(readonly state = new PartitionProducers()) {}

  send(producerId: number, epoch: number, baseSequence: number, recordsCount: number): number {
    const verdict = this.state.check(producerId, epoch, baseSequence, recordsCount);
    if (verdict !== appendNew) return verdict;
    const baseOffset = this.nextOffset;
    this.nextOffset += recordsCount;
    this.state.record(producerId, epoch, baseSequence, recordsCount, baseOffset, 1_000);
    return baseOffset;
  }
}

describe('sequence arithmetic', () => {
  it('wraps from 2^31 - 1 to 0 like Kafka', () => {
    expect(sequenceAfter(0, 5)).toBe(5);
    expect(sequenceAfter(sequenceMax, 1)).toBe(0);
    expect(sequenceAfter(sequenceMax - 2, 5)).toBe(2);
  });
});

describe('PartitionProducers decisions', () => {
  it('stores in order, answers duplicates of the last 5 batches with their original offsets', () => {
    const h = new Harness();
    const offsets: number[] = [];
    for (let i = 0; i < 8; i++) offsets.push(h.send(7, 0, i * 10, 10));
    expect(offsets).toEqual([0, 10, 20, 30, 40, 50, 60, 70]);
    for (let i = 8 - producerStateBatchesMax; i < 8; i++) expect(h.send(7, 0, i * 10, 10)).toBe(offsets[i]);
    expect(h.nextOffset).toBe(80);
    // Older than the remembered window: cannot be told from a bad sequence.
    expect(codeOf(() => h.send(7, 0, 20, 10))).toBe('OUT_OF_ORDER_SEQUENCE');
    // Same first sequence, different length: not the same batch.
    expect(codeOf(() => h.send(7, 0, 70, 5))).toBe('OUT_OF_ORDER_SEQUENCE');
    // A gap.
    expect(codeOf(() => h.send(7, 0, 90, 10))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(h.send(7, 0, 80, 10)).toBe(80);
  });

  it('fences stale epochs and lets a higher epoch start again at 0', () => {
    const h = new Harness();
    h.send(3, 0, 0, 4);
    expect(codeOf(() => h.send(3, 1, 4, 1))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(h.send(3, 1, 0, 2)).toBe(4);
    expect(codeOf(() => h.send(3, 0, 4, 1))).toBe('INVALID_PRODUCER_EPOCH');
    // The old epoch's batches are no longer duplicates either: they are fenced.
    expect(codeOf(() => h.send(3, 0, 0, 4))).toBe('INVALID_PRODUCER_EPOCH');
    expect(h.send(3, 1, 2, 1)).toBe(6);
  });

  it('a producer new on the partition starts at 0, unless its state may have been forgotten', () => {
    const h = new Harness(new PartitionProducers(100));
    expect(codeOf(() => h.send(100, 0, 5, 1))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(h.send(100, 0, 0, 1)).toBe(0);
    // id 99 is below forgottenBelow: its state may have expired, any sequence restarts it (KIP-360).
    expect(h.send(99, 0, 12345, 1)).toBe(1);
    expect(h.send(99, 0, 12346, 1)).toBe(2);
  });

  it('keeps working across the sequence wrap', () => {
    const h = new Harness(new PartitionProducers(10));
    const start = sequenceMax - 4;
    expect(h.send(1, 0, start, 3)).toBe(0);
    expect(h.send(1, 0, sequenceAfter(start, 3), 4)).toBe(3); // covers sequenceMax - 1 .. 1
    expect(h.send(1, 0, sequenceAfter(start, 3), 4)).toBe(3); // duplicate across the wrap
    expect(h.send(1, 0, 2, 1)).toBe(7);
  });

  it('forgets producers silent for a day, and raises forgottenBelow past them', () => {
    const state = new PartitionProducers();
    state.record(5, 0, 0, 1, 0, 1_000);
    state.record(6, 0, 0, 1, 1, 1_000 + 2 * 24 * 3600 * 1000);
    expect(state.expire(1_000 + 2 * 24 * 3600 * 1000)).toBe(1);
    expect(state.size).toBe(1);
    expect(state.forgottenBelow).toBe(6);
    expect(state.check(5, 0, 1, 1)).toBe(appendNew);
  });
});

describe('snapshots', () => {
  it('round-trip the state, and reject damaged bytes', () => {
    const h = new Harness();
    for (let i = 0; i < 7; i++) h.send(11, 2, i, 1);
    h.send(12, 0, 0, 3);
    const bytes = encodeSnapshot(h.nextOffset, h.state);
    const decoded = decodeSnapshot(bytes);
    expect(decoded.offset).toBe(10);
    const restored = new Harness(PartitionProducers.fromRows(decoded.rows, decoded.forgottenBelow));
    restored.nextOffset = h.nextOffset;
    for (let i = 7 - producerStateBatchesMax; i < 7; i++) expect(restored.send(11, 2, i, 1)).toBe(i);
    expect(codeOf(() => restored.send(11, 2, 1, 1))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(restored.send(12, 0, 0, 3)).toBe(7);
    expect(restored.send(11, 2, 7, 1)).toBe(10);
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 2]! ^= 0x40;
    expect(() => decodeSnapshot(damaged)).toThrow(/CRC/);
    expect(() => decodeSnapshot(bytes.subarray(0, 5))).toThrow(/too short/);
  });
});

describe('rebuild from the log', () => {
  const config = testConfig({ segmentBytes: 4096 });

  function batch(producerId: number, epoch: number, baseSequence: number, recordsCount: number, seed: number): Buffer {
    const records = Array.from({ length: recordsCount }, (_, i) => ({ key: `k${seed}`, value: `v${seed}-${i}`.padEnd(100, '.'), timestamp: Date.now() }));
    return Buffer.from(encodeBatch(records, Date.now(), { producerId, producerEpoch: epoch, baseSequence }));
  }

  function setup(): { dataDir: string; dir: string } {
    const dir = tempDir('rill-producer-state');
    return { dataDir: path.dirname(dir), dir };
  }

  /** Appends like the produce handler: check, append, record. */
  function produce(states: ProducerStates, partition: Partition, bytes: Buffer, producerId: number, epoch: number, seq: number, count: number): number {
    const state = states.stateOf(partition);
    const verdict = state.check(producerId, epoch, seq, count);
    if (verdict !== appendNew) return verdict;
    const baseOffset = partition.append([{ batch: bytes, recordsCount: count, maxTimestampMs: Date.now() + count }], false);
    state.record(producerId, epoch, seq, count, baseOffset, Date.now());
    states.afterAppend(partition, bytes.length);
    return baseOffset;
  }

  it('recognises retries after a crash (no snapshot: the log tail is replayed, across segments)', () => {
    const { dataDir, dir } = setup();
    const log = PartitionLog.open(dir, config, { recover: false });
    const partition = new Partition('t', 0, log);
    const states = new ProducerStates(dataDir, () => {});
    const pidA = states.allocateProducerId();
    const pidB = states.allocateProducerId();
    const sent: { pid: number; seq: number; count: number; bytes: Buffer; offset: number }[] = [];
    const seqs = new Map([[pidA, 0], [pidB, 0]]);
    for (let i = 0; i < 40; i++) {
      const pid = i % 3 === 0 ? pidB : pidA;
      const count = 1 + (i % 4);
      const seq = seqs.get(pid)!;
      const bytes = batch(pid, 0, seq, count, i);
      sent.push({ pid, seq, count, bytes: Buffer.from(bytes), offset: produce(states, partition, bytes, pid, 0, seq, count) });
      seqs.set(pid, seq + count);
    }
    expect(log.segmentCount).toBeGreaterThan(2);
    // "Crash": no clean close, no snapshot; reopen with recovery.
    const reopened = PartitionLog.open(dir, config, { recover: true });
    const after = new Partition('t', 0, reopened);
    const restarted = new ProducerStates(dataDir, () => {});
    const end = reopened.nextOffset;
    const lastOfA = sent.filter((s) => s.pid === pidA).slice(-producerStateBatchesMax);
    for (const s of lastOfA) expect(produce(restarted, after, Buffer.from(s.bytes), s.pid, 0, s.seq, s.count)).toBe(s.offset);
    expect(reopened.nextOffset).toBe(end);
    // Ids keep growing across restarts.
    expect(restarted.allocateProducerId()).toBeGreaterThan(pidB);
    // The next sequence continues; a gap is refused.
    const nextA = seqs.get(pidA)!;
    expect(codeOf(() => restarted.stateOf(after).check(pidA, 0, nextA + 1, 1))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(produce(restarted, after, batch(pidA, 0, nextA, 1, 99), pidA, 0, nextA, 1)).toBe(end);
    reopened.close();
  });

  it('uses the clean-shutdown snapshot plus a replay of what came after it, and ignores a snapshot past the log end', () => {
    const { dataDir, dir } = setup();
    const log = PartitionLog.open(dir, config, { recover: false });
    const partition = new Partition('t', 0, log);
    const states = new ProducerStates(dataDir, () => {});
    const pid = states.allocateProducerId();
    const first = batch(pid, 0, 0, 2, 1);
    expect(produce(states, partition, Buffer.from(first), pid, 0, 0, 2)).toBe(0);
    states.snapshotAll([partition]);
    const snapshotFile = path.join(path.dirname(dir), `${path.basename(dir)}.producer-state`);
    expect(decodeSnapshot(fs.readFileSync(snapshotFile)).offset).toBe(2);
    const second = batch(pid, 0, 2, 3, 2);
    expect(produce(states, partition, Buffer.from(second), pid, 0, 2, 3)).toBe(2);
    log.close();

    const restarted = new ProducerStates(dataDir, () => {});
    const reopened = new Partition('t', 0, PartitionLog.open(dir, config, { recover: true }));
    expect(produce(restarted, reopened, Buffer.from(first), pid, 0, 0, 2)).toBe(0);
    expect(produce(restarted, reopened, Buffer.from(second), pid, 0, 2, 3)).toBe(2);
    reopened.log.close();

    // A snapshot claiming more than the log holds (the log lost its tail) is not trusted.
    const h = new Harness();
    h.send(pid, 0, 0, 50);
    fs.writeFileSync(snapshotFile, encodeSnapshot(1_000, h.state));
    const warnings: string[] = [];
    const third = new ProducerStates(dataDir, (_level, message) => warnings.push(message));
    const again = new Partition('t', 0, PartitionLog.open(dir, config, { recover: true }));
    expect(produce(third, again, Buffer.from(second), pid, 0, 2, 3)).toBe(2);
    expect(warnings.join('\n')).toMatch(/outside/);
    again.log.close();
  });
});

describe('property: any delivery order of up to 5 in-flight batches', () => {
  it('stores every batch exactly once, in order; duplicates get original offsets; the rest typed errors', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 150 }),
        fc.boolean(),
        (counts, deliveries, nearWrap) => {
          const producerId = 42;
          // Start either fresh (sequence 0) or with state just before the wrap.
          const state = new PartitionProducers(0);
          const h = new Harness(state);
          let firstSequence = 0;
          if (nearWrap) {
            firstSequence = sequenceMax - 20;
            state.record(producerId, 0, sequenceMax - 30, 10, 0, 1_000);
            h.nextOffset = 10;
          }
          const offsetBefore = h.nextOffset;
          const sequences: number[] = [];
          let seq = firstSequence;
          for (const count of counts) {
            sequences.push(seq);
            seq = sequenceAfter(seq, count);
          }
          const storedAt: (number | undefined)[] = new Array(counts.length).fill(undefined);
          const appendOrder: number[] = [];
          const deliver = (i: number): void => {
            const before = h.nextOffset;
            let result: number;
            try {
              result = h.send(producerId, 0, sequences[i]!, counts[i]!);
            } catch (error) {
              expect(error).toBeInstanceOf(RillError);
              expect((error as RillError).code).toBe('OUT_OF_ORDER_SEQUENCE');
              expect(h.nextOffset).toBe(before);
              return;
            }
            if (h.nextOffset > before) {
              expect(storedAt[i]).toBeUndefined();
              storedAt[i] = result;
              appendOrder.push(i);
            } else {
              expect(result).toBe(storedAt[i]);
            }
          };
          // The client keeps at most 5 batches beyond the first unacknowledged one; the network may
          // deliver any of them, or a stale copy of anything earlier, any number of times.
          for (const d of deliveries) {
            const firstUnacked = storedAt.findIndex((s) => s === undefined);
            const windowEnd = firstUnacked < 0 ? counts.length : Math.min(counts.length, firstUnacked + producerStateBatchesMax);
            deliver(d % windowEnd);
          }
          // Finally the producer retries what is unacknowledged, in order.
          for (let i = 0; i < counts.length; i++) if (storedAt[i] === undefined) deliver(i);
          expect(appendOrder).toEqual(counts.map((_, i) => i));
          let offset = offsetBefore;
          counts.forEach((count, i) => {
            expect(storedAt[i]).toBe(offset);
            offset += count;
          });
        },
      ),
      { numRuns: 500 },
    );
  });
});
