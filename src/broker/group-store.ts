/**
 * The durable log of the group coordinator: `<dataDir>/__groups/groups.log`, a record log
 * (storage/record-log.ts) whose payloads are MessagePack GroupRecords:
 *
 *   [u32 payloadLength BE][u32 crc32c(payload) BE][payload = MessagePack GroupRecord]
 *
 * - append() resolves after the bytes are fdatasync'd; appends issued together share one
 *   fdatasync (group commit).
 * - open() replays every whole frame and stops at the first invalid one (length 0 or over
 *   groupRecordBytesMax, past the end of the file, CRC mismatch, undecodable or not a
 *   GroupRecord), truncates the file there and reports what it dropped. It never throws on bad
 *   bytes; it throws RillError STORAGE_ERROR only when the disk itself fails.
 * - compact(snapshot) replaces the log with the snapshot (temporary file, fsync, rename, fsync
 *   of the directory), so a crash leaves either the old or the new log whole. Appends made
 *   before it are in the old file (and in the snapshot), later ones in the new file.
 *   shouldCompact() says when the log has outgrown its last snapshot.
 *
 * The file layer is injectable, so the fault tests reach this file like any other.
 */
import { join } from 'node:path';
import { groupLogCompactBytesMin, groupLogCompactRatio, groupRecordBytesMax } from '../lib/limits.js';
import { parseGroupRecord, type GroupRecord } from '../coordinator/records.js';
import { decodeMsgpack, encodeMsgpack } from '../wire/msgpack.js';
import { type FileOps, nodeFileOps } from '../storage/file-ops.js';
import { type DroppedTail, RecordLog, encodeRecordFrame } from '../storage/record-log.js';

export type { DroppedTail };

const logFileName = 'groups.log';

export interface GroupStoreOpened {
  store: GroupStore;
  records: GroupRecord[];
  dropped: DroppedTail | null;
}

/** The frame of one record as it is stored (tests build damaged logs from it). */
export function encodeFrame(record: GroupRecord): Buffer {
  return encodeRecordFrame(encodeMsgpack(record), groupRecordBytesMax);
}

function parsePayload(payload: Buffer): GroupRecord {
  return parseGroupRecord(decodeMsgpack(payload, 'CORRUPT_LOG'));
}

export class GroupStore {
  /** Size of the log right after the last compaction (0 before the first one). */
  private compactedBytes = 0;

  private constructor(private readonly log: RecordLog) {}

  /** Opens (creating) `<dataDir>/__groups/groups.log`, truncating any invalid tail. */
  static async open(dataDir: string, fileOps: FileOps = nodeFileOps): Promise<GroupStoreOpened> {
    const path = join(dataDir, '__groups', logFileName);
    const { log, records, dropped } = RecordLog.open(path, { fileOps, payloadBytesMax: groupRecordBytesMax, parse: parsePayload });
    return { store: new GroupStore(log), records, dropped };
  }

  /** fdatasync calls made by appends; tests use it to see that concurrent appends share one. */
  get appendSyncCount(): number {
    return this.log.syncCount;
  }

  get sizeBytes(): number {
    return this.log.sizeBytes;
  }

  /** True when the log is over groupLogCompactBytesMin and groupLogCompactRatio x its last snapshot. */
  shouldCompact(): boolean {
    return this.sizeBytes > groupLogCompactBytesMin && this.sizeBytes > groupLogCompactRatio * this.compactedBytes;
  }

  /** Resolves once the records are on disk (fdatasync'd). Rejects with STORAGE_ERROR or DISK_FULL. */
  append(records: readonly GroupRecord[]): Promise<void> {
    return this.log.append(records.map((record) => encodeMsgpack(record)));
  }

  /**
   * Replaces the log with `snapshot` (taken from the coordinator at the time of the call, so it
   * covers every record appended before). Rejects with the old log left whole on failure.
   */
  compact(snapshot: readonly GroupRecord[]): Promise<void> {
    try {
      this.log.compact(snapshot.map((record) => encodeMsgpack(record)));
    } catch (error) {
      return Promise.reject(error);
    }
    this.compactedBytes = this.log.sizeBytes;
    return Promise.resolve();
  }

  /** Waits for running syncs, then closes the file. Later appends and compactions reject. */
  close(): Promise<void> {
    return this.log.close();
  }
}
