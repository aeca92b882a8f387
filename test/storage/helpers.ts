/** Shared helpers for the storage tests: temp directories, batches, configs. */
import fs from 'node:fs';
import { expect } from 'vitest';
import { RillError } from '../../src/lib/errors.js';
import os from 'node:os';
import path from 'node:path';
import type { TopicConfig } from '../../src/wire/control.js';
import { encodeBatch, readLastOffsetDelta, readMaxTimestamp } from '../../src/wire/record-batch.js';
import { PartitionLog, type PartitionLogOptions } from '../../src/storage/partition-log.js';

const created: string[] = [];

export function tempDir(label = 'rill-storage'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${label}-`));
  created.push(dir);
  return path.join(dir, 'topic-0');
}

export function removeTempDirs(): void {
  for (const dir of created.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

export function testConfig(overrides: Partial<TopicConfig> = {}): TopicConfig {
  return { retentionMs: -1, retentionBytes: -1, segmentBytes: 1024 * 1024, segmentMs: Number.MAX_SAFE_INTEGER, flushMessages: -1, flushMs: -1, minInSyncReplicas: 1, uncleanLeaderElection: 0, ...overrides };
}

/** A batch of `recordsCount` records with `valueBytes`-byte values (content derived from `seed`). */
export function makeBatch(recordsCount: number, valueBytes: number, timestampMs = 1_000, seed = 0): Buffer {
  const records = [];
  for (let i = 0; i < recordsCount; i++) {
    const value = Buffer.alloc(valueBytes, (seed + i) & 0xff);
    records.push({ key: `k${seed}-${i}`, value, timestamp: timestampMs + i });
  }
  // Copy: encodeBatch returns a view of its builder's buffer.
  return Buffer.from(encodeBatch(records, timestampMs));
}

export interface Appended {
  baseOffset: number;
  lastOffset: number;
  /** The bytes as stored (base offset stamped). */
  bytes: Buffer;
}

/** Appends a batch, returning what the log should hold for it. */
export function appendBatch(log: PartitionLog, batch: Buffer): Appended {
  const recordsCount = readLastOffsetDelta(batch, 0) + 1;
  const baseOffset = log.append(batch, recordsCount, readMaxTimestamp(batch, 0));
  return { baseOffset, lastOffset: baseOffset + recordsCount - 1, bytes: Buffer.from(batch) };
}

export function openLog(dir: string, config: TopicConfig, options: PartitionLogOptions): PartitionLog {
  return PartitionLog.open(dir, config, options);
}

/** Reads every batch from `offset` to the end, one read at a time. */
export function readAll(log: PartitionLog, offset = log.logStartOffset, maxBytes = 64 * 1024): Buffer[] {
  const out: Buffer[] = [];
  let next = offset;
  while (next < log.nextOffset) {
    const result = log.read(next, maxBytes, log.nextOffset);
    if (result.batches.length === 0) throw new Error(`empty read at ${next}`);
    out.push(...result.batches);
    next = result.nextFetchOffset;
  }
  return out;
}

export function segmentFiles(dir: string, suffix: string): string[] {
  return fs.readdirSync(dir).filter((name) => name.endsWith(suffix)).sort();
}

/** Runs `fn`, which must throw a RillError; returns it. */
export function caughtRillError(fn: () => unknown): RillError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RillError);
    return err as RillError;
  }
  throw new Error('expected an error');
}
