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
 *
 * Routing: a produce request goes to one broker and carries only batches of partitions the
 * cached metadata names that broker as leader of; the drain loop sends one request per leader as
 * request slots allow. A leader error (NOT_LEADER, LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH,
 * UNKNOWN_LEADER_EPOCH) or a lost connection puts the batch back in its place in the partition's
 * queue, and the topic's batches wait until fresh metadata is in (or the refresh failed), so the
 * retry goes to the new leader, in order. NOT_ENOUGH_REPLICAS_AFTER_APPEND means the leader wrote
 * the batch but could not replicate it: an idempotent producer retries (the broker recognises the
 * batch), any other producer fails the records with that error, as they may be stored.
 * UNKNOWN_TOPIC_OR_PARTITION from a broker is retried only if fresh metadata names another leader
 * for the partition (settleUnknown); otherwise the records fail with it.
 *
 * Idempotence (on by default, as in Kafka): the producer asks the broker for a producer id
 * (InitProducerId) before its first batch, and numbers the records of each partition: a batch
 * gets its baseSequence when it is sealed and keeps it (and its bytes) across retries, so the
 * broker recognises a retry of a batch it already stored and answers with the original offsets.
 * At most producerStateBatchesMax (5) requests are in flight, the number of batches per partition
 * the broker remembers; and a partition's batch is sent only while it is fewer than 5 batches past
 * the oldest one still in flight (after a cut connection, later batches can be stored while earlier
 * ones wait for their retry: the retry must still fall inside what the broker remembers). It works with acks 'all' and acks 1; acks 0 gets no answer, so it cannot
 * be idempotent. If idempotent is not given, it is on unless acks is 0 or maxInFlightRequests > 5
 * (Kafka's rule); asking for it explicitly with either is an INVALID_ARGUMENT.
 *
 * Sequence errors, per partition:
 * - OUT_OF_ORDER_SEQUENCE for a batch while an earlier batch of the partition is unsettled (it
 *   failed and waits for its retry, or is in flight): retried like a retriable error — the
 *   earlier batch goes first, then this one fits.
 * - A gap the producer made itself: a batch given up (delivery timeout, non-retriable error) may
 *   or may not be stored, and later sequences may no longer fit. The partition then resets:
 *   sending stops for it, batches that may already be stored (sent, outcome unknown) are retried
 *   under the old epoch until their outcome is known, and once nothing is in flight the producer
 *   bumps its epoch for the partition and renumbers the waiting batches from 0 (the broker accepts
 *   a higher epoch starting at 0 and fences the old epoch from then on). Past epoch 32767 the
 *   partition takes a new producer id.
 * - OUT_OF_ORDER_SEQUENCE (or UNKNOWN_PRODUCER_ID) for the oldest unsettled batch with no gap of
 *   our own: the broker lost batches it had stored (e.g. acks 1 data lost in a power failure).
 *   That batch is rejected with OUT_OF_ORDER_SEQUENCE so the application learns about the loss
 *   (Kafka does the same), and the partition resets as above, so later batches still go out.
 */
import { RillError } from '../lib/errors.js';
import { batchBytesMax, producerStateBatchesMax } from '../lib/limits.js';
import { ApiKey } from '../wire/apis.js';
import { crc32c } from '../wire/crc32c.js';
import { decodeInitProducerIdResponse, encodeInitProducerIdRequest, producerEpochMax, sequenceAfter } from '../wire/producer-id.js';
import { checkReply } from './connection.js';
import { brokerOf } from './instrumentation.js';
import { Cluster, isLeaderError, type ClientOptions } from './cluster.js';
import type { TopicMetadata } from '../wire/control.js';
import { partitionForKey } from './partitioner.js';
import { BatchBuilder, BatchField, type RecordInput, type RecordValue } from '../wire/record-batch.js';
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
  /** Produce requests outstanding per broker before batches wait. Default 5; at most 5 when idempotent. */
  maxInFlightRequests?: number;
  /**
   * Retries never store a batch twice, and per-partition order holds across retries. Default:
   * true unless acks is 0 or maxInFlightRequests > 5. See the top of this file.
   */
  idempotent?: boolean;
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

/** Longest backoff of a retry after a leader error (the election takes about a lease TTL). */
const leaderRetryBackoffMaxMs = 250;

interface PendingBatch {
  topic: string;
  partition: number;
  queue: PartitionQueue;
  /** Order of creation within the partition (never wraps, unlike the wire sequence). */
  ordinal: number;
  /** baseSequence on the wire (idempotent), set when sealed; renumbered only by a reset. */
  sequence: number;
  recordsCount: number;
  /** Sent at least once and the broker has not said it was not stored. */
  mayBeStored: boolean;
  builder: BatchBuilder;
  bytes: Buffer | null;
  resolves: ((metadata: RecordMetadata) => void)[];
  rejects: ((error: Error) => void)[];
  createdMs: number;
  attempts: number;
  notBeforeMs: number;
  /** The broker the last attempt went to (-1: the bootstrap broker). */
  sentTo: number;
  /**
   * The broker that answered UNKNOWN_TOPIC_OR_PARTITION for this batch, and that error, while the
   * topic's metadata is refreshed: the batch is retried only if fresh metadata names another leader.
   */
  unknownAt: { leader: number; error: RillError } | null;
}

interface PartitionQueue {
  topic: string;
  partition: number;
  open: PendingBatch | null;
  /** Sealed batches waiting to be sent, in ordinal order. */
  ready: PendingBatch[];
  nextOrdinal: number;
  /** Idempotence: the id and epoch this partition's batches carry, and the next baseSequence. */
  producerId: number;
  epoch: number;
  nextSequence: number;
  /** Batches sent and not yet answered (at most maxInFlightRequests). */
  inFlight: PendingBatch[];
  /** A reset (epoch bump and renumbering) is due once nothing that may be stored is unsettled. */
  resetPending: boolean;
  /** A new producer id is being fetched for the reset. */
  resetting: boolean;
}

const ignore = (): void => undefined;

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
  readonly idempotent: boolean;
  /** Assigned by the broker before the first batch when idempotent; -1 otherwise. */
  private producerId = -1;
  private producerEpoch = -1;
  private producerIdReady: boolean;
  private initializing: Promise<void> | null = null;
  private readonly resetQueues = new Set<PartitionQueue>();
  private readonly queues = new Map<string, PartitionQueue[]>();
  private readonly sticky = new Map<string, number>();
  /** Topics whose batches wait for a metadata refresh after a leader error (see refreshLeaders). */
  private readonly awaitingMetadata = new Set<string>();
  private requestsInFlight = 0;
  /** Sends waiting in sendSlow's queue, and the end of that queue. */
  private slowPending = 0;
  private slowTail: Promise<void> = Promise.resolve();
  private bufferedBytes = 0;
  private outstandingRecords = 0;
  private drainScheduled = false;
  private lingerTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly roomWaiters: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(options: ProducerOptions = {}, cluster?: Cluster) {
    this.cluster = cluster ?? new Cluster(options, 'producer');
    this.ownsCluster = cluster === undefined;
    this.acks = acksValue(options.acks ?? 'all');
    this.lingerMs = positiveInteger('lingerMs', options.lingerMs, 0);
    this.batchBytes = Math.min(positiveInteger('batchBytes', options.batchBytes, 256 * 1024, 1024), batchBytesMax);
    this.maxInFlight = positiveInteger('maxInFlightRequests', options.maxInFlightRequests, 5, 1);
    this.bufferBytesMax = positiveInteger('bufferBytesMax', options.bufferBytesMax, 64 * 1024 * 1024, 1024);
    this.deliveryTimeoutMs = positiveInteger('deliveryTimeoutMs', options.deliveryTimeoutMs, 120_000, 1);
    this.retryBackoffMs = positiveInteger('retryBackoffMs', options.retryBackoffMs, 100, 1);
    this.retryBackoffMaxMs = positiveInteger('retryBackoffMaxMs', options.retryBackoffMaxMs, 1000, 1);
    this.idempotent = options.idempotent ?? (this.acks !== 0 && this.maxInFlight <= producerStateBatchesMax);
    if (this.idempotent && this.acks === 0) throw new RillError('INVALID_ARGUMENT', "idempotent needs acks 'all' or 1: with acks 0 the broker does not answer; set idempotent: false");
    if (this.idempotent && this.maxInFlight > producerStateBatchesMax) {
      throw new RillError('INVALID_ARGUMENT', `idempotent allows maxInFlightRequests 1..${producerStateBatchesMax} (the batches the broker remembers per producer), got ${this.maxInFlight}`);
    }
    this.producerIdReady = !this.idempotent;
  }

  /** Queues one record; resolves once the broker acknowledged it at the producer's acks level. */
  send(record: ProducerRecord): Promise<RecordMetadata> {
    if (this.closed) return Promise.reject(new RillError('INVALID_ARGUMENT', 'producer is closed'));
    // Counted from the moment of the call, so flush() also waits for records still looking up metadata.
    this.outstandingRecords++;
    const topic = this.cluster.cachedTopic(record.topic);
    if (topic !== undefined && this.bufferedBytes < this.bufferBytesMax && this.producerIdReady && this.slowPending === 0) {
      try {
        return this.enqueue(record, topic.partitions.length);
      } catch (error) {
        this.settled(1);
        return Promise.reject(error);
      }
    }
    return this.sendSlow(record);
  }

  /**
   * Records that must wait (for metadata, the producer id, or buffer room) go through one queue:
   * each is enqueued only after the one sent before it, and no later send takes the fast path
   * while any waits, so records keep the order of the send() calls.
   */
  private sendSlow(record: ProducerRecord): Promise<RecordMetadata> {
    this.slowPending++;
    const step = this.slowTail.then(async () => {
      try {
        if (typeof record.topic !== 'string') throw new RillError('INVALID_ARGUMENT', 'record.topic must be a string');
        const topic = await this.metadataFor(record.topic);
        if (!this.producerIdReady) await this.initProducerId();
        while (this.bufferedBytes >= this.bufferBytesMax) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
        return { delivery: this.enqueue(record, topic.partitions.length) };
      } catch (error) {
        this.settled(1); // never enqueued: no batch will settle it
        throw error;
      } finally {
        this.slowPending--;
      }
    });
    this.slowTail = step.then(ignore, ignore);
    return step.then((enqueued) => enqueued.delivery);
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
      for (let p = grown.length; p < partitionCount; p++) {
        grown.push({
          topic, partition: p, open: null, ready: [], nextOrdinal: 0, producerId: this.producerId, epoch: this.producerEpoch, nextSequence: 0,
          inFlight: [], resetPending: false, resetting: false,
        });
      }
      this.queues.set(topic, grown);
      queues = grown;
    }
    return queues[partition]!;
  }

  private openBatch(queue: PartitionQueue, nowMs: number): PendingBatch {
    const batch: PendingBatch = {
      topic: queue.topic, partition: queue.partition, queue, ordinal: queue.nextOrdinal++, sequence: -1, recordsCount: 0, mayBeStored: false,
      builder: new BatchBuilder(this.batchBytes), bytes: null, resolves: [], rejects: [], createdMs: nowMs, attempts: 0, notBeforeMs: 0, sentTo: -1,
      unknownAt: null,
    };
    queue.open = batch;
    return batch;
  }

  /** Closes the open batch of a queue: no more records go into it. */
  private seal(queue: PartitionQueue): void {
    const batch = queue.open;
    if (batch === null) return;
    queue.open = null;
    batch.recordsCount = batch.builder.recordsCount;
    if (this.idempotent) {
      batch.sequence = queue.nextSequence;
      queue.nextSequence = sequenceAfter(queue.nextSequence, batch.recordsCount);
      batch.bytes = batch.builder.finish({ producerId: queue.producerId, producerEpoch: queue.epoch, baseSequence: batch.sequence });
    } else {
      batch.bytes = batch.builder.finish();
    }
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
      const request = this.takeSendable(sealOpen);
      if (request === null) break;
      this.sendRequest(request.batches, request.leader);
    }
  }

  /**
   * The batches of the next produce request: the first sendable batch of each partition led by
   * one broker (the leader of the first sendable partition found), so a request carries only
   * partitions its broker leads. Other leaders' batches wait for the next call.
   */
  private takeSendable(sealOpen: boolean): { leader: number; batches: PendingBatch[] } | null {
    const nowMs = Date.now();
    const batches: PendingBatch[] = [];
    let requestLeader: number | null = null;
    let requestBytes = 0;
    let earliestRetryMs = Infinity;
    for (const [topic, queues] of this.queues) {
      // An error proved this topic's leaders wrong: nothing goes out until fresh metadata is in.
      if (this.awaitingMetadata.has(topic)) continue;
      const partitions = this.cluster.cachedTopic(topic)?.partitions;
      for (const queue of queues) {
        if (queue.ready.length === 0 && queue.open !== null && sealOpen) this.seal(queue);
        const next = queue.ready[0];
        if (next === undefined) continue;
        // While a reset is due only batches that may already be stored go out (old epoch), to learn their outcome.
        if (queue.resetPending && !next.mayBeStored) continue;
        // The broker remembers the last producerStateBatchesMax batches of a partition: a batch
        // sent that far past one whose outcome is still unknown could, once stored, push it out of
        // that memory, and its retry would then be refused as out of order although it is stored.
        if (this.idempotent && next.ordinal - oldestInFlightOrdinal(queue, next.ordinal) >= producerStateBatchesMax) continue;
        if (next.notBeforeMs > nowMs) {
          earliestRetryMs = Math.min(earliestRetryMs, next.notBeforeMs);
          continue;
        }
        if (requestBytes + next.bytes!.length > 8 * 1024 * 1024 && batches.length > 0) continue;
        const leader = partitions?.[queue.partition]?.leader ?? -1;
        if (requestLeader !== null && leader !== requestLeader) continue;
        requestLeader = leader;
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
    return requestLeader === null ? null : { leader: requestLeader, batches };
  }

  /** One produce request to `leader` (-1: not known, the bootstrap broker) with these batches. */
  private sendRequest(batches: PendingBatch[], leader: number): void {
    this.requestsInFlight++;
    const byTopic = new Map<string, { partition: number; batches: Buffer[] }[]>();
    for (const batch of batches) {
      batch.attempts++;
      batch.sentTo = leader;
      batch.mayBeStored = true;
      batch.queue.inFlight.push(batch);
      let list = byTopic.get(batch.topic);
      if (list === undefined) byTopic.set(batch.topic, (list = []));
      list.push({ partition: batch.partition, batches: [batch.bytes!] });
    }
    const topics = [...byTopic].map(([name, partitions]) => ({ name, partitions }));
    const body = encodeProduceRequest(this.acks, 30_000, topics);
    const connection = this.cluster.connectionForNode(leader);
    connection.send(ApiKey.Produce, 0, body, { expectReply: this.acks !== 0 }).then(
      (frame) => this.onReply(batches, frame, connection.name, leader),
      (error: unknown) => this.onRequestFailed(batches, error instanceof RillError ? error : new RillError('CONNECTION_ERROR', String(error))),
    );
  }

  private onReply(batches: PendingBatch[], frame: Buffer | null, broker: string, leader: number): void {
    this.requestsInFlight--;
    for (const batch of batches) settleInFlight(batch);
    if (frame === null) {
      for (const batch of batches) this.complete(batch, -1);
      return this.afterRequest();
    }
    let topics;
    try {
      checkReply(frame);
      const response = decodeProduceResponse(frame, responseHeaderBytes);
      topics = response.topics;
      if (response.throttleTimeMs > 0) this.cluster.instrumentation.throttle(broker, ApiKey.Produce, response.throttleTimeMs);
    } catch (error) {
      return this.onRequestFailed(batches, error instanceof RillError ? error : new RillError('MALFORMED_RESPONSE', String(error)), false);
    }
    for (const batch of batches) {
      const result = topics.find((t) => t.name === batch.topic)?.partitions.find((p) => p.partition === batch.partition);
      if (result === undefined) this.failOrRetry(batch, new RillError('MALFORMED_RESPONSE', `no result for ${batch.topic}/${batch.partition}`));
      else if (result.errorCode === 0) this.complete(batch, result.baseOffset);
      else this.onPartitionError(batch, RillError.fromCode(result.errorCode, result.errorMessage.replace(/^[A-Z_]+: /, '') || undefined), leader);
    }
    this.afterRequest();
  }

  private onRequestFailed(batches: PendingBatch[], error: RillError, countRequest = true): void {
    if (countRequest) {
      this.requestsInFlight--;
      for (const batch of batches) settleInFlight(batch);
    }
    for (const batch of batches) this.failOrRetry(batch, error);
    this.afterRequest();
  }

  /** The broker answered for this partition with an error: the batch was not stored, unless its fsync failed or timed out. */
  private onPartitionError(batch: PendingBatch, error: RillError, leader: number): void {
    if (error.code === 'UNKNOWN_TOPIC_OR_PARTITION' && !this.closed && Date.now() - batch.createdMs < this.deliveryTimeoutMs) {
      // Not stored. Perhaps the broker no longer holds the partition because leadership moved:
      // ask for fresh metadata, and retry only if it names another leader (see refreshLeaders).
      batch.mayBeStored = false;
      batch.unknownAt = { leader, error };
      this.failOrRetry(batch, error, true);
      return this.refreshLeaders(batch.topic);
    }
    const mayBeStored = error.code === 'STORAGE_ERROR' || error.code === 'REQUEST_TIMED_OUT' || error.code === 'NOT_ENOUGH_REPLICAS_AFTER_APPEND';
    if (!mayBeStored) batch.mayBeStored = false;
    // The leader wrote it: only the broker's deduplication makes sending it again safe.
    if (error.code === 'NOT_ENOUGH_REPLICAS_AFTER_APPEND' && !this.idempotent) return this.failOrRetry(batch, error, false);
    if (!this.idempotent || (error.code !== 'OUT_OF_ORDER_SEQUENCE' && error.code !== 'UNKNOWN_PRODUCER_ID')) return this.failOrRetry(batch, error);
    const queue = batch.queue;
    if (queue.resetPending || hasEarlierUnsettled(queue, batch)) return this.failOrRetry(batch, error, true);
    this.requestReset(queue);
    this.reject(batch, new RillError(error.code, `${batch.topic}/${batch.partition}: the broker does not have the batches this producer stored before sequence ${batch.sequence} (${error.message}); this batch was not stored, and the partition's sequences are reset`));
  }

  private requestReset(queue: PartitionQueue): void {
    queue.resetPending = true;
    this.resetQueues.add(queue);
  }

  /** Resets partitions whose reset is due and that have nothing unsettled that may be stored. */
  private runResets(): void {
    for (const queue of this.resetQueues) {
      if (queue.resetting || queue.inFlight.length > 0 || queue.ready[0]?.mayBeStored === true) continue;
      if (queue.epoch < producerEpochMax) {
        this.renumber(queue, queue.producerId, queue.epoch + 1);
        continue;
      }
      queue.resetting = true;
      this.fetchProducerId().then(
        ({ producerId, producerEpoch }) => {
          queue.resetting = false;
          this.renumber(queue, producerId, producerEpoch);
          this.drain(false);
        },
        (error: unknown) => {
          queue.resetting = false;
          // Still due: the next reply tries again; what waits now cannot be numbered.
          for (const batch of queue.ready.splice(0)) this.reject(batch, error instanceof RillError ? error : new RillError('CONNECTION_ERROR', String(error)));
        },
      );
    }
  }

  /** Gives the waiting batches of a partition new sequences from 0 under (producerId, epoch). */
  private renumber(queue: PartitionQueue, producerId: number, epoch: number): void {
    queue.producerId = producerId;
    queue.epoch = epoch;
    let sequence = 0;
    for (const batch of queue.ready) {
      batch.sequence = sequence;
      batch.mayBeStored = false;
      restampProducer(batch.bytes!, producerId, epoch, sequence);
      sequence = sequenceAfter(sequence, batch.recordsCount);
    }
    queue.nextSequence = sequence;
    queue.resetPending = false;
    this.resetQueues.delete(queue);
  }

  /** InitProducerId, retried with backoff while retriable, up to deliveryTimeoutMs. */
  private async fetchProducerId(): Promise<{ producerId: number; producerEpoch: number }> {
    const startedMs = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.cluster.anyConnection().call(ApiKey.InitProducerId, encodeInitProducerIdRequest(), decodeInitProducerIdResponse);
      } catch (error) {
        const rill = error instanceof RillError ? error : new RillError('CONNECTION_ERROR', String(error));
        const delayMs = this.backoffMs(attempt);
        if (!rill.retriable || this.closed || Date.now() - startedMs + delayMs >= this.deliveryTimeoutMs) throw rill;
        this.cluster.instrumentation.retry('init-producer-id', brokerOf(rill), attempt, delayMs, rill);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  /** The producer id every partition starts with; fetched once, shared by concurrent first sends. */
  private initProducerId(): Promise<void> {
    this.initializing ??= this.fetchProducerId().then(
      ({ producerId, producerEpoch }) => {
        this.producerId = producerId;
        this.producerEpoch = producerEpoch;
        this.producerIdReady = true;
      },
      (error: unknown) => {
        this.initializing = null;
        throw error;
      },
    );
    return this.initializing;
  }

  /**
   * Topic metadata, retried with backoff while the error is retriable (the broker is restarting
   * or not up yet) for up to deliveryTimeoutMs; an unknown topic fails at once.
   */
  private async metadataFor(topic: string): Promise<TopicMetadata> {
    const deadlineMs = Date.now() + this.deliveryTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.cluster.topic(topic);
      } catch (error) {
        if (!(error instanceof RillError) || !error.retriable || this.closed || Date.now() >= deadlineMs) throw error;
        const delayMs = this.backoffMs(attempt);
        this.cluster.instrumentation.retry('metadata', brokerOf(error), attempt, delayMs, error);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  private backoffMs(attempt: number): number {
    return Math.min(this.retryBackoffMs * 2 ** (attempt - 1), this.retryBackoffMaxMs) * (0.8 + Math.random() * 0.4);
  }

  private afterRequest(): void {
    if (this.resetQueues.size > 0) this.runResets();
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

  private failOrRetry(batch: PendingBatch, error: RillError, retriable = error.retriable): void {
    const elapsedMs = Date.now() - batch.createdMs;
    if (retriable && !this.closed && elapsedMs < this.deliveryTimeoutMs) {
      // A leader gone or moving: retry (and so refresh metadata) often, so a new leader is found
      // soon after its election; other errors back off further.
      const backoffMs = isLeaderError(error) ? Math.min(this.backoffMs(batch.attempts), leaderRetryBackoffMaxMs) : this.backoffMs(batch.attempts);
      batch.notBeforeMs = Date.now() + backoffMs;
      if (isLeaderError(error)) this.refreshLeaders(batch.topic);
      this.cluster.instrumentation.retry('produce', brokerOf(error), batch.attempts, batch.notBeforeMs - Date.now(), error);
      const queue = batch.queue;
      // Keep per-partition order: the retried batch goes back before any later one.
      const at = queue.ready.findIndex((b) => b.ordinal > batch.ordinal);
      queue.ready.splice(at < 0 ? queue.ready.length : at, 0, batch);
      return;
    }
    const failure = elapsedMs >= this.deliveryTimeoutMs && retriable
      ? new RillError('REQUEST_TIMED_OUT', `not delivered within deliveryTimeoutMs ${this.deliveryTimeoutMs}: ${error.message}`, { cause: error })
      : error;
    // Given up: later sequences of the partition may no longer fit (see the top of this file).
    if (this.idempotent) this.requestReset(batch.queue);
    // The topic may have been deleted or shrunk, or the broker was not its leader: later sends get fresh metadata.
    if (error.code === 'UNKNOWN_TOPIC_OR_PARTITION') this.cluster.markStale(batch.topic);
    this.reject(batch, failure);
  }

  /**
   * Holds back the topic's batches until fresh metadata names its leaders (or the refresh failed:
   * then the old leaders are tried again, and a new failure asks again). Batches go back to their
   * queues in order before this is called, so holding them changes no order.
   */
  private refreshLeaders(topic: string): void {
    if (this.awaitingMetadata.has(topic) || this.closed) return;
    this.awaitingMetadata.add(topic);
    this.cluster.markStale(topic);
    this.cluster.topic(topic).then((metadata) => metadata, () => undefined).then((metadata) => {
      this.awaitingMetadata.delete(topic);
      this.settleUnknown(topic, metadata);
      this.skipBackoffForNewLeaders(topic, metadata);
      this.afterRequest();
    });
  }

  /**
   * After a refresh: batches a broker answered UNKNOWN_TOPIC_OR_PARTITION for are retried if the
   * fresh metadata names another leader for their partition, and fail otherwise (the topic or
   * partition is gone, or the metadata still names that broker).
   */
  private settleUnknown(topic: string, metadata: TopicMetadata | undefined): void {
    for (const queue of this.queues.get(topic) ?? []) {
      const leader = metadata?.partitions[queue.partition]?.leader;
      for (const batch of queue.ready.filter((b) => b.unknownAt !== null)) {
        const unknownAt = batch.unknownAt!;
        batch.unknownAt = null;
        if (leader !== undefined && leader !== unknownAt.leader) continue;
        queue.ready.splice(queue.ready.indexOf(batch), 1);
        this.failOrRetry(batch, unknownAt.error, false);
      }
    }
  }

  /**
   * A batch that failed on one leader and waits out its backoff goes at once when fresh metadata
   * names another leader for its partition (as Kafka's KIP-951): after a failover the first retry
   * reaches the new leader as soon as the client knows it.
   */
  private skipBackoffForNewLeaders(topic: string, metadata: TopicMetadata | undefined): void {
    if (metadata === undefined) return;
    const nowMs = Date.now();
    for (const queue of this.queues.get(topic) ?? []) {
      const leader = metadata.partitions[queue.partition]?.leader ?? -1;
      if (leader < 0) continue;
      for (const batch of queue.ready) if (batch.attempts > 0 && batch.sentTo !== leader && batch.notBeforeMs > nowMs) batch.notBeforeMs = nowMs;
    }
  }

  private reject(batch: PendingBatch, error: Error): void {
    this.bufferedBytes -= batch.bytes!.length;
    for (const reject of batch.rejects) reject(error);
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

function settleInFlight(batch: PendingBatch): void {
  const inFlight = batch.queue.inFlight;
  const at = inFlight.indexOf(batch);
  if (at >= 0) inFlight.splice(at, 1);
}

/** The lowest ordinal among the partition's batches in flight, or `fallback` if none is. */
function oldestInFlightOrdinal(queue: PartitionQueue, fallback: number): number {
  let oldest = fallback;
  for (const batch of queue.inFlight) if (batch.ordinal < oldest) oldest = batch.ordinal;
  return oldest;
}

/** Whether a batch created before this one is still waiting or in flight. */
function hasEarlierUnsettled(queue: PartitionQueue, batch: PendingBatch): boolean {
  if (queue.ready.length > 0 && queue.ready[0]!.ordinal < batch.ordinal) return true;
  for (const other of queue.inFlight) if (other.ordinal < batch.ordinal) return true;
  return false;
}

/** Rewrites a sealed batch's producer fields and its CRC (a reset renumbers waiting batches). */
function restampProducer(bytes: Buffer, producerId: number, epoch: number, baseSequence: number): void {
  const high = Math.floor(producerId / 0x1_0000_0000);
  bytes.writeInt32BE(high, BatchField.producerId);
  bytes.writeUInt32BE(producerId - high * 0x1_0000_0000, BatchField.producerId + 4);
  bytes.writeInt16BE(epoch, BatchField.producerEpoch);
  bytes.writeInt32BE(baseSequence, BatchField.baseSequence);
  bytes.writeUInt32BE(crc32c(bytes.subarray(BatchField.attributes)), BatchField.crc);
}
