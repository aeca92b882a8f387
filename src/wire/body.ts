/**
 * Bounds-checked reading and plain writing of the binary bodies (Produce and Fetch). Every read
 * from untrusted bytes checks the remaining length first and throws DecodeError.
 */
import { DecodeError, type ErrorName } from '../lib/errors.js';
import { topicNameBytesMax } from '../lib/limits.js';

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

export class BodyWriter {
  pos = 0;
  constructor(readonly buf: Buffer) {}

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
