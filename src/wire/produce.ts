/**
 * Produce (api key 0, v0): a hand-written binary body, so record batches travel as raw bytes
 * that the broker validates once and appends unchanged.
 *
 * Request:  acks i8 (0, 1, -1), timeoutMs u32, topicCount u16,
 *           per topic: name (u16 length + UTF-8), partitionCount u16,
 *           per partition: partition u32, records (u32 length + one or more whole batches)
 * Response: throttleTimeMs u32 (how long the broker held this reply back for a quota, 0: not),
 *           topicCount u16, per topic: name, partitionCount u16,
 *           per partition: partition u32, errorCode i16, baseOffset i64 (-1 on error),
 *           logStartOffset i64, durability u8 (0 sent, 1 written to the OS, 2 fsynced),
 *           errorMessage (u16 length + UTF-8, empty when none)
 */
import { DecodeError } from '../lib/errors.js';
import { requestFrameBytesMax, bodyStringBytesMax } from '../lib/limits.js';
import { BodyReader, BodyWriter, encodeRecordsBody, readRequestTopicList, readTopicList, stringBytes } from './body.js';

export interface ProducePartitionRequest {
  partition: number;
  records: Buffer;
}

export interface ProduceTopicRequest<P = ProducePartitionRequest> {
  name: string;
  partitions: P[];
}

export interface ProduceRequest {
  acks: number;
  timeoutMs: number;
  topics: ProduceTopicRequest[];
}

export function decodeProduceRequest(body: Buffer, start: number): ProduceRequest {
  const reader = new BodyReader(body, start, body.length, 'MALFORMED_REQUEST');
  const acks = reader.i8('acks');
  if (acks !== 0 && acks !== 1 && acks !== -1) throw new DecodeError('INVALID_REQUIRED_ACKS', `acks ${acks} is not 0, 1 or -1`);
  const timeoutMs = reader.u32('timeoutMs');
  const topics = readRequestTopicList(reader, (r): ProducePartitionRequest => ({ partition: r.u32('partition'), records: r.bytes('records', requestFrameBytesMax) }));
  reader.expectEnd('produce request');
  return { acks, timeoutMs, topics };
}

/**
 * Encodes a produce request body as a list of chunks: small header buffers interleaved with the
 * batches themselves, so batch bytes are never copied (the connection writes them with writev).
 */
export function encodeProduceRequest(acks: number, timeoutMs: number, topics: ProduceTopicRequest<{ partition: number; batches: Buffer[] }>[]): Buffer[] {
  return encodeRecordsBody(topics, {
    prefixBytes: 1 + 4,
    writePrefix: (w) => w.i8(acks).u32(timeoutMs),
    partitionHeadBytes: 4,
    writePartitionHead: (w, p) => w.u32(p.partition),
    records: (p) => p.batches,
  }).chunks;
}

export interface ProducePartitionResponse {
  partition: number;
  errorCode: number;
  baseOffset: number;
  logStartOffset: number;
  durability: number;
  errorMessage: string;
}

export interface ProduceResponse {
  /** How long the broker delayed this reply because the principal is over its produce quota. */
  throttleTimeMs: number;
  topics: ProduceTopicRequest<ProducePartitionResponse>[];
}

export function encodeProduceResponse(topics: ProduceTopicRequest<ProducePartitionResponse>[], throttleTimeMs = 0): Buffer {
  let size = 4 + 2;
  for (const topic of topics) {
    size += stringBytes(topic.name) + 2;
    for (const p of topic.partitions) size += 4 + 2 + 8 + 8 + 1 + stringBytes(p.errorMessage);
  }
  const writer = new BodyWriter(Buffer.allocUnsafe(size));
  writer.u32(throttleTimeMs).u16(topics.length);
  for (const topic of topics) {
    writer.string(topic.name, Buffer.byteLength(topic.name)).u16(topic.partitions.length);
    for (const p of topic.partitions) {
      writer.u32(p.partition).i16(p.errorCode).i64(p.baseOffset).i64(p.logStartOffset).u8(p.durability);
      writer.string(p.errorMessage, Buffer.byteLength(p.errorMessage));
    }
  }
  return writer.buf;
}

export function decodeProduceResponse(body: Buffer, start: number): ProduceResponse {
  const reader = new BodyReader(body, start, body.length, 'MALFORMED_RESPONSE');
  const throttleTimeMs = reader.u32('throttleTimeMs');
  const topics = readTopicList(reader, (r): ProducePartitionResponse => ({
    partition: r.u32('partition'),
    errorCode: r.i16('errorCode'),
    baseOffset: r.i64('baseOffset'),
    logStartOffset: r.i64('logStartOffset'),
    durability: r.u8('durability'),
    errorMessage: r.string('errorMessage', bodyStringBytesMax),
  }));
  reader.expectEnd('produce response');
  return { throttleTimeMs, topics };
}
