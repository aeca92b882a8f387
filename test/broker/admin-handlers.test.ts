/**
 * Metadata and CreateTopics handlers on a real PartitionManager: what Metadata says of each
 * partition's leader, epoch, replicas and ISR (a single broker alone, or a cluster's replication
 * view), and how CreateTopics answers a replication factor on a broker that cannot replicate.
 * Answers are read back with the client's decoder, as a client would.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openAccess } from '../../src/broker/access.js';
import type { Connection, Reply, RequestContext } from '../../src/broker/connection.js';
import { handleCreateTopics, handleMetadata, type MetadataBrokers, type ReplicaAssignment, type ReplicationView } from '../../src/broker/handlers/admin.js';
import { PartitionManager } from '../../src/broker/partition-manager.js';
import { errorCodeOf } from '../../src/lib/errors.js';
import { ApiKey } from '../../src/wire/apis.js';
import { decodeMetadataResponse, decodeTopicResults } from '../../src/wire/control.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { tempDir } from '../helpers/broker-process.js';

const connection = { principal: null, remote: '127.0.0.1:5555' } as unknown as Connection;
const selfId = 7;
const brokers: MetadataBrokers = { brokers: [{ nodeId: selfId, host: '127.0.0.1', port: 9092, rack: null, alive: true }], controllerId: selfId, controllerEpoch: 0, cluster: null };

function context(apiKey: number, body: unknown): RequestContext {
  const header = Buffer.alloc(8);
  header.writeUInt16BE(apiKey, 0);
  return { header: { apiKey, apiVersion: 0, correlationId: 1 }, frame: Buffer.concat([header, encodeMsgpack(body)]), connection } as RequestContext;
}

function replyBody(reply: Reply): unknown {
  expect(reply.errorCode).toBe(0);
  return decodeMsgpack(Buffer.concat(reply.chunks), 'MALFORMED_RESPONSE');
}

let managers: PartitionManager[] = [];
afterEach(() => {
  for (const manager of managers) manager.closeClean();
  managers = [];
});

function manager(topics: Record<string, number> = {}): PartitionManager {
  const partitions = new PartitionManager(tempDir('admin-handlers'), () => undefined);
  partitions.open();
  managers.push(partitions);
  for (const [name, count] of Object.entries(topics)) partitions.create(name, count, {});
  return partitions;
}

function metadata(partitions: PartitionManager, topics: string[] | null, view?: ReplicationView | null) {
  return decodeMetadataResponse(replyBody(handleMetadata(context(ApiKey.Metadata, { topics }), partitions, brokers, selfId, openAccess, view)));
}

function createTopics(partitions: PartitionManager, topics: unknown[]) {
  return decodeTopicResults(replyBody(handleCreateTopics(context(ApiKey.CreateTopics, { topics }), partitions, () => undefined, openAccess)));
}

/** A view over a fixed table of partition states, as the cluster's wiring would give one. */
function viewOf(assignments: Record<string, (ReplicaAssignment | undefined)[]>, factors: Record<string, number>): ReplicationView {
  return {
    assignment: (topic, partition) => assignments[topic]?.[partition],
    replicationFactor: (topic) => factors[topic],
  };
}

describe('Metadata: replicas, ISR and leader epochs', () => {
  it('without a view (a single broker): this broker leads every partition alone, at epoch 0, replication factor 1', () => {
    const partitions = manager({ orders: 3 });
    for (const view of [undefined, null]) {
      const [orders] = metadata(partitions, ['orders'], view).topics;
      expect(orders).toMatchObject({ name: 'orders', errorCode: 0, replicationFactor: 1 });
      expect(orders!.partitions).toEqual([0, 1, 2].map((partition) => ({ partition, leader: selfId, leaderEpoch: 0, replicas: [selfId], isr: [selfId], errorCode: 0 })));
    }
  });

  it('with a view: each partition as the view says; an offline one and one the view does not know answer LEADER_NOT_AVAILABLE', () => {
    const partitions = manager({ orders: 4, audit: 1 });
    const view = viewOf({
      orders: [
        { leader: 2, leaderEpoch: 5, replicas: [2, 7, 9], isr: [2, 7, 9] },
        { leader: 7, leaderEpoch: 11, replicas: [7, 9, 2], isr: [7] },
        { leader: -1, leaderEpoch: 3, replicas: [9, 2, 7], isr: [9] },
        undefined,
      ],
    }, { orders: 3 });
    const { topics } = metadata(partitions, null, view);
    const orders = topics.find((t) => t.name === 'orders')!;
    expect(orders.replicationFactor).toBe(3);
    const notAvailable = errorCodeOf('LEADER_NOT_AVAILABLE');
    expect(orders.partitions).toEqual([
      { partition: 0, leader: 2, leaderEpoch: 5, replicas: [2, 7, 9], isr: [2, 7, 9], errorCode: 0 },
      { partition: 1, leader: 7, leaderEpoch: 11, replicas: [7, 9, 2], isr: [7], errorCode: 0 },
      { partition: 2, leader: -1, leaderEpoch: 3, replicas: [9, 2, 7], isr: [9], errorCode: notAvailable },
      { partition: 3, leader: -1, leaderEpoch: -1, replicas: [], isr: [], errorCode: notAvailable },
    ]);
    // A topic the view has not placed yet: no leaders, factor not known (0); the topic itself is fine.
    const audit = topics.find((t) => t.name === 'audit')!;
    expect(audit).toMatchObject({ errorCode: 0, replicationFactor: 0, partitions: [{ partition: 0, leader: -1, replicas: [], isr: [], errorCode: notAvailable }] });
  });

  it('a topic that does not exist has no partitions and replication factor 0', () => {
    const [missing] = metadata(manager(), ['missing'], viewOf({}, { missing: 3 })).topics;
    expect(missing).toMatchObject({ errorCode: errorCodeOf('UNKNOWN_TOPIC_OR_PARTITION'), replicationFactor: 0, partitions: [] });
  });

  it('a view answer outside what clients can decode is a bug in the broker: an assertion, not a malformed answer', () => {
    const partitions = manager({ orders: 1 });
    // At most twice the largest factor: old and new replicas together while a partition moves.
    const tooMany = Array.from({ length: 33 }, (_, i) => i);
    expect(() => metadata(partitions, ['orders'], viewOf({ orders: [{ leader: 0, leaderEpoch: 1, replicas: tooMany, isr: [0] }] }, { orders: 16 }))).toThrow(/bad assignment of orders\/0/);
  });
});

describe('CreateTopics: replication factor on a broker that does not replicate', () => {
  it('1, -1 and absent create the topic; more than the one live broker, or outside 1..16, fails that topic alone', () => {
    const partitions = manager();
    const results = createTopics(partitions, [
      { name: 'one', partitions: 2, replicationFactor: 1 },
      { name: 'default', partitions: 1, replicationFactor: -1 },
      { name: 'absent', partitions: 1 },
      { name: 'three', partitions: 2, replicationFactor: 3 },
      { name: 'zero', partitions: 1, replicationFactor: 0 },
      { name: 'huge', partitions: 1, replicationFactor: 17 },
    ]);
    const code = errorCodeOf('INVALID_REPLICATION_FACTOR');
    expect(results.map((r) => [r.name, r.errorCode])).toEqual([['one', 0], ['default', 0], ['absent', 0], ['three', code], ['zero', code], ['huge', code]]);
    expect(results[3]!.errorMessage).toBe('INVALID_REPLICATION_FACTOR: replication factor 3 is larger than the 1 live broker(s)');
    expect(results[4]!.errorMessage).toContain('replication factor 0 is outside 1..16');
    expect(partitions.registry.list().map((t) => t.name).sort()).toEqual(['absent', 'default', 'one']);
  });

  it('minInSyncReplicas and uncleanLeaderElection are topic settings, by either name, shown in Metadata', () => {
    const partitions = manager();
    const results = createTopics(partitions, [
      { name: 'safe', partitions: 1, config: { minInSyncReplicas: 2, 'unclean.leader.election.enable': 'false' } },
      { name: 'lossy', partitions: 1, replicationFactor: 1, config: { 'min.insync.replicas': '1', uncleanLeaderElection: 1 } },
      { name: 'bad', partitions: 1, config: { minInSyncReplicas: 17 } },
    ]);
    expect(results.map((r) => r.errorCode)).toEqual([0, 0, errorCodeOf('INVALID_CONFIG')]);
    const { topics } = metadata(partitions, ['safe', 'lossy']);
    expect(topics[0]!.config).toMatchObject({ minInSyncReplicas: 2, uncleanLeaderElection: 0 });
    expect(topics[1]!.config).toMatchObject({ minInSyncReplicas: 1, uncleanLeaderElection: 1 });
  });
});
