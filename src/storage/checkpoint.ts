/**
 * The recovery-point checkpoint: the offset below which the partition's data is known to be
 * fsynced, so recovery scans only from the segment holding it. Written after a flush (at most
 * about once a second) and on close, by write-to-temp then rename (durable-file.ts). It is not
 * fsynced itself: a stale checkpoint only makes recovery scan more; a torn or garbled one fails
 * its CRC and is read as 0 (scan everything).
 *
 * The exception is lowering it: a stale checkpoint above data that has since been cut and
 * rewritten (PartitionLog.truncateTo / resetTo) would make recovery trust unsynced data, so a
 * truncation writes it durably (temp file fdatasynced, rename, directory fsynced) before it
 * changes any segment.
 *
 * Format, 20 bytes, big-endian:
 *   0  u32 magic 0x52494c52 ("RILR")
 *   4  u16 version = 1
 *   6  u16 reserved = 0
 *   8  u64 recoveryPointOffset
 *  16  u32 CRC-32C of bytes 0..15
 */
import path from 'node:path';
import { crc32c } from '../wire/crc32c.js';
import { replaceFile } from './durable-file.js';
import type { FileOps } from './file-ops.js';
import { checkpointFileName } from './segment-files.js';

const checkpointMagic = 0x52494c52;
const offsetFileVersion = 1;
export const checkpointBytes = 20;

/**
 * The 20-byte offset file both the recovery point and the log start (log-start.ts) use:
 * magic, version, reserved, u64 offset, CRC-32C of the first 16 bytes. Only the magic differs.
 */
export function encodeOffsetFile(magic: number, offset: number): Buffer {
  const bytes = Buffer.alloc(checkpointBytes);
  bytes.writeUInt32BE(magic, 0);
  bytes.writeUInt16BE(offsetFileVersion, 4);
  bytes.writeBigUInt64BE(BigInt(offset), 8);
  bytes.writeUInt32BE(crc32c(bytes.subarray(0, 16)), 16);
  return bytes;
}

/** The offset, or the reason the bytes are not a valid offset file with this magic. */
export function decodeOffsetFile(magic: number, bytes: Buffer): number | string {
  if (bytes.length !== checkpointBytes) return `size ${bytes.length} is not ${checkpointBytes}`;
  if (bytes.readUInt32BE(0) !== magic) return 'bad magic';
  if (bytes.readUInt16BE(4) !== offsetFileVersion) return `unknown version ${bytes.readUInt16BE(4)}`;
  if (bytes.readUInt32BE(16) !== crc32c(bytes.subarray(0, 16))) return 'CRC-32C mismatch';
  const offset = bytes.readBigUInt64BE(8);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) return `offset ${offset} is out of range`;
  return Number(offset);
}

export function encodeCheckpoint(recoveryPointOffset: number): Buffer {
  return encodeOffsetFile(checkpointMagic, recoveryPointOffset);
}

/** The recovery point, or the reason the bytes are not a valid checkpoint. */
export function decodeCheckpoint(bytes: Buffer): number | string {
  return decodeOffsetFile(checkpointMagic, bytes);
}

/** `durable`: only for lowering it (see the file comment); throws the file layer's error. */
export function writeCheckpoint(fileOps: FileOps, dir: string, recoveryPointOffset: number, options = { durable: false }): void {
  replaceFile(fileOps, path.join(dir, checkpointFileName), encodeCheckpoint(recoveryPointOffset), options);
}

/** Reads the checkpoint; a missing file gives 0, a bad one gives 0 and a reason. */
export function readCheckpoint(fileOps: FileOps, dir: string): { recoveryPointOffset: number; problem: string | null } {
  let bytes: Buffer;
  try {
    bytes = fileOps.readFile(path.join(dir, checkpointFileName));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return { recoveryPointOffset: 0, problem: 'no checkpoint' };
    return { recoveryPointOffset: 0, problem: `checkpoint unreadable: ${(err as Error).message}` };
  }
  const decoded = decodeCheckpoint(bytes);
  if (typeof decoded === 'string') return { recoveryPointOffset: 0, problem: `checkpoint invalid: ${decoded}` };
  return { recoveryPointOffset: decoded, problem: null };
}
