/**
 * A producer started before its broker (or during a restart) waits and retries instead of
 * failing its first sends: metadata and producer-id lookups retry retriable errors with backoff
 * until deliveryTimeoutMs.
 */
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer } from '../../src/client/index.js';
import { startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

describe('producer started before the broker', () => {
  let broker: BrokerProcess | undefined;

  afterAll(async () => {
    await broker?.kill();
  });

  it('delivers once the broker comes up, and fails clearly when it never does', async () => {
    const port = await freePort();
    const dataDir = tempDir('late-broker');
    // The topic exists in the data directory before the broker serves it.
    broker = await startBroker({ dataDir, port });
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic: 'late', partitions: 2 }]);
    admin.close();
    await broker.stop();

    const producer = new Producer({ bootstrap: `127.0.0.1:${port}`, deliveryTimeoutMs: 20_000 });
    const sends = [producer.send({ topic: 'late', key: 'k', value: 'first' }), producer.send({ topic: 'late', key: 'k', value: 'second' })];
    await new Promise((resolve) => setTimeout(resolve, 700)); // sends are retrying against a closed port
    broker = await startBroker({ dataDir, port });
    const results = await Promise.all(sends);
    expect(results.map((r) => r.offset)).toEqual([0n, 1n]);
    await producer.close();
    const values: string[] = [];
    for await (const m of new PartitionReader({ bootstrap: broker.bootstrap, topic: 'late', from: 'earliest', stopAtEnd: true })) values.push(m.value!.toString());
    expect(values).toEqual(['first', 'second']);

    const hopeless = new Producer({ bootstrap: `127.0.0.1:${await freePort()}`, deliveryTimeoutMs: 800, retryBackoffMs: 50 });
    await expect(hopeless.send({ topic: 'late', value: 'x' })).rejects.toMatchObject({ code: 'CONNECTION_ERROR', retriable: true });
    await hopeless.close().catch(() => undefined);
  });
});
