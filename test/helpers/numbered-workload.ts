/**
 * A continuous, checkable workload for failover tests: an idempotent producer with acks 'all'
 * sends numbered records to every partition of a topic at a steady pace (value `p<P>-<N>`, key
 * `<N>`, N counting up per partition; `probe` adds `q<P>-<N>` from producers of its own) and remembers every acknowledged (partition, offset, value);
 * one PartitionReader per partition reads from the start and remembers every (offset, value) it
 * was given. `checkLog` then holds a partition's final log against both.
 */
import { PartitionReader, Producer, type Message } from '../../src/client/index.js';
import { bigintJson } from './cluster-processes.js';

export interface AckedRecord {
  partition: number;
  offset: bigint;
  value: string;
  sentAtMs: number;
  ackedAtMs: number;
}

export interface WorkloadOptions {
  bootstrap: string;
  topic: string;
  partitions: number;
  /** Records per partition per tick; default 2. */
  recordsPerTick?: number;
  /** Default 20 ms: with 3 partitions and 2 records, 300 records a second. */
  tickMs?: number;
  /** Sending pauses while this many records wait for their ack; default 3000. */
  outstandingMax?: number;
}

/** Client timeouts short enough that a paused or cut-off broker costs seconds, not the test. */
export const clientTimeouts = { connectTimeoutMs: 1000, requestTimeoutMs: 10_000, metadataMaxAgeMs: 5000 };

export const producerOptions = {
  ...clientTimeouts, acks: 'all' as const, idempotent: true, lingerMs: 2, retryBackoffMs: 50, retryBackoffMaxMs: 500, deliveryTimeoutMs: 90_000,
};

interface AckWaiter {
  partitions: ReadonlySet<number>;
  sentSinceMs: number;
  resolve: (record: AckedRecord) => void;
}

export class NumberedWorkload {
  readonly acked = new Map<string, AckedRecord>();
  /** Sends that were rejected: each is a failure of the contract (retries run until deliveryTimeoutMs). */
  readonly failures: string[] = [];
  /** Per partition: what a reader was given, by offset. */
  readonly seen: Map<bigint, string>[];
  /** A reader that ended with an error, went backwards, or was given two values for one offset. */
  readonly readerProblems: string[] = [];
  private readonly producer: Producer;
  private readonly readers: PartitionReader[] = [];
  private readonly readerLoops: Promise<void>[] = [];
  private readonly nextNumber: number[];
  private readonly nextProbeNumber: number[];
  private readonly ackWaiters = new Set<AckWaiter>();
  private outstanding = 0;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private probes = 0;

  constructor(private readonly options: WorkloadOptions) {
    this.producer = new Producer({ bootstrap: options.bootstrap, ...producerOptions });
    this.nextNumber = new Array<number>(options.partitions).fill(0);
    this.nextProbeNumber = new Array<number>(options.partitions).fill(0);
    this.seen = Array.from({ length: options.partitions }, () => new Map<bigint, string>());
  }

  get sentCount(): number {
    return [...this.nextNumber, ...this.nextProbeNumber].reduce((a, b) => a + b, 0);
  }

  start(): void {
    this.loop = this.produceLoop();
    for (let partition = 0; partition < this.options.partitions; partition++) this.startReader(partition);
  }

  private async produceLoop(): Promise<void> {
    const perTick = this.options.recordsPerTick ?? 2;
    const outstandingMax = this.options.outstandingMax ?? 3000;
    while (!this.stopping) {
      if (this.outstanding < outstandingMax) {
        for (let i = 0; i < perTick; i++) {
          for (let partition = 0; partition < this.options.partitions; partition++) this.sendNumbered(this.producer, partition, 'p').catch(() => undefined);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, this.options.tickMs ?? 20));
    }
  }

  private sendNumbered(producer: Producer, partition: number, prefix: 'p' | 'q'): Promise<AckedRecord> {
    const number = prefix === 'p' ? this.nextNumber[partition]!++ : this.nextProbeNumber[partition]!++;
    const value = `${prefix}${partition}-${number}`;
    const sentAtMs = Date.now();
    this.outstanding++;
    return producer.send({ topic: this.options.topic, partition, key: String(number), value }).then((meta) => {
      this.outstanding--;
      const record: AckedRecord = { partition: meta.partition, offset: meta.offset, value, sentAtMs, ackedAtMs: Date.now() };
      if (this.acked.has(value)) this.failures.push(`${value} acknowledged twice`);
      this.acked.set(value, record);
      for (const waiter of this.ackWaiters) {
        if (waiter.partitions.has(record.partition) && sentAtMs >= waiter.sentSinceMs) {
          this.ackWaiters.delete(waiter);
          waiter.resolve(record);
        }
      }
      return record;
    }, (error: Error) => {
      this.outstanding--;
      this.failures.push(`${value}: ${error.message}`);
      throw error;
    });
  }

  /**
   * Through a producer of its own on `bootstrap` (e.g. only the brokers that are not paused), one
   * record to each of `partitions` (value `q<P>-<N>`, numbered apart: another producer's records
   * have no order with the workload's); resolves with their acks. The final checks cover them.
   */
  async probe(bootstrap: string, partitions: number[]): Promise<AckedRecord[]> {
    const producer = new Producer({ bootstrap, ...producerOptions, clientId: `probe-${++this.probes}` });
    try {
      return await Promise.all(partitions.map((partition) => this.sendNumbered(producer, partition, 'q')));
    } finally {
      await producer.close();
    }
  }

  /** The first ack of a record sent at or after `sentSinceMs` to one of `partitions`. */
  nextAck(partitions: number[], sentSinceMs: number, limitMs: number): Promise<AckedRecord> {
    for (const record of this.acked.values()) {
      if (partitions.includes(record.partition) && record.sentAtMs >= sentSinceMs) return Promise.resolve(record);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.ackWaiters.delete(waiter);
        reject(new Error(`no record sent after ${new Date(sentSinceMs).toISOString()} to partition(s) ${partitions.join(', ')} was acknowledged within ${limitMs} ms (${this.outstanding} outstanding; failures: ${this.failures.slice(0, 3).join('; ') || 'none'})`));
      }, limitMs);
      const waiter: AckWaiter = { partitions: new Set(partitions), sentSinceMs, resolve: (record) => {
        clearTimeout(timer);
        resolve(record);
      } };
      this.ackWaiters.add(waiter);
    });
  }

  /** An ack on every one of `partitions` for a record sent at or after `sentSinceMs`. */
  async acksOnEvery(partitions: number[], sentSinceMs: number, limitMs: number): Promise<AckedRecord[]> {
    return Promise.all(partitions.map((p) => this.nextAck([p], sentSinceMs, limitMs)));
  }

  private startReader(partition: number): void {
    const reader = new PartitionReader({ bootstrap: this.options.bootstrap, ...clientTimeouts, topic: this.options.topic, partitions: [partition], from: 'earliest', maxWaitMs: 200, retryBackoffMaxMs: 500 });
    this.readers.push(reader);
    const seen = this.seen[partition]!;
    let lastOffset = -1n;
    this.readerLoops.push((async () => {
      try {
        for await (const batch of reader.batches()) {
          for (const message of batch) {
            const value = valueOf(message);
            const before = seen.get(message.offset);
            if (before !== undefined && before !== value) this.readerProblems.push(`partition ${partition} offset ${message.offset}: reader was given ${before}, later ${value}`);
            if (message.offset <= lastOffset) this.readerProblems.push(`partition ${partition}: reader went back from offset ${lastOffset} to ${message.offset}`);
            seen.set(message.offset, value);
            lastOffset = message.offset;
          }
        }
      } catch (error) {
        this.readerProblems.push(`partition ${partition}: reader ended with ${(error as Error).message}`);
      }
    })());
  }

  /** Stops sending and waits until every record sent has its ack or its failure. */
  async stopProducing(): Promise<void> {
    this.stopping = true;
    await this.loop;
    await this.producer.close();
  }

  async stopReading(): Promise<void> {
    for (const reader of this.readers) reader.close();
    await Promise.all(this.readerLoops);
  }

  /** Acknowledged records of one partition in offset order. */
  ackedIn(partition: number): AckedRecord[] {
    return [...this.acked.values()].filter((r) => r.partition === partition).sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  }

  /**
   * Problems of one partition's log, read from its start to the high watermark (empty: none):
   * every acknowledged record is there once, at the offset it was acknowledged with; no value is
   * there twice; numbers go up with offsets (the send order); a value is in its own partition;
   * every record a reader was given is there, at the same offset.
   */
  checkLog(partition: number, log: readonly { offset: bigint; value: string }[]): string[] {
    const problems: string[] = [];
    const offsetOf = new Map<string, bigint>();
    let lastNumber = -1;
    for (const { offset, value } of log) {
      const earlier = offsetOf.get(value);
      if (earlier !== undefined) {
        problems.push(`${value} is stored twice, at ${earlier} and ${offset}`);
        continue;
      }
      offsetOf.set(value, offset);
      const match = /^([pq])(\d+)-(\d+)$/.exec(value);
      if (match === null || Number(match[2]) !== partition) {
        problems.push(`offset ${offset}: ${JSON.stringify(value)} does not belong in partition ${partition}`);
        continue;
      }
      if (match[1] === 'q') continue; // a probe's record: no order with the workload's
      const number = Number(match[3]);
      if (number <= lastNumber) problems.push(`offset ${offset}: ${value} after number ${lastNumber}: out of send order`);
      lastNumber = Math.max(lastNumber, number);
    }
    for (const record of this.ackedIn(partition)) {
      const stored = offsetOf.get(record.value);
      if (stored === undefined) problems.push(`acknowledged ${record.value} (offset ${record.offset}, acked ${new Date(record.ackedAtMs).toISOString()}) is not in the log`);
      else if (stored !== record.offset) problems.push(`acknowledged ${record.value} at offset ${record.offset} is stored at ${stored}`);
    }
    const byOffset = new Map(log.map((r) => [r.offset, r.value]));
    for (const [offset, value] of this.seen[partition]!) {
      const stored = byOffset.get(offset);
      if (stored !== value) problems.push(`a reader was given ${value} at offset ${offset}; the log has ${stored ?? 'nothing'} there`);
    }
    return problems.slice(0, 20).concat(problems.length > 20 ? [`... and ${problems.length - 20} more`] : []);
  }

  summary(): string {
    return JSON.stringify({ sent: this.sentCount, acked: this.acked.size, failures: this.failures.length, seen: this.seen.map((s) => s.size) }, bigintJson);
  }
}

function valueOf(message: Message): string {
  return message.value === null ? '<null>' : Buffer.from(message.value).toString();
}
