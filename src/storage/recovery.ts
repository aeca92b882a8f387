/**
 * Loading a partition directory at open, with or without recovery.
 *
 * recover = false (after a clean shutdown): every segment is trusted; indexes are loaded (or
 * rebuilt from a header walk if malformed); the active segment's end is found by a header walk
 * from its last index entry. If that walk does not end exactly at the file size, the shutdown
 * was not clean after all and the active segment is recovered as below.
 *
 * recover = true: segments below the one holding the recovery point (the last fsynced offset,
 * from the checkpoint) are trusted as above. From that segment to the end, every batch is
 * checked: length bounds, magic, CRC-32C, base offset == the expected next offset. At the first
 * bad or torn batch the segment is truncated there and every later segment deleted; the
 * scanned segments' indexes are rebuilt; what was dropped is reported. Everything kept is then
 * fsynced, so flushedOffset == nextOffset after open.
 *
 * Only the active segment can legitimately be empty (we never roll an empty segment), so an
 * empty segment followed by others means lost data: the scan stops there (the next segment's
 * base offset does not follow).
 *
 * Mid-log corruption below the recovery point is not looked for here (that would read the
 * whole log at every start); reads check every CRC and report it as CORRUPT_LOG.
 */
import path from 'node:path';
import type { FileOps } from './file-ops.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { classifyDirectory, indexPath } from './segment-files.js';
import { Segment, segmentRelativeOffsetMax, unlinkIfPresent } from './segment.js';
import { scanBatches, walkHeaders } from './batch-walk.js';
import { storageError } from './storage-errors.js';

export interface RecoveryReport {
  /** True when a CRC scan ran (recover: true, or a "clean" log whose end did not check out). */
  recovered: boolean;
  /** The checkpointed flushed offset the scan started from (0 if missing or invalid). */
  recoveryPointOffset: number;
  scannedSegments: number;
  scannedBytes: number;
  /** Bytes dropped: the cut tail of the damaged segment plus every later segment. */
  truncatedBytes: number;
  /** First offset that was dropped, or null when nothing was. */
  droppedFromOffset: number | null;
  /** Why data was dropped (the first problem found), or null. */
  reason: string | null;
  /** Segment files deleted because they came after the damage. */
  segmentsDeleted: number;
  indexesRebuilt: number;
  tempFilesDeleted: number;
  /** Files in the directory that are not ours (left alone), e.g. a `.log` not named by 20 digits. */
  ignoredFiles: string[];
}

export interface LoadedLog {
  segments: Segment[];
  report: RecoveryReport;
  /** The directory held no segments: a new, empty log was created. */
  createdFresh: boolean;
}

interface LoadContext {
  fileOps: FileOps;
  dir: string;
  nowMs: number;
  log: (message: string) => void;
  report: RecoveryReport;
}

function newReport(): RecoveryReport {
  return {
    recovered: false, recoveryPointOffset: 0, scannedSegments: 0, scannedBytes: 0, truncatedBytes: 0, droppedFromOffset: null,
    reason: null, segmentsDeleted: 0, indexesRebuilt: 0, tempFilesDeleted: 0, ignoredFiles: [],
  };
}

/** `freshBaseOffset`: where a directory without segments starts (its log start offset, see log-start.ts). */
export function loadLog(fileOps: FileOps, dir: string, recover: boolean, nowMs: number, log: (message: string) => void, freshBaseOffset = 0): LoadedLog {
  const context: LoadContext = { fileOps, dir, nowMs, log, report: newReport() };
  const segments: Segment[] = [];
  try {
    fileOps.mkdirp(dir);
    openSegmentFiles(context, segments);
  } catch (err) {
    closeQuietly(segments);
    throw storageError(err, `loading partition directory ${dir}`);
  }
  try {
    const createdFresh = segments.length === 0;
    if (createdFresh) segments.push(Segment.create(fileOps, dir, freshBaseOffset, nowMs));
    const kept = createdFresh ? segments : recover ? loadRecovering(context, segments) : loadClean(context, segments);
    prepareActive(kept[kept.length - 1]!, nowMs);
    return { segments: kept, report: context.report, createdFresh };
  } catch (err) {
    closeQuietly(segments);
    throw storageError(err, `loading partition directory ${dir}`);
  }
}

function closeQuietly(segments: Segment[]): void {
  for (const segment of segments) {
    try {
      segment.closeFd();
    } catch {
      // Already failing; the first error is the one to report.
    }
  }
}

function loadRecovering(context: LoadContext, segments: Segment[]): Segment[] {
  const scanFrom = firstSegmentToScan(context, segments);
  loadTrustedSegments(context, segments, scanFrom);
  return scanSegments(context, segments, scanFrom);
}

function loadClean(context: LoadContext, segments: Segment[]): Segment[] {
  loadTrustedSegments(context, segments, segments.length - 1);
  if (activeEndChecksOut(context, segments)) return segments;
  return scanSegments(context, segments, segments.length - 1);
}

/** Opens every segment file into `segments` (filled as it goes, so a failure can close them). */
function openSegmentFiles(context: LoadContext, segments: Segment[]): void {
  const { fileOps, dir, report } = context;
  const listing = classifyDirectory(fileOps.readdir(dir));
  for (const name of listing.tempFiles) {
    unlinkIfPresent(fileOps, path.join(dir, name));
    report.tempFilesDeleted++;
  }
  const segmentBases = new Set(listing.segmentBaseOffsets);
  for (const baseOffset of listing.indexBaseOffsets) {
    if (!segmentBases.has(baseOffset)) unlinkIfPresent(fileOps, indexPath(dir, baseOffset));
  }
  report.ignoredFiles = listing.ignoredFiles;
  if (listing.ignoredFiles.length > 0) context.log(`${dir}: ignoring files that are not segments: ${listing.ignoredFiles.join(', ')}`);
  for (const baseOffset of listing.segmentBaseOffsets) segments.push(Segment.open(fileOps, dir, baseOffset, context.nowMs));
}

function deleteSegment(context: LoadContext, segment: Segment): void {
  segment.closeFd();
  segment.deleteFiles();
  context.report.segmentsDeleted++;
}

function firstSegmentToScan(context: LoadContext, segments: Segment[]): number {
  const checkpoint = readCheckpoint(context.fileOps, context.dir);
  context.report.recoveryPointOffset = checkpoint.recoveryPointOffset;
  if (checkpoint.problem !== null && checkpoint.problem !== 'no checkpoint') context.log(`${context.dir}: ${checkpoint.problem}; scanning the whole log`);
  let scanFrom = 0;
  for (let i = 0; i < segments.length; i++) if (segments[i]!.baseOffset <= checkpoint.recoveryPointOffset) scanFrom = i;
  return scanFrom;
}

/** Segments [0, count) are trusted: index loaded or rebuilt; end = the next segment's base. */
function loadTrustedSegments(context: LoadContext, segments: Segment[], count: number): void {
  for (let i = 0; i < count; i++) {
    const segment = segments[i]!;
    segment.nextOffset = segments[i + 1]!.baseOffset;
    segment.flushedBytes = segment.sizeBytes;
    const problem = segment.loadIndexFile() ?? indexBeyondSegment(segment);
    if (problem !== null) rebuildTrustedIndex(context, segment, problem);
    segment.settleIndexSpacing();
  }
}

function indexBeyondSegment(segment: Segment): string | null {
  const last = segment.index.count - 1;
  if (last < 0 || segment.baseOffset + segment.index.relativeOffsetAt(last) < segment.nextOffset) return null;
  return 'index names offsets beyond the segment';
}

function rebuildTrustedIndex(context: LoadContext, segment: Segment, problem: string): void {
  const { sizeBytes, nextOffset } = segment;
  const walk = segment.rebuildFromHeaders(sizeBytes);
  context.report.indexesRebuilt++;
  context.log(`${segment.indexPath}: ${problem}; rebuilt from batch headers`);
  if (walk.problem !== null) context.log(`${segment.logPath}: ${walk.problem}; offsets from ${walk.nextOffset} will be reported as CORRUPT_LOG when read`);
  // Trusted: the segment keeps its whole file and the range its name and its successor's give it.
  segment.sizeBytes = sizeBytes;
  segment.nextOffset = nextOffset;
  segment.maxTimestampMs = Number.NaN;
  segment.writeIndexFile();
}

/**
 * Clean open: finds the active segment's end by a header walk from its last index entry.
 * Returns false (the caller then scans it) if the walk does not end at the file size.
 */
function activeEndChecksOut(context: LoadContext, segments: Segment[]): boolean {
  const active = segments[segments.length - 1]!;
  // A bad index leaves the empty one: the walk then starts at the segment start.
  active.loadIndexFile();
  const start = active.lookup(Number.MAX_SAFE_INTEGER);
  const walk = walkHeaders(context.fileOps, active.fd, start.positionBytes, active.sizeBytes, start.baseOffset, () => true);
  if (walk.problem === null && walk.endPositionBytes === active.sizeBytes) {
    active.nextOffset = walk.nextOffset;
    active.flushedBytes = active.sizeBytes;
    active.settleIndexSpacing();
    return true;
  }
  context.log(`${active.logPath}: log end does not check out after a clean shutdown (${walk.problem ?? 'size mismatch'}); recovering it`);
  return false;
}

/** CRC-scans segments from `scanFrom` to the end; truncates at the first problem. */
function scanSegments(context: LoadContext, segments: Segment[], scanFrom: number): Segment[] {
  context.report.recovered = true;
  let expectedOffset = segments[scanFrom]!.baseOffset;
  for (let i = scanFrom; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment.baseOffset !== expectedOffset) {
      return dropFrom(context, segments, i, 0, expectedOffset, `segment ${segment.logPath} starts at ${segment.baseOffset}, expected ${expectedOffset}`);
    }
    const problem = scanSegment(context, segment);
    if (problem !== null) return dropFrom(context, segments, i, segment.sizeBytes, segment.nextOffset, problem);
    expectedOffset = segment.nextOffset;
  }
  syncKept(context, segments);
  return segments;
}

/** Scans one segment, re-booking every good batch; returns the problem that stopped it, or null. */
function scanSegment(context: LoadContext, segment: Segment): string | null {
  const fileSizeBytes = segment.sizeBytes;
  segment.resetIndex();
  let overflow: string | null = null;
  const walk = scanBatches(context.fileOps, segment.fd, 0, fileSizeBytes, segment.baseOffset, (header) => {
    if (header.lastOffset - segment.baseOffset > segmentRelativeOffsetMax) {
      overflow = `batch at position ${header.positionBytes} overflows the segment's relative offsets`;
      return false;
    }
    segment.noteBatch(header.positionBytes, header.sizeBytes, header.baseOffset, header.lastOffset, header.maxTimestampMs);
    segment.markVerified(header.positionBytes, header.sizeBytes); // scanBatches checked its CRC
    return true;
  });
  context.report.scannedSegments++;
  context.report.scannedBytes += fileSizeBytes;
  // The walk stops at the file end, at a bad batch, or at our overflow stop (not booked).
  return overflow ?? walk.problem;
}

/**
 * Keeps the first `keepBytes` of segments[i] (removing it entirely if that leaves it empty and
 * it is not the first segment) and deletes every later segment; returns the segments kept.
 */
function dropFrom(context: LoadContext, segments: Segment[], i: number, keepBytes: number, droppedFromOffset: number, reason: string): Segment[] {
  const { report } = context;
  report.reason = reason;
  report.droppedFromOffset = droppedFromOffset;
  context.log(`${context.dir}: recovery dropped data from offset ${droppedFromOffset}: ${reason}`);
  const damaged = segments[i]!;
  const damagedFileBytes = context.fileOps.fileSizeBytes(damaged.fd);
  report.truncatedBytes += damagedFileBytes - keepBytes;
  const removeDamaged = keepBytes === 0 && i > 0;
  if (removeDamaged) deleteSegment(context, damaged);
  else damaged.truncateTo(keepBytes, keepBytes === 0 ? damaged.baseOffset : damaged.nextOffset);
  for (let j = i + 1; j < segments.length; j++) {
    report.truncatedBytes += segments[j]!.sizeBytes;
    deleteSegment(context, segments[j]!);
  }
  const kept = segments.slice(0, removeDamaged ? i : i + 1);
  syncKept(context, kept);
  return kept;
}

/**
 * Makes what recovery kept durable (so the log opens with flushedOffset == nextOffset), seals
 * the rebuilt indexes, and checkpoints the new recovery point.
 */
function syncKept(context: LoadContext, segments: Segment[]): void {
  for (const segment of segments) {
    if (segment.flushedBytes === segment.sizeBytes) continue;
    context.fileOps.fdatasyncSync(segment.fd);
    segment.flushedBytes = segment.sizeBytes;
  }
  context.fileOps.fsyncDirSync(context.dir);
  for (const segment of segments.slice(0, -1)) segment.writeIndexFile();
  writeCheckpoint(context.fileOps, context.dir, segments[segments.length - 1]!.nextOffset);
}

function prepareActive(active: Segment, nowMs: number): void {
  active.deleteIndexFile();
  active.settleIndexSpacing();
  const firstTimestampMs = active.firstBatchTimestampMs();
  if (firstTimestampMs !== undefined) active.rollStartMs = Math.min(nowMs, firstTimestampMs);
}
