/**
 * The log of one partition: a directory of segments, the API the broker uses.
 *
 * Durability: append() writes to the OS synchronously (acks=1 is "written" when it returns);
 * flush() fsyncs with group commit (acks=all). flushedOffset only advances when an fsync round
 * succeeded. After an fsync failure the log stops accepting appends and flushes (STORAGE_ERROR)
 * until it is reopened with recovery: after a failed fsync the kernel may have dropped the dirty
 * pages and a later fsync could succeed without the data, so we must not trust it again.
 *
 * Offsets are JS numbers (exact to 2^53). Appends and reads are synchronous; flush() and the
 * operations that must flush first (deleteRecordsBefore, truncateTo, resetTo) are async, and
 * re-check their arguments after their await. The log is used from one thread, so no locking.
 *
 * The log changes at both ends:
 *
 *   start  moves up:   applyRetention (whole segments), deleteRecordsBefore (any offset, persisted)
 *   end    moves up:   append, appendMany
 *   end    moves down: truncateTo (a replica cutting a divergent tail, at a batch boundary)
 *   both   reset:      resetTo (a replica starting over at its leader's log start)
 *
 * Moving the end down is the one change that can be undone by a crash if done carelessly (a cut
 * that is not durable brings records back; a recovery point above the cut makes recovery trust
 * data written after it), so truncateTo and resetTo are durable when they return: see them.
 */
import path from 'node:path';
import { RillError } from '../lib/errors.js';
import { assert } from '../lib/assert.js';
import { type Clock, systemClock } from '../lib/clock.js';
import { batchBytesMax } from '../lib/limits.js';
import type { TopicConfig } from '../wire/control.js';
import { readBatchSize, readLastOffsetDelta, stampBaseOffset } from '../wire/record-batch.js';
import { type FileOps, nodeFileOps } from './file-ops.js';
import { writeCheckpoint } from './checkpoint.js';
import { walkHeaders } from './batch-walk.js';
import { readLogStart, writeLogStart } from './log-start.js';
import { LeaderEpochFile, rebuildLeaderEpochs } from './leader-epoch-file.js';
import { GroupCommit, type FlushRound, type FlushRoundObserver } from './group-commit.js';
import { type RecoveryReport, loadLog } from './recovery.js';
import { Segment } from './segment.js';
import { type ReadResult, emptyRead, offsetOutOfRange, readSegment } from './segment-reader.js';
import { storageError, writeError } from './storage-errors.js';

export interface PartitionLogOptions {
  /** Scan and repair the tail. Pass false only after a clean shutdown (close() returned normally). */
  recover: boolean;
  /** The file layer; default node:fs. */
  fileOps?: FileOps;
  /** Drives segmentMs rolls, the flush policy clock and checkpoint pacing; default wall clock. */
  clock?: Clock;
  /** Notable events (recovery, index rebuilds, fsync failures); default: ignored. */
  log?: (message: string) => void;
  /**
   * Told of every group-commit round: requests answered and seconds its fsyncs took (the broker
   * turns these into histograms; storage stays free of any metrics library). Default: none.
   */
  observeFlushRound?: FlushRoundObserver;
}

/** One batch for appendMany(). */
export interface AppendBatch {
  batch: Buffer;
  recordsCount: number;
  maxTimestampMs: number;
}

export interface RetentionResult {
  deletedSegments: number;
  deletedBytes: number;
}

/** The recovery-point checkpoint is written after a flush at most this often. */
export const checkpointIntervalMs = 1000;

export class PartitionLog {
  private readonly segments: Segment[];
  private readonly dirtySegments = new Set<Segment>();
  /** A segment file was created since the last directory fsync. */
  private directoryDirty = false;
  /** The partition directory itself was just created: its parent must be synced too. */
  private parentDirectoryDirty = false;
  private flushedOffsetValue: number;
  /** When the oldest unflushed append happened (flushMs counts from here); NaN when all is flushed. */
  private oldestUnflushedAppendMs = Number.NaN;
  private lastCheckpointMs = Number.NEGATIVE_INFINITY;
  private lastCheckpointOffset = -1;
  private failure: RillError | null = null;
  private closed = false;
  /** Segments deleted by retention while an fsync round may still use their descriptors. */
  private retiredSegments: Segment[] = [];
  private readonly groupCommit: GroupCommit;
  /** The start moved by deleteRecordsBefore (persisted in log-start-offset); retention may pass it. */
  private logStartValue: number;

  private constructor(
    readonly dir: string,
    private config: TopicConfig,
    private readonly fileOps: FileOps,
    private readonly clock: Clock,
    private readonly log: (message: string) => void,
    segments: Segment[],
    readonly recovery: RecoveryReport,
    logStartOffset: number,
    observeFlushRound: FlushRoundObserver | undefined,
    /**
     * Which leader epoch wrote which offsets (leader-epoch-file.ts), kept trimmed to the log start
     * here; replication assigns epochs and truncates from the end.
     */
    readonly leaderEpochs: LeaderEpochFile,
  ) {
    this.segments = segments;
    this.logStartValue = logStartOffset;
    this.flushedOffsetValue = this.active.nextOffset;
    this.groupCommit = new GroupCommit(() => this.beginFlushRound(), observeFlushRound);
  }

  /** Opens (creating if needed) the partition directory; see recovery.ts for what recover does. */
  static open(dir: string, config: TopicConfig, options: PartitionLogOptions): PartitionLog {
    const fileOps = options.fileOps ?? nodeFileOps;
    const clock = options.clock ?? systemClock;
    const log = options.log ?? (() => {});
    let logStart: { logStartOffset: number; problem: string | null };
    try {
      logStart = readLogStart(fileOps, dir);
    } catch (err) {
      throw storageError(err, `reading the log start of ${dir}`);
    }
    if (logStart.problem !== null) log(`${dir}: ${logStart.problem}; the log starts at its first segment`);
    const loaded = loadLog(fileOps, dir, options.recover, clock.nowMs(), log, logStart.logStartOffset);
    settleLogStart(fileOps, dir, loaded.segments, logStart.logStartOffset, clock.nowMs(), log);
    const leaderEpochs = openLeaderEpochs(fileOps, dir, loaded.segments, logStart.logStartOffset, log);
    const partitionLog = new PartitionLog(dir, config, fileOps, clock, log, loaded.segments, loaded.report, logStart.logStartOffset, options.observeFlushRound, leaderEpochs);
    if (loaded.createdFresh) {
      partitionLog.directoryDirty = true;
      partitionLog.parentDirectoryDirty = true;
    }
    return partitionLog;
  }

  /** Deletes a partition directory and everything in it (the log must be closed). */
  static deleteDir(dir: string, fileOps: FileOps = nodeFileOps): void {
    try {
      fileOps.removeTree(dir);
    } catch (err) {
      throw storageError(err, `deleting ${dir}`);
    }
  }

  /** The first offset a reader may ask for: moved by deleteRecordsBefore and by retention. */
  get logStartOffset(): number {
    return Math.max(this.logStartValue, this.segments[0]!.baseOffset);
  }

  /** The log end offset: the offset the next appended record gets. */
  get nextOffset(): number {
    return this.active.nextOffset;
  }

  /** Every offset below this is on stable storage. */
  get flushedOffset(): number {
    return this.flushedOffsetValue;
  }

  /** The log refuses appends and flushes until it is reopened with recovery (an fsync or a truncation failed). */
  get failed(): boolean {
    return this.failure !== null;
  }

  get sizeBytes(): number {
    let total = 0;
    for (const segment of this.segments) total += segment.sizeBytes;
    return total;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  /** Base offsets of the segments, oldest first (for tools and tests). */
  get segmentBaseOffsets(): number[] {
    return this.segments.map((segment) => segment.baseOffset);
  }

  /**
   * Read-only, for state rebuilt from the tail of the log (idempotent-producer state): the base
   * offset of the segment holding the byte `tailBytes` before the end (logStartOffset if the
   * log is smaller). Reading from it covers at least the last `tailBytes` bytes.
   */
  tailStartOffset(tailBytes: number): number {
    let remainingBytes = tailBytes;
    let i = this.segments.length - 1;
    while (i > 0 && remainingBytes > this.segments[i]!.sizeBytes) remainingBytes -= this.segments[i--]!.sizeBytes;
    return this.segments[i]!.baseOffset;
  }

  /** Takes effect for the next roll, retention and flush-policy decisions. */
  updateConfig(config: TopicConfig): void {
    this.config = config;
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  /**
   * Appends one validated batch: stamps its base offset into `batch` (bytes 0..7) and writes
   * the bytes as they are with one write. Returns the base offset. Throws DISK_FULL or
   * STORAGE_ERROR with nothing appended.
   */
  append(batch: Buffer, recordsCount: number, maxTimestampMs: number): number {
    this.checkWritable();
    checkBatchArgument(batch, recordsCount);
    const segment = this.segmentFor(batch.length, recordsCount);
    const baseOffset = segment.nextOffset;
    stampBaseOffset(batch, 0, baseOffset);
    const positionBytes = segment.sizeBytes;
    segment.write([batch], batch.length);
    segment.noteBatch(positionBytes, batch.length, baseOffset, baseOffset + recordsCount - 1, maxTimestampMs);
    segment.markVerified(positionBytes, batch.length); // the broker validated it before appending
    this.noteAppended(segment);
    return baseOffset;
  }

  /**
   * Appends several batches (one request) with one writev, all or nothing. They go to one
   * segment, which may therefore pass segmentBytes by less than the request size. Returns the
   * first base offset; batch i starts where batch i-1 ended.
   */
  appendMany(batches: readonly AppendBatch[]): number {
    this.checkWritable();
    assert(batches.length > 0, 'appendMany needs at least one batch');
    let totalBytes = 0;
    let totalRecords = 0;
    for (const entry of batches) {
      checkBatchArgument(entry.batch, entry.recordsCount);
      totalBytes += entry.batch.length;
      totalRecords += entry.recordsCount;
    }
    const segment = this.segmentFor(totalBytes, totalRecords);
    const firstBaseOffset = segment.nextOffset;
    let baseOffset = firstBaseOffset;
    for (const entry of batches) {
      stampBaseOffset(entry.batch, 0, baseOffset);
      baseOffset += entry.recordsCount;
    }
    let positionBytes = segment.sizeBytes;
    segment.write(batches.map((entry) => entry.batch), totalBytes);
    for (const entry of batches) {
      const batchBase = segment.nextOffset;
      segment.noteBatch(positionBytes, entry.batch.length, batchBase, batchBase + entry.recordsCount - 1, entry.maxTimestampMs);
      segment.markVerified(positionBytes, entry.batch.length);
      positionBytes += entry.batch.length;
    }
    this.noteAppended(segment);
    return firstBaseOffset;
  }

  private checkWritable(): void {
    assert(!this.closed, 'append to a closed log');
    if (this.failure !== null) throw new RillError('STORAGE_ERROR', `log ${this.dir} is failed until reopened: ${this.failure.message}`);
  }

  private noteAppended(segment: Segment): void {
    this.dirtySegments.add(segment);
    if (Number.isNaN(this.oldestUnflushedAppendMs)) this.oldestUnflushedAppendMs = this.clock.nowMs();
  }

  /** The segment the next append of `sizeBytes` / `recordsCount` goes to, rolling if needed. */
  private segmentFor(sizeBytes: number, recordsCount: number): Segment {
    const active = this.active;
    if (!this.shouldRoll(active, sizeBytes, recordsCount)) return active;
    return this.roll();
  }

  /** An empty segment never rolls: every segment but the active one holds at least one batch. */
  private shouldRoll(active: Segment, sizeBytes: number, recordsCount: number): boolean {
    if (active.isEmpty) return false;
    if (active.sizeBytes + sizeBytes > this.config.segmentBytes) return true;
    if (!active.fitsOffsets(recordsCount)) return true;
    return this.config.segmentMs > 0 && this.clock.nowMs() - active.rollStartMs >= this.config.segmentMs;
  }

  /** Seals the active segment (writes its index) and starts a new one at nextOffset. */
  private roll(): Segment {
    const sealed = this.active;
    const segment = Segment.create(this.fileOps, this.dir, sealed.nextOffset, this.clock.nowMs());
    this.segments.push(segment);
    this.directoryDirty = true;
    this.writeIndexFileOf(sealed);
    return segment;
  }

  /** The index is a cache: if its file cannot be written, the next open rebuilds it. */
  private writeIndexFileOf(segment: Segment): void {
    try {
      segment.writeIndexFile();
    } catch (err) {
      this.log(`${segment.indexPath}: ${(err as Error).message}; it will be rebuilt at the next open`);
    }
  }

  /**
   * Resolves once everything appended before the call is fsynced (every segment holding
   * unflushed bytes, and the directory after a segment was created); returns flushedOffset.
   * Concurrent callers share fsyncs (group-commit.ts). Rejects with STORAGE_ERROR if an fsync
   * fails; the data is then not reported as flushed, and the log is failed until reopened.
   */
  async flush(): Promise<number> {
    if (this.failure !== null) throw this.failure;
    const targetOffset = this.nextOffset;
    if (this.flushedOffsetValue >= targetOffset || this.closed) return this.flushedOffsetValue;
    await this.groupCommit.request(targetOffset);
    return this.flushedOffsetValue;
  }

  private beginFlushRound(): FlushRound {
    const targetOffset = this.nextOffset;
    const segments = [...this.dirtySegments];
    const sizesBytes = segments.map((segment) => segment.sizeBytes);
    const directoryDirty = this.directoryDirty;
    const parentDirectoryDirty = this.parentDirectoryDirty;
    this.dirtySegments.clear();
    this.directoryDirty = false;
    this.parentDirectoryDirty = false;
    const oldestUnflushedAppendMs = this.oldestUnflushedAppendMs;
    this.oldestUnflushedAppendMs = Number.NaN;
    const run = async (): Promise<void> => {
      // A round queued behind a failed one must not report anything flushed: the failed round
      // took the dirty segments with it, and after a failed fsync nothing is known to be durable.
      if (this.failure !== null) throw this.failure;
      try {
        const syncs = segments.map((segment) => this.fileOps.fdatasync(segment.fd));
        if (directoryDirty) syncs.push(this.fileOps.fsyncDir(this.dir));
        if (parentDirectoryDirty) syncs.push(this.fileOps.fsyncDir(path.dirname(this.dir)));
        await Promise.all(syncs);
      } catch (err) {
        if (Number.isNaN(this.oldestUnflushedAppendMs)) this.oldestUnflushedAppendMs = oldestUnflushedAppendMs;
        this.directoryDirty ||= directoryDirty;
        this.parentDirectoryDirty ||= parentDirectoryDirty;
        throw this.failFsync(err);
      }
      segments.forEach((segment, i) => (segment.flushedBytes = Math.max(segment.flushedBytes, sizesBytes[i]!)));
      this.flushedOffsetValue = Math.max(this.flushedOffsetValue, targetOffset);
      this.maybeWriteCheckpoint();
    };
    return { targetOffset, run };
  }

  private failFsync(err: unknown): RillError {
    return this.failStorage(err, `fsync in ${this.dir}`);
  }

  private maybeWriteCheckpoint(): void {
    const nowMs = this.clock.nowMs();
    if (this.closed || nowMs - this.lastCheckpointMs < checkpointIntervalMs) return;
    this.writeCheckpointNow(nowMs);
  }

  private writeCheckpointNow(nowMs: number): void {
    if (this.lastCheckpointOffset === this.flushedOffsetValue) return;
    try {
      writeCheckpoint(this.fileOps, this.dir, this.flushedOffsetValue);
      this.lastCheckpointMs = nowMs;
      this.lastCheckpointOffset = this.flushedOffsetValue;
    } catch (err) {
      // Only costs a longer scan at the next recovery.
      this.log(`${this.dir}: could not write the recovery-point checkpoint: ${(err as Error).message}`);
    }
  }

  /**
   * Whether the topic's flush policy wants a flush now: unflushed records >= flushMessages, or
   * the oldest unflushed append is >= flushMs old. The broker polls this (e.g. after appends
   * and on a timer) and calls flush().
   */
  needsFlush(nowMs: number): boolean {
    const unflushedRecords = this.nextOffset - this.flushedOffsetValue;
    if (unflushedRecords <= 0 || this.failure !== null || this.closed) return false;
    const { flushMessages, flushMs } = this.config;
    if (flushMessages >= 0 && unflushedRecords >= flushMessages) return true;
    return flushMs >= 0 && !Number.isNaN(this.oldestUnflushedAppendMs) && nowMs - this.oldestUnflushedAppendMs >= flushMs;
  }

  /**
   * Whole batches from the one holding `offset`, up to `maxBytes` (at least one batch), only
   * batches whose last offset < `endOffset` (the visible end, e.g. flushedOffset for acks=all
   * readers). Stops at a segment end. OFFSET_OUT_OF_RANGE outside [logStartOffset, nextOffset];
   * CORRUPT_LOG if the batch holding `offset` fails validation (see segment-reader.ts).
   */
  read(offset: number, maxBytes: number, endOffset: number = this.nextOffset): ReadResult {
    assert(!this.closed, 'read from a closed log');
    if (!Number.isSafeInteger(offset) || offset < this.logStartOffset || offset > this.nextOffset) {
      throw offsetOutOfRange(offset, this.logStartOffset, this.nextOffset);
    }
    const visibleEnd = Math.min(endOffset, this.nextOffset);
    if (offset >= visibleEnd) return emptyRead(offset);
    return readSegment(this.segmentHolding(offset), offset, Math.max(0, maxBytes), visibleEnd);
  }

  /** The segment whose range holds `offset` (logStartOffset <= offset < nextOffset). */
  private segmentHolding(offset: number): Segment {
    return this.segments[this.segmentIndexHolding(offset)]!;
  }

  private segmentIndexHolding(offset: number): number {
    let low = 0;
    let high = this.segments.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >>> 1;
      if (this.segments[mid]!.baseOffset <= offset) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  /**
   * First offset of the first batch whose maxTimestamp >= `timestampMs`, or nextOffset if none.
   * Batch granularity: the answer is a batch's base offset, and timestamps need not be
   * monotonic (a segment's max timestamp lets whole segments be skipped).
   */
  offsetForTimestamp(timestampMs: number): number {
    for (const segment of this.segments) {
      if (segment.isEmpty || segment.ensureMaxTimestamp() < timestampMs) continue;
      const found = segment.findTimestamp(timestampMs);
      if (found !== undefined) return Math.max(found, this.logStartOffset);
    }
    return this.nextOffset;
  }

  /**
   * Deletes whole sealed segments, oldest first: while the oldest one's newest record is older
   * than retentionMs, then while the partition holds more than retentionBytes. The active
   * segment is never deleted. Advances logStartOffset.
   */
  applyRetention(nowMs: number): RetentionResult {
    assert(!this.closed, 'retention on a closed log');
    const result: RetentionResult = { deletedSegments: 0, deletedBytes: 0 };
    const { retentionMs, retentionBytes } = this.config;
    while (retentionMs >= 0 && this.segments.length > 1 && nowMs - this.segments[0]!.ensureMaxTimestamp() > retentionMs) {
      this.deleteOldestSegment(result);
    }
    if (retentionBytes >= 0) {
      let totalBytes = this.sizeBytes;
      while (this.segments.length > 1 && totalBytes > retentionBytes) {
        totalBytes -= this.segments[0]!.sizeBytes;
        this.deleteOldestSegment(result);
      }
    }
    if (result.deletedSegments > 0) this.trimLeaderEpochs();
    return result;
  }

  /** Records below the log start are gone, and so are their epochs. A failure only leaves entries the next open trims. */
  private trimLeaderEpochs(): void {
    try {
      this.leaderEpochs.truncateFromStart(this.logStartOffset);
    } catch (err) {
      this.log(`${this.dir}: could not trim the leader epochs to the log start ${this.logStartOffset}: ${(err as Error).message}`);
    }
  }

  /**
   * Moves the log start offset to `offset` (DeleteRecords): records below it are gone for good.
   * Order, so that a crash at any point never brings them back and never loses others:
   *   1. everything below `offset` is fsynced (recovery can then not cut the log below it)
   *   2. the new start is written durably (log-start.ts)
   *   3. readers see it; whole segments below it are deleted (the active one after a roll)
   * A crash after 2 leaves segments that the next open deletes (settleLogStart). Returns the new
   * log start offset; an offset at or below the current start changes nothing. Throws
   * OFFSET_OUT_OF_RANGE above nextOffset, STORAGE_ERROR / DISK_FULL when the disk fails.
   */
  async deleteRecordsBefore(offset: number): Promise<number> {
    assert(!this.closed, 'deleteRecordsBefore on a closed log');
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.nextOffset) throw offsetOutOfRange(offset, this.logStartOffset, this.nextOffset);
    if (offset <= this.logStartOffset) return this.logStartOffset;
    if (offset > this.flushedOffsetValue) await this.flush();
    if (this.failure !== null) throw this.failure;
    if (this.closed || offset <= this.logStartOffset) return this.logStartOffset;
    try {
      writeLogStart(this.fileOps, this.dir, offset);
    } catch (err) {
      throw writeError(err, `writing the log start offset of ${this.dir}`);
    }
    this.logStartValue = offset;
    this.deleteSegmentsBelowStart();
    this.trimLeaderEpochs();
    return this.logStartOffset;
  }

  /** The start is already durable: a failure here only leaves files the next open deletes. */
  private deleteSegmentsBelowStart(): void {
    const result: RetentionResult = { deletedSegments: 0, deletedBytes: 0 };
    try {
      if (this.active.nextOffset <= this.logStartValue && !this.active.isEmpty) this.roll();
      while (this.segments.length > 1 && this.segments[0]!.nextOffset <= this.logStartValue) this.deleteOldestSegment(result);
      if (result.deletedSegments > 0) this.fileOps.fsyncDirSync(this.dir);
    } catch (err) {
      this.log(`${this.dir}: deleting segments below the log start ${this.logStartValue} failed (${(err as Error).message}); the next open deletes them`);
    }
  }

  /**
   * Cuts the log back so that it ends at `offset`, for a replica whose log diverged from its
   * leader's (KIP-101/279); returns the new log end. The cut is at a batch boundary: if `offset`
   * falls inside a batch, the whole batch goes (the end is floored to its base offset, as in
   * Kafka); if batch headers before `offset` are damaged, the cut is at the last good batch.
   * The end never goes below the log start: if the batch holding `offset` starts below it (the
   * start was moved into a batch), the log restarts empty at the start, as resetTo would.
   *
   *   offset < logStartOffset .... OFFSET_OUT_OF_RANGE (use resetTo); nothing changes
   *   offset >= nextOffset ....... nothing changes; returns nextOffset
   *   otherwise .................. the steps below
   *
   * Steps, in this order so that a crash at any point leaves a prefix of the log as it was, and a
   * crash after the return never brings a cut record back:
   *   1. flush, then wait until no group-commit round runs or waits (none can then report a
   *      flushedOffset past the new end, or fsync a descriptor deleted here); the rest is synchronous
   *   2. lower the recovery point to the new end, durably: a recovering open then CRC-scans the
   *      segment holding the cut and everything after it, whatever state a crash left them in.
   *      (Left above the new end, it would make a later recovery trust segments appended after
   *      the cut as if fsynced, report them flushed, and lose them to a power loss.)
   *   3. delete the segments starting at or after the new end, newest first (one always stays:
   *      a cut at the first segment's base empties it)
   *   4. ftruncate the segment holding the cut; it becomes the active segment (its index file goes)
   *   5. fdatasync it and any segment still unsynced, fsync the directory
   *   6. drop the leader epochs starting at or after the new end (a crash before this is repaired
   *      by the next open, which drops epochs past the log end)
   * Afterwards flushedOffset == nextOffset == the returned end.
   *
   * A failure in steps 2-6 fails the log (STORAGE_ERROR; appends and flushes are refused until it
   * is reopened with recovery, as after a failed fsync); reads still work. The reopened log is a
   * prefix (same offsets, same bytes) of the log as it was at step 2: never longer, possibly
   * longer than the new end (the caller truncates again), and holding at least every record below
   * min(new end, nextOffset at the call), which step 1 made durable. A failure in step 1 is the
   * flush's own (the log is failed, nothing was cut).
   */
  async truncateTo(offset: number): Promise<number> {
    assert(!this.closed, 'truncateTo on a closed log');
    this.checkTruncationTarget(offset);
    if (offset >= this.nextOffset) return this.nextOffset;
    await this.flush();
    await this.waitForNoFlushRound();
    this.checkTruncationTarget(offset);
    if (offset >= this.nextOffset) return this.nextOffset;
    const cut = this.findCut(offset);
    if (cut.offset < this.logStartOffset) {
      this.log(`${this.dir}: truncating to ${offset}: the batch holding it starts at ${cut.offset}, below the log start ${this.logStartOffset}; the log restarts empty there`);
      this.restartDurably(this.logStartOffset);
      return this.nextOffset;
    }
    try {
      this.cutDurably(cut);
    } catch (err) {
      throw this.failStorage(err, `truncating ${this.dir} to ${cut.offset}`);
    }
    return this.nextOffset;
  }

  /**
   * Deletes the whole log and starts it again, empty, at `startOffset`: for a replica whose fetch
   * offset is below its leader's log start, or whose whole log diverged. Afterwards logStartOffset
   * == nextOffset == flushedOffset == startOffset, the leader epochs are empty, appends continue
   * at startOffset, and a restart keeps all of it (the log start is persisted). startOffset may
   * be below the current start: the leader's log is the authority, and this is the one operation
   * that moves the persisted log start back (log-start.ts).
   *
   * Steps; a crash between them leaves a prefix of the old log (possibly empty, at the old
   * persisted start) or the new empty log, never a mix:
   *   1. wait until no group-commit round runs or waits (nothing is flushed: it is all going)
   *   2. set the recovery point to 0, durably: a crash midway CRC-scans whatever is left, and no
   *      old recovery point above startOffset can later make recovery trust unsynced new data
   *   3. delete every segment file, newest first
   *   4. write the log start durably (its directory fsync makes the deletions durable too)
   *   5. create the segment at startOffset, fsync the directory
   *   6. empty the leader epochs (after a crash before this, the next open trims them to the empty
   *      log: at most one entry is left, starting at startOffset and owning no offsets)
   * A failure in steps 2-6 fails the log, as in truncateTo.
   */
  async resetTo(startOffset: number): Promise<void> {
    assert(!this.closed, 'resetTo on a closed log');
    if (!Number.isSafeInteger(startOffset) || startOffset < 0) throw new RillError('OFFSET_OUT_OF_RANGE', `cannot reset ${this.dir} to ${startOffset}: not an offset`);
    if (this.failure !== null) throw this.failure;
    await this.waitForNoFlushRound();
    this.restartDurably(startOffset);
  }

  /** OFFSET_OUT_OF_RANGE for a truncation target below the log start (or not an offset). */
  private checkTruncationTarget(offset: number): void {
    if (Number.isSafeInteger(offset) && offset >= this.logStartOffset) return;
    throw new RillError('OFFSET_OUT_OF_RANGE', `cannot truncate ${this.dir} to ${offset}: below the log start ${this.logStartOffset} (reset the log to a start offset instead)`);
  }

  /**
   * Resolves once no group-commit round runs or waits; throws if the log failed or was closed
   * meanwhile. The caller's next steps must be synchronous to keep it so.
   */
  private async waitForNoFlushRound(): Promise<void> {
    while (!this.groupCommit.idle) await this.groupCommit.whenIdle();
    if (this.failure !== null) throw this.failure;
    if (this.closed) throw new RillError('STORAGE_ERROR', `log ${this.dir} was closed before its truncation ran; nothing was cut`);
  }

  /**
   * Where a truncation to `offset` (logStartOffset <= offset < nextOffset) cuts: the start of the
   * batch holding it. Walks the headers from the index entry at or below it, or from the segment
   * start if that walk fails (a stale index); if the headers are damaged before `offset`, the
   * cut is at the last good batch. Nothing is changed; a read failure is STORAGE_ERROR.
   */
  private findCut(offset: number): Cut {
    const segmentIndex = this.segmentIndexHolding(offset);
    const segment = this.segments[segmentIndex]!;
    const walkFrom = (positionBytes: number, baseOffset: number): { cut: Cut | null; problem: string | null; end: Cut } => {
      let cut: Cut | null = null;
      const walk = walkHeaders(this.fileOps, segment.fd, positionBytes, segment.sizeBytes, baseOffset, (header) => {
        if (header.lastOffset < offset) return true;
        cut = { segmentIndex, positionBytes: header.positionBytes, offset: header.baseOffset };
        return false;
      });
      return { cut, problem: walk.problem, end: { segmentIndex, positionBytes: walk.endPositionBytes, offset: walk.nextOffset } };
    };
    try {
      const start = segment.lookup(offset);
      let found = walkFrom(start.positionBytes, start.baseOffset);
      if (found.cut === null && start.positionBytes > 0) found = walkFrom(0, segment.baseOffset);
      if (found.cut !== null) return found.cut;
      this.log(`${segment.logPath}: truncating to ${offset}: ${found.problem ?? 'no batch holds it'}; cutting at the last good batch, ${found.end.offset}`);
      return found.end;
    } catch (err) {
      throw storageError(err, `reading ${segment.logPath} to find where to truncate it`);
    }
  }

  /** Steps 2-6 of truncateTo; throws the file layer's error (the caller fails the log). */
  private cutDurably(cut: Cut): void {
    assert(this.groupCommit.idle, 'truncation while a flush round runs');
    writeCheckpoint(this.fileOps, this.dir, Math.min(cut.offset, this.flushedOffsetValue), { durable: true });
    this.lastCheckpointOffset = Math.min(cut.offset, this.flushedOffsetValue);
    // A cut at a segment's base removes that segment too, unless it is the first.
    const keepCount = cut.positionBytes === 0 && cut.segmentIndex > 0 ? cut.segmentIndex : cut.segmentIndex + 1;
    while (this.segments.length > keepCount) this.dropNewestSegment();
    const active = this.active;
    const cutsActive = active.nextOffset > cut.offset;
    if (cutsActive) active.truncateTo(cut.positionBytes, cut.offset);
    assert(active.nextOffset === cut.offset, 'the cut must end the log');
    this.deleteIndexFileOf(active);
    if (cutsActive) this.dirtySegments.add(active);
    this.syncEverythingSync();
    this.leaderEpochs.truncateFromEnd(cut.offset);
  }

  /** resetTo's steps 2-6, and truncateTo's below the log start; fails the log on any error. */
  private restartDurably(startOffset: number): void {
    assert(this.groupCommit.idle, 'reset while a flush round runs');
    try {
      writeCheckpoint(this.fileOps, this.dir, 0, { durable: true });
      this.lastCheckpointOffset = 0;
      for (let i = this.segments.length - 1; i >= 0; i--) this.segments[i]!.deleteFiles();
      writeLogStart(this.fileOps, this.dir, startOffset);
      const fresh = Segment.create(this.fileOps, this.dir, startOffset, this.clock.nowMs());
      for (const segment of this.segments.splice(0, this.segments.length, fresh)) segment.closeFd();
      this.dirtySegments.clear();
      this.logStartValue = startOffset;
      this.syncEverythingSync();
      this.leaderEpochs.truncateFromEnd(0);
    } catch (err) {
      throw this.failStorage(err, `resetting ${this.dir} to start at ${startOffset}`);
    }
  }

  /** Deletes the newest segment's files and forgets it (no flush round may be running). */
  private dropNewestSegment(): void {
    const newest = this.segments[this.segments.length - 1]!;
    newest.deleteFiles();
    this.segments.pop();
    this.dirtySegments.delete(newest);
    newest.closeFd();
  }

  /** A segment about to be appended to again has no index file (segment.ts); the index is a cache, so a failure only logs. */
  private deleteIndexFileOf(segment: Segment): void {
    try {
      segment.deleteIndexFile();
    } catch (err) {
      this.log(`${segment.indexPath}: could not delete it (${(err as Error).message}); the next open finds it stale and rebuilds it`);
    }
  }

  /**
   * fdatasyncs every unsynced segment and the directory (its parent too if the partition is new),
   * synchronously; then everything up to nextOffset is flushed. No round may be running.
   */
  private syncEverythingSync(): void {
    for (const segment of this.dirtySegments) this.fileOps.fdatasyncSync(segment.fd);
    this.fileOps.fsyncDirSync(this.dir);
    if (this.parentDirectoryDirty) this.fileOps.fsyncDirSync(path.dirname(this.dir));
    for (const segment of this.dirtySegments) segment.flushedBytes = segment.sizeBytes;
    this.dirtySegments.clear();
    this.directoryDirty = false;
    this.parentDirectoryDirty = false;
    this.flushedOffsetValue = this.nextOffset;
    this.oldestUnflushedAppendMs = Number.NaN;
  }

  /**
   * Fails the log (like a failed fsync: refused until reopened with recovery) and returns the
   * error to throw: always STORAGE_ERROR, even for a full disk, since the log is now failed.
   */
  private failStorage(err: unknown, what: string): RillError {
    const failure = err instanceof RillError && err.code !== 'STORAGE_ERROR' ? new RillError('STORAGE_ERROR', `${what}: ${err.message}`, { cause: err }) : storageError(err, what);
    if (this.failure === null) {
      this.failure = failure;
      this.log(`${this.dir}: ${failure.message}; the log refuses appends and flushes until reopened with recovery`);
    }
    return failure;
  }

  private deleteOldestSegment(result: RetentionResult): void {
    const oldest = this.segments[0]!;
    oldest.deleteFiles();
    this.segments.shift();
    this.dirtySegments.delete(oldest);
    result.deletedSegments++;
    result.deletedBytes += oldest.sizeBytes;
    this.retiredSegments.push(oldest);
    if (this.groupCommit.busy) void this.groupCommit.whenIdle().then(() => this.closeRetiredSegments());
    else this.closeRetiredSegments();
  }

  /** Closes descriptors of deleted segments once no fsync round can still be using them. */
  private closeRetiredSegments(): void {
    if (this.groupCommit.busy) return;
    for (const segment of this.retiredSegments.splice(0)) segment.closeFd();
  }

  /**
   * Writes the indexes and the recovery-point checkpoint and fsyncs everything, then closes
   * the files. Throws STORAGE_ERROR if the data could not be made durable (or the log had
   * failed): the broker must then treat the shutdown as unclean (recover: true next time).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    let problem: RillError | null = this.failure;
    try {
      this.syncAllSync();
    } catch (err) {
      problem ??= storageError(err, `closing ${this.dir}`);
    }
    // Anything a queued fsync round would have synced, syncAllSync just did.
    this.dirtySegments.clear();
    const closeFds = (): void => {
      for (const segment of [...this.segments, ...this.retiredSegments.splice(0)]) segment.closeFd();
    };
    if (this.groupCommit.busy) void this.groupCommit.whenIdle().then(closeFds);
    else closeFds();
    if (problem !== null) throw problem;
  }

  private syncAllSync(): void {
    const active = this.active;
    active.trimFileToSize();
    for (const segment of this.segments) {
      if (segment.flushedBytes < segment.sizeBytes) this.fileOps.fdatasyncSync(segment.fd);
      segment.flushedBytes = segment.sizeBytes;
      this.writeIndexFileOf(segment);
    }
    if (this.directoryDirty) this.fileOps.fsyncDirSync(this.dir);
    if (this.parentDirectoryDirty) this.fileOps.fsyncDirSync(path.dirname(this.dir));
    this.directoryDirty = false;
    this.parentDirectoryDirty = false;
    if (this.failure !== null) return;
    this.flushedOffsetValue = this.nextOffset;
    this.writeCheckpointNow(this.clock.nowMs());
  }

  /** Closes (ignoring errors: the data is going away) and deletes the partition directory. */
  remove(): void {
    try {
      this.close();
    } catch {
      // Deleting anyway.
    }
    PartitionLog.deleteDir(this.dir, this.fileOps);
  }
}

/** Where a truncation cuts: segments[segmentIndex] keeps its first positionBytes and ends at offset. */
interface Cut {
  segmentIndex: number;
  positionBytes: number;
  offset: number;
}

/** The broker validated the batch; these are programmer-error checks only. */
function checkBatchArgument(batch: Buffer, recordsCount: number): void {
  assert(batch.length <= batchBytesMax && readBatchSize(batch, 0) === batch.length, 'append: batch length does not match its header');
  assert(recordsCount >= 1 && readLastOffsetDelta(batch, 0) === recordsCount - 1, 'append: recordsCount does not match the batch');
}

/** At open: the leader epochs, rebuilt from the batch headers if the file is damaged or missing. */
function openLeaderEpochs(fileOps: FileOps, dir: string, segments: Segment[], persistedLogStart: number, log: (message: string) => void): LeaderEpochFile {
  try {
    return LeaderEpochFile.open(dir, {
      fileOps,
      logStartOffset: Math.max(persistedLogStart, segments[0]!.baseOffset),
      logEndOffset: segments[segments.length - 1]!.nextOffset,
      rebuild: () => {
        const rebuilt = rebuildLeaderEpochs(fileOps, segments);
        if (rebuilt.problem !== null) log(`${dir}: rebuilding the leader epochs: ${rebuilt.problem}`);
        return rebuilt.entries;
      },
      log,
    });
  } catch (err) {
    for (const segment of segments) segment.closeFd();
    throw storageError(err, `opening the leader epochs of ${dir}`);
  }
}

/**
 * At open: segments wholly below the persisted log start are deleted (a crash came between
 * writing the start and deleting them). If the log now ends below the start (recovery cut data
 * that was durable: disk damage), the log restarts empty at the start, so that deleted offsets
 * are never handed out again.
 */
function settleLogStart(fileOps: FileOps, dir: string, segments: Segment[], logStartOffset: number, nowMs: number, log: (message: string) => void): void {
  if (logStartOffset <= segments[0]!.baseOffset) return;
  const active = segments[segments.length - 1]!;
  try {
    if (active.nextOffset < logStartOffset) {
      log(`${dir}: the log ends at ${active.nextOffset}, below its start ${logStartOffset}; it restarts empty at ${logStartOffset}`);
      const fresh = Segment.create(fileOps, dir, logStartOffset, nowMs);
      for (const segment of segments.splice(0, segments.length, fresh)) {
        segment.closeFd();
        segment.deleteFiles();
      }
      fileOps.fsyncDirSync(dir);
      return;
    }
    let deleted = 0;
    while (segments.length > 1 && segments[0]!.nextOffset <= logStartOffset) {
      const segment = segments.shift()!;
      segment.closeFd();
      segment.deleteFiles();
      deleted++;
    }
    if (deleted > 0) fileOps.fsyncDirSync(dir);
  } catch (err) {
    for (const segment of segments) segment.closeFd();
    throw storageError(err, `deleting segments below the log start of ${dir}`);
  }
}
