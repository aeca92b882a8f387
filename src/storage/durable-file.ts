/**
 * The one way the broker replaces a small file whole (topic definitions, producer state, the
 * log start, the recovery point, later users and ACLs): write a temporary file next to it, then
 * rename it over the old one, so a crash leaves the old file or the new one, never half of one.
 *
 *   durable: true    fdatasync the temporary file before the rename and fsync the directory
 *                    after it: once this returns, the new content survives power loss.
 *   durable: false   no fsyncs: for files that may go back to an older version after a crash
 *                    without harm (the recovery point only makes recovery scan more).
 *
 * Everything goes through FileOps, so the fault-injecting file layer reaches these files too.
 */
import path from 'node:path';
import { type FileOps, writeAllSync } from './file-ops.js';
import { tempSuffix } from './segment-files.js';

export function replaceFile(fileOps: FileOps, filePath: string, data: Uint8Array, options: { durable: boolean }): void {
  const tempPath = filePath + tempSuffix;
  try {
    fileOps.unlink(tempPath);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  const fd = fileOps.open(tempPath, 'wx+');
  try {
    writeAllSync(fileOps, fd, [data], 0, data.length);
    if (options.durable) fileOps.fdatasyncSync(fd);
  } finally {
    fileOps.close(fd);
  }
  fileOps.rename(tempPath, filePath);
  if (options.durable) fileOps.fsyncDirSync(path.dirname(filePath));
}
