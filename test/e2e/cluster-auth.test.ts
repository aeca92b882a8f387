/**
 * A cluster with authentication required (real etcd and brokers): replication logs in as the
 * inter-broker user (cluster.interBrokerUser, RILL_INTER_BROKER_PASSWORD), so an acks 'all'
 * write reaches every replica; a client that is not allowed to replicate gets
 * CLUSTER_AUTHORIZATION_FAILED from ReplicaFetch.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, Producer, RillError } from '../../src/client/index.js';
import { BrokerConnection, checkReply } from '../../src/client/connection.js';
import { ApiKey } from '../../src/wire/apis.js';
import { encodeReplicaFetchRequest } from '../../src/wire/replica-fetch.js';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { startEtcd, type EtcdProcess } from '../helpers/etcd-process.js';

const password = 'cluster-auth-password';
let etcd: EtcdProcess;
const brokers: BrokerProcess[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  const env = { ...process.env, RILL_PASSWORD: password, RILL_LEASE_TTL_MS: '3000', RILL_INTER_BROKER_USER: 'replicator', RILL_INTER_BROKER_PASSWORD: password };
  for (const id of [1, 2, 3]) {
    const dataDir = tempDir(`cluster-auth-${id}`);
    // Users are per broker (users.json in each data directory): the same ones, offline, on each.
    for (const user of ['admin', 'replicator', 'alice']) {
      const added = await runCli(['users', 'add', user, '--data-dir', dataDir], `${password}\n`, 60_000, env);
      expect(added.code, added.stderr).toBe(0);
    }
    brokers.push(await startBroker({ dataDir, args: ['--node-id', String(id), '--etcd', etcd.url, '--cluster', 'c-auth', '--auth', 'required', '--super-users', 'admin,replicator'], env, timeoutMs: 30_000 }));
  }
}, 120_000);

afterAll(async () => {
  await Promise.all(brokers.map((b) => b.kill()));
  await etcd?.stop();
});

describe('a cluster with --auth required', () => {
  it('replicates as the inter-broker user: acks all reaches every replica, the ISR stays full; others may not replicate', async () => {
    const bootstrap = brokers.map((b) => b.bootstrap).join(',');
    const sasl = { username: 'admin', password };
    const admin = new Admin({ bootstrap, sasl, requestTimeoutMs: 20_000 });
    const producer = new Producer({ bootstrap, sasl, acks: 'all', deliveryTimeoutMs: 30_000 });
    try {
      await admin.createTopics([{ topic: 'secured', partitions: 2, replicationFactor: 3, config: { minInSyncReplicas: 3 } }]);
      // minInSyncReplicas 3: each of these is acknowledged only once all three replicas fsynced it.
      const sent = await Promise.all(Array.from({ length: 50 }, (_, n) => producer.send({ topic: 'secured', key: `k${n}`, value: `v${n}` })));
      expect(sent).toHaveLength(50);
      const description = await admin.describeTopic('secured');
      for (const partition of description.partitions) expect([...partition.isr].sort()).toEqual([1, 2, 3]);

      // alice may log in but not replicate.
      const connection = new BrokerConnection({ host: '127.0.0.1', port: brokers[0]!.port }, { sasl: { username: 'alice', password } });
      try {
        const request = encodeReplicaFetchRequest({ replicaId: 2, maxWaitMs: 0, minBytes: 0, maxBytes: 1024, topics: [{ name: 'secured', partitions: [{ partition: 0, currentLeaderEpoch: 0, fetchOffset: 0, fsyncedOffset: 0, lastFetchedEpoch: -1, partitionMaxBytes: 1024 }] }] });
        const refused = await connection.send(ApiKey.ReplicaFetch, 0, [request]).then((frame) => checkReply(frame!)).then(() => null, (error: unknown) => error);
        expect(refused).toBeInstanceOf(RillError);
        expect((refused as RillError).code).toBe('CLUSTER_AUTHORIZATION_FAILED');
      } finally {
        connection.close();
      }
    } finally {
      await producer.close();
      admin.close();
    }
  }, 120_000);
});
