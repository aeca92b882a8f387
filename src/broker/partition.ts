/**
 * One partition as the broker serves it: the log plus what the protocol adds on top —
 * the visible end (high watermark) and wake-ups for long-polling fetches.
 *
 * Visibility: a consumer never sees an acks=all record that could still be lost. The high
 * watermark is the log end, except that it stops at the first acks=all batch whose fsync has not
 * completed yet; acks 0/1 batches are visible once written to the OS. Offsets are a prefix, so a
 * pending durable batch also holds back whatever was appended after it until its fsync lands.
 */
import type { AppendBatch, PartitionLog } from '../storage/partition-log.js';

export class Partition {
  /** Offsets below this are visible to consumers. */
  private visibleEnd: number;
  /** Base/end offsets of acks=all batches appended but not yet fsynced, in append order. */
  private pendingDurable: { baseOffset: number; endOffset: number }[] = [];
  private pendingHead = 0;
  private readonly listeners = new Set<() => void>();

  constructor(readonly topic: string, readonly index: number, readonly log: PartitionLog) {
    this.visibleEnd = log.nextOffset;
  }

  get highWatermark(): number {
    return this.visibleEnd;
  }

  /**
   * Appends validated batches, all or nothing (one write); returns the first base offset.
   * Throws DISK_FULL / STORAGE_ERROR with nothing appended.
   */
  append(batches: readonly AppendBatch[], durable: boolean): number {
    const baseOffset = batches.length === 1 ? this.log.append(batches[0]!.batch, batches[0]!.recordsCount, batches[0]!.maxTimestampMs) : this.log.appendMany(batches);
    if (durable) this.pendingDurable.push({ baseOffset, endOffset: this.log.nextOffset });
    return baseOffset;
  }

  /** Recomputes the visible end after appends; wakes fetches waiting on this partition. */
  publish(): void {
    const end = this.pendingHead < this.pendingDurable.length ? this.pendingDurable[this.pendingHead]!.baseOffset : this.log.nextOffset;
    if (end === this.visibleEnd) return;
    this.visibleEnd = end;
    for (const listener of this.listeners) listener();
  }

  /** fsyncs (shared with concurrent callers) and then makes the durable batches visible. */
  async flush(): Promise<number> {
    const flushedOffset = await this.log.flush();
    this.releaseDurable(flushedOffset);
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
   * invisible until a later flush succeeds (the log keeps their bytes; the producer was told to
   * retry).
   */
  get hasPendingDurable(): boolean {
    return this.pendingHead < this.pendingDurable.length;
  }

  onAdvance(listener: () => void): void {
    this.listeners.add(listener);
  }

  offAdvance(listener: () => void): void {
    this.listeners.delete(listener);
  }
}
