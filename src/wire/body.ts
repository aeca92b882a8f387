/**
 * Bounds-checked reading and plain writing of the binary bodies (Produce, Fetch, ReplicaFetch).
 * Every read from untrusted bytes checks the remaining length first and throws DecodeError.
 * The topic-list shape and the chunked encoding of record-carrying bodies live here once, so
 * each API's file holds only its own fields.
 */
import { DecodeError, type ErrorName } from '../lib/errors.js';
import { requestPartitionsMax, requestTopicsMax, topicNameBytesMax } from '../lib/limits.js';

export class BodyReader {
  pos: number;

  constructor(readonly buf: Buffer, start: number, readonly end: number, private readonly code: ErrorName) {
    this.pos = start;
  }

  private need(bytes: number, what: string): void {
    if (this.end - this.pos < bytes) throw new DecodeError(this.code, `${what} needs ${bytes} bytes, ${this.end - this.pos} remain`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  i8(what: string): number {
    this.need(1, what);
    return this.buf.readInt8(this.pos++);
  }

  u16(what: string): number {
    this.need(2, what);
    const value = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return value;
  }

  i16(what: string): number {
    this.need(2, what);
    const value = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return value;
  }

  u32(what: string): number {
    this.need(4, what);
    const value = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return value;
  }

  i32(what: string): number {
    this.need(4, what);
    const value = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return value;
  }

  /** An int64 that must be a safe integer (offsets, timestamps). */
  i64(what: string): number {
    this.need(8, what);
    const high = this.buf.readInt32BE(this.pos);
    const low = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    const value = high * 0x1_0000_0000 + low;
    if (!Number.isSafeInteger(value)) throw new DecodeError(this.code, `${what} ${value} is outside the safe integer range`);
    return value;
  }

  /** u16 length + UTF-8 bytes, at most `maxBytes`. */
  string(what: string, maxBytes: number): string {
    const length = this.u16(`${what} length`);
    if (length > maxBytes) throw new DecodeError(this.code, `${what} of ${length} bytes exceeds ${maxBytes}`);
    this.need(length, what);
    const value = this.buf.toString('utf8', this.pos, this.pos + length);
    this.pos += length;
    return value;
  }

  /** u32 length + bytes, returned as a view (no copy). */
  bytes(what: string, maxBytes: number): Buffer {
    const length = this.u32(`${what} length`);
    if (length > maxBytes) throw new DecodeError(this.code, `${what} of ${length} bytes exceeds ${maxBytes}`);
    this.need(length, what);
    const value = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return value;
  }

  /** Throws the DecodeError of this body (its code) with `detail`. */
  fail(detail: string): never {
    throw new DecodeError(this.code, detail);
  }

  expectEnd(what: string): void {
    if (this.pos !== this.end) throw new DecodeError(this.code, `${this.end - this.pos} unexpected bytes after ${what}`);
  }
}

/**
 * The topic list shape shared by the binary bodies: topicCount u16, then per topic its name and
 * partitionCount u16 followed by that many partition entries read by `readPartition`.
 */
export function readTopicList<P>(reader: BodyReader, readPartition: (reader: BodyReader) => P): { name: string; partitions: P[] }[] {
  const topicCount = reader.u16('topic count');
  const topics: { name: string; partitions: P[] }[] = [];
  for (let t = 0; t < topicCount; t++) {
    const name = reader.string('topic name', topicNameBytesMax);
    const partitionCount = reader.u16('partition count');
    const partitions: P[] = [];
    for (let p = 0; p < partitionCount; p++) partitions.push(readPartition(reader));
    topics.push({ name, partitions });
  }
  return topics;
}

/**
 * The topic list of a request, bounded: at most requestTopicsMax topics and requestPartitionsMax
 * partitions over all of them, checked before each list grows.
 */
export function readRequestTopicList<P>(reader: BodyReader, readPartition: (reader: BodyReader) => P): { name: string; partitions: P[] }[] {
  const topicCount = reader.u16('topic count');
  if (topicCount > requestTopicsMax) reader.fail(`${topicCount} topics exceed ${requestTopicsMax}`);
  const topics: { name: string; partitions: P[] }[] = [];
  let partitionsTotal = 0;
  for (let t = 0; t < topicCount; t++) {
    const name = reader.string('topic name', topicNameBytesMax);
    const partitionCount = reader.u16('partition count');
    partitionsTotal += partitionCount;
    if (partitionsTotal > requestPartitionsMax) reader.fail(`more than ${requestPartitionsMax} partitions in one request`);
    const partitions: P[] = [];
    for (let p = 0; p < partitionCount; p++) partitions.push(readPartition(reader));
    topics.push({ name, partitions });
  }
  return topics;
}

export interface TopicList<P> {
  readonly name: string;
  readonly partitions: readonly P[];
}

/** Bytes of a topic list whose partition entries have a fixed size: topicCount u16, names, counts. */
export function topicListBytes(topics: readonly TopicList<unknown>[], partitionBytes: number): number {
  let size = 2;
  for (const topic of topics) size += stringBytes(topic.name) + 2 + topic.partitions.length * partitionBytes;
  return size;
}

/** Writes topicCount u16, then per topic its name, partitionCount u16 and its partition entries. */
export function writeTopicList<P>(writer: BodyWriter, topics: readonly TopicList<P>[], writePartition: (writer: BodyWriter, partition: P) => void): void {
  writer.u16(topics.length);
  for (const topic of topics) {
    writer.string(topic.name, Buffer.byteLength(topic.name)).u16(topic.partitions.length);
    for (const partition of topic.partitions) writePartition(writer, partition);
  }
}

/** How a record-carrying body lays out around its topic list (see encodeRecordsBody). */
export interface RecordsBodyLayout<P> {
  /** Fixed bytes before the topic list. */
  readonly prefixBytes: number;
  writePrefix(writer: BodyWriter): void;
  /** Fixed bytes of each partition's entry before its u32 records length. */
  readonly partitionHeadBytes: number;
  writePartitionHead(writer: BodyWriter, partition: P): void;
  records(partition: P): readonly Buffer[];
}

/**
 * Encodes prefix, topic list and per partition its head, `records` length u32 and the record
 * buffers themselves, as chunks: small header slices interleaved with the record buffers, which
 * are never copied (the connection writes the chunks with writev).
 */
export function encodeRecordsBody<P>(topics: readonly TopicList<P>[], layout: RecordsBodyLayout<P>): { chunks: Buffer[]; bytes: number } {
  const headBytes = layout.prefixBytes + topicListBytes(topics, layout.partitionHeadBytes + 4);
  const writer = new BodyWriter(Buffer.allocUnsafe(headBytes));
  const chunks: Buffer[] = [];
  let bytes = headBytes;
  layout.writePrefix(writer);
  writeTopicList(writer, topics, (w, partition) => {
    const records = layout.records(partition);
    let recordsBytes = 0;
    for (const chunk of records) recordsBytes += chunk.length;
    layout.writePartitionHead(w, partition);
    w.u32(recordsBytes);
    chunks.push(w.takeChunk());
    for (const chunk of records) chunks.push(chunk);
    bytes += recordsBytes;
  });
  const tail = writer.takeChunk();
  if (tail.length > 0) chunks.push(tail);
  return { chunks, bytes };
}

export class BodyWriter {
  pos = 0;
  private chunkStart = 0;
  constructor(readonly buf: Buffer) {}

  /** The bytes written since the last takeChunk (a view, not a copy). */
  takeChunk(): Buffer {
    const chunk = this.buf.subarray(this.chunkStart, this.pos);
    this.chunkStart = this.pos;
    return chunk;
  }

  u8(value: number): this {
    this.buf[this.pos++] = value;
    return this;
  }
  i8(value: number): this {
    this.buf.writeInt8(value, this.pos++);
    return this;
  }
  u16(value: number): this {
    this.pos = this.buf.writeUInt16BE(value, this.pos);
    return this;
  }
  i16(value: number): this {
    this.pos = this.buf.writeInt16BE(value, this.pos);
    return this;
  }
  u32(value: number): this {
    this.pos = this.buf.writeUInt32BE(value >>> 0, this.pos);
    return this;
  }
  i32(value: number): this {
    this.pos = this.buf.writeInt32BE(value, this.pos);
    return this;
  }
  i64(value: number): this {
    const high = Math.floor(value / 0x1_0000_0000);
    this.buf.writeInt32BE(high, this.pos);
    this.buf.writeUInt32BE(value - high * 0x1_0000_0000, this.pos + 4);
    this.pos += 8;
    return this;
  }
  /** Writes u16 length + UTF-8; `byteLength` must be Buffer.byteLength(value). */
  string(value: string, byteLength: number): this {
    this.u16(byteLength);
    this.pos += this.buf.write(value, this.pos, byteLength, 'utf8');
    return this;
  }
  bytes(value: Uint8Array): this {
    this.u32(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
    return this;
  }
}

export function stringBytes(value: string): number {
  return 2 + Buffer.byteLength(value);
}
