/**
 * Reads whole batches from one segment for a fetch.
 *
 * One read normally: from the sparse index entry at or below the offset, a window of
 * `indexIntervalBytes + maxBytes` (the batch holding the offset starts less than
 * indexIntervalBytes after its index entry), walked in memory to the batch holding the offset,
 * then cut after the last whole batch that fits `maxBytes` and is visible (lastOffset <
 * endOffset). The first batch is returned even if larger than maxBytes (a second read).
 * Memory per call is bounded by indexIntervalBytes + maxBytes + batchBytesMax.
 *
 * Disk bytes are untrusted: every header on the way is checked (checkHeader) and every batch
 * served has had its CRC-32C checked in this process — when it was validated before append,
 * scanned at recovery, or here on its first read (Segment.verifiedBytes), so a batch costs one
 * CRC per broker run, not one per fetch. A bad batch is never served: if it is the first one, the read
 * throws CORRUPT_LOG naming its offsets; if a later one, the read stops before it, so the next
 * read (starting there) throws. Readers of other ranges are unaffected (Kafka-like).
 */
import { RillError } from '../lib/errors.js';
import { indexIntervalBytes } from '../lib/limits.js';
import { DecodeError } from '../lib/errors.js';
import { batchHeaderBytes, checkBatchFrame } from '../wire/record-batch.js';
import { type BatchHeader, checkHeader, newBatchHeader } from './batch-walk.js';
import { type Segment, corruptLog } from './segment.js';

export interface ReadResult {
  /** Whole batches, each a view of `bytes`; the first holds the requested offset. */
  batches: Buffer[];
  /** The batches back to back (one buffer to send). */
  bytes: Buffer;
  /** Offset after the last batch returned (the requested offset when nothing was returned). */
  nextFetchOffset: number;
}

export const emptyBytes = Buffer.alloc(0);

export function emptyRead(offset: number): ReadResult {
  return { batches: [], bytes: emptyBytes, nextFetchOffset: offset };
}

/** A window of file bytes: buf[0] is at file position startBytes. */
interface Window {
  buf: Buffer;
  startBytes: number;
}

/** Reads from `segment` (offset in [segment.baseOffset, segment.nextOffset)). */
export function readSegment(segment: Segment, offset: number, maxBytes: number, endOffset: number): ReadResult {
  const header = newBatchHeader();
  let window = findBatch(segment, offset, maxBytes, header, true);
  if (header.lastOffset >= endOffset) return emptyRead(offset);
  let at = header.positionBytes - window.startBytes;
  if (at + header.sizeBytes > window.buf.length) {
    window = readWindow(segment, header.positionBytes, Math.max(header.sizeBytes, maxBytes));
    at = 0;
  }
  return collectBatches(segment, window, at, header, maxBytes, endOffset);
}

function readWindow(segment: Segment, positionBytes: number, wantBytes: number): Window {
  const lengthBytes = Math.max(0, Math.min(wantBytes, segment.sizeBytes - positionBytes));
  return { buf: segment.readFresh(positionBytes, lengthBytes), startBytes: positionBytes };
}

/**
 * Walks from the index entry to the batch holding `offset`; fills `header` and returns the
 * window holding its header. A bad first step from an index entry means the index is suspect:
 * it is rebuilt from the headers and the lookup retried once.
 */
function findBatch(segment: Segment, offset: number, maxBytes: number, header: BatchHeader, mayRebuildIndex: boolean): Window {
  const start = segment.lookup(offset);
  let window = readWindow(segment, start.positionBytes, indexIntervalBytes + Math.max(maxBytes, batchHeaderBytes));
  let positionBytes = start.positionBytes;
  let expectedOffset = start.baseOffset;
  for (;;) {
    let at = positionBytes - window.startBytes;
    if (at + batchHeaderBytes > window.buf.length) {
      window = readWindow(segment, positionBytes, indexIntervalBytes + Math.max(maxBytes, batchHeaderBytes));
      at = 0;
    }
    const problem = at + batchHeaderBytes > window.buf.length
      ? `torn batch header at position ${positionBytes}`
      : checkHeader(window.buf, at, positionBytes, segment.sizeBytes, expectedOffset, header);
    if (problem !== null) {
      if (mayRebuildIndex && positionBytes === start.positionBytes && start.positionBytes > 0) {
        if (segment.rebuildIndexIfConsistent()) return findBatch(segment, offset, maxBytes, header, false);
      }
      throw corruptLog(segment, `batch expected at offset ${expectedOffset} failed validation (${problem})`);
    }
    if (header.lastOffset >= offset) return window;
    positionBytes += header.sizeBytes;
    expectedOffset = header.lastOffset + 1;
  }
}

/** Takes whole, CRC-valid, visible batches from `at` while they fit `maxBytes` (the first always). */
function collectBatches(segment: Segment, window: Window, firstAt: number, first: BatchHeader, maxBytes: number, endOffset: number): ReadResult {
  const buf = window.buf;
  const batches: Buffer[] = [];
  const header = first;
  let at = firstAt;
  let nextFetchOffset = first.baseOffset;
  for (;;) {
    const positionBytes = window.startBytes + at;
    const verified = positionBytes + header.sizeBytes <= segment.verifiedBytes;
    const crcProblem = verified ? null : crcProblemOf(buf, at, header.sizeBytes);
    if (crcProblem !== null) {
      if (batches.length === 0) throw corruptLog(segment, `batch at offsets ${header.baseOffset}..${header.lastOffset} failed validation (${crcProblem})`);
      break;
    }
    if (!verified) segment.markVerified(positionBytes, header.sizeBytes);
    batches.push(buf.subarray(at, at + header.sizeBytes));
    at += header.sizeBytes;
    nextFetchOffset = header.lastOffset + 1;
    if (!nextFits(buf, at, window.startBytes, segment.sizeBytes, nextFetchOffset, header)) break;
    if (at - firstAt + header.sizeBytes > maxBytes || header.lastOffset >= endOffset) break;
  }
  return { batches, bytes: buf.subarray(firstAt, at), nextFetchOffset };
}

/** Whether a valid header of a batch wholly inside the window follows at `at` (fills `header`). */
function nextFits(buf: Buffer, at: number, windowStartBytes: number, segmentEndBytes: number, expectedOffset: number, header: BatchHeader): boolean {
  if (at + batchHeaderBytes > buf.length) return false;
  // A bad header here is not thrown: the read stops, and the next read starting here reports it.
  if (checkHeader(buf, at, windowStartBytes + at, segmentEndBytes, expectedOffset, header) !== null) return false;
  return at + header.sizeBytes <= buf.length;
}

function crcProblemOf(buf: Buffer, at: number, sizeBytes: number): string | null {
  try {
    checkBatchFrame(buf, at, at + sizeBytes);
    return null;
  } catch (err) {
    if (err instanceof DecodeError) return err.message;
    throw err;
  }
}

export function offsetOutOfRange(offset: number, logStartOffset: number, nextOffset: number): RillError {
  return new RillError('OFFSET_OUT_OF_RANGE', `offset ${offset} is outside the log [${logStartOffset}, ${nextOffset}]`);
}
