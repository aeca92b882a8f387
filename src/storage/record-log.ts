/**
 * An append-only log of small records, each in a CRC-framed envelope, for state the broker
 * persists as a stream of changes (the group coordinator's log today):
 *
 *   frame = [u32 payloadBytes BE][u32 CRC-32C(payload) BE][payload]     payloadBytes in 1..max
 *
 * - open() reads every frame from the start and stops at the first one that is not whole and
 *   valid: a header or payload cut off by the end of the file, a length of 0 (a zero-filled
 *   tail, which some file systems leave after a crash, is never a frame) or over the caller's
 *   bound (checked before anything of that size is read), a CRC mismatch, or a payload the
 *   caller's parse() rejects with a DecodeError. It truncates the file there, fsyncs, and reports
 *   what it dropped. Bad bytes never make it throw; only the disk failing does (STORAGE_ERROR).
 * - append() writes the frames to the OS at once (synchronously, so appends land in call order)
 *   and resolves once they are fdatasync'd. Appends made in the same tick, or while a sync is
 *   running, share one fdatasync (group commit, group-commit.ts). A failed write cuts the file
 *   back to its last whole frame and rejects with DISK_FULL / STORAGE_ERROR; the log stays
 *   usable. A failed fdatasync rejects every append waiting on it or queued behind it, and the
 *   log refuses everything after it (after a failed fsync nothing written is known to be on
 *   disk): the owner reopens it, which keeps the whole frames.
 * - compact(payloads) replaces the whole log with `payloads` through replaceFile (temporary
 *   file, fdatasync, rename, directory fsync), so a crash leaves the old log or the new one. The
 *   caller's payloads must stand for every record appended before the call (a snapshot of the
 *   state they built). It runs synchronously, so no append can slip between the snapshot and the
 *   swap; it blocks the event loop for one fdatasync of the snapshot, which is why owners compact
 *   only when the log has grown well past its last snapshot. A failure before the rename leaves
 *   the old log whole and in use; a failed directory fsync after it fails the log until reopened
 *   (the new file's name is not known to be durable).
 *
 * Everything goes through FileOps, so fault injection reaches these files.
 */
import path from 'node:path';
import { assert } from '../lib/assert.js';
import { DecodeError, RillError } from '../lib/errors.js';
import { crc32c } from '../wire/crc32c.js';
import { DirectorySyncError, removeFileIfPresent, replaceFile } from './durable-file.js';
import { type FileOps, nodeFileOps, readAtSync, writeAllSync } from './file-ops.js';
import { GroupCommit, type FlushRound } from './group-commit.js';
import { tempSuffix } from './segment-files.js';
import { storageError, writeError } from './storage-errors.js';

export const recordFrameHeaderBytes = 8;
const readChunkBytes = 1024 * 1024;

export interface RecordLogOptions<T> {
  /** Largest payload a frame may hold; a frame claiming more ends the log at open. */
  payloadBytesMax: number;
  /**
   * Decodes one payload, or throws DecodeError when the bytes are not a record (the log then
   * ends before that frame). `payload` is only valid during the call: copy what you keep.
   */
  parse: (payload: Buffer) => T;
  /** Default node:fs. */
  fileOps?: FileOps;
}

export interface DroppedTail {
  bytes: number;
  reason: string;
}

export interface RecordLogOpened<T> {
  log: RecordLog;
  records: T[];
  /** The damaged tail that open() cut off, or null. */
  dropped: DroppedTail | null;
}

/** One frame around `payload` (1..payloadBytesMax bytes: the caller's records are bounded). */
export function encodeRecordFrame(payload: Uint8Array, payloadBytesMax: number): Buffer {
  assert(payload.length >= 1 && payload.length <= payloadBytesMax, `record of ${payload.length} bytes is outside 1..${payloadBytesMax}`);
  const frame = Buffer.allocUnsafe(recordFrameHeaderBytes + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt32BE(crc32c(payload), 4);
  frame.set(payload, recordFrameHeaderBytes);
  return frame;
}

export interface FramesRead<T> {
  records: T[];
  /** Bytes from the start of the file that hold whole, valid frames. */
  validBytes: number;
  /** Why reading stopped before the end of the file; null if every byte was a valid frame. */
  problem: string | null;
}

/** A read window over [0, fileBytes) of one file, at most max(readChunkBytes, one frame) in memory. */
class FrameWindow {
  private buf = Buffer.alloc(0);
  private startBytes = 0;

  constructor(private readonly fileOps: FileOps, private readonly fd: number, private readonly fileBytes: number) {}

  /** The bytes [position, position + lengthBytes), or null if the file ends before. */
  bytesAt(positionBytes: number, lengthBytes: number): Buffer | null {
    const at = positionBytes - this.startBytes;
    if (at >= 0 && at + lengthBytes <= this.buf.length) return this.buf.subarray(at, at + lengthBytes);
    if (positionBytes + lengthBytes > this.fileBytes) return null;
    const wantBytes = Math.min(this.fileBytes - positionBytes, Math.max(readChunkBytes, lengthBytes));
    const buf = Buffer.allocUnsafe(wantBytes);
    const readBytes = readAtSync(this.fileOps, this.fd, buf, wantBytes, positionBytes);
    this.buf = buf.subarray(0, readBytes);
    this.startBytes = positionBytes;
    return readBytes >= lengthBytes ? this.buf.subarray(0, lengthBytes) : null;
  }
}

/**
 * Reads frames from the start of `fd` (a file of `fileBytes`) up to the first invalid one.
 * Throws only what the file layer or `parse` throws other than DecodeError.
 */
export function readRecordFrames<T>(fileOps: FileOps, fd: number, fileBytes: number, payloadBytesMax: number, parse: (payload: Buffer) => T): FramesRead<T> {
  const window = new FrameWindow(fileOps, fd, fileBytes);
  const records: T[] = [];
  let positionBytes = 0;
  const stop = (problem: string): FramesRead<T> => ({ records, validBytes: positionBytes, problem });
  while (positionBytes < fileBytes) {
    const header = window.bytesAt(positionBytes, recordFrameHeaderBytes);
    if (header === null) return stop(`torn frame header at byte ${positionBytes}`);
    const payloadBytes = header.readUInt32BE(0);
    const expectedCrc = header.readUInt32BE(4);
    if (payloadBytes === 0 || payloadBytes > payloadBytesMax) {
      return stop(`frame length ${payloadBytes} at byte ${positionBytes} is outside 1..${payloadBytesMax}`);
    }
    const frame = window.bytesAt(positionBytes, recordFrameHeaderBytes + payloadBytes);
    if (frame === null) return stop(`torn frame at byte ${positionBytes}: ${payloadBytes} payload bytes claimed, ${fileBytes - positionBytes - recordFrameHeaderBytes} left`);
    const payload = frame.subarray(recordFrameHeaderBytes);
    if (crc32c(payload) !== expectedCrc) return stop(`CRC-32C mismatch in frame at byte ${positionBytes}`);
    try {
      records.push(parse(payload));
    } catch (err) {
      if (err instanceof DecodeError) return stop(`frame at byte ${positionBytes}: ${err.message}`);
      throw err;
    }
    positionBytes += frame.length;
  }
  return { records, validBytes: positionBytes, problem: null };
}

export class RecordLog {
  private endBytes: number;
  /** Bytes appended over the life of this object, across compactions: group-commit targets. */
  private appendedBytes = 0;
  private failure: RillError | null = null;
  private closed = false;
  private readonly groupCommit: GroupCommit;
  /** Descriptors replaced by a compaction, closed once no sync round can use them. */
  private retiredFds: number[] = [];
  /** fdatasync calls made for appends (tests check that concurrent appends share them). */
  syncCount = 0;

  private constructor(
    readonly filePath: string,
    private readonly fileOps: FileOps,
    private readonly payloadBytesMax: number,
    private fd: number,
    sizeBytes: number,
  ) {
    this.endBytes = sizeBytes;
    this.groupCommit = new GroupCommit(() => this.beginSyncRound());
  }

  /** Opens (creating it and its directory) the log at `filePath`; see the file comment. */
  static open<T>(filePath: string, options: RecordLogOptions<T>): RecordLogOpened<T> {
    const fileOps = options.fileOps ?? nodeFileOps;
    let fd: number;
    try {
      // A crash during compaction leaves the temporary file; the log it would have replaced is whole.
      fileOps.mkdirp(path.dirname(filePath));
      removeFileIfPresent(fileOps, filePath + tempSuffix);
      fd = openOrCreate(fileOps, filePath);
    } catch (err) {
      throw storageError(err, `cannot open ${filePath}`);
    }
    try {
      const fileBytes = fileOps.fileSizeBytes(fd);
      const read = readRecordFrames(fileOps, fd, fileBytes, options.payloadBytesMax, options.parse);
      let dropped: DroppedTail | null = null;
      if (read.validBytes < fileBytes) {
        dropped = { bytes: fileBytes - read.validBytes, reason: read.problem ?? 'invalid tail' };
        fileOps.ftruncate(fd, read.validBytes);
        fileOps.fdatasyncSync(fd);
      }
      return { log: new RecordLog(filePath, fileOps, options.payloadBytesMax, fd, read.validBytes), records: read.records, dropped };
    } catch (err) {
      try {
        fileOps.close(fd);
      } catch {
        // Reporting the first failure.
      }
      throw storageError(err, `cannot read ${filePath}`);
    }
  }

  /** Bytes of whole frames in the file now. */
  get sizeBytes(): number {
    return this.endBytes;
  }

  /** Resolves once the payloads are on disk (fdatasync'd); see the file comment for failures. */
  append(payloads: readonly Uint8Array[]): Promise<void> {
    if (payloads.length === 0) return Promise.resolve();
    try {
      this.checkUsable();
      const frames = payloads.map((payload) => encodeRecordFrame(payload, this.payloadBytesMax));
      const totalBytes = frames.reduce((sum, frame) => sum + frame.length, 0);
      this.write(frames, totalBytes);
    } catch (err) {
      return Promise.reject(err);
    }
    const targetBytes = this.appendedBytes;
    // One microtask first, so that every append of this tick is written before the sync starts.
    return Promise.resolve().then(() => this.groupCommit.request(targetBytes));
  }

  /**
   * Replaces the log with `payloads` (durably) and appends after them from now on. Throws
   * DISK_FULL / STORAGE_ERROR with the old log left as it was and usable, or, if only the
   * directory fsync after the rename failed, with the log failed until reopened.
   */
  compact(payloads: readonly Uint8Array[]): void {
    this.checkUsable();
    const frames = payloads.map((payload) => encodeRecordFrame(payload, this.payloadBytesMax));
    const bytes = Buffer.concat(frames);
    try {
      replaceFile(this.fileOps, this.filePath, bytes, { durable: true });
    } catch (err) {
      // After the rename this object's descriptor is the old, unlinked file, and the new one's
      // name is not known to be durable: refuse until reopened. Before it, the old log is whole.
      if (err instanceof DirectorySyncError) throw this.fail(storageError(err, `compacting ${this.filePath}`));
      throw writeError(err, `compacting ${this.filePath}`);
    }
    let fd: number;
    try {
      fd = this.fileOps.open(this.filePath, 'r+');
    } catch (err) {
      // The new log is in place but this object cannot append to it: the owner must reopen.
      throw this.fail(storageError(err, `reopening ${this.filePath} after compaction`));
    }
    this.retiredFds.push(this.fd);
    this.fd = fd;
    this.endBytes = bytes.length;
    void this.groupCommit.whenIdle().then(() => this.closeRetiredFds());
  }

  /** Waits for running syncs, then closes the file. Later appends and compactions fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.groupCommit.whenIdle();
    this.closeRetiredFds();
    this.fileOps.close(this.fd);
  }

  private checkUsable(): void {
    if (this.closed) throw new RillError('STORAGE_ERROR', `${this.filePath} is closed`);
    if (this.failure !== null) throw this.failure;
  }

  private write(frames: readonly Buffer[], totalBytes: number): void {
    try {
      writeAllSync(this.fileOps, this.fd, frames, this.endBytes, totalBytes);
    } catch (err) {
      this.cutBack();
      throw writeError(err, `appending ${totalBytes} bytes to ${this.filePath}`);
    }
    this.endBytes += totalBytes;
    this.appendedBytes += totalBytes;
  }

  /** After a failed write: remove the partial frame, so the file holds whole frames only. */
  private cutBack(): void {
    try {
      this.fileOps.ftruncate(this.fd, this.endBytes);
    } catch (err) {
      // A partial frame may follow the last whole one; appending after it would hide later frames
      // from the next open. Refuse until reopened (open cuts the partial frame off).
      this.fail(storageError(err, `cutting back a failed write to ${this.filePath}`));
    }
  }

  private beginSyncRound(): FlushRound {
    const fd = this.fd;
    const run = async (): Promise<void> => {
      // A round queued behind a failed one must not report anything durable.
      if (this.failure !== null) throw this.failure;
      this.syncCount++;
      try {
        await this.fileOps.fdatasync(fd);
      } catch (err) {
        throw this.fail(storageError(err, `fdatasync of ${this.filePath}`));
      }
    };
    return { targetOffset: this.appendedBytes, run };
  }

  private fail(failure: RillError): RillError {
    this.failure ??= failure;
    return this.failure;
  }

  private closeRetiredFds(): void {
    if (this.groupCommit.busy) return;
    for (const fd of this.retiredFds.splice(0)) {
      try {
        this.fileOps.close(fd);
      } catch {
        // The file was replaced; nothing depends on this descriptor.
      }
    }
  }
}

/** Opens an existing log for appending, or creates it and makes its name durable. */
function openOrCreate(fileOps: FileOps, filePath: string): number {
  try {
    return fileOps.open(filePath, 'r+');
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  const fd = fileOps.open(filePath, 'wx+');
  try {
    fileOps.fsyncDirSync(path.dirname(filePath));
    fileOps.fsyncDirSync(path.dirname(path.dirname(filePath)));
  } catch (err) {
    fileOps.close(fd);
    throw err;
  }
  return fd;
}
