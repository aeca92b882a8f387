/**
 * RabbitMQ Streams through rabbitmq-stream-js-client (the stream protocol on port 5552). Produce:
 * one stream per partition, per producer one publisher on each stream (publishers share the
 * producer's connection), records round-robin over them; a publish counts when its publish
 * confirmation arrives (the `publish_confirm` event), with a window of unconfirmed publishes.
 * Consume: one consumer per stream from the first offset, all in this process. Durability: the
 * stream's default (written, replicated to no one on one node, not fsync'd per message).
 */
import net from 'node:net';
import { connect, Offset, type Client, type Publisher } from 'rabbitmq-stream-js-client';
import { LatencyHistogram } from '../lib/histogram.js';
import { PayloadPool, stampOf } from '../lib/payload.js';
import { SendWindow, timedProduce } from '../lib/send-window.js';
import { measureLatency, type Peer, type PeerSession } from './peer.js';

const host = process.env.BENCH_RABBITMQ_HOST ?? '127.0.0.1';
const port = Number(process.env.BENCH_RABBITMQ_PORT ?? 5552);

class RabbitSession implements PeerSession {
  private readonly prefix = `rill-bench-${process.pid}-${Date.now()}`;
  private readonly clients: Client[] = [];
  private readonly streams: string[] = [];
  private produceStreams: string[] = [];

  private async client(): Promise<Client> {
    const client = await connect({ hostname: host, port, username: process.env.BENCH_RABBITMQ_USER ?? 'guest', password: process.env.BENCH_RABBITMQ_PASSWORD ?? 'guest', vhost: '/' });
    this.clients.push(client);
    return client;
  }

  private async createStreams(names: string[]): Promise<void> {
    const client = this.clients[0] ?? (await this.client());
    for (const stream of names) {
      await client.createStream({ stream, arguments: {} });
      this.streams.push(stream);
    }
  }

  async produce(options: Parameters<PeerSession['produce']>[0]): Ret<'produce'> {
    this.produceStreams = Array.from({ length: options.partitions }, (_, p) => `${this.prefix}-p${p}`);
    await this.createStreams(this.produceStreams);
    const payloads = new PayloadPool(options.messageSize);
    const windows: SendWindow[] = [];
    const publisherSets: Publisher[][] = [];
    for (let i = 0; i < options.producers; i++) {
      const client = await this.client();
      const window = new SendWindow(options.windowRecords);
      const publishers: Publisher[] = [];
      for (const stream of this.produceStreams) {
        const publisher = await client.declarePublisher({ stream });
        publisher.on('publish_confirm', (error, ids) => (error === null ? window.done(ids.length) : window.fail(new Error(`publish error ${error}`), ids.length)));
        publishers.push(publisher);
      }
      windows.push(window);
      publisherSets.push(publishers);
    }
    let next = 0;
    return timedProduce(windows, options.durationMs, options.onProgress, (i, window) => {
      const publishers = publisherSets[i]!;
      publishers[next++ % publishers.length]!.send(payloads.take()).catch((e: unknown) => window.fail(e));
    });
  }

  async consume(options: Parameters<PeerSession['consume']>[0]): Ret<'consume'> {
    const client = await this.client();
    let read = 0;
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const progress = setInterval(() => options.onProgress(read), 1000);
    const startMs = performance.now();
    for (const stream of this.produceStreams) {
      await client.declareConsumer({ stream, offset: Offset.first() }, () => {
        if (++read === options.expectedRecords) finish();
      });
    }
    const timeout = setTimeout(finish, 120_000);
    await finished;
    clearTimeout(timeout);
    clearInterval(progress);
    const seconds = (performance.now() - startMs) / 1000;
    return { records: read, seconds, recordsPerSecond: read / seconds };
  }

  async latency(options: Parameters<PeerSession['latency']>[0]): Ret<'latency'> {
    const streams = Array.from({ length: options.partitions }, (_, p) => `${this.prefix}-lat-p${p}`);
    await this.createStreams(streams);
    const consumerClient = await this.client();
    const ref = { histogram: new LatencyHistogram(), recordFromMs: Infinity };
    let received = 0;
    for (const stream of streams) {
      await consumerClient.declareConsumer({ stream, offset: Offset.next() }, (message) => {
        const nowMs = performance.now();
        received++;
        if (nowMs >= ref.recordFromMs) ref.histogram.recordMs(nowMs - stampOf(message.content));
      });
    }
    const producerClient = await this.client();
    const publishers = await Promise.all(streams.map((stream) => producerClient.declarePublisher({ stream })));
    const payloads = new PayloadPool(options.messageSize);
    let next = 0;
    return measureLatency(options, (stampMs) => {
      void publishers[next++ % publishers.length]!.send(payloads.stamped(stampMs)).catch(() => undefined);
    }, () => received, ref, `rabbitmq e2e @ ${options.rate}/s`);
  }

  async close(): Promise<void> {
    const client = this.clients[0];
    if (client !== undefined) for (const stream of this.streams) await client.deleteStream({ stream }).catch(() => undefined);
    await Promise.all(this.clients.map((c) => c.close().catch(() => undefined)));
  }
}

type Ret<K extends keyof PeerSession> = ReturnType<PeerSession[K]>;

/**
 * The server's version, read from the AMQP 0-9-1 Connection.Start on port 5672 (its server
 * properties carry "version"); null when that port does not answer. The stream client 1.x sends
 * ExchangeCommandVersions at connect, which servers before 3.13 answer by closing the connection
 * (and the client then throws from its socket handler), so older servers are skipped up front.
 */
export function rabbitmqServerVersion(amqpPort = Number(process.env.BENCH_RABBITMQ_AMQP_PORT ?? 5672)): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: amqpPort });
    let received = Buffer.alloc(0);
    const done = (version: string | null): void => {
      socket.destroy();
      resolve(version);
    };
    socket.setTimeout(1500, () => done(null));
    socket.once('error', () => done(null));
    socket.once('connect', () => socket.write(Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1])));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const at = received.indexOf('\x07versionS', 0, 'latin1');
      if (at < 0 || received.length < at + 12) return;
      const length = received.readUInt32BE(at + 9);
      if (received.length >= at + 13 + length) done(received.subarray(at + 13, at + 13 + length).toString());
    });
  });
}

function versionAtLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

export const rabbitmqPeer: Peer = {
  name: 'rabbitmq',
  host,
  port,
  startHint: 'rabbitmq-plugins enable rabbitmq_stream && rabbitmq-server -detached   (Debian: apt-get install -y rabbitmq-server; stream port 5552, user guest/guest)',
  settings: { client: 'rabbitmq-stream-js-client', produce: 'publisher.send per record, counted at publish_confirm, one publisher per stream per connection', consume: 'one consumer per stream from Offset.first()', durability: 'stream default (written, not fsync per message)' },
  async unusable() {
    const version = await rabbitmqServerVersion();
    if (version !== null && !versionAtLeast(version, 3, 13)) {
      return `server is RabbitMQ ${version}, older than 3.13, which rabbitmq-stream-js-client 1.x needs (it sends ExchangeCommandVersions at connect and older servers close the connection); run RabbitMQ >= 3.13 with the stream plugin`;
    }
    return null;
  },
  async open() {
    return new RabbitSession();
  },
};
