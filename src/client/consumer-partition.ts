/**
 * What a group consumer knows about one partition it owns: where it fetches, what it has
 * processed, what it has committed, what it holds in memory, and whether a handler is busy with it.
 *
 * Life of a PartitionState (one per ownership; a partition owned again gets a new one):
 *
 *   | status    | meaning                                              | next                        |
 *   |-----------|------------------------------------------------------|-----------------------------|
 *   | starting  | assigned; committed offset / reset being looked up   | active (position known)     |
 *   | active    | fetched and dispatched                               | revoking, gone              |
 *   | revoking  | no more fetch or dispatch; in-flight handler may end;| gone (released or lost)     |
 *   |           | its processed offset may still be committed          |                             |
 *   | gone      | released or lost: nothing about it is used again     |                             |
 *
 * Offsets follow Kafka's convention: `processedOffset` is the NEXT offset to process, which is
 * what gets committed. It only moves when a handler has completed (or on seek), never on fetch.
 */
import type { Message } from './reader.js';

export type PartitionStatus = 'starting' | 'active' | 'revoking' | 'gone';

export function partitionKeyOf(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

/** Rough memory a buffered message holds (its key and value are views into the fetch buffer). */
const messageOverheadBytes = 64;

export class PartitionState {
  readonly key: string;
  status: PartitionStatus = 'starting';
  /** Next offset to fetch; null until the start position is known. */
  fetchOffset: bigint | null = null;
  /** Next offset to process (= the offset to commit); null until the start position is known. */
  processedOffset: bigint | null = null;
  /** Last offset this consumer committed (or found committed) for the partition; null if none. */
  committedOffset: bigint | null = null;
  /** A seek requested before the start position was known; wins over the committed offset. */
  pendingSeek: bigint | null = null;
  /** Bumped by seek / reset / drop: a fetch or handler started under an older generation is stale. */
  generation = 0;
  fetching = false;
  /** Earliest time (ms) the next fetch may go out, after an error. */
  fetchBackoffUntilMs = 0;
  /** Consecutive handler failures, for the retry backoff. */
  failures = 0;
  retryTimer: NodeJS.Timeout | null = null;
  highWatermark = -1;

  private buffer: Message[] = [];
  private bufferStart = 0;
  bufferedBytes = 0;

  private busyCount = 0;
  private idleWaiters: (() => void)[] = [];
  private idleOrGoneWaiters: (() => void)[] = [];

  constructor(
    readonly topic: string,
    readonly partition: number,
    /**
     * The previous ownership of this partition in this process while its handler still runs
     * (after a loss, a handler cannot be stopped): this one starts only after it. Cleared once
     * started, so states never form a chain.
     */
    public previous: PartitionState | null,
  ) {
    this.key = partitionKeyOf(topic, partition);
  }

  get owned(): boolean {
    return this.status !== 'gone';
  }

  get busy(): boolean {
    return this.busyCount > 0;
  }

  get buffered(): number {
    return this.buffer.length - this.bufferStart;
  }

  /** Sets where fetching and processing (re)start; drops what was buffered. */
  position(offset: bigint): void {
    this.generation++;
    this.fetchOffset = offset;
    this.processedOffset = offset;
    this.clearBuffer();
  }

  push(messages: Message[]): void {
    for (const message of messages) {
      this.buffer.push(message);
      this.bufferedBytes += messageOverheadBytes + (message.key?.length ?? 0) + (message.value?.length ?? 0);
    }
  }

  takeOne(): Message | undefined {
    if (this.bufferStart >= this.buffer.length) return undefined;
    const message = this.buffer[this.bufferStart++]!;
    this.bufferedBytes -= messageOverheadBytes + (message.key?.length ?? 0) + (message.value?.length ?? 0);
    if (this.bufferStart === this.buffer.length) this.clearBuffer();
    return message;
  }

  takeAll(): Message[] {
    const messages = this.bufferStart === 0 ? this.buffer : this.buffer.slice(this.bufferStart);
    this.clearBuffer();
    return messages;
  }

  clearBuffer(): void {
    this.buffer = [];
    this.bufferStart = 0;
    this.bufferedBytes = 0;
  }

  /** A handler (or the iterator's current message) starts / stops working on this partition. */
  enter(): void {
    this.busyCount++;
  }

  leave(): void {
    this.busyCount--;
    if (this.busyCount === 0) this.wakeIdle();
  }

  /** Marks messages up to `nextOffset` processed, if nothing (seek, drop) made them stale. */
  markProcessed(nextOffset: bigint, generation: number): void {
    if (generation !== this.generation || this.status === 'gone' || this.status === 'starting') return;
    if (this.processedOffset === null || nextOffset > this.processedOffset) this.processedOffset = nextOffset;
  }

  /** Resolves when no handler works on the partition (a dropped partition's handler may still run). */
  whenIdle(): Promise<void> {
    if (this.busyCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Resolves when idle, or at once if the partition is dropped meanwhile (see drop()). */
  whenIdleOrGone(): Promise<void> {
    if (this.busyCount === 0 || this.status === 'gone') return Promise.resolve();
    return new Promise((resolve) => this.idleOrGoneWaiters.push(resolve));
  }

  /** No longer owned: stops everything about it. A running handler finishes on its own. */
  drop(): void {
    this.status = 'gone';
    this.generation++;
    this.clearBuffer();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const waiters = this.idleOrGoneWaiters;
    this.idleOrGoneWaiters = [];
    for (const wake of waiters) wake();
  }

  private wakeIdle(): void {
    const waiters = [...this.idleWaiters, ...this.idleOrGoneWaiters];
    this.idleWaiters = [];
    this.idleOrGoneWaiters = [];
    for (const wake of waiters) wake();
  }
}
