/**
 * The record batch: one layout on the wire and on disk (Kafka's v2 idea; our own code).
 *
 *   offset size field
 *        0    8 baseOffset            stamped by the broker     -+ not covered
 *        8    4 batchLength           bytes after this field     | by the CRC
 *       12    4 partitionLeaderEpoch  stamped by the broker     -+
 *       16    1 magic = 2                                       (not covered)
 *       17    4 crc                   CRC-32C of bytes 21..end
 *       21    2 attributes            bits 0-2 compression (only 0 = none is accepted)
 *       23    4 lastOffsetDelta       = recordsCount - 1
 *       27    8 baseTimestamp         ms, timestamp of the first record
 *       35    8 maxTimestamp          ms, largest record timestamp
 *       43    8 producerId            -1 when not idempotent
 *       51    2 producerEpoch
 *       53    4 baseSequence
 *       57    4 recordsCount
 *       61      records
 *
 * A record: length varint, attributes int8, timestampDelta varlong, offsetDelta varint,
 * keyLength varint (-1 = null), key, valueLength varint (-1 = null), value, headerCount varint,
 * then per header: keyLength varint, key (UTF-8), valueLength varint (-1 = null), value.
 *
 * Offsets inside the broker and this codec are JavaScript numbers (exact up to 2^53, which at a
 * million records a second lasts 285 years); the public APIs use bigint.
 */
import { DecodeError, RillError } from '../lib/errors.js';
import { batchBytesMax, batchRecordsMax, recordHeadersMax } from '../lib/limits.js';
import { assert } from '../lib/assert.js';
import { crc32c } from './crc32c.js';
import { type Cursor, readVarint, readVarlong, sizeOfVarint, sizeOfVarlong, writeVarint, writeVarlong } from './varint.js';

export const batchHeaderBytes = 61;
/** Bytes before batchLength counts: baseOffset + batchLength. */
export const batchLogOverheadBytes = 12;
export const batchMagic = 2;
/** Record timestamps are ms within ±2^51, so any delta between two of them fits a varlong. */
export const timestampMsMax = 2 ** 51;

export const BatchField = {
  baseOffset: 0,
  batchLength: 8,
  partitionLeaderEpoch: 12,
  magic: 16,
  crc: 17,
  attributes: 21,
  lastOffsetDelta: 23,
  baseTimestamp: 27,
  maxTimestamp: 35,
  producerId: 43,
  producerEpoch: 51,
  baseSequence: 53,
  recordsCount: 57,
} as const;

const compressionMask = 0x07;
/** Attribute bits we do not implement: transactional (4) and control (5). */
const unsupportedAttributeMask = 0x30;

/** What validation learns about a batch, written into a reused object. */
export interface BatchInfo {
  /** Whole batch size in bytes, header included. */
  sizeBytes: number;
  recordsCount: number;
  baseTimestamp: number;
  maxTimestamp: number;
  /** -1 when not idempotent. Exact for ids below 2^53. */
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
}

export function newBatchInfo(): BatchInfo {
  return { sizeBytes: 0, recordsCount: 0, baseTimestamp: 0, maxTimestamp: 0, producerId: -1, producerEpoch: -1, baseSequence: -1 };
}

// Big-endian reads by hand: a DataView per call would allocate on every batch of the hot path.
function int32At(buf: Uint8Array, pos: number): number {
  return (buf[pos]! << 24) | (buf[pos + 1]! << 16) | (buf[pos + 2]! << 8) | buf[pos + 3]!;
}

function uint32At(buf: Uint8Array, pos: number): number {
  return int32At(buf, pos) >>> 0;
}

function int16At(buf: Uint8Array, pos: number): number {
  return (((buf[pos]! << 8) | buf[pos + 1]!) << 16) >> 16;
}

function readInt64AsNumber(buf: Uint8Array, pos: number): number {
  return int32At(buf, pos) * 0x1_0000_0000 + uint32At(buf, pos + 4);
}

function writeInt64FromNumber(buf: Uint8Array, pos: number, value: number): void {
  const view = dataView(buf);
  const high = Math.floor(value / 0x1_0000_0000);
  view.setInt32(pos, high);
  view.setUint32(pos + 4, value - high * 0x1_0000_0000);
}

function dataView(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Size of the batch starting at `pos` as its header claims, or -1 if fewer than 12 bytes remain. */
export function readBatchSize(buf: Uint8Array, pos: number, end = buf.length): number {
  if (end - pos < batchLogOverheadBytes) return -1;
  return int32At(buf, pos + BatchField.batchLength) + batchLogOverheadBytes;
}

export function readBaseOffset(buf: Uint8Array, pos: number): number {
  return readInt64AsNumber(buf, pos + BatchField.baseOffset);
}

export function readLastOffsetDelta(buf: Uint8Array, pos: number): number {
  return int32At(buf, pos + BatchField.lastOffsetDelta);
}

export function readMaxTimestamp(buf: Uint8Array, pos: number): number {
  return readInt64AsNumber(buf, pos + BatchField.maxTimestamp);
}

/** The leader epoch the broker stamped on the batch (-1: none); outside the CRC. */
export function readPartitionLeaderEpoch(buf: Uint8Array, pos: number): number {
  return int32At(buf, pos + BatchField.partitionLeaderEpoch);
}

/** The leader stamps its epoch on every batch it appends; like the base offset it lies outside the CRC. */
export function stampPartitionLeaderEpoch(buf: Uint8Array, pos: number, leaderEpoch: number): void {
  dataView(buf).setInt32(pos + BatchField.partitionLeaderEpoch, leaderEpoch);
}

/** The broker assigns offsets by writing the base offset; it lies outside the CRC. */
export function stampBaseOffset(buf: Uint8Array, pos: number, baseOffset: number): void {
  writeInt64FromNumber(buf, pos + BatchField.baseOffset, baseOffset);
}

/**
 * Checks the header of the batch at `pos` against the bytes available up to `end`: length,
 * magic, CRC. Cheap enough for recovery scans (no record walk).
 */
export function checkBatchFrame(buf: Uint8Array, pos: number, end: number, sizeMaxBytes = batchBytesMax): number {
  const available = end - pos;
  if (available < batchHeaderBytes) throw new DecodeError('INVALID_BATCH', `batch needs at least ${batchHeaderBytes} bytes, ${available} remain`);
  const sizeBytes = int32At(buf, pos + BatchField.batchLength) + batchLogOverheadBytes;
  if (sizeBytes < batchHeaderBytes) throw new DecodeError('INVALID_BATCH', `batchLength ${sizeBytes - batchLogOverheadBytes} is below the header size`);
  if (sizeBytes > sizeMaxBytes) throw new DecodeError('BATCH_TOO_LARGE', `batch of ${sizeBytes} bytes exceeds the limit of ${sizeMaxBytes}`);
  if (sizeBytes > available) throw new DecodeError('INVALID_BATCH', `batch claims ${sizeBytes} bytes, ${available} remain`);
  const magic = buf[pos + BatchField.magic];
  if (magic !== batchMagic) throw new DecodeError('INVALID_BATCH', `magic ${magic} is not ${batchMagic}`);
  const storedCrc = uint32At(buf, pos + BatchField.crc);
  const actualCrc = crc32c(buf.subarray(pos + BatchField.attributes, pos + sizeBytes));
  if (storedCrc !== actualCrc) throw new DecodeError('CORRUPT_BATCH', `CRC-32C mismatch: stored ${hex32(storedCrc)}, computed ${hex32(actualCrc)}`);
  return sizeBytes;
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

/**
 * Full validation of one batch from an untrusted producer: frame, attributes, counts, and a walk
 * over every record's structure, so a batch with a valid CRC but broken records is never stored.
 * Fills `info`; throws DecodeError with the reason.
 */
export function validateBatch(buf: Uint8Array, pos: number, end: number, info: BatchInfo, sizeMaxBytes = batchBytesMax): void {
  const sizeBytes = checkBatchFrame(buf, pos, end, sizeMaxBytes);
  const attributes = int16At(buf, pos + BatchField.attributes);
  if ((attributes & compressionMask) !== 0) throw new DecodeError('UNSUPPORTED_COMPRESSION', `compression codec ${attributes & compressionMask} is not supported`);
  if ((attributes & unsupportedAttributeMask) !== 0) throw new DecodeError('INVALID_BATCH', 'transactional and control batches are not supported');
  const recordsCount = int32At(buf, pos + BatchField.recordsCount);
  if (recordsCount < 1 || recordsCount > batchRecordsMax) throw new DecodeError('INVALID_BATCH', `recordsCount ${recordsCount} is outside 1..${batchRecordsMax}`);
  const lastOffsetDelta = int32At(buf, pos + BatchField.lastOffsetDelta);
  if (lastOffsetDelta !== recordsCount - 1) throw new DecodeError('INVALID_BATCH', `lastOffsetDelta ${lastOffsetDelta} does not match recordsCount ${recordsCount}`);
  const baseTimestamp = readInt64AsNumber(buf, pos + BatchField.baseTimestamp);
  const maxTimestamp = readInt64AsNumber(buf, pos + BatchField.maxTimestamp);
  const walkedMax = walkRecords(buf, pos + batchHeaderBytes, pos + sizeBytes, recordsCount, baseTimestamp);
  if (walkedMax !== maxTimestamp) throw new DecodeError('INVALID_BATCH', `maxTimestamp ${maxTimestamp} does not match the records' largest timestamp ${walkedMax}`);
  info.sizeBytes = sizeBytes;
  info.recordsCount = recordsCount;
  info.baseTimestamp = baseTimestamp;
  info.maxTimestamp = maxTimestamp;
  info.producerId = readInt64AsNumber(buf, pos + BatchField.producerId);
  info.producerEpoch = int16At(buf, pos + BatchField.producerEpoch);
  info.baseSequence = int32At(buf, pos + BatchField.baseSequence);
}

const walkCursor: Cursor = { pos: 0 };

/** Walks record structure without allocating; returns the largest record timestamp. */
function walkRecords(buf: Uint8Array, pos: number, end: number, recordsCount: number, baseTimestamp: number): number {
  const cursor = walkCursor;
  cursor.pos = pos;
  let maxTimestamp = -Infinity;
  for (let index = 0; index < recordsCount; index++) {
    const length = readVarint(buf, cursor, end);
    const recordStart = cursor.pos;
    if (length < 1 || length > end - recordStart) throw new DecodeError('INVALID_BATCH', `record ${index} length ${length} does not fit in the batch`);
    const recordEnd = recordStart + length;
    cursor.pos++; // attributes
    const timestampDelta = readVarlong(buf, cursor, recordEnd);
    const offsetDelta = readVarint(buf, cursor, recordEnd);
    if (offsetDelta !== index) throw new DecodeError('INVALID_BATCH', `record ${index} has offsetDelta ${offsetDelta}`);
    skipBytesField(buf, cursor, recordEnd, 'key');
    skipBytesField(buf, cursor, recordEnd, 'value');
    const headerCount = readVarint(buf, cursor, recordEnd);
    if (headerCount < 0 || headerCount > recordHeadersMax) throw new DecodeError('INVALID_BATCH', `record ${index} header count ${headerCount} is outside 0..${recordHeadersMax}`);
    for (let h = 0; h < headerCount; h++) {
      const keyLength = readVarint(buf, cursor, recordEnd);
      if (keyLength < 0 || keyLength > recordEnd - cursor.pos) throw new DecodeError('INVALID_BATCH', `record ${index} header key length ${keyLength} does not fit`);
      cursor.pos += keyLength;
      skipBytesField(buf, cursor, recordEnd, 'header value');
    }
    if (cursor.pos !== recordEnd) throw new DecodeError('INVALID_BATCH', `record ${index} has ${recordEnd - cursor.pos} bytes left over`);
    const timestamp = baseTimestamp + timestampDelta;
    if (timestamp > maxTimestamp) maxTimestamp = timestamp;
  }
  if (cursor.pos !== end) throw new DecodeError('INVALID_BATCH', `${end - cursor.pos} bytes follow the last record`);
  return maxTimestamp;
}

function skipBytesField(buf: Uint8Array, cursor: Cursor, end: number, what: string): void {
  const length = readVarint(buf, cursor, end);
  if (length < -1 || length > end - cursor.pos) throw new DecodeError('INVALID_BATCH', `${what} length ${length} does not fit in its record`);
  if (length > 0) cursor.pos += length;
}

export type RecordValue = Buffer | string | null;

export interface RecordHeader {
  key: string;
  value: Buffer | null;
}

/** A record as a consumer sees it. Key, value and header values are views into the fetched bytes. */
export interface ConsumedRecord {
  offset: bigint;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: RecordHeader[];
}

export interface DecodedBatchHeader extends BatchInfo {
  baseOffset: number;
}

const emptyHeaders: RecordHeader[] = Object.freeze([]) as unknown as RecordHeader[];

/**
 * Decodes the records of one complete, CRC-checked batch at `pos`. Throws DecodeError on any
 * structural problem (a consumer must never act on half a batch).
 */
export function decodeBatch(buf: Buffer, pos: number, end: number, onRecord: (record: ConsumedRecord) => void): DecodedBatchHeader {
  return forEachRecord(buf, pos, end, (offset, timestamp, key, value, headers) => onRecord({ offset: BigInt(offset), timestamp, key, value, headers }));
}

/** Receives each record's fields; the caller builds whatever object it needs (one allocation). */
export type RecordVisitor = (offset: number, timestamp: number, key: Buffer | null, value: Buffer | null, headers: RecordHeader[]) => void;

/** decodeBatch without the intermediate record object, for the consumer's hot loop. */
export function forEachRecord(buf: Buffer, pos: number, end: number, visit: RecordVisitor): DecodedBatchHeader {
  const info = newBatchInfo();
  validateBatch(buf, pos, end, info, Number.MAX_SAFE_INTEGER);
  const baseOffset = readInt64AsNumber(buf, pos + BatchField.baseOffset);
  const cursor: Cursor = { pos: pos + batchHeaderBytes };
  const batchEnd = pos + info.sizeBytes;
  for (let index = 0; index < info.recordsCount; index++) {
    const length = readVarint(buf, cursor, batchEnd);
    const recordEnd = cursor.pos + length;
    cursor.pos++;
    const timestampDelta = readVarlong(buf, cursor, recordEnd);
    const offsetDelta = readVarint(buf, cursor, recordEnd);
    const key = readBytesField(buf, cursor, recordEnd);
    const value = readBytesField(buf, cursor, recordEnd);
    const headerCount = readVarint(buf, cursor, recordEnd);
    let headers = emptyHeaders;
    if (headerCount > 0) {
      headers = [];
      for (let h = 0; h < headerCount; h++) {
        const keyLength = readVarint(buf, cursor, recordEnd);
        const headerKey = buf.toString('utf8', cursor.pos, cursor.pos + keyLength);
        cursor.pos += keyLength;
        headers.push({ key: headerKey, value: readBytesField(buf, cursor, recordEnd) });
      }
    }
    visit(baseOffset + offsetDelta, info.baseTimestamp + timestampDelta, key, value, headers);
  }
  return { baseOffset, ...info };
}

function readBytesField(buf: Buffer, cursor: Cursor, end: number): Buffer | null {
  const length = readVarint(buf, cursor, end);
  if (length < 0) return null;
  const start = cursor.pos;
  cursor.pos += length;
  return buf.subarray(start, start + length);
}

export interface RecordInput {
  key?: RecordValue | undefined;
  value: RecordValue;
  headers?: Record<string, RecordValue> | RecordHeader[] | undefined;
  timestamp?: number | undefined;
}

function byteLengthOf(value: RecordValue | undefined): number {
  if (value === null || value === undefined) return -1;
  return typeof value === 'string' ? Buffer.byteLength(value) : value.length;
}

function writeBytesField(buf: Buffer, pos: number, value: RecordValue | undefined, length: number): number {
  pos = writeVarint(buf, pos, length);
  if (length <= 0) return pos;
  if (typeof value === 'string') buf.write(value, pos, length, 'utf8');
  else (value as Buffer).copy(buf, pos);
  return pos + length;
}

function headerEntries(headers: RecordInput['headers']): RecordHeader[] | Array<[string, RecordValue]> {
  if (headers === undefined) return [];
  return Array.isArray(headers) ? headers : Object.entries(headers);
}

/**
 * Builds one batch in a single preallocated buffer; records are encoded as they are appended,
 * so a full batch costs no further copies. Used by the producer.
 */
export class BatchBuilder {
  private buf: Buffer;
  private pos = batchHeaderBytes;
  private count = 0;
  private baseTimestamp = 0;
  private maxTimestamp = 0;

  constructor(capacityBytes: number) {
    assert(capacityBytes >= batchHeaderBytes, 'batch capacity below header size');
    this.buf = Buffer.allocUnsafe(capacityBytes);
  }

  get recordsCount(): number {
    return this.count;
  }

  get sizeBytes(): number {
    return this.pos;
  }

  /**
   * Appends a record if it fits; returns false when the batch is full. A first record larger
   * than the capacity grows the buffer (up to the protocol's batch limit, checked by the caller).
   */
  tryAppend(record: RecordInput, nowMs: number): boolean {
    const timestamp = record.timestamp ?? nowMs;
    if (!Number.isInteger(timestamp) || Math.abs(timestamp) > timestampMsMax) {
      throw new RillError('INVALID_ARGUMENT', `record timestamp ${timestamp} is not an integer within ±${timestampMsMax} ms`);
    }
    if (this.count === 0) {
      this.baseTimestamp = timestamp;
      this.maxTimestamp = timestamp;
    }
    const timestampDelta = timestamp - this.baseTimestamp;
    const keyLength = byteLengthOf(record.key);
    const valueLength = byteLengthOf(record.value);
    const headers = headerEntries(record.headers);
    let headersBytes = sizeOfVarint(headers.length);
    for (const header of headers) {
      const [headerKey, headerValue] = Array.isArray(header) ? header : [header.key, header.value];
      const headerKeyLength = Buffer.byteLength(headerKey);
      const headerValueLength = byteLengthOf(headerValue);
      headersBytes += sizeOfVarint(headerKeyLength) + headerKeyLength + sizeOfVarint(headerValueLength) + Math.max(headerValueLength, 0);
    }
    const bodyBytes = 1 + sizeOfVarlong(timestampDelta) + sizeOfVarint(this.count)
      + sizeOfVarint(keyLength) + Math.max(keyLength, 0)
      + sizeOfVarint(valueLength) + Math.max(valueLength, 0) + headersBytes;
    const recordBytes = sizeOfVarint(bodyBytes) + bodyBytes;
    if (this.pos + recordBytes > this.buf.length) {
      if (this.count > 0) return false;
      const grown = Buffer.allocUnsafe(batchHeaderBytes + recordBytes);
      this.buf = grown;
    }
    const buf = this.buf;
    let pos = writeVarint(buf, this.pos, bodyBytes);
    buf[pos++] = 0;
    pos = writeVarlong(buf, pos, timestampDelta);
    pos = writeVarint(buf, pos, this.count);
    pos = writeBytesField(buf, pos, record.key, keyLength);
    pos = writeBytesField(buf, pos, record.value, valueLength);
    pos = writeVarint(buf, pos, headers.length);
    for (const header of headers) {
      const [headerKey, headerValue] = Array.isArray(header) ? header : [header.key, header.value];
      const headerKeyLength = Buffer.byteLength(headerKey);
      pos = writeVarint(buf, pos, headerKeyLength);
      pos += buf.write(headerKey, pos, headerKeyLength, 'utf8');
      pos = writeBytesField(buf, pos, headerValue, byteLengthOf(headerValue));
    }
    assert(pos === this.pos + recordBytes, 'record size mismatch');
    this.pos = pos;
    this.count++;
    if (timestamp > this.maxTimestamp) this.maxTimestamp = timestamp;
    return true;
  }

  /**
   * Writes the header and CRC; returns the batch bytes (a view of the builder's buffer — the
   * builder must not be reused afterwards).
   */
  finish(producer: { producerId: number; producerEpoch: number; baseSequence: number } = { producerId: -1, producerEpoch: -1, baseSequence: -1 }): Buffer {
    assert(this.count > 0, 'finishing an empty batch');
    const buf = this.buf;
    const view = dataView(buf);
    writeInt64FromNumber(buf, BatchField.baseOffset, 0);
    view.setInt32(BatchField.batchLength, this.pos - batchLogOverheadBytes);
    view.setInt32(BatchField.partitionLeaderEpoch, -1);
    buf[BatchField.magic] = batchMagic;
    view.setInt16(BatchField.attributes, 0);
    view.setInt32(BatchField.lastOffsetDelta, this.count - 1);
    writeInt64FromNumber(buf, BatchField.baseTimestamp, this.baseTimestamp);
    writeInt64FromNumber(buf, BatchField.maxTimestamp, this.maxTimestamp);
    writeInt64FromNumber(buf, BatchField.producerId, producer.producerId);
    view.setInt16(BatchField.producerEpoch, producer.producerEpoch);
    view.setInt32(BatchField.baseSequence, producer.baseSequence);
    view.setInt32(BatchField.recordsCount, this.count);
    const bytes = buf.subarray(0, this.pos);
    view.setUint32(BatchField.crc, crc32c(bytes.subarray(BatchField.attributes)));
    return bytes;
  }
}

/** Encodes a batch from a list of records in one call (tests, vectors, tools). */
export function encodeBatch(records: RecordInput[], nowMs: number, producer?: { producerId: number; producerEpoch: number; baseSequence: number }): Buffer {
  const builder = new BatchBuilder(batchHeaderBytes + 64);
  for (const record of records) {
    if (!builder.tryAppend(record, nowMs)) {
      // Grow: re-encode into a builder large enough for everything.
      return encodeBatchSized(records, nowMs, producer);
    }
  }
  return builder.finish(producer);
}

function encodeBatchSized(records: RecordInput[], nowMs: number, producer?: { producerId: number; producerEpoch: number; baseSequence: number }): Buffer {
  let capacity = batchHeaderBytes;
  for (const record of records) {
    capacity += 40 + Math.max(byteLengthOf(record.key), 0) + Math.max(byteLengthOf(record.value), 0);
    for (const header of headerEntries(record.headers)) {
      const [headerKey, headerValue] = Array.isArray(header) ? header : [header.key, header.value];
      capacity += 20 + Buffer.byteLength(headerKey) + Math.max(byteLengthOf(headerValue), 0);
    }
  }
  const builder = new BatchBuilder(capacity);
  for (const record of records) assert(builder.tryAppend(record, nowMs), 'sized batch overflow');
  return builder.finish(producer);
}
