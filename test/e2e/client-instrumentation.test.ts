/**
 * Client instrumentation as a user sees it: subscribe to the rill:client:* diagnostics channels
 * (or pass a logger) and get a request event per call, a retry event when the broker restarts
 * under a reader and a reconnect event when it is back, and a rebalance event when a group
 * member joins. A real broker process, restarted with SIGTERM on the same port and data dir.
 */
import diagnostics from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Admin, Consumer, PartitionReader, Producer, clientChannelNames,
  type ClientLogger, type RebalanceEvent, type ReconnectEvent, type RequestEvent, type RetryEvent,
} from '../../src/client/index.js';
import { ApiKey } from '../../src/wire/apis.js';
import { startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';

/** Collects a channel's messages; `next(predicate)` resolves with the first that matches. */
function listen<T>(name: string): { events: T[]; next(predicate: (event: T) => boolean): Promise<T>; stop(): void } {
  const events: T[] = [];
  const waiters: { predicate: (event: T) => boolean; resolve: (event: T) => void }[] = [];
  const onMessage = (message: unknown): void => {
    const event = message as T;
    events.push(event);
    for (const waiter of [...waiters]) {
      if (waiter.predicate(event)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(event);
      }
    }
  };
  diagnostics.subscribe(name, onMessage);
  return {
    events,
    next: (predicate) => {
      const seen = events.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve) => waiters.push({ predicate, resolve }));
    },
    stop: () => diagnostics.unsubscribe(name, onMessage),
  };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function broker(dataDir = tempDir('instrumentation')): Promise<BrokerProcess> {
  const started = await startBroker({ dataDir });
  cleanups.push(() => started.kill());
  return started;
}

describe('client instrumentation', () => {
  it('exports the channel names', () => {
    expect(clientChannelNames).toEqual({ request: 'rill:client:request', retry: 'rill:client:retry', reconnect: 'rill:client:reconnect', rebalance: 'rill:client:rebalance', throttle: 'rill:client:throttle' });
  });

  it('publishes a request event per call, and logs it at debug to the logger option', async () => {
    const b = await broker();
    const requests = listen<RequestEvent>(clientChannelNames.request);
    cleanups.push(() => requests.stop());
    const debug: object[] = [];
    const logger: ClientLogger = { debug: (obj) => void debug.push(obj), info: () => undefined, warn: () => undefined, error: () => undefined };
    const admin = new Admin({ bootstrap: b.bootstrap, clientId: 'instrumented', logger });
    cleanups.push(() => admin.close());
    await admin.createTopics([{ topic: 'requests', partitions: 1 }]);
    await admin.listTopics();
    const mine = requests.events.filter((e) => e.clientId === 'instrumented');
    expect(mine.map((e) => e.apiKey)).toEqual([ApiKey.CreateTopics, ApiKey.Metadata]);
    expect(mine[0]).toMatchObject({ client: 'admin', broker: b.bootstrap, error: undefined });
    expect(mine[0]!.durationMs).toBeGreaterThanOrEqual(0);
    expect(debug).toHaveLength(2);
  });

  it('publishes retry events while the broker restarts, then a reconnect event, and the reader goes on', async () => {
    const dataDir = tempDir('instrumentation-restart');
    let b = await broker(dataDir);
    const admin = new Admin({ bootstrap: b.bootstrap });
    await admin.createTopics([{ topic: 'restart', partitions: 1 }]);
    admin.close();
    const retries = listen<RetryEvent>(clientChannelNames.retry);
    const reconnects = listen<ReconnectEvent>(clientChannelNames.reconnect);
    cleanups.push(() => retries.stop(), () => reconnects.stop());
    const warnings: object[] = [];
    const logger: ClientLogger = { debug: () => undefined, info: () => undefined, warn: (obj) => void warnings.push(obj), error: () => undefined };
    const reader = new PartitionReader({ bootstrap: b.bootstrap, clientId: 'restart-reader', topic: 'restart', from: 'earliest', maxWaitMs: 100, logger });
    cleanups.push(() => reader.close());
    const values: string[] = [];
    let sawValue: (value: string) => void = () => undefined;
    const reading = (async () => {
      for await (const message of reader) {
        values.push(message.value!.toString());
        sawValue(message.value!.toString());
      }
    })();
    const valueSeen = (wanted: string): Promise<void> => new Promise((resolve) => {
      if (values.includes(wanted)) return resolve();
      sawValue = (value) => value === wanted && resolve();
    });
    const send = async (value: string): Promise<void> => {
      const producer = new Producer({ bootstrap: b.bootstrap });
      await producer.send({ topic: 'restart', value });
      await producer.close();
    };
    await send('before');
    await valueSeen('before');

    await b.stop();
    const retry = await retries.next((e) => e.clientId === 'restart-reader');
    expect(retry).toMatchObject({ client: 'reader', operation: 'fetch', attempt: 1, broker: b.bootstrap });
    expect(retry.error.retriable).toBe(true);
    expect(warnings.length).toBeGreaterThan(0);

    b = await startBroker({ dataDir, port: b.port });
    cleanups.push(() => b.kill());
    // The lost connection also makes the reader refresh metadata (on its default connection),
    // which reconnects too: the fetch connection's event is the one this test is about.
    const reconnect = await reconnects.next((e) => e.clientId === 'restart-reader' && e.purpose === 'fetch');
    expect(reconnect).toMatchObject({ client: 'reader', broker: b.bootstrap, purpose: 'fetch' });
    await send('after');
    await valueSeen('after');
    expect(values).toEqual(['before', 'after']);
    reader.close();
    await reading;
  });

  it('publishes a rebalance event when a group member joins', async () => {
    const b = await broker();
    const admin = new Admin({ bootstrap: b.bootstrap });
    await admin.createTopics([{ topic: 'rebalanced', partitions: 4 }]);
    admin.close();
    const rebalances = listen<RebalanceEvent>(clientChannelNames.rebalance);
    cleanups.push(() => rebalances.stop());
    const member = (clientId: string): Consumer => {
      const consumer = new Consumer({ bootstrap: b.bootstrap, groupId: 'watched', clientId, maxWaitMs: 100 });
      consumer.on('error', () => undefined);
      consumer.subscribe(['rebalanced']);
      cleanups.push(() => consumer.close());
      return consumer;
    };
    const first = member('first');
    await first.run({ eachMessage: async () => undefined });
    const firstAssigned = await rebalances.next((e) => e.clientId === 'first' && e.assigned.length > 0);
    expect(firstAssigned).toMatchObject({ client: 'consumer', groupId: 'watched', reason: 'assignment', memberId: first.memberId, revoked: [] });
    expect(firstAssigned.assigned).toHaveLength(4);

    const second = member('second');
    await second.run({ eachMessage: async () => undefined });
    const revoked = await rebalances.next((e) => e.clientId === 'first' && e.revoked.length > 0);
    const gained = await rebalances.next((e) => e.clientId === 'second' && e.assigned.length > 0);
    expect(revoked.revoked).toHaveLength(2);
    expect(gained.assigned).toEqual(revoked.revoked);
    expect(gained.memberId).toBe(second.memberId);
  });
});
