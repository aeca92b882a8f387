/**
 * Idempotent produce against a real broker process:
 * - a TCP proxy between producer and broker cuts the connection right after the broker wrote a
 *   produce reply and before the producer read it (the reply bytes are dropped, both sockets
 *   destroyed), several times; the producer retries, and every record is stored exactly once at
 *   the offset the producer was told;
 * - raw requests: an out-of-order sequence gets OUT_OF_ORDER_SEQUENCE, a stale epoch gets
 *   INVALID_PRODUCER_EPOCH, a duplicate gets its original offset.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer } from '../../src/client/index.js';
import { errorCodeOf } from '../../src/lib/errors.js';
import { responseHeaderBytes } from '../../src/lib/limits.js';
import { ApiKey } from '../../src/wire/apis.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { decodeProduceResponse, encodeProduceRequest, type ProducePartitionResponse } from '../../src/wire/produce.js';
import { encodeBatch } from '../../src/wire/record-batch.js';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.js';
import { RawClient } from '../helpers/raw-client.js';

/** Splits a byte stream into length-prefixed frames (prefix included). */
class FrameSplitter {
  private pending = Buffer.alloc(0);
  push(chunk: Buffer, onFrame: (frame: Buffer) => void): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 4) {
      const length = this.pending.readUInt32BE(0);
      if (this.pending.length < 4 + length) return;
      onFrame(this.pending.subarray(0, 4 + length));
      this.pending = this.pending.subarray(4 + length);
    }
  }
}

/**
 * Forwards client <-> broker. Tracks the api key of each request by correlation id; rewrites
 * Metadata replies so clients keep talking to the proxy; drops the reply of every `dropEvery`-th
 * produce request (up to `dropsMax` times) by destroying both sockets instead of forwarding it.
 */
class CuttingProxy {
  readonly server: net.Server;
  produceReplies = 0;
  drops = 0;
  port = 0;

  constructor(private readonly brokerPort: number, private readonly dropEvery: number, private readonly dropsMax: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect({ host: '127.0.0.1', port: this.brokerPort });
    const apiKeys = new Map<number, number>();
    const cut = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', cut);
    upstream.on('error', cut);
    client.on('close', cut);
    upstream.on('close', cut);
    const requests = new FrameSplitter();
    client.on('data', (chunk: Buffer) => requests.push(chunk, (frame) => {
      apiKeys.set(frame.readUInt32BE(8), frame.readUInt16BE(4));
      upstream.write(frame);
    }));
    const replies = new FrameSplitter();
    upstream.on('data', (chunk: Buffer) => replies.push(chunk, (frame) => {
      if (client.destroyed) return;
      const correlationId = frame.readUInt32BE(4);
      const apiKey = apiKeys.get(correlationId);
      apiKeys.delete(correlationId);
      if (apiKey === ApiKey.Produce) {
        this.produceReplies++;
        if (this.drops < this.dropsMax && this.produceReplies % this.dropEvery === 0) {
          this.drops++;
          cut();
          return;
        }
      }
      client.write(apiKey === ApiKey.Metadata ? this.rewriteMetadata(frame) : frame);
    }));
  }

  private rewriteMetadata(frame: Buffer): Buffer {
    const bodyStart = 4 + responseHeaderBytes;
    if (frame.readInt16BE(8) !== 0) return frame;
    const body = decodeMsgpack(frame.subarray(bodyStart), 'MALFORMED_RESPONSE') as { brokers: { port: number }[] };
    for (const broker of body.brokers) broker.port = this.port;
    const encoded = encodeMsgpack(body);
    const out = Buffer.alloc(bodyStart + encoded.length);
    frame.copy(out, 0, 0, bodyStart);
    out.writeUInt32BE(responseHeaderBytes + encoded.length, 0);
    encoded.copy(out, bodyStart);
    return out;
  }

  close(): void {
    this.server.close();
  }
}

async function readAll(bootstrap: string, topic: string): Promise<{ partition: number; offset: bigint; value: string }[]> {
  const reader = new PartitionReader({ bootstrap, topic, from: 'earliest', stopAtEnd: true });
  const messages: { partition: number; offset: bigint; value: string }[] = [];
  for await (const m of reader) messages.push({ partition: m.partition, offset: m.offset, value: m.value!.toString() });
  return messages;
}

describe('idempotent producer end to end', () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await startBroker();
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('replies lost after the broker stored the batch cause retries but no duplicates', async () => {
    const topic = 'idem-cut';
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic, partitions: 3 }]);
    admin.close();
    const proxy = new CuttingProxy(broker.port, 4, 6);
    await proxy.listen();
    const producer = new Producer({ bootstrap: `127.0.0.1:${proxy.port}`, acks: 'all', retryBackoffMs: 5, retryBackoffMaxMs: 50, batchBytes: 2048 });
    expect(producer.idempotent).toBe(true);
    const told = new Map<string, { partition: number; offset: bigint }>();
    const records = 3000;
    const pending: Promise<void>[] = [];
    for (let i = 0; i < records; i++) {
      const value = `id-${i}`;
      pending.push(producer.send({ topic, key: `key-${i % 17}`, value }).then((meta) => void told.set(value, { partition: meta.partition, offset: meta.offset })));
      // Spread the sends over several event-loop turns so there are many produce requests to cut.
      if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(pending);
    await producer.close();
    proxy.close();
    expect(proxy.drops).toBeGreaterThanOrEqual(3);

    const stored = await readAll(broker.bootstrap, topic);
    const seen = new Map<string, number>();
    for (const m of stored) seen.set(m.value, (seen.get(m.value) ?? 0) + 1);
    expect([...seen.values()].filter((n) => n > 1)).toEqual([]);
    expect(stored.length).toBe(records);
    for (const m of stored) expect(told.get(m.value)).toEqual({ partition: m.partition, offset: m.offset });
  });

  describe('raw requests', () => {
    const topic = 'idem-raw';
    let client: RawClient;
    let correlationId = 100;

    beforeAll(async () => {
      const admin = new Admin({ bootstrap: broker.bootstrap });
      await admin.createTopics([{ topic, partitions: 1 }]);
      admin.close();
      client = await RawClient.connect(broker.port);
    });

    afterAll(() => client?.close());

    async function initProducerId(): Promise<number> {
      const id = correlationId++;
      client.msgpackRequest(ApiKey.InitProducerId, id, {});
      const reply = await client.reply(id);
      expect(reply.errorCode).toBe(0);
      const body = decodeMsgpack(reply.body, 'MALFORMED_RESPONSE') as { producerId: number; producerEpoch: number };
      expect(body.producerEpoch).toBe(0);
      return Number(body.producerId);
    }

    async function produce(producerId: number, producerEpoch: number, baseSequence: number, count: number): Promise<ProducePartitionResponse> {
      const records = Array.from({ length: count }, (_, i) => ({ value: `seq-${baseSequence + i}` }));
      const batch = Buffer.from(encodeBatch(records, Date.now(), { producerId, producerEpoch, baseSequence }));
      const id = correlationId++;
      const body = Buffer.concat(encodeProduceRequest(-1, 10_000, [{ name: topic, partitions: [{ partition: 0, batches: [batch] }] }]));
      client.request(ApiKey.Produce, 0, id, body);
      const reply = await client.reply(id);
      expect(reply.errorCode).toBe(0);
      const frame = Buffer.concat([Buffer.alloc(responseHeaderBytes), reply.body]);
      return decodeProduceResponse(frame, responseHeaderBytes).topics[0]!.partitions[0]!;
    }

    it('hands out distinct producer ids', async () => {
      const a = await initProducerId();
      const b = await initProducerId();
      expect(b).not.toBe(a);
    });

    it('answers a duplicate with its original offset, an out-of-order sequence with OUT_OF_ORDER_SEQUENCE, a stale epoch with INVALID_PRODUCER_EPOCH', async () => {
      const pid = await initProducerId();
      const first = await produce(pid, 0, 0, 3);
      expect(first.errorCode).toBe(0);
      const second = await produce(pid, 0, 3, 2);
      expect(second.baseOffset).toBe(first.baseOffset + 3);
      const duplicate = await produce(pid, 0, 0, 3);
      expect(duplicate.errorCode).toBe(0);
      expect(duplicate.baseOffset).toBe(first.baseOffset);

      const gap = await produce(pid, 0, 9, 1);
      expect(gap.errorCode).toBe(errorCodeOf('OUT_OF_ORDER_SEQUENCE'));
      expect(gap.errorMessage).toMatch(/expected 5/);
      const newProducerNotAtZero = await produce(await initProducerId(), 0, 4, 1);
      expect(newProducerNotAtZero.errorCode).toBe(errorCodeOf('OUT_OF_ORDER_SEQUENCE'));

      const bumped = await produce(pid, 1, 0, 1);
      expect(bumped.errorCode).toBe(0);
      expect(bumped.baseOffset).toBe(first.baseOffset + 5);
      const stale = await produce(pid, 0, 5, 1);
      expect(stale.errorCode).toBe(errorCodeOf('INVALID_PRODUCER_EPOCH'));

      const neverIssued = await produce(2 ** 50, 0, 0, 1);
      expect(neverIssued.errorCode).toBe(errorCodeOf('UNKNOWN_PRODUCER_ID'));

      const stored = await readAll(broker.bootstrap, topic);
      expect(stored.map((m) => m.value)).toEqual(['seq-0', 'seq-1', 'seq-2', 'seq-3', 'seq-4', 'seq-0']);
    });
  });
});
