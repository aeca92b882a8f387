/**
 * One segment: `<base>.log` holding whole batches with offsets base.., and its sparse index.
 *
 * Life of a segment:
 *
 *   created (roll) --> active --roll--> sealed --retention--> deleted
 *        opened at startup --^    ^          |  ^-- opened at startup
 *                                 +----------+
 *                                  truncation (PartitionLog.truncateTo): the segment holding the
 *                                  cut becomes active again; every segment after it is deleted
 *
 * Only the active segment is written. Its `.index` file is deleted when it becomes active and
 * written when it is sealed or the log is closed, so an index file on disk always describes a
 * segment that is no longer being appended to (a crash leaves the active one without an index,
 * and recovery rebuilds it).
 */
import { RillError } from '../lib/errors.js';
import { assert } from '../lib/assert.js';
import { indexIntervalBytes } from '../lib/limits.js';
import { batchHeaderBytes } from '../wire/record-batch.js';
import { type FileOps, readAtSync, writeAllSync } from './file-ops.js';
import { OffsetIndex, parseIndexFile } from './offset-index.js';
import { indexPath, logPath } from './segment-files.js';
import { removeFileIfPresent, replaceFile } from './durable-file.js';
import { storageError, writeError } from './storage-errors.js';
import { type WalkResult, walkHeaders } from './batch-walk.js';

/** Relative offsets are u32 in the index. */
export const segmentRelativeOffsetMax = 0xffff_ffff;

export class Segment {
  /** Bytes of whole batches; the file may briefly be longer after a failed write. */
  sizeBytes: number;
  /** Bytes known to be on stable storage. */
  flushedBytes = 0;
  /**
   * Bytes from the segment start whose batches passed their CRC check in this process (validated
   * before append, scanned at recovery, or checked when first read). Reads check the CRC only
   * beyond this, so each batch is checked once per broker run, not on every fetch.
   */
  verifiedBytes = 0;
  /** Offset after the last batch (== baseOffset when empty). */
  nextOffset: number;
  /** Largest batch maxTimestamp; NaN until known (sealed segments opened without a scan compute it lazily). */
  maxTimestampMs = Number.NaN;
  /** segmentMs counts from here: creation time, or the first batch's timestamp after a reopen. */
  rollStartMs: number;
  index: OffsetIndex;
  private bytesSinceIndexEntry: number;
  /** True when the in-memory index differs from the `.index` file. */
  private indexDirty = true;
  private fdClosed = false;

  private constructor(
    private readonly fileOps: FileOps,
    readonly dir: string,
    readonly baseOffset: number,
    readonly fd: number,
    sizeBytes: number,
    nowMs: number,
  ) {
    this.sizeBytes = sizeBytes;
    this.nextOffset = baseOffset;
    this.rollStartMs = nowMs;
    this.index = new OffsetIndex();
    this.bytesSinceIndexEntry = 0;
  }

  /** A new, empty segment file (fails if the file exists). */
  static create(fileOps: FileOps, dir: string, baseOffset: number, nowMs: number): Segment {
    let fd: number;
    try {
      fd = fileOps.open(logPath(dir, baseOffset), 'wx+');
    } catch (err) {
      throw writeError(err, `creating segment ${logPath(dir, baseOffset)}`);
    }
    const segment = new Segment(fileOps, dir, baseOffset, fd, 0, nowMs);
    segment.maxTimestampMs = -1;
    return segment;
  }

  /** An existing segment file; its size is the file size until a walk says otherwise. */
  static open(fileOps: FileOps, dir: string, baseOffset: number, nowMs: number): Segment {
    try {
      const fd = fileOps.open(logPath(dir, baseOffset), 'r+');
      return new Segment(fileOps, dir, baseOffset, fd, fileOps.fileSizeBytes(fd), nowMs);
    } catch (err) {
      throw storageError(err, `opening segment ${logPath(dir, baseOffset)}`);
    }
  }

  get logPath(): string {
    return logPath(this.dir, this.baseOffset);
  }

  get indexPath(): string {
    return indexPath(this.dir, this.baseOffset);
  }

  get isEmpty(): boolean {
    return this.sizeBytes === 0;
  }

  /** Whether `recordsCount` more offsets still fit the index's u32 relative offsets. */
  fitsOffsets(recordsCount: number): boolean {
    return this.nextOffset + recordsCount - 1 - this.baseOffset <= segmentRelativeOffsetMax;
  }

  /**
   * Writes whole batches at the end with one (positioned) write. On failure, cuts the file back
   * so no partial batch is left, and throws DISK_FULL or STORAGE_ERROR; in-memory state is
   * untouched until the write has succeeded.
   */
  write(buffers: readonly Buffer[], totalBytes: number): void {
    try {
      writeAllSync(this.fileOps, this.fd, buffers, this.sizeBytes, totalBytes);
    } catch (err) {
      this.cutBackAfterFailedWrite();
      throw writeError(err, `writing ${totalBytes} bytes to ${this.logPath}`);
    }
  }

  private cutBackAfterFailedWrite(): void {
    try {
      this.fileOps.ftruncate(this.fd, this.sizeBytes);
    } catch {
      // The tail stays garbage on disk, but sizeBytes excludes it: the next write overwrites it
      // (writes are positioned), close() truncates again, and recovery would cut it by CRC.
    }
  }

  /** Books a batch just written at `positionBytes`: size, offsets, timestamp, sparse index. */
  noteBatch(positionBytes: number, sizeBytes: number, baseOffset: number, lastOffset: number, maxTimestampMs: number): void {
    assert(positionBytes === this.sizeBytes && baseOffset === this.nextOffset, 'batches must be booked in order');
    if (this.bytesSinceIndexEntry >= indexIntervalBytes) {
      this.index.add(baseOffset - this.baseOffset, positionBytes);
      this.bytesSinceIndexEntry = 0;
      this.indexDirty = true;
    }
    this.bytesSinceIndexEntry += sizeBytes;
    this.sizeBytes = positionBytes + sizeBytes;
    this.nextOffset = lastOffset + 1;
    if (!Number.isNaN(this.maxTimestampMs) && maxTimestampMs > this.maxTimestampMs) this.maxTimestampMs = maxTimestampMs;
  }

  /** Records that the batch at positionBytes passed its CRC check; advances only contiguously. */
  markVerified(positionBytes: number, sizeBytes: number): void {
    if (positionBytes === this.verifiedBytes) this.verifiedBytes = positionBytes + sizeBytes;
  }

  /** Starts a fresh index (before a walk that re-books every batch). */
  resetIndex(): void {
    this.index = new OffsetIndex();
    this.bytesSinceIndexEntry = 0;
    this.sizeBytes = 0;
    this.verifiedBytes = 0;
    this.nextOffset = this.baseOffset;
    this.maxTimestampMs = -1;
    this.indexDirty = true;
  }

  /** Adopts a trusted index loaded from disk (the segment's end is set by the caller). */
  adoptIndex(index: OffsetIndex): void {
    this.index = index;
    this.indexDirty = false;
  }

  /** Recomputes the bytes since the last index entry, after the end is known. */
  settleIndexSpacing(): void {
    const last = this.index.count - 1;
    this.bytesSinceIndexEntry = this.sizeBytes - (last >= 0 ? this.index.positionAt(last) : 0);
  }

  /** Reads and validates `<base>.index`; returns the reason when it cannot be used. */
  loadIndexFile(): string | null {
    let bytes: Buffer;
    try {
      bytes = this.fileOps.readFile(this.indexPath);
    } catch (err) {
      return `index unreadable: ${(err as Error).message}`;
    }
    const parsed = parseIndexFile(bytes, this.sizeBytes);
    if (typeof parsed === 'string') return `index invalid: ${parsed}`;
    this.adoptIndex(parsed);
    return null;
  }

  /** Where to start walking for `offset`: the floor index entry (or the segment start). */
  lookup(offset: number): { positionBytes: number; baseOffset: number } {
    const entry = this.index.floorEntry(offset - this.baseOffset);
    if (entry < 0) return { positionBytes: 0, baseOffset: this.baseOffset };
    return { positionBytes: this.index.positionAt(entry), baseOffset: this.baseOffset + this.index.relativeOffsetAt(entry) };
  }

  /** Rebuilds the index (and end, max timestamp) from a header walk over the first `endBytes`. */
  rebuildFromHeaders(endBytes = this.sizeBytes): WalkResult {
    this.resetIndex();
    const result = walkHeaders(this.fileOps, this.fd, 0, endBytes, this.baseOffset, (header) => {
      this.noteBatch(header.positionBytes, header.sizeBytes, header.baseOffset, header.lastOffset, header.maxTimestampMs);
      return true;
    });
    return result;
  }

  /**
   * Read-time repair of a suspect index: rebuilds it from a header walk over the whole segment,
   * and adopts it only if the walk agrees with the segment's end (otherwise the data, not the
   * index, is bad, and the old index still lets readers skip the damage). Size and offsets are
   * never changed here.
   */
  rebuildIndexIfConsistent(): boolean {
    const index = new OffsetIndex();
    let bytesSinceEntry = 0;
    const result = walkHeaders(this.fileOps, this.fd, 0, this.sizeBytes, this.baseOffset, (header) => {
      if (bytesSinceEntry >= indexIntervalBytes) {
        index.add(header.baseOffset - this.baseOffset, header.positionBytes);
        bytesSinceEntry = 0;
      }
      bytesSinceEntry += header.sizeBytes;
      return true;
    });
    if (result.problem !== null || result.nextOffset !== this.nextOffset) return false;
    this.index = index;
    this.bytesSinceIndexEntry = bytesSinceEntry;
    this.indexDirty = true;
    return true;
  }

  /** Largest batch timestamp; walks the headers once for segments opened without a scan. */
  ensureMaxTimestamp(): number {
    if (!Number.isNaN(this.maxTimestampMs)) return this.maxTimestampMs;
    let maxTimestampMs = -1;
    walkHeaders(this.fileOps, this.fd, 0, this.sizeBytes, this.baseOffset, (header) => {
      if (header.maxTimestampMs > maxTimestampMs) maxTimestampMs = header.maxTimestampMs;
      return true;
    });
    this.maxTimestampMs = maxTimestampMs;
    return maxTimestampMs;
  }

  /** The timestamp of the first batch (used to restart the segmentMs clock after a reopen). */
  firstBatchTimestampMs(): number | undefined {
    if (this.sizeBytes < batchHeaderBytes) return undefined;
    let found: number | undefined;
    walkHeaders(this.fileOps, this.fd, 0, this.sizeBytes, this.baseOffset, (header) => {
      found = header.maxTimestampMs;
      return false;
    });
    return found;
  }

  /** First offset of a batch whose maxTimestamp >= `timestampMs`, or undefined. */
  findTimestamp(timestampMs: number): number | undefined {
    let found: number | undefined;
    walkHeaders(this.fileOps, this.fd, 0, this.sizeBytes, this.baseOffset, (visited) => {
      if (visited.maxTimestampMs >= timestampMs) found = visited.baseOffset;
      return found === undefined;
    });
    return found;
  }

  /**
   * Cuts the segment to its first `positionBytes` (a batch boundary) ending at `nextOffset`.
   * The cut is not fsynced here (the caller syncs it with whatever else it changes). If booked
   * batches are cut off, the max timestamp is recomputed lazily (it may have come from them).
   */
  truncateTo(positionBytes: number, nextOffset: number): void {
    assert(positionBytes >= 0 && nextOffset >= this.baseOffset && nextOffset <= this.nextOffset, 'truncateTo: cut outside the segment');
    try {
      this.fileOps.ftruncate(this.fd, positionBytes);
    } catch (err) {
      throw storageError(err, `truncating ${this.logPath} to ${positionBytes} bytes`);
    }
    if (positionBytes < this.sizeBytes) this.maxTimestampMs = positionBytes === 0 ? -1 : Number.NaN;
    this.sizeBytes = positionBytes;
    this.nextOffset = nextOffset;
    this.flushedBytes = Math.min(this.flushedBytes, positionBytes);
    this.verifiedBytes = Math.min(this.verifiedBytes, positionBytes);
    this.index.truncateToPosition(positionBytes);
    this.settleIndexSpacing();
    this.indexDirty = true;
  }

  /** Reads `lengthBytes` at `positionBytes` into a fresh buffer (short only if the file is). */
  readFresh(positionBytes: number, lengthBytes: number): Buffer {
    const buf = Buffer.allocUnsafe(lengthBytes);
    let readBytes: number;
    try {
      readBytes = readAtSync(this.fileOps, this.fd, buf, lengthBytes, positionBytes);
    } catch (err) {
      throw storageError(err, `reading ${lengthBytes} bytes at ${positionBytes} of ${this.logPath}`);
    }
    return readBytes === lengthBytes ? buf : buf.subarray(0, readBytes);
  }

  /** Writes the index file (write-then-rename) if it changed. */
  writeIndexFile(): void {
    if (!this.indexDirty) return;
    try {
      // A cache: not fsynced (a stale or missing index is rebuilt from the .log).
      replaceFile(this.fileOps, this.indexPath, this.index.toFileBytes(), { durable: false });
    } catch (err) {
      throw writeError(err, `writing ${this.indexPath}`);
    }
    this.indexDirty = false;
  }

  /** Removes the index file: the segment is about to be appended to. */
  deleteIndexFile(): void {
    unlinkIfPresent(this.fileOps, this.indexPath);
    this.indexDirty = true;
  }

  /** Cuts any garbage a failed write left past the last whole batch. */
  trimFileToSize(): void {
    this.fileOps.ftruncate(this.fd, this.sizeBytes);
  }

  /** Closes the descriptor; idempotent. */
  closeFd(): void {
    if (this.fdClosed) return;
    this.fdClosed = true;
    this.fileOps.close(this.fd);
  }

  deleteFiles(): void {
    try {
      unlinkIfPresent(this.fileOps, this.logPath);
      unlinkIfPresent(this.fileOps, this.indexPath);
    } catch (err) {
      throw storageError(err, `deleting segment ${this.logPath}`);
    }
  }
}

/** Unlinks `path`; no error if it does not exist. */
export const unlinkIfPresent: (fileOps: FileOps, path: string) => void = removeFileIfPresent;

/** CORRUPT_LOG for data on disk that failed validation when read. */
export function corruptLog(segment: Segment, detail: string): RillError {
  return new RillError('CORRUPT_LOG', `${detail} in ${segment.logPath}`);
}
