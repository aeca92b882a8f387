/**
 * Produce: validate every batch once, append its bytes unchanged, answer at the durability asked.
 *   acks 0   -> appended, no reply;
 *   acks 1   -> appended (written to the OS) before the reply;
 *   acks all -> appended and fdatasync'ed before the reply; concurrent requests share fsyncs.
 * All batches of one partition entry are validated before any is appended, so a bad batch never
 * leaves its neighbours half-stored.
 */
import { DecodeError, RillError, errorCodeOf } from '../../lib/errors.js';
import { requestHeaderBytes } from '../../lib/limits.js';
import { Durability } from '../../wire/apis.js';
import { decodeProduceRequest, encodeProduceResponse, type ProducePartitionResponse, type ProduceTopicRequest } from '../../wire/produce.js';
import { newBatchInfo, validateBatch } from '../../wire/record-batch.js';
import { replyOf, type Reply, type RequestContext } from '../connection.js';
import type { BrokerMetrics } from '../metrics.js';
import type { Partition } from '../partition.js';
import type { AppendBatch } from '../../storage/partition-log.js';
import type { PartitionManager } from '../partition-manager.js';

const info = newBatchInfo();

function validateEntry(records: Buffer): AppendBatch[] {
  if (records.length === 0) throw new DecodeError('INVALID_BATCH', 'no record batch in the partition entry');
  const batches: AppendBatch[] = [];
  for (let pos = 0; pos < records.length; pos += info.sizeBytes) {
    validateBatch(records, pos, records.length, info);
    batches.push({ batch: records.subarray(pos, pos + info.sizeBytes), recordsCount: info.recordsCount, maxTimestampMs: info.maxTimestamp });
  }
  return batches;
}

function failure(partition: number, error: RillError): ProducePartitionResponse {
  return { partition, errorCode: error.errorCode, baseOffset: -1, logStartOffset: -1, durability: Durability.sent, errorMessage: error.message };
}

export function handleProduce(context: RequestContext, partitions: PartitionManager, metrics: BrokerMetrics): Reply | null | Promise<Reply | null> {
  const request = decodeProduceRequest(context.frame, requestHeaderBytes);
  const durable = request.acks === -1;
  const results: ProduceTopicRequest<ProducePartitionResponse>[] = [];
  const flushes: Promise<void>[] = [];
  for (const topic of request.topics) {
    const topicResults: ProducePartitionResponse[] = [];
    results.push({ name: topic.name, partitions: topicResults });
    for (const entry of topic.partitions) {
      const partition = partitions.get(topic.name, entry.partition);
      let result: ProducePartitionResponse;
      if (partition === undefined) {
        result = failure(entry.partition, new RillError('UNKNOWN_TOPIC_OR_PARTITION', `${topic.name}/${entry.partition} does not exist`));
      } else {
        result = appendEntry(partition, entry.records, durable, metrics);
        if (durable && result.errorCode === 0) flushes.push(awaitFlush(partition, result));
        else if (result.errorCode === 0) partition.publish();
      }
      if (result.errorCode !== 0) metrics.countError(RillError.fromCode(result.errorCode).code);
      topicResults.push(result);
    }
  }
  if (request.acks === 0) return null;
  const reply = (): Reply => replyOf([encodeProduceResponse(results)]);
  if (flushes.length === 0) return reply();
  return Promise.all(flushes).then(reply);
}

function appendEntry(partition: Partition, records: Buffer, durable: boolean, metrics: BrokerMetrics): ProducePartitionResponse {
  let batches: AppendBatch[];
  try {
    batches = validateEntry(records);
  } catch (error) {
    if (error instanceof DecodeError) return failure(partition.index, error);
    throw error;
  }
  let baseOffset: number;
  try {
    baseOffset = partition.append(batches, durable);
  } catch (error) {
    if (error instanceof RillError) return failure(partition.index, error);
    throw error;
  }
  for (const batch of batches) metrics.recordsAppended += batch.recordsCount;
  metrics.bytesAppended += records.length;
  return { partition: partition.index, errorCode: 0, baseOffset, logStartOffset: partition.log.logStartOffset, durability: Durability.written, errorMessage: '' };
}

async function awaitFlush(partition: Partition, result: ProducePartitionResponse): Promise<void> {
  try {
    await partition.flush();
    result.durability = Durability.fsynced;
  } catch (error) {
    const rill = error instanceof RillError ? error : new RillError('STORAGE_ERROR', (error as Error).message);
    result.errorCode = errorCodeOf(rill.code);
    result.errorMessage = rill.message;
    result.baseOffset = -1;
  }
}
