/**
 * Redis Streams through ioredis. Produce: XADD with ioredis's auto-pipelining (its documented way
 * to batch commands issued in one event-loop turn), one stream per partition, one connection per
 * producer, records round-robin over the streams. Consume: one consumer in a consumer group,
 * XREADGROUP over all streams (COUNT 1000 per stream) and XACK of each batch. Durability: the
 * server's default (in memory; AOF/RDB as configured; the bench's server runs without either).
 */
import { Redis } from 'ioredis';
import { LatencyHistogram } from '../lib/histogram.js';
import { PayloadPool, stampOf } from '../lib/payload.js';
import { SendWindow, timedProduce } from '../lib/send-window.js';
import { measureLatency, type Peer, type PeerSession } from './peer.js';

const host = process.env.BENCH_REDIS_HOST ?? '127.0.0.1';
const port = Number(process.env.BENCH_REDIS_PORT ?? 6379);

type Entries = [Buffer, Buffer[]][];
type StreamReply = [Buffer, Entries][] | (Buffer | Entries)[] | null;

/** XREADGROUP's reply as [stream, entries] pairs: RESP2 nests the pairs, RESP3 (a map) arrives flat. */
function streamsOf(reply: StreamReply): [Buffer, Entries][] {
  if (reply === null || reply.length === 0) return [];
  if (Buffer.isBuffer(reply[0])) {
    const pairs: [Buffer, Entries][] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) pairs.push([reply[i] as Buffer, reply[i + 1] as Entries]);
    return pairs;
  }
  return reply as [Buffer, Entries][];
}

function connect(autoPipeline: boolean): Redis {
  return new Redis({ host, port, enableAutoPipelining: autoPipeline, maxRetriesPerRequest: 1, lazyConnect: false });
}

class RedisSession implements PeerSession {
  private readonly prefix = `rill-bench:${process.pid}:${Date.now()}`;
  private keys: string[] = [];
  private readonly connections: Redis[] = [];

  private connection(autoPipeline: boolean): Redis {
    const redis = connect(autoPipeline);
    this.connections.push(redis);
    return redis;
  }

  async produce(options: Parameters<PeerSession['produce']>[0]): Ret<'produce'> {
    this.keys = Array.from({ length: options.partitions }, (_, p) => `${this.prefix}:p${p}`);
    const payloads = new PayloadPool(options.messageSize);
    const connections = Array.from({ length: options.producers }, () => this.connection(true));
    await Promise.all(connections.map((c) => c.ping()));
    const windows = connections.map(() => new SendWindow(options.windowRecords));
    let next = 0;
    return timedProduce(windows, options.durationMs, options.onProgress, (i, window) => {
      connections[i]!.xadd(this.keys[next++ % this.keys.length]!, '*', 'v', payloads.take()).then(() => window.done(), (e: unknown) => window.fail(e));
    });
  }

  async consume(options: Parameters<PeerSession['consume']>[0]): Ret<'consume'> {
    const redis = this.connection(false);
    for (const key of this.keys) await redis.xgroup('CREATE', key, 'bench', '0', 'MKSTREAM');
    const startMs = performance.now();
    let read = 0;
    const progress = setInterval(() => options.onProgress(read), 1000);
    const acks: Promise<unknown>[] = [];
    while (read < options.expectedRecords) {
      const reply = (await redis.callBuffer('XREADGROUP', 'GROUP', 'bench', 'c1', 'COUNT', 1000, 'STREAMS', ...this.keys, ...this.keys.map(() => '>'))) as StreamReply;
      if (reply === null) break;
      for (const [key, entries] of streamsOf(reply)) {
        read += entries.length;
        if (entries.length > 0) acks.push(redis.xack(key, 'bench', ...entries.map(([id]) => id)));
      }
      if (acks.length > 64) await Promise.all(acks.splice(0));
    }
    await Promise.all(acks);
    clearInterval(progress);
    const seconds = (performance.now() - startMs) / 1000;
    return { records: read, seconds, recordsPerSecond: read / seconds };
  }

  async latency(options: Parameters<PeerSession['latency']>[0]): Ret<'latency'> {
    const keys = Array.from({ length: options.partitions }, (_, p) => `${this.prefix}:lat:p${p}`);
    const producer = this.connection(true);
    const consumer = this.connection(false);
    for (const key of keys) await consumer.xgroup('CREATE', key, 'lat', '$', 'MKSTREAM');
    const payloads = new PayloadPool(options.messageSize);
    const ref = { histogram: new LatencyHistogram(), recordFromMs: Infinity };
    let received = 0;
    let running = true;
    const reading = (async () => {
      while (running) {
        const reply = (await consumer.callBuffer('XREADGROUP', 'GROUP', 'lat', 'c1', 'COUNT', 1000, 'BLOCK', 100, 'STREAMS', ...keys, ...keys.map(() => '>'))) as StreamReply;
        if (reply === null) continue;
        const nowMs = performance.now();
        for (const [key, entries] of streamsOf(reply)) {
          for (const [, fields] of entries) {
            received++;
            if (nowMs >= ref.recordFromMs) ref.histogram.recordMs(nowMs - stampOf(fields[1] ?? null));
          }
          void consumer.xack(key, 'lat', ...entries.map(([id]) => id));
        }
      }
    })();
    let next = 0;
    const result = await measureLatency(options, (stampMs) => {
      void producer.xadd(keys[next++ % keys.length]!, '*', 'v', payloads.stamped(stampMs)).catch(() => undefined);
    }, () => received, ref, `redis e2e @ ${options.rate}/s`);
    running = false;
    await reading;
    return result;
  }

  async close(): Promise<void> {
    const admin = connect(false);
    try {
      const keys = await admin.keys(`${this.prefix}:*`);
      if (keys.length > 0) await admin.del(...keys);
    } finally {
      admin.disconnect();
      for (const c of this.connections) c.disconnect();
    }
  }
}

type Ret<K extends keyof PeerSession> = ReturnType<PeerSession[K]>;

export const redisPeer: Peer = {
  name: 'redis',
  host,
  port,
  startHint: 'redis-server --port 6379 --save "" --appendonly no --daemonize yes   (Debian: apt-get install -y redis-server)',
  settings: { client: 'ioredis', produce: 'XADD, enableAutoPipelining, one stream per partition', consume: 'XREADGROUP COUNT 1000 over all streams + XACK per batch', durability: 'server default (in memory; the bench server has no AOF)' },
  async open() {
    return new RedisSession();
  },
};
