/**
 * The admin operations end to end, against a broker started as a child process through the CLI,
 * over real TCP and real files: delete records (surviving SIGTERM and SIGKILL restarts), alter
 * topic config (Kafka names, string values, applied to the open logs at once, persisted), add
 * partitions (a long-lived producer picks them up), delete groups, describe the broker config.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Admin, Cluster, Consumer, PartitionReader, Producer, RillError } from '../../src/client/index.js';
import { errorCodeOf } from '../../src/lib/errors.js';
import { ApiKey } from '../../src/wire/apis.js';
import { decodeDescribeConfigsResponse } from '../../src/wire/admin-ops.js';
import { Broker } from '../../src/broker/broker.js';
import { startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';

const brokers: BrokerProcess[] = [];

afterAll(async () => {
  for (const broker of brokers) await broker.kill();
});

async function start(options: { dataDir?: string; port?: number } = {}): Promise<BrokerProcess> {
  // The port of a killed broker can take a moment to be free again.
  for (let attempt = 1; ; attempt++) {
    try {
      const broker = await startBroker(options);
      brokers.push(broker);
      return broker;
    } catch (error) {
      if (attempt >= 20 || !/EADDRINUSE|already in use/.test(String(error))) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function rejection(promise: Promise<unknown>): Promise<RillError> {
  const error = await promise.then(() => null, (e: unknown) => e);
  expect(error).toBeInstanceOf(RillError);
  return error as RillError;
}

/** Offsets from `from` to the end of one partition. */
async function offsetsFrom(bootstrap: string, topic: string, partition: number, from: bigint | 'earliest'): Promise<bigint[]> {
  const reader = new PartitionReader({ bootstrap, topic, partitions: [partition], from, stopAtEnd: true });
  const offsets: bigint[] = [];
  for await (const message of reader) offsets.push(message.offset);
  return offsets;
}

async function produce(bootstrap: string, topic: string, partition: number, count: number, valueBytes = 100): Promise<bigint[]> {
  const producer = new Producer({ bootstrap, acks: 'all', lingerMs: 0, batchBytes: 1024 });
  try {
    const acks = await Promise.all(Array.from({ length: count }, (_, i) => producer.send({ topic, partition, key: `k${i}`, value: Buffer.alloc(valueBytes, i & 0xff) })));
    return acks.map((a) => a.offset);
  } finally {
    await producer.close();
  }
}

function segmentCount(dataDir: string, topic: string, partition: number): number {
  return fs.readdirSync(path.join(dataDir, 'topics', topic, String(partition))).filter((f) => f.endsWith('.log')).length;
}

describe('DeleteRecords', () => {
  it('moves the log start, deletes whole segments, and survives a graceful restart and a SIGKILL', async () => {
    const dataDir = tempDir('delete-records');
    let broker = await start({ dataDir });
    const port = broker.port;
    const topic = 'trimmed';
    let admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic, partitions: 2, config: { 'segment.bytes': '1024' } }]);
    const offsets = await produce(broker.bootstrap, topic, 0, 100);
    expect(offsets[99]).toBe(99n);
    const segmentsBefore = segmentCount(dataDir, topic, 0);
    expect(segmentsBefore).toBeGreaterThan(3);

    expect(await admin.deleteRecords(topic, 0, 40n)).toEqual({ lowWatermark: 40n });
    expect(segmentCount(dataDir, topic, 0)).toBeLessThan(segmentsBefore);
    expect((await admin.listOffsets(topic, 'earliest'))[0]).toBe(40n);
    expect((await rejection(offsetsFrom(broker.bootstrap, topic, 0, 10n))).code).toBe('OFFSET_OUT_OF_RANGE');
    // A fetch at the start may return its whole batch; the reader skips what lies below it.
    expect(await offsetsFrom(broker.bootstrap, topic, 0, 'earliest')).toEqual(offsets.slice(40));
    expect((await rejection(admin.deleteRecords(topic, 0, 101n))).code).toBe('OFFSET_OUT_OF_RANGE');
    expect((await rejection(admin.deleteRecords(topic, 7, 0n))).code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    // At or below the start changes nothing.
    expect(await admin.deleteRecords(topic, 0, 5n)).toEqual({ lowWatermark: 40n });
    admin.close();

    expect(await broker.stop()).toBe(0);
    broker = await start({ dataDir, port });
    admin = new Admin({ bootstrap: broker.bootstrap });
    expect((await admin.listOffsets(topic, 'earliest'))[0]).toBe(40n);
    expect(await offsetsFrom(broker.bootstrap, topic, 0, 'earliest')).toEqual(offsets.slice(40));

    // -1: everything below the high watermark. Then a crash.
    expect(await admin.deleteRecords(topic, 0, -1n)).toEqual({ lowWatermark: 100n });
    admin.close();
    await broker.kill();
    broker = await start({ dataDir, port });
    admin = new Admin({ bootstrap: broker.bootstrap });
    expect(await admin.listOffsets(topic, 'earliest')).toEqual([100n, 0n]);
    expect(await admin.listOffsets(topic, 'latest')).toEqual([100n, 0n]);
    expect(await offsetsFrom(broker.bootstrap, topic, 0, 'earliest')).toEqual([]);
    expect(segmentCount(dataDir, topic, 0)).toBe(1);
    // Offsets are never reused: the next record gets 100.
    expect(await produce(broker.bootstrap, topic, 0, 1)).toEqual([100n]);
    admin.close();
  });

  it('a crash right after a delete (records acknowledged with acks 1) does not bring them back', async () => {
    const dataDir = tempDir('delete-records-kill');
    let broker = await start({ dataDir });
    const port = broker.port;
    const topic = 'trimmed-acks1';
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic, partitions: 1, config: { segmentBytes: 2048, flushMs: -1 } }]);
    const producer = new Producer({ bootstrap: broker.bootstrap, acks: 1, lingerMs: 0 });
    const acks = await Promise.all(Array.from({ length: 60 }, (_, i) => producer.send({ topic, key: `k${i}`, value: Buffer.alloc(100, i) })));
    await producer.close();
    const end = acks.reduce((max, a) => (a.offset > max ? a.offset : max), -1n) + 1n;
    expect(await admin.deleteRecords(topic, 0, end - 5n)).toEqual({ lowWatermark: end - 5n });
    admin.close();
    await broker.kill();
    broker = await start({ dataDir, port });
    const after = new Admin({ bootstrap: broker.bootstrap });
    expect(await after.listOffsets(topic, 'earliest')).toEqual([end - 5n]);
    expect(await offsetsFrom(broker.bootstrap, topic, 0, 'earliest')).toEqual([0n, 1n, 2n, 3n, 4n].map((i) => end - 5n + i));
    after.close();
  });
});

describe('alter topic config', () => {
  it('takes Kafka names and string values, names the closest key for a typo, applies at once and persists', async () => {
    const dataDir = tempDir('alter-config');
    let broker = await start({ dataDir });
    const port = broker.port;
    const topic = 'configured';
    let admin = new Admin({ bootstrap: broker.bootstrap });
    const typo = await rejection(admin.createTopics([{ topic, partitions: 1, config: { 'retention.mss': '1000' } }]));
    expect(typo.code).toBe('INVALID_CONFIG');
    expect(typo.message).toContain('did you mean "retention.ms"');
    const compact = await rejection(admin.createTopics([{ topic, partitions: 1, config: { 'cleanup.policy': 'compact' } }]));
    expect(compact.code).toBe('INVALID_CONFIG');
    expect(compact.message).toMatch(/compaction is not supported/);
    await admin.createTopics([{ topic, partitions: 1, config: { 'retention.ms': '86400000', 'cleanup.policy': 'delete' } }]);
    expect((await admin.describeTopic(topic)).config?.retentionMs).toBe(86_400_000);

    await produce(broker.bootstrap, topic, 0, 20, 200);
    expect(segmentCount(dataDir, topic, 0)).toBe(1);
    const config = await admin.alterTopicConfig(topic, { 'segment.bytes': '1024', flushMs: 50 }, ['retention.ms']);
    expect(config).toMatchObject({ segmentBytes: 1024, flushMs: 50, retentionMs: 7 * 24 * 3600 * 1000 });
    // The open log rolls by the new size at once.
    await produce(broker.bootstrap, topic, 0, 20, 200);
    expect(segmentCount(dataDir, topic, 0)).toBeGreaterThan(3);
    expect((await admin.describeTopic(topic)).config).toEqual(config);

    expect((await rejection(admin.alterTopicConfig(topic, { 'segment.bytes': 'big' }))).code).toBe('INVALID_CONFIG');
    expect((await rejection(admin.alterTopicConfig(topic, { segmentByte: 1024 }))).message).toContain('did you mean "segmentBytes"');
    expect((await rejection(admin.alterTopicConfig(topic, { 'cleanup.policy': 'compact' }))).code).toBe('INVALID_CONFIG');
    expect((await rejection(admin.alterTopicConfig('no-such-topic', { flushMs: 1 }))).code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    expect((await admin.describeTopic(topic)).config).toEqual(config);
    admin.close();

    expect(await broker.stop()).toBe(0);
    broker = await start({ dataDir, port });
    admin = new Admin({ bootstrap: broker.bootstrap });
    expect((await admin.describeTopic(topic)).config).toEqual(config);
    admin.close();
  });
});

describe('add partitions', () => {
  it('grows a topic; a long-lived producer starts sending keyed records to the new partitions', async () => {
    const broker = await start();
    const topic = 'growing';
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic, partitions: 1 }]);
    const producer = new Producer({ bootstrap: broker.bootstrap, acks: 'all', lingerMs: 0, metadataMaxAgeMs: 50 });
    expect((await producer.send({ topic, key: 'before', value: 'x' })).partition).toBe(0);
    // A group member subscribed before the change: the group rebalances and it is given the new
    // partitions (resolved when it has consumed from all four).
    const consumer = new Consumer({ bootstrap: broker.bootstrap, groupId: 'growing-readers', fromBeginning: true, maxWaitMs: 100 });
    consumer.on('error', () => undefined);
    consumer.subscribe([topic]);
    const consumedPartitions = new Set<number>();
    let allConsumed!: () => void;
    const consumedFromAll = new Promise<void>((resolve) => (allConsumed = resolve));
    void consumer.run({
      eachMessage: async (message) => {
        consumedPartitions.add(message.partition);
        if (consumedPartitions.size === 4) allConsumed();
      },
    });

    expect((await rejection(admin.createPartitions(topic, 1))).code).toBe('INVALID_PARTITIONS');
    expect((await rejection(admin.createPartitions('no-such-topic', 2))).code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    await admin.createPartitions(topic, 4);
    expect((await admin.describeTopic(topic)).partitions.map((p) => p.partition)).toEqual([0, 1, 2, 3]);

    // Each acknowledged send is an event; the producer's metadata ages out (50 ms) while they
    // happen. Keys spread over 4 partitions, so a send lands off partition 0 soon after.
    const seen = new Set<number>();
    for (let i = 0; i < 5000 && seen.size < 4; i++) {
      const ack = await producer.send({ topic, key: `key-${i}`, value: 'x' });
      seen.add(ack.partition);
    }
    expect([...seen].sort()).toEqual([0, 1, 2, 3]);
    await consumedFromAll;
    expect((await admin.describeGroup('growing-readers')).members[0]!.assigned).toEqual([{ topic, partitions: [0, 1, 2, 3] }]);
    await consumer.close();
    await producer.close();
    admin.close();
  });
});

describe('DeleteGroups', () => {
  it('deletes an empty group and its offsets durably; unknown groups are GROUP_ID_NOT_FOUND', async () => {
    const dataDir = tempDir('delete-groups');
    let broker = await start({ dataDir });
    const port = broker.port;
    let admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic: 'events', partitions: 2 }]);
    await produce(broker.bootstrap, 'events', 0, 5);
    await admin.resetGroupOffsets('billing', 'events', 'latest');
    await admin.resetGroupOffsets('kept', 'events', 'latest');
    expect((await admin.fetchGroupOffsets('billing', 'events')).map((o) => o.offset)).toEqual([5n, 0n]);

    await admin.deleteGroup('billing');
    expect((await admin.listGroups()).map((g) => g.groupId)).toEqual(['kept']);
    expect((await admin.fetchGroupOffsets('billing', 'events')).map((o) => o.offset)).toEqual([-1n, -1n]);
    expect((await rejection(admin.deleteGroup('billing'))).code).toBe('GROUP_ID_NOT_FOUND');
    admin.close();

    await broker.kill();
    broker = await start({ dataDir, port });
    admin = new Admin({ bootstrap: broker.bootstrap });
    expect((await admin.listGroups()).map((g) => g.groupId)).toEqual(['kept']);
    expect((await admin.fetchGroupOffsets('billing', 'events')).map((o) => o.offset)).toEqual([-1n, -1n]);
    admin.close();
  });
});

describe('describe broker config', () => {
  it('lists the broker settings with their sources (child process)', async () => {
    const broker = await start();
    const admin = new Admin({ bootstrap: broker.bootstrap });
    const entries = await admin.describeBrokerConfig();
    expect(entries.length).toBeGreaterThan(0);
    for (const entry of entries) {
      expect(typeof entry.name).toBe('string');
      expect(['default', 'file', 'env', 'flag']).toContain(entry.source);
      if (entry.secret) expect(entry.value).toBeNull();
    }
    admin.close();
  });

  it('masks secret values of the effective configuration and keeps the rest as they are', async () => {
    const broker = new Broker({
      dataDir: tempDir('describe-config'), port: 0, log: () => {},
      effectiveConfig: [
        { name: 'port', value: 0, source: 'flag' },
        { name: 'http', value: { host: '127.0.0.1', port: 8080 }, source: 'file' },
        { name: 'saslPassword', value: 'hunter2', source: 'env', secret: true },
      ],
    });
    await broker.start();
    const admin = new Admin({ bootstrap: `127.0.0.1:${broker.port}` });
    try {
      expect(await admin.describeBrokerConfig()).toEqual([
        { name: 'port', value: 0, source: 'flag', secret: false },
        { name: 'http', value: '{"host":"127.0.0.1","port":8080}', source: 'file', secret: false },
        { name: 'saslPassword', value: null, source: 'env', secret: true },
      ]);
    } finally {
      admin.close();
      await broker.stop();
    }
  });

  it('without a resolved configuration, the broker lists its main fields as defaults', async () => {
    const dataDir = tempDir('describe-config-defaults');
    const broker = new Broker({ dataDir, port: 0, log: () => {} });
    await broker.start();
    const admin = new Admin({ bootstrap: `127.0.0.1:${broker.port}` });
    try {
      const entries = await admin.describeBrokerConfig();
      expect(entries.map((e) => e.name)).toEqual(['dataDir', 'host', 'port', 'nodeId', 'housekeepingIntervalMs', 'shutdownGraceMs']);
      expect(entries.every((e) => e.source === 'default' && !e.secret)).toBe(true);
      expect(entries.find((e) => e.name === 'dataDir')!.value).toBe(dataDir);
      // A topic resource: its config, 'topic' where it differs from the default.
      await admin.createTopics([{ topic: 'described', partitions: 1, replicationFactor: 1, config: { 'retention.ms': 60_000, 'min.insync.replicas': '3' } }]);
      const cluster = new Cluster({ bootstrap: `127.0.0.1:${broker.port}` });
      const request = { resources: [{ type: 'topic', name: 'described' }, { type: 'topic', name: 'missing' }] };
      const [found, missing] = await cluster.anyConnection().call(ApiKey.DescribeConfigs, request, decodeDescribeConfigsResponse);
      cluster.close();
      expect(found!.entries.find((e) => e.name === 'retentionMs')).toEqual({ name: 'retentionMs', value: 60_000, source: 'topic', secret: false });
      expect(found!.entries.find((e) => e.name === 'segmentBytes')!.source).toBe('default');
      expect(found!.entries.find((e) => e.name === 'minInSyncReplicas')).toEqual({ name: 'minInSyncReplicas', value: 3, source: 'topic', secret: false });
      expect(found!.entries.find((e) => e.name === 'uncleanLeaderElection')).toEqual({ name: 'uncleanLeaderElection', value: 0, source: 'default', secret: false });
      expect(missing!.errorCode).toBe(errorCodeOf('UNKNOWN_TOPIC_OR_PARTITION'));
      // One broker: it is each partition's only replica; more replicas than brokers is refused.
      const description = await admin.describeTopic('described');
      const [only] = description.partitions;
      expect(description.replicationFactor).toBe(1);
      expect(only).toMatchObject({ partition: 0, leaderEpoch: 0, replicas: [only!.leader], isr: [only!.leader] });
      const refused = await rejection(admin.createTopics([{ topic: 'replicated', partitions: 1, replicationFactor: 2 }]));
      expect(refused.code).toBe('INVALID_REPLICATION_FACTOR');
      expect(refused.message).toBe('INVALID_REPLICATION_FACTOR: replication factor 2 is larger than the 1 live broker(s)');
    } finally {
      admin.close();
      await broker.stop();
    }
  });
});
