/**
 * Runs every golden vector in protocol/vectors/. The vectors are fixed data: a change to the
 * format that alters any byte fails here.
 */
import {
  decodeAlterConfigsRequest, decodeAlterConfigsResponse, decodeCreatePartitionsRequest, decodeDeleteGroupsRequest, decodeDeleteGroupsResponse,
  decodeDeleteRecordsRequest, decodeDeleteRecordsResponse, decodeDescribeConfigsRequest, decodeDescribeConfigsResponse,
} from '../../src/wire/admin-ops.js';
import { describe, expect, it } from 'vitest';
import * as limits from '../../src/lib/limits.js';
import { errorCodeOf, type ErrorName } from '../../src/lib/errors.js';
import {
  BatchBuilder, decodeBatch, newBatchInfo, stampBaseOffset, validateBatch, type ConsumedRecord,
} from '../../src/wire/record-batch.js';
import {
  FrameDecoder, decodeRequestHeader, decodeResponseHeader, encodeRequestFrame, encodeResponseHead,
} from '../../src/wire/frame.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { decodeProduceRequest, decodeProduceResponse, encodeProduceRequest, encodeProduceResponse, type ProducePartitionResponse } from '../../src/wire/produce.js';
import { decodeFetchRequest, decodeFetchResponse, encodeFetchRequest, encodeFetchResponse, type FetchRequest } from '../../src/wire/fetch.js';
import {
  decodeApiVersionsResponse, decodeCreateTopicsRequest, decodeDeleteTopicsRequest, decodeErrorBody, decodeListOffsetsRequest,
  decodeListOffsetsResponse, decodeMetadataRequest, decodeMetadataResponse, decodeTopicResults,
} from '../../src/wire/control.js';
import { ApiKey, apiNameByKey } from '../../src/wire/apis.js';
import {
  decodeReplicaFetchRequest, decodeReplicaFetchResponse, encodeReplicaFetchRequest, encodeReplicaFetchResponse, type ReplicaFetchRequest,
} from '../../src/wire/replica-fetch.js';
import { decodeOffsetForLeaderEpochRequest, decodeOffsetForLeaderEpochResponse } from '../../src/wire/offset-for-leader-epoch.js';
import { decodeSaslAuthenticateRequest, decodeSaslAuthenticateResponse, decodeSaslHandshakeRequest, decodeSaslHandshakeResponse } from '../../src/wire/sasl.js';
import { readVarint, readVarlong, writeVarint, writeVarlong, sizeOfVarint, sizeOfVarlong } from '../../src/wire/varint.js';
import { decodeErrorOf, fromWireValue, hex, readProtocolJson, toWireValue, vectorBytes, type VectorBytes } from './helpers.js';

// ---- record batches ------------------------------------------------------------------------

interface VectorRecord {
  offset: string;
  timestamp: number;
  key: VectorBytes;
  value: VectorBytes;
  headers: { key: string; value: VectorBytes }[];
}

interface ValidBatchVector {
  name: string;
  hex: string;
  header: {
    baseOffset: string; batchLength: number; partitionLeaderEpoch: number; magic: number; crc: string; attributes: number;
    lastOffsetDelta: number; baseTimestamp: number; maxTimestamp: number; producerId: number; producerEpoch: number;
    baseSequence: number; recordsCount: number;
  };
  records: VectorRecord[];
}

interface InvalidBatchVector {
  name: string;
  hex: string;
  error: ErrorName;
}

const batches = readProtocolJson<{ valid: ValidBatchVector[]; invalid: InvalidBatchVector[] }>('vectors/record-batches.json');

function plainRecord(record: ConsumedRecord) {
  return {
    offset: record.offset.toString(),
    timestamp: record.timestamp,
    key: record.key === null ? null : record.key.toString('hex'),
    value: record.value === null ? null : record.value.toString('hex'),
    headers: record.headers.map((h) => ({ key: h.key, value: h.value === null ? null : h.value.toString('hex') })),
  };
}

function expectedRecord(record: VectorRecord) {
  const asHex = (value: VectorBytes) => vectorBytes(value)?.toString('hex') ?? null;
  return { offset: record.offset, timestamp: record.timestamp, key: asHex(record.key), value: asHex(record.value), headers: record.headers.map((h) => ({ key: h.key, value: asHex(h.value) })) };
}

describe('record batch vectors: valid', () => {
  it('there are vectors to run', () => {
    expect(batches.valid.length).toBeGreaterThanOrEqual(8);
    expect(batches.invalid.length).toBeGreaterThanOrEqual(20);
  });

  for (const vector of batches.valid) {
    it(`${vector.name}: validates, decodes to the expected header and records`, () => {
      const bytes = hex(vector.hex);
      const info = newBatchInfo();
      validateBatch(bytes, 0, bytes.length, info);
      expect(info.sizeBytes).toBe(bytes.length);
      expect(vector.header.batchLength + 12).toBe(bytes.length);
      expect(bytes.readUInt32BE(17)).toBe(Number.parseInt(vector.header.crc, 16));
      const records: ConsumedRecord[] = [];
      const decoded = decodeBatch(bytes, 0, bytes.length, (record) => records.push(record));
      const h = vector.header;
      expect(decoded).toEqual({
        baseOffset: Number(h.baseOffset), sizeBytes: bytes.length, recordsCount: h.recordsCount, baseTimestamp: h.baseTimestamp,
        maxTimestamp: h.maxTimestamp, producerId: h.producerId, producerEpoch: h.producerEpoch, baseSequence: h.baseSequence,
      });
      expect(records.map(plainRecord)).toEqual(vector.records.map(expectedRecord));
    });

    it(`${vector.name}: BatchBuilder re-encodes it byte for byte`, () => {
      const builder = new BatchBuilder(limits.batchBytesMax);
      for (const record of vector.records) {
        const appended = builder.tryAppend({
          key: vectorBytes(record.key),
          value: vectorBytes(record.value),
          headers: record.headers.map((h) => ({ key: h.key, value: vectorBytes(h.value) })),
          timestamp: record.timestamp,
        }, 0);
        expect(appended).toBe(true);
      }
      const h = vector.header;
      const encoded = builder.finish({ producerId: h.producerId, producerEpoch: h.producerEpoch, baseSequence: h.baseSequence });
      stampBaseOffset(encoded, 0, Number(h.baseOffset));
      expect(encoded.toString('hex')).toBe(vector.hex);
    });
  }

  it('stamping baseOffset leaves the CRC valid (baseOffset is outside it)', () => {
    const one = batches.valid.find((v) => v.name === 'one-record')!;
    const stamped = batches.valid.find((v) => v.name === 'stamped-base-offset')!;
    expect(stamped.hex.slice(16)).toBe(one.hex.slice(16));
  });
});

describe('record batch vectors: invalid', () => {
  for (const vector of batches.invalid) {
    it(`${vector.name}: rejected with ${vector.error}`, () => {
      const bytes = hex(vector.hex);
      expect(decodeErrorOf(() => validateBatch(bytes, 0, bytes.length, newBatchInfo()))).toBe(vector.error);
      // A consumer decoding the same bytes never gets a record out of a bad batch. decodeBatch has no
      // size limit (the fetch response bounds it), so BATCH_TOO_LARGE shows up there as truncation.
      const records: ConsumedRecord[] = [];
      const decodeCode = decodeErrorOf(() => decodeBatch(bytes, 0, bytes.length, (r) => records.push(r)));
      expect(decodeCode).toBe(vector.error === 'BATCH_TOO_LARGE' ? 'INVALID_BATCH' : vector.error);
      expect(records).toEqual([]);
    });
  }
});

// ---- frames ----------------------------------------------------------------------------------

interface MsgpackBody { msgpack: unknown }
interface BinaryBody { binary: unknown }
interface RequestVector {
  name: string; api: string | null; apiKey: number; apiVersion: number; correlationId: number; hex: string;
  body: MsgpackBody | BinaryBody | null;
}
interface ResponseVector {
  name: string; api: string | null; correlationId: number; errorCode: number; hex: string; body: MsgpackBody | BinaryBody;
}

const frames = readProtocolJson<{ requests: RequestVector[]; responses: ResponseVector[] }>('vectors/frames.json');

/** Splits a byte stream of frames with a FrameDecoder fed one byte at a time. */
function framesOf(stream: Buffer, frameBytesMax: number, frameBytesMin: number): Buffer[] {
  const decoder = new FrameDecoder(frameBytesMax, frameBytesMin);
  const out: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) decoder.push(stream.subarray(i, i + 1), (frame) => out.push(Buffer.from(frame)));
  expect(decoder.buffered).toBe(0);
  return out;
}

type ProduceRequestJson = { acks: number; timeoutMs: number; topics: { name: string; partitions: { partition: number; records: string }[] }[] };
type ProduceResponseJson = { throttleTimeMs: number; topics: { name: string; partitions: ProducePartitionResponse[] }[] };
type ReplicaFetchResponseJson = { topics: { name: string; partitions: { partition: number; errorCode: number; leaderEpoch: number; highWatermark: number; logStartOffset: number; divergingEpoch: { epoch: number; endOffset: number } | null; records: string }[] }[] };
type FetchResponseJson = { throttleTimeMs: number; topics: { name: string; partitions: { partition: number; errorCode: number; highWatermark: number; logStartOffset: number; records: string }[] }[] };

const requestDecoders: Record<string, (value: unknown) => unknown> = {
  Metadata: decodeMetadataRequest,
  CreateTopics: decodeCreateTopicsRequest,
  DeleteTopics: decodeDeleteTopicsRequest,
  ListOffsets: decodeListOffsetsRequest,
  ApiVersions: (value) => { expect(value).toEqual({}); return value; },
  IncrementalAlterConfigs: decodeAlterConfigsRequest,
  DescribeConfigs: decodeDescribeConfigsRequest,
  CreatePartitions: decodeCreatePartitionsRequest,
  DeleteGroups: decodeDeleteGroupsRequest,
  DeleteRecords: decodeDeleteRecordsRequest,
  SaslHandshake: decodeSaslHandshakeRequest,
  SaslAuthenticate: decodeSaslAuthenticateRequest,
  OffsetForLeaderEpoch: decodeOffsetForLeaderEpochRequest,
};

describe('request frame vectors', () => {
  it('create-topics-replicated: a replication factor per topic, -1 for the default (as when absent)', () => {
    const vector = frames.requests.find((v) => v.name === 'create-topics-replicated')!;
    const { topics } = decodeCreateTopicsRequest(decodeMsgpack(hex(vector.hex).subarray(4 + limits.requestHeaderBytes)));
    expect(topics.map((t) => [t.name, t.partitions, t.replicationFactor])).toEqual([['orders', 6, 3], ['audit.log', 1, -1]]);
    const plain = frames.requests.find((v) => v.name === 'create-topics')!;
    expect(decodeCreateTopicsRequest(decodeMsgpack(hex(plain.hex).subarray(4 + limits.requestHeaderBytes))).topics.map((t) => t.replicationFactor)).toEqual([-1, -1]);
  });

  for (const vector of frames.requests) {
    it(`${vector.name}: frames, header, body and re-encoding`, () => {
      const stream = hex(vector.hex);
      const [frame, ...rest] = framesOf(stream, limits.requestFrameBytesMax, limits.requestHeaderBytes);
      expect(rest).toEqual([]);
      expect(decodeRequestHeader(frame!)).toEqual({ apiKey: vector.apiKey, apiVersion: vector.apiVersion, correlationId: vector.correlationId });
      expect(apiNameByKey.get(vector.apiKey) ?? null).toBe(vector.api);
      const body = frame!.subarray(limits.requestHeaderBytes);
      if (vector.body === null) return;
      if ('msgpack' in vector.body) {
        expect(encodeMsgpack(toWireValue(vector.body.msgpack)).toString('hex')).toBe(body.toString('hex'));
        const value = decodeMsgpack(body, 'MALFORMED_REQUEST');
        expect(fromWireValue(value)).toEqual(vector.body.msgpack);
        requestDecoders[vector.api!]!(value);
        expect(encodeRequestFrame(vector.apiKey, vector.apiVersion, vector.correlationId, body).toString('hex')).toBe(vector.hex);
      } else if (vector.apiKey === ApiKey.Produce) {
        const json = vector.body.binary as ProduceRequestJson;
        const decoded = decodeProduceRequest(frame!, limits.requestHeaderBytes);
        expect({ ...decoded, topics: decoded.topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ partition: p.partition, records: p.records.toString('hex') })) })) }).toEqual(json);
        for (const topic of decoded.topics) for (const p of topic.partitions) validateEveryBatch(p.records);
        const reencoded = Buffer.concat(encodeProduceRequest(json.acks, json.timeoutMs, json.topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ partition: p.partition, batches: [hex(p.records)] })) }))));
        expect(encodeRequestFrame(vector.apiKey, 0, vector.correlationId, reencoded).toString('hex')).toBe(vector.hex);
      } else if (vector.apiKey === ApiKey.ReplicaFetch) {
        const json = vector.body.binary as ReplicaFetchRequest;
        expect(decodeReplicaFetchRequest(frame!, limits.requestHeaderBytes)).toEqual(json);
        expect(encodeRequestFrame(vector.apiKey, 0, vector.correlationId, encodeReplicaFetchRequest(json)).toString('hex')).toBe(vector.hex);
      } else {
        expect(vector.apiKey).toBe(ApiKey.Fetch);
        const json = vector.body.binary as FetchRequest;
        expect(decodeFetchRequest(frame!, limits.requestHeaderBytes)).toEqual(json);
        expect(encodeRequestFrame(vector.apiKey, 0, vector.correlationId, encodeFetchRequest(json)).toString('hex')).toBe(vector.hex);
      }
    });
  }
});

/** A records field holds whole batches back to back; each must validate. */
function validateEveryBatch(records: Buffer): number {
  let pos = 0;
  let count = 0;
  const info = newBatchInfo();
  while (pos < records.length) {
    validateBatch(records, pos, records.length, info);
    pos += info.sizeBytes;
    count++;
  }
  return count;
}

const responseDecoders: Record<string, (value: unknown) => unknown> = {
  ApiVersions: decodeApiVersionsResponse,
  Metadata: decodeMetadataResponse,
  CreateTopics: decodeTopicResults,
  DeleteTopics: decodeTopicResults,
  ListOffsets: decodeListOffsetsResponse,
  IncrementalAlterConfigs: decodeAlterConfigsResponse,
  DescribeConfigs: decodeDescribeConfigsResponse,
  CreatePartitions: decodeTopicResults,
  DeleteGroups: decodeDeleteGroupsResponse,
  DeleteRecords: decodeDeleteRecordsResponse,
  SaslHandshake: decodeSaslHandshakeResponse,
  SaslAuthenticate: decodeSaslAuthenticateResponse,
  OffsetForLeaderEpoch: decodeOffsetForLeaderEpochResponse,
};

describe('response frame vectors', () => {
  for (const vector of frames.responses) {
    it(`${vector.name}: frames, header, body and re-encoding`, () => {
      const stream = hex(vector.hex);
      const [frame, ...rest] = framesOf(stream, limits.responseFrameBytesMax, limits.responseHeaderBytes);
      expect(rest).toEqual([]);
      expect(decodeResponseHeader(frame!)).toEqual({ correlationId: vector.correlationId, errorCode: vector.errorCode });
      const body = frame!.subarray(limits.responseHeaderBytes);
      expect(encodeResponseHead(vector.correlationId, vector.errorCode, body.length).toString('hex')).toBe(vector.hex.slice(0, 20));
      if ('msgpack' in vector.body) {
        expect(encodeMsgpack(toWireValue(vector.body.msgpack)).toString('hex')).toBe(body.toString('hex'));
        const value = decodeMsgpack(body, 'MALFORMED_RESPONSE');
        expect(fromWireValue(value)).toEqual(vector.body.msgpack);
        if (vector.errorCode !== 0) {
          expect(decodeErrorBody(value)).toEqual(vector.body.msgpack);
          return;
        }
        responseDecoders[vector.api!]!(value);
      } else if (vector.api === 'Produce') {
        const json = vector.body.binary as ProduceResponseJson;
        expect(decodeProduceResponse(frame!, limits.responseHeaderBytes)).toEqual(json);
        expect(encodeProduceResponse(json.topics, json.throttleTimeMs).toString('hex')).toBe(body.toString('hex'));
      } else if (vector.api === 'ReplicaFetch') {
        const json = vector.body.binary as ReplicaFetchResponseJson;
        const decoded = decodeReplicaFetchResponse(frame!, limits.responseHeaderBytes, limits.fetchResponseBytesMax);
        expect(decoded.topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ ...p, records: p.records.toString('hex') })) }))).toEqual(json.topics);
        const reencoded = encodeReplicaFetchResponse(json.topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ ...p, records: p.records === '' ? [] : [hex(p.records)] })) })));
        expect(Buffer.concat(reencoded.chunks).toString('hex')).toBe(body.toString('hex'));
        for (const topic of decoded.topics) for (const p of topic.partitions) validateEveryBatch(p.records);
      } else {
        expect(vector.api).toBe('Fetch');
        const json = vector.body.binary as FetchResponseJson;
        const decoded = decodeFetchResponse(frame!, limits.responseHeaderBytes, limits.fetchResponseBytesMax);
        expect(decoded.throttleTimeMs).toBe(json.throttleTimeMs);
        expect(decoded.topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ ...p, records: p.records.toString('hex') })) }))).toEqual(json.topics);
        const reencoded = encodeFetchResponse(json.topics.map((t) => ({ name: t.name, partitions: t.partitions.map((p) => ({ ...p, records: p.records === '' ? [] : [hex(p.records)] })) })), json.throttleTimeMs);
        expect(Buffer.concat(reencoded.chunks).toString('hex')).toBe(body.toString('hex'));
        expect(reencoded.bytes).toBe(body.length);
        for (const topic of decoded.topics) for (const p of topic.partitions) validateEveryBatch(p.records);
      }
    });
  }

  it('metadata-replicated carries replicas, ISR and leader epochs; the older Metadata vectors read as one replica at epoch 0', () => {
    const decodedBody = (name: string) => {
      const vector = frames.responses.find((v) => v.name === name)!;
      return decodeMetadataResponse(decodeMsgpack(hex(vector.hex).subarray(4 + limits.responseHeaderBytes), 'MALFORMED_RESPONSE'));
    };
    const [replicated] = decodedBody('metadata-replicated').topics;
    expect(replicated).toMatchObject({ replicationFactor: 3, config: { minInSyncReplicas: 2, uncleanLeaderElection: 0 } });
    expect(replicated!.partitions).toEqual([
      { partition: 0, leader: 1, leaderEpoch: 7, replicas: [1, 2, 3], isr: [1, 3], errorCode: 0 },
      { partition: 1, leader: -1, leaderEpoch: 4, replicas: [2, 3, 1], isr: [2], errorCode: errorCodeOf('LEADER_NOT_AVAILABLE') },
    ]);
    const [orders, missing] = decodedBody('metadata').topics;
    expect(orders).toMatchObject({ replicationFactor: 1, config: { minInSyncReplicas: 2, uncleanLeaderElection: 0 } });
    expect(orders!.partitions[1]).toEqual({ partition: 1, leader: 0, leaderEpoch: 0, replicas: [0], isr: [0], errorCode: 0 });
    expect(missing!.replicationFactor).toBe(0);
  });

  it('the UNSUPPORTED_VERSION example carries the registry code', () => {
    const vector = frames.responses.find((v) => v.name === 'error-unsupported-version')!;
    expect(vector.errorCode).toBe(errorCodeOf('UNSUPPORTED_VERSION'));
  });
});

// ---- frame decoder ---------------------------------------------------------------------------

interface FrameDecoderCase {
  name: string;
  frameBytesMax: number | string;
  frameBytesMin: number | string;
  streamHex: string;
  frames: string[];
  error: ErrorName | null;
  pendingBytes?: number;
}

const decoderCases = readProtocolJson<{ cases: FrameDecoderCase[] }>('vectors/frame-decoder.json').cases;

function limitValue(value: number | string): number {
  if (typeof value === 'number') return value;
  const named = (limits as Record<string, unknown>)[value];
  expect(typeof named, `limit ${value}`).toBe('number');
  return named as number;
}

/** Every way to feed `stream`: whole, byte by byte, and every split into two chunks. */
function chunkings(stream: Buffer): Buffer[][] {
  const ways: Buffer[][] = [[stream], Array.from(stream, (_, i) => stream.subarray(i, i + 1))];
  for (let cut = 1; cut < stream.length; cut++) ways.push([stream.subarray(0, cut), stream.subarray(cut)]);
  return ways;
}

describe('frame decoder vectors', () => {
  for (const vector of decoderCases) {
    it(`${vector.name}: ${vector.error ?? `${vector.frames.length} frame(s)`} in every chunking`, () => {
      const stream = hex(vector.streamHex);
      for (const chunks of chunkings(stream)) {
        const decoder = new FrameDecoder(limitValue(vector.frameBytesMax), limitValue(vector.frameBytesMin));
        const out: string[] = [];
        const code = decodeErrorOf(() => {
          for (const chunk of chunks) decoder.push(chunk, (frame) => out.push(frame.toString('hex')));
        });
        expect(out).toEqual(vector.frames);
        expect(code).toBe(vector.error);
        if (vector.error === null) expect(decoder.buffered).toBe(vector.pendingBytes);
      }
    });
  }
});

// ---- varints ---------------------------------------------------------------------------------

interface VarintVectors {
  varint: { value: number; hex: string }[];
  varlong: { value: number; hex: string }[];
  invalidVarint: { hex: string; end: number }[];
  invalidVarlong: { hex: string; end: number }[];
}

const varints = readProtocolJson<VarintVectors>('vectors/varints.json');

describe('varint vectors', () => {
  it('varints encode to and decode from the listed bytes', () => {
    for (const { value, hex: expected } of varints.varint) {
      const buf = Buffer.alloc(10);
      const end = writeVarint(buf, 0, value);
      expect(buf.subarray(0, end).toString('hex'), `varint ${value}`).toBe(expected);
      expect(sizeOfVarint(value)).toBe(end);
      const cursor = { pos: 0 };
      expect(readVarint(hex(expected), cursor, expected.length / 2)).toBe(value);
      expect(cursor.pos).toBe(end);
    }
  });

  it('varlongs encode to and decode from the listed bytes', () => {
    for (const { value, hex: expected } of varints.varlong) {
      const buf = Buffer.alloc(10);
      const end = writeVarlong(buf, 0, value);
      expect(buf.subarray(0, end).toString('hex'), `varlong ${value}`).toBe(expected);
      expect(sizeOfVarlong(value)).toBe(end);
      const cursor = { pos: 0 };
      expect(readVarlong(hex(expected), cursor, expected.length / 2)).toBe(value);
      expect(cursor.pos).toBe(end);
    }
  });

  it('invalid encodings are rejected with INVALID_BATCH', () => {
    for (const { hex: bytes, end } of varints.invalidVarint) {
      expect(decodeErrorOf(() => readVarint(hex(bytes), { pos: 0 }, end)), `varint ${bytes}`).toBe('INVALID_BATCH');
    }
    for (const { hex: bytes, end } of varints.invalidVarlong) {
      expect(decodeErrorOf(() => readVarlong(hex(bytes), { pos: 0 }, end)), `varlong ${bytes}`).toBe('INVALID_BATCH');
    }
  });
});
