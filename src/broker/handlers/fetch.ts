/**
 * Fetch: whole stored batches from an offset, up to the visible end, without re-encoding.
 * Long-poll: when fewer than minBytes are available the reply waits (at most maxWaitMs, bounded
 * by fetchWaitMsMax) until an append makes enough visible. Replies on one connection may overtake
 * a waiting fetch (see connection.ts). A principal over its fetch quota (broker/quotas.ts) gets
 * replies of at most one burst, each saying how long it was held back (throttleTimeMs).
 */
import { RillError, errorCodeOf } from '../../lib/errors.js';
import { fetchResponseBytesMax, fetchWaitMsMax, requestHeaderBytes } from '../../lib/limits.js';
import { decodeFetchRequest, encodeFetchResponse, type FetchPartitionResponse, type FetchRequest, type FetchTopic } from '../../wire/fetch.js';
import { replyOf, type Reply, type RequestContext } from '../connection.js';
import type { BrokerMetrics } from '../metrics.js';
import type { Partition } from '../partition.js';
import type { PartitionManager } from '../partition-manager.js';
import type { Access } from '../access.js';

import { readLastOffsetDelta } from '../../wire/record-batch.js';

interface Attempt {
  topics: FetchTopic<FetchPartitionResponse>[];
  bytes: number;
  errors: number;
  /** What each partition contributes, counted as traffic out once the attempt becomes the reply. */
  served: { partition: Partition; batches: Buffer[]; bytes: number }[];
}

/** Partition errors are raised through metrics, which logs them rate-limited (operator-alerts.ts). */
export function handleFetch(context: RequestContext, partitions: PartitionManager, metrics: BrokerMetrics, access: Access): Reply | Promise<Reply | null> {
  const request = decodeFetchRequest(context.frame, requestHeaderBytes);
  if (access.enforced) {
    // Topics the principal may not read answer TOPIC_AUTHORIZATION_FAILED (at once: no long-poll on them).
    const denied = request.topics.filter((topic) => !access.allows(context.connection, 'topic', topic.name, 'read'));
    if (denied.length > 0) return deniedReply(request, new Set(denied), metrics, partitions, context);
  }
  const waitMs = Math.min(request.maxWaitMs, fetchWaitMsMax);
  const first = attempt(request, partitions, metrics, context, waitMs === 0);
  if (first.bytes >= request.minBytes || first.errors > 0 || waitMs === 0) return toReply(first, metrics, context);
  return longPoll(request, partitions, metrics, waitMs, context, first.bytes);
}

/** The readable topics as one final attempt, the others refused. */
function deniedReply(request: FetchRequest, denied: ReadonlySet<FetchRequest['topics'][number]>, metrics: BrokerMetrics, partitions: PartitionManager, context: RequestContext): Reply {
  const allowed = attempt({ ...request, topics: request.topics.filter((topic) => !denied.has(topic)) }, partitions, metrics, context, true);
  const refused = errorCodeOf('TOPIC_AUTHORIZATION_FAILED');
  let next = 0;
  const topics = request.topics.map((topic) => (denied.has(topic)
    ? { name: topic.name, partitions: topic.partitions.map((p): FetchPartitionResponse => ({ partition: p.partition, errorCode: refused, highWatermark: -1, logStartOffset: -1, records: [] })) }
    : allowed.topics[next++]!));
  return toReply({ ...allowed, topics }, metrics, context);
}

function toReply(result: Attempt, metrics: BrokerMetrics, context: RequestContext): Reply {
  const quotas = context.connection.quotas;
  const throttleTimeMs = quotas === null ? 0 : quotas.fetch(context.connection, result.bytes);
  const { chunks } = encodeFetchResponse(result.topics, throttleTimeMs);
  for (const { partition, batches, bytes } of result.served) {
    let records = 0;
    for (const batch of batches) records += readLastOffsetDelta(batch, 0) + 1;
    partition.recordsOut += records;
    partition.bytesOut += bytes;
    metrics.recordsFetched += records;
    metrics.bytesFetched += bytes;
  }
  return replyOf(chunks);
}

/**
 * Reply bytes this fetch may add: what it asked for, at most fetchResponseBytesMax, minus what
 * its connection still has queued for the client. Many pipelined fetches woken together on a
 * client that does not read would otherwise each read up to the maximum into memory; this way a
 * connection holds at most about one maximal reply (plus the backlog at which it stops being read).
 * Under a fetch quota, also at most what the quota lets through at once.
 */
function replyBudget(request: FetchRequest, context: RequestContext): number {
  const budget = Math.min(request.maxBytes, fetchResponseBytesMax - context.connection.socket.writableLength);
  const quotas = context.connection.quotas;
  return quotas === null ? budget : Math.min(budget, quotas.fetchBytesMax(context.connection));
}

/**
 * Reads what the fetch may return now. Unless it is the `final` attempt (the reply goes out
 * whatever it holds), a budget below minBytes reads nothing: such a reply could not satisfy the
 * fetch, and reading it on every append would only burn the disk.
 */
function attempt(request: FetchRequest, partitions: PartitionManager, metrics: BrokerMetrics, context: RequestContext, final: boolean): Attempt {
  let remaining = replyBudget(request, context);
  if (!final && remaining < request.minBytes) remaining = 0;
  let bytes = 0;
  let errors = 0;
  const served: Attempt['served'] = [];
  const topics = request.topics.map((topic) => ({
    name: topic.name,
    partitions: topic.partitions.map((p): FetchPartitionResponse => {
      const partition = partitions.get(topic.name, p.partition);
      if (partition === undefined) {
        errors++;
        metrics.countError('UNKNOWN_TOPIC_OR_PARTITION');
        return { partition: p.partition, errorCode: errorCodeOf('UNKNOWN_TOPIC_OR_PARTITION'), highWatermark: -1, logStartOffset: -1, records: [] };
      }
      // In a cluster only the leader serves consumers (a follower answers NOT_LEADER).
      const refused = partition.replication?.clientError() ?? null;
      if (refused !== null) {
        errors++;
        return { partition: p.partition, errorCode: refused.errorCode, highWatermark: -1, logStartOffset: -1, records: [] };
      }
      const highWatermark = partition.highWatermark;
      const logStartOffset = partition.log.logStartOffset;
      const base = { partition: p.partition, highWatermark, logStartOffset };
      if (p.fetchOffset < logStartOffset || p.fetchOffset > partition.log.nextOffset) {
        errors++;
        return { ...base, errorCode: errorCodeOf('OFFSET_OUT_OF_RANGE'), records: [] };
      }
      if (p.fetchOffset >= highWatermark || remaining <= 0) return { ...base, errorCode: 0, records: [] };
      try {
        const { batches } = partition.log.read(p.fetchOffset, Math.min(p.partitionMaxBytes, remaining), highWatermark);
        let read = 0;
        for (const batch of batches) read += batch.length;
        remaining -= read;
        bytes += read;
        if (read > 0) served.push({ partition, batches, bytes: read });
        return { ...base, errorCode: 0, records: batches };
      } catch (error) {
        if (!(error instanceof RillError)) throw error;
        errors++;
        // A corrupt range is raised (rate-limited: every reader retrying it must not flood the log).
        metrics.partitionError(topic.name, p.partition, error.code === 'CORRUPT_LOG'
          ? { code: error.code, message: `${error.message}; this range is not served (see README, Guarantees)` }
          : error);
        return { ...base, errorCode: error.errorCode, records: [] };
      }
    }),
  }));
  return { topics, bytes, errors, served };
}

/** Bytes the watched partitions' logs hold now (a cheap measure of what has been appended). */
function logBytes(watched: readonly Partition[]): number {
  let total = 0;
  for (const partition of watched) {
    try {
      total += partition.log.sizeBytes;
    } catch {
      // An offline partition adds nothing; the next read reports its error.
    }
  }
  return total;
}

/**
 * Waits for appends. A wake-up reads only once the bytes appended since the last read could
 * reach minBytes, so a fetch with a large minBytes does not re-read the growing tail on every
 * append.
 */
function longPoll(request: FetchRequest, partitions: PartitionManager, metrics: BrokerMetrics, waitMs: number, context: RequestContext, bytesSeen: number): Promise<Reply | null> {
  return new Promise((resolve) => {
    const watched = request.topics.flatMap((topic) => topic.partitions.map((p) => partitions.get(topic.name, p.partition))).filter((p) => p !== undefined);
    let seenBytes = bytesSeen;
    let logBytesAtLastRead = logBytes(watched);
    let scheduled = false;
    let done = false;
    const finish = (reply: Reply | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const partition of watched) partition.offAdvance(onAdvance);
      resolve(reply);
    };
    const retry = (): void => {
      scheduled = false;
      if (done) return;
      if (context.connection.isClosed) return finish(null);
      const logBytesNow = logBytes(watched);
      if (seenBytes + (logBytesNow - logBytesAtLastRead) < request.minBytes) return;
      const result = attempt(request, partitions, metrics, context, false);
      if (result.bytes >= request.minBytes || result.errors > 0) return finish(toReply(result, metrics, context));
      seenBytes = result.bytes;
      logBytesAtLastRead = logBytesNow;
    };
    // Appends arrive in bursts: coalesce wake-ups into one read per turn of the event loop.
    const onAdvance = (): void => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(retry);
    };
    const timer = setTimeout(() => finish(context.connection.isClosed ? null : toReply(attempt(request, partitions, metrics, context, true), metrics, context)), waitMs);
    for (const partition of watched) partition.onAdvance(onAdvance);
  });
}
