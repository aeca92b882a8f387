/**
 * The producer: records are encoded straight into per-partition batches, batches of many
 * partitions share one produce request, and each `send` resolves with its partition and offset.
 *
 * Batching without a latency tax: with lingerMs 0 (the default) a batch is sent at the end of the
 * current event-loop turn if a request slot is free; while maxInFlightRequests are outstanding,
 * records keep filling batches. Under load batches grow by themselves; an idle producer sends at
 * once. lingerMs > 0 waits up to that long for a batch to fill.
 *
 * Partitioning: an explicit partition wins; keyed records use Kafka's murmur2 partitioner (same
 * partition number as Kafka); records without a key stick to one partition per batch, then move
 * on (Kafka's sticky partitioner idea), so batches stay large.
 *
 * Retries: a batch that fails with a retriable error (connection lost, broker shutting down, disk
 * full, ...) is sent again, in order, with exponential backoff and jitter, until
 * deliveryTimeoutMs. Without idempotence a retried batch can be stored twice if only the reply
 * was lost.
 */
import { RillError } from '../lib/errors.js';
import { batchBytesMax } from '../lib/limits.js';
import { ApiKey } from '../wire/apis.js';
import { checkReply } from './connection.js';
import { Cluster, type ClientOptions } from './cluster.js';
import { partitionForKey } from './partitioner.js';
import { BatchBuilder, type RecordInput, type RecordValue } from '../wire/record-batch.js';
import { decodeProduceResponse, encodeProduceRequest } from '../wire/produce.js';
import { responseHeaderBytes } from '../lib/limits.js';

export type AcksOption = 'all' | -1 | 1 | 0;

export interface ProducerOptions extends ClientOptions {
  /** 'all' (default): fsynced before the ack; 1: written to the broker's OS; 0: sent, no ack. */
  acks?: AcksOption;
  /** Default 0: send at the end of the event-loop turn. */
  lingerMs?: number;
  /** Target batch size in bytes. Default 256 KiB; a single larger record gets its own batch up to the 1 MiB batch limit. */
  batchBytes?: number;
  /** Produce requests outstanding per broker before batches wait. Default 5. */
  maxInFlightRequests?: number;
  /** Bytes of records waiting to be sent before send() waits for room. Default 64 MiB. */
  bufferBytesMax?: number;
  /** A record not acknowledged within this is rejected. Default 120 000 ms. */
  deliveryTimeoutMs?: number;
  /** First retry delay; doubles per attempt up to retryBackoffMaxMs. Defaults 100 / 1 000 ms. */
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
}

export interface ProducerRecord extends RecordInput {
  topic: string;
  partition?: number;
}

export interface RecordMetadata {
  topic: string;
  partition: number;
  /** -1n with acks 0 (the broker does not answer). */
  offset: bigint;
}

interface PendingBatch {
  topic: string;
  partition: number;
  sequence: number;
  builder: BatchBuilder;
  bytes: Buffer | null;
  resolves: ((metadata: RecordMetadata) => void)[];
  rejects: ((error: Error) => void)[];
  createdMs: number;
  attempts: number;
  notBeforeMs: number;
}

interface PartitionQueue {
  topic: string;
  partition: number;
  open: PendingBatch | null;
  /** Sealed batches waiting to be sent, in sequence order. */
  ready: PendingBatch[];
  nextSequence: number;
  inFlight: number;
}

function acksValue(acks: AcksOption): number {
  if (acks === 'all' || acks === -1) return -1;
  if (acks === 1 || acks === 0) return acks;
  throw new RillError('INVALID_ARGUMENT', `acks must be 'all', 1 or 0, got ${String(acks)}`);
}

function positiveInteger(name: string, value: number | undefined, fallback: number, min = 0): number {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < min) throw new RillError('INVALID_ARGUMENT', `${name} must be an integer >= ${min}, got ${String(value)}`);
  return result;
}

export class Producer {
  private readonly cluster: Cluster;
  private readonly ownsCluster: boolean;
  readonly acks: number;
  private readonly lingerMs: number;
  private readonly batchBytes: number;
  private readonly maxInFlight: number;
  private readonly bufferBytesMax: number;
  private readonly deliveryTimeoutMs: number;
  private readonly retryBackoffMs: number;
  private readonly retryBackoffMaxMs: number;
  private readonly queues = new Map<string, PartitionQueue[]>();
  private readonly sticky = new Map<string, number>();
  private requestsInFlight = 0;
  private bufferedBytes = 0;
  private outstandingRecords = 0;
  private drainScheduled = false;
  private lingerTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly roomWaiters: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(options: ProducerOptions = {}, cluster?: Cluster) {
    this.cluster = cluster ?? new Cluster(options);
    this.ownsCluster = cluster === undefined;
    this.acks = acksValue(options.acks ?? 'all');
    this.lingerMs = positiveInteger('lingerMs', options.lingerMs, 0);
    this.batchBytes = Math.min(positiveInteger('batchBytes', options.batchBytes, 256 * 1024, 1024), batchBytesMax);
    this.maxInFlight = positiveInteger('maxInFlightRequests', options.maxInFlightRequests, 5, 1);
    this.bufferBytesMax = positiveInteger('bufferBytesMax', options.bufferBytesMax, 64 * 1024 * 1024, 1024);
    this.deliveryTimeoutMs = positiveInteger('deliveryTimeoutMs', options.deliveryTimeoutMs, 120_000, 1);
    this.retryBackoffMs = positiveInteger('retryBackoffMs', options.retryBackoffMs, 100, 1);
    this.retryBackoffMaxMs = positiveInteger('retryBackoffMaxMs', options.retryBackoffMaxMs, 1000, 1);
  }

  /** Queues one record; resolves once the broker acknowledged it at the producer's acks level. */
  send(record: ProducerRecord): Promise<RecordMetadata> {
    if (this.closed) return Promise.reject(new RillError('INVALID_ARGUMENT', 'producer is closed'));
    // Counted from the moment of the call, so flush() also waits for records still looking up metadata.
    this.outstandingRecords++;
    const topic = this.cluster.cachedTopic(record.topic);
    if (topic !== undefined && this.bufferedBytes < this.bufferBytesMax) {
      try {
        return this.enqueue(record, topic.partitions.length);
      } catch (error) {
        this.settled(1);
        return Promise.reject(error);
      }
    }
    return this.sendSlow(record).catch((error: unknown) => {
      this.settled(1);
      throw error;
    });
  }

  private async sendSlow(record: ProducerRecord): Promise<RecordMetadata> {
    if (typeof record.topic !== 'string') throw new RillError('INVALID_ARGUMENT', 'record.topic must be a string');
    const topic = await this.cluster.topic(record.topic);
    while (this.bufferedBytes >= this.bufferBytesMax) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    return this.enqueue(record, topic.partitions.length);
  }

  /** Appends the record to its partition's open batch; throws for records that can never be sent. */
  private enqueue(record: ProducerRecord, partitionCount: number): Promise<RecordMetadata> {
    const partition = this.choosePartition(record, partitionCount);
    const queue = this.queueFor(record.topic, partition, partitionCount);
    const nowMs = Date.now();
    let batch = queue.open;
    if (batch === null || !batch.builder.tryAppend(record, nowMs)) {
      if (batch !== null) this.seal(queue);
      batch = this.openBatch(queue, nowMs);
      batch.builder.tryAppend(record, nowMs);
      if (batch.builder.sizeBytes > batchBytesMax) {
        queue.open = null;
        throw new RillError('BATCH_TOO_LARGE', `record of about ${batch.builder.sizeBytes} bytes exceeds the ${batchBytesMax}-byte batch limit`);
      }
    }
    const promise = new Promise<RecordMetadata>((resolve, reject) => {
      batch.resolves.push(resolve);
      batch.rejects.push(reject);
    });
    this.scheduleDrain();
    return promise;
  }

  private choosePartition(record: ProducerRecord, partitionCount: number): number {
    if (record.partition !== undefined) {
      if (!Number.isInteger(record.partition) || record.partition < 0 || record.partition >= partitionCount) {
        throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `partition ${record.partition} is outside 0..${partitionCount - 1} of topic "${record.topic}"`);
      }
      return record.partition;
    }
    const key: RecordValue | undefined = record.key;
    if (key !== null && key !== undefined) return partitionForKey(typeof key === 'string' ? Buffer.from(key) : key, partitionCount);
    let sticky = this.sticky.get(record.topic);
    if (sticky === undefined || sticky >= partitionCount) {
      sticky = Math.floor(Math.random() * partitionCount);
      this.sticky.set(record.topic, sticky);
    }
    return sticky;
  }

  private queueFor(topic: string, partition: number, partitionCount: number): PartitionQueue {
    let queues = this.queues.get(topic);
    if (queues === undefined || queues.length < partitionCount) {
      const grown = queues ?? [];
      for (let p = grown.length; p < partitionCount; p++) grown.push({ topic, partition: p, open: null, ready: [], nextSequence: 0, inFlight: 0 });
      this.queues.set(topic, grown);
      queues = grown;
    }
    return queues[partition]!;
  }

  private openBatch(queue: PartitionQueue, nowMs: number): PendingBatch {
    const batch: PendingBatch = {
      topic: queue.topic, partition: queue.partition, sequence: queue.nextSequence++, builder: new BatchBuilder(this.batchBytes),
      bytes: null, resolves: [], rejects: [], createdMs: nowMs, attempts: 0, notBeforeMs: 0,
    };
    queue.open = batch;
    return batch;
  }

  /** Closes the open batch of a queue: no more records go into it. */
  private seal(queue: PartitionQueue): void {
    const batch = queue.open;
    if (batch === null) return;
    queue.open = null;
    batch.bytes = batch.builder.finish();
    this.bufferedBytes += batch.bytes.length;
    queue.ready.push(batch);
    // Keyless records move to another partition once their batch is closed.
    if (this.sticky.get(queue.topic) === queue.partition) this.sticky.delete(queue.topic);
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    if (this.lingerMs > 0) {
      this.lingerTimer ??= setTimeout(() => {
        this.lingerTimer = null;
        this.drain(true);
      }, this.lingerMs);
      return;
    }
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      this.drain(true);
    });
  }

  /** Sends as many requests as slots allow; `sealOpen` also closes partially filled batches. */
  private drain(sealOpen: boolean): void {
    while (this.requestsInFlight < this.maxInFlight) {
      const batches = this.takeSendable(sealOpen);
      if (batches.length === 0) break;
      this.sendRequest(batches);
    }
  }

  private takeSendable(sealOpen: boolean): PendingBatch[] {
    const nowMs = Date.now();
    const batches: PendingBatch[] = [];
    let requestBytes = 0;
    let earliestRetryMs = Infinity;
    for (const queues of this.queues.values()) {
      for (const queue of queues) {
        if (queue.ready.length === 0 && queue.open !== null && sealOpen) this.seal(queue);
        const next = queue.ready[0];
        if (next === undefined) continue;
        if (next.notBeforeMs > nowMs) {
          earliestRetryMs = Math.min(earliestRetryMs, next.notBeforeMs);
          continue;
        }
        if (requestBytes + next.bytes!.length > 8 * 1024 * 1024 && batches.length > 0) continue;
        queue.ready.shift();
        batches.push(next);
        requestBytes += next.bytes!.length;
      }
    }
    if (earliestRetryMs !== Infinity && this.retryTimer === null) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.drain(false);
      }, earliestRetryMs - nowMs);
    }
    return batches;
  }

  private sendRequest(batches: PendingBatch[]): void {
    this.requestsInFlight++;
    const byTopic = new Map<string, { partition: number; batches: Buffer[] }[]>();
    for (const batch of batches) {
      batch.attempts++;
      let list = byTopic.get(batch.topic);
      if (list === undefined) byTopic.set(batch.topic, (list = []));
      list.push({ partition: batch.partition, batches: [batch.bytes!] });
    }
    const topics = [...byTopic].map(([name, partitions]) => ({ name, partitions }));
    const body = encodeProduceRequest(this.acks, 30_000, topics);
    const leader = this.cluster.cachedTopic(batches[0]!.topic)?.partitions[batches[0]!.partition]?.leader ?? -1;
    const connection = this.cluster.connectionForNode(leader);
    connection.send(ApiKey.Produce, 0, body, { expectReply: this.acks !== 0 }).then(
      (frame) => this.onReply(batches, frame),
      (error: unknown) => this.onRequestFailed(batches, error instanceof RillError ? error : new RillError('CONNECTION_ERROR', String(error))),
    );
  }

  private onReply(batches: PendingBatch[], frame: Buffer | null): void {
    this.requestsInFlight--;
    if (frame === null) {
      for (const batch of batches) this.complete(batch, -1);
      return this.afterRequest();
    }
    let topics;
    try {
      checkReply(frame);
      topics = decodeProduceResponse(frame, responseHeaderBytes);
    } catch (error) {
      return this.onRequestFailed(batches, error instanceof RillError ? error : new RillError('MALFORMED_RESPONSE', String(error)), false);
    }
    for (const batch of batches) {
      const result = topics.find((t) => t.name === batch.topic)?.partitions.find((p) => p.partition === batch.partition);
      if (result === undefined) this.failOrRetry(batch, new RillError('MALFORMED_RESPONSE', `no result for ${batch.topic}/${batch.partition}`));
      else if (result.errorCode === 0) this.complete(batch, result.baseOffset);
      else this.failOrRetry(batch, RillError.fromCode(result.errorCode, result.errorMessage.replace(/^[A-Z_]+: /, '') || undefined));
    }
    this.afterRequest();
  }

  private onRequestFailed(batches: PendingBatch[], error: RillError, countRequest = true): void {
    if (countRequest) this.requestsInFlight--;
    for (const batch of batches) this.failOrRetry(batch, error);
    this.afterRequest();
  }

  private afterRequest(): void {
    this.notifyRoom();
    this.drain(this.lingerMs === 0);
    if (this.lingerMs > 0 && this.hasOpenBatches()) this.scheduleDrain();
  }

  private hasOpenBatches(): boolean {
    for (const queues of this.queues.values()) for (const q of queues) if (q.open !== null) return true;
    return false;
  }

  private complete(batch: PendingBatch, baseOffset: number): void {
    this.bufferedBytes -= batch.bytes!.length;
    const { topic, partition, resolves } = batch;
    for (let i = 0; i < resolves.length; i++) resolves[i]!({ topic, partition, offset: baseOffset < 0 ? -1n : BigInt(baseOffset + i) });
    this.settled(resolves.length);
  }

  private failOrRetry(batch: PendingBatch, error: RillError): void {
    const elapsedMs = Date.now() - batch.createdMs;
    if (error.retriable && !this.closed && elapsedMs < this.deliveryTimeoutMs) {
      const backoffMs = Math.min(this.retryBackoffMs * 2 ** (batch.attempts - 1), this.retryBackoffMaxMs);
      batch.notBeforeMs = Date.now() + backoffMs * (0.8 + Math.random() * 0.4);
      if (error.code === 'UNKNOWN_TOPIC_OR_PARTITION') this.cluster.forget(batch.topic);
      const queue = this.queues.get(batch.topic)![batch.partition]!;
      // Keep per-partition order: the retried batch goes back before any later sequence.
      const at = queue.ready.findIndex((b) => b.sequence > batch.sequence);
      queue.ready.splice(at < 0 ? queue.ready.length : at, 0, batch);
      return;
    }
    this.bufferedBytes -= batch.bytes!.length;
    const failure = elapsedMs >= this.deliveryTimeoutMs && error.retriable
      ? new RillError('REQUEST_TIMED_OUT', `not delivered within deliveryTimeoutMs ${this.deliveryTimeoutMs}: ${error.message}`, { cause: error })
      : error;
    for (const reject of batch.rejects) reject(failure);
    this.settled(batch.rejects.length);
  }

  private settled(records: number): void {
    this.outstandingRecords -= records;
    if (this.outstandingRecords === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private notifyRoom(): void {
    while (this.bufferedBytes < this.bufferBytesMax && this.roomWaiters.length > 0) this.roomWaiters.shift()!();
  }

  /** Sends everything queued now and resolves when every record sent so far has settled. */
  async flush(): Promise<void> {
    if (this.lingerTimer !== null) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
    this.drain(true);
    if (this.outstandingRecords === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.ownsCluster) this.cluster.close();
  }
}
