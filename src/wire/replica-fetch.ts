/**
 * ReplicaFetch (api key 1001, v0): a follower fetches from its partition's leader. Binary like
 * Fetch, so the leader sends stored batches as they lie on disk and the follower appends them
 * unchanged. Rill's own API (Kafka folds it into Fetch with a replicaId), hence a key outside
 * Kafka's range. See protocol/apis/replica-fetch.md and docs/replication.md.
 *
 * Request:  replicaId i32 (the follower's node id), maxWaitMs u32, minBytes u32, maxBytes u32,
 *           topicCount u16, per topic: name, partitionCount u16,
 *           per partition (32 bytes): partition u32, currentLeaderEpoch i32, fetchOffset i64,
 *           fsyncedOffset i64, lastFetchedEpoch i32, partitionMaxBytes u32
 * Response: topicCount u16, per topic: name, partitionCount u16,
 *           per partition (42 bytes + records): partition u32, errorCode i16, leaderEpoch i32,
 *           highWatermark i64, logStartOffset i64, divergingEpoch i32, divergingEndOffset i64,
 *           records (u32 length + whole batches)
 *
 * What the decoders reject beyond lengths (they are facts of a correct follower or leader, so a
 * violation is a broken peer, not a state to answer per partition):
 *   request:  replicaId < 0; currentLeaderEpoch < 0 (a follower always knows the epoch of the
 *             state that made it follower, so every fetch is fenced); fetchOffset < 0;
 *             fsyncedOffset outside 0..fetchOffset; lastFetchedEpoch outside
 *             -1..currentLeaderEpoch (-1: its log is empty)
 *   response: leaderEpoch < -1; highWatermark or logStartOffset < -1 (-1: unknown, on error);
 *             divergingEpoch and divergingEndOffset not both -1 (absent) or both >= 0; a
 *             diverging partition with an error or with records
 */
import { assert } from '../lib/assert.js';
import { BodyReader, BodyWriter, encodeRecordsBody, readRequestTopicList, readTopicList, topicListBytes, writeTopicList, type TopicList } from './body.js';

/** divergingEpoch / divergingEndOffset on the wire when there is no divergence. */
const noDivergence = -1;

export interface ReplicaFetchPartitionRequest {
  partition: number;
  /** The leader epoch of the partition state the follower acts on; the leader fences on it. */
  currentLeaderEpoch: number;
  /** The follower's log end offset: the next offset it wants. */
  fetchOffset: number;
  /** What the follower has fsynced (≤ fetchOffset); the leader's high watermark waits for it. */
  fsyncedOffset: number;
  /** The epoch of the follower's last batch (-1: empty log); the leader checks it for divergence. */
  lastFetchedEpoch: number;
  partitionMaxBytes: number;
}

export interface ReplicaFetchRequest {
  /** The follower's node id. */
  replicaId: number;
  maxWaitMs: number;
  minBytes: number;
  maxBytes: number;
  topics: { name: string; partitions: ReplicaFetchPartitionRequest[] }[];
}

const partitionRequestBytes = 4 + 4 + 8 + 8 + 4 + 4;

export function encodeReplicaFetchRequest(request: ReplicaFetchRequest): Buffer {
  const writer = new BodyWriter(Buffer.allocUnsafe(4 + 4 + 4 + 4 + topicListBytes(request.topics, partitionRequestBytes)));
  writer.i32(request.replicaId).u32(request.maxWaitMs).u32(request.minBytes).u32(request.maxBytes);
  writeTopicList(writer, request.topics, (w, p) => {
    w.u32(p.partition).i32(p.currentLeaderEpoch).i64(p.fetchOffset).i64(p.fsyncedOffset).i32(p.lastFetchedEpoch).u32(p.partitionMaxBytes);
  });
  return writer.buf;
}

function readPartitionRequest(r: BodyReader): ReplicaFetchPartitionRequest {
  const partition = r.u32('partition');
  const currentLeaderEpoch = r.i32('currentLeaderEpoch');
  if (currentLeaderEpoch < 0) r.fail(`currentLeaderEpoch ${currentLeaderEpoch} is negative: a follower always knows its leader's epoch`);
  const fetchOffset = r.i64('fetchOffset');
  if (fetchOffset < 0) r.fail(`fetchOffset ${fetchOffset} is negative`);
  const fsyncedOffset = r.i64('fsyncedOffset');
  if (fsyncedOffset < 0 || fsyncedOffset > fetchOffset) r.fail(`fsyncedOffset ${fsyncedOffset} is outside 0..fetchOffset (${fetchOffset})`);
  const lastFetchedEpoch = r.i32('lastFetchedEpoch');
  if (lastFetchedEpoch < -1 || lastFetchedEpoch > currentLeaderEpoch) {
    r.fail(`lastFetchedEpoch ${lastFetchedEpoch} is outside -1..currentLeaderEpoch (${currentLeaderEpoch})`);
  }
  return { partition, currentLeaderEpoch, fetchOffset, fsyncedOffset, lastFetchedEpoch, partitionMaxBytes: r.u32('partitionMaxBytes') };
}

export function decodeReplicaFetchRequest(body: Buffer, start: number): ReplicaFetchRequest {
  const reader = new BodyReader(body, start, body.length, 'MALFORMED_REQUEST');
  const replicaId = reader.i32('replicaId');
  if (replicaId < 0) reader.fail(`replicaId ${replicaId} is not a node id`);
  const maxWaitMs = reader.u32('maxWaitMs');
  const minBytes = reader.u32('minBytes');
  const maxBytes = reader.u32('maxBytes');
  const topics = readRequestTopicList(reader, readPartitionRequest);
  reader.expectEnd('replica fetch request');
  return { replicaId, maxWaitMs, minBytes, maxBytes, topics };
}

/** Where the follower's log diverges from the leader's: truncate to endOffset, then fetch again. */
export interface DivergingEpoch {
  /** The largest epoch the leader has that is ≤ the follower's lastFetchedEpoch. */
  epoch: number;
  /** Where that epoch ends in the leader's log. */
  endOffset: number;
}

interface ReplicaFetchPartitionFields {
  partition: number;
  errorCode: number;
  /** The leader's epoch (on FENCED_LEADER_EPOCH, the newer one); -1 when this broker does not know. */
  leaderEpoch: number;
  highWatermark: number;
  logStartOffset: number;
  /** Set instead of records when lastFetchedEpoch ended earlier in the leader's log. */
  divergingEpoch: DivergingEpoch | null;
}

export interface ReplicaFetchPartitionResponse extends ReplicaFetchPartitionFields {
  /** Whole batches as stored; possibly several buffers (segments, cache entries), never copied. */
  records: readonly Buffer[];
}

export interface ReplicaFetchedPartition extends ReplicaFetchPartitionFields {
  records: Buffer;
}

/** Encodes the response as chunks: heads interleaved with the stored batches, which are not copied. */
export function encodeReplicaFetchResponse(topics: readonly TopicList<ReplicaFetchPartitionResponse>[]): { chunks: Buffer[]; bytes: number } {
  return encodeRecordsBody(topics, {
    prefixBytes: 0,
    writePrefix: () => {},
    partitionHeadBytes: 4 + 2 + 4 + 8 + 8 + 4 + 8,
    writePartitionHead: (w, p) => {
      const diverging = p.divergingEpoch;
      assert(diverging === null || (p.errorCode === 0 && p.records.every((chunk) => chunk.length === 0)), 'a diverging partition carries no error and no records');
      w.u32(p.partition).i16(p.errorCode).i32(p.leaderEpoch).i64(p.highWatermark).i64(p.logStartOffset);
      w.i32(diverging?.epoch ?? noDivergence).i64(diverging?.endOffset ?? noDivergence);
    },
    records: (p) => p.records,
  });
}

function readPartitionResponse(r: BodyReader, recordsBytesMax: number): ReplicaFetchedPartition {
  const partition = r.u32('partition');
  const errorCode = r.i16('errorCode');
  const leaderEpoch = r.i32('leaderEpoch');
  if (leaderEpoch < -1) r.fail(`leaderEpoch ${leaderEpoch} is below -1`);
  const highWatermark = r.i64('highWatermark');
  const logStartOffset = r.i64('logStartOffset');
  if (highWatermark < -1 || logStartOffset < -1) r.fail(`highWatermark ${highWatermark} or logStartOffset ${logStartOffset} is below -1`);
  const epoch = r.i32('divergingEpoch');
  const endOffset = r.i64('divergingEndOffset');
  const records = r.bytes('records', recordsBytesMax);
  let divergingEpoch: DivergingEpoch | null = null;
  if (epoch !== noDivergence || endOffset !== noDivergence) {
    if (epoch < 0 || endOffset < 0) r.fail(`divergingEpoch ${epoch} / endOffset ${endOffset}: both -1 (none) or both >= 0`);
    if (errorCode !== 0 || records.length > 0) r.fail(`partition ${partition} diverges at epoch ${epoch} but has an error or records`);
    divergingEpoch = { epoch, endOffset };
  }
  return { partition, errorCode, leaderEpoch, highWatermark, logStartOffset, divergingEpoch, records };
}

export function decodeReplicaFetchResponse(body: Buffer, start: number, recordsBytesMax: number): { topics: { name: string; partitions: ReplicaFetchedPartition[] }[] } {
  const reader = new BodyReader(body, start, body.length, 'MALFORMED_RESPONSE');
  const topics = readTopicList(reader, (r) => readPartitionResponse(r, recordsBytesMax));
  reader.expectEnd('replica fetch response');
  return { topics };
}
