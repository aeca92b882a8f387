/**
 * Idempotent-producer state: what lets the broker drop a retried batch it already stored.
 *
 * A producer gets an id (InitProducerId) and numbers its records per partition: batch i of a
 * partition carries baseSequence = the count of records it sent there before, under an epoch.
 * Per (producerId, partition) the broker keeps the epoch, the last sequence stored, and the
 * first/last sequence and base offset of the last producerStateBatchesMax (5) batches — as many
 * as an idempotent producer may have in flight, so any retry of an unacknowledged batch is still
 * remembered. Work per batch is O(1): one Map lookup, a compare, a ring-buffer write.
 *
 * The decision for an idempotent batch (producerId >= 0) on a partition:
 *
 *   no entry, baseSequence == 0 ........................... append (a producer new here)
 *   no entry, id < forgottenBelow ........................ append (its state may have expired,
 *                                                          been evicted or lie before the scanned
 *                                                          tail: Kafka's KIP-360 rule, any
 *                                                          sequence starts it again)
 *   no entry, otherwise .................................. OUT_OF_ORDER_SEQUENCE (an earlier
 *                                                          batch failed; the producer retries it
 *                                                          first, so order holds from batch one)
 *   epoch <  entry.epoch ................................. INVALID_PRODUCER_EPOCH
 *   epoch >  entry.epoch, baseSequence == 0 .............. append (the producer reset its
 *                                                          sequences, see client/producer.ts)
 *   epoch >  entry.epoch, baseSequence != 0 .............. OUT_OF_ORDER_SEQUENCE
 *   baseSequence == entry.lastSequence + 1 ............... append
 *   (baseSequence, lastSequence) equal to a cached batch .. duplicate: not appended, answered
 *                                                          with that batch's original baseOffset
 *   anything else ........................................ OUT_OF_ORDER_SEQUENCE
 *
 * Sequences are int32 >= 0 and wrap from 2^31 - 1 to 0, as in Kafka.
 *
 * Durability of the state: it is rebuilt from the log itself, whose batch headers carry
 * producerId, epoch, baseSequence and recordsCount. A snapshot file (<partition>.producer-state
 * next to the partition directory, inside the topic directory so it goes with the topic) records
 * the state as of a log offset; it is written at clean shutdown (fsynced) and after every
 * producerSnapshotIntervalBytes appended (not fsynced: a lost or torn one fails its CRC and is
 * ignored). On the first use of a partition — after a start, and again whenever the partition
 * reopened its log after an fsync failure — the state is the snapshot plus a replay of the
 * batches after it. A snapshot is used only if logStartOffset <= its offset <= the log end and
 * the replay stays within producerStateScanBytesMax; otherwise (none, torn, or past a log whose
 * tail was lost) the last producerStateScanBytesMax of the log is replayed instead. Whatever
 * was written to the OS before a SIGKILL is in the log, so a batch acknowledged before a crash and
 * retried after it is recognised as a duplicate.
 */
import type { Log } from '../lib/log.js';
import path from 'node:path';
import { DecodeError, RillError } from '../lib/errors.js';
import {
  producerIdBlockSize, producerIdExpirationMs, producerSnapshotBytesMax, producerSnapshotIntervalBytes, producerStateBatchesMax,
  producerStateScanBytesMax, producersPerPartitionMax,
} from '../lib/limits.js';
import { crc32c } from '../wire/crc32c.js';
import { decodeMsgpack, encodeMsgpack } from '../wire/msgpack.js';
import { producerEpochMax, producerIdMax, sequenceAfter, sequenceMax } from '../wire/producer-id.js';

export { sequenceAfter, sequenceMax };
import { BatchField } from '../wire/record-batch.js';
import { Schema } from '../wire/schema.js';
import type { PartitionLog } from '../storage/partition-log.js';
import { FileTooLargeError, readFileBounded, removeFileIfPresent, replaceFile } from '../storage/durable-file.js';
import { type FileOps, nodeFileOps } from '../storage/file-ops.js';
import { writeError } from '../storage/storage-errors.js';
import type { Partition } from './partition.js';

/** check() result meaning "store the batch"; any value >= 0 is a duplicate's original base offset. */
export const appendNew = -1;

interface ProducerEntry {
  epoch: number;
  /** Sequence of the last record stored. */
  lastSequence: number;
  /** Largest batch maxTimestamp seen: expiry counts from here (the same clock live and on replay). */
  lastTimestampMs: number;
  /** Ring of the last batches: first/last sequence and base offset; `head` is the next slot. */
  firstSequences: number[];
  lastSequences: number[];
  baseOffsets: number[];
  batchCount: number;
  head: number;
}

function newEntry(epoch: number): ProducerEntry {
  return { epoch, lastSequence: -1, lastTimestampMs: 0, firstSequences: [], lastSequences: [], baseOffsets: [], batchCount: 0, head: 0 };
}

/** The producers of one partition: the decision table above, without I/O. */
export class PartitionProducers {
  /** In least-recently-active order (a touched entry moves to the end), so eviction is O(1). */
  private readonly producers = new Map<number, ProducerEntry>();
  private lastTouchedId = -1;

  /** Producers with a smaller id may have been forgotten here (expired, evicted, not replayed). */
  constructor(public forgottenBelow = 0) {}

  get size(): number {
    return this.producers.size;
  }

  /**
   * Decides on an idempotent batch: appendNew, or the base offset the same batch got when it was
   * first stored. Throws OUT_OF_ORDER_SEQUENCE or INVALID_PRODUCER_EPOCH. Changes nothing: call
   * record() once the batch is appended.
   */
  check(producerId: number, epoch: number, baseSequence: number, recordsCount: number): number {
    const entry = this.producers.get(producerId);
    if (entry === undefined) {
      if (baseSequence !== 0 && producerId >= this.forgottenBelow) {
        throw new RillError('OUT_OF_ORDER_SEQUENCE', `producer ${producerId} is new on this partition and sent sequence ${baseSequence}, expected 0`);
      }
      return appendNew;
    }
    if (epoch !== entry.epoch) {
      if (epoch < entry.epoch) throw new RillError('INVALID_PRODUCER_EPOCH', `producer ${producerId} sent epoch ${epoch}, but this partition has seen epoch ${entry.epoch}`);
      if (baseSequence !== 0) throw new RillError('OUT_OF_ORDER_SEQUENCE', `producer ${producerId} started epoch ${epoch} at sequence ${baseSequence}; a new epoch starts at 0`);
      return appendNew;
    }
    const expected = sequenceAfter(entry.lastSequence, 1);
    if (baseSequence === expected) return appendNew;
    const lastSequence = sequenceAfter(baseSequence, recordsCount - 1);
    for (let i = 0; i < entry.batchCount; i++) {
      if (entry.firstSequences[i] === baseSequence && entry.lastSequences[i] === lastSequence) return entry.baseOffsets[i]!;
    }
    throw new RillError('OUT_OF_ORDER_SEQUENCE', `producer ${producerId} epoch ${epoch} sent sequence ${baseSequence}, expected ${expected}`);
  }

  /** Notes a stored batch (live after append, or replayed from the log). */
  record(producerId: number, epoch: number, baseSequence: number, recordsCount: number, baseOffset: number, timestampMs: number): void {
    let entry = this.producers.get(producerId);
    if (entry === undefined) {
      entry = newEntry(epoch);
      this.producers.set(producerId, entry);
      if (this.producers.size > producersPerPartitionMax) this.forget(this.producers.keys().next().value!);
    } else if (producerId !== this.lastTouchedId) {
      this.producers.delete(producerId);
      this.producers.set(producerId, entry);
    }
    this.lastTouchedId = producerId;
    if (epoch !== entry.epoch) {
      entry.epoch = epoch;
      entry.batchCount = 0;
      entry.head = 0;
    }
    const lastSequence = sequenceAfter(baseSequence, recordsCount - 1);
    entry.lastSequence = lastSequence;
    if (timestampMs > entry.lastTimestampMs) entry.lastTimestampMs = timestampMs;
    const slot = entry.head;
    entry.firstSequences[slot] = baseSequence;
    entry.lastSequences[slot] = lastSequence;
    entry.baseOffsets[slot] = baseOffset;
    entry.head = slot + 1 === producerStateBatchesMax ? 0 : slot + 1;
    if (entry.batchCount < producerStateBatchesMax) entry.batchCount++;
  }

  /** Forgets producers silent for producerIdExpirationMs (by their batches' timestamps). */
  expire(nowMs: number): number {
    let expired = 0;
    for (const [producerId, entry] of this.producers) {
      if (nowMs - entry.lastTimestampMs > producerIdExpirationMs) {
        this.forget(producerId);
        expired++;
      }
    }
    return expired;
  }

  private forget(producerId: number): void {
    this.producers.delete(producerId);
    if (producerId >= this.forgottenBelow) this.forgottenBelow = producerId + 1;
  }

  /** Snapshot rows: [producerId, epoch, lastSequence, lastTimestampMs, [first, last, baseOffset]... oldest first]. */
  toRows(): unknown[] {
    const rows: unknown[] = [];
    for (const [producerId, entry] of this.producers) {
      const batches: number[] = [];
      const oldest = entry.batchCount < producerStateBatchesMax ? 0 : entry.head;
      for (let i = 0; i < entry.batchCount; i++) {
        const slot = (oldest + i) % producerStateBatchesMax;
        batches.push(entry.firstSequences[slot]!, entry.lastSequences[slot]!, entry.baseOffsets[slot]!);
      }
      rows.push([producerId, entry.epoch, entry.lastSequence, entry.lastTimestampMs, batches]);
    }
    return rows;
  }

  /** Rebuilds from snapshot rows (validated by decodeSnapshot). */
  static fromRows(rows: readonly SnapshotRow[], forgottenBelow: number): PartitionProducers {
    const state = new PartitionProducers(forgottenBelow);
    for (const row of rows) {
      const entry = newEntry(row.epoch);
      for (let i = 0; i < row.batches.length; i += 3) {
        const slot = entry.head;
        entry.firstSequences[slot] = row.batches[i]!;
        entry.lastSequences[slot] = row.batches[i + 1]!;
        entry.baseOffsets[slot] = row.batches[i + 2]!;
        entry.head = (slot + 1) % producerStateBatchesMax;
        entry.batchCount++;
      }
      entry.lastSequence = row.lastSequence;
      entry.lastTimestampMs = row.lastTimestampMs;
      state.producers.set(row.producerId, entry);
    }
    return state;
  }
}

// ---- Snapshot file ---------------------------------------------------------------------------
//
//   0  u32 magic 0x52494c50 ("RILP")
//   4  u32 CRC-32C of the body
//   8  body: MessagePack { version: 1, offset: log end the state describes, forgottenBelow,
//      producers: rows }

const snapshotMagic = 0x52494c50;
const snapshotVersion = 1;
const snapshotSchema = new Schema('CORRUPT_LOG');

export interface SnapshotRow {
  producerId: number;
  epoch: number;
  lastSequence: number;
  lastTimestampMs: number;
  /** Flattened triples (firstSequence, lastSequence, baseOffset), oldest first. */
  batches: number[];
}

export function encodeSnapshot(offset: number, state: PartitionProducers): Buffer {
  const body = encodeMsgpack({ version: snapshotVersion, offset, forgottenBelow: state.forgottenBelow, producers: state.toRows() });
  const head = Buffer.allocUnsafe(8);
  head.writeUInt32BE(snapshotMagic, 0);
  head.writeUInt32BE(crc32c(body), 4);
  return Buffer.concat([head, body]);
}

/** Disk bytes are untrusted: every field is checked; throws DecodeError (CORRUPT_LOG) with the reason. */
export interface Snapshot {
  offset: number;
  forgottenBelow: number;
  rows: SnapshotRow[];
}

export function decodeSnapshot(bytes: Buffer): Snapshot {
  if (bytes.length < 9) throw new DecodeError('CORRUPT_LOG', `snapshot of ${bytes.length} bytes is too short`);
  if (bytes.readUInt32BE(0) !== snapshotMagic) throw new DecodeError('CORRUPT_LOG', 'snapshot has a bad magic number');
  const body = bytes.subarray(8);
  if (bytes.readUInt32BE(4) !== crc32c(body)) throw new DecodeError('CORRUPT_LOG', 'snapshot fails its CRC-32C');
  const s = snapshotSchema;
  const obj = s.object(decodeMsgpack(body, 'CORRUPT_LOG'), 'snapshot');
  s.int(obj.version, 'version', snapshotVersion, snapshotVersion);
  const offset = s.int(obj.offset, 'offset', 0, Number.MAX_SAFE_INTEGER);
  const forgottenBelow = s.int(obj.forgottenBelow, 'forgottenBelow', 0, producerIdMax);
  const rows = s.array(obj.producers, 'producers', producersPerPartitionMax).map((value, i): SnapshotRow => {
    const row = s.array(value, `producers[${i}]`, 5);
    const batches = s.array(row[4], `producers[${i}][4]`, producerStateBatchesMax * 3);
    if (batches.length % 3 !== 0) s.fail(`producers[${i}][4]`, 'triples', `${batches.length} numbers`);
    return {
      producerId: s.int(row[0], `producers[${i}].producerId`, 0, producerIdMax),
      epoch: s.int(row[1], `producers[${i}].epoch`, 0, producerEpochMax),
      lastSequence: s.int(row[2], `producers[${i}].lastSequence`, 0, sequenceMax),
      lastTimestampMs: s.int(row[3], `producers[${i}].lastTimestampMs`, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
      batches: batches.map((n, j) => s.int(n, `producers[${i}][4][${j}]`, 0, j % 3 === 2 ? offset : sequenceMax)),
    };
  });
  return { offset, forgottenBelow, rows };
}

// ---- Producer ids ----------------------------------------------------------------------------
//
// `<dataDir>/producer-ids`, 16 bytes: u32 magic 0x52494c49 ("RILI"), u64 reservedEnd, u32 CRC-32C
// of bytes 0..11. Every id below reservedEnd may have been handed out; a new block is written
// (temp file, fsync, rename, directory fsync) before any id of it is, so ids never repeat across
// restarts, crashes included.

const idsMagic = 0x52494c49;
const idsFileBytes = 16;

/** reservedEnd; throws if the bytes are not a valid ids file. */
function decodeIdsFile(bytes: Buffer): number {
  if (bytes.length !== idsFileBytes || bytes.readUInt32BE(0) !== idsMagic || bytes.readUInt32BE(12) !== crc32c(bytes.subarray(0, 12))) throw new Error('the file is damaged');
  return Number(bytes.readBigUInt64BE(4));
}

class ProducerIdAllocator {
  private nextId = -1;
  private reservedEnd = -1;

  constructor(private readonly dataDir: string, private readonly log: Log, private readonly fileOps: FileOps) {}

  private get file(): string {
    return path.join(this.dataDir, 'producer-ids');
  }

  /** Ids at or above this were never handed out. */
  get issuedEnd(): number {
    if (this.reservedEnd < 0) this.load();
    return this.reservedEnd;
  }

  allocate(): number {
    if (this.reservedEnd < 0) this.load();
    if (this.nextId >= this.reservedEnd) this.reserve(this.nextId + producerIdBlockSize);
    return this.nextId++;
  }

  private load(): void {
    let end = 0;
    try {
      const bytes = readFileBounded(this.fileOps, this.file, idsFileBytes);
      // No file: no id was ever handed out here.
      if (bytes !== null) end = decodeIdsFile(bytes);
    } catch (error) {
      // Never reuse an id: start far above any id this broker could have reserved (1000 ids per ms of wall time).
      end = Date.now() * producerIdBlockSize;
      this.log('warn', `${this.file}: ${(error as Error).message}; producer ids continue from ${end}`);
    }
    this.nextId = end;
    this.reservedEnd = end;
  }

  private reserve(end: number): void {
    const bytes = Buffer.alloc(idsFileBytes);
    bytes.writeUInt32BE(idsMagic, 0);
    bytes.writeBigUInt64BE(BigInt(end), 4);
    bytes.writeUInt32BE(crc32c(bytes.subarray(0, 12)), 12);
    try {
      replaceFile(this.fileOps, this.file, bytes, { durable: true });
    } catch (error) {
      // Nothing of the new block is handed out: the allocator stays where it was.
      throw writeError(error, `reserving producer ids in ${this.file}`);
    }
    this.reservedEnd = end;
  }
}

// ---- The broker's view: ids, and the state of each partition ---------------------------------

interface LoadedState {
  /** The log the state describes; a partition that reopened its log gets its state rebuilt. */
  log: PartitionLog;
  producers: PartitionProducers;
  bytesSinceSnapshot: number;
}

const replayReadBytes = 1024 * 1024;

export class ProducerStates {
  private readonly ids: ProducerIdAllocator;
  private readonly byPartition = new WeakMap<Partition, LoadedState>();

  /** `fileOps`: the file layer for the ids file and the snapshots (tests inject faults). */
  constructor(dataDir: string, private readonly log: Log, private readonly fileOps: FileOps = nodeFileOps) {
    this.ids = new ProducerIdAllocator(dataDir, log, fileOps);
  }

  allocateProducerId(): number {
    return this.ids.allocate();
  }

  /** Whether the broker ever handed out this id (an id it never issued is UNKNOWN_PRODUCER_ID). */
  wasIssued(producerId: number): boolean {
    return producerId < this.ids.issuedEnd;
  }

  /** The producer state of a partition, loaded (snapshot + replay) on first use. Throws STORAGE_ERROR while the partition is offline. */
  stateOf(partition: Partition): PartitionProducers {
    const log = partition.log;
    const loaded = this.byPartition.get(partition);
    if (loaded !== undefined && loaded.log === log) return loaded.producers;
    const fresh: LoadedState = { log, producers: this.load(partition, log), bytesSinceSnapshot: 0 };
    this.byPartition.set(partition, fresh);
    return fresh.producers;
  }

  /** The log was truncated (a replica cut what diverged): the state is rebuilt from the log at its next use. */
  forget(partition: Partition): void {
    this.byPartition.delete(partition);
  }

  /** Counts appended bytes; writes a snapshot every producerSnapshotIntervalBytes. Call after stateOf(). */
  afterAppend(partition: Partition, bytes: number): void {
    const loaded = this.byPartition.get(partition);
    if (loaded === undefined) return;
    loaded.bytesSinceSnapshot += bytes;
    if (loaded.bytesSinceSnapshot >= producerSnapshotIntervalBytes) this.writeSnapshot(partition, loaded, false);
  }

  /** At clean shutdown, before the logs close: a fsynced snapshot of every partition used in this run. */
  snapshotAll(partitions: readonly Partition[]): void {
    for (const partition of partitions) {
      const loaded = this.byPartition.get(partition);
      if (loaded === undefined) continue;
      let log: PartitionLog;
      try {
        log = partition.log;
      } catch {
        continue; // offline: the next start rebuilds from the log
      }
      if (loaded.log === log) this.writeSnapshot(partition, loaded, true);
    }
  }

  private writeSnapshot(partition: Partition, loaded: LoadedState, sync: boolean): void {
    loaded.bytesSinceSnapshot = 0;
    loaded.producers.expire(Date.now());
    try {
      replaceFile(this.fileOps, snapshotPath(loaded.log), encodeSnapshot(loaded.log.nextOffset, loaded.producers), { durable: sync });
    } catch (error) {
      // Only costs a longer replay after a crash.
      this.log('warn', `${partition.topic}/${partition.index}: could not write the producer-state snapshot: ${(error as Error).message}`, partition.fields);
    }
  }

  /** A snapshot that cannot be used is removed, so the next start does not read it again. */
  private removeSnapshot(file: string): void {
    try {
      removeFileIfPresent(this.fileOps, file);
    } catch (error) {
      this.log('warn', `${file}: could not remove the unusable snapshot: ${(error as Error).message}`);
    }
  }

  private load(partition: Partition, log: PartitionLog): PartitionProducers {
    const startedMs = Date.now();
    const name = `${partition.topic}/${partition.index}`;
    const scanFloor = Math.max(log.logStartOffset, log.tailStartOffset(producerStateScanBytesMax));
    // Scanning from offset 0 sees every producer; any later start may miss some.
    let producers = new PartitionProducers(scanFloor === 0 ? 0 : this.ids.issuedEnd);
    let from = scanFloor;
    const file = snapshotPath(log);
    try {
      const snapshot = readSnapshot(this.fileOps, file);
      if (snapshot !== null && snapshot.offset >= scanFloor && snapshot.offset <= log.nextOffset) {
        producers = PartitionProducers.fromRows(snapshot.rows, snapshot.forgottenBelow);
        from = snapshot.offset;
      } else if (snapshot !== null) {
        this.log('warn', `${name}: producer-state snapshot at offset ${snapshot.offset} is outside ${scanFloor}..${log.nextOffset}; rebuilding from the log`, partition.fields);
        this.removeSnapshot(file);
      }
    } catch (error) {
      this.log('warn', `${name}: producer-state snapshot unusable (${(error as Error).message}); rebuilding from the log`, partition.fields);
      this.removeSnapshot(file);
    }
    const replayed = replay(log, from, producers, (message) => this.log('warn', `${name}: ${message}`, partition.fields));
    if (replayed > 0 || producers.size > 0) {
      this.log('info', `${name}: producer state of ${producers.size} producers rebuilt from offset ${from} (${replayed} batches replayed, ${Date.now() - startedMs} ms)`, partition.fields);
    }
    return producers;
  }
}

function snapshotPath(log: PartitionLog): string {
  return path.join(path.dirname(log.dir), `${path.basename(log.dir)}.producer-state`);
}

function readSnapshot(fileOps: FileOps, file: string): Snapshot | null {
  let bytes: Buffer | null;
  try {
    bytes = readFileBounded(fileOps, file, producerSnapshotBytesMax);
  } catch (error) {
    if (error instanceof FileTooLargeError) throw new DecodeError('CORRUPT_LOG', `snapshot of ${error.sizeBytes} bytes exceeds ${producerSnapshotBytesMax}`);
    throw error;
  }
  return bytes === null ? null : decodeSnapshot(bytes);
}

/** Feeds every idempotent batch from `from` to the log end into `producers`; returns how many. */
function replay(log: PartitionLog, from: number, producers: PartitionProducers, warn: (message: string) => void): number {
  let offset = from;
  let replayed = 0;
  const end = log.nextOffset;
  while (offset < end) {
    let batches: Buffer[];
    try {
      const result = log.read(offset, replayReadBytes);
      batches = result.batches;
      if (batches.length === 0) break;
      offset = result.nextFetchOffset;
    } catch (error) {
      if (!(error instanceof RillError) || error.code !== 'CORRUPT_LOG') throw error;
      // Never served, so never acknowledged as read; producers in it are skipped.
      const next = log.segmentBaseOffsets.find((base) => base > offset);
      warn(`producer-state replay skips a corrupt range at offset ${offset}${next === undefined ? '' : ` up to the segment at ${next}`}: ${error.message}`);
      if (next === undefined) break;
      offset = next;
      continue;
    }
    for (const batch of batches) {
      const producerId = batch.readInt32BE(BatchField.producerId) * 0x1_0000_0000 + batch.readUInt32BE(BatchField.producerId + 4);
      if (producerId < 0) continue;
      const baseOffset = batch.readInt32BE(BatchField.baseOffset) * 0x1_0000_0000 + batch.readUInt32BE(BatchField.baseOffset + 4);
      if (baseOffset < from) continue;
      const epoch = batch.readInt16BE(BatchField.producerEpoch);
      const baseSequence = batch.readInt32BE(BatchField.baseSequence);
      const recordsCount = batch.readInt32BE(BatchField.recordsCount);
      const maxTimestampMs = batch.readInt32BE(BatchField.maxTimestamp) * 0x1_0000_0000 + batch.readUInt32BE(BatchField.maxTimestamp + 4);
      if (epoch < 0 || baseSequence < 0 || recordsCount < 1) continue;
      producers.record(producerId, epoch, baseSequence, recordsCount, baseOffset, maxTimestampMs);
      replayed++;
    }
  }
  return replayed;
}
