/**
 * One partition as the broker serves it: the log plus what the protocol adds on top —
 * the visible end (high watermark) and wake-ups for long-polling fetches.
 *
 * Visibility: a consumer never sees an acks=all record that could still be lost. The high
 * watermark is the log end, except that it stops at the first acks=all batch whose fsync has not
 * completed yet; acks 0/1 batches are visible once written to the OS. Offsets are a prefix, so a
 * pending durable batch also holds back whatever was appended after it until its fsync lands.
 *
 * After an fsync failure the log refuses appends and flushes (partition-log.ts: the kernel may
 * have dropped the dirty pages, so a later fsync that succeeds proves nothing). The partition
 * then reopens its log at once:
 *
 *   serving --fsync fails--> close old log (its error ignored) --> open with recover: true
 *      ^                                                                |        |
 *      +------------------------- reopened ----------------------------+        | open fails
 *      +-- reopened <-- retry (at most every reopenRetryMs, on the next use) <-- offline
 *
 * What survives the reopen is what recovery validates: whole, CRC-valid batches with dense
 * offsets, cut at the first torn or bad one; recovery then fsyncs all of it, so afterwards
 * every stored offset is durable (flushedOffset == nextOffset) and visible. The requests that
 * waited on the failed fsync were answered STORAGE_ERROR (retriable) and never acknowledged; if
 * their bytes turned out intact they are kept, so a retry without idempotence stores the batch
 * twice (at-least-once, as for any failed request whose outcome is unknown). A flush that was
 * running on the old log when it was replaced also reports STORAGE_ERROR: an ack is only given
 * for a successful fsync on a log that has not failed.
 *
 * While offline (the reopen itself failed, e.g. the disk is gone) `log` throws STORAGE_ERROR,
 * so every request touching the partition gets that retriable error, and each use at most every
 * reopenRetryMs tries the reopen again.
 *
 * Replication cuts the log back (truncateTo) or starts it over (resetTo). The visible end follows
 * the log end down, and nothing past the cut stays pending. A storage failure during either
 * fails the log exactly as a failed fsync does, so it takes the same path: the reopen above, then
 * STORAGE_ERROR to the caller. The reopened log is a prefix of the one before the call and may
 * still reach past the requested end: the caller (the replica fetcher) truncates again.
 */
import type { Log } from '../lib/log.js';
import { RillError } from '../lib/errors.js';
import type { AppendBatch, PartitionLog } from '../storage/partition-log.js';

/**
 * What replication adds to a partition in a cluster (broker/replica-manager.ts sets it; null on
 * a single broker): consumers see only below the high watermark, clients of a replica that does
 * not lead get its error, and the replica hears of every append and fsync.
 */
export interface PartitionReplication {
  /** Offsets below it are on every in-sync replica (leader), or as the leader last said (follower). */
  readonly highWatermark: number;
  /** Why clients may not produce to or fetch from this replica now (NOT_LEADER, ...), or null. */
  clientError(): RillError | null;
  /** Before a client's append: throws NOT_LEADER, or for acks 'all' NOT_ENOUGH_REPLICAS. */
  checkClientAppend(acksAll: boolean): void;
  /** Stamps the leader epoch on a client's batches before they are appended. */
  stamp(batches: readonly AppendBatch[]): void;
  /** Resolves once an acks 'all' batch ending at endOffset is committed; rejects with a RillError. */
  awaitAcks(endOffset: number, timeoutMs: number): Promise<void>;
  appended(logEndOffset: number): void;
  fsynced(flushedOffset: number): void;
}

/** Opens the partition's log again with recovery (recover: true); throws if it cannot. */
export type LogReopener = () => PartitionLog;

/** Reopen attempts of an offline partition are at least this far apart. */
export const reopenRetryMs = 1000;

export class Partition {
  /** Offsets below this are visible to consumers. */
  private visibleEnd: number;
  /** Base/end offsets of acks=all batches appended but not yet fsynced, in append order. */
  private pendingDurable: { baseOffset: number; endOffset: number }[] = [];
  private pendingHead = 0;
  private readonly listeners = new Set<() => void>();
  private current: PartitionLog;
  /** Non-null while the log is closed and could not be reopened. */
  private offline: RillError | null = null;
  private lastReopenAttemptMs = Number.NEGATIVE_INFINITY;
  /** Times the log was reopened after an fsync failure (for tests and metrics). */
  reopenCount = 0;
  /**
   * Traffic since the broker started, bumped by the produce and fetch handlers and read by the
   * metrics collectors at scrape time (plain fields: no label lookup per request).
   */
  recordsIn = 0;
  bytesIn = 0;
  recordsOut = 0;
  bytesOut = 0;
  /** Set in a cluster: see PartitionReplication. */
  replication: PartitionReplication | null = null;

  constructor(
    readonly topic: string,
    readonly index: number,
    log: PartitionLog,
    private readonly reopenLog: LogReopener | null = null,
    private readonly report: Log = () => {},
  ) {
    this.current = log;
    this.visibleEnd = log.nextOffset;
  }

  /** The fields of every log line about this partition. */
  get fields(): { topic: string; partition: number } {
    return { topic: this.topic, partition: this.index };
  }

  /** The open log. Throws STORAGE_ERROR (retriable) while the partition is offline. */
  get log(): PartitionLog {
    if (this.offline !== null) this.retryReopen();
    if (this.offline !== null) throw this.offline;
    return this.current;
  }

  get isOffline(): boolean {
    return this.offline !== null;
  }

  get highWatermark(): number {
    return this.visibleEnd;
  }

  /**
   * Appends validated batches, all or nothing (one write); returns the first base offset.
   * Throws DISK_FULL / STORAGE_ERROR with nothing appended.
   */
  append(batches: readonly AppendBatch[], durable: boolean): number {
    const log = this.log;
    const baseOffset = batches.length === 1 ? log.append(batches[0]!.batch, batches[0]!.recordsCount, batches[0]!.maxTimestampMs) : log.appendMany(batches);
    if (durable) this.pendingDurable.push({ baseOffset, endOffset: log.nextOffset });
    this.replication?.appended(log.nextOffset);
    return baseOffset;
  }

  /** Recomputes the visible end after appends; wakes fetches waiting on this partition. */
  publish(): void {
    if (this.offline !== null) return;
    let end = this.pendingHead < this.pendingDurable.length ? this.pendingDurable[this.pendingHead]!.baseOffset : this.current.nextOffset;
    if (this.replication !== null) end = Math.min(end, this.replication.highWatermark);
    this.setVisibleEnd(end);
  }

  private setVisibleEnd(end: number): void {
    if (end === this.visibleEnd) return;
    this.visibleEnd = end;
    for (const listener of this.listeners) listener();
  }

  /**
   * fsyncs (shared with concurrent callers) and then makes the durable batches visible. On an
   * fsync failure, reopens the log (see the top of this file) and rethrows STORAGE_ERROR.
   */
  async flush(): Promise<number> {
    const log = this.log;
    let flushedOffset: number;
    try {
      flushedOffset = await log.flush();
    } catch (error) {
      this.reopenAfterFailure(log, error);
      throw error instanceof RillError ? error : new RillError('STORAGE_ERROR', (error as Error).message);
    }
    if (log !== this.current || this.offline !== null) {
      throw new RillError('STORAGE_ERROR', `${this.topic}/${this.index}: the log was reopened after an fsync failure before this flush completed; the data may or may not be stored`);
    }
    this.releaseDurable(flushedOffset);
    this.replication?.fsynced(flushedOffset);
    return flushedOffset;
  }

  private releaseDurable(flushedOffset: number): void {
    const pending = this.pendingDurable;
    while (this.pendingHead < pending.length && pending[this.pendingHead]!.endOffset <= flushedOffset) this.pendingHead++;
    if (this.pendingHead > 1024 && this.pendingHead * 2 > pending.length) {
      this.pendingDurable = pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    this.publish();
  }

  /**
   * After a failed append the log may have rolled back; batches whose fsync failed stay
   * invisible until a later flush succeeds or the log is reopened.
   */
  get hasPendingDurable(): boolean {
    return this.pendingHead < this.pendingDurable.length;
  }

  /**
   * Replication: cuts the log back to end at `offset` (floored to the start of the batch holding
   * it; see PartitionLog.truncateTo) and returns the new end. The visible end drops to it if it
   * was above; acks=all batches still pending below it are durable now (the cut fsyncs) and become
   * visible; those past it are gone. OFFSET_OUT_OF_RANGE below the log start (use resetTo). A
   * storage failure takes the reopen path (see the top of this file) and throws STORAGE_ERROR.
   */
  async truncateTo(offset: number): Promise<number> {
    const log = this.log;
    const newEnd = await this.changeLog(log, 'truncating the log', () => log.truncateTo(offset));
    this.afterCut(newEnd, Math.min(this.visibleEnd, newEnd));
    return newEnd;
  }

  /**
   * Replication: deletes the whole log and starts it again, empty, at `startOffset` (see
   * PartitionLog.resetTo); the visible end becomes startOffset. Failures as in truncateTo.
   */
  async resetTo(startOffset: number): Promise<void> {
    const log = this.log;
    await this.changeLog(log, 'resetting the log', () => log.resetTo(startOffset));
    this.afterCut(startOffset, startOffset);
  }

  /**
   * Runs a truncation on `log`. If it failed the log, reopens it as after a failed fsync and
   * throws STORAGE_ERROR; other errors (OFFSET_OUT_OF_RANGE) pass through. Also STORAGE_ERROR if
   * the log was replaced meanwhile (the change may or may not be in the reopened log).
   */
  private async changeLog<T>(log: PartitionLog, what: string, change: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await change();
    } catch (error) {
      if (!log.failed) throw error;
      this.reopenAfterFailure(log, error, what);
      throw error instanceof RillError ? error : new RillError('STORAGE_ERROR', (error as Error).message);
    }
    if (log !== this.current || this.offline !== null) {
      throw new RillError('STORAGE_ERROR', `${this.topic}/${this.index}: the log was reopened after a storage failure while ${what}; retry on the reopened log`);
    }
    return result;
  }

  /** After the log was cut at (or restarted from) `newEnd`: nothing past it is pending or visible. */
  private afterCut(newEnd: number, visibleEnd: number): void {
    this.pendingDurable = this.pendingDurable
      .slice(this.pendingHead)
      .filter((entry) => entry.baseOffset < newEnd)
      .map((entry) => ({ baseOffset: entry.baseOffset, endOffset: Math.min(entry.endOffset, newEnd) }));
    this.pendingHead = 0;
    this.setVisibleEnd(visibleEnd);
    this.releaseDurable(this.current.flushedOffset);
  }

  /** Called by every waiter of a failed flush; only the first one (on the failed log) reopens. */
  private reopenAfterFailure(failed: PartitionLog, error: unknown, what = 'fsync'): void {
    if (failed !== this.current || this.offline !== null || this.reopenLog === null) return;
    const lostEnd = failed.nextOffset;
    this.report('error', `${this.topic}/${this.index}: ${what} failed (${(error as Error).message}); reopening the log with recovery (log end was ${lostEnd}, last durable offset ${failed.flushedOffset})`, { ...this.fields, condition: 'fsync_failed' });
    try {
      failed.close();
    } catch {
      // Expected: close() rethrows the fsync failure. The reopen below recovers from the files.
    }
    this.offline = new RillError('STORAGE_ERROR', `${this.topic}/${this.index} is offline after ${what} failed: ${(error as Error).message}`);
    this.reopen();
  }

  private retryReopen(): void {
    if (Date.now() - this.lastReopenAttemptMs < reopenRetryMs) return;
    this.reopen();
  }

  private reopen(): void {
    this.lastReopenAttemptMs = Date.now();
    let log: PartitionLog;
    try {
      log = this.reopenLog!();
    } catch (error) {
      this.report('error', `${this.topic}/${this.index}: reopening the log failed (${(error as Error).message}); the partition answers STORAGE_ERROR and retries at most every ${reopenRetryMs} ms`, { ...this.fields, condition: 'storage_error' });
      return;
    }
    const visibleBefore = this.visibleEnd;
    this.current = log;
    this.offline = null;
    this.reopenCount++;
    this.pendingDurable = [];
    this.pendingHead = 0;
    if (log.nextOffset < visibleBefore) {
      this.report('warn', `${this.topic}/${this.index}: offsets ${log.nextOffset}..${visibleBefore - 1} were visible (acks 0/1) but did not survive the reopen; they will be reused`, this.fields);
      this.visibleEnd = log.nextOffset;
    }
    this.report('info', `${this.topic}/${this.index}: log reopened after an fsync failure; log end ${log.nextOffset}, all of it durable`, this.fields);
    this.publish();
  }

  /**
   * DeleteRecords: moves the log start to `beforeOffset` (-1: the high watermark). Only visible
   * records can be deleted: above the high watermark is OFFSET_OUT_OF_RANGE. Flushes first
   * through flush() so that an fsync failure takes the usual reopen path. Returns the new start.
   */
  async deleteRecordsBefore(beforeOffset: number): Promise<number> {
    const target = beforeOffset === -1 ? this.visibleEnd : beforeOffset;
    if (target < 0 || target > this.visibleEnd) {
      throw new RillError('OFFSET_OUT_OF_RANGE', `${this.topic}/${this.index}: offset ${beforeOffset} is above the high watermark ${this.visibleEnd}`);
    }
    if (target > this.log.flushedOffset) await this.flush();
    return this.log.deleteRecordsBefore(target);
  }

  /** Closes the log for shutdown or deletion; throws STORAGE_ERROR if it did not close durably. */
  close(): void {
    if (this.offline !== null) throw this.offline;
    this.current.close();
  }

  onAdvance(listener: () => void): void {
    this.listeners.add(listener);
  }

  offAdvance(listener: () => void): void {
    this.listeners.delete(listener);
  }
}
