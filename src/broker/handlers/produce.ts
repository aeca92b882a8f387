/**
 * Produce: validate every batch once, append its bytes unchanged, answer at the durability asked.
 *   acks 0   -> appended, no reply;
 *   acks 1   -> appended (written to the OS) before the reply;
 *   acks all -> appended and fdatasync'ed before the reply; concurrent requests share fsyncs.
 * All batches of one partition entry are validated before any is appended, so a bad batch never
 * leaves its neighbours half-stored.
 *
 * Idempotent batches (producerId >= 0) go through the partition's producer state first
 * (producer-state.ts): a duplicate is not appended and is answered with its original base offset
 * (after a flush when acks is all, so the answer's durability is true of the original too); an
 * out-of-order or stale-epoch batch gets OUT_OF_ORDER_SEQUENCE / INVALID_PRODUCER_EPOCH. An
 * idempotent batch must be alone in its partition entry (the bundled producer sends one batch per
 * partition per request), so "duplicate or not" is one answer per entry.
 */
import { DecodeError, RillError, errorCodeOf } from '../../lib/errors.js';
import { requestHeaderBytes } from '../../lib/limits.js';
import { Durability } from '../../wire/apis.js';
import { decodeProduceRequest, encodeProduceResponse, type ProducePartitionResponse, type ProduceTopicRequest } from '../../wire/produce.js';
import { newBatchInfo, validateBatch } from '../../wire/record-batch.js';
import { msgpackReply, replyOf, type Reply, type RequestContext } from '../connection.js';
import type { BrokerMetrics } from '../metrics.js';
import type { Partition } from '../partition.js';
import type { AppendBatch } from '../../storage/partition-log.js';
import type { PartitionManager } from '../partition-manager.js';
import { appendNew, type ProducerStates } from '../producer-state.js';
import type { Access } from '../access.js';
import { decodeInitProducerIdRequest } from '../../wire/producer-id.js';
import { decodeMsgpack } from '../../wire/msgpack.js';

const info = newBatchInfo();

/** Producer fields of the entry validated last (reused; meaningful when producerId >= 0). */
const entryProducer = { producerId: -1, producerEpoch: -1, baseSequence: -1, recordsCount: 0, maxTimestampMs: 0 };

/** End offset (last offset + 1) of the entry appended last, or of the original of a duplicate. */
let entryEndOffset = 0;

function validateEntry(records: Buffer): AppendBatch[] {
  if (records.length === 0) throw new DecodeError('INVALID_BATCH', 'no record batch in the partition entry');
  const batches: AppendBatch[] = [];
  let idempotent = false;
  for (let pos = 0; pos < records.length; pos += info.sizeBytes) {
    validateBatch(records, pos, records.length, info);
    batches.push({ batch: records.subarray(pos, pos + info.sizeBytes), recordsCount: info.recordsCount, maxTimestampMs: info.maxTimestamp });
    if (info.producerId >= 0) idempotent = true;
  }
  entryProducer.producerId = -1;
  if (!idempotent) return batches;
  if (batches.length > 1) throw new DecodeError('INVALID_BATCH', `an idempotent batch must be alone in its partition entry, found ${batches.length} batches`);
  if (info.producerEpoch < 0 || info.baseSequence < 0) {
    throw new DecodeError('INVALID_BATCH', `idempotent batch of producer ${info.producerId} has producerEpoch ${info.producerEpoch} and baseSequence ${info.baseSequence}; both must be >= 0`);
  }
  entryProducer.producerId = info.producerId;
  entryProducer.producerEpoch = info.producerEpoch;
  entryProducer.baseSequence = info.baseSequence;
  entryProducer.recordsCount = info.recordsCount;
  entryProducer.maxTimestampMs = info.maxTimestamp;
  return batches;
}

function failure(partition: number, error: RillError): ProducePartitionResponse {
  return { partition, errorCode: error.errorCode, baseOffset: -1, logStartOffset: -1, durability: Durability.sent, errorMessage: error.message };
}

export function handleProduce(context: RequestContext, partitions: PartitionManager, metrics: BrokerMetrics, producers: ProducerStates, access: Access): Reply | null | Promise<Reply | null> {
  const request = decodeProduceRequest(context.frame, requestHeaderBytes);
  // A principal over its produce quota: the reply (if any) says so, and the connection is muted that long.
  const throttleTimeMs = context.connection.quotas?.produce(context.connection, context.frame.length) ?? 0;
  const durable = request.acks === -1;
  const results: ProduceTopicRequest<ProducePartitionResponse>[] = [];
  const flushes: Promise<void>[] = [];
  for (const topic of request.topics) {
    const topicResults: ProducePartitionResponse[] = [];
    results.push({ name: topic.name, partitions: topicResults });
    // Checked before the topic's existence, so a principal cannot probe for names it may not write.
    if (access.enforced && !access.allows(context.connection, 'topic', topic.name, 'write')) {
      for (const entry of topic.partitions) topicResults.push(failure(entry.partition, new RillError('TOPIC_AUTHORIZATION_FAILED', `${context.connection.principal ?? 'this connection'} may not write to topic "${topic.name}"`)));
      continue;
    }
    for (const entry of topic.partitions) {
      const partition = partitions.get(topic.name, entry.partition);
      let result: ProducePartitionResponse;
      if (partition === undefined) {
        result = failure(entry.partition, new RillError('UNKNOWN_TOPIC_OR_PARTITION', `${topic.name}/${entry.partition} does not exist`));
      } else {
        result = appendEntry(partition, entry.records, durable, metrics, producers);
        if (partition.replication !== null) {
          // In a cluster, acks 'all' waits for the in-sync replicas (broker/replica-manager.ts).
          if (durable && result.errorCode === 0) flushes.push(awaitDurable(result, partition.replication.awaitAcks(entryEndOffset, request.timeoutMs > 0 ? request.timeoutMs : 30_000)));
        } else if (durable && result.errorCode === 0) flushes.push(awaitDurable(result, partition.flush()));
        else if (result.errorCode === 0) partition.publish();
      }
      if (result.errorCode !== 0) countFailure(metrics, context, topic.name, result);
      topicResults.push(result);
    }
  }
  if (request.acks === 0) return null;
  const reply = (): Reply => replyOf([encodeProduceResponse(results, throttleTimeMs)]);
  if (flushes.length === 0) return reply();
  return Promise.all(flushes).then(reply);
}

function appendEntry(partition: Partition, records: Buffer, durable: boolean, metrics: BrokerMetrics, producers: ProducerStates): ProducePartitionResponse {
  let batches: AppendBatch[];
  try {
    batches = validateEntry(records);
  } catch (error) {
    if (error instanceof DecodeError) return failure(partition.index, error);
    throw error;
  }
  let baseOffset: number;
  try {
    const replication = partition.replication;
    if (replication !== null) {
      replication.checkClientAppend(durable);
      replication.stamp(batches);
    }
    // A replicated partition's visibility is its high watermark, not its own fsyncs.
    const localDurable = durable && replication === null;
    // Loaded for every partition written to, so snapshots keep the rebuild after a crash short.
    const state = producers.stateOf(partition);
    const { producerId, producerEpoch, baseSequence, recordsCount, maxTimestampMs } = entryProducer;
    if (producerId >= 0) {
      // In a cluster, ids come from etcd blocks every broker shares (cluster-topics.ts).
      if (replication === null && !producers.wasIssued(producerId)) throw new RillError('UNKNOWN_PRODUCER_ID', `producer id ${producerId} was never issued by this broker; call InitProducerId`);
      const verdict = state.check(producerId, producerEpoch, baseSequence, recordsCount);
      if (verdict !== appendNew) {
        entryEndOffset = verdict + recordsCount;
        return success(partition, verdict);
      }
      baseOffset = partition.append(batches, localDurable);
      state.record(producerId, producerEpoch, baseSequence, recordsCount, baseOffset, maxTimestampMs);
    } else {
      baseOffset = partition.append(batches, localDurable);
    }
    entryEndOffset = partition.log.nextOffset;
    producers.afterAppend(partition, records.length);
  } catch (error) {
    if (error instanceof RillError) return failure(partition.index, error);
    throw error;
  }
  let recordsCount = 0;
  for (const batch of batches) recordsCount += batch.recordsCount;
  metrics.recordsAppended += recordsCount;
  metrics.bytesAppended += records.length;
  partition.recordsIn += recordsCount;
  partition.bytesIn += records.length;
  return success(partition, baseOffset);
}

/** Counts a partition's failure; a full disk or a storage failure is also raised to the operator. */
function countFailure(metrics: BrokerMetrics, context: RequestContext, topic: string, result: ProducePartitionResponse): void {
  const code = RillError.fromCode(result.errorCode).code;
  metrics.partitionError(topic, result.partition, { code, message: result.errorMessage });
  metrics.clientError(context.connection, code);
}

function success(partition: Partition, baseOffset: number): ProducePartitionResponse {
  return { partition: partition.index, errorCode: 0, baseOffset, logStartOffset: partition.log.logStartOffset, durability: Durability.written, errorMessage: '' };
}

/** InitProducerId: a new producer id (never handed out before, restarts included) at epoch 0. */
/** `allocate`: in a cluster, ids come from blocks reserved in etcd (cluster-topics.ts). */
export function handleInitProducerId(context: RequestContext, producers: ProducerStates, access: Access, allocate?: () => Promise<number>): Reply | Promise<Reply> {
  decodeInitProducerIdRequest(decodeMsgpack(context.frame.subarray(requestHeaderBytes)));
  // Kafka's rule (KIP-679): an idempotent producer needs write on some topic.
  if (access.enforced && !access.allowsSome(context.connection, 'topic', 'write')) {
    throw new RillError('CLUSTER_AUTHORIZATION_FAILED', `${context.connection.principal ?? 'this connection'} may not write to any topic, so it gets no producer id`);
  }
  if (allocate !== undefined) return allocate().then((producerId) => msgpackReply({ producerId, producerEpoch: 0 }));
  let producerId: number;
  try {
    producerId = producers.allocateProducerId();
  } catch (error) {
    throw new RillError('STORAGE_ERROR', `could not reserve producer ids durably: ${(error as Error).message}`);
  }
  return msgpackReply({ producerId, producerEpoch: 0 });
}

/**
 * acks 'all': the reply waits for `durable` — the partition's fsync, or in a cluster every in-sync
 * replica's (replica-manager.ts). A failure turns the partition's result into that error.
 */
async function awaitDurable(result: ProducePartitionResponse, durable: Promise<unknown>): Promise<void> {
  try {
    await durable;
    result.durability = Durability.fsynced;
  } catch (error) {
    const rill = error instanceof RillError ? error : new RillError('STORAGE_ERROR', (error as Error).message);
    result.errorCode = errorCodeOf(rill.code);
    result.errorMessage = rill.message;
    result.baseOffset = -1;
  }
}
