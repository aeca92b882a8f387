/**
 * Crash loop: an idempotent producer with acks 'all' writes keyed records while the broker (a
 * child process) is SIGKILLed and restarted at random moments, 12 times. Afterwards:
 * - every acknowledged record is stored exactly once, at the offset the producer was told;
 * - no record is stored twice, acknowledged or not;
 * - per key (so per partition), records are stored in the order they were sent.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer } from '../../src/client/index.js';
import { startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';

const cycles = 12;
const keys = 24;
const topic = 'crash-loop';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function randomBetween(minMs: number, maxMs: number): number {
  return minMs + Math.floor(Math.random() * (maxMs - minMs));
}

/** The port of the killed broker can take a moment to be free again. */
async function restart(dataDir: string, port: number): Promise<BrokerProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startBroker({ dataDir, port });
    } catch (error) {
      if (attempt >= 20 || !/EADDRINUSE/.test(String(error))) throw error;
      await sleep(100);
    }
  }
}

describe('crash loop (SIGKILL while producing, acks all, idempotent)', () => {
  let broker: BrokerProcess | undefined;

  afterAll(async () => {
    await broker?.kill();
  });

  it(`keeps every acknowledged record exactly once and in order across ${cycles} SIGKILLs`, async () => {
    const dataDir = tempDir('crash-loop');
    broker = await startBroker({ dataDir });
    const port = broker.port;
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic, partitions: 4 }]);
    admin.close();

    const producer = new Producer({ bootstrap: broker.bootstrap, acks: 'all', retryBackoffMs: 20, retryBackoffMaxMs: 250, connectTimeoutMs: 2000, batchBytes: 4096 });
    const acked = new Map<string, { partition: number; offset: bigint }>();
    const failures: Error[] = [];
    const nextSeqOfKey = new Array<number>(keys).fill(0);
    const pending: Promise<void>[] = [];
    let sent = 0;
    let stop = false;

    const writer = (async () => {
      while (!stop) {
        for (let i = 0; i < 20; i++) {
          const k = sent % keys;
          const value = `${k}:${nextSeqOfKey[k]!++}:${sent++}`;
          pending.push(producer.send({ topic, key: `key-${k}`, value }).then(
            (meta) => void acked.set(value, { partition: meta.partition, offset: meta.offset }),
            (error: Error) => void failures.push(error),
          ));
        }
        await sleep(3);
      }
    })();

    for (let cycle = 0; cycle < cycles; cycle++) {
      await sleep(randomBetween(100, 700));
      await broker.kill();
      await sleep(randomBetween(0, 300));
      broker = await restart(dataDir, port);
    }
    await sleep(300);
    stop = true;
    await writer;
    await Promise.all(pending);
    await producer.close();

    // With a delivery timeout far beyond the test, every record is eventually acknowledged.
    expect(failures.map((e) => e.message)).toEqual([]);
    expect(acked.size).toBe(sent);
    expect(sent).toBeGreaterThan(1000);

    const reader = new PartitionReader({ bootstrap: broker.bootstrap, topic, from: 'earliest', stopAtEnd: true });
    const copies = new Map<string, number>();
    const lastSeqOfKey = new Map<number, number>();
    let stored = 0;
    for await (const message of reader) {
      stored++;
      const value = message.value!.toString();
      copies.set(value, (copies.get(value) ?? 0) + 1);
      const told = acked.get(value);
      if (told !== undefined) expect({ value, partition: message.partition, offset: message.offset }).toEqual({ value, ...told });
      const [key, seq] = value.split(':').map(Number) as [number, number];
      expect(seq, `key ${key}: ${value} after seq ${lastSeqOfKey.get(key)}`).toBeGreaterThan(lastSeqOfKey.get(key) ?? -1);
      lastSeqOfKey.set(key, seq);
    }
    expect([...copies].filter(([, n]) => n > 1)).toEqual([]);
    for (const value of acked.keys()) expect(copies.get(value), value).toBe(1);
    expect(stored).toBe(sent);
  });
});
