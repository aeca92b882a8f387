/**
 * Turns file-system failures into the errors users see. Disk full is its own retriable code so
 * producers back off and retry once space returns; anything else is STORAGE_ERROR.
 */
import { RillError } from '../lib/errors.js';

const diskFullCodes = new Set(['ENOSPC', 'EDQUOT']);

export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function isDiskFull(err: unknown): boolean {
  const code = errnoOf(err);
  return code !== undefined && diskFullCodes.has(code);
}

/** For write failures: DISK_FULL when the disk is full, STORAGE_ERROR otherwise. */
export function writeError(err: unknown, what: string): RillError {
  if (err instanceof RillError) return err;
  const detail = `${what}: ${(err as Error)?.message ?? String(err)}`;
  return new RillError(isDiskFull(err) ? 'DISK_FULL' : 'STORAGE_ERROR', detail, { cause: err });
}

/** For fsync, read and metadata failures: always STORAGE_ERROR. */
export function storageError(err: unknown, what: string): RillError {
  if (err instanceof RillError) return err;
  return new RillError('STORAGE_ERROR', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
