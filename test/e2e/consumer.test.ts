/**
 * The group Consumer end to end: a real broker process, real TCP. Splitting partitions, graceful
 * hand-over without duplicates, resuming from committed offsets, seek / pause / resume, the reset
 * policy, a handler slower than the session timeout, and auto-commit that never commits a record
 * whose handler has not completed (checked by SIGKILLing a member process mid-handler).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, Cluster, Consumer, Producer, type ConsumerOptions, type Message } from '../../src/client/index.js';
import { ApiKey } from '../../src/wire/apis.js';
import { decodeDescribeGroupsResponse } from '../../src/wire/groups.js';
import { committedOffsets, startBroker, type BrokerProcess } from '../helpers/broker-process.js';
import { startMember, waitUntil } from '../helpers/member-process.js';

let broker: BrokerProcess;
let topicSeq = 0;

beforeAll(async () => {
  broker = await startBroker();
});

afterAll(async () => {
  await broker?.kill();
});

async function createTopic(partitions: number): Promise<string> {
  const topic = `consumer-${process.pid}-${++topicSeq}`;
  const admin = new Admin({ bootstrap: broker.bootstrap });
  await admin.createTopics([{ topic, partitions }]);
  admin.close();
  return topic;
}

/** Produces `count` records spread over every partition (explicit partition i % partitions). */
async function produce(topic: string, partitions: number, count: number, from = 0): Promise<void> {
  const producer = new Producer({ bootstrap: broker.bootstrap });
  await Promise.all(Array.from({ length: count }, (_, i) => producer.send({ topic, partition: (from + i) % partitions, key: `k${from + i}`, value: `v${from + i}` })));
  await producer.close();
}

function consumer(groupId: string, options: Partial<ConsumerOptions> = {}): Consumer {
  const c = new Consumer({ bootstrap: broker.bootstrap, groupId, fromBeginning: true, maxWaitMs: 200, ...options });
  c.on('error', () => undefined); // expected transient errors are part of several tests
  return c;
}

const key = (m: Message): string => `${m.partition}:${m.offset}`;

function countBy(keys: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  return counts;
}

describe('Consumer (group member) end to end', () => {
  it('two consumers split the partitions evenly and together get every record exactly once', async () => {
    const topic = await createTopic(6);
    await produce(topic, 6, 600);
    const seen: { by: string; m: Message }[] = [];
    const a = consumer('split');
    const b = consumer('split');
    a.subscribe([topic]);
    b.subscribe([topic]);
    await a.run({ eachMessage: async (m) => void seen.push({ by: 'a', m }) });
    await b.run({ eachMessage: async (m) => void seen.push({ by: 'b', m }) });
    await produce(topic, 6, 600, 600);
    await waitUntil(() => new Set(seen.map((s) => key(s.m))).size === 1200 && a.assignment().length === 3 && b.assignment().length === 3, 15_000, 'all records and a 3/3 split');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(a.assignment().length).toBe(3);
    expect(b.assignment().length).toBe(3);
    const partitionsOfA = new Set(a.assignment().map((tp) => tp.partition));
    expect(b.assignment().every((tp) => !partitionsOfA.has(tp.partition))).toBe(true);
    // Exactly once: b's partitions were handed over by a (drained and committed before release).
    const counts = countBy(seen.map((s) => key(s.m)));
    expect(counts.size).toBe(1200);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    await Promise.all([a.close(), b.close()]);
  });

  it('a consumer that closes gracefully hands its partitions over with zero duplicates', async () => {
    const topic = await createTopic(4);
    const seen: { by: string; m: Message; t: number }[] = [];
    const a = consumer('graceful');
    const b = consumer('graceful');
    a.subscribe([topic]);
    b.subscribe([topic]);
    const slow = (by: string) => async (m: Message) => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      seen.push({ by, m, t: Date.now() });
    };
    await a.run({ eachMessage: slow('a') });
    await b.run({ eachMessage: slow('b') });
    await waitUntil(() => a.assignment().length === 2 && b.assignment().length === 2, 10_000, 'a 2/2 split');
    let produced = 0;
    const producer = new Producer({ bootstrap: broker.bootstrap });
    const writing = (async () => {
      while (produced < 2000) {
        await Promise.all(Array.from({ length: 50 }, (_, i) => producer.send({ topic, partition: (produced + i) % 4, value: `v${produced + i}` })));
        produced += 50;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await waitUntil(() => produced >= 600, 10_000, 'records flowing');
    const closedAtMs = Date.now();
    const partitionsOfA = a.assignment().map((tp) => tp.partition);
    await a.close();
    await writing;
    await producer.close();
    await waitUntil(() => new Set(seen.map((s) => key(s.m))).size === 2000, 15_000, 'all 2000 records');
    const firstByB = Math.max(...partitionsOfA.map((p) => Math.min(...seen.filter((s) => s.by === 'b' && s.m.partition === p).map((s) => s.t))));
    console.log(`[consumer] graceful close -> partitions consumed again after ${firstByB - closedAtMs} ms`);
    expect(b.assignment().length).toBe(4);
    const counts = countBy(seen.map((s) => key(s.m)));
    expect([...counts.values()].filter((n) => n > 1)).toEqual([]);
    await b.close();
  });

  it('committed offsets resume a new consumer where the old one stopped', async () => {
    const topic = await createTopic(1);
    await produce(topic, 1, 100);
    const first: bigint[] = [];
    const a = consumer('resume');
    a.subscribe([topic]);
    await a.run({ eachMessage: async (m) => void first.push(m.offset) });
    await waitUntil(() => first.length === 100, 10_000, '100 records');
    await a.close();
    expect((await committedOffsets(broker.bootstrap, 'resume')).get(0)).toBe(100n);
    await produce(topic, 1, 50, 100);
    const second: bigint[] = [];
    const b = consumer('resume');
    b.subscribe([topic]);
    await b.run({ eachMessage: async (m) => void second.push(m.offset) });
    await waitUntil(() => second.length === 50, 10_000, '50 more records');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(second).toEqual(Array.from({ length: 50 }, (_, i) => BigInt(100 + i)));
    await b.close();
    expect((await committedOffsets(broker.bootstrap, 'resume')).get(0)).toBe(150n);
  });

  it('seek, pause and resume', async () => {
    const topic = await createTopic(2);
    await produce(topic, 2, 40);
    const seen: Message[] = [];
    const c = consumer('seek-pause');
    c.subscribe([topic]);
    c.pause([{ topic, partitions: [1] }]);
    c.on('assigned', () => c.seek(topic, 0, 10n));
    await c.run({ eachMessage: async (m) => void seen.push(m) });
    await waitUntil(() => seen.length === 10, 10_000, 'partition 0 from offset 10');
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Seek in the 'assigned' listener wins over the reset policy; paused partition 1 gives nothing.
    expect(seen.map((m) => `${m.partition}:${m.offset}`)).toEqual(Array.from({ length: 10 }, (_, i) => `0:${10 + i}`));
    expect(c.paused()).toEqual([{ topic, partition: 1 }]);
    c.resume([{ topic }]);
    await waitUntil(() => seen.length === 30, 10_000, 'partition 1 after resume');
    expect(seen.slice(10).map((m) => Number(m.offset))).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(seen.slice(10).every((m) => m.partition === 1)).toBe(true);
    // Seek back on a running partition: processed again from there.
    c.seek(topic, 1, 15n);
    await waitUntil(() => seen.length === 35, 10_000, 'partition 1 again from 15');
    expect(seen.slice(30).map((m) => Number(m.offset))).toEqual([15, 16, 17, 18, 19]);
    await c.close();
    expect(await committedOffsets(broker.bootstrap, 'seek-pause')).toEqual(new Map([[0, 20n], [1, 20n]]));
  });

  it('fromBeginning starts at the earliest offset, the default at the latest', async () => {
    const topic = await createTopic(1);
    await produce(topic, 1, 10);
    const early: bigint[] = [];
    const late: bigint[] = [];
    const a = consumer('from-beginning', { fromBeginning: true });
    const b = consumer('from-latest', { fromBeginning: false });
    a.subscribe([topic]);
    b.subscribe([topic]);
    const assigned = new Promise<void>((resolve) => b.on('assigned', () => resolve()));
    await a.run({ eachMessage: async (m) => void early.push(m.offset) });
    await b.run({ eachMessage: async (m) => void late.push(m.offset) });
    await assigned;
    await new Promise((resolve) => setTimeout(resolve, 200));
    await produce(topic, 1, 5, 10);
    await waitUntil(() => early.length === 15 && late.length === 5, 10_000, 'both groups');
    expect(early).toEqual(Array.from({ length: 15 }, (_, i) => BigInt(i)));
    expect(late).toEqual([10n, 11n, 12n, 13n, 14n]);
    await Promise.all([a.close(), b.close()]);
  });

  it('a handler slower than the session timeout does not get its member evicted', async () => {
    const topic = await createTopic(1);
    await produce(topic, 1, 3);
    const lost: unknown[] = [];
    const handled: bigint[] = [];
    const c = consumer('slow-handler', { sessionTimeoutMs: 2000 });
    c.on('lost', (tps) => void lost.push(tps));
    c.subscribe([topic]);
    await c.run({
      eachMessage: async (m) => {
        if (m.offset === 1n) await new Promise((resolve) => setTimeout(resolve, 3000));
        handled.push(m.offset);
      },
    });
    await waitUntil(() => handled.length === 3, 15_000, 'three records, one taking 3 s');
    expect(handled).toEqual([0n, 1n, 2n]);
    expect(lost).toEqual([]);
    const cluster = new Cluster({ bootstrap: broker.bootstrap });
    const [group] = await cluster.anyConnection().call(ApiKey.DescribeGroups, { groupIds: ['slow-handler'] }, decodeDescribeGroupsResponse);
    cluster.close();
    expect(group!.members.map((m) => m.memberId)).toEqual([c.memberId]);
    await c.close();
    expect((await committedOffsets(broker.bootstrap, 'slow-handler')).get(0)).toBe(3n);
  });

  it('auto-commit never commits a record whose handler has not completed (member SIGKILLed mid-handler)', async () => {
    const topic = await createTopic(1);
    await produce(topic, 1, 50);
    const member = startMember('blocked', { bootstrap: broker.bootstrap, groupId: 'crash-mid-handler', topics: [topic], sessionTimeoutMs: 2000, fromBeginning: true, autoCommitIntervalMs: 200, blockAt: { partition: 0, offset: 30 } });
    try {
      await member.waitFor((events) => events.some((e) => e.e === 'blocked'), 15_000, 'the handler of offset 30');
      // Several auto-commit intervals pass while the handler of offset 30 is still running.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const processed = member.events.filter((e) => e.e === 'rec').map((e) => e.o);
      expect(processed).toEqual(Array.from({ length: 30 }, (_, i) => i));
      expect((await committedOffsets(broker.bootstrap, 'crash-mid-handler')).get(0)).toBe(30n);
      await member.kill();
      expect((await committedOffsets(broker.bootstrap, 'crash-mid-handler')).get(0)).toBe(30n);
    } finally {
      await member.kill();
    }
    // A new member resumes at the record that was never finished.
    const resumed: bigint[] = [];
    const c = consumer('crash-mid-handler', { sessionTimeoutMs: 2000 });
    c.subscribe([topic]);
    await c.run({ eachMessage: async (m) => void resumed.push(m.offset) });
    await waitUntil(() => resumed.length === 20, 15_000, 'records 30..49 after the dead member expired');
    expect(resumed[0]).toBe(30n);
    await c.close();
  });

  it('the async iterator yields every record and counts one processed when the next is requested', async () => {
    const topic = await createTopic(2);
    await produce(topic, 2, 20);
    const c = consumer('iterator');
    c.subscribe([topic]);
    const seen: string[] = [];
    for await (const m of c) {
      seen.push(key(m));
      if (seen.length === 20) break; // break closes the consumer; the 20th is not counted processed
    }
    expect(new Set(seen).size).toBe(20);
    const committed = await committedOffsets(broker.bootstrap, 'iterator');
    expect((committed.get(0) ?? 0n) + (committed.get(1) ?? 0n)).toBe(19n);
  });

  it('eachBatch gets each partition\u2019s records in order and commits after the batch', async () => {
    const topic = await createTopic(2);
    await produce(topic, 2, 100);
    const byPartition = new Map<number, bigint[]>();
    const c = consumer('each-batch');
    c.subscribe([topic]);
    await c.run({
      eachBatch: async ({ partition, messages, isStale }) => {
        expect(isStale()).toBe(false);
        byPartition.set(partition, [...(byPartition.get(partition) ?? []), ...messages.map((m) => m.offset)]);
      },
    });
    await waitUntil(() => (byPartition.get(0)?.length ?? 0) + (byPartition.get(1)?.length ?? 0) === 100, 10_000, '100 records in batches');
    for (const partition of [0, 1]) expect(byPartition.get(partition)).toEqual(Array.from({ length: 50 }, (_, i) => BigInt(i)));
    await c.close();
    expect(await committedOffsets(broker.bootstrap, 'each-batch')).toEqual(new Map([[0, 50n], [1, 50n]]));
  });

  it('a handler that throws is retried from the same record; its offset is never committed past it', async () => {
    const topic = await createTopic(1);
    await produce(topic, 1, 10);
    const attempts: bigint[] = [];
    const errors: Error[] = [];
    const c = consumer('handler-retry');
    c.on('error', (error) => void errors.push(error));
    c.subscribe([topic]);
    await c.run({
      eachMessage: async (m) => {
        attempts.push(m.offset);
        if (m.offset === 4n && attempts.filter((o) => o === 4n).length < 3) throw new Error('poison, for now');
      },
    });
    await waitUntil(() => attempts.length === 12, 10_000, '10 records, offset 4 tried three times');
    expect(attempts).toEqual([0n, 1n, 2n, 3n, 4n, 4n, 4n, 5n, 6n, 7n, 8n, 9n]);
    expect(errors.filter((e) => e.message.includes('poison')).length).toBe(2);
    await c.close();
    expect((await committedOffsets(broker.bootstrap, 'handler-retry')).get(0)).toBe(10n);
  });

  it('no heartbeat for the session timeout (broker frozen): partitions are lost, then rejoined from committed offsets', async () => {
    const topic = await createTopic(2);
    await produce(topic, 2, 20);
    const events: string[] = [];
    const seen: string[] = [];
    const c = consumer('frozen-broker', { sessionTimeoutMs: 2000, autoCommitIntervalMs: 100 });
    for (const event of ['assigned', 'revoked', 'lost'] as const) c.on(event, (tps) => void events.push(`${event}:${tps.length}`));
    c.subscribe([topic]);
    await c.run({ eachMessage: async (m) => void seen.push(key(m)) });
    await waitUntil(() => seen.length === 20, 10_000, '20 records');
    await new Promise((resolve) => setTimeout(resolve, 300)); // committed
    broker.child.kill('SIGSTOP');
    try {
      await waitUntil(() => events.includes('lost:2'), 5000, "'lost' after the session timeout");
    } finally {
      broker.child.kill('SIGCONT');
    }
    await waitUntil(() => events.filter((e) => e === 'assigned:2').length === 2, 10_000, 'assigned again after the rejoin');
    await produce(topic, 2, 10, 20);
    await waitUntil(() => seen.length === 30, 10_000, 'the 10 new records');
    expect(events).toEqual(['assigned:2', 'lost:2', 'assigned:2']);
    // Resumed from the committed offsets: nothing skipped, nothing processed twice.
    expect(new Set(seen).size).toBe(30);
    await c.close();
  });
});
