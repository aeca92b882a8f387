/**
 * OffsetForLeaderEpoch (api key 23, as Kafka's, v0): "where did leader epoch E end in your log?"
 * A replica that becomes a follower (or rejoins) asks its leader this for the epoch of its own
 * last batch and truncates its log to the answer before it fetches (KIP-101/279). MessagePack
 * body; see protocol/apis/offset-for-leader-epoch.md. The leader answers from its leader-epoch
 * file (src/storage/leader-epoch-file.ts, endOffsetForEpoch).
 *
 * Request:  { replicaId, topics: [{ name, partitions: [{ partition, currentLeaderEpoch, leaderEpoch }] }] }
 * Response: { topics: [{ name, partitions: [{ partition, errorCode, leaderEpoch, endOffset }] }] }
 *
 * Bounds: replicaId -1 (a client) or a node id 0..2^31-1; currentLeaderEpoch -1 (do not fence)
 * or 0..2^31-1; leaderEpoch 0..2^31-1 (a replica without epochs has nothing to truncate and does
 * not ask). In a response leaderEpoch and endOffset are both -1 (unknown: no such epoch or
 * older, or an error) or both ≥ 0, endOffset ≤ 2^53-1. Offsets are numbers, as in the storage
 * layer that answers and the binary fetch bodies.
 */
import { decodeTopicPartitions } from './control.js';
import { requestSchema as rq, responseSchema as rs } from './schema.js';

const nodeIdMax = 0x7fff_ffff;
const epochMax = 0x7fff_ffff;

export interface OffsetForLeaderEpochPartition {
  partition: number;
  /** The epoch the asking replica believes current; -1 skips the fencing check. */
  currentLeaderEpoch: number;
  /** The epoch whose end is wanted (the epoch of the asker's last batch). */
  leaderEpoch: number;
}

export interface OffsetForLeaderEpochRequest {
  /** The asking broker's node id, or -1 for a client. */
  replicaId: number;
  topics: { name: string; partitions: OffsetForLeaderEpochPartition[] }[];
}

export function decodeOffsetForLeaderEpochRequest(value: unknown): OffsetForLeaderEpochRequest {
  const obj = rq.object(value, 'body');
  return {
    replicaId: rq.int(obj.replicaId, 'replicaId', -1, nodeIdMax),
    topics: decodeTopicPartitions(value, (pe, path) => ({
      partition: rq.int(pe.partition, `${path}.partition`, 0, 0x7fff_ffff),
      currentLeaderEpoch: rq.int(pe.currentLeaderEpoch, `${path}.currentLeaderEpoch`, -1, epochMax),
      leaderEpoch: rq.int(pe.leaderEpoch, `${path}.leaderEpoch`, 0, epochMax),
    })),
  };
}

export interface OffsetForLeaderEpochResult {
  partition: number;
  errorCode: number;
  /** The largest epoch the leader knows that is ≤ the one asked for; -1 if none (or on error). */
  leaderEpoch: number;
  /** Where that epoch ended: the next epoch's start offset, or the leader's log end; -1 with -1. */
  endOffset: number;
}

export interface OffsetForLeaderEpochResponse {
  topics: { name: string; partitions: OffsetForLeaderEpochResult[] }[];
}

export function decodeOffsetForLeaderEpochResponse(value: unknown): OffsetForLeaderEpochResponse {
  return {
    topics: decodeTopicPartitions(value, (pe, path) => {
      const result = {
        partition: rs.int(pe.partition, `${path}.partition`, 0, 0x7fff_ffff),
        errorCode: rs.int(pe.errorCode, `${path}.errorCode`, -0x8000, 0x7fff),
        leaderEpoch: rs.int(pe.leaderEpoch, `${path}.leaderEpoch`, -1, epochMax),
        endOffset: rs.int(pe.endOffset, `${path}.endOffset`, -1, Number.MAX_SAFE_INTEGER),
      };
      if ((result.leaderEpoch === -1) !== (result.endOffset === -1)) {
        rs.fail(`${path}`, 'leaderEpoch and endOffset both -1 or both known', `${result.leaderEpoch} / ${result.endOffset}`);
      }
      return result;
    }, rs),
  };
}
