/**
 * Hostile input against a live broker process, driven by fast-check: random bytes, valid frames
 * of every API with mutated bodies and versions, truncated frames, huge declared lengths,
 * slowloris partial frames, and hundreds of connections opened and abandoned. Meanwhile a
 * well-behaved producer (acks all) and a reader on their own connections keep working.
 *
 * Asserted throughout (about 30 s):
 * - the broker process never exits;
 * - its resident memory (VmRSS) stays below rssBoundBytes = 300 MiB. The hostile load itself
 *   holds about 40 MiB in partial frames on purpose (slowloris); an idle broker is ~60-80 MiB.
 *   What bounds it: a declared length is checked before anything is buffered (a frame over
 *   16 MiB closes the connection at once), each connection buffers at most one partial frame,
 *   and at most 64 requests are in progress per connection;
 * - no request ends in an internal error (bad input always gets a typed error or a close);
 * - every acknowledged record of the well-behaved producer is read back, once, in order.
 */
import fs from 'node:fs';
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer } from '../../src/client/index.js';
import { requestFrameBytesMax } from '../../src/lib/limits.js';
import { ApiKey } from '../../src/wire/apis.js';
import { encodeFetchRequest } from '../../src/wire/fetch.js';
import { encodeRequestFrame } from '../../src/wire/frame.js';
import { encodeMsgpack } from '../../src/wire/msgpack.js';
import { encodeProduceRequest } from '../../src/wire/produce.js';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.js';
import { batchOf, mib, rssBytes, sleep } from './helpers.js';

const rssBoundBytes = 300 * mib;

/** A valid body for every API key the broker speaks, to mutate. */
function baseBodies(): Map<number, Buffer> {
  const msgpack = (value: unknown): Buffer => encodeMsgpack(value);
  return new Map<number, Buffer>([
    [ApiKey.Produce, Buffer.concat(encodeProduceRequest(1, 5000, [{ name: 'hostile', partitions: [{ partition: 0, batches: [batchOf(['h1', 'h2'])] }] }]))],
    [ApiKey.Fetch, encodeFetchRequest({ maxWaitMs: 10, minBytes: 0, maxBytes: mib, topics: [{ name: 'hostile', partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: mib }] }] })],
    [ApiKey.ListOffsets, msgpack({ topics: [{ name: 'hostile', partitions: [{ partition: 0, timestamp: -1 }] }] })],
    [ApiKey.Metadata, msgpack({ topics: ['hostile'] })],
    [ApiKey.OffsetCommit, msgpack({ groupId: 'g', memberId: 'm', memberEpoch: 1, topics: [{ name: 'hostile', partitions: [{ partition: 0, offset: 1 }] }] })],
    [ApiKey.OffsetFetch, msgpack({ groupId: 'g', topics: [{ name: 'hostile', partitions: [0] }] })],
    [ApiKey.FindCoordinator, msgpack({ key: 'g' })],
    [ApiKey.DescribeGroups, msgpack({ groupIds: ['g'] })],
    [ApiKey.ListGroups, msgpack({})],
    [ApiKey.ApiVersions, msgpack({})],
    [ApiKey.CreateTopics, msgpack({ topics: [{ name: 'fuzz-created', partitions: 2, config: { segmentBytes: 4096 } }] })],
    [ApiKey.DeleteTopics, msgpack({ topics: ['fuzz-created'] })],
    [ApiKey.InitProducerId, msgpack({})],
    [ApiKey.ConsumerGroupHeartbeat, msgpack({ groupId: 'g', memberId: 'm', memberEpoch: 0, sessionTimeoutMs: 1000, rebalanceTimeoutMs: 1000, subscribedTopics: ['hostile'] })],
    [ApiKey.ResetGroupOffsets, msgpack({ groupId: 'g', topic: 'hostile', to: 'offset', offset: 0 })],
  ]);
}

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; byte: number }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'u32'; at: number; value: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.constantFrom(0x00, 0xff, 0x7f, 0x80, 0xc1, 0xdd, 0xdf, 0xcf) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xffffffff, requestFrameBytesMax) }),
);

function mutate(body: Buffer, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(body);
  for (const m of mutations) {
    const at = bytes.length === 0 ? 0 : m.at % bytes.length;
    if (m.kind === 'flip' && bytes.length > 0) bytes[at]! ^= 1 << m.bit;
    else if (m.kind === 'set' && bytes.length > 0) bytes[at] = m.byte;
    else if (m.kind === 'cut') bytes = bytes.subarray(0, at);
    else if (m.kind === 'insert') bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
    else if (m.kind === 'u32' && at + 4 <= bytes.length) bytes.writeUInt32BE(m.value, at);
  }
  return bytes;
}

interface Outcome {
  replies: number;
  closedByBroker: boolean;
}

/**
 * Sends `bytes` on a fresh connection and waits (at most `waitMs`) for `expectReplies` reply
 * frames or the broker closing; then abandons the connection (reset or FIN).
 */
function sendAndAbandon(port: number, bytes: Buffer, expectReplies: number, waitMs: number, reset: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let received = 0;
    let replies = 0;
    let pending = Buffer.alloc(0);
    let done = false;
    const finish = (closedByBroker: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (reset) socket.resetAndDestroy();
      else socket.destroy();
      resolve({ replies, closedByBroker });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
        pending = pending.subarray(4 + pending.readUInt32BE(0));
        replies++;
      }
      if (replies >= expectReplies) finish(false);
    });
    socket.on('connect', () => {
      if (bytes.length > 0) socket.write(bytes);
      if (expectReplies === 0 && bytes.length === 0) finish(false);
    });
    void received;
  });
}

describe('hostile input against a live broker', () => {
  let broker: BrokerProcess;
  let maxRssBytes = 0;
  let rssSampler: NodeJS.Timeout;
  const alive = (): boolean => broker.child.exitCode === null && broker.child.signalCode === null;

  beforeAll(async () => {
    broker = await startBroker();
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic: 'hostile', partitions: 2 }, { topic: 'steady', partitions: 1 }]);
    admin.close();
    rssSampler = setInterval(() => {
      if (alive()) maxRssBytes = Math.max(maxRssBytes, rssBytes(broker.child.pid!));
    }, 100);
  });

  afterAll(async () => {
    clearInterval(rssSampler);
    await broker?.kill();
    if (broker !== undefined) fs.rmSync(broker.dataDir, { recursive: true, force: true });
  });

  it('never crashes, stays under its memory bound, and keeps serving a well-behaved client', async () => {
    const port = broker.port;
    const startRssBytes = rssBytes(broker.child.pid!);

    // The well-behaved client: a producer (acks all) and a live reader, on their own connections.
    const producer = new Producer({ bootstrap: broker.bootstrap, acks: 'all' });
    const acked: string[] = [];
    let stopProducing = false;
    const producing = (async () => {
      for (let i = 0; !stopProducing; i++) {
        const values = Array.from({ length: 10 }, (_, j) => `steady-${i}-${j}`);
        await Promise.all(values.map((value) => producer.send({ topic: 'steady', partition: 0, value })));
        acked.push(...values);
        await sleep(5);
      }
    })();
    const reader = new PartitionReader({ bootstrap: broker.bootstrap, topic: 'steady', partitions: [0], from: 'earliest', maxWaitMs: 200 });
    const consumed: string[] = [];
    let readerClosed = false;
    const consuming = (async () => {
      try {
        for await (const message of reader) consumed.push(message.value!.toString());
      } catch (error) {
        // Closing the reader while its fetch is in flight ends the iteration with CONNECTION_ERROR.
        if (!readerClosed) throw error;
      }
    })();

    // Slowloris: 100 connections trickle one byte of a 1 MiB frame every 200 ms; 20 more send
    // 2 MiB of a declared 16 MiB frame and stall. The broker keeps all of them (no idle timeout).
    const slow: net.Socket[] = [];
    const trickle = Buffer.alloc(mib + 4, 0x61);
    trickle.writeUInt32BE(mib, 0);
    let trickled = 0;
    for (let i = 0; i < 100; i++) slow.push(net.connect({ host: '127.0.0.1', port }).on('error', () => undefined));
    const trickler = setInterval(() => {
      for (const socket of slow.slice(0, 100)) socket.write(trickle.subarray(trickled, trickled + 1));
      trickled++;
    }, 200);
    const stalled = Buffer.alloc(2 * mib, 0x62);
    stalled.writeUInt32BE(requestFrameBytesMax, 0);
    for (let i = 0; i < 20; i++) slow.push(net.connect({ host: '127.0.0.1', port }, function (this: net.Socket) { this.write(stalled); }).on('error', () => undefined));

    const bodies = baseBodies();
    const apiKeys = [...bodies.keys()];
    let typedErrors = 0;
    let closes = 0;
    const runs = { numRuns: 1_000_000, interruptAfterTimeLimit: 8_000, markInterruptAsFailure: false } as const;

    // 1. Random bytes.
    await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 2048 }), { minLength: 8, maxLength: 8 }), async (chunks) => {
      const outcomes = await Promise.all(chunks.map((bytes, i) => sendAndAbandon(port, Buffer.from(bytes), 1, 100, i % 2 === 0)));
      closes += outcomes.filter((o) => o.closedByBroker).length;
      return alive();
    }), runs);

    // 2. Valid frames of every API with mutated bodies (and sometimes versions), pipelined.
    const frameArb = fc.record({
      apiKey: fc.constantFrom(...apiKeys),
      apiVersion: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
      correlationId: fc.integer({ min: 0, max: 0x7fffffff }),
      mutations: fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
    });
    await fc.assert(fc.asyncProperty(fc.array(fc.array(frameArb, { minLength: 1, maxLength: 4 }), { minLength: 8, maxLength: 8 }), async (connections) => {
      const outcomes = await Promise.all(connections.map((frames, i) => {
        const bytes = Buffer.concat(frames.map((f) => encodeRequestFrame(f.apiKey, f.apiVersion, f.correlationId, mutate(bodies.get(f.apiKey)!, f.mutations))));
        return sendAndAbandon(port, bytes, frames.length, 300, i % 3 === 0);
      }));
      typedErrors += outcomes.reduce((sum, o) => sum + o.replies, 0);
      closes += outcomes.filter((o) => o.closedByBroker).length;
      return alive();
    }), runs);

    // 3. Truncated frames and huge declared lengths, abandoned.
    await fc.assert(fc.asyncProperty(
      fc.constantFrom(...apiKeys), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), fc.boolean(),
      async (apiKey, cutAt, declaredLength, reset) => {
        const frame = encodeRequestFrame(apiKey, 0, 1, bodies.get(apiKey)!);
        const truncated = frame.subarray(0, cutAt % frame.length);
        const huge = Buffer.alloc(12);
        huge.writeUInt32BE(declaredLength, 0);
        // An over-limit length must make the broker close: wait for that event (generously, on a busy
        // machine); any other header is abandoned after a short while.
        const tooLarge = declaredLength > requestFrameBytesMax;
        const outcomes = await Promise.all([sendAndAbandon(port, truncated, 1, 50, reset), sendAndAbandon(port, huge, 1, tooLarge ? 10_000 : 50, !reset)]);
        if (tooLarge) expect(outcomes[1]!.closedByBroker).toBe(true);
        return alive();
      },
    ), runs);

    // 4. Many connections opened and abandoned at once, some mid-header.
    for (let round = 0; round < 5; round++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => sendAndAbandon(port, Buffer.from([0, 0, 1, 0, 0].slice(0, i % 6)), 0, 20, i % 2 === 0)));
    }
    expect(alive()).toBe(true);
    clearInterval(trickler);
    for (const socket of slow) socket.destroy();

    // The well-behaved client was served throughout: everything acknowledged arrives, in order.
    stopProducing = true;
    await producing;
    await producer.close();
    const deadlineMs = Date.now() + 10_000;
    while (consumed.length < acked.length && Date.now() < deadlineMs) await sleep(50);
    readerClosed = true;
    reader.close();
    await consuming;
    expect(acked.length).toBeGreaterThan(100);
    expect(consumed.slice(0, acked.length)).toEqual(acked);

    expect(alive()).toBe(true);
    expect(typedErrors).toBeGreaterThan(100);
    expect(closes).toBeGreaterThan(10);
    console.log(`hostile: RSS start ${(startRssBytes / mib).toFixed(0)} MiB, max ${(maxRssBytes / mib).toFixed(0)} MiB (bound ${rssBoundBytes / mib} MiB); ${typedErrors} replies, ${closes} closes by the broker; ${acked.length} records acked and read back`);
    expect(maxRssBytes).toBeLessThan(rssBoundBytes);
    // Bad input is answered with typed errors; an internal error would be a bug in Rill.
    const internalErrors = broker.output().split('\n').filter((line) => /internal error|UNKNOWN_SERVER_ERROR|AssertionError/.test(line));
    expect(internalErrors.slice(0, 5)).toEqual([]);
  });
});
