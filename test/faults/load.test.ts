/**
 * Load: 300 concurrent producer connections (acks 1 and all mixed) and a deliberately slow
 * consumer against a broker process.
 *
 * The slow consumer is a raw socket that pipelines bursts of fetch requests asking for 64 MiB
 * each from offset 0 of every partition, then stops reading its socket for ~8 s. The broker
 * must not buffer replies for it without bound: it stops taking (reading and dispatching)
 * that connection's requests once more than connectionWriteBufferBytesMax (8 MiB) of replies
 * wait for the reader, so at most one reply beyond that is built (a reply is capped at
 * fetchResponseBytesMax, 64 MiB).
 *
 * Asserted: every send is acknowledged and every acknowledged record is stored exactly once in
 * per-producer order; the broker's VmRSS stays below rssBoundBytes = 400 MiB during the whole
 * run (the producers alone push it to ~150-250 MiB: 300 connections, 30 MiB of records, group
 * commit); while the consumer stalls, the broker's RSS grows by less than stallGrowthBoundBytes
 * = 100 MiB (it grew by ~430 MiB before connection.ts stopped dispatching for a stalled reader,
 * by ~10 MiB since); and once the consumer reads again it gets a whole, valid reply to every fetch it
 * sent.
 */
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, Producer } from '../../src/client/index.js';
import { ApiKey } from '../../src/wire/apis.js';
import { encodeFetchRequest, decodeFetchResponse } from '../../src/wire/fetch.js';
import { encodeRequestFrame } from '../../src/wire/frame.js';
import { checkBatchFrame, readBatchSize } from '../../src/wire/record-batch.js';
import { responseHeaderBytes } from '../../src/lib/limits.js';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.js';
import { connect, mib, readVerified, rssBytes, sleep } from './helpers.js';

const rssBoundBytes = 400 * mib;
const stallGrowthBoundBytes = 100 * mib;
const producersCount = 300;
const recordsPerProducer = 200;
const partitions = 8;
const valuePad = 'v'.repeat(480);

/** A consumer that pipelines fetches and reads its socket only when told to. */
class SlowConsumer {
  private readonly socket: net.Socket;
  replies = 0;
  recordBytes = 0;
  problems: string[] = [];
  sent = 0;

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.on('error', (error) => this.problems.push(error.message));
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.pause();
  }

  /** Sends `count` fetches in one write: all of them reach the broker in one chunk. */
  sendBurst(count: number): void {
    const frames: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const body = encodeFetchRequest({
        maxWaitMs: 100, minBytes: 1, maxBytes: 64 * mib,
        topics: [{ name: 'load', partitions: Array.from({ length: partitions }, (_, partition) => ({ partition, fetchOffset: 0, partitionMaxBytes: 64 * mib })) }],
      });
      frames.push(encodeRequestFrame(ApiKey.Fetch, 0, ++this.sent, body));
    }
    this.socket.write(Buffer.concat(frames));
  }

  resume(): void {
    this.socket.resume();
  }

  private chunks: Buffer[] = [];
  private chunksBytes = 0;

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.chunksBytes += chunk.length;
    for (;;) {
      if (this.chunksBytes < 4) return;
      if (this.chunks[0]!.length < 4) this.chunks = [Buffer.concat(this.chunks)];
      const frameBytes = 4 + this.chunks[0]!.readUInt32BE(0);
      if (this.chunksBytes < frameBytes) return;
      const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      this.check(joined.subarray(4, frameBytes));
      const rest = joined.subarray(frameBytes);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.chunksBytes = rest.length;
    }
  }

  private check(frame: Buffer): void {
    this.replies++;
    if (frame.readInt16BE(4) !== 0) return void this.problems.push(`fetch error ${frame.readInt16BE(4)}`);
    for (const topic of decodeFetchResponse(frame, responseHeaderBytes, Number.MAX_SAFE_INTEGER).topics) {
      for (const p of topic.partitions) {
        if (p.errorCode !== 0) this.problems.push(`partition ${p.partition}: error ${p.errorCode}`);
        for (let pos = 0; pos < p.records.length; pos += readBatchSize(p.records, pos)) checkBatchFrame(p.records, pos, p.records.length);
        this.recordBytes += p.records.length;
      }
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

describe('load: hundreds of producers and a slow consumer', () => {
  let broker: BrokerProcess;
  let maxRssBytes = 0;
  let sampler: NodeJS.Timeout;
  const alive = (): boolean => broker.child.exitCode === null && broker.child.signalCode === null;
  const sample = (): number => {
    const rss = rssBytes(broker.child.pid!);
    maxRssBytes = Math.max(maxRssBytes, rss);
    return rss;
  };

  beforeAll(async () => {
    broker = await startBroker();
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic: 'load', partitions }]);
    admin.close();
    sampler = setInterval(() => alive() && sample(), 100);
  });

  afterAll(async () => {
    clearInterval(sampler);
    await broker?.kill();
    if (broker !== undefined) fs.rmSync(broker.dataDir, { recursive: true, force: true });
  });

  it('acknowledges everything, keeps memory bounded under a stalled consumer, and serves it afterwards', async () => {
    const startRss = sample();
    const slow = new SlowConsumer(broker.port);

    // 300 producers, each on its own connection, half acks 1, half acks all.
    const producers = Array.from({ length: producersCount }, (_, i) => new Producer({ bootstrap: broker.bootstrap, acks: i % 2 === 0 ? 1 : 'all', lingerMs: 2 }));
    const sends = producers.map(async (producer, i) => {
      const partition = i % partitions;
      const acks: Promise<unknown>[] = [];
      for (let j = 0; j < recordsPerProducer; j++) {
        acks.push(producer.send({ topic: 'load', partition, key: `p${i}`, value: `p${i}-${j}-${valuePad}` }));
        if (j % 50 === 49) await sleep(1);
      }
      return (await Promise.allSettled(acks)).filter((r) => r.status === 'fulfilled').length;
    });

    // While the producers run, the consumer pipelines bursts of fetches and reads nothing.
    const stallStartRss = sample();
    slow.sendBurst(16);
    const ackedPerProducer = await Promise.all(sends);
    await Promise.all(producers.map((producer) => producer.close()));
    const afterProducersRss = sample();

    // The stall continues with all data in place: each of these 32 fetches would return ~30 MiB
    // (~1 GiB together) if the broker built replies for a reader that does not read.
    slow.sendBurst(16);
    await sleep(500);
    slow.sendBurst(16);
    for (let i = 0; i < 20; i++) {
      await sleep(250);
      sample();
    }
    const stalledRss = sample();
    expect(alive()).toBe(true);

    // Everything acknowledged, stored exactly once, in per-producer order.
    expect(ackedPerProducer.every((count) => count === recordsPerProducer)).toBe(true);
    const reader = connect(broker.port);
    for (let partition = 0; partition < partitions; partition++) {
      const { values } = await readVerified(reader, 'load', partition);
      const byProducer = new Map<string, number[]>();
      for (const value of values) {
        const [producer, index] = value.split('-') as [string, string];
        byProducer.set(producer, [...(byProducer.get(producer) ?? []), Number(index)]);
      }
      const seen = new Map<string, number>();
      for (const value of values) seen.set(value, (seen.get(value) ?? 0) + 1);
      const dups = [...seen].filter(([, n]) => n > 1);
      const producersHere = Array.from({ length: producersCount }, (_, i) => i).filter((i) => i % partitions === partition).length;
      expect(dups).toEqual([]);
      expect(values.length).toBe(producersHere * recordsPerProducer);
      for (const indexes of byProducer.values()) expect(indexes).toEqual(Array.from({ length: recordsPerProducer }, (_, j) => j));
    }
    reader.close();

    // The consumer reads again and gets a whole, valid reply to every fetch it sent.
    slow.resume();
    const deadlineMs = Date.now() + 20_000;
    while (slow.replies < slow.sent && Date.now() < deadlineMs && slow.problems.length === 0) await sleep(50);
    slow.close();
    expect(slow.problems).toEqual([]);
    expect(slow.replies).toBe(slow.sent);
    expect(slow.recordBytes).toBeGreaterThan(0);

    console.log(`load: RSS start ${(startRss / mib).toFixed(0)} MiB, at stall start ${(stallStartRss / mib).toFixed(0)} MiB, after producers ${(afterProducersRss / mib).toFixed(0)} MiB, stalled ${(stalledRss / mib).toFixed(0)} MiB, max ${(maxRssBytes / mib).toFixed(0)} MiB (bound ${rssBoundBytes / mib} MiB); slow consumer sent ${slow.sent} fetches, read ${(slow.recordBytes / mib).toFixed(0)} MiB`);
    expect(maxRssBytes).toBeLessThan(rssBoundBytes);
    expect(stalledRss - afterProducersRss).toBeLessThan(stallGrowthBoundBytes);
  });
});
