import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  BatchBuilder, BatchField, batchHeaderBytes, checkBatchFrame, decodeBatch, encodeBatch, newBatchInfo, readBaseOffset, readBatchSize,
  readLastOffsetDelta, readMaxTimestamp, stampBaseOffset, validateBatch, type ConsumedRecord, type RecordInput,
} from '../../src/wire/record-batch.js';
import { crc32c } from '../../src/wire/crc32c.js';
import { batchBytesMax } from '../../src/lib/limits.js';
import { decodeErrorOf, expectDecodeError, mutate, mutationsArb } from './helpers.js';

const bytesArb = fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b));
/** Strings without lone surrogates: those cannot round-trip through UTF-8 in any language. */
const textArb = fc.string({ unit: 'binary', maxLength: 24 });
const fieldArb = fc.option(fc.oneof(bytesArb, textArb), { nil: null });
const recordArb = fc.record({
  key: fieldArb,
  value: fieldArb,
  headers: fc.array(fc.record({ key: textArb, value: fc.option(bytesArb, { nil: null }) }), { maxLength: 4 }),
  timestamp: fc.integer({ min: -(2 ** 44), max: 2 ** 46 }),
});
const producerArb = fc.option(fc.record({
  producerId: fc.integer({ min: -1, max: Number.MAX_SAFE_INTEGER }),
  producerEpoch: fc.integer({ min: -1, max: 0x7fff }),
  baseSequence: fc.integer({ min: -1, max: 0x7fffffff }),
}), { nil: undefined });

function asBuffer(value: Buffer | string | null): Buffer | null {
  return value === null ? null : typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

function decodeAll(batch: Buffer): { records: ConsumedRecord[]; header: ReturnType<typeof decodeBatch> } {
  const records: ConsumedRecord[] = [];
  const header = decodeBatch(batch, 0, batch.length, (r) => records.push(r));
  return { records, header };
}

/** A small valid batch to mutate. */
const batchArb = fc.tuple(fc.array(recordArb, { minLength: 1, maxLength: 5 }), producerArb).map(([records, producer]) => encodeBatch(records, 0, producer));

describe('record batch round trip', () => {
  it('encode -> validate -> decode gives back every record, header and producer field', () => {
    fc.assert(fc.property(fc.array(recordArb, { minLength: 1, maxLength: 30 }), producerArb, fc.integer({ min: 0, max: 2 ** 50 }), (records, producer, baseOffset) => {
      const batch = encodeBatch(records, 0, producer);
      stampBaseOffset(batch, 0, baseOffset);
      const info = newBatchInfo();
      validateBatch(batch, 0, batch.length, info);
      const timestamps = records.map((r) => r.timestamp);
      expect(info).toEqual({
        sizeBytes: batch.length, recordsCount: records.length, baseTimestamp: timestamps[0], maxTimestamp: Math.max(...timestamps),
        producerId: producer?.producerId ?? -1, producerEpoch: producer?.producerEpoch ?? -1, baseSequence: producer?.baseSequence ?? -1,
      });
      const { records: decoded, header } = decodeAll(batch);
      expect(header.baseOffset).toBe(baseOffset);
      expect(decoded).toEqual(records.map((r, i) => ({
        offset: BigInt(baseOffset + i),
        timestamp: r.timestamp,
        key: asBuffer(r.key),
        value: asBuffer(r.value),
        headers: r.headers.map((h) => ({ key: h.key, value: h.value })),
      })));
      expect(readBatchSize(batch, 0)).toBe(batch.length);
      expect(readBaseOffset(batch, 0)).toBe(baseOffset);
      expect(readLastOffsetDelta(batch, 0)).toBe(records.length - 1);
      expect(readMaxTimestamp(batch, 0)).toBe(Math.max(...timestamps));
    }), { numRuns: 300 });
  });

  it('batches back to back in one buffer validate one after another', () => {
    fc.assert(fc.property(fc.array(batchArb, { minLength: 1, maxLength: 5 }), (list) => {
      const joined = Buffer.concat(list);
      let pos = 0;
      const info = newBatchInfo();
      for (const batch of list) {
        validateBatch(joined, pos, joined.length, info);
        expect(info.sizeBytes).toBe(batch.length);
        pos += info.sizeBytes;
      }
      expect(pos).toBe(joined.length);
    }), { numRuns: 100 });
  });

  it('BatchBuilder refuses a record that does not fit and the batch so far stays valid', () => {
    const builder = new BatchBuilder(batchHeaderBytes + 40);
    expect(builder.tryAppend({ value: 'x'.repeat(20), timestamp: 1 }, 0)).toBe(true);
    expect(builder.tryAppend({ value: 'y'.repeat(20), timestamp: 2 }, 0)).toBe(false);
    expect(builder.recordsCount).toBe(1);
    const batch = builder.finish();
    validateBatch(batch, 0, batch.length, newBatchInfo());
    expect(decodeAll(batch).records.map((r) => r.value?.toString())).toEqual(['x'.repeat(20)]);
  });

  it('BatchBuilder grows for a first record larger than its capacity', () => {
    const builder = new BatchBuilder(batchHeaderBytes);
    expect(builder.tryAppend({ key: 'k', value: Buffer.alloc(5000, 1), timestamp: 5 }, 0)).toBe(true);
    const batch = builder.finish();
    validateBatch(batch, 0, batch.length, newBatchInfo());
  });

  it('a record without a timestamp takes nowMs', () => {
    const batch = encodeBatch([{ value: 'a' }, { value: 'b', timestamp: 7 }], 1234);
    expect(decodeAll(batch).records.map((r) => r.timestamp)).toEqual([1234, 7]);
  });

  it('headers given as an object encode in key order', () => {
    const batch = encodeBatch([{ value: 'v', headers: { a: '1', b: null } }], 0);
    expect(decodeAll(batch).records[0]!.headers).toEqual([{ key: 'a', value: Buffer.from('1') }, { key: 'b', value: null }]);
  });

  it('the size limit is checked on the claimed length, before the rest of the batch is needed', () => {
    const batch = encodeBatch([{ value: 'v', timestamp: 1 }], 0);
    batch.writeInt32BE(batchBytesMax - 12 + 1, BatchField.batchLength);
    expectDecodeError(() => checkBatchFrame(batch, 0, batch.length), 'BATCH_TOO_LARGE');
    expectDecodeError(() => checkBatchFrame(batch, 0, batch.length, Number.MAX_SAFE_INTEGER), 'INVALID_BATCH');
  });

  it('validation is limited by the sizeMaxBytes argument', () => {
    const batch = encodeBatch([{ value: Buffer.alloc(100) }], 0);
    expectDecodeError(() => validateBatch(batch, 0, batch.length, newBatchInfo(), batch.length - 1), 'BATCH_TOO_LARGE');
    validateBatch(batch, 0, batch.length, newBatchInfo(), batch.length);
  });
});

function recomputeCrc(batch: Buffer): void {
  if (batch.length >= batchHeaderBytes) batch.writeUInt32BE(crc32c(batch.subarray(BatchField.attributes)), BatchField.crc);
}

describe('record batch mutations', () => {
  it('any mutation of a valid batch is rejected only with DecodeError (mostly CORRUPT_BATCH)', () => {
    fc.assert(fc.property(batchArb, mutationsArb, (batch, mutations) => {
      const bad = mutate(batch, mutations);
      decodeErrorOf(() => validateBatch(bad, 0, bad.length, newBatchInfo()));
      decodeErrorOf(() => decodeBatch(bad, 0, bad.length, () => {}));
    }), { numRuns: 1000 });
  });

  it('mutations behind a recomputed CRC exercise the record walk: DecodeError, or a batch that decodes whole', () => {
    fc.assert(fc.property(batchArb, mutationsArb, (batch, mutations) => {
      // Mutate only CRC-covered bytes, then fix batchLength's claim to the new size half the time.
      const bad = mutate(batch, mutations, BatchField.attributes);
      if (bad.length >= 12 && mutations.length % 2 === 0) bad.writeInt32BE(bad.length - 12, BatchField.batchLength);
      recomputeCrc(bad);
      const info = newBatchInfo();
      const code = decodeErrorOf(() => validateBatch(bad, 0, bad.length, info));
      const records: ConsumedRecord[] = [];
      const decodeCode = decodeErrorOf(() => decodeBatch(bad, 0, bad.length, (r) => records.push(r)));
      expect(decodeCode).toBe(code);
      if (code === null) {
        expect(records.length).toBe(info.recordsCount);
        records.forEach((r, i) => expect(r.offset).toBe(BigInt(i)));
        expect(Math.max(...records.map((r) => r.timestamp))).toBe(info.maxTimestamp);
      } else {
        expect(records).toEqual([]);
      }
    }), { numRuns: 2000 });
  });

  it('every bit flip in the CRC-covered bytes is caught as CORRUPT_BATCH', () => {
    const batch = encodeBatch([{ key: 'k', value: 'value', headers: { h: 'x' }, timestamp: 1000 }, { value: null, timestamp: 999 }], 0);
    for (let at = BatchField.attributes; at < batch.length; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Buffer.from(batch);
        bad[at]! ^= 1 << bit;
        expectDecodeError(() => validateBatch(bad, 0, bad.length, newBatchInfo()), 'CORRUPT_BATCH');
      }
    }
  });

  it('baseOffset and partitionLeaderEpoch are outside the CRC: changing them keeps the batch valid', () => {
    const batch = encodeBatch([{ value: 'v', timestamp: 1 }], 0);
    batch.fill(0x5a, BatchField.baseOffset, BatchField.baseOffset + 4);
    batch.writeInt32BE(7, BatchField.partitionLeaderEpoch);
    validateBatch(batch, 0, batch.length, newBatchInfo());
  });
});

describe('record batch input forms', () => {
  it('RecordInput accepts strings and Buffers for key and value interchangeably', () => {
    const records: RecordInput[] = [{ key: 'é', value: Buffer.from('é'), timestamp: 3 }];
    const viaString = encodeBatch(records, 0);
    const viaBuffer = encodeBatch([{ key: Buffer.from('é'), value: 'é', timestamp: 3 }], 0);
    expect(viaString.equals(viaBuffer)).toBe(true);
  });
});
