/**
 * A replica's copy of a partition read straight from a stopped broker's data directory with the
 * broker's own storage code (PartitionLog, recovery on), so replicas can be compared byte for byte.
 */
import fs from 'node:fs';
import { partitionDir } from '../../src/broker/topic-registry.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { defaultTopicConfig } from '../../src/wire/control.js';
import { readBaseOffset, readLastOffsetDelta, readPartitionLeaderEpoch } from '../../src/wire/record-batch.js';

const readBytesMax = 1024 * 1024;

export interface ReplicaCopy {
  nodeId: number;
  logStartOffset: number;
  logEndOffset: number;
  /** Whole batches from the log start, each ending at or before the end asked for; copies. */
  batches: Buffer[];
  /** Offset after the last batch read: equals the end asked for unless the replica lacks data. */
  readUpTo: number;
  /** What recovery said while opening. */
  recoveryLog: string[];
}

/** Reads batches of `topic`/`partition` in `dataDir` from the log start up to `endOffset` (exclusive). */
export function readReplica(nodeId: number, dataDir: string, topic: string, partition: number, endOffset: number): ReplicaCopy {
  const dir = partitionDir(dataDir, topic, partition);
  if (!fs.existsSync(dir)) throw new Error(`broker ${nodeId} has no directory for ${topic}/${partition} (${dir})`);
  const recoveryLog: string[] = [];
  const log = PartitionLog.open(dir, defaultTopicConfig, { recover: true, log: (message) => recoveryLog.push(message) });
  try {
    const batches: Buffer[] = [];
    let offset = log.logStartOffset;
    while (offset < endOffset) {
      const read = log.read(offset, readBytesMax, endOffset);
      if (read.batches.length === 0) break;
      for (const batch of read.batches) batches.push(Buffer.from(batch));
      offset = read.nextFetchOffset;
    }
    return { nodeId, logStartOffset: log.logStartOffset, logEndOffset: log.nextOffset, batches, readUpTo: offset, recoveryLog };
  } finally {
    log.close();
  }
}

/** One line per batch: offsets and the leader epoch that wrote it. */
export function describeBatch(batch: Buffer): string {
  const base = readBaseOffset(batch, 0);
  return `[${base}..${base + readLastOffsetDelta(batch, 0)}] epoch ${readPartitionLeaderEpoch(batch, 0)}, ${batch.length} bytes`;
}

/**
 * Problems found comparing replicas of one partition up to `endOffset` (empty: identical): each
 * must start at 0, reach `endOffset` exactly, need no repair by recovery, and hold the same
 * batches, byte for byte.
 */
export function compareReplicas(copies: ReplicaCopy[], endOffset: number): string[] {
  const problems: string[] = [];
  for (const copy of copies) {
    if (copy.logStartOffset !== 0) problems.push(`broker ${copy.nodeId}: log starts at ${copy.logStartOffset}, not 0`);
    // The brokers were stopped cleanly: a replica that recovery had to repair is worth a look.
    for (const message of copy.recoveryLog) problems.push(`broker ${copy.nodeId}: recovery: ${message}`);
    if (copy.readUpTo !== endOffset) problems.push(`broker ${copy.nodeId}: batches end at ${copy.readUpTo}, the high watermark is ${endOffset} (log end ${copy.logEndOffset})`);
  }
  const [first, ...others] = copies;
  for (const other of others) {
    const count = Math.max(first!.batches.length, other.batches.length);
    for (let i = 0; i < count; i++) {
      const a = first!.batches[i];
      const b = other.batches[i];
      if (a !== undefined && b !== undefined && a.equals(b)) continue;
      problems.push(`batch ${i} differs: broker ${first!.nodeId} ${a === undefined ? 'has none' : describeBatch(a)}, broker ${other.nodeId} ${b === undefined ? 'has none' : describeBatch(b)}`);
      break;
    }
  }
  return problems;
}
