/**
 * The log-start checkpoint: the partition's log start offset as moved by DeleteRecords. Records
 * below it are deleted for good, so unlike the recovery point this file must never go back: it
 * is replaced durably (temp file, fsync, rename, fsync directory) through FileOps before any
 * segment is deleted or any reader is told the new start. A crash leaves the old or the new
 * file whole; the open that follows deletes the segments the new start covers.
 *
 * Format, 20 bytes, big-endian:
 *   0  u32 magic 0x52494c53 ("RILS")
 *   4  u16 version = 1
 *   6  u16 reserved = 0
 *   8  u64 logStartOffset
 *  16  u32 CRC-32C of bytes 0..15
 */
import path from 'node:path';
import { crc32c } from '../wire/crc32c.js';
import { type FileOps, writeAllSync } from './file-ops.js';
import { logStartFileName, tempSuffix } from './segment-files.js';

const logStartMagic = 0x52494c53;
const logStartVersion = 1;
export const logStartFileBytes = 20;

export function encodeLogStart(logStartOffset: number): Buffer {
  const bytes = Buffer.alloc(logStartFileBytes);
  bytes.writeUInt32BE(logStartMagic, 0);
  bytes.writeUInt16BE(logStartVersion, 4);
  bytes.writeBigUInt64BE(BigInt(logStartOffset), 8);
  bytes.writeUInt32BE(crc32c(bytes.subarray(0, 16)), 16);
  return bytes;
}

/** The offset, or the reason the bytes are not a valid log-start file. */
export function decodeLogStart(bytes: Buffer): number | string {
  if (bytes.length !== logStartFileBytes) return `size ${bytes.length} is not ${logStartFileBytes}`;
  if (bytes.readUInt32BE(0) !== logStartMagic) return 'bad magic';
  if (bytes.readUInt16BE(4) !== logStartVersion) return `unknown version ${bytes.readUInt16BE(4)}`;
  if (bytes.readUInt32BE(16) !== crc32c(bytes.subarray(0, 16))) return 'CRC-32C mismatch';
  const offset = bytes.readBigUInt64BE(8);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) return `offset ${offset} is out of range`;
  return Number(offset);
}

/** Durable replace; throws the file layer's error (the caller maps it to STORAGE_ERROR / DISK_FULL). */
export function writeLogStart(fileOps: FileOps, dir: string, logStartOffset: number): void {
  const finalPath = path.join(dir, logStartFileName);
  const tempPath = finalPath + tempSuffix;
  removeIfPresent(fileOps, tempPath);
  const bytes = encodeLogStart(logStartOffset);
  const fd = fileOps.open(tempPath, 'wx+');
  try {
    writeAllSync(fileOps, fd, [bytes], 0, bytes.length);
    fileOps.fdatasyncSync(fd);
  } finally {
    fileOps.close(fd);
  }
  fileOps.rename(tempPath, finalPath);
  fileOps.fsyncDirSync(dir);
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

function removeIfPresent(fileOps: FileOps, filePath: string): void {
  try {
    fileOps.unlink(filePath);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
}
