/**
 * Names of the files in a partition directory:
 *
 *   00000000000000001234.log     segment holding batches from base offset 1234
 *   00000000000000001234.index   its sparse offset index (a cache, rebuildable)
 *   recovery-point               checkpoint of the flushed offset (checkpoint.ts)
 *   log-start-offset             the log start offset moved by DeleteRecords (log-start.ts)
 *   leader-epoch-checkpoint      which leader epoch wrote which offsets (leader-epoch-file.ts)
 *   *.tmp                        a write-then-rename in progress; leftovers are deleted on open
 *
 * Anything else is ignored and reported, never deleted: it is not ours.
 */
import path from 'node:path';

export const baseOffsetDigits = 20;
export const logSuffix = '.log';
export const indexSuffix = '.index';
export const tempSuffix = '.tmp';
export const checkpointFileName = 'recovery-point';
export const logStartFileName = 'log-start-offset';
export const leaderEpochFileName = 'leader-epoch-checkpoint';

const logNamePattern = /^(\d{20})\.log$/;
const indexNamePattern = /^(\d{20})\.index$/;

export function segmentFileStem(baseOffset: number): string {
  return String(baseOffset).padStart(baseOffsetDigits, '0');
}

export function logPath(dir: string, baseOffset: number): string {
  return path.join(dir, segmentFileStem(baseOffset) + logSuffix);
}

export function indexPath(dir: string, baseOffset: number): string {
  return path.join(dir, segmentFileStem(baseOffset) + indexSuffix);
}

export interface DirectoryListing {
  /** Base offsets of `.log` files, ascending. */
  segmentBaseOffsets: number[];
  /** Base offsets that have an `.index` file. */
  indexBaseOffsets: Set<number>;
  tempFiles: string[];
  /** Files we do not recognise, with the reason (e.g. a `.log` whose name is not 20 digits). */
  ignoredFiles: string[];
}

function parseBaseOffset(digits: string): number | undefined {
  const value = Number(digits);
  return Number.isSafeInteger(value) ? value : undefined;
}

export function classifyDirectory(names: readonly string[]): DirectoryListing {
  const listing: DirectoryListing = { segmentBaseOffsets: [], indexBaseOffsets: new Set(), tempFiles: [], ignoredFiles: [] };
  for (const name of names) {
    const logMatch = logNamePattern.exec(name);
    const indexMatch = indexNamePattern.exec(name);
    const baseOffset = parseBaseOffset((logMatch ?? indexMatch)?.[1] ?? '');
    if (logMatch && baseOffset !== undefined) listing.segmentBaseOffsets.push(baseOffset);
    else if (indexMatch && baseOffset !== undefined) listing.indexBaseOffsets.add(baseOffset);
    else if (name.endsWith(tempSuffix)) listing.tempFiles.push(name);
    else if (name !== checkpointFileName && name !== logStartFileName && name !== leaderEpochFileName) listing.ignoredFiles.push(name);
  }
  listing.segmentBaseOffsets.sort((a, b) => a - b);
  return listing;
}
