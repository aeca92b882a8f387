/**
 * The replication messages: ReplicaFetch (binary) and OffsetForLeaderEpoch (MessagePack). Round
 * trips at their bounds, every rule the decoders enforce, and mutated bytes or arbitrary values
 * that may only ever fail with DecodeError of the right code.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  decodeReplicaFetchRequest, decodeReplicaFetchResponse, encodeReplicaFetchRequest, encodeReplicaFetchResponse,
  type ReplicaFetchPartitionRequest, type ReplicaFetchPartitionResponse, type ReplicaFetchRequest,
} from '../../src/wire/replica-fetch.js';
import { decodeOffsetForLeaderEpochRequest, decodeOffsetForLeaderEpochResponse } from '../../src/wire/offset-for-leader-epoch.js';
import { endOffsetForEpoch, type EpochEntry } from '../../src/storage/leader-epoch-file.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { BodyWriter } from '../../src/wire/body.js';
import { requestPartitionsMax, requestTopicsMax } from '../../src/lib/limits.js';
import { AssertionError } from '../../src/lib/assert.js';
import { decodeErrorOf, expectDecodeError, mutate, mutationsArb } from './helpers.js';

const topicNameArb = fc.stringMatching(/^[a-zA-Z0-9._-]{1,40}$/).filter((n) => n !== '.' && n !== '..');
const u32Arb = fc.oneof(fc.constantFrom(0, 0xffff_ffff), fc.integer({ min: 0, max: 0xffff_ffff }));
const epochArb = fc.oneof(fc.constantFrom(0, 0x7fff_ffff), fc.integer({ min: 0, max: 0x7fff_ffff }));
const offsetArb = fc.oneof(fc.constantFrom(0, Number.MAX_SAFE_INTEGER), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const i16Arb = fc.integer({ min: -0x8000, max: 0x7fff });

const partitionRequestArb: fc.Arbitrary<ReplicaFetchPartitionRequest> = fc
  .record({ partition: u32Arb, currentLeaderEpoch: epochArb, fetchOffset: offsetArb, fsyncedFraction: fc.double({ min: 0, max: 1, noNaN: true }), lastEpochFraction: fc.double({ min: 0, max: 1, noNaN: true }), emptyLog: fc.boolean(), partitionMaxBytes: u32Arb })
  .map((r) => ({
    partition: r.partition,
    currentLeaderEpoch: r.currentLeaderEpoch,
    fetchOffset: r.fetchOffset,
    fsyncedOffset: Math.floor(r.fetchOffset * r.fsyncedFraction),
    lastFetchedEpoch: r.emptyLog ? -1 : Math.floor(r.currentLeaderEpoch * r.lastEpochFraction),
    partitionMaxBytes: r.partitionMaxBytes,
  }));

const replicaFetchRequestArb: fc.Arbitrary<ReplicaFetchRequest> = fc.record({
  replicaId: epochArb,
  maxWaitMs: u32Arb,
  minBytes: u32Arb,
  maxBytes: u32Arb,
  topics: fc.array(fc.record({ name: topicNameArb, partitions: fc.array(partitionRequestArb, { maxLength: 4 }) }), { maxLength: 4 }),
});

const recordsArb = fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => Buffer.from(bytes)), { maxLength: 3 });

const partitionResponseArb: fc.Arbitrary<ReplicaFetchPartitionResponse> = fc.oneof(
  fc.record({
    partition: u32Arb, errorCode: i16Arb, leaderEpoch: fc.oneof(fc.constant(-1), epochArb),
    highWatermark: fc.oneof(fc.constant(-1), offsetArb), logStartOffset: fc.oneof(fc.constant(-1), offsetArb),
    divergingEpoch: fc.constant(null), records: recordsArb,
  }),
  fc.record({
    partition: u32Arb, errorCode: fc.constant(0), leaderEpoch: epochArb, highWatermark: offsetArb, logStartOffset: offsetArb,
    divergingEpoch: fc.record({ epoch: epochArb, endOffset: offsetArb }), records: fc.constantFrom([], [Buffer.alloc(0)]),
  }),
);

const replicaFetchResponseArb = fc.array(fc.record({ name: topicNameArb, partitions: fc.array(partitionResponseArb, { maxLength: 4 }) }), { maxLength: 4 });

function responseBody(topics: Parameters<typeof encodeReplicaFetchResponse>[0]): Buffer {
  const { chunks, bytes } = encodeReplicaFetchResponse(topics);
  const body = Buffer.concat(chunks);
  expect(body.length).toBe(bytes);
  return body;
}

const onePartition: ReplicaFetchPartitionRequest = { partition: 0, currentLeaderEpoch: 3, fetchOffset: 100, fsyncedOffset: 90, lastFetchedEpoch: 3, partitionMaxBytes: 1 << 20 };
const oneRequest = (partition: Partial<ReplicaFetchPartitionRequest>, replicaId = 2): ReplicaFetchRequest =>
  ({ replicaId, maxWaitMs: 500, minBytes: 1, maxBytes: 1 << 20, topics: [{ name: 't', partitions: [{ ...onePartition, ...partition }] }] });

describe('ReplicaFetch request', () => {
  it('round trip at the bounds of every field', () => {
    fc.assert(fc.property(replicaFetchRequestArb, (request) => {
      const body = encodeReplicaFetchRequest(request);
      expect(body.length).toBe(16 + 2 + request.topics.reduce((n, t) => n + 2 + Buffer.byteLength(t.name) + 2 + 32 * t.partitions.length, 0));
      expect(decodeReplicaFetchRequest(body, 0)).toEqual(request);
    }), { numRuns: 500 });
  });

  it('a follower that breaks what it must know is MALFORMED_REQUEST', () => {
    const decode = (request: ReplicaFetchRequest) => () => decodeReplicaFetchRequest(encodeReplicaFetchRequest(request), 0);
    expectDecodeError(decode(oneRequest({}, -1)), 'MALFORMED_REQUEST');
    expectDecodeError(decode(oneRequest({ currentLeaderEpoch: -1, lastFetchedEpoch: -1 })), 'MALFORMED_REQUEST');
    expectDecodeError(decode(oneRequest({ fetchOffset: -1, fsyncedOffset: -1 })), 'MALFORMED_REQUEST');
    expectDecodeError(decode(oneRequest({ fsyncedOffset: -1 })), 'MALFORMED_REQUEST');
    expectDecodeError(decode(oneRequest({ fsyncedOffset: 101 })), 'MALFORMED_REQUEST');
    expectDecodeError(decode(oneRequest({ lastFetchedEpoch: -2 })), 'MALFORMED_REQUEST');
    expectDecodeError(decode(oneRequest({ lastFetchedEpoch: 4 })), 'MALFORMED_REQUEST');
    // The edges that are valid: an empty log, everything fsynced, the last batch of the current epoch.
    expect(decodeReplicaFetchRequest(encodeReplicaFetchRequest(oneRequest({ fetchOffset: 0, fsyncedOffset: 0, lastFetchedEpoch: -1 })), 0).topics[0]!.partitions[0]!.lastFetchedEpoch).toBe(-1);
    expect(decodeReplicaFetchRequest(encodeReplicaFetchRequest(oneRequest({ fsyncedOffset: 100, lastFetchedEpoch: 3 })), 0).topics[0]!.partitions[0]!.fsyncedOffset).toBe(100);
  });

  it('offsets past 2^53 - 1 and trailing bytes are MALFORMED_REQUEST', () => {
    const body = encodeReplicaFetchRequest(oneRequest({}));
    const fetchOffsetAt = 16 + 2 + 3 + 2 + 4 + 4;
    const tooLarge = Buffer.from(body);
    tooLarge.writeUInt32BE(0x0020_0000, fetchOffsetAt);
    expectDecodeError(() => decodeReplicaFetchRequest(tooLarge, 0), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeReplicaFetchRequest(Buffer.concat([body, Buffer.alloc(1)]), 0), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeReplicaFetchRequest(body.subarray(0, body.length - 1), 0), 'MALFORMED_REQUEST');
  });

  it('at most requestTopicsMax topics and requestPartitionsMax partitions, checked before reading them', () => {
    const head = (topicCount: number) => new BodyWriter(Buffer.alloc(18)).i32(1).u32(0).u32(0).u32(0).u16(topicCount).buf;
    // The counts alone are refused: no partition bytes follow.
    expectDecodeError(() => decodeReplicaFetchRequest(head(requestTopicsMax + 1), 0), 'MALFORMED_REQUEST');
    const partitions = (count: number) => Array.from({ length: count }, (_, i) => ({ ...onePartition, partition: i }));
    const atLimit = { ...oneRequest({}), topics: [{ name: 'a', partitions: partitions(requestPartitionsMax - 1) }, { name: 'b', partitions: partitions(1) }] };
    expect(decodeReplicaFetchRequest(encodeReplicaFetchRequest(atLimit), 0).topics[0]!.partitions).toHaveLength(requestPartitionsMax - 1);
    const overLimit = { ...atLimit, topics: [...atLimit.topics, { name: 'c', partitions: partitions(1) }] };
    expectDecodeError(() => decodeReplicaFetchRequest(encodeReplicaFetchRequest(overLimit), 0), 'MALFORMED_REQUEST');
  });
});

describe('ReplicaFetch response', () => {
  it('round trip: record chunks arrive as one contiguous records field, never copied by the encoder', () => {
    fc.assert(fc.property(replicaFetchResponseArb, (topics) => {
      const { chunks } = encodeReplicaFetchResponse(topics);
      for (const topic of topics) for (const p of topic.partitions) for (const chunk of p.records) if (chunk.length > 0) expect(chunks).toContain(chunk);
      const decoded = decodeReplicaFetchResponse(responseBody(topics), 0, 1 << 20);
      expect(decoded.topics).toEqual(topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ ...p, records: Buffer.concat(p.records) })) })));
    }), { numRuns: 500 });
  });

  it('divergingEpoch: both -1 (none) or both known; a diverging partition has no error and no records', () => {
    const base = { partition: 0, errorCode: 0, leaderEpoch: 3, highWatermark: 40, logStartOffset: 0, divergingEpoch: null, records: [] };
    const body = responseBody([{ name: 't', partitions: [base] }]);
    const divergingAt = 2 + 3 + 2 + 4 + 2 + 4 + 8 + 8;
    const withDivergence = (epoch: number, endOffset: number, tail?: Buffer) => {
      const copy = Buffer.from(body);
      copy.writeInt32BE(epoch, divergingAt);
      new BodyWriter(copy.subarray(divergingAt + 4)).i64(endOffset);
      return tail === undefined ? copy : Buffer.concat([copy.subarray(0, copy.length - 4), tail]);
    };
    expect(decodeReplicaFetchResponse(withDivergence(2, 40), 0, 100).topics[0]!.partitions[0]!.divergingEpoch).toEqual({ epoch: 2, endOffset: 40 });
    expect(decodeReplicaFetchResponse(withDivergence(0, 0), 0, 100).topics[0]!.partitions[0]!.divergingEpoch).toEqual({ epoch: 0, endOffset: 0 });
    expectDecodeError(() => decodeReplicaFetchResponse(withDivergence(2, -1), 0, 100), 'MALFORMED_RESPONSE');
    expectDecodeError(() => decodeReplicaFetchResponse(withDivergence(-1, 40), 0, 100), 'MALFORMED_RESPONSE');
    expectDecodeError(() => decodeReplicaFetchResponse(withDivergence(-2, -2), 0, 100), 'MALFORMED_RESPONSE');
    expectDecodeError(() => decodeReplicaFetchResponse(withDivergence(2, 40, Buffer.from([0, 0, 0, 1, 7])), 0, 100), 'MALFORMED_RESPONSE');
    const erred = withDivergence(2, 40);
    erred.writeInt16BE(96, 2 + 3 + 2 + 4);
    expectDecodeError(() => decodeReplicaFetchResponse(erred, 0, 100), 'MALFORMED_RESPONSE');
  });

  it('the encoder refuses a diverging partition with records (a bug in the leader, not bad input)', () => {
    const diverging = { partition: 0, errorCode: 0, leaderEpoch: 3, highWatermark: 40, logStartOffset: 0, divergingEpoch: { epoch: 2, endOffset: 40 }, records: [Buffer.from([1])] };
    expect(() => encodeReplicaFetchResponse([{ name: 't', partitions: [diverging] }])).toThrow(AssertionError);
  });

  it('epochs and offsets below -1, and records over the caller\'s limit, are MALFORMED_RESPONSE', () => {
    const base = { partition: 0, errorCode: 0, leaderEpoch: 3, highWatermark: 40, logStartOffset: 0, divergingEpoch: null, records: [Buffer.alloc(100)] };
    const decode = (p: Partial<ReplicaFetchPartitionResponse>, recordsBytesMax = 100) => () => decodeReplicaFetchResponse(responseBody([{ name: 't', partitions: [{ ...base, ...p }] }]), 0, recordsBytesMax);
    expect(decode({ leaderEpoch: -1, highWatermark: -1, logStartOffset: -1 })().topics[0]!.partitions[0]!.records).toHaveLength(100);
    expectDecodeError(decode({ leaderEpoch: -2 }), 'MALFORMED_RESPONSE');
    expectDecodeError(decode({ highWatermark: -2 }), 'MALFORMED_RESPONSE');
    expectDecodeError(decode({ logStartOffset: -2 }), 'MALFORMED_RESPONSE');
    expectDecodeError(decode({}, 99), 'MALFORMED_RESPONSE');
  });
});

function roundTrip(value: unknown, code: 'MALFORMED_REQUEST' | 'MALFORMED_RESPONSE' = 'MALFORMED_REQUEST'): unknown {
  return decodeMsgpack(encodeMsgpack(value), code);
}

describe('OffsetForLeaderEpoch', () => {
  const requestArb = fc.record({
    replicaId: fc.oneof(fc.constant(-1), epochArb),
    topics: fc.array(fc.record({
      name: topicNameArb,
      partitions: fc.array(fc.record({ partition: epochArb, currentLeaderEpoch: fc.oneof(fc.constant(-1), epochArb), leaderEpoch: epochArb }), { maxLength: 4 }),
    }), { maxLength: 4 }),
  });
  const resultArb = fc.oneof(
    fc.record({ partition: epochArb, errorCode: i16Arb, leaderEpoch: fc.constant(-1), endOffset: fc.constant(-1) }),
    fc.record({ partition: epochArb, errorCode: fc.constant(0), leaderEpoch: epochArb, endOffset: offsetArb }),
  );
  const responseArb = fc.record({ topics: fc.array(fc.record({ name: topicNameArb, partitions: fc.array(resultArb, { maxLength: 4 }) }), { maxLength: 4 }) });

  it('request: round trip at the bounds, integers of any width', () => {
    fc.assert(fc.property(requestArb, (request) => {
      expect(decodeOffsetForLeaderEpochRequest(roundTrip(request))).toEqual(request);
    }), { numRuns: 300 });
    const asInt64 = { replicaId: 7n, topics: [{ name: 't', partitions: [{ partition: 0n, currentLeaderEpoch: -1n, leaderEpoch: 5n }] }] };
    expect(decodeOffsetForLeaderEpochRequest(roundTrip(asInt64))).toEqual({ replicaId: 7, topics: [{ name: 't', partitions: [{ partition: 0, currentLeaderEpoch: -1, leaderEpoch: 5 }] }] });
  });

  it('request: out-of-range or missing fields are MALFORMED_REQUEST', () => {
    const one = (body: Record<string, unknown>, partition: Record<string, unknown>) => () =>
      decodeOffsetForLeaderEpochRequest(roundTrip({ replicaId: 1, topics: [{ name: 't', partitions: [{ partition: 0, currentLeaderEpoch: 3, leaderEpoch: 2, ...partition }] }], ...body }));
    expect(one({}, {})()).toEqual({ replicaId: 1, topics: [{ name: 't', partitions: [{ partition: 0, currentLeaderEpoch: 3, leaderEpoch: 2 }] }] });
    expectDecodeError(one({ replicaId: -2 }, {}), 'MALFORMED_REQUEST');
    expectDecodeError(one({ replicaId: 2 ** 31 }, {}), 'MALFORMED_REQUEST');
    expectDecodeError(one({ replicaId: undefined }, {}), 'MALFORMED_REQUEST');
    expectDecodeError(one({}, { leaderEpoch: -1 }), 'MALFORMED_REQUEST');
    expectDecodeError(one({}, { leaderEpoch: 2 ** 31 }), 'MALFORMED_REQUEST');
    expectDecodeError(one({}, { currentLeaderEpoch: -2 }), 'MALFORMED_REQUEST');
    expectDecodeError(one({}, { partition: -1 }), 'MALFORMED_REQUEST');
    expectDecodeError(one({}, { leaderEpoch: 1.5 }), 'MALFORMED_REQUEST');
    expectDecodeError(one({}, { leaderEpoch: undefined }), 'MALFORMED_REQUEST');
    const many = Array.from({ length: requestPartitionsMax + 1 }, (_, i) => ({ partition: i, currentLeaderEpoch: 0, leaderEpoch: 0 }));
    expectDecodeError(() => decodeOffsetForLeaderEpochRequest(roundTrip({ replicaId: 1, topics: [{ name: 'a', partitions: many.slice(0, 5000) }, { name: 'b', partitions: many.slice(5000) }] })), 'MALFORMED_REQUEST');
  });

  it('response: round trip; leaderEpoch and endOffset are -1 together or known together', () => {
    fc.assert(fc.property(responseArb, (response) => {
      expect(decodeOffsetForLeaderEpochResponse(roundTrip(response, 'MALFORMED_RESPONSE'))).toEqual(response);
    }), { numRuns: 300 });
    const one = (partition: Record<string, unknown>) => () =>
      decodeOffsetForLeaderEpochResponse(roundTrip({ topics: [{ name: 't', partitions: [{ partition: 0, errorCode: 0, leaderEpoch: 2, endOffset: 40, ...partition }] }] }, 'MALFORMED_RESPONSE'));
    expectDecodeError(one({ endOffset: -1 }), 'MALFORMED_RESPONSE');
    expectDecodeError(one({ leaderEpoch: -1 }), 'MALFORMED_RESPONSE');
    expectDecodeError(one({ endOffset: -2, leaderEpoch: -2 }), 'MALFORMED_RESPONSE');
    expectDecodeError(one({ endOffset: 2 ** 53 }), 'MALFORMED_RESPONSE');
    expectDecodeError(one({ errorCode: 0x8000 }), 'MALFORMED_RESPONSE');
  });

  it('every answer the storage side gives (endOffsetForEpoch) is a valid response', () => {
    const entriesArb = fc.array(fc.tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 1000 })), { maxLength: 8 }).map((steps) => {
      const entries: EpochEntry[] = [];
      let epoch = -1;
      let startOffset = 0;
      for (const [epochStep, offsetStep] of steps) {
        epoch += epochStep;
        entries.push({ epoch, startOffset });
        startOffset += offsetStep;
      }
      return { entries, logEndOffset: startOffset };
    });
    fc.assert(fc.property(entriesArb, fc.integer({ min: 0, max: 50 }), ({ entries, logEndOffset }, requested) => {
      const answer = endOffsetForEpoch(entries, requested, logEndOffset);
      const response = { topics: [{ name: 't', partitions: [{ partition: 0, errorCode: 0, leaderEpoch: answer.epoch, endOffset: answer.endOffset }] }] };
      expect(decodeOffsetForLeaderEpochResponse(roundTrip(response, 'MALFORMED_RESPONSE'))).toEqual(response);
    }), { numRuns: 500 });
  });
});

describe('replication decoders fail only with DecodeError of their side', () => {
  it('ReplicaFetch request and response, mutated', () => {
    fc.assert(fc.property(replicaFetchRequestArb, replicaFetchResponseArb, mutationsArb, (request, response, mutations) => {
      expect([null, 'MALFORMED_REQUEST']).toContain(decodeErrorOf(() => decodeReplicaFetchRequest(mutate(encodeReplicaFetchRequest(request), mutations), 0)));
      expect([null, 'MALFORMED_RESPONSE']).toContain(decodeErrorOf(() => decodeReplicaFetchResponse(mutate(responseBody(response), mutations), 0, 1 << 20)));
    }), { numRuns: 1000 });
  });

  it('OffsetForLeaderEpoch, any MessagePack value, and valid shapes with any value in any field', () => {
    const maybe = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid, weight: 3 }, { arbitrary: fc.anything({ maxDepth: 2 }), weight: 1 });
    const nearRequestArb = fc.record({
      replicaId: maybe(fc.integer({ min: -1, max: 5 })),
      topics: maybe(fc.array(fc.record({ name: maybe(topicNameArb), partitions: maybe(fc.array(fc.record({ partition: maybe(fc.nat(5)), currentLeaderEpoch: maybe(fc.nat(5)), leaderEpoch: maybe(fc.nat(5)) }), { maxLength: 3 })) }), { maxLength: 3 })),
    });
    const nearResponseArb = fc.record({
      topics: maybe(fc.array(fc.record({ name: maybe(topicNameArb), partitions: maybe(fc.array(fc.record({ partition: maybe(fc.nat(5)), errorCode: maybe(fc.nat(5)), leaderEpoch: maybe(fc.integer({ min: -1, max: 5 })), endOffset: maybe(fc.integer({ min: -1, max: 5 })) }), { maxLength: 3 })) }), { maxLength: 3 })),
    });
    fc.assert(fc.property(fc.oneof(fc.anything({ maxDepth: 4 }), nearRequestArb, nearResponseArb), (value) => {
      let bytes: Buffer;
      try {
        bytes = encodeMsgpack(value);
      } catch {
        return; // not representable in MessagePack (a bigint past 64 bits): nothing to decode
      }
      expect([null, 'MALFORMED_REQUEST']).toContain(decodeErrorOf(() => decodeOffsetForLeaderEpochRequest(decodeMsgpack(bytes, 'MALFORMED_REQUEST'))));
      expect([null, 'MALFORMED_RESPONSE']).toContain(decodeErrorOf(() => decodeOffsetForLeaderEpochResponse(decodeMsgpack(bytes, 'MALFORMED_RESPONSE'))));
    }), { numRuns: 2000 });
  });

  it('OffsetForLeaderEpoch, valid bodies with mutated bytes', () => {
    const body = encodeMsgpack({ replicaId: 2, topics: [{ name: 'orders', partitions: [{ partition: 2, currentLeaderEpoch: 3, leaderEpoch: 2 }] }] });
    const reply = encodeMsgpack({ topics: [{ name: 'orders', partitions: [{ partition: 2, errorCode: 0, leaderEpoch: 2, endOffset: 40 }] }] });
    fc.assert(fc.property(mutationsArb, (mutations) => {
      expect([null, 'MALFORMED_REQUEST']).toContain(decodeErrorOf(() => decodeOffsetForLeaderEpochRequest(decodeMsgpack(mutate(body, mutations), 'MALFORMED_REQUEST'))));
      expect([null, 'MALFORMED_RESPONSE']).toContain(decodeErrorOf(() => decodeOffsetForLeaderEpochResponse(decodeMsgpack(mutate(reply, mutations), 'MALFORMED_RESPONSE'))));
    }), { numRuns: 1000 });
  });
});
