/**
 * NATS JetStream through @nats-io/transport-node + @nats-io/jetstream. Produce: js.publish (async,
 * each resolves with the stream's PubAck), a window of outstanding publishes per connection, one
 * connection per producer, subjects round-robin over `partitions` subjects of one file-storage
 * stream. Consume: one durable pull consumer (consume() with max_messages 1000), ack policy none
 * so it reads like Rill's offset reader, which acknowledges nothing. Durability: file storage,
 * the server's default sync interval (not fsync per message).
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { LatencyHistogram } from '../lib/histogram.js';
import { PayloadPool, stampOf } from '../lib/payload.js';
import { SendWindow, timedProduce } from '../lib/send-window.js';
import { measureLatency, type Peer, type PeerSession } from './peer.js';

const host = process.env.BENCH_NATS_HOST ?? '127.0.0.1';
const port = Number(process.env.BENCH_NATS_PORT ?? 4222);

class NatsSession implements PeerSession {
  private readonly stream = `rill_bench_${process.pid}_${Date.now()}`;
  private readonly connections: NatsConnection[] = [];
  private readonly streams: string[] = [];

  private async connection(): Promise<NatsConnection> {
    const nc = await connect({ servers: `${host}:${port}` });
    this.connections.push(nc);
    return nc;
  }

  private async createStream(name: string): Promise<void> {
    const jsm = await jetstreamManager(await this.connection());
    await jsm.streams.add({ name, subjects: [`${name}.>`], storage: StorageType.File });
    this.streams.push(name);
  }

  async produce(options: Parameters<PeerSession['produce']>[0]): Ret<'produce'> {
    await this.createStream(this.stream);
    const subjects = Array.from({ length: options.partitions }, (_, p) => `${this.stream}.p${p}`);
    const payloads = new PayloadPool(options.messageSize);
    const clients = await Promise.all(Array.from({ length: options.producers }, async () => jetstream(await this.connection())));
    const windows = clients.map(() => new SendWindow(options.windowRecords));
    let next = 0;
    return timedProduce(windows, options.durationMs, options.onProgress, (i, window) => {
      clients[i]!.publish(subjects[next++ % subjects.length]!, payloads.take()).then(() => window.done(), (e: unknown) => window.fail(e));
    });
  }

  async consume(options: Parameters<PeerSession['consume']>[0]): Ret<'consume'> {
    const nc = await this.connection();
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(this.stream, { durable_name: 'bench', ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All });
    const consumer = await jetstream(nc).consumers.get(this.stream, 'bench');
    const startMs = performance.now();
    let read = 0;
    const progress = setInterval(() => options.onProgress(read), 1000);
    const messages = await consumer.consume({ max_messages: 1000 });
    for await (const message of messages) {
      void message.data;
      if (++read >= options.expectedRecords) break;
    }
    clearInterval(progress);
    const seconds = (performance.now() - startMs) / 1000;
    return { records: read, seconds, recordsPerSecond: read / seconds };
  }

  async latency(options: Parameters<PeerSession['latency']>[0]): Ret<'latency'> {
    const name = `${this.stream}_lat`;
    await this.createStream(name);
    const subjects = Array.from({ length: options.partitions }, (_, p) => `${name}.p${p}`);
    const nc = await this.connection();
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(name, { durable_name: 'lat', ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.New });
    const messages = await (await jetstream(nc).consumers.get(name, 'lat')).consume({ max_messages: 1000 });
    const js = jetstream(await this.connection());
    const payloads = new PayloadPool(options.messageSize);
    const ref = { histogram: new LatencyHistogram(), recordFromMs: Infinity };
    let received = 0;
    const reading = (async () => {
      for await (const message of messages) {
        const nowMs = performance.now();
        received++;
        if (nowMs >= ref.recordFromMs) ref.histogram.recordMs(nowMs - stampOf(Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength)));
      }
    })();
    let next = 0;
    const result = await measureLatency(options, (stampMs) => {
      void js.publish(subjects[next++ % subjects.length]!, payloads.stamped(stampMs)).catch(() => undefined);
    }, () => received, ref, `nats e2e @ ${options.rate}/s`);
    await messages.close();
    await reading.catch(() => undefined);
    return result;
  }

  async close(): Promise<void> {
    try {
      if (this.connections.length > 0) {
        const jsm = await jetstreamManager(this.connections[0]!);
        for (const name of this.streams) await jsm.streams.delete(name).catch(() => undefined);
      }
    } finally {
      await Promise.all(this.connections.map((nc) => nc.close().catch(() => undefined)));
    }
  }
}

type Ret<K extends keyof PeerSession> = ReturnType<PeerSession[K]>;

export const natsPeer: Peer = {
  name: 'nats',
  host,
  port,
  startHint: 'nats-server -js -sd /tmp/nats-js -p 4222 &   (Debian: apt-get install -y nats-server; -js enables JetStream)',
  settings: { client: '@nats-io/transport-node + @nats-io/jetstream', produce: 'js.publish (async, awaits PubAck) with a window per connection, subjects round-robin over one file-storage stream', consume: 'durable pull consumer, consume({max_messages: 1000}), ack policy none', durability: 'file storage, server default sync interval' },
  async open() {
    return new NatsSession();
  },
};
