/**
 * The one way the broker replaces a small file whole (topic definitions, producer state and
 * ids, the recovery point, the log start, offset indexes, leader epochs, users and ACLs, the
 * clean-shutdown marker): write a temporary file next to it, then rename it over the old one,
 * so a crash leaves the old file or the new one, never half of one.
 *
 *   durable: true    fdatasync the temporary file before the rename and fsync the directory
 *                    after it: once this returns, the new content survives power loss.
 *   durable: false   no fsyncs: for files that may go back to an older version after a crash
 *                    without harm (the recovery point only makes recovery scan more).
 *
 * A failure before the rename leaves the old file as it was (the temporary file is removed when
 * possible; the next replace or open removes it otherwise). A failure of the directory fsync
 * comes after the rename: the new content is in place but not known to be durable, and it is
 * thrown as a DirectorySyncError. Callers change their in-memory state only after this returns.
 *
 * Without fsyncs the temporary file is written with one FileOps.writeFile call (fault op
 * 'writeFile'); a durable replace opens it to fdatasync it (fault ops 'open', 'writev',
 * 'fdatasync', then 'rename' and 'fsyncDir').
 *
 * Appending logs of small records (the group log) use record-log.ts instead. Everything goes
 * through FileOps, so the fault-injecting file layer reaches these files too.
 */
import path from 'node:path';
import { type FileOps, readAtSync, writeAllSync } from './file-ops.js';
import { tempSuffix } from './segment-files.js';

export function replaceFile(fileOps: FileOps, filePath: string, data: Uint8Array, options: { durable: boolean }): void {
  const tempPath = filePath + tempSuffix;
  try {
    if (options.durable) writeSyncedFile(fileOps, tempPath, data);
    else fileOps.writeFile(tempPath, data);
    fileOps.rename(tempPath, filePath);
  } catch (err) {
    // A temporary file is never read (open paths delete *.tmp); remove it now if we can.
    try {
      removeFileIfPresent(fileOps, tempPath);
    } catch {
      // Reporting the first failure.
    }
    throw err;
  }
  if (!options.durable) return;
  try {
    fileOps.fsyncDirSync(path.dirname(filePath));
  } catch (err) {
    throw new DirectorySyncError(filePath, err);
  }
}

/**
 * replaceFile's directory fsync failed after the rename: the new content is in place but not
 * known to survive a crash (the old file may come back). Carries the cause's errno as `code`.
 */
export class DirectorySyncError extends Error {
  override name = 'DirectorySyncError';
  readonly code: string | undefined;
  constructor(readonly filePath: string, cause: unknown) {
    super(`${filePath} was replaced, but the fsync of its directory failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    const code = (cause as { code?: unknown } | null)?.code;
    this.code = typeof code === 'string' ? code : undefined;
  }
}

/** Creates `filePath` afresh with `data` and fdatasyncs it. */
function writeSyncedFile(fileOps: FileOps, filePath: string, data: Uint8Array): void {
  removeFileIfPresent(fileOps, filePath);
  const fd = fileOps.open(filePath, 'wx+');
  try {
    writeAllSync(fileOps, fd, [data], 0, data.length);
    fileOps.fdatasyncSync(fd);
  } finally {
    fileOps.close(fd);
  }
}

/** Unlinks `filePath`; no error if it does not exist. */
export function removeFileIfPresent(fileOps: FileOps, filePath: string): void {
  try {
    fileOps.unlink(filePath);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
}

/** A file larger than its bound: never read into memory. */
export class FileTooLargeError extends Error {
  override name = 'FileTooLargeError';
  constructor(readonly filePath: string, readonly sizeBytes: number, readonly bytesMax: number) {
    super(`${filePath} is ${sizeBytes} bytes, more than the ${bytesMax} allowed`);
  }
}

/**
 * Reads a whole small file: null if it does not exist, FileTooLargeError (before allocating
 * anything) if it is larger than `bytesMax`, the file layer's error otherwise.
 */
export function readFileBounded(fileOps: FileOps, filePath: string, bytesMax: number): Buffer | null {
  let fd: number;
  try {
    fd = fileOps.open(filePath, 'r');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const sizeBytes = fileOps.fileSizeBytes(fd);
    if (sizeBytes > bytesMax) throw new FileTooLargeError(filePath, sizeBytes, bytesMax);
    const bytes = Buffer.alloc(sizeBytes);
    const readBytes = readAtSync(fileOps, fd, bytes, sizeBytes, 0);
    return readBytes === sizeBytes ? bytes : bytes.subarray(0, readBytes);
  } finally {
    fileOps.close(fd);
  }
}

/**
 * A small JSON file (users, ACLs) read whole and parsed: `{ value }`, or null when the file does
 * not exist (a file holding `null` is a value, not an absence). A file that cannot be read goes to
 * `unreadable`; one larger than `bytesMax` or not JSON goes to `invalid`. The caller validates
 * the shape.
 */
export function readJsonFile(fileOps: FileOps, filePath: string, bytesMax: number, fail: { unreadable(message: string): never; invalid(reason: string): never }): { value: unknown } | null {
  let bytes: Buffer | null;
  try {
    bytes = readFileBounded(fileOps, filePath, bytesMax);
  } catch (error) {
    if (error instanceof FileTooLargeError) return fail.invalid(`${error.sizeBytes} bytes, at most ${bytesMax}`);
    return fail.unreadable((error as Error).message);
  }
  if (bytes === null) return null;
  try {
    return { value: JSON.parse(bytes.toString('utf8')) as unknown };
  } catch {
    return fail.invalid('not JSON');
  }
}
