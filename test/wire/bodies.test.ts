import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeProduceRequest, decodeProduceResponse, encodeProduceRequest, encodeProduceResponse, type ProducePartitionResponse, type ProduceTopicRequest } from '../../src/wire/produce.js';
import { decodeFetchRequest, decodeFetchResponse, encodeFetchRequest, encodeFetchResponse, type FetchRequest } from '../../src/wire/fetch.js';
import {
  decodeApiVersionsResponse, decodeCreateTopicsRequest, decodeDeleteTopicsRequest, decodeErrorBody, decodeListOffsetsRequest,
  decodeListOffsetsResponse, decodeMetadataRequest, decodeMetadataResponse, decodeTopicConfig, decodeTopicResults, defaultTopicConfig,
  effectiveReplicationFactor, normalizeTopicConfig, replicationFactorProblem, topicConfigKeys,
} from '../../src/wire/control.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { BodyReader } from '../../src/wire/body.js';
import { replicationFactorMax, requestPartitionsMax, requestTopicsMax, topicNameBytesMax, bodyStringBytesMax, offsetMax } from '../../src/lib/limits.js';
import { checkArbitraryBodies, checkMutatedBodies, decodeErrorOf, expectDecodeError, mutate, mutationsArb, type BodySample } from './helpers.js';

const topicNameArb = fc.stringMatching(/^[a-zA-Z0-9._-]{1,40}$/).filter((n) => n !== '.' && n !== '..');
const u32Arb = fc.integer({ min: 0, max: 0xffffffff });
const i16Arb = fc.integer({ min: -0x8000, max: 0x7fff });
const offsetArb = fc.integer({ min: -1, max: Number.MAX_SAFE_INTEGER });
const messageArb = fc.string({ unit: 'binary', maxLength: 60 });

// ---- Produce ---------------------------------------------------------------------------------

const produceTopicsArb = fc.array(fc.record({
  name: topicNameArb,
  partitions: fc.array(fc.record({ partition: u32Arb, batches: fc.array(fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)), { maxLength: 3 }) }), { maxLength: 4 }),
}), { maxLength: 4 });
const acksArb = fc.constantFrom(0, 1, -1);

function produceBody(acks: number, timeoutMs: number, topics: ProduceTopicRequest<{ partition: number; batches: Buffer[] }>[]): Buffer {
  return Buffer.concat(encodeProduceRequest(acks, timeoutMs, topics));
}

const produceResponseArb = fc.array(fc.record({
  name: topicNameArb,
  partitions: fc.array(fc.record({
    partition: u32Arb, errorCode: i16Arb, baseOffset: offsetArb, logStartOffset: offsetArb, durability: fc.constantFrom(0, 1, 2), errorMessage: messageArb,
  }), { maxLength: 4 }),
}), { maxLength: 4 });

describe('Produce bodies', () => {
  it('request round trip (records are carried as opaque bytes, concatenated per partition)', () => {
    fc.assert(fc.property(acksArb, u32Arb, produceTopicsArb, fc.integer({ min: 0, max: 20 }), (acks, timeoutMs, topics, headerBytes) => {
      // The decoder reads the body from an offset within the frame (after the request header).
      const frame = Buffer.concat([Buffer.alloc(headerBytes, 0xee), produceBody(acks, timeoutMs, topics)]);
      const decoded = decodeProduceRequest(frame, headerBytes);
      expect(decoded).toEqual({
        acks, timeoutMs,
        topics: topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ partition: p.partition, records: Buffer.concat(p.batches) })) })),
      });
    }), { numRuns: 300 });
  });

  it('response round trip', () => {
    fc.assert(fc.property(produceResponseArb, u32Arb, (topics, throttleTimeMs) => {
      expect(decodeProduceResponse(encodeProduceResponse(topics, throttleTimeMs), 0)).toEqual({ throttleTimeMs, topics });
    }), { numRuns: 300 });
  });

  it('acks other than 0, 1, -1 is INVALID_REQUIRED_ACKS', () => {
    for (const acks of [2, -2, 127, -128]) {
      expectDecodeError(() => decodeProduceRequest(produceBody(acks, 0, []), 0), 'INVALID_REQUIRED_ACKS');
    }
  });

  it('more than requestTopicsMax topics, or requestPartitionsMax partitions in all, is MALFORMED_REQUEST before reading them', () => {
    const tooManyTopics = Buffer.alloc(7);
    tooManyTopics.writeInt8(1, 0);
    tooManyTopics.writeUInt16BE(requestTopicsMax + 1, 5);
    expectDecodeError(() => decodeProduceRequest(tooManyTopics, 0), 'MALFORMED_REQUEST');
    const topics = Array.from({ length: 2 }, (_, i) => ({ name: `t${i}`, partitions: [] as { partition: number; batches: Buffer[] }[] }));
    const body = produceBody(1, 0, topics);
    // Claim 65535 partitions for both topics (131070 > requestPartitionsMax) with no partition data.
    body.writeUInt16BE(0xffff, 7 + 2 + 2);
    expect(requestPartitionsMax).toBeLessThan(0xffff * 2);
    expect(decodeErrorOf(() => decodeProduceRequest(body, 0))).toBe('MALFORMED_REQUEST');
  });

  it('a topic name longer than topicNameBytesMax, or trailing bytes, is MALFORMED_REQUEST', () => {
    expectDecodeError(() => decodeProduceRequest(produceBody(1, 0, [{ name: 'x'.repeat(topicNameBytesMax + 1), partitions: [] }]), 0), 'MALFORMED_REQUEST');
    decodeProduceRequest(produceBody(1, 0, [{ name: 'x'.repeat(topicNameBytesMax), partitions: [] }]), 0);
    expectDecodeError(() => decodeProduceRequest(Buffer.concat([produceBody(1, 0, []), Buffer.from([0])]), 0), 'MALFORMED_REQUEST');
  });

  it('an error message longer than bodyStringBytesMax is MALFORMED_RESPONSE', () => {
    const partition: ProducePartitionResponse = { partition: 0, errorCode: 1, baseOffset: -1, logStartOffset: 0, durability: 0, errorMessage: 'e'.repeat(bodyStringBytesMax + 1) };
    expectDecodeError(() => decodeProduceResponse(encodeProduceResponse([{ name: 't', partitions: [partition] }]), 0), 'MALFORMED_RESPONSE');
  });
});

// ---- Fetch -----------------------------------------------------------------------------------

const fetchRequestArb: fc.Arbitrary<FetchRequest> = fc.record({
  maxWaitMs: u32Arb, minBytes: u32Arb, maxBytes: u32Arb,
  topics: fc.array(fc.record({ name: topicNameArb, partitions: fc.array(fc.record({ partition: u32Arb, fetchOffset: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), partitionMaxBytes: u32Arb }), { maxLength: 4 }) }), { maxLength: 4 }),
});

const fetchResponseArb = fc.array(fc.record({
  name: topicNameArb,
  partitions: fc.array(fc.record({
    partition: u32Arb, errorCode: i16Arb, highWatermark: offsetArb, logStartOffset: offsetArb,
    records: fc.array(fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b)), { maxLength: 3 }),
  }), { maxLength: 4 }),
}), { maxLength: 4 });

describe('Fetch bodies', () => {
  it('request round trip', () => {
    fc.assert(fc.property(fetchRequestArb, (request) => {
      expect(decodeFetchRequest(encodeFetchRequest(request), 0)).toEqual(request);
    }), { numRuns: 300 });
  });

  it('response round trip; chunks add up to the announced byte count', () => {
    fc.assert(fc.property(fetchResponseArb, u32Arb, (topics, throttleTimeMs) => {
      const { chunks, bytes } = encodeFetchResponse(topics, throttleTimeMs);
      const body = Buffer.concat(chunks);
      expect(body.length).toBe(bytes);
      expect(decodeFetchResponse(body, 0, 1 << 20)).toEqual({
        throttleTimeMs,
        topics: topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ ...p, records: Buffer.concat(p.records) })) })),
      });
    }), { numRuns: 300 });
  });

  it('a negative fetchOffset, or one past the safe-integer range, is MALFORMED_REQUEST', () => {
    const body = encodeFetchRequest({ maxWaitMs: 0, minBytes: 0, maxBytes: 0, topics: [{ name: 't', partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: 0 }] }] });
    const offsetAt = 14 + 3 + 2 + 4;
    body.writeBigInt64BE(-1n, offsetAt);
    expectDecodeError(() => decodeFetchRequest(body, 0), 'MALFORMED_REQUEST');
    body.writeBigInt64BE(1n << 53n, offsetAt);
    expectDecodeError(() => decodeFetchRequest(body, 0), 'MALFORMED_REQUEST');
  });

  it('records longer than the caller allows are MALFORMED_RESPONSE', () => {
    const { chunks } = encodeFetchResponse([{ name: 't', partitions: [{ partition: 0, errorCode: 0, highWatermark: 0, logStartOffset: 0, records: [Buffer.alloc(100)] }] }]);
    expectDecodeError(() => decodeFetchResponse(Buffer.concat(chunks), 0, 99), 'MALFORMED_RESPONSE');
  });
});

// ---- Control bodies (MessagePack) -------------------------------------------------------------

const partialConfigArb = fc.record({
  retentionMs: fc.integer({ min: -1, max: 2 ** 40 }),
  retentionBytes: fc.integer({ min: -1, max: 2 ** 40 }),
  segmentBytes: fc.integer({ min: 1024, max: 1024 ** 3 }),
  segmentMs: fc.integer({ min: 1, max: 2 ** 40 }),
  flushMessages: fc.integer({ min: -1, max: 2 ** 31 }),
  flushMs: fc.integer({ min: -1, max: 2 ** 31 }),
  minInSyncReplicas: fc.integer({ min: 1, max: replicationFactorMax }),
  uncleanLeaderElection: fc.constantFrom(0, 1),
}, { requiredKeys: [] });

const nodeIdArb = fc.integer({ min: 0, max: 2 ** 31 - 1 });
const replicasArb = fc.uniqueArray(fc.integer({ min: 0, max: 100 }), { maxLength: replicationFactorMax });
/** A partition of a replicated topic; the decoder checks bounds, not that the ISR is a subset of the replicas. */
const replicatedPartitionArb = fc.record({
  partition: fc.integer({ min: 0, max: 4095 }), leader: fc.integer({ min: -1, max: 100 }), leaderEpoch: fc.integer({ min: -1, max: 2 ** 31 - 1 }),
  replicas: replicasArb, isr: replicasArb, errorCode: i16Arb,
});

function roundTrip(value: unknown, code: 'MALFORMED_REQUEST' | 'MALFORMED_RESPONSE' = 'MALFORMED_REQUEST'): unknown {
  return decodeMsgpack(encodeMsgpack(value), code);
}

describe('control bodies', () => {
  it('Metadata request: nil or a list of names', () => {
    expect(decodeMetadataRequest(roundTrip({ topics: null }))).toEqual({ topics: null });
    expect(decodeMetadataRequest(roundTrip({}))).toEqual({ topics: null });
    fc.assert(fc.property(fc.array(topicNameArb, { maxLength: 10 }), (topics) => {
      expect(decodeMetadataRequest(roundTrip({ topics }))).toEqual({ topics });
    }));
  });

  it('CreateTopics request with partial configs; replicationFactor any i32 (checked per topic by the broker), absent or nil is -1', () => {
    const i32Arb = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
    const topicArb = fc.record({ name: topicNameArb, partitions: i32Arb, replicationFactor: i32Arb, config: partialConfigArb });
    fc.assert(fc.property(fc.array(topicArb, { maxLength: 5 }), (topics) => {
      expect(decodeCreateTopicsRequest(roundTrip({ topics }))).toEqual({ topics });
    }), { numRuns: 200 });
    for (const replicationFactor of [undefined, null]) {
      expect(decodeCreateTopicsRequest(roundTrip({ topics: [{ name: 't', partitions: 1, replicationFactor }] })).topics[0]!.replicationFactor).toBe(-1);
    }
    for (const replicationFactor of [1.5, '3', 2 ** 31, -(2 ** 31) - 1, true]) {
      expectDecodeError(() => decodeCreateTopicsRequest(roundTrip({ topics: [{ name: 't', partitions: 1, replicationFactor }] })), 'MALFORMED_REQUEST');
    }
  });

  it('replicationFactorProblem: -1 (the default) or 1..replicationFactorMax, at most the live brokers', () => {
    expect(replicationFactorProblem(-1, 1)).toBeNull();
    expect(replicationFactorProblem(1, 1)).toBeNull();
    expect(replicationFactorProblem(3, 1)).toBe('replication factor 3 is larger than the 1 live broker(s)');
    expect(replicationFactorProblem(3, 5)).toBeNull();
    expect(replicationFactorProblem(-1, 0)).toMatch(/no live broker/);
    for (const bad of [0, -2, 17, 1.5, Number.NaN]) expect(replicationFactorProblem(bad, 100), String(bad)).toMatch(/outside 1\.\.16/);
    fc.assert(fc.property(fc.integer({ min: -1, max: 40 }), fc.integer({ min: 1, max: 40 }), (requested, live) => {
      const problem = replicationFactorProblem(requested, live);
      const fits = requested === -1 || (requested >= 1 && requested <= Math.min(live, replicationFactorMax));
      expect(problem === null).toBe(fits);
      if (fits) expect(effectiveReplicationFactor(requested, live)).toBe(requested === -1 ? Math.min(3, live) : requested);
    }));
  });

  it('CreateTopics: a config of the wrong shape is MALFORMED_REQUEST; an unknown key or bad value is left to the broker (INVALID_CONFIG per topic)', () => {
    expectDecodeError(() => decodeCreateTopicsRequest(roundTrip({ topics: [{ name: 't', partitions: 1, config: { retentionMs: true } }] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeCreateTopicsRequest(roundTrip({ topics: [{ name: 't', partitions: 1, config: [1] }] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeCreateTopicsRequest(roundTrip({ topics: [{ name: 't', partitions: 1.5 }] })), 'MALFORMED_REQUEST');
    const decoded = decodeCreateTopicsRequest(roundTrip({ topics: [{ name: 't', partitions: 1, config: { retention: 5, segmentBytes: 1023 } }] }));
    expect({ ...decoded.topics[0]!.config }).toEqual({ retention: 5, segmentBytes: 1023 });
    expect(() => normalizeTopicConfig(decoded.topics[0]!.config)).toThrow(/INVALID_CONFIG/);
  });

  // Formerly a bug: names inherited from Object.prototype ("toString", ...) passed the unknown-key
  // check. They are now plain keys of a null-prototype map, rejected as unknown (INVALID_CONFIG).
  it('rejects config keys inherited from Object.prototype', () => {
    for (const key of ['toString', 'constructor', 'valueOf', 'hasOwnProperty']) {
      expect(() => decodeTopicConfig(roundTrip({ [key]: 5 }), 'config'), key).toThrow(/INVALID_CONFIG: unknown topic config key/);
    }
  });

  it('DeleteTopics request', () => {
    fc.assert(fc.property(fc.array(topicNameArb, { maxLength: 10 }), (topics) => {
      expect(decodeDeleteTopicsRequest(roundTrip({ topics }))).toEqual({ topics });
    }));
    expectDecodeError(() => decodeDeleteTopicsRequest(roundTrip({ topics: Array.from({ length: requestTopicsMax + 1 }, () => 't') })), 'MALFORMED_REQUEST');
  });

  it('ListOffsets request: -1 latest, -2 earliest, or a timestamp', () => {
    const timestampArb = fc.oneof(fc.constantFrom(-1, -2), fc.integer({ min: 0, max: 2 ** 45 }));
    fc.assert(fc.property(fc.array(fc.record({ name: topicNameArb, partitions: fc.array(fc.record({ partition: fc.integer({ min: 0, max: 4095 }), timestamp: timestampArb }), { maxLength: 4 }) }), { maxLength: 4 }), (topics) => {
      expect(decodeListOffsetsRequest(roundTrip({ topics }))).toEqual({ topics });
      // Timestamps as int64 (bigint) decode to the same values.
      const asInt64 = topics.map((t) => ({ ...t, partitions: t.partitions.map((p) => ({ ...p, timestamp: BigInt(p.timestamp) })) }));
      expect(decodeListOffsetsRequest(roundTrip({ topics: asInt64 }))).toEqual({ topics });
    }), { numRuns: 200 });
    expectDecodeError(() => decodeListOffsetsRequest(roundTrip({ topics: [{ name: 't', partitions: [{ partition: 0, timestamp: -3 }] }] })), 'MALFORMED_REQUEST');
  });

  it('ApiVersions response', () => {
    const apiArb = fc.record({ apiKey: fc.integer({ min: 0, max: 0xffff }), minVersion: fc.integer({ min: 0, max: 0xffff }), maxVersion: fc.integer({ min: 0, max: 0xffff }) });
    fc.assert(fc.property(fc.array(apiArb, { maxLength: 20 }), fc.string({ maxLength: 20 }), (apiVersions, brokerVersion) => {
      expect(decodeApiVersionsResponse(roundTrip({ apiVersions, brokerVersion }, 'MALFORMED_RESPONSE'))).toEqual({ apiVersions, brokerVersion });
    }));
  });

  it('Metadata response; a missing config key takes its default', () => {
    const topicArb = fc.record({
      name: topicNameArb, errorCode: i16Arb, replicationFactor: fc.integer({ min: 0, max: replicationFactorMax }),
      partitions: fc.array(replicatedPartitionArb, { maxLength: 5 }),
      config: fc.option(partialConfigArb, { nil: null }),
    });
    const brokerArb = fc.record({
      nodeId: fc.integer({ min: 0, max: 100 }), host: fc.string({ maxLength: 30 }), port: fc.integer({ min: 0, max: 65535 }),
      rack: fc.option(fc.string({ maxLength: 64 }), { nil: null }), alive: fc.boolean(),
    });
    const clusterArb = fc.record({ controllerEpoch: fc.oneof(fc.constantFrom(-1, 0), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })), cluster: fc.option(fc.stringMatching(/^[a-z0-9._-]{1,64}$/), { nil: null }) });
    fc.assert(fc.property(fc.array(brokerArb, { maxLength: 3 }), fc.integer({ min: -1, max: 100 }), clusterArb, fc.array(topicArb, { maxLength: 4 }), (brokers, controllerId, cluster, topics) => {
      const decoded = decodeMetadataResponse(roundTrip({ brokers, controllerId, ...cluster, topics }, 'MALFORMED_RESPONSE'));
      expect(decoded).toEqual({ brokers, controllerId, ...cluster, topics: topics.map((t) => ({ ...t, config: t.config === null ? null : { ...defaultTopicConfig, ...t.config } })) });
    }), { numRuns: 200 });
  });

  it('Metadata response from a broker without the replication fields: the leader is the one replica, at epoch 0; factor 1 (0 for a topic in error)', () => {
    const old = {
      brokers: [{ nodeId: 0, host: 'localhost', port: 9092 }], controllerId: 0,
      topics: [
        { name: 'orders', errorCode: 0, partitions: [{ partition: 0, leader: 4, errorCode: 0 }, { partition: 1, leader: -1, errorCode: 93 }], config: null },
        { name: 'missing', errorCode: 4, partitions: [], config: null },
      ],
    };
    expect(decodeMetadataResponse(roundTrip(old, 'MALFORMED_RESPONSE')).topics).toEqual([
      {
        name: 'orders', errorCode: 0, replicationFactor: 1, config: null,
        partitions: [
          { partition: 0, leader: 4, leaderEpoch: 0, replicas: [4], isr: [4], errorCode: 0 },
          { partition: 1, leader: -1, leaderEpoch: 0, replicas: [], isr: [], errorCode: 93 },
        ],
      },
      { name: 'missing', errorCode: 4, replicationFactor: 0, partitions: [], config: null },
    ]);
  });

  it('Metadata response: replication fields out of their bounds are MALFORMED_RESPONSE', () => {
    const partition = { partition: 0, leader: 1, leaderEpoch: 3, replicas: [1, 2], isr: [1], errorCode: 0 };
    const body = (topic: Record<string, unknown>, p: Record<string, unknown>) => ({
      brokers: [], controllerId: 1, topics: [{ name: 't', errorCode: 0, replicationFactor: 2, ...topic, partitions: [{ ...partition, ...p }], config: null }],
    });
    expect(decodeMetadataResponse(roundTrip(body({}, {}), 'MALFORMED_RESPONSE')).topics[0]!.partitions[0]).toEqual(partition);
    const tooMany = Array.from({ length: replicationFactorMax * 2 + 1 }, (_, i) => i);
    for (const [topic, p] of [
      [{}, { replicas: tooMany }], [{}, { isr: tooMany }], [{}, { replicas: [-1] }], [{}, { isr: [1.5] }], [{}, { replicas: 'all' }],
      [{}, { leaderEpoch: -2 }], [{}, { leaderEpoch: 2 ** 31 }], [{ replicationFactor: replicationFactorMax + 1 }, {}], [{ replicationFactor: -1 }, {}],
    ] as const) {
      expectDecodeError(() => decodeMetadataResponse(roundTrip(body(topic, p), 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
    }
  });

  it('Metadata response from a broker without the cluster fields: no rack, alive, a controller at epoch 0 (or none at -1), no cluster', () => {
    const old = { brokers: [{ nodeId: 0, host: 'localhost', port: 9092 }], controllerId: 0, topics: [] };
    expect(decodeMetadataResponse(roundTrip(old, 'MALFORMED_RESPONSE'))).toEqual({ brokers: [{ nodeId: 0, host: 'localhost', port: 9092, rack: null, alive: true }], controllerId: 0, controllerEpoch: 0, cluster: null, topics: [] });
    expect(decodeMetadataResponse(roundTrip({ ...old, controllerId: -1 }, 'MALFORMED_RESPONSE')).controllerEpoch).toBe(-1);
    expectDecodeError(() => decodeMetadataResponse(roundTrip({ ...old, brokers: [{ ...old.brokers[0], rack: 'r'.repeat(65) }] }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
    expectDecodeError(() => decodeMetadataResponse(roundTrip({ ...old, brokers: [{ ...old.brokers[0], alive: 1 }] }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
    expectDecodeError(() => decodeMetadataResponse(roundTrip({ ...old, controllerEpoch: -2 }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
    expectDecodeError(() => decodeMetadataResponse(roundTrip({ ...old, cluster: 'c'.repeat(65) }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
  });

  it('CreateTopics / DeleteTopics response; errorMessage may be absent', () => {
    fc.assert(fc.property(fc.array(fc.record({ name: topicNameArb, errorCode: i16Arb, errorMessage: messageArb }), { maxLength: 5 }), (topics) => {
      expect(decodeTopicResults(roundTrip({ topics }, 'MALFORMED_RESPONSE'))).toEqual(topics);
    }));
    expect(decodeTopicResults(roundTrip({ topics: [{ name: 't', errorCode: 0 }] }, 'MALFORMED_RESPONSE'))).toEqual([{ name: 't', errorCode: 0, errorMessage: '' }]);
  });

  it('ListOffsets response: offsets of any integer width up to offsetMax, -1 when none', () => {
    const offsetBigArb = fc.oneof(fc.constant(-1n), fc.bigInt({ min: 0n, max: offsetMax }));
    fc.assert(fc.property(fc.array(fc.record({ partition: fc.integer({ min: 0, max: 4095 }), errorCode: i16Arb, offset: offsetBigArb, timestamp: fc.integer({ min: -1, max: 2 ** 45 }) }), { maxLength: 5 }), (partitions) => {
      const decoded = decodeListOffsetsResponse(roundTrip({ topics: [{ name: 't', partitions }] }, 'MALFORMED_RESPONSE'));
      expect(decoded).toEqual([{ name: 't', partitions }]);
      // Small offsets written as plain (narrow) integers decode the same.
      const narrow = partitions.filter((p) => p.offset <= 0xffffffffn).map((p) => ({ ...p, offset: Number(p.offset) }));
      expect(decodeListOffsetsResponse(roundTrip({ topics: [{ name: 't', partitions: narrow }] }, 'MALFORMED_RESPONSE'))[0]!.partitions.map((p) => p.offset))
        .toEqual(narrow.map((p) => BigInt(p.offset)));
    }), { numRuns: 200 });
  });

  it('error body: {message}; anything else gives an empty message rather than an exception', () => {
    expect(decodeErrorBody(roundTrip({ message: 'api key 999 is not supported' }))).toEqual({ message: 'api key 999 is not supported' });
    expect(decodeErrorBody(roundTrip([1, 2]))).toEqual({ message: '' });
    expect(decodeErrorBody(roundTrip({ message: 5 }))).toEqual({ message: '' });
  });

  it('a body must be exactly one MessagePack value', () => {
    expectDecodeError(() => decodeMsgpack(Buffer.alloc(0)), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeMsgpack(Buffer.from([0x80, 0x80])), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeMsgpack(Buffer.from([0x81]), 'MALFORMED_RESPONSE'), 'MALFORMED_RESPONSE');
    expectDecodeError(() => decodeMetadataRequest(decodeMsgpack(Buffer.from([0x90]))), 'MALFORMED_REQUEST');
  });

  it('encodes control bodies with plain MessagePack types only (maps, arrays, str, ints, nil)', () => {
    const bytes = encodeMsgpack({ topics: [{ name: 'orders', partitions: 3, config: { retentionMs: 86_400_000 } }] });
    // fixmap(1) "topics" fixarray(1) fixmap(3) ... : no ext types (0xc7-0xc9, 0xd4-0xd8) anywhere.
    expect(bytes[0]).toBe(0x81);
    expect(bytes.toString('hex')).toBe('81a6746f7069637391' + '83a46e616d65a66f7264657273aa706172746974696f6e7303a6636f6e66696781ab726574656e74696f6e4d73ce05265c00');
  });

  // BUG (src/wire/msgpack.ts, encodeMsgpack): msgpackr writes every JavaScript number outside the
  // 32-bit integer range as float64 (0xcb), even integral ones. Timestamps (~1.7e12 ms), offsets
  // passed as numbers, and config values such as retentionMs of a year go on the wire as floats,
  // not "integers of any MessagePack width": a strict reader in another language (e.g. one
  // decoding into int64) rejects them. Input 1_700_000_000_000: expected 0xd3/0xcf int64/uint64,
  // actual cb 42 78 bc fe 56 80 00 00.
  it('writes integral numbers beyond 32 bits as MessagePack integers, not float64', () => {
    for (const value of [2 ** 32, 1_700_000_000_000, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER]) {
      const bytes = encodeMsgpack(value);
      expect([0xcf, 0xd3], `${value} encoded as ${bytes.toString('hex')}`).toContain(bytes[0]);
    }
  });

  it('config keys are the documented eight', () => {
    expect([...topicConfigKeys].sort()).toEqual([
      'flushMessages', 'flushMs', 'minInSyncReplicas', 'retentionBytes', 'retentionMs', 'segmentBytes', 'segmentMs', 'uncleanLeaderElection',
    ]);
  });
});

// ---- Mutations: every decoder of untrusted bytes fails only with DecodeError -------------------

describe('body mutations', () => {
  it('produce request and response', () => {
    fc.assert(fc.property(acksArb, produceTopicsArb, produceResponseArb, mutationsArb, (acks, topics, response, mutations) => {
      decodeErrorOf(() => decodeProduceRequest(mutate(produceBody(acks, 1000, topics), mutations), 0));
      decodeErrorOf(() => decodeProduceResponse(mutate(encodeProduceResponse(response), mutations), 0));
    }), { numRuns: 1000 });
  });

  it('fetch request and response', () => {
    fc.assert(fc.property(fetchRequestArb, fetchResponseArb, mutationsArb, (request, response, mutations) => {
      decodeErrorOf(() => decodeFetchRequest(mutate(encodeFetchRequest(request), mutations), 0));
      decodeErrorOf(() => decodeFetchResponse(mutate(Buffer.concat(encodeFetchResponse(response).chunks), mutations), 0, 1 << 20));
    }), { numRuns: 1000 });
  });

  const replicatedMetadata = {
    brokers: [{ nodeId: 1, host: 'rill-1', port: 9092 }, { nodeId: 2, host: 'rill-2', port: 9092 }, { nodeId: 3, host: 'rill-3', port: 9092 }],
    controllerId: 1, controllerEpoch: 4, cluster: 'prod',
    topics: [{
      name: 'orders', errorCode: 0, replicationFactor: 3,
      partitions: [
        { partition: 0, leader: 1, leaderEpoch: 7, replicas: [1, 2, 3], isr: [1, 2, 3], errorCode: 0 },
        { partition: 1, leader: -1, leaderEpoch: 2, replicas: [2, 3, 1], isr: [2], errorCode: 93 },
      ],
      config: { ...defaultTopicConfig },
    }],
  };

  const controlSamples: BodySample[] = [
    [{ topics: ['a', 'b'] }, decodeMetadataRequest, 'MALFORMED_REQUEST'],
    [{ topics: [{ name: 'orders', partitions: 3, config: { retentionMs: 86_400_000, segmentBytes: 1 << 20 } }] }, decodeCreateTopicsRequest, 'MALFORMED_REQUEST'],
    [{ topics: [{ name: 'orders', partitions: 6, replicationFactor: 3, config: { minInSyncReplicas: 2, 'unclean.leader.election.enable': 'false' } }] }, decodeCreateTopicsRequest, 'MALFORMED_REQUEST'],
    [{ topics: ['orders'] }, decodeDeleteTopicsRequest, 'MALFORMED_REQUEST'],
    [{ topics: [{ name: 'orders', partitions: [{ partition: 0, timestamp: -1 }, { partition: 1, timestamp: 1_700_000_000_000n }] }] }, decodeListOffsetsRequest, 'MALFORMED_REQUEST'],
    [{ apiVersions: [{ apiKey: 0, minVersion: 0, maxVersion: 0 }], brokerVersion: '0.1.0' }, decodeApiVersionsResponse, 'MALFORMED_RESPONSE'],
    [{ brokers: [{ nodeId: 0, host: 'localhost', port: 9092 }], controllerId: 0, topics: [{ name: 'orders', errorCode: 0, partitions: [{ partition: 0, leader: 0, errorCode: 0 }], config: { ...defaultTopicConfig } }] }, decodeMetadataResponse, 'MALFORMED_RESPONSE'],
    [{ brokers: [{ nodeId: 1, host: 'rill-1', port: 9092, rack: 'a', alive: true }, { nodeId: 2, host: 'rill-2', port: 9092, rack: null, alive: true }], controllerId: 2, controllerEpoch: 17, cluster: 'prod', topics: [] }, decodeMetadataResponse, 'MALFORMED_RESPONSE'],
    [replicatedMetadata, decodeMetadataResponse, 'MALFORMED_RESPONSE'],
    [{ topics: [{ name: 'orders', errorCode: 8, errorMessage: 'exists' }] }, decodeTopicResults, 'MALFORMED_RESPONSE'],
    [{ topics: [{ name: 'orders', partitions: [{ partition: 0, errorCode: 0, offset: 42n, timestamp: -1 }] }] }, decodeListOffsetsResponse, 'MALFORMED_RESPONSE'],
  ];

  it('MessagePack control bodies', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: controlSamples.length - 1 }), mutationsArb, (index, mutations) => {
      const [value, decode, code] = controlSamples[index]!;
      const bad = mutate(encodeMsgpack(value), mutations);
      const result = decodeErrorOf(() => decode(decodeMsgpack(bad, code)));
      if (result !== null) expect(result).toBe(code);
      decodeErrorOf(() => decodeErrorBody(decodeMsgpack(bad, code)));
    }), { numRuns: 2000 });
  });

  it('the replication fields: mutated bodies and arbitrary values fail only with DecodeError of the right code', () => {
    const samples = controlSamples.filter(([, decode]) => decode === decodeMetadataResponse || decode === decodeCreateTopicsRequest);
    checkMutatedBodies(samples, 2000);
    checkArbitraryBodies(samples, 1000);
  });

  it('arbitrary bytes as a MessagePack body', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      decodeErrorOf(() => decodeCreateTopicsRequest(decodeMsgpack(bytes)));
      decodeErrorOf(() => decodeMetadataResponse(decodeMsgpack(bytes, 'MALFORMED_RESPONSE')));
    }), { numRuns: 2000 });
  });

  it('BodyReader never reads past its end', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 12 }), (bytes) => {
      const reader = new BodyReader(Buffer.from(bytes), 0, bytes.length, 'MALFORMED_REQUEST');
      decodeErrorOf(() => { reader.u8('a'); reader.i16('b'); reader.string('c', 10); reader.i64('d'); reader.bytes('e', 10); reader.expectEnd('body'); });
      expect(reader.pos).toBeLessThanOrEqual(bytes.length);
    }));
  });
});
