/**
 * Walks the batches of a segment file from a known batch boundary, through a bounded window
 * (never more memory than the window, whatever the file claims). Disk bytes are untrusted: every
 * header is checked (length within bounds and within the file, magic, base offset exactly the
 * expected next offset, lastOffsetDelta >= 0) and the walk stops with a reason at the first
 * problem, so it always terminates (each step advances by at least one header).
 *
 * - `walkHeaders` reads headers only: index rebuilds, timestamp scans, finding the log end.
 * - `scanBatches` also checks every CRC-32C: recovery.
 */
import { DecodeError } from '../lib/errors.js';
import { batchBytesMax } from '../lib/limits.js';
import {
  BatchField,
  batchHeaderBytes,
  batchMagic,
  checkBatchFrame,
  readBaseOffset,
  readBatchSize,
  readLastOffsetDelta,
  readMaxTimestamp,
  readPartitionLeaderEpoch,
} from '../wire/record-batch.js';
import { type FileOps, readAtSync } from './file-ops.js';

/** What a walk tells its visitor about one batch (one object, reused between calls). */
export interface BatchHeader {
  positionBytes: number;
  sizeBytes: number;
  baseOffset: number;
  lastOffset: number;
  maxTimestampMs: number;
  /** The partitionLeaderEpoch stamped on the batch (-1: none). */
  leaderEpoch: number;
}

export interface WalkResult {
  /** Position after the last good batch visited (where a truncation would cut). */
  endPositionBytes: number;
  /** Offset after the last good batch visited. */
  nextOffset: number;
  /** Why the walk stopped before endPositionBytes reached the end; null if it reached it (or the visitor stopped it). */
  problem: string | null;
}

/** Return false to stop the walk early. */
export type BatchVisitor = (header: BatchHeader) => boolean;

const headerWindowBytes = 64 * 1024;
const scanWindowBytes = 4 * 1024 * 1024;

/** A read window over [0, endPositionBytes) of one file. */
class FileWindow {
  private readonly buf: Buffer;
  private windowStartBytes = 0;
  private windowLengthBytes = 0;

  constructor(private readonly fileOps: FileOps, private readonly fd: number, private readonly endPositionBytes: number, capacityBytes: number) {
    this.buf = Buffer.allocUnsafe(capacityBytes);
  }

  get bytes(): Buffer {
    return this.buf;
  }

  /** Makes [positionBytes, positionBytes + lengthBytes) available; returns its index in `bytes`, or -1 if the file is shorter. */
  ensure(positionBytes: number, lengthBytes: number): number {
    const windowEnd = this.windowStartBytes + this.windowLengthBytes;
    if (positionBytes >= this.windowStartBytes && positionBytes + lengthBytes <= windowEnd) return positionBytes - this.windowStartBytes;
    if (positionBytes + lengthBytes > this.endPositionBytes || lengthBytes > this.buf.length) return -1;
    const wantBytes = Math.min(this.buf.length, this.endPositionBytes - positionBytes);
    this.windowStartBytes = positionBytes;
    this.windowLengthBytes = readAtSync(this.fileOps, this.fd, this.buf, wantBytes, positionBytes);
    return lengthBytes <= this.windowLengthBytes ? 0 : -1;
  }
}

/**
 * Checks the header of the batch at `at` in `buf` (file position `positionBytes`), whose first
 * `batchHeaderBytes` are in the buffer; fills `header` and returns null, or returns the problem.
 */
export function checkHeader(buf: Buffer, at: number, positionBytes: number, endPositionBytes: number, expectedBaseOffset: number, header: BatchHeader): string | null {
  const sizeBytes = readBatchSize(buf, at);
  if (sizeBytes < batchHeaderBytes || sizeBytes > batchBytesMax) return `batch at position ${positionBytes} claims ${sizeBytes} bytes (allowed ${batchHeaderBytes}..${batchBytesMax})`;
  if (positionBytes + sizeBytes > endPositionBytes) return `batch at position ${positionBytes} of ${sizeBytes} bytes is cut off at ${endPositionBytes}`;
  if (buf[at + BatchField.magic] !== batchMagic) return `batch at position ${positionBytes} has magic ${buf[at + BatchField.magic]}`;
  const baseOffset = readBaseOffset(buf, at);
  if (baseOffset !== expectedBaseOffset) return `batch at position ${positionBytes} has base offset ${baseOffset}, expected ${expectedBaseOffset}`;
  const lastOffsetDelta = readLastOffsetDelta(buf, at);
  if (lastOffsetDelta < 0) return `batch at position ${positionBytes} has lastOffsetDelta ${lastOffsetDelta}`;
  header.positionBytes = positionBytes;
  header.sizeBytes = sizeBytes;
  header.baseOffset = baseOffset;
  header.lastOffset = baseOffset + lastOffsetDelta;
  header.maxTimestampMs = readMaxTimestamp(buf, at);
  header.leaderEpoch = readPartitionLeaderEpoch(buf, at);
  return null;
}

export function newBatchHeader(): BatchHeader {
  return { positionBytes: 0, sizeBytes: 0, baseOffset: 0, lastOffset: 0, maxTimestampMs: 0, leaderEpoch: -1 };
}

function walk(
  fileOps: FileOps, fd: number, startPositionBytes: number, endPositionBytes: number, firstBaseOffset: number,
  visit: BatchVisitor, checkCrc: boolean,
): WalkResult {
  const window = new FileWindow(fileOps, fd, endPositionBytes, checkCrc ? scanWindowBytes : headerWindowBytes);
  const header = newBatchHeader();
  const result: WalkResult = { endPositionBytes: startPositionBytes, nextOffset: firstBaseOffset, problem: null };
  while (result.endPositionBytes < endPositionBytes) {
    const positionBytes = result.endPositionBytes;
    const headerAt = window.ensure(positionBytes, batchHeaderBytes);
    if (headerAt < 0) return stopped(result, `torn batch header at position ${positionBytes}: ${endPositionBytes - positionBytes} bytes remain`);
    const problem = checkHeader(window.bytes, headerAt, positionBytes, endPositionBytes, result.nextOffset, header);
    if (problem !== null) return stopped(result, problem);
    if (checkCrc) {
      const crcProblem = crcProblemOf(window, header);
      if (crcProblem !== null) return stopped(result, crcProblem);
    }
    result.endPositionBytes = positionBytes + header.sizeBytes;
    result.nextOffset = header.lastOffset + 1;
    if (!visit(header)) break;
  }
  return result;
}

function crcProblemOf(window: FileWindow, header: BatchHeader): string | null {
  const at = window.ensure(header.positionBytes, header.sizeBytes);
  if (at < 0) return `batch at position ${header.positionBytes} could not be read whole`;
  try {
    checkBatchFrame(window.bytes, at, at + header.sizeBytes);
    return null;
  } catch (err) {
    if (err instanceof DecodeError) return `batch at offset ${header.baseOffset} (position ${header.positionBytes}): ${err.message}`;
    throw err;
  }
}

function stopped(result: WalkResult, problem: string): WalkResult {
  result.problem = problem;
  return result;
}

/** Header-only walk from a batch boundary; see the file comment. */
export function walkHeaders(fileOps: FileOps, fd: number, startPositionBytes: number, endPositionBytes: number, firstBaseOffset: number, visit: BatchVisitor): WalkResult {
  return walk(fileOps, fd, startPositionBytes, endPositionBytes, firstBaseOffset, visit, false);
}

/** Full walk with CRC-32C checks; see the file comment. */
export function scanBatches(fileOps: FileOps, fd: number, startPositionBytes: number, endPositionBytes: number, firstBaseOffset: number, visit: BatchVisitor): WalkResult {
  return walk(fileOps, fd, startPositionBytes, endPositionBytes, firstBaseOffset, visit, true);
}
