/**
 * The leader epochs of a partition (the idea of Kafka's leader-epoch checkpoint, KIP-101/279):
 * which leader epoch wrote which part of the log, as an ordered list of entries
 * (epoch, startOffset) — the first offset written in that epoch. A replica that rejoins asks the
 * leader where its latest epoch ended (endOffsetFor) and truncates what the leader does not have.
 *
 * Invariant: epochs strictly increase and so do start offsets (an epoch owns [its start, the
 * next entry's start)). The list only changes through these operations:
 *
 * assign(epoch, startOffset), with latest = the last entry:
 *   no entries ........................................... append
 *   epoch == latest.epoch, startOffset >= latest's start .. unchanged (the epoch goes on)
 *   epoch >  latest.epoch, startOffset >  latest's start .. append
 *   epoch >  latest.epoch, startOffset == latest's start .. replace latest (it owns no offsets:
 *                                                           a leadership that wrote nothing)
 *   anything else ........................................ LeaderEpochError, nothing changed
 * The last row is where Kafka drops the conflicting entries and appends. We refuse: a replica
 * truncates its log (and calls truncateFromEnd) before appending a new leader's batches, so an
 * epoch going back, or an epoch starting before the latest one's start, means a bug or a peer
 * that breaks the protocol, and rewriting history silently would hide it. Past
 * leaderEpochEntriesMax entries the oldest is dropped (asking for an epoch older than every entry
 * then answers with the first entry's start, as after retention).
 *
 * endOffsetFor(requested, logEndOffset) -> (epoch, endOffset), Kafka's OffsetsForLeaderEpoch:
 *   requested < 0 (undefined), or no entries ............. (-1, -1)
 *   requested == latest.epoch ............................ (requested, logEndOffset)
 *   no entry with an epoch > requested ................... (-1, -1)
 *   no entry with an epoch <= requested .................. (requested, first entry's start)
 *   otherwise ............................................ (largest epoch <= requested,
 *                                                            start of the next larger epoch)
 *
 * truncateFromEnd(endOffset)      the log was cut at endOffset: drop entries starting at or after it.
 * truncateFromStart(startOffset)  records before startOffset were deleted: drop entries starting
 *                                 at or before it and put the last of them back, starting at it.
 *
 * The file, `leader-epoch-checkpoint` in the partition directory, big-endian:
 *
 *   0  u32 magic 0x52494c45 ("RILE")
 *   4  u16 version = 1
 *   6  u16 reserved = 0
 *   8  u32 entryCount                      at most leaderEpochEntriesMax
 *  12  entryCount x (i32 epoch, u64 startOffset)
 *   .  u32 CRC-32C of every byte before it
 *
 * Every change is written durably (durable-file.ts) before memory changes, so a failed write
 * leaves both as they were (a failed directory fsync comes after the rename: the file may hold
 * the new list; the next write or open makes them agree). Whole-list writes mean any later
 * write also carries earlier changes.
 *
 * Open: the file is read strictly (exact size, bounded count, CRC, the invariant above). A damaged
 * file is a LeaderEpochFileError (CORRUPT_LOG) unless the caller can rebuild the list from the
 * log: every batch header carries the partitionLeaderEpoch its leader stamped, so a walk of the
 * headers (rebuildLeaderEpochs) gives the list back; PartitionLog does that, for a damaged file
 * and for a missing one in a log that has records (a data directory from before this file).
 * Then, as Kafka does when it loads a log, entries past the log end are dropped (the log lost its
 * tail in a crash, the file did not) and the list is trimmed to the log start.
 */
import path from 'node:path';
import { assert } from '../lib/assert.js';
import { RillError } from '../lib/errors.js';
import { leaderEpochEntriesMax } from '../lib/limits.js';
import { crc32c } from '../wire/crc32c.js';
import { walkHeaders } from './batch-walk.js';
import { FileTooLargeError, readFileBounded, replaceFile } from './durable-file.js';
import { type FileOps, nodeFileOps } from './file-ops.js';
import { leaderEpochFileName } from './segment-files.js';

export interface EpochEntry {
  readonly epoch: number;
  readonly startOffset: number;
}

export interface EpochEndOffset {
  /** The largest known epoch <= the one asked for, or -1. */
  epoch: number;
  /** Where that epoch ended (the next epoch's start, or the log end), or -1. */
  endOffset: number;
}

export const undefinedEpoch = -1;
export const undefinedEpochOffset = -1;
const epochMax = 0x7fff_ffff;

/** An assign the list cannot take (see the file comment); nothing was changed. */
export class LeaderEpochError extends RillError {
  override name = 'LeaderEpochError';
  constructor(detail: string) {
    super('INVALID_ARGUMENT', detail);
  }
}

/** A leader-epoch file that is not valid; `reason` says why. */
export class LeaderEpochFileError extends RillError {
  override name = 'LeaderEpochFileError';
  constructor(readonly filePath: string, readonly reason: string) {
    super('CORRUPT_LOG', `${filePath}: ${reason}`);
  }
}

// ---- The list: pure functions, each returning the list unchanged (the same array) or a new one ----

/** The list after assign(epoch, startOffset); throws LeaderEpochError (see the file comment). */
export function assignEntry(entries: readonly EpochEntry[], epoch: number, startOffset: number, entriesMax = leaderEpochEntriesMax): readonly EpochEntry[] {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > epochMax) throw new LeaderEpochError(`leader epoch ${epoch} is outside 0..${epochMax}`);
  if (!Number.isSafeInteger(startOffset) || startOffset < 0) throw new LeaderEpochError(`start offset ${startOffset} of leader epoch ${epoch} is not an offset`);
  const latest = entries[entries.length - 1];
  if (latest === undefined) return [{ epoch, startOffset }];
  if (epoch === latest.epoch && startOffset >= latest.startOffset) return entries;
  if (epoch > latest.epoch && startOffset >= latest.startOffset) {
    const kept = startOffset === latest.startOffset ? entries.slice(0, -1) : entries.slice();
    kept.push({ epoch, startOffset });
    return kept.length > entriesMax ? kept.slice(kept.length - entriesMax) : kept;
  }
  const what = epoch < latest.epoch ? `leader epoch ${epoch} is below the latest, ${latest.epoch}` : `leader epoch ${epoch} would start at ${startOffset}, before the latest (${latest.epoch}) starts at ${latest.startOffset}`;
  throw new LeaderEpochError(`${what}: truncate the log (and its epochs) first`);
}

/** Kafka's OffsetsForLeaderEpoch answer; see the file comment. */
export function endOffsetForEpoch(entries: readonly EpochEntry[], requestedEpoch: number, logEndOffset: number): EpochEndOffset {
  assert(Number.isInteger(requestedEpoch), `requested epoch ${requestedEpoch} is not an integer`);
  const undefinedAnswer = { epoch: undefinedEpoch, endOffset: undefinedEpochOffset };
  const latest = entries[entries.length - 1];
  if (requestedEpoch < 0 || latest === undefined) return undefinedAnswer;
  if (requestedEpoch === latest.epoch) return { epoch: requestedEpoch, endOffset: logEndOffset };
  const higher = firstIndexAbove(entries, requestedEpoch);
  if (higher === entries.length) return undefinedAnswer;
  const higherStart = entries[higher]!.startOffset;
  if (higher === 0) return { epoch: requestedEpoch, endOffset: higherStart };
  return { epoch: entries[higher - 1]!.epoch, endOffset: higherStart };
}

/** Index of the first entry whose epoch is > `epoch` (entries.length if none): binary search. */
function firstIndexAbove(entries: readonly EpochEntry[], epoch: number): number {
  let low = 0;
  let high = entries.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (entries[mid]!.epoch <= epoch) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** The list after the log was cut at `endOffset`: entries starting at or after it are gone. */
export function truncatedFromEnd(entries: readonly EpochEntry[], endOffset: number): readonly EpochEntry[] {
  let keep = entries.length;
  while (keep > 0 && entries[keep - 1]!.startOffset >= endOffset) keep--;
  return keep === entries.length ? entries : entries.slice(0, keep);
}

/** The list after records before `startOffset` were deleted; see the file comment. */
export function truncatedFromStart(entries: readonly EpochEntry[], startOffset: number): readonly EpochEntry[] {
  let removed = 0;
  while (removed < entries.length && entries[removed]!.startOffset <= startOffset) removed++;
  if (removed === 0) return entries;
  const carried = entries[removed - 1]!;
  if (removed === 1 && carried.startOffset === startOffset) return entries;
  return [{ epoch: carried.epoch, startOffset }, ...entries.slice(removed)];
}

/** Why `entries` breaks the invariant, or null. */
export function epochEntriesProblem(entries: readonly EpochEntry[], entriesMax = leaderEpochEntriesMax): string | null {
  if (entries.length > entriesMax) return `${entries.length} entries, more than ${entriesMax}`;
  for (let i = 0; i < entries.length; i++) {
    const { epoch, startOffset } = entries[i]!;
    if (!Number.isInteger(epoch) || epoch < 0 || epoch > epochMax) return `entry ${i}: epoch ${epoch} is outside 0..${epochMax}`;
    if (!Number.isSafeInteger(startOffset) || startOffset < 0) return `entry ${i}: start offset ${startOffset} is not an offset`;
    const previous = entries[i - 1];
    if (previous !== undefined && (epoch <= previous.epoch || startOffset <= previous.startOffset)) {
      return `entry ${i} (${epoch} at ${startOffset}) does not follow (${previous.epoch} at ${previous.startOffset})`;
    }
  }
  return null;
}

// ---- The file format ----

const fileMagic = 0x52494c45;
const fileVersion = 1;
const fileHeaderBytes = 12;
const entryBytes = 12;
const crcBytes = 4;
export const leaderEpochFileBytesMax = fileHeaderBytes + leaderEpochEntriesMax * entryBytes + crcBytes;

export function encodeLeaderEpochs(entries: readonly EpochEntry[]): Buffer {
  const bytes = Buffer.alloc(fileHeaderBytes + entries.length * entryBytes + crcBytes);
  bytes.writeUInt32BE(fileMagic, 0);
  bytes.writeUInt16BE(fileVersion, 4);
  bytes.writeUInt32BE(entries.length, 8);
  let at = fileHeaderBytes;
  for (const { epoch, startOffset } of entries) {
    bytes.writeInt32BE(epoch, at);
    bytes.writeBigUInt64BE(BigInt(startOffset), at + 4);
    at += entryBytes;
  }
  bytes.writeUInt32BE(crc32c(bytes.subarray(0, at)), at);
  return bytes;
}

/** The entries, or the reason the bytes are not a valid leader-epoch file. Never throws. */
export function decodeLeaderEpochs(bytes: Buffer): readonly EpochEntry[] | string {
  if (bytes.length < fileHeaderBytes + crcBytes) return `size ${bytes.length} is below ${fileHeaderBytes + crcBytes}`;
  if (bytes.readUInt32BE(0) !== fileMagic) return 'bad magic';
  if (bytes.readUInt16BE(4) !== fileVersion) return `unknown version ${bytes.readUInt16BE(4)}`;
  if (bytes.readUInt16BE(6) !== 0) return 'reserved bytes are not zero';
  const count = bytes.readUInt32BE(8);
  if (count > leaderEpochEntriesMax) return `${count} entries, more than ${leaderEpochEntriesMax}`;
  const expectedBytes = fileHeaderBytes + count * entryBytes + crcBytes;
  if (bytes.length !== expectedBytes) return `size ${bytes.length} does not match ${count} entries (${expectedBytes} bytes)`;
  const crcAt = expectedBytes - crcBytes;
  if (bytes.readUInt32BE(crcAt) !== crc32c(bytes.subarray(0, crcAt))) return 'CRC-32C mismatch';
  const entries: EpochEntry[] = [];
  for (let at = fileHeaderBytes; at < crcAt; at += entryBytes) {
    const startOffset = bytes.readBigUInt64BE(at + 4);
    if (startOffset > BigInt(Number.MAX_SAFE_INTEGER)) return `start offset ${startOffset} is out of range`;
    entries.push({ epoch: bytes.readInt32BE(at), startOffset: Number(startOffset) });
  }
  return epochEntriesProblem(entries) ?? entries;
}

// ---- Rebuilding from the log ----

/** What a rebuild needs of a segment: its file, first offset and size in whole batches. */
export interface SegmentExtent {
  readonly fd: number;
  readonly baseOffset: number;
  readonly sizeBytes: number;
}

/**
 * The list as the batch headers of `segments` (oldest first, recovered) tell it: an entry where
 * the stamped epoch grows. Batches without an epoch (-1, written before epochs were stamped) are
 * skipped; one whose epoch goes back is skipped and reported in `problem`, as is a walk that
 * stopped early (the list then covers the log up to there).
 */
export function rebuildLeaderEpochs(fileOps: FileOps, segments: readonly SegmentExtent[]): { entries: readonly EpochEntry[]; problem: string | null } {
  const entries: EpochEntry[] = [];
  let problem: string | null = null;
  for (const segment of segments) {
    const walked = walkHeaders(fileOps, segment.fd, 0, segment.sizeBytes, segment.baseOffset, (header) => {
      if (header.leaderEpoch < 0) return true;
      const latest = entries[entries.length - 1];
      if (latest === undefined || header.leaderEpoch > latest.epoch) entries.push({ epoch: header.leaderEpoch, startOffset: header.baseOffset });
      else if (header.leaderEpoch < latest.epoch) problem ??= `batch at offset ${header.baseOffset} has leader epoch ${header.leaderEpoch}, below ${latest.epoch} before it; skipped`;
      return true;
    });
    if (walked.problem !== null) {
      problem ??= `the walk stopped at offset ${walked.nextOffset}: ${walked.problem}`;
      break;
    }
  }
  return { entries: entries.length > leaderEpochEntriesMax ? entries.slice(entries.length - leaderEpochEntriesMax) : entries, problem };
}

// ---- The file of one partition ----

export interface LeaderEpochOpenOptions {
  /** Default node:fs. */
  fileOps?: FileOps;
  /** The log's first and next offsets: entries outside are trimmed at open. */
  logStartOffset: number;
  logEndOffset: number;
  /**
   * The list rebuilt from the log's batch headers, for a damaged file or a missing one while the
   * log has records. Without it a damaged file throws LeaderEpochFileError and a missing one is
   * an empty list.
   */
  rebuild?: () => readonly EpochEntry[];
  /** Told what open repaired. */
  log?: (message: string) => void;
}

export class LeaderEpochFile {
  private constructor(readonly filePath: string, private readonly fileOps: FileOps, private list: readonly EpochEntry[]) {}

  /** Loads (or rebuilds) and trims the list of the partition in `dir`; see the file comment. Throws the file layer's errors. */
  static open(dir: string, options: LeaderEpochOpenOptions): LeaderEpochFile {
    const fileOps = options.fileOps ?? nodeFileOps;
    const report = options.log ?? (() => {});
    const filePath = path.join(dir, leaderEpochFileName);
    const read = readListFile(fileOps, filePath);
    const hasRecords = options.logEndOffset > options.logStartOffset;
    if (read === null && !(hasRecords && options.rebuild !== undefined)) {
      const file = new LeaderEpochFile(filePath, fileOps, []);
      file.createEmpty();
      return file;
    }
    let loaded: readonly EpochEntry[];
    if (read === null) {
      loaded = options.rebuild!();
      report(`${filePath} is missing: ${loaded.length} leader epochs rebuilt from the log`);
    } else if (typeof read === 'string') {
      if (options.rebuild === undefined) throw new LeaderEpochFileError(filePath, read);
      loaded = options.rebuild();
      report(`${filePath} is invalid (${read}): ${loaded.length} leader epochs rebuilt from the log`);
    } else {
      loaded = read;
    }
    const trimmed = truncatedFromStart(truncatedFromEnd(loaded, options.logEndOffset), options.logStartOffset);
    const file = new LeaderEpochFile(filePath, fileOps, loaded);
    if (loaded === read && trimmed !== loaded) {
      report(`${filePath}: leader epochs trimmed to the log (${options.logStartOffset}..${options.logEndOffset}): ${describe(loaded)} -> ${describe(trimmed)}`);
    }
    // A rebuilt list is written even if trimming left it as it was.
    file.write(trimmed, loaded !== read);
    return file;
  }

  /** The entries, oldest first (do not modify). */
  get entries(): readonly EpochEntry[] {
    return this.list;
  }

  /** The latest epoch, or -1 when there is none. */
  get latestEpoch(): number {
    return this.list[this.list.length - 1]?.epoch ?? undefinedEpoch;
  }

  /** See the file comment; true if the list changed (and was written). LeaderEpochError, or the file layer's error with nothing changed. */
  assign(epoch: number, startOffset: number): boolean {
    return this.write(assignEntry(this.list, epoch, startOffset));
  }

  endOffsetFor(requestedEpoch: number, logEndOffset: number): EpochEndOffset {
    return endOffsetForEpoch(this.list, requestedEpoch, logEndOffset);
  }

  /** After the log was cut at `endOffset`; true if the list changed. */
  truncateFromEnd(endOffset: number): boolean {
    return this.write(truncatedFromEnd(this.list, endOffset));
  }

  /** After records before `startOffset` were deleted; true if the list changed. */
  truncateFromStart(startOffset: number): boolean {
    return this.write(truncatedFromStart(this.list, startOffset));
  }

  /** Persists `next` (unless it is the current list and not `force`), then adopts it. */
  private write(next: readonly EpochEntry[], force = false): boolean {
    if (next === this.list && !force) return false;
    replaceFile(this.fileOps, this.filePath, encodeLeaderEpochs(next), { durable: true });
    this.list = next;
    return true;
  }

  /**
   * A log without records and without the file (a new partition): write the empty list without
   * fsyncs, so the next open need not walk the log to learn that it has no epochs. Best effort:
   * if it is lost or fails, the next open rebuilds.
   */
  private createEmpty(): void {
    try {
      replaceFile(this.fileOps, this.filePath, encodeLeaderEpochs([]), { durable: false });
    } catch {
      // The rebuild covers it.
    }
  }
}

function describe(entries: readonly EpochEntry[]): string {
  const shown = entries.length <= 4 ? entries : [entries[0]!, entries[1]!, entries[entries.length - 2]!, entries[entries.length - 1]!];
  const text = shown.map((entry) => `${entry.epoch}@${entry.startOffset}`);
  if (entries.length > 4) text.splice(2, 0, '...');
  return `[${text.join(' ')}]`;
}

/** The list in the file, null if there is none, or why the file is invalid. Throws only the file layer's errors. */
function readListFile(fileOps: FileOps, filePath: string): readonly EpochEntry[] | string | null {
  let bytes: Buffer | null;
  try {
    bytes = readFileBounded(fileOps, filePath, leaderEpochFileBytesMax);
  } catch (err) {
    if (err instanceof FileTooLargeError) return `size ${err.sizeBytes} is above ${leaderEpochFileBytesMax}`;
    throw err;
  }
  return bytes === null ? null : decodeLeaderEpochs(bytes);
}
