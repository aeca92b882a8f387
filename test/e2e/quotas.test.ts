/**
 * Quotas per principal, end to end: a broker process with users added offline and quotas from a
 * config file; clients authenticate with SCRAM over real TCP. A producer or reader over its
 * byte-rate quota is told so in its replies (throttleTimeMs, surfaced on rill:client:throttle),
 * is held near the rate, and /metrics counts exactly what the clients were told; other principals
 * are not throttled. A principal (or, anonymous, a client address) past its connection quota is
 * refused with TOO_MANY_CONNECTIONS while others get in.
 *
 * Timing: only bounds that a slower machine makes easier to meet (bytes moved are at most
 * 2 x rate x elapsed + burst; a reply held back T ms arrives at least T ms after it was sent).
 */
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer, clientChannelNames, type ThrottleEvent } from '../../src/client/index.js';
import { BrokerConnection, checkReply } from '../../src/client/connection.js';
import { RillError } from '../../src/lib/errors.js';
import { responseHeaderBytes } from '../../src/lib/limits.js';
import { ApiKey } from '../../src/wire/apis.js';
import { decodeApiVersionsResponse } from '../../src/wire/control.js';
import { decodeProduceResponse, encodeProduceRequest } from '../../src/wire/produce.js';
import { encodeBatch } from '../../src/wire/record-batch.js';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { RawClient } from '../helpers/raw-client.js';

const password = 'quota test password';
/** Produce and fetch bytes per second of every principal but bob; the burst is one second of it. */
const rateBytesPerSecond = 500_000;
const burstBytes = rateBytesPerSecond;
const sasl = (username: string) => ({ username, password, mechanism: 'scram-sha-256' as const });

function listenThrottles(): { events: ThrottleEvent[]; stop: () => void } {
  const events: ThrottleEvent[] = [];
  const onMessage = (message: unknown): void => void events.push(message as ThrottleEvent);
  diagnostics.subscribe(clientChannelNames.throttle, onMessage);
  return { events, stop: () => diagnostics.unsubscribe(clientChannelNames.throttle, onMessage) };
}

async function metrics(broker: BrokerProcess): Promise<string> {
  return (await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`)).text();
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

/** An authenticated (or anonymous) connection that has answered one request. */
async function openConnection(port: number, user: string | null): Promise<BrokerConnection> {
  const connection = new BrokerConnection({ host: '127.0.0.1', port }, user === null ? {} : { sasl: sasl(user) });
  try {
    await connection.call(ApiKey.ApiVersions, {}, decodeApiVersionsResponse);
  } catch (error) {
    connection.close();
    throw error;
  }
  return connection;
}

async function refusalOf(action: () => Promise<unknown>): Promise<RillError> {
  try {
    await action();
  } catch (error) {
    expect(error).toBeInstanceOf(RillError);
    return error as RillError;
  }
  throw new Error('expected a refusal');
}

/** Retries `action` until it succeeds (the broker sees a closed connection a moment after the client closes it). */
async function eventually<T>(action: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await action();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe('quotas per principal', () => {
  let broker: BrokerProcess;
  let bootstrap: string;
  const topic = 'quota-topic';

  beforeAll(async () => {
    const dataDir = tempDir('quotas');
    for (const user of ['alice', 'bob', 'carol', 'dave', 'erin']) {
      const added = await runCli(['users', 'add', user, '--data-dir', dataDir], `${password}\n`);
      expect(added.code, added.stderr).toBe(0);
    }
    const config = path.join(tempDir('quotas-config'), 'rill.yaml');
    fs.writeFileSync(config, [
      'quotas:',
      `  produceBytesPerSecond: ${rateBytesPerSecond}`,
      `  fetchBytesPerSecond: ${rateBytesPerSecond}`,
      '  users:',
      '    bob:                      # exempt',
      '      produceBytesPerSecond: 0',
      '      fetchBytesPerSecond: 0',
      '    dave:',
      '      connections: 2',
      'auth:                          # quotas bind super users too; ACLs are not what this tests',
      '  superUsers: [alice, bob, carol, dave, erin]',
    ].join('\n'));
    broker = await startBroker({ dataDir, http: '127.0.0.1:0', args: ['--auth', 'required', '--config', config] });
    bootstrap = broker.bootstrap;
    const admin = new Admin({ bootstrap, sasl: sasl('bob') });
    await admin.createTopics([{ topic, partitions: 1 }, { topic: 'raw', partitions: 1 }]);
    admin.close();
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('a producer over its quota is told in its replies and held near the rate; /metrics counts it; other principals are not throttled', async () => {
    const throttles = listenThrottles();
    const value = Buffer.alloc(1000, 'a');
    const records = 2000;
    const alice = new Producer({ bootstrap, sasl: sasl('alice'), clientId: 'alice', acks: 1 });
    const carol = new Producer({ bootstrap, sasl: sasl('carol'), clientId: 'carol', acks: 1 });
    try {
      await alice.send({ topic, value: 'warm-up' });
      const startedMs = performance.now();
      const sends = Array.from({ length: records }, () => alice.send({ topic, value }));
      // carol has the same quota but her own bucket: 100 KB, under her burst, while alice is held back.
      await Promise.all(Array.from({ length: 100 }, () => carol.send({ topic, value })));
      await Promise.all(sends);
      const elapsedS = (performance.now() - startedMs) / 1000;

      const held = throttles.events.filter((e) => e.clientId === 'alice');
      expect(held.length).toBeGreaterThan(0);
      expect(held.every((e) => e.apiKey === ApiKey.Produce && e.throttleTimeMs > 0 && e.broker === bootstrap)).toBe(true);
      expect(throttles.events.filter((e) => e.clientId === 'carol')).toEqual([]);
      // Unthrottled, 2 MB takes well under a second here; at 500 KB/s it cannot take under 3 s.
      expect(records * value.length).toBeLessThanOrEqual(2 * rateBytesPerSecond * elapsedS + burstBytes);

      const text = await metrics(broker);
      expect(sample(text, 'rill_quota_throttled_requests_total{kind="produce"}')).toBe(held.length);
      expect(sample(text, 'rill_quota_throttle_seconds_total{kind="produce"}')).toBeCloseTo(held.reduce((sum, e) => sum + e.throttleTimeMs, 0) / 1000, 6);

      // bob's override (0) exempts him: as much again, not held back once.
      const bob = new Producer({ bootstrap, sasl: sasl('bob'), clientId: 'bob', acks: 1 });
      await Promise.all(Array.from({ length: records }, () => bob.send({ topic: 'raw', value })));
      await bob.close();
      expect(throttles.events.filter((e) => e.clientId === 'bob')).toEqual([]);
      expect(sample(await metrics(broker), 'rill_quota_throttled_requests_total{kind="produce"}')).toBe(held.length);
    } finally {
      throttles.stop();
      await alice.close();
      await carol.close();
    }
  });

  it('a throttled reply arrives no sooner than its throttle, and the connection is not read meanwhile: pipelined replies come in order', async () => {
    const connection = await openConnection(broker.port, 'erin');
    try {
      // Three pipelined requests of ~400 KB: the first fits erin's burst, the next two do not.
      const batch = encodeBatch(Array.from({ length: 400 }, () => ({ value: Buffer.alloc(1000, 'e') })), Date.now());
      const body = encodeProduceRequest(1, 30_000, [{ name: 'raw', partitions: [{ partition: 0, batches: [batch] }] }]);
      const sentMs = performance.now();
      const arrived: { id: number; afterMs: number; throttleTimeMs: number }[] = [];
      await Promise.all([0, 1, 2].map((id) => connection.send(ApiKey.Produce, 0, body).then((frame) => {
        checkReply(frame!);
        const response = decodeProduceResponse(frame!, responseHeaderBytes);
        expect(response.topics[0]!.partitions[0]!.errorCode).toBe(0);
        arrived.push({ id, afterMs: performance.now() - sentMs, throttleTimeMs: response.throttleTimeMs });
      })));
      expect(arrived.map((a) => a.id)).toEqual([0, 1, 2]);
      const [first, second, third] = arrived as [typeof arrived[0], typeof arrived[0], typeof arrived[0]];
      expect(first.throttleTimeMs).toBe(0);
      expect(second.throttleTimeMs).toBeGreaterThan(0);
      expect(third.throttleTimeMs).toBeGreaterThan(0);
      // Held back its throttle; the third was read only after the second's throttle ended.
      expect(second.afterMs).toBeGreaterThanOrEqual(second.throttleTimeMs - 5);
      expect(third.afterMs).toBeGreaterThanOrEqual(second.throttleTimeMs + third.throttleTimeMs - 5);
    } finally {
      connection.close();
    }
  });

  it('a reader over its fetch quota is told in its replies and held near the rate; an exempt principal reads unthrottled', async () => {
    const read = async (user: string): Promise<{ bytes: number; elapsedS: number }> => {
      const reader = new PartitionReader({ bootstrap, sasl: sasl(user), clientId: user, topic, from: 'earliest', stopAtEnd: true });
      const startedMs = performance.now();
      let bytes = 0;
      for await (const messages of reader.batches()) for (const message of messages) bytes += message.value?.length ?? 0;
      return { bytes, elapsedS: (performance.now() - startedMs) / 1000 };
    };
    const throttles = listenThrottles();
    try {
      const before = await metrics(broker);
      const alice = await read('alice');
      const held = throttles.events.filter((e) => e.clientId === 'alice');
      expect(held.length).toBeGreaterThan(0);
      expect(held.every((e) => e.apiKey === ApiKey.Fetch && e.throttleTimeMs > 0)).toBe(true);
      expect(alice.bytes).toBeGreaterThan(2_000_000);
      // A reply holds at most one burst or one batch (the producer's batches are at most 256 KiB).
      expect(alice.bytes).toBeLessThanOrEqual(2 * rateBytesPerSecond * alice.elapsedS + burstBytes + 256 * 1024);
      const after = await metrics(broker);
      const counted = (text: string): number => sample(text, 'rill_quota_throttled_requests_total{kind="fetch"}');
      expect(counted(after) - counted(before)).toBe(held.length);
      expect(sample(after, 'rill_quota_throttle_seconds_total{kind="fetch"}')).toBeGreaterThan(0);

      const bob = await read('bob');
      expect(bob.bytes).toBe(alice.bytes);
      expect(throttles.events.filter((e) => e.clientId === 'bob')).toEqual([]);
      expect(counted(await metrics(broker))).toBe(counted(after));
    } finally {
      throttles.stop();
    }
  });

  it('refuses a principal\'s connection past its connection quota with TOO_MANY_CONNECTIONS, and lets others in', async () => {
    const before = sample(await metrics(broker), 'rill_quota_connections_refused_total');
    const dave = [await openConnection(broker.port, 'dave'), await openConnection(broker.port, 'dave')];
    try {
      const refused = await refusalOf(() => openConnection(broker.port, 'dave'));
      expect(refused.code).toBe('TOO_MANY_CONNECTIONS');
      expect(refused.message).toMatch(/User:dave already has 2 connections open.*quotas\.users\.dave\.connections/);
      // Others are not affected.
      const erin = await openConnection(broker.port, 'erin');
      erin.close();
      const text = await metrics(broker);
      expect(sample(text, 'rill_quota_connections_refused_total')).toBe(before + 1);
      expect(sample(text, 'rill_errors_total{code="TOO_MANY_CONNECTIONS"}')).toBeGreaterThanOrEqual(1);
      expect(broker.output()).toMatch(/refusing a connection of User:dave from 127\.0\.0\.1:\d+: 2 connections open, the limit is 2/);
      // One closed, one more may come.
      dave.pop()!.close();
      dave.push(await eventually(() => openConnection(broker.port, 'dave')));
    } finally {
      for (const connection of dave) connection.close();
    }
  });
});

describe('connection quota of anonymous clients (--quota-connections-per-principal)', () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await startBroker({ http: '127.0.0.1:0', args: ['--quota-connections-per-principal', '2'] });
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('counts anonymous connections per client address: the third is answered TOO_MANY_CONNECTIONS at its first request and closed', async () => {
    const open = [await openConnection(broker.port, null), await openConnection(broker.port, null)];
    try {
      const raw = await RawClient.connect(broker.port);
      raw.msgpackRequest(ApiKey.ApiVersions, 1, {});
      const reply = await raw.reply(1);
      expect(reply.errorCode).toBe(new RillError('TOO_MANY_CONNECTIONS').errorCode);
      expect(raw.message(reply)).toMatch(/address 127\.0\.0\.1 already has 2 connections open.*quotas\.connectionsPerPrincipal/);
      expect(await raw.waitClosed()).toBe(true);
      expect(sample(await metrics(broker), 'rill_quota_connections_refused_total')).toBe(1);
      // The client library reports it as the error it is.
      const refused = await refusalOf(() => openConnection(broker.port, null));
      expect(refused.code).toBe('TOO_MANY_CONNECTIONS');
      open.pop()!.close();
      open.push(await eventually(() => openConnection(broker.port, null)));
    } finally {
      for (const connection of open) connection.close();
    }
  });
});
