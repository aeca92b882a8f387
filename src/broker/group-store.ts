/**
 * The durable log of the group coordinator: `<dataDir>/__groups/groups.log`, an append-only file
 * of frames
 *
 *   [u32 payloadLength BE][u32 crc32c(payload) BE][payload = MessagePack GroupRecord]
 *
 * - append() resolves after the bytes are fdatasync'd. Appends that arrive while a write is in
 *   flight are batched into the next write and share one fdatasync (group commit).
 * - open() reads every frame, stops at the first invalid one (length 0 or over
 *   groupRecordBytesMax, past the end of the file, CRC mismatch, undecodable or not a
 *   GroupRecord), truncates the file there and reports what it dropped. It never throws on bad
 *   bytes; it throws RillError STORAGE_ERROR only when the disk itself fails.
 * - compact(snapshot) writes the snapshot to groups.log.tmp, fsyncs it, renames it over
 *   groups.log and fsyncs the directory, so a crash leaves either the old or the new log whole.
 *   It is ordered with appends: appends queued before it land in the old file, later ones in
 *   the new file. shouldCompact() says when the log has outgrown its last snapshot.
 */
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { assert } from '../lib/assert.js';
import { DecodeError, RillError } from '../lib/errors.js';
import { groupLogCompactBytesMin, groupLogCompactRatio, groupRecordBytesMax } from '../lib/limits.js';
import { parseGroupRecord, type GroupRecord } from '../coordinator/records.js';
import { decodeMsgpack, encodeMsgpack } from '../wire/msgpack.js';

// fast-crc32c ships no type declarations; this is the one function we use.
const crc32c = createRequire(import.meta.url)('fast-crc32c') as { calculate(data: Buffer, initial?: number): number };

const frameHeaderBytes = 8;
const readChunkBytes = 1024 * 1024;
const logFileName = 'groups.log';
const tmpFileName = 'groups.log.tmp';

export interface DroppedTail {
  bytes: number;
  reason: string;
}

export interface GroupStoreOpened {
  store: GroupStore;
  records: GroupRecord[];
  dropped: DroppedTail | null;
}

export function encodeFrame(record: GroupRecord): Buffer {
  const payload = encodeMsgpack(record);
  assert(payload.length <= groupRecordBytesMax, `group record of ${payload.length} bytes exceeds groupRecordBytesMax`);
  const header = Buffer.allocUnsafe(frameHeaderBytes);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt32BE(crc32c.calculate(payload) >>> 0, 4);
  return Buffer.concat([header, payload]);
}

type FrameResult =
  | { kind: 'record'; record: GroupRecord; frameBytes: number }
  | { kind: 'need'; bytes: number }
  | { kind: 'invalid'; reason: string };

/**
 * Decodes the frame at `offset` in `buffer`, which holds the file from byte `filePosition`
 * (for messages) with `fileBytesLeft` bytes of file from there on.
 */
function decodeFrame(buffer: Buffer, offset: number, fileBytesLeft: number, filePosition: number): FrameResult {
  if (fileBytesLeft < frameHeaderBytes) return { kind: 'invalid', reason: `torn frame header at byte ${filePosition}` };
  if (buffer.length - offset < frameHeaderBytes) return { kind: 'need', bytes: frameHeaderBytes };
  const payloadBytes = buffer.readUInt32BE(offset);
  if (payloadBytes === 0 || payloadBytes > groupRecordBytesMax) {
    return { kind: 'invalid', reason: `frame length ${payloadBytes} at byte ${filePosition} is outside 1..${groupRecordBytesMax}` };
  }
  const frameBytes = frameHeaderBytes + payloadBytes;
  if (frameBytes > fileBytesLeft) return { kind: 'invalid', reason: `torn frame at byte ${filePosition}` };
  if (buffer.length - offset < frameBytes) return { kind: 'need', bytes: frameBytes };
  const payload = buffer.subarray(offset + frameHeaderBytes, offset + frameBytes);
  if (crc32c.calculate(payload) >>> 0 !== buffer.readUInt32BE(offset + 4)) {
    return { kind: 'invalid', reason: `CRC-32C mismatch in frame at byte ${filePosition}` };
  }
  try {
    return { kind: 'record', record: parseGroupRecord(decodeMsgpack(payload, 'CORRUPT_LOG')), frameBytes };
  } catch (error) {
    if (error instanceof DecodeError) return { kind: 'invalid', reason: `frame at byte ${filePosition}: ${error.message}` };
    throw error;
  }
}

interface FramesRead {
  records: GroupRecord[];
  validBytes: number;
  reason: string | null;
}

/** Reads frames in chunks of at least 1 MiB; stops at the first invalid frame. */
async function readFrames(file: FileHandle, fileBytes: number): Promise<FramesRead> {
  const records: GroupRecord[] = [];
  let buffer = Buffer.alloc(0);
  let bufferStart = 0; // file position of buffer[0]
  let position = 0;
  while (position < fileBytes) {
    const result = decodeFrame(buffer, position - bufferStart, fileBytes - position, position);
    if (result.kind === 'invalid') return { records, validBytes: position, reason: result.reason };
    if (result.kind === 'record') {
      records.push(result.record);
      position += result.frameBytes;
      continue;
    }
    // result.bytes is bounded: frame lengths were checked against groupRecordBytesMax and the file size.
    const bufferedEnd = bufferStart + buffer.length;
    const wantBytes = Math.min(fileBytes - bufferedEnd, Math.max(readChunkBytes, result.bytes));
    const chunk = Buffer.allocUnsafe(wantBytes);
    const { bytesRead } = await file.read(chunk, 0, wantBytes, bufferedEnd);
    if (bytesRead === 0) return { records, validBytes: position, reason: `file ended early at byte ${bufferedEnd}` };
    buffer = Buffer.concat([buffer.subarray(position - bufferStart), chunk.subarray(0, bytesRead)]);
    bufferStart = position;
  }
  return { records, validBytes: position, reason: null };
}

function storageError(what: string, error: unknown): RillError {
  return new RillError('STORAGE_ERROR', `group log: ${what}: ${(error as Error).message}`, { cause: error });
}

interface QueuedAppend {
  kind: 'append';
  frames: Buffer[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface QueuedCompaction {
  kind: 'compact';
  snapshot: readonly GroupRecord[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class GroupStore {
  /** fdatasync calls made by appends; tests use it to see that concurrent appends share one. */
  appendSyncCount = 0;
  private logBytes: number;
  /** Size of the log right after the last compaction (0 before the first one). */
  private compactedBytes = 0;
  private readonly queue: (QueuedAppend | QueuedCompaction)[] = [];
  private draining: Promise<void> | null = null;
  private failure: RillError | null = null;
  private closed = false;

  private constructor(
    private readonly dir: string,
    private file: FileHandle,
    logBytes: number,
  ) {
    this.logBytes = logBytes;
  }

  /** Opens (creating) `<dataDir>/__groups/groups.log`, truncating any invalid tail. */
  static async open(dataDir: string): Promise<GroupStoreOpened> {
    const dir = join(dataDir, '__groups');
    const path = join(dir, logFileName);
    let file: FileHandle;
    try {
      await mkdir(dir, { recursive: true });
      // A crash during compaction leaves a tmp file; the log it would have replaced is intact.
      await rm(join(dir, tmpFileName), { force: true });
      file = await open(path, 'a+');
    } catch (error) {
      throw storageError(`cannot open ${path}`, error);
    }
    try {
      const fileBytes = (await file.stat()).size;
      const { records, validBytes, reason } = await readFrames(file, fileBytes);
      let dropped: DroppedTail | null = null;
      if (validBytes < fileBytes) {
        dropped = { bytes: fileBytes - validBytes, reason: reason ?? 'invalid tail' };
        await file.truncate(validBytes);
        await file.sync();
      }
      return { store: new GroupStore(dir, file, validBytes), records, dropped };
    } catch (error) {
      await file.close().catch(() => undefined);
      throw error instanceof RillError ? error : storageError(`cannot read ${path}`, error);
    }
  }

  get sizeBytes(): number {
    return this.logBytes;
  }

  /** True when the log is over groupLogCompactBytesMin and groupLogCompactRatio x its last snapshot. */
  shouldCompact(): boolean {
    return this.logBytes > groupLogCompactBytesMin && this.logBytes > groupLogCompactRatio * this.compactedBytes;
  }

  /** Resolves once the records are on disk (fdatasync'd). Rejects with STORAGE_ERROR. */
  append(records: readonly GroupRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    const frames = records.map(encodeFrame);
    return new Promise((resolve, reject) => {
      this.queue.push({ kind: 'append', frames, resolve, reject });
      void this.drain();
    });
  }

  /** Replaces the log with `snapshot` (taken from the coordinator at the time of the call). */
  compact(snapshot: readonly GroupRecord[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ kind: 'compact', snapshot, resolve, reject });
      void this.drain();
    });
  }

  /** Waits for queued work, then closes the file. Later appends and compactions reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.draining !== null) await this.draining;
    this.closed = true;
    await this.file.close();
  }

  private drain(): Promise<void> {
    this.draining ??= this.runQueue().finally(() => {
      this.draining = null;
      if (this.queue.length > 0) void this.drain();
    });
    return this.draining;
  }

  private async runQueue(): Promise<void> {
    // Yield once so that appends issued in the same tick join the first write (group commit).
    await Promise.resolve();
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (next.kind === 'compact') {
        this.queue.shift();
        await this.settle([next], () => this.writeCompaction(next.snapshot));
      } else {
        const batch = this.takeAppends();
        await this.settle(batch, () => this.writeAppends(batch));
      }
    }
  }

  /** Every append queued before the next compaction: they share one write and one fdatasync. */
  private takeAppends(): QueuedAppend[] {
    const batch: QueuedAppend[] = [];
    while (this.queue.length > 0 && this.queue[0]!.kind === 'append') batch.push(this.queue.shift() as QueuedAppend);
    return batch;
  }

  /**
   * After a failed write the file may hold a partial frame; every later operation fails until
   * the broker reopens the store (which truncates the torn tail).
   */
  private async settle(waiters: readonly (QueuedAppend | QueuedCompaction)[], work: () => Promise<void>): Promise<void> {
    try {
      if (this.closed) throw new RillError('STORAGE_ERROR', 'group log is closed');
      if (this.failure !== null) throw this.failure;
      await work();
      for (const waiter of waiters) waiter.resolve();
    } catch (error) {
      const failure = error instanceof RillError ? error : storageError('write failed', error);
      this.failure ??= failure;
      for (const waiter of waiters) waiter.reject(failure);
    }
  }

  private async writeAppends(batch: readonly QueuedAppend[]): Promise<void> {
    const bytes = Buffer.concat(batch.flatMap((append) => append.frames));
    await writeFully(this.file, bytes, null);
    await this.file.datasync();
    this.appendSyncCount += 1;
    this.logBytes += bytes.length;
  }

  private async writeCompaction(snapshot: readonly GroupRecord[]): Promise<void> {
    const tmpPath = join(this.dir, tmpFileName);
    const bytes = Buffer.concat(snapshot.map(encodeFrame));
    const tmp = await open(tmpPath, 'w');
    try {
      await writeFully(tmp, bytes, 0);
      await tmp.sync();
    } finally {
      await tmp.close();
    }
    await rename(tmpPath, join(this.dir, logFileName));
    await syncDirectory(this.dir);
    await this.file.close();
    this.file = await open(join(this.dir, logFileName), 'a+');
    this.logBytes = bytes.length;
    this.compactedBytes = bytes.length;
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** position null = append at the end (the file is opened in append mode). */
async function writeFully(file: FileHandle, bytes: Buffer, position: number | null): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const { bytesWritten } = await file.write(bytes, written, bytes.length - written, position === null ? null : position + written);
    if (bytesWritten === 0) throw new RillError('STORAGE_ERROR', 'group log: write made no progress');
    written += bytesWritten;
  }
}
