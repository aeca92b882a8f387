/**
 * The log-start checkpoint: the partition's log start offset as moved by DeleteRecords. Records
 * below it are deleted for good, so unlike the recovery point this file must never go back: it
 * is replaced durably (temp file, fsync, rename, fsync directory) through FileOps before any
 * segment is deleted or any reader is told the new start. A crash leaves the old or the new
 * file whole; the open that follows deletes the segments the new start covers.
 *
 * The one exception is PartitionLog.resetTo: a replica that throws its whole log away and starts
 * again where its leader's log starts, which may be below its own old start. It deletes every
 * segment before writing the new start, so no old record is ever served under the new start.
 *
 * Format: the 20-byte offset file of checkpoint.ts with magic 0x52494c53 ("RILS").
 */
import path from 'node:path';
import { checkpointBytes, decodeOffsetFile, encodeOffsetFile } from './checkpoint.js';
import { replaceFile } from './durable-file.js';
import type { FileOps } from './file-ops.js';
import { logStartFileName } from './segment-files.js';

const logStartMagic = 0x52494c53;
export const logStartFileBytes = checkpointBytes;

export function encodeLogStart(logStartOffset: number): Buffer {
  return encodeOffsetFile(logStartMagic, logStartOffset);
}

/** The offset, or the reason the bytes are not a valid log-start file. */
export function decodeLogStart(bytes: Buffer): number | string {
  return decodeOffsetFile(logStartMagic, bytes);
}

/** Durable replace; throws the file layer's error (the caller maps it to STORAGE_ERROR / DISK_FULL). */
export function writeLogStart(fileOps: FileOps, dir: string, logStartOffset: number): void {
  replaceFile(fileOps, path.join(dir, logStartFileName), encodeLogStart(logStartOffset), { durable: true });
}

/**
 * 0 when there is no file (nothing was ever deleted). A file that fails its checks gives 0 and a
 * reason (the log then starts at its first segment: deleted records may reappear, but no data is
 * lost); one that cannot be read at all throws, so the log does not open with a wrong start.
 */
export function readLogStart(fileOps: FileOps, dir: string): { logStartOffset: number; problem: string | null } {
  let bytes: Buffer;
  try {
    bytes = fileOps.readFile(path.join(dir, logStartFileName));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return { logStartOffset: 0, problem: null };
    throw err;
  }
  const decoded = decodeLogStart(bytes);
  if (typeof decoded === 'string') return { logStartOffset: 0, problem: `log-start file invalid: ${decoded}` };
  return { logStartOffset: decoded, problem: null };
}
