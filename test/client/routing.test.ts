/**
 * Clients route by metadata: each partition's produce, fetch and list-offsets request goes to the
 * broker the metadata names as its leader, and a leader error or a lost connection makes the
 * client refresh metadata and retry at the new leader, without reordering or duplicating.
 * Replication is not built yet, so the "cluster" here is fake brokers (test/helpers/fake-brokers.ts)
 * over one shared log per partition, which answer NOT_LEADER for what they do not lead.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer } from '../../src/client/index.js';
import { byLeader, Cluster } from '../../src/client/cluster.js';
import { errorCodeOf, RillError } from '../../src/lib/errors.js';
import { ApiKey } from '../../src/wire/apis.js';
import type { TopicMetadata } from '../../src/wire/control.js';
import { FakeCluster } from '../helpers/fake-brokers.js';

let fake: FakeCluster | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

const range = (n: number, prefix = 'v'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe('byLeader', () => {
  it('groups partitions by the cached leader, keeping their order; unknown leaders go to -1', () => {
    const topics: Record<string, TopicMetadata> = {
      a: { name: 'a', errorCode: 0, config: null, partitions: [0, 1, 2, 3].map((partition) => ({ partition, leader: partition % 2 === 0 ? 1 : 2, errorCode: 0 })) },
      b: { name: 'b', errorCode: 0, config: null, partitions: [{ partition: 0, leader: 2, errorCode: 0 }] },
    };
    const cluster = { cachedTopic: (name: string) => topics[name] } as unknown as Cluster;
    const items = [
      { topic: 'a', partition: 3, tag: 1 }, { topic: 'b', partition: 0, tag: 2 }, { topic: 'a', partition: 0, tag: 3 },
      { topic: 'a', partition: 1, tag: 4 }, { topic: 'c', partition: 0, tag: 5 }, { topic: 'a', partition: 2, tag: 6 }, { topic: 'a', partition: 9, tag: 7 },
    ];
    const groups = byLeader(cluster, items);
    expect([...groups.keys()]).toEqual([2, 1, -1]);
    expect(groups.get(2)!.map((i) => i.tag)).toEqual([1, 2, 4]);
    expect(groups.get(1)!.map((i) => i.tag)).toEqual([3, 6]);
    expect(groups.get(-1)!.map((i) => i.tag)).toEqual([5, 7]);
  });
});

describe('producer routing', () => {
  it('sends each produce request to one leader, with only the partitions it leads, in order per partition', async () => {
    fake = await FakeCluster.start([1, 2], { t: [1, 2, 1, 2] });
    const producer = new Producer({ bootstrap: fake.bootstrap });
    const sends: Promise<unknown>[] = [];
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 10; i++) for (let partition = 0; partition < 4; partition++) sends.push(producer.send({ topic: 't', partition, value: `p${partition}-${round * 10 + i}` }));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(sends);
    await producer.close();
    const produces = fake.requestsOf(ApiKey.Produce);
    expect(produces.length).toBeGreaterThan(2);
    for (const request of produces) {
      expect(request.notLeader).toEqual([]);
      const leaders = fake.leaders.get('t')!;
      for (const name of request.partitions) expect(leaders[Number(name.split('/')[1])]).toBe(request.nodeId);
    }
    expect(fake.requestsOf(ApiKey.Produce, 1).length).toBeGreaterThan(0);
    expect(fake.requestsOf(ApiKey.Produce, 2).length).toBeGreaterThan(0);
    for (let partition = 0; partition < 4; partition++) expect(fake.partitions.get('t')![partition]!.values).toEqual(range(200, `p${partition}-`));
  });

  for (const idempotent of [true, false]) {
    it(`after NOT_LEADER refreshes metadata and delivers to the new leader exactly once, in order (idempotent: ${idempotent})`, async () => {
      fake = await FakeCluster.start([1, 2], { t: [1] });
      // Metadata would not age out during the test: only the error can make the producer refresh it.
      const producer = new Producer({ bootstrap: fake.bootstrap, idempotent, maxInFlightRequests: idempotent ? 5 : 1, retryBackoffMs: 10, metadataMaxAgeMs: 600_000, deliveryTimeoutMs: 15_000 });
      const log = fake.partitions.get('t')![0]!;
      const values = range(400);
      const sends: Promise<{ offset: bigint }>[] = [];
      for (let i = 0; i < values.length; i++) {
        sends.push(producer.send({ topic: 't', partition: 0, value: values[i]! }));
        if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve));
        // Leadership moves while batches are in flight to the old leader.
        if (i === 150) fake.leaders.set('t', [2]);
      }
      const results = await Promise.all(sends);
      await producer.close();
      expect(log.values).toEqual(values);
      expect(results.map((r) => r.offset)).toEqual(values.map((_, i) => BigInt(i)));
      expect(fake.requestsOf(ApiKey.Produce, 1).some((r) => r.notLeader.length > 0)).toBe(true);
      expect(fake.requestsOf(ApiKey.Produce, 2).length).toBeGreaterThan(0);
      expect(fake.requestsOf(ApiKey.Produce, 2).every((r) => r.notLeader.length === 0)).toBe(true);
      expect(fake.requestsOf(ApiKey.Metadata).length).toBeGreaterThanOrEqual(2);
    });
  }

  it('after losing the connection to the leader, refreshes metadata and delivers to the new one in order', async () => {
    fake = await FakeCluster.start([1, 2], { t: [1, 1] });
    const producer = new Producer({ bootstrap: fake.bootstrap, retryBackoffMs: 10, metadataMaxAgeMs: 600_000, deliveryTimeoutMs: 15_000 });
    const first = await Promise.all(range(50).map((value, i) => producer.send({ topic: 't', partition: i % 2, value })));
    expect(first.every((r) => r.offset >= 0n)).toBe(true);
    fake.leaders.set('t', [2, 2]);
    await fake.broker(1).close(); // broker 1 dies; metadata now comes from broker 2
    const rest = range(200).slice(50);
    await Promise.all(rest.map((value, i) => producer.send({ topic: 't', partition: i % 2, value })));
    await producer.close();
    const all = range(200);
    expect(fake.partitions.get('t')![0]!.values).toEqual(all.filter((_, i) => i % 2 === 0));
    expect(fake.partitions.get('t')![1]!.values).toEqual(all.filter((_, i) => i % 2 === 1));
  });

  it('UNKNOWN_TOPIC_OR_PARTITION: retried when fresh metadata names another leader, failed when it names the same', async () => {
    fake = await FakeCluster.start([1, 2], { t: [1] });
    fake.notLeaderErrorCode = errorCodeOf('UNKNOWN_TOPIC_OR_PARTITION'); // the old leader dropped the replica
    const producer = new Producer({ bootstrap: fake.bootstrap, retryBackoffMs: 10, metadataMaxAgeMs: 600_000, deliveryTimeoutMs: 15_000 });
    const values = range(200);
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < values.length; i++) {
      sends.push(producer.send({ topic: 't', partition: 0, value: values[i]! }));
      if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve));
      if (i === 80) fake.leaders.set('t', [2]);
    }
    await Promise.all(sends);
    expect(fake.partitions.get('t')![0]!.values).toEqual(values);
    expect(fake.requestsOf(ApiKey.Produce, 1).some((r) => r.notLeader.length > 0)).toBe(true);

    // Metadata still names broker 2, which now says it does not have the partition: the send fails.
    fake.produceHook = () => ({ errorCode: errorCodeOf('UNKNOWN_TOPIC_OR_PARTITION'), store: false });
    const error = await producer.send({ topic: 't', partition: 0, value: 'lost' }).then(() => null, (e: unknown) => e);
    expect((error as RillError).code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    fake.produceHook = undefined;
    expect((await producer.send({ topic: 't', partition: 0, value: 'after' })).offset).toBe(200n);
    await producer.close();
  });

  it('NOT_ENOUGH_REPLICAS_AFTER_APPEND: an idempotent producer retries (stored once); any other fails the record', async () => {
    fake = await FakeCluster.start([1], { t: [1] });
    const log = fake.partitions.get('t')![0]!;
    let failuresLeft = 1;
    fake.produceHook = () => (failuresLeft-- > 0 ? { errorCode: errorCodeOf('NOT_ENOUGH_REPLICAS_AFTER_APPEND'), store: true } : undefined);
    const idempotent = new Producer({ bootstrap: fake.bootstrap, retryBackoffMs: 10 });
    expect((await idempotent.send({ topic: 't', partition: 0, value: 'once' })).offset).toBe(0n);
    await idempotent.close();
    expect(log.values).toEqual(['once']);

    failuresLeft = 1;
    const plain = new Producer({ bootstrap: fake.bootstrap, idempotent: false, retryBackoffMs: 10 });
    const error = await plain.send({ topic: 't', partition: 0, value: 'maybe' }).then(() => null, (e: unknown) => e);
    await plain.close();
    expect(error).toBeInstanceOf(RillError);
    expect((error as RillError).code).toBe('NOT_ENOUGH_REPLICAS_AFTER_APPEND');
    expect(log.values).toEqual(['once', 'maybe']); // written by the leader, though the send failed
  });
});

describe('reader and admin routing', () => {
  it('the reader fetches each partition from its own leader', async () => {
    fake = await FakeCluster.start([1, 2], { t: [1, 2, 2] });
    const producer = new Producer({ bootstrap: fake.bootstrap });
    await Promise.all(range(90).map((value, i) => producer.send({ topic: 't', partition: i % 3, value })));
    await producer.close();
    const got: string[][] = [[], [], []];
    for await (const message of new PartitionReader({ bootstrap: fake.bootstrap, topic: 't', from: 'earliest', stopAtEnd: true })) got[message.partition]!.push(message.value!.toString());
    for (let p = 0; p < 3; p++) expect(got[p]).toEqual(range(90).filter((_, i) => i % 3 === p));
    const fetches = fake.requestsOf(ApiKey.Fetch);
    expect(fetches.every((r) => r.notLeader.length === 0)).toBe(true);
    expect(fake.requestsOf(ApiKey.Fetch, 1).flatMap((r) => r.partitions)).not.toContain('t/1');
    expect(fake.requestsOf(ApiKey.Fetch, 2).flatMap((r) => r.partitions)).not.toContain('t/0');
    expect(fake.requestsOf(ApiKey.ListOffsets).every((r) => r.notLeader.length === 0)).toBe(true);
  });

  it('with stale leaders, the reader and admin refresh metadata on NOT_LEADER and reach the new leaders', async () => {
    fake = await FakeCluster.start([1, 2], { t: [1, 2] });
    const producer = new Producer({ bootstrap: fake.bootstrap });
    await Promise.all(range(40).map((value, i) => producer.send({ topic: 't', partition: i % 2, value })));
    await producer.close();
    const cluster = new Cluster({ bootstrap: fake.bootstrap, metadataMaxAgeMs: 600_000 }, 'reader');
    await cluster.topic('t'); // caches leaders 1, 2
    fake.leaders.set('t', [2, 1]);

    const admin = new Admin({}, cluster);
    const firstTry = await admin.listOffsets('t', 'latest').then(() => null, (e: unknown) => e);
    expect((firstTry as RillError).code).toBe('NOT_LEADER');
    expect(await admin.listOffsets('t', 'latest')).toEqual([20n, 20n]); // refreshed before asking again

    fake.leaders.set('t', [1, 2]); // moves back: the reader starts with stale leaders again
    const requestsBefore = fake.requests.length;
    const got: string[] = [];
    const reader = new PartitionReader({ topic: 't', from: 'earliest', stopAtEnd: true, retryBackoffMs: 10 }, cluster);
    for await (const message of reader) got.push(message.value!.toString());
    expect(got.sort()).toEqual(range(40).sort());
    expect(fake.requests.slice(requestsBefore).some((r) => r.notLeader.length > 0)).toBe(true);
    cluster.close();
  });
});
