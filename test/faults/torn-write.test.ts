/**
 * Damaged logs, with a real broker process killed with SIGKILL and files damaged while it is down.
 *
 * What the broker does (for the README):
 * - Start after a crash: each partition is CRC-scanned from its recovery point (the last
 *   checkpointed fsynced offset, written at most once a second) to the end. At the first batch
 *   that is torn (cut mid-batch), fails its CRC, has a bad length or magic, or does not continue
 *   the offsets, the segment is truncated there and every later segment deleted, and the broker
 *   logs "recovery truncated N bytes from offset X (reason)". So a torn tail or trailing garbage
 *   costs exactly the damaged bytes: the log ends at the last whole batch, consumers never see a
 *   partial or corrupt batch, and new appends continue at the next offset (the cut batch's offset
 *   is reused). Damage inside this scanned window, not only at the very end, also truncates
 *   there: the whole batches after it in that window are dropped, as in Kafka, because recovery
 *   cannot tell a flipped byte from a torn write.
 * - Corruption below the recovery point (an older segment, trusted at start so a restart does not
 *   read the whole log) is found when read: every batch served is CRC-checked. The bad batch is
 *   never served: a fetch of its range gets CORRUPT_LOG (the reader throws RillError code
 *   'CORRUPT_LOG' naming topic, partition and the offset it asked for), while the batches before
 *   it, the batches after it and every other partition keep being served. The data after the
 *   bad batch is kept on purpose: it is intact and was acknowledged, and truncating a sealed
 *   segment would silently drop it; a consumer skips the bad range by seeking past it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, RillError } from '../../src/client/index.js';
import { errorTable } from '../../src/lib/errors.js';
import { readBatchSize } from '../../src/wire/record-batch.js';
import { startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { connect, fetchRaw, produceRaw, readVerified, sleep } from './helpers.js';

const brokers: BrokerProcess[] = [];

afterEach(async () => {
  const dataDirs = new Set(brokers.map((broker) => broker.dataDir));
  for (const broker of brokers.splice(0)) await broker.kill();
  for (const dir of dataDirs) fs.rmSync(dir, { recursive: true, force: true });
});

async function start(dataDir: string): Promise<BrokerProcess> {
  const broker = await startBroker({ dataDir });
  brokers.push(broker);
  return broker;
}

function partitionDir(dataDir: string, topic: string, partition: number): string {
  return path.join(dataDir, 'topics', topic, String(partition));
}

function segmentPaths(dir: string): string[] {
  return fs.readdirSync(dir).filter((name) => /^\d{20}\.log$/.test(name)).sort().map((name) => path.join(dir, name));
}

/** [position, size] of every batch in a segment file, walking the length fields. */
function batchSpans(bytes: Buffer): [number, number][] {
  const spans: [number, number][] = [];
  for (let pos = 0; pos + 12 <= bytes.length;) {
    const size = readBatchSize(bytes, pos);
    spans.push([pos, size]);
    pos += size;
  }
  return spans;
}

function recoveryPoint(dir: string): number {
  const bytes = fs.readFileSync(path.join(dir, 'recovery-point'));
  return Number(bytes.readBigUInt64BE(8));
}

/** Writes `count` one-record-per-value batches with acks=all; returns the values in order. */
async function writeBatches(port: number, topic: string, partition: number, count: number, prefix: string): Promise<string[][]> {
  const connection = connect(port);
  const batches: string[][] = [];
  for (let i = 0; i < count; i++) {
    const values = [`${prefix}-${i}-a`, `${prefix}-${i}-b`, `${prefix}-${i}-c`];
    const result = await produceRaw(connection, topic, partition, values, -1);
    expect(result.error).toBe('NONE');
    batches.push(values);
  }
  connection.close();
  return batches;
}

/** Reads with the client's PartitionReader from earliest to the end; returns values and the error that stopped it. */
async function readWithClient(bootstrap: string, topic: string, partition: number, from: bigint | 'earliest' = 'earliest'): Promise<{ values: string[]; offsets: bigint[]; error: RillError | null }> {
  const reader = new PartitionReader({ bootstrap, topic, partitions: [partition], from, stopAtEnd: true, maxWaitMs: 100 });
  const values: string[] = [];
  const offsets: bigint[] = [];
  try {
    for await (const message of reader) {
      values.push(message.value?.toString() ?? '');
      offsets.push(message.offset);
    }
    return { values, offsets, error: null };
  } catch (error) {
    if (!(error instanceof RillError)) throw error;
    return { values, offsets, error };
  } finally {
    reader.close();
  }
}

async function createTopic(bootstrap: string, topic: string, partitions: number, segmentBytes?: number): Promise<void> {
  const admin = new Admin({ bootstrap });
  await admin.createTopics([{ topic, partitions, config: segmentBytes === undefined ? {} : { segmentBytes } }]);
  admin.close();
}

describe('a torn or garbage tail, after SIGKILL', () => {
  it('recovers to the last whole batch when the tail was cut mid-batch, and appends continue at its offset', async () => {
    const dataDir = tempDir('torn');
    let broker = await start(dataDir);
    await createTopic(broker.bootstrap, 'torn', 1);
    const written = await writeBatches(broker.port, 'torn', 0, 30, 'w');
    await broker.kill();

    // Cut the last batch in half: as if the machine died while the write was in flight.
    const [active] = segmentPaths(partitionDir(dataDir, 'torn', 0)).slice(-1);
    const [lastPos, lastSize] = batchSpans(fs.readFileSync(active!)).at(-1)!;
    fs.truncateSync(active!, lastPos + Math.floor(lastSize / 2));

    broker = await start(dataDir);
    expect(broker.output()).toMatch(/torn\/0: recovery truncated \d+ bytes from offset 87/);
    const kept = written.slice(0, -1).flat();
    const read = await readWithClient(broker.bootstrap, 'torn', 0);
    expect(read.error).toBeNull();
    expect(read.values).toEqual(kept);
    expect(read.offsets).toEqual(kept.map((_, i) => BigInt(i)));

    const connection = connect(broker.port);
    const next = await produceRaw(connection, 'torn', 0, ['after'], -1);
    expect(next.baseOffset).toBe(kept.length);
    expect((await readVerified(connection, 'torn', 0)).values).toEqual([...kept, 'after']);
    connection.close();
  });

  const garbageKinds: [string, (lastBatch: Buffer) => Buffer][] = [
    ['random bytes', () => Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919 + 13) & 0xff))],
    ['zeros (preallocated blocks)', () => Buffer.alloc(4096)],
    ['a copy of the last batch with one flipped byte', (lastBatch) => {
      const copy = Buffer.from(lastBatch);
      copy[copy.length - 3]! ^= 0x40;
      return copy;
    }],
    ['a batch header claiming 1 GiB', (lastBatch) => {
      const copy = Buffer.from(lastBatch.subarray(0, 61));
      copy.writeInt32BE(1 << 30, 8);
      return copy;
    }],
  ];

  it('drops garbage after the last whole batch, whatever it looks like', async () => {
    const dataDir = tempDir('garbage');
    let broker = await start(dataDir);
    await createTopic(broker.bootstrap, 'garbage', 1);
    const kept = (await writeBatches(broker.port, 'garbage', 0, 10, 'g')).flat();
    for (const [kind, garbage] of garbageKinds) {
      const connection = connect(broker.port);
      const lastBatch = (await fetchRaw(connection, 'garbage', 0, kept.length - 1)).records;
      connection.close();
      await broker.kill();
      const [active] = segmentPaths(partitionDir(dataDir, 'garbage', 0)).slice(-1);
      fs.appendFileSync(active!, garbage(lastBatch));

      broker = await start(dataDir);
      expect(broker.output(), kind).toMatch(/recovery truncated/);
      const read = await readWithClient(broker.bootstrap, 'garbage', 0);
      expect(read.error, kind).toBeNull();
      expect(read.values, kind).toEqual(kept);
      const again = connect(broker.port);
      const next = await produceRaw(again, 'garbage', 0, [`after ${kind}`], -1);
      expect(next.baseOffset, kind).toBe(kept.length);
      kept.push(`after ${kind}`);
      again.close();
    }
  });

  it('truncates at damage inside the recovery window, dropping the whole batches after it', async () => {
    const dataDir = tempDir('window');
    let broker = await start(dataDir);
    await createTopic(broker.bootstrap, 'window', 1);
    const written = await writeBatches(broker.port, 'window', 0, 20, 'v');
    await broker.kill();
    const dir = partitionDir(dataDir, 'window', 0);
    expect(recoveryPoint(dir)).toBeLessThan(10 * 3); // the checkpoint lags: batch 10 is in the scanned window

    const [active] = segmentPaths(dir).slice(-1);
    const bytes = fs.readFileSync(active!);
    const [pos, size] = batchSpans(bytes)[10]!;
    bytes[pos + size - 2]! ^= 0xff; // a record byte of batch 10: its CRC fails
    fs.writeFileSync(active!, bytes);

    broker = await start(dataDir);
    expect(broker.output()).toMatch(/window\/0: recovery truncated \d+ bytes from offset 30 \(.*CRC/);
    const read = await readWithClient(broker.bootstrap, 'window', 0);
    expect(read.error).toBeNull();
    expect(read.values).toEqual(written.slice(0, 10).flat());
  });
});

describe('mid-log corruption in an older segment', () => {
  /** Writes 3 topics' worth of data over many 1 KiB segments and leaves the recovery point at the end. */
  async function corruptedBroker(): Promise<{ broker: BrokerProcess; written: string[][]; bad: { base: number; last: number } }> {
    const dataDir = tempDir('midlog');
    let broker = await start(dataDir);
    await createTopic(broker.bootstrap, 'mid', 2, 1024);
    const written = await writeBatches(broker.port, 'mid', 0, 40, 'm');
    await writeBatches(broker.port, 'mid', 1, 10, 'other');
    // A flush more than a second after the first one writes the checkpoint at the log end, so
    // the restart below trusts every sealed segment and does not scan them.
    await sleep(1100);
    written.push(...(await writeBatches(broker.port, 'mid', 0, 1, 'tail')));
    await broker.kill();

    const dir = partitionDir(dataDir, 'mid', 0);
    const segments = segmentPaths(dir);
    expect(segments.length).toBeGreaterThan(4);
    expect(recoveryPoint(dir)).toBe(written.length * 3);
    // Flip one byte in the second batch of the second segment.
    const target = segments[1]!;
    const base = Number(path.basename(target, '.log'));
    const bytes = fs.readFileSync(target);
    const [pos, size] = batchSpans(bytes)[1]!;
    bytes[pos + size - 5]! ^= 0x01;
    fs.writeFileSync(target, bytes);

    broker = await start(dataDir);
    expect(broker.output()).not.toMatch(/recovery truncated/);
    return { broker, written, bad: { base: base + 3, last: base + 5 } };
  }

  it('answers CORRUPT_LOG for the bad range only, keeps serving the rest and other partitions', async () => {
    const { broker, written, bad } = await corruptedBroker();
    const all = written.flat();

    // From earliest: every record before the bad batch, then CORRUPT_LOG naming where.
    const fromStart = await readWithClient(broker.bootstrap, 'mid', 0);
    expect(fromStart.values).toEqual(all.slice(0, bad.base));
    expect(fromStart.error).toBeInstanceOf(RillError);
    expect(fromStart.error!.code).toBe('CORRUPT_LOG');
    expect(fromStart.error!.retriable).toBe(false);
    expect(fromStart.error!.message).toContain(`mid/0 at offset ${bad.base}`);

    // The bad batch is never served, whatever offset inside it is asked for.
    const connection = connect(broker.port);
    for (let offset = bad.base; offset <= bad.last; offset++) {
      const fetched = await fetchRaw(connection, 'mid', 0, offset);
      expect(fetched.errorCode).toBe(errorTable.CORRUPT_LOG.code);
      expect(fetched.records.length).toBe(0);
    }
    // After it, and on the other partition, everything is served.
    const afterBad = await readWithClient(broker.bootstrap, 'mid', 0, BigInt(bad.last + 1));
    expect(afterBad.error).toBeNull();
    expect(afterBad.values).toEqual(all.slice(bad.last + 1));
    expect((await readVerified(connection, 'mid', 1)).values.length).toBe(30);
    // Appends continue at the end.
    expect((await produceRaw(connection, 'mid', 0, ['new'], -1)).baseOffset).toBe(all.length);
    connection.close();
    expect(broker.child.exitCode).toBeNull();
  });

  /** A CORRUPT_LOG read is logged (rate-limited per partition) with the offset range and segment file. */
  it('logs the corruption with topic, partition and offset range', async () => {
    const { broker, bad } = await corruptedBroker();
    const connection = connect(broker.port);
    expect((await fetchRaw(connection, 'mid', 0, bad.base)).errorCode).toBe(errorTable.CORRUPT_LOG.code);
    connection.close();
    await sleep(200);
    expect(broker.output()).toMatch(new RegExp(`mid/0.*CORRUPT_LOG.*offsets ${bad.base}\\.\\.${bad.last}`));
  });
});
