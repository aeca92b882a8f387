/**
 * Shared by the fault tests: raw produce/fetch over one client connection (so a test sees the
 * exact error code of every request, without the producer's retries), a reader that checks
 * every stored batch byte for byte, and the resident memory of a broker process.
 */
import fs from 'node:fs';
import { BrokerConnection } from '../../src/client/connection.js';
import { RillError, errorNameOf, type ErrorName } from '../../src/lib/errors.js';
import { responseHeaderBytes } from '../../src/lib/limits.js';
import { ApiKey } from '../../src/wire/apis.js';
import { decodeFetchResponse, encodeFetchRequest, type FetchedPartition } from '../../src/wire/fetch.js';
import { decodeProduceResponse, encodeProduceRequest, type ProducePartitionResponse } from '../../src/wire/produce.js';
import { checkBatchFrame, encodeBatch, forEachRecord, readBaseOffset, readBatchSize, readLastOffsetDelta } from '../../src/wire/record-batch.js';

export function connect(port: number, requestTimeoutMs = 30_000): BrokerConnection {
  return new BrokerConnection({ host: '127.0.0.1', port }, { requestTimeoutMs });
}

/** One batch of string values. */
export function batchOf(values: string[]): Buffer {
  return encodeBatch(values.map((value) => ({ value })), Date.now());
}

export interface ProduceOutcome extends ProducePartitionResponse {
  error: ErrorName;
}

/** Sends one batch to one partition; resolves with the partition result (acks 1 or -1). */
export async function produceRaw(connection: BrokerConnection, topic: string, partition: number, values: string[], acks: 1 | -1): Promise<ProduceOutcome> {
  const body = encodeProduceRequest(acks, 30_000, [{ name: topic, partitions: [{ partition, batches: [batchOf(values)] }] }]);
  const frame = (await connection.send(ApiKey.Produce, 0, body))!;
  const errorCode = frame.readInt16BE(4);
  if (errorCode !== 0) throw RillError.fromCode(errorCode, 'produce request failed as a whole');
  const result = decodeProduceResponse(frame, responseHeaderBytes).topics[0]!.partitions[0]!;
  return { ...result, error: errorNameOf(result.errorCode) };
}

export async function fetchRaw(connection: BrokerConnection, topic: string, partition: number, fetchOffset: number, maxBytes = 1024 * 1024): Promise<FetchedPartition> {
  const body = encodeFetchRequest({ maxWaitMs: 0, minBytes: 0, maxBytes, topics: [{ name: topic, partitions: [{ partition, fetchOffset, partitionMaxBytes: maxBytes }] }] });
  const frame = (await connection.send(ApiKey.Fetch, 0, [body]))!;
  const errorCode = frame.readInt16BE(4);
  if (errorCode !== 0) throw RillError.fromCode(errorCode, 'fetch request failed as a whole');
  return decodeFetchResponse(frame, responseHeaderBytes, Number.MAX_SAFE_INTEGER).topics[0]!.partitions[0]!;
}

export interface VerifiedRead {
  values: string[];
  /** Every batch's [baseOffset, lastOffset], in order. */
  batches: [number, number][];
  highWatermark: number;
}

/**
 * Reads a partition from offset 0 to its high watermark and checks what a consumer relies on:
 * every batch is whole and passes its CRC, base offsets are dense (each batch starts where the
 * previous ended), and nothing is served past the high watermark. Throws on the first violation.
 */
export async function readVerified(connection: BrokerConnection, topic: string, partition: number): Promise<VerifiedRead> {
  const read: VerifiedRead = { values: [], batches: [], highWatermark: -1 };
  let offset = 0;
  for (;;) {
    const fetched = await fetchRaw(connection, topic, partition, offset);
    if (fetched.errorCode !== 0) throw RillError.fromCode(fetched.errorCode, `${topic}/${partition} at offset ${offset}`);
    read.highWatermark = fetched.highWatermark;
    const records = fetched.records;
    if (records.length === 0) {
      if (offset !== fetched.highWatermark) throw new Error(`${topic}/${partition}: empty fetch at ${offset} below the high watermark ${fetched.highWatermark}`);
      return read;
    }
    for (let pos = 0; pos < records.length;) {
      const sizeBytes = readBatchSize(records, pos);
      checkBatchFrame(records, pos, records.length);
      const baseOffset = readBaseOffset(records, pos);
      const lastOffset = baseOffset + readLastOffsetDelta(records, pos);
      if (baseOffset !== offset) throw new Error(`${topic}/${partition}: batch at ${baseOffset}, expected ${offset} (offsets not dense)`);
      if (lastOffset >= fetched.highWatermark) throw new Error(`${topic}/${partition}: batch ${baseOffset}..${lastOffset} served past the high watermark ${fetched.highWatermark}`);
      forEachRecord(records, pos, pos + sizeBytes, (_offset, _timestamp, _key, value) => read.values.push(value?.toString() ?? ''));
      read.batches.push([baseOffset, lastOffset]);
      offset = lastOffset + 1;
      pos += sizeBytes;
    }
  }
}

/** Resident set size of a process, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

export const mib = 1024 * 1024;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 20 ms until it holds or `timeoutMs` passes; returns whether it held. */
export async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<boolean> {
  const deadlineMs = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadlineMs) return false;
    await sleep(20);
  }
  return true;
}
