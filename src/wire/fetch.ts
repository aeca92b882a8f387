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
import { DecodeError } from '../lib/errors.js';
import { BodyReader, BodyWriter, encodeRecordsBody, readRequestTopicList, readTopicList, topicListBytes, writeTopicList } from './body.js';

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

const fetchPartitionRequestBytes = 4 + 8 + 4;

export function encodeFetchRequest(request: FetchRequest): Buffer {
  const writer = new BodyWriter(Buffer.allocUnsafe(4 + 4 + 4 + topicListBytes(request.topics, fetchPartitionRequestBytes)));
  writer.u32(request.maxWaitMs).u32(request.minBytes).u32(request.maxBytes);
  writeTopicList(writer, request.topics, (w, p) => w.u32(p.partition).i64(p.fetchOffset).u32(p.partitionMaxBytes));
  return writer.buf;
}

export function decodeFetchRequest(body: Buffer, start: number): FetchRequest {
  const reader = new BodyReader(body, start, body.length, 'MALFORMED_REQUEST');
  const maxWaitMs = reader.u32('maxWaitMs');
  const minBytes = reader.u32('minBytes');
  const maxBytes = reader.u32('maxBytes');
  const topics = readRequestTopicList(reader, (r): FetchPartitionRequest => {
    const partition = r.u32('partition');
    const fetchOffset = r.i64('fetchOffset');
    if (fetchOffset < 0) throw new DecodeError('MALFORMED_REQUEST', `fetchOffset ${fetchOffset} is negative`);
    return { partition, fetchOffset, partitionMaxBytes: r.u32('partitionMaxBytes') };
  });
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
  return encodeRecordsBody(topics, {
    prefixBytes: 4,
    writePrefix: (w) => w.u32(throttleTimeMs),
    partitionHeadBytes: 4 + 2 + 8 + 8,
    writePartitionHead: (w, p) => w.u32(p.partition).i16(p.errorCode).i64(p.highWatermark).i64(p.logStartOffset),
    records: (p) => p.records,
  });
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
