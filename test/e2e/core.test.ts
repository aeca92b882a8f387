/**
 * End to end over real TCP against a broker started as a child process through the CLI:
 * 100,000 records over 8 partitions produced and fetched back byte for byte, per-partition
 * order kept, everything still there after a graceful restart and after a SIGKILL.
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer, type Message } from '../../src/client/index.js';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.js';

const recordCount = 100_000;
const partitionCount = 8;

interface Sent {
  key: string;
  value: Buffer;
  partition: number;
  offset: bigint;
}

async function readAll(bootstrap: string, topic: string): Promise<Message[]> {
  const reader = new PartitionReader({ bootstrap, topic, from: 'earliest', stopAtEnd: true });
  const messages: Message[] = [];
  for await (const message of reader) messages.push({ ...message, key: Buffer.from(message.key!), value: Buffer.from(message.value!) });
  return messages;
}

function expectSameAsSent(messages: Message[], sent: Sent[]): void {
  expect(messages.length).toBe(sent.length);
  const byPartition = new Map<number, Message[]>();
  for (const m of messages) {
    const list = byPartition.get(m.partition) ?? [];
    list.push(m);
    byPartition.set(m.partition, list);
  }
  const sentByPartition = new Map<number, Sent[]>();
  for (const s of sent) {
    const list = sentByPartition.get(s.partition) ?? [];
    list.push(s);
    sentByPartition.set(s.partition, list);
  }
  expect(byPartition.size).toBe(partitionCount);
  for (const [partition, expected] of sentByPartition) {
    expected.sort((a, b) => (a.offset < b.offset ? -1 : 1));
    const got = byPartition.get(partition)!;
    expect(got.length).toBe(expected.length);
    for (let i = 0; i < expected.length; i++) {
      // Dense offsets from 0, in the order the broker acknowledged them, same bytes.
      expect(got[i]!.offset).toBe(BigInt(i));
      expect(got[i]!.offset).toBe(expected[i]!.offset);
      expect(got[i]!.key!.toString()).toBe(expected[i]!.key);
      expect(got[i]!.value!.equals(expected[i]!.value)).toBe(true);
    }
  }
}

describe('core broker end to end (child process, real TCP, real files)', () => {
  let broker: BrokerProcess;
  const sent: Sent[] = [];
  const topic = 'e2e-core';

  beforeAll(async () => {
    broker = await startBroker();
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('produces 100,000 records over 8 partitions and reads them back byte for byte, in order', async () => {
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic, partitions: partitionCount }]);
    admin.close();
    const producer = new Producer({ bootstrap: broker.bootstrap, acks: 'all' });
    const pending: Promise<void>[] = [];
    for (let i = 0; i < recordCount; i++) {
      const key = `key-${i % 997}`;
      const value = crypto.randomBytes(60 + (i % 80));
      pending.push(producer.send({ topic, key, value }).then((meta) => {
        sent.push({ key, value, partition: meta.partition, offset: meta.offset });
      }));
    }
    await Promise.all(pending);
    await producer.close();
    expect(sent.length).toBe(recordCount);
    // Same key, same partition.
    const partitionOfKey = new Map<string, number>();
    for (const s of sent) {
      expect(partitionOfKey.get(s.key) ?? s.partition).toBe(s.partition);
      partitionOfKey.set(s.key, s.partition);
    }
    expectSameAsSent(await readAll(broker.bootstrap, topic), sent);
  });

  it('keeps everything across a graceful restart', async () => {
    expect(await broker.stop()).toBe(0);
    expect(broker.output()).toContain('stopped cleanly');
    broker = await startBroker({ dataDir: broker.dataDir });
    expect(broker.output()).toContain('clean shutdown');
    expectSameAsSent(await readAll(broker.bootstrap, topic), sent);
  });

  it('keeps every acks=all record across a SIGKILL, and appends continue at the next offset', async () => {
    await broker.kill();
    broker = await startBroker({ dataDir: broker.dataDir });
    expect(broker.output()).toContain('recovered');
    expectSameAsSent(await readAll(broker.bootstrap, topic), sent);
    const producer = new Producer({ bootstrap: broker.bootstrap });
    const meta = await producer.send({ topic, partition: 3, value: 'after-crash' });
    await producer.close();
    expect(meta.offset).toBe(BigInt(sent.filter((s) => s.partition === 3).length));
  });
});
