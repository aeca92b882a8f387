/**
 * Fetch (api key 1, v0): binary, so stored batch bytes go out exactly as they lie on disk.
 *
 * Request:  maxWaitMs u32, minBytes u32, maxBytes u32, topicCount u16,
 *           per topic: name, partitionCount u16,
 *           per partition: partition u32, fetchOffset i64, partitionMaxBytes u32
 * Response: throttleTimeMs u32 (how long the broker held this reply back for a quota, 0: not),
 *           topicCount u16, per topic: name, partitionCount u16,
 *           per partition: partition u32, errorCode i16, highWatermark i64, logStartOffset i64,
 *           records (u32 length + whole batches; the first batch may start before fetchOffset)
 */
import { requestPartitionsMax, requestTopicsMax, topicNameBytesMax } from '../lib/limits.js';
import { DecodeError } from '../lib/errors.js';
import { BodyReader, BodyWriter, readTopicList, stringBytes } from './body.js';

export interface FetchPartitionRequest {
  partition: number;
  fetchOffset: number;
  partitionMaxBytes: number;
}

export interface FetchTopic<P> {
  name: string;
  partitions: P[];
}

export interface FetchRequest {
  maxWaitMs: number;
  minBytes: number;
  maxBytes: number;
  topics: FetchTopic<FetchPartitionRequest>[];
}

export function encodeFetchRequest(request: FetchRequest): Buffer {
  let size = 4 + 4 + 4 + 2;
  for (const topic of request.topics) size += stringBytes(topic.name) + 2 + topic.partitions.length * 16;
  const writer = new BodyWriter(Buffer.allocUnsafe(size));
  writer.u32(request.maxWaitMs).u32(request.minBytes).u32(request.maxBytes).u16(request.topics.length);
  for (const topic of request.topics) {
    writer.string(topic.name, Buffer.byteLength(topic.name)).u16(topic.partitions.length);
    for (const p of topic.partitions) writer.u32(p.partition).i64(p.fetchOffset).u32(p.partitionMaxBytes);
  }
  return writer.buf;
}

export function decodeFetchRequest(body: Buffer, start: number): FetchRequest {
  const reader = new BodyReader(body, start, body.length, 'MALFORMED_REQUEST');
  const maxWaitMs = reader.u32('maxWaitMs');
  const minBytes = reader.u32('minBytes');
  const maxBytes = reader.u32('maxBytes');
  const topicCount = reader.u16('topic count');
  if (topicCount > requestTopicsMax) throw new DecodeError('MALFORMED_REQUEST', `${topicCount} topics exceed ${requestTopicsMax}`);
  const topics: FetchTopic<FetchPartitionRequest>[] = [];
  let partitionsTotal = 0;
  for (let t = 0; t < topicCount; t++) {
    const name = reader.string('topic name', topicNameBytesMax);
    const partitionCount = reader.u16('partition count');
    partitionsTotal += partitionCount;
    if (partitionsTotal > requestPartitionsMax) throw new DecodeError('MALFORMED_REQUEST', `more than ${requestPartitionsMax} partitions in one request`);
    const partitions: FetchPartitionRequest[] = [];
    for (let p = 0; p < partitionCount; p++) {
      const partition = reader.u32('partition');
      const fetchOffset = reader.i64('fetchOffset');
      if (fetchOffset < 0) throw new DecodeError('MALFORMED_REQUEST', `fetchOffset ${fetchOffset} is negative`);
      partitions.push({ partition, fetchOffset, partitionMaxBytes: reader.u32('partitionMaxBytes') });
    }
    topics.push({ name, partitions });
  }
  reader.expectEnd('fetch request');
  return { maxWaitMs, minBytes, maxBytes, topics };
}

export interface FetchPartitionResponse {
  partition: number;
  errorCode: number;
  highWatermark: number;
  logStartOffset: number;
  /** Whole batches, as stored; possibly several buffers (segments, cache entries). */
  records: Buffer[];
}

/**
 * Encodes a fetch response as chunks: headers interleaved with the stored record bytes, which
 * are never copied here.
 */
export function encodeFetchResponse(topics: FetchTopic<FetchPartitionResponse>[], throttleTimeMs = 0): { chunks: Buffer[]; bytes: number } {
  let headBytes = 4 + 2;
  for (const topic of topics) headBytes += stringBytes(topic.name) + 2 + topic.partitions.length * 26;
  let writer = new BodyWriter(Buffer.allocUnsafe(headBytes));
  const chunks: Buffer[] = [];
  let bytes = headBytes;
  writer.u32(throttleTimeMs).u16(topics.length);
  for (const topic of topics) {
    writer.string(topic.name, Buffer.byteLength(topic.name)).u16(topic.partitions.length);
    for (const p of topic.partitions) {
      let recordsBytes = 0;
      for (const chunk of p.records) recordsBytes += chunk.length;
      writer.u32(p.partition).i16(p.errorCode).i64(p.highWatermark).i64(p.logStartOffset).u32(recordsBytes);
      chunks.push(writer.buf.subarray(0, writer.pos));
      for (const chunk of p.records) chunks.push(chunk);
      bytes += recordsBytes;
      writer = new BodyWriter(writer.buf.subarray(writer.pos));
    }
  }
  if (writer.pos > 0) chunks.push(writer.buf.subarray(0, writer.pos));
  return { chunks, bytes };
}

export interface FetchedPartition {
  partition: number;
  errorCode: number;
  highWatermark: number;
  logStartOffset: number;
  records: Buffer;
}

export interface FetchResponse {
  /** How long the broker delayed this reply because the principal is over its fetch quota. */
  throttleTimeMs: number;
  topics: FetchTopic<FetchedPartition>[];
}

export function decodeFetchResponse(body: Buffer, start: number, recordsBytesMax: number): FetchResponse {
  const reader = new BodyReader(body, start, body.length, 'MALFORMED_RESPONSE');
  const throttleTimeMs = reader.u32('throttleTimeMs');
  const topics = readTopicList(reader, (r): FetchedPartition => ({
    partition: r.u32('partition'),
    errorCode: r.i16('errorCode'),
    highWatermark: r.i64('highWatermark'),
    logStartOffset: r.i64('logStartOffset'),
    records: r.bytes('records', recordsBytesMax),
  }));
  reader.expectEnd('fetch response');
  return { throttleTimeMs, topics };
}
