/**
 * Disk faults: a full disk (ENOSPC) and a failing fsync (EIO).
 *
 * What the broker promises, and what these tests prove:
 * - A write that hits a full disk fails that produce request with DISK_FULL (retriable). The
 *   partial bytes are cut off again, so no partial batch is ever visible; everything stored
 *   before stays readable, the broker stays up and keeps answering other clients (reads,
 *   metadata), and producing works again as soon as space returns, at the next dense offset. A
 *   producer that keeps retrying gets its record stored once space returns; nothing acknowledged
 *   is lost, also across a SIGKILL and restart.
 * - An fsync that fails on an acks=all produce fails that request with STORAGE_ERROR
 *   (retriable), and also every acks=all request waiting on a later fsync of the same log: an
 *   ack is only given after an fsync that succeeded on a log that never failed. The partition
 *   then reopens its log with recovery (src/broker/partition.ts), which keeps every whole,
 *   CRC-valid batch and fsyncs it, so the partition is writable again at once. A batch whose
 *   fsync failed is kept if its bytes are intact: the producer was told "retry", so without
 *   idempotence that retry stores it a second time (at-least-once). If the reopen itself fails
 *   the partition answers STORAGE_ERROR and retries the reopen at most once a second.
 *
 * The first suite uses a real 4 MiB tmpfs (needs root; skipped otherwise) and a broker child
 * process; the others run an in-process broker over the fault-injecting file layer, which also
 * tears writes (part of the batch reaches the disk before ENOSPC) and fails fsyncs.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { Admin, Producer } from '../../src/client/index.js';
import { errorTable } from '../../src/lib/errors.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { defaultTopicConfig } from '../../src/wire/control.js';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.js';
import { batchOf, connect, fetchRaw, mib, produceRaw, readVerified, sleep, waitFor } from './helpers.js';

const filler = (mountDir: string): string => path.join(mountDir, 'filler');

/** Mounts a `sizeBytes` tmpfs on a fresh directory; null when this process may not mount. */
function mountTmpfs(sizeBytes: number): string | null {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rill-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    fs.rmdirSync(dir);
    return null;
  }
}

function unmount(dir: string): void {
  try {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    fs.rmdirSync(dir);
  } catch {
    // Best effort: a leftover empty mount point in the temp directory is harmless.
  }
}

/** Whether this process may mount a tmpfs (root in a container that allows it): probed once. */
function canMountTmpfs(): boolean {
  const probe = mountTmpfs(64 * 1024);
  if (probe === null) return false;
  unmount(probe);
  return true;
}

describe.skipIf(!canMountTmpfs())('a full disk: real 4 MiB tmpfs, broker child process', () => {
  let mountDir: string;
  let dataDir: string;
  let broker: BrokerProcess;

  beforeAll(async () => {
    mountDir = mountTmpfs(4 * mib)!;
    dataDir = path.join(mountDir, 'data');
    // 1 MiB the test frees later to give the broker space again.
    fs.writeFileSync(filler(mountDir), Buffer.alloc(mib, 1));
    broker = await startBroker({ dataDir });
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic: 'fill', partitions: 1, config: { segmentBytes: 512 * 1024 } }, { topic: 'other', partitions: 1 }]);
    admin.close();
  });

  afterAll(async () => {
    await broker?.kill();
    if (mountDir !== undefined) unmount(mountDir);
  });

  it('fails produce with DISK_FULL, serves reads, and takes writes again once space is freed, losing nothing', async () => {
    const writer = connect(broker.port);
    const reader = connect(broker.port);
    const acked: string[] = [];
    const otherBefore = await produceRaw(writer, 'other', 0, ['other-0'], -1);
    expect(otherBefore.error).toBe('NONE');

    // Fill the disk with 60 KiB batches, alternating acks 1 and all, until it is full.
    const pad = 'x'.repeat(60 * 1024);
    let full: Awaited<ReturnType<typeof produceRaw>> | null = null;
    for (let i = 0; i < 200 && full === null; i++) {
      const value = `fill-${i}-${pad}`;
      const result = await produceRaw(writer, 'fill', 0, [value], i % 2 === 0 ? 1 : -1);
      if (result.error === 'NONE') acked.push(value);
      else full = result;
    }
    expect(full, 'the 4 MiB disk never filled').not.toBeNull();
    expect(full!.error).toBe('DISK_FULL');
    expect(errorTable.DISK_FULL.retriable).toBe(true);
    expect(full!.errorMessage).toMatch(/ENOSPC/);
    expect(acked.length).toBeGreaterThan(10);

    // While full: more produce attempts fail the same way, on both acks levels and other topics.
    for (const acks of [1, -1] as const) expect((await produceRaw(writer, 'fill', 0, [`late-${pad}`], acks)).error).toBe('DISK_FULL');
    // A producer that retries keeps its record pending instead of failing.
    const producer = new Producer({ bootstrap: broker.bootstrap, acks: 'all', retryBackoffMs: 50, retryBackoffMaxMs: 200, deliveryTimeoutMs: 60_000 });
    let retriedSettled = false;
    const retried = producer.send({ topic: 'fill', partition: 0, value: `retried-${pad}` }).finally(() => (retriedSettled = true));
    await sleep(500);
    expect(retriedSettled).toBe(false);

    // The broker is up and serves everyone: reads of everything acknowledged, whole and dense.
    expect(broker.child.exitCode).toBeNull();
    const whileFull = await readVerified(reader, 'fill', 0);
    expect(whileFull.values).toEqual(acked);
    expect((await readVerified(reader, 'other', 0)).values).toEqual(['other-0']);
    const admin = new Admin({ bootstrap: broker.bootstrap });
    expect((await admin.listTopics()).sort()).toEqual(['fill', 'other']);

    // Space returns: the pending retry lands, then new writes, at the next dense offsets.
    fs.unlinkSync(filler(mountDir));
    const metadata = await retried;
    acked.push(`retried-${pad}`);
    expect(Number(metadata.offset)).toBe(acked.length - 1);
    for (const acks of [1, -1] as const) {
      const value = `after-${acks}`;
      const result = await produceRaw(writer, 'fill', 0, [value], acks);
      expect(result.error).toBe('NONE');
      expect(result.baseOffset).toBe(acked.length);
      acked.push(value);
    }
    expect((await readVerified(reader, 'fill', 0)).values).toEqual(acked);
    await producer.close();
    admin.close();
    writer.close();
    reader.close();

    // Nothing acknowledged is lost, and recovery finds no partial batch, after a SIGKILL.
    await broker.kill();
    broker = await startBroker({ dataDir });
    expect(broker.output()).not.toMatch(/recovery truncated/);
    const afterRestart = connect(broker.port);
    expect((await readVerified(afterRestart, 'fill', 0)).values).toEqual(acked);
    afterRestart.close();
  });
});

interface InProcess {
  broker: Broker;
  fileOps: FaultInjectingFileOps;
  logged: string[];
  dataDir: string;
}

const dataDirs: string[] = [];

afterAll(() => {
  for (const dir of dataDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function startInProcess(dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rill-faults-'))): Promise<InProcess> {
  dataDirs.push(dataDir);
  const fileOps = new FaultInjectingFileOps();
  const logged: string[] = [];
  const broker = new Broker({ dataDir, port: 0, fileOps, log: (level, message) => logged.push(`${level} ${message}`) });
  await broker.start();
  return { broker, fileOps, logged, dataDir };
}

async function createTopics(port: number, names: string[]): Promise<void> {
  const admin = new Admin({ bootstrap: `127.0.0.1:${port}` });
  await admin.createTopics(names.map((topic) => ({ topic, partitions: 1 })));
  admin.close();
}

describe('a full disk through the fault-injecting file layer (torn writes)', () => {
  let running: InProcess | null = null;

  afterEach(async () => {
    await running?.broker.stop();
    running = null;
  });

  it('answers DISK_FULL with nothing partial stored, keeps serving, and recovers when space returns', async () => {
    running = await startInProcess();
    const { broker, fileOps } = running;
    await createTopics(broker.port, ['t', 'u']);
    const writer = connect(broker.port);
    const acked: string[] = [];
    for (let i = 0; i < 20; i++) {
      const result = await produceRaw(writer, 't', 0, [`a-${i}`, `b-${i}`], i % 2 === 0 ? -1 : 1);
      expect(result.error).toBe('NONE');
      acked.push(`a-${i}`, `b-${i}`);
    }

    // Every write now puts 40 bytes on disk and then fails: a torn write the log must cut back.
    fileOps.fillDisk(40);
    for (const acks of [1, -1] as const) {
      const result = await produceRaw(writer, 't', 0, ['doomed-1', 'doomed-2'], acks);
      expect(result.error).toBe('DISK_FULL');
      expect(result.baseOffset).toBe(-1);
    }
    const producer = new Producer({ bootstrap: `127.0.0.1:${broker.port}`, acks: 'all', retryBackoffMs: 20, retryBackoffMaxMs: 100 });
    const retried = producer.send({ topic: 't', partition: 0, value: 'retried' });

    // Other clients are served throughout: reads show exactly what was acknowledged.
    const reader = connect(broker.port);
    const read = await readVerified(reader, 't', 0);
    expect(read.values).toEqual(acked);
    expect(read.highWatermark).toBe(acked.length);
    expect((await readVerified(reader, 'u', 0)).values).toEqual([]);
    const segment = path.join(running.dataDir, 'topics', 't', '0');
    const fileBytes = fs.readdirSync(segment).filter((name) => name.endsWith('.log')).reduce((sum, name) => sum + fs.statSync(path.join(segment, name)).size, 0);
    const batchBytes = (await fetchRaw(reader, 't', 0, 0, 64 * mib)).records.length;
    expect(fileBytes).toBe(batchBytes);

    fileOps.clearFaults();
    expect(Number((await retried).offset)).toBe(acked.length);
    acked.push('retried');
    const after = await produceRaw(writer, 'u', 0, ['u-0'], -1);
    expect(after.error).toBe('NONE');
    const next = await produceRaw(writer, 't', 0, ['after'], -1);
    expect(next.baseOffset).toBe(acked.length);
    acked.push('after');
    expect((await readVerified(reader, 't', 0)).values).toEqual(acked);
    await producer.close();
    writer.close();
    reader.close();

    // A clean restart without faults reads back the same bytes.
    await broker.stop();
    running = await startInProcess(running.dataDir);
    const again = connect(running.broker.port);
    expect((await readVerified(again, 't', 0)).values).toEqual(acked);
    again.close();
  });
});

describe('a failing fsync on acks=all', () => {
  let running: InProcess | null = null;

  afterEach(async () => {
    await running?.broker.stop();
    running = null;
  });

  it('fails the request with retriable STORAGE_ERROR, reopens the log, and accepts writes again', async () => {
    running = await startInProcess();
    const { broker, fileOps, logged } = running;
    await createTopics(broker.port, ['t']);
    const writer = connect(broker.port);
    expect((await produceRaw(writer, 't', 0, ['durable-0'], -1)).error).toBe('NONE');

    fileOps.inject('fdatasync', 'EIO', { times: 1 });
    const failed = await produceRaw(writer, 't', 0, ['fsync-failed'], -1);
    expect(failed.error).toBe('STORAGE_ERROR');
    expect(errorTable.STORAGE_ERROR.retriable).toBe(true);
    expect(failed.baseOffset).toBe(-1);
    expect(failed.errorMessage).toMatch(/EIO/);
    const partition = broker.partitions.get('t', 0)!;
    expect(partition.reopenCount).toBe(1);
    expect(logged.some((line) => /fsync failed .*reopening the log/.test(line))).toBe(true);

    // Writable again at once, on both acks levels.
    const next = await produceRaw(writer, 't', 0, ['durable-1'], -1);
    expect(next.error).toBe('NONE');
    expect(next.durability).toBe(2);
    expect((await produceRaw(writer, 't', 0, ['written-1'], 1)).error).toBe('NONE');
    // The batch whose fsync failed was intact, so recovery kept (and fsynced) it: at-least-once.
    const read = await readVerified(writer, 't', 0);
    expect(read.values).toEqual(['durable-0', 'fsync-failed', 'durable-1', 'written-1']);
    writer.close();
  });

  it('never acknowledges a batch whose fsync round was queued behind the failed one', async () => {
    running = await startInProcess();
    const { broker, fileOps } = running;
    await createTopics(broker.port, ['t']);
    const writer = connect(broker.port);
    expect((await produceRaw(writer, 't', 0, ['durable-0'], -1)).error).toBe('NONE');

    // Round 1 (B) is held; C arrives meanwhile and waits for round 2; round 1 then fails.
    const release = fileOps.holdFsyncs();
    const first = produceRaw(writer, 't', 0, ['B'], -1);
    await waitFor(() => broker.partitions.get('t', 0)!.log.nextOffset === 2);
    const second = produceRaw(writer, 't', 0, ['C'], -1);
    await waitFor(() => broker.partitions.get('t', 0)!.log.nextOffset === 3);
    fileOps.inject('fdatasync', 'EIO', { times: 1 });
    release();
    expect((await first).error).toBe('STORAGE_ERROR');
    expect((await second).error).toBe('STORAGE_ERROR');
    const next = await produceRaw(writer, 't', 0, ['D'], -1);
    expect(next.error).toBe('NONE');
    expect((await readVerified(writer, 't', 0)).values).toEqual(['durable-0', 'B', 'C', 'D']);
    writer.close();
  });

  it('answers STORAGE_ERROR while the reopen fails, and retries the reopen on later requests', async () => {
    running = await startInProcess();
    const { broker, fileOps, logged } = running;
    await createTopics(broker.port, ['t', 'healthy']);
    const writer = connect(broker.port);
    expect((await produceRaw(writer, 't', 0, ['durable-0'], -1)).error).toBe('NONE');

    fileOps.inject('fdatasync', 'EIO', { times: 1 });
    fileOps.inject('open', 'EIO', { times: 1 }); // the reopen cannot open the segment file
    expect((await produceRaw(writer, 't', 0, ['lost?'], -1)).error).toBe('STORAGE_ERROR');
    const partition = broker.partitions.get('t', 0)!;
    expect(partition.isOffline).toBe(true);
    expect(logged.some((line) => /reopening the log failed/.test(line))).toBe(true);
    // Offline: requests for it fail (retriable), other partitions are unaffected.
    expect((await produceRaw(writer, 't', 0, ['refused'], 1)).error).toBe('STORAGE_ERROR');
    await expect(fetchRaw(writer, 't', 0, 0)).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    expect((await produceRaw(writer, 'healthy', 0, ['fine'], -1)).error).toBe('NONE');

    // The retry (at most once a second, on use) succeeds now that opens work again.
    await sleep(1100);
    const back = await produceRaw(writer, 't', 0, ['back'], -1);
    expect(back.error).toBe('NONE');
    expect(partition.isOffline).toBe(false);
    const values = (await readVerified(writer, 't', 0)).values;
    expect(values[0]).toBe('durable-0');
    expect(values.at(-1)).toBe('back');
    writer.close();
  });
});

/**
 * After an fsync round fails, the group-commit round queued behind it must not report anything
 * flushed: on Linux a failed fsync can drop dirty pages and a later fsync then succeeds without
 * them, so an acks=all ack could otherwise be given for data after a hole.
 */
describe('a group-commit round queued behind a failed fsync', () => {
  it('rejects instead of reporting the failed offsets as flushed', async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rill-queued-round-')), 'p');
    dataDirs.push(path.dirname(dir));
    const fileOps = new FaultInjectingFileOps();
    const log = PartitionLog.open(dir, defaultTopicConfig, { recover: true, fileOps });
    log.append(batchOf(['a']), 1, Date.now());
    await log.flush();
    const release = fileOps.holdFsyncs();
    log.append(batchOf(['b']), 1, Date.now());
    const first = log.flush();
    log.append(batchOf(['c']), 1, Date.now());
    const second = log.flush();
    fileOps.inject('fdatasync', 'EIO', { times: 1 });
    release();
    await expect(first).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    await expect(second).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    expect(log.flushedOffset).toBe(1);
    try {
      log.close();
    } catch {
      // The log failed; close reports it.
    }
  });
});
