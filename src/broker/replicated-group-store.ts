/**
 * The group coordinator's records in a cluster: the internal topic `__groups` (one partition,
 * replicated like any topic, retention off), whose leader is the coordinator of every group. The
 * same GroupRecords as the single broker's group store, each the value of one record:
 *
 * - append() writes one batch as the leader (stamped with its epoch) and resolves once every
 *   in-sync replica has it fsynced (acks 'all' semantics, replica-manager.ts), so a committed
 *   offset survives the coordinator's death: its successor replays the partition.
 * - open() reads the partition from its start to its end (the new leader's whole log: what it
 *   holds beyond the high watermark becomes committed as its followers catch up) and parses every
 *   record; a record that does not parse is skipped with a warning (it cannot be repaired, and
 *   the others still hold).
 * - compact(snapshot) appends the snapshot (the whole state, in batches) and then moves the log
 *   start past what came before it. Replaying history and then the snapshot gives the same state
 *   as the snapshot alone (records are applied in order, and the snapshot is the state after
 *   all of them), so a follower that still holds the older records is correct too.
 *
 * Only the leader opens it; a store whose leadership ended rejects appends (NOT_LEADER, from the
 * partition), and the host asks the broker again (COORDINATOR_NOT_AVAILABLE to clients).
 */
import { RillError } from '../lib/errors.js';
import type { Log } from '../lib/log.js';
import { groupLogCompactBytesMin, groupLogCompactRatio, groupRecordBytesMax } from '../lib/limits.js';
import { parseGroupRecord, type GroupRecord } from '../coordinator/records.js';
import { decodeMsgpack, encodeMsgpack } from '../wire/msgpack.js';
import { encodeBatch, forEachRecord, readBatchSize } from '../wire/record-batch.js';
import type { AppendBatch } from '../storage/partition-log.js';
import type { GroupRecordStore } from './group-host.js';
import type { Partition } from './partition.js';

/** The internal topic of group state in a cluster. */
export const groupsTopic = '__groups';

/** Records of one appended batch are kept under this many bytes (a snapshot is split). */
const batchBytesTarget = 512 * 1024;
const appendTimeoutMs = 30_000;
const readBytes = 4 * 1024 * 1024;

export class ReplicatedGroupStore implements GroupRecordStore {
  private compactedBytes = 0;
  private closed = false;

  private constructor(private readonly partition: Partition, private readonly log: Log) {}

  /** Reads every record of the partition; the caller must be its leader. */
  static async open(partition: Partition, log: Log): Promise<{ store: ReplicatedGroupStore; records: GroupRecord[]; dropped: null }> {
    const refused = partition.replication?.clientError() ?? null;
    if (refused !== null) throw new RillError('COORDINATOR_NOT_AVAILABLE', `this broker no longer coordinates groups (${refused.message})`);
    const records: GroupRecord[] = [];
    let skipped = 0;
    const plog = partition.log;
    let offset = plog.logStartOffset;
    const end = plog.nextOffset;
    while (offset < end) {
      const { batches, nextFetchOffset } = plog.read(offset, readBytes);
      if (batches.length === 0) break;
      for (const batch of batches) {
        forEachRecord(batch, 0, readBatchSize(batch, 0), (recordOffset, _timestamp, _key, value) => {
          if (recordOffset < offset || value === null) return;
          try {
            records.push(parseGroupRecord(decodeMsgpack(Buffer.from(value), 'CORRUPT_LOG')));
          } catch {
            skipped++;
          }
        });
      }
      offset = nextFetchOffset;
    }
    if (skipped > 0) log('warn', `${groupsTopic}: ${skipped} records that are not group records were skipped`, { topic: groupsTopic });
    const store = new ReplicatedGroupStore(partition, log);
    store.compactedBytes = plog.sizeBytes;
    return { store, records, dropped: null };
  }

  shouldCompact(): boolean {
    const size = this.partition.log.sizeBytes;
    return size > groupLogCompactBytesMin && size > groupLogCompactRatio * this.compactedBytes;
  }

  async append(records: readonly GroupRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.appendBatches(chunk(records.map((record) => encodeMsgpack(record))));
  }

  async compact(snapshot: readonly GroupRecord[]): Promise<void> {
    const start = this.partition.log.nextOffset;
    await this.appendBatches(chunk(snapshot.map((record) => encodeMsgpack(record))));
    // Everything before the snapshot is in it: the log may start there.
    await this.partition.deleteRecordsBefore(start);
    this.compactedBytes = this.partition.log.sizeBytes;
    this.log('info', `${groupsTopic}: compacted to a snapshot of ${snapshot.length} records at offset ${start}`, { topic: groupsTopic });
  }

  /** Appends as the leader and waits until every in-sync replica has the batches fsynced. */
  private async appendBatches(payloadGroups: Buffer[][]): Promise<void> {
    if (this.closed) throw new RillError('COORDINATOR_NOT_AVAILABLE', 'the group store is closed');
    const replication = this.partition.replication;
    if (replication === null) throw new RillError('COORDINATOR_NOT_AVAILABLE', `${groupsTopic} is not replicated here`);
    const nowMs = Date.now();
    const batches: AppendBatch[] = payloadGroups.map((payloads) => ({
      batch: encodeBatch(payloads.map((value) => ({ value })), nowMs), recordsCount: payloads.length, maxTimestampMs: nowMs,
    }));
    replication.checkClientAppend(true);
    replication.stamp(batches);
    this.partition.append(batches, false);
    await replication.awaitAcks(this.partition.log.nextOffset, appendTimeoutMs);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Groups payloads so each batch stays near batchBytesTarget (a record is at most groupRecordBytesMax). */
function chunk(payloads: Buffer[]): Buffer[][] {
  const groups: Buffer[][] = [];
  let current: Buffer[] = [];
  let bytes = 0;
  for (const payload of payloads) {
    if (payload.length > groupRecordBytesMax) throw new RillError('INVALID_ARGUMENT', `a group record of ${payload.length} bytes exceeds ${groupRecordBytesMax}`);
    if (current.length > 0 && bytes + payload.length > batchBytesTarget) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(payload);
    bytes += payload.length;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}
