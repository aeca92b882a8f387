/**
 * The consumer's fetch side: one long-poll Fetch per leader for a set of owned partitions, on
 * connections of their own (purpose 'consumer-fetch'), so heartbeats and commits never wait
 * behind a fetch. Turns the stored batches into Messages at or after each partition's fetch
 * offset. Pure request/decoding: which partitions to fetch, and what to do with the result, is
 * the Consumer's business.
 */
import { RillError } from '../lib/errors.js';
import { responseHeaderBytes } from '../lib/limits.js';
import { ApiKey, OffsetSpec } from '../wire/apis.js';
import { decodeListOffsetsResponse } from '../wire/control.js';
import { decodeFetchResponse, encodeFetchRequest } from '../wire/fetch.js';
import { forEachRecord, readBatchSize, readLastOffsetDelta } from '../wire/record-batch.js';
import { checkReply } from './connection.js';
import type { Cluster } from './cluster.js';
import type { PartitionState } from './consumer-partition.js';
import type { Message } from './reader.js';

export interface FetchLimits {
  maxWaitMs: number;
  maxBytes: number;
  partitionMaxBytes: number;
}

export interface FetchedData {
  state: PartitionState;
  /** The state's generation when the fetch was sent: a different one now means stale data. */
  generation: number;
  errorCode: number;
  highWatermark: number;
  messages: Message[];
  /** Fetch offset after these messages (past the last batch returned). */
  nextFetchOffset: bigint;
}

export { byLeader } from './cluster.js';

/** One Fetch to one leader. Throws RillError when the whole request fails. */
export async function fetchFrom(cluster: Cluster, leader: number, states: readonly PartitionState[], limits: FetchLimits): Promise<FetchedData[]> {
  const generations = states.map((s) => s.generation);
  const offsets = states.map((s) => s.fetchOffset!);
  const byTopic = new Map<string, { partition: number; fetchOffset: number; partitionMaxBytes: number }[]>();
  states.forEach((state, i) => {
    let list = byTopic.get(state.topic);
    if (list === undefined) byTopic.set(state.topic, (list = []));
    list.push({ partition: state.partition, fetchOffset: Number(offsets[i]), partitionMaxBytes: limits.partitionMaxBytes });
  });
  const request = encodeFetchRequest({
    maxWaitMs: limits.maxWaitMs,
    minBytes: 1,
    maxBytes: limits.maxBytes,
    topics: [...byTopic].map(([name, partitions]) => ({ name, partitions })),
  });
  const connection = cluster.connectionForNode(leader, 'consumer-fetch');
  const frame = (await connection.send(ApiKey.Fetch, 0, [request], { timeoutMs: limits.maxWaitMs + connection.requestTimeoutMs }))!;
  checkReply(frame);
  const { throttleTimeMs, topics } = decodeFetchResponse(frame, responseHeaderBytes, Number.MAX_SAFE_INTEGER);
  if (throttleTimeMs > 0) cluster.instrumentation.throttle(connection.name, ApiKey.Fetch, throttleTimeMs);
  const results: FetchedData[] = [];
  states.forEach((state, i) => {
    const fetched = topics.find((t) => t.name === state.topic)?.partitions.find((p) => p.partition === state.partition);
    if (fetched === undefined) return;
    const from = offsets[i]!;
    const base = { state, generation: generations[i]!, errorCode: fetched.errorCode, highWatermark: fetched.highWatermark };
    if (fetched.errorCode !== 0) {
      results.push({ ...base, messages: [], nextFetchOffset: from });
      return;
    }
    const { messages, nextFetchOffset } = decodeRecords(state.topic, state.partition, fetched.records, from);
    results.push({ ...base, messages, nextFetchOffset });
  });
  return results;
}

/** Messages at or after `from` in whole stored batches (the first batch may start before it). */
export function decodeRecords(topic: string, partition: number, records: Buffer, from: bigint): { messages: Message[]; nextFetchOffset: bigint } {
  const messages: Message[] = [];
  const fromNumber = Number(from);
  let next = fromNumber;
  for (let pos = 0; pos < records.length;) {
    const size = readBatchSize(records, pos);
    if (size < 0 || pos + size > records.length) throw new RillError('MALFORMED_RESPONSE', `${topic}/${partition}: partial batch in fetch response`);
    const header = forEachRecord(records, pos, pos + size, (offset, timestamp, key, value, headers) => {
      if (offset >= fromNumber) messages.push({ topic, partition, offset: BigInt(offset), timestamp, key, value, headers });
    });
    next = Math.max(next, header.baseOffset + readLastOffsetDelta(records, pos) + 1);
    pos += size;
  }
  return { messages, nextFetchOffset: BigInt(next) };
}

/** Earliest or latest offset of some partitions of one topic (the reset policy), asked of each partition's leader. */
export async function listOffsets(cluster: Cluster, topic: string, partitions: readonly number[], which: 'earliest' | 'latest'): Promise<Map<number, bigint>> {
  const timestamp = which === 'earliest' ? OffsetSpec.earliest : OffsetSpec.latest;
  const responses = await cluster.perLeader(topic, partitions, (connection, led) => {
    const request = { topics: [{ name: topic, partitions: led.map((partition) => ({ partition, timestamp })) }] };
    return connection.call(ApiKey.ListOffsets, request, decodeListOffsetsResponse);
  });
  const offsets = new Map<number, bigint>();
  for (const p of responses.flatMap((response) => response.find((t) => t.name === topic)?.partitions ?? [])) {
    if (p.errorCode !== 0) throw cluster.noteError(topic, RillError.fromCode(p.errorCode, `${topic}/${p.partition}: listing the ${which} offset`));
    offsets.set(p.partition, p.offset);
  }
  for (const partition of partitions) {
    if (!offsets.has(partition)) throw new RillError('MALFORMED_RESPONSE', `${topic}/${partition}: no ${which} offset in the ListOffsets response`);
  }
  return offsets;
}
