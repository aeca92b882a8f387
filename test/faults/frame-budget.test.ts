/**
 * Memory bounds that span requests and connections.
 *
 * Partial frames: many connections each sending most of a large frame (and then
 * stalling) could make the broker buffer requestFrameBytesMax per connection. The broker-wide
 * budget (partialFramesBytesMax, 256 MiB) stops reading connections that hold a partial frame
 * once the total is spent, so RSS stays bounded, and a well-behaved client whose frames arrive
 * whole keeps working throughout.
 *
 * Woken long-polls: a client pipelines many fetches at the end of an empty partition, asking up
 * to fetchResponseBytesMax each, and stops reading its socket; then 160 MiB arrive. Each fetch's
 * reply is capped by what its connection still has queued, so the broker holds about one maximal
 * reply for that client, not one per fetch.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer } from '../../src/client/index.js';
import { fetchResponseBytesMax, partialFramesBytesMax, requestFrameBytesMax } from '../../src/lib/limits.js';
import { ApiKey } from '../../src/wire/apis.js';
import { encodeFetchRequest } from '../../src/wire/fetch.js';
import { encodeRequestFrame } from '../../src/wire/frame.js';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.js';
import { mib, rssBytes, sleep } from './helpers.js';

/** 48 connections x 12 MiB = 576 MiB offered, more than twice the budget. */
const connectionsCount = 48;
const partialBytesEach = 12 * mib;
/** Budget plus the broker's own footprint, with room for one socket chunk per connection. */
const rssBoundBytes = partialFramesBytesMax + 200 * mib;

function sendPartialFrame(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      const head = Buffer.alloc(12);
      head.writeUInt32BE(requestFrameBytesMax, 0); // declares a whole 16 MiB frame...
      head.writeUInt16BE(0, 4);
      head.writeUInt16BE(0, 6);
      head.writeUInt32BE(1, 8);
      socket.write(head);
      socket.write(Buffer.alloc(partialBytesEach, 7)); // ...and sends most of it, then stalls
      resolve(socket);
    });
    socket.on('error', () => undefined);
    socket.once('error', reject);
  });
}

describe('broker-wide budget for partly received frames', () => {
  let broker: BrokerProcess;
  const sockets: net.Socket[] = [];

  beforeAll(async () => {
    broker = await startBroker();
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic: 'steady', partitions: 1 }]);
    admin.close();
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await broker?.kill();
  });

  it('keeps RSS bounded while connections stall inside large frames, and keeps serving', async () => {
    const producer = new Producer({ bootstrap: broker.bootstrap, acks: 'all' });
    let peakRss = rssBytes(broker.child.pid!);
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(broker.child.pid!))), 50);
    try {
      for (let i = 0; i < connectionsCount; i++) sockets.push(await sendPartialFrame(broker.port));
      // Let the broker read what it is willing to read, producing all along.
      let acked = 0;
      for (let round = 0; round < 40; round++) {
        await producer.send({ topic: 'steady', value: `steady-${acked}` });
        acked++;
        await sleep(50);
      }
      await producer.close();
      const values: string[] = [];
      for await (const message of new PartitionReader({ bootstrap: broker.bootstrap, topic: 'steady', from: 'earliest', stopAtEnd: true })) values.push(message.value!.toString());
      expect(values).toEqual(Array.from({ length: acked }, (_, i) => `steady-${i}`));
    } finally {
      clearInterval(sampler);
    }
    console.log(`[frame-budget] ${connectionsCount} x ${partialBytesEach / mib} MiB offered; broker peak RSS ${(peakRss / mib).toFixed(0)} MiB (bound ${(rssBoundBytes / mib).toFixed(0)} MiB)`);
    expect(peakRss).toBeLessThan(rssBoundBytes);
    expect(broker.child.exitCode).toBeNull();
    // While they hold the budget, other large requests wait too (until the 30 s idle timeout cuts
    // the stalled peers off); release it for the next test.
    for (const socket of sockets.splice(0)) socket.destroy();
  });

  it('caps the replies of woken long-poll fetches by what their connection still has queued', async () => {
    // A broker of its own, so the RSS baseline is not the previous test's high-water mark.
    await broker.kill();
    broker = await startBroker();
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic: 'flood', partitions: 1 }]);
    admin.close();
    const fetches = 32;
    const stalled = await new Promise<net.Socket>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: broker.port }, () => resolve(socket));
      socket.on('error', () => undefined);
    });
    sockets.push(stalled);
    // minBytes makes every fetch wait for a large reply, so they all wake with plenty to read.
    const body = encodeFetchRequest({ maxWaitMs: 30_000, minBytes: 48 * mib, maxBytes: fetchResponseBytesMax, topics: [{ name: 'flood', partitions: [{ partition: 0, fetchOffset: 0, partitionMaxBytes: fetchResponseBytesMax }] }] });
    for (let id = 1; id <= fetches; id++) stalled.write(encodeRequestFrame(ApiKey.Fetch, 0, id, body));
    stalled.pause(); // never reads a reply
    await sleep(300);
    const baseline = rssBytes(broker.child.pid!);
    let peakRss = baseline;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(broker.child.pid!))), 50);
    try {
      const producer = new Producer({ bootstrap: broker.bootstrap, acks: 1 });
      const value = Buffer.alloc(100 * 1024, 3);
      for (let sent = 0; sent < 1600; sent += 100) await Promise.all(Array.from({ length: 100 }, () => producer.send({ topic: 'flood', partition: 0, value })));
      await producer.close();
      await sleep(1000);
    } finally {
      clearInterval(sampler);
    }
    const grownBytes = peakRss - baseline;
    console.log(`[frame-budget] ${fetches} stalled long-polls over 160 MiB of new data: broker RSS grew ${(grownBytes / mib).toFixed(0)} MiB`);
    // One maximal reply (64 MiB) plus the data written through the page cache and the producer's batches.
    expect(grownBytes).toBeLessThan(fetchResponseBytesMax + 160 * mib);
    expect(broker.child.exitCode).toBeNull();
  });
});
