/**
 * Every file the broker writes goes through its FileOps (storage/durable-file.ts and
 * storage/record-log.ts), so a full disk or a failing fsync reaches each of them. For each store:
 * a failed write is reported (DISK_FULL / STORAGE_ERROR) and leaves the file and the in-memory
 * state as they were; a failed fsync is reported, never acknowledged.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { GroupStore } from '../../src/broker/group-store.js';
import { PartitionManager, cleanShutdownMarker } from '../../src/broker/partition-manager.js';
import { ProducerStates } from '../../src/broker/producer-state.js';
import { Admin, Producer } from '../../src/client/index.js';
import type { GroupRecord } from '../../src/coordinator/records.js';
import { RillError } from '../../src/lib/errors.js';
import type { Log } from '../../src/lib/log.js';
import { readCheckpoint } from '../../src/storage/checkpoint.js';
import { FaultInjectingFileOps, type FaultOp } from '../../src/storage/fault-file-ops.js';
import type { OpenFlags } from '../../src/storage/file-ops.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { defaultTopicConfig } from '../../src/wire/control.js';
import { encodeBatch } from '../../src/wire/record-batch.js';

const dataDirs: string[] = [];

afterAll(() => {
  for (const dir of dataDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function newDataDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rill-durable-files-'));
  dataDirs.push(dir);
  return dir;
}

function codeOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    if (error instanceof RillError) return error.code;
    throw error;
  }
  return 'NONE';
}

const quiet: Log = () => {};

/** A write fault per kind: a torn write on a full disk, a failing fdatasync, a failing rename, a failing directory fsync. */
const writeFaults: { op: FaultOp; errno: string; code: string }[] = [
  { op: 'writev', errno: 'ENOSPC', code: 'DISK_FULL' },
  { op: 'fdatasync', errno: 'EIO', code: 'STORAGE_ERROR' },
  { op: 'rename', errno: 'EIO', code: 'STORAGE_ERROR' },
];

describe('topics.json (the topic registry)', () => {
  for (const fault of writeFaults) {
    it(`a create, alter, grow or delete that hits ${fault.op} ${fault.errno} fails with ${fault.code} and changes nothing`, () => {
      const dataDir = newDataDir();
      const fileOps = new FaultInjectingFileOps();
      const manager = new PartitionManager(dataDir, quiet, fileOps);
      manager.open();
      manager.create('kept', 2, { retentionMs: 60_000 });
      const registryFile = path.join(dataDir, 'topics.json');
      const fileBefore = fs.readFileSync(registryFile);
      const topicsBefore = JSON.stringify(manager.registry.list());

      const attempts: [string, () => unknown][] = [
        ['create', () => manager.create('doomed', 3, {})],
        ['alterConfig', () => manager.alterConfig('kept', { retentionMs: '1000' }, [])],
        ['addPartitions', () => manager.addPartitions('kept', 4)],
        ['delete', () => manager.delete('kept')],
      ];
      for (const [name, attempt] of attempts) {
        // Every write of that kind fails (best-effort writes on the way, such as a new
        // partition's empty leader-epoch file, must not use the fault up).
        fileOps.inject(fault.op, fault.errno, { partialBytes: 10, times: Number.POSITIVE_INFINITY });
        expect(codeOf(attempt), name).toBe(fault.code);
        fileOps.clearFaults();
        expect(JSON.stringify(manager.registry.list()), name).toBe(topicsBefore);
        expect(fs.readFileSync(registryFile).equals(fileBefore), name).toBe(true);
      }
      expect(manager.get('doomed', 0)).toBeUndefined();
      expect(manager.topicPartitions('kept')).toHaveLength(2);
      expect(fs.readdirSync(path.join(dataDir, 'topics')).sort()).toEqual(['kept']);
      expect(fs.readdirSync(path.join(dataDir, 'topics', 'kept')).sort()).toEqual(['0', '1']);
      expect(fs.readdirSync(dataDir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
      // The partitions still take writes; a restart sees exactly the one topic.
      manager.get('kept', 1)!.log.append(encodeBatch([{ value: Buffer.from('x') }], Date.now()), 1, Date.now());
      manager.closeClean();
      const restarted = new PartitionManager(dataDir, quiet, new FaultInjectingFileOps());
      expect(restarted.open().clean).toBe(true);
      expect(restarted.registry.list().map((t) => [t.name, t.partitions, t.config.retentionMs])).toEqual([['kept', 2, 60_000]]);
      expect(restarted.get('kept', 1)!.log.nextOffset).toBe(1);
      restarted.closeClean();
    });
  }

  it('a failed directory fsync after the rename is reported too', () => {
    const dataDir = newDataDir();
    const fileOps = new FaultInjectingFileOps();
    const manager = new PartitionManager(dataDir, quiet, fileOps);
    manager.open();
    manager.create('t', 1, {});
    fileOps.inject('fsyncDir', 'EIO');
    expect(codeOf(() => manager.alterConfig('t', { retentionMs: '1000' }, []))).toBe('STORAGE_ERROR');
    expect(manager.registry.get('t')!.config.retentionMs).toBe(defaultTopicConfig.retentionMs);
    manager.closeClean();
  });
});

describe('.clean-shutdown (the marker)', () => {
  it('a marker that cannot be written is logged, and the next start recovers', () => {
    const dataDir = newDataDir();
    const fileOps = new FaultInjectingFileOps();
    const logged: string[] = [];
    const manager = new PartitionManager(dataDir, (_level, message) => logged.push(message), fileOps);
    manager.open();
    manager.create('t', 1, {});
    // Nothing was appended, so the logs close without an fdatasync; the marker's fails.
    fileOps.inject('fdatasync', 'EIO', { times: Number.POSITIVE_INFINITY });
    manager.closeClean();
    expect(logged.join('\n')).toMatch(/clean-shutdown marker could not be written .*EIO.*; the next start will recover/);
    expect(fs.existsSync(path.join(dataDir, cleanShutdownMarker))).toBe(false);
    const restarted = new PartitionManager(dataDir, quiet);
    expect(restarted.open().clean).toBe(false);
    restarted.closeClean();
  });
});

describe('recovery-point (the checkpoint)', () => {
  it('a checkpoint that cannot be written is logged and the old one stays', () => {
    const dir = path.join(newDataDir(), 'p');
    const fileOps = new FaultInjectingFileOps();
    const logged: string[] = [];
    const log = PartitionLog.open(dir, defaultTopicConfig, { recover: true, fileOps, log: (message) => logged.push(message) });
    log.append(encodeBatch([{ value: Buffer.from('a') }], Date.now()), 1, Date.now());
    log.close();
    expect(readCheckpoint(fileOps, dir).recoveryPointOffset).toBe(1);
    const reopened = PartitionLog.open(dir, defaultTopicConfig, { recover: false, fileOps, log: (message) => logged.push(message) });
    reopened.append(encodeBatch([{ value: Buffer.from('b') }], Date.now()), 1, Date.now());
    fileOps.inject('writeFile', 'ENOSPC', { times: Number.POSITIVE_INFINITY });
    reopened.close();
    expect(logged.join('\n')).toMatch(/could not write the recovery-point checkpoint: ENOSPC/);
    expect(readCheckpoint(fileOps, dir).recoveryPointOffset).toBe(1);
  });
});

describe('producer-ids and producer-state snapshots', () => {
  for (const fault of writeFaults) {
    it(`a block reservation that hits ${fault.op} ${fault.errno} hands out no id of it; ids never repeat`, () => {
      const dataDir = newDataDir();
      const fileOps = new FaultInjectingFileOps();
      const states = new ProducerStates(dataDir, quiet, fileOps);
      const first = Array.from({ length: 1000 }, () => states.allocateProducerId());
      expect(first.at(-1)).toBe(999);
      fileOps.inject(fault.op, fault.errno, { partialBytes: 4 });
      expect(codeOf(() => states.allocateProducerId())).toBe(fault.code);
      expect(states.wasIssued(1000)).toBe(false);
      fileOps.clearFaults();
      expect(states.allocateProducerId()).toBe(1000);
      // A restart continues after every block ever reserved.
      expect(new ProducerStates(dataDir, quiet, fileOps).allocateProducerId()).toBe(2000);
    });
  }

  it('a snapshot that cannot be written is logged and the previous one stays', async () => {
    const dataDir = newDataDir();
    const dir = path.join(dataDir, 'topics', 't', '0');
    const fileOps = new FaultInjectingFileOps();
    const { Partition } = await import('../../src/broker/partition.js');
    const partition = new Partition('t', 0, PartitionLog.open(dir, defaultTopicConfig, { recover: true, fileOps }));
    const warnings: string[] = [];
    const states = new ProducerStates(dataDir, (_level, message) => warnings.push(message), fileOps);
    const producerId = states.allocateProducerId();
    states.stateOf(partition).record(producerId, 0, 0, 1, 0, Date.now());
    states.snapshotAll([partition]);
    const snapshotFile = path.join(dataDir, 'topics', 't', '0.producer-state');
    const before = fs.readFileSync(snapshotFile);
    states.stateOf(partition).record(producerId, 0, 1, 1, 1, Date.now());
    fileOps.inject('fdatasync', 'EIO');
    states.snapshotAll([partition]);
    expect(warnings.join('\n')).toMatch(/could not write the producer-state snapshot: EIO/);
    expect(fs.readFileSync(snapshotFile).equals(before)).toBe(true);
    partition.log.close();
  });
});

const offsetRecord = (partition: number, offset: bigint): GroupRecord => ({
  type: 'offset', groupId: 'g', topic: 't', partition, offset, metadata: '', commitTimestampMs: 1_700_000_000_000,
});

describe('__groups/groups.log (the group store)', () => {
  it('a torn append on a full disk fails with DISK_FULL, leaves whole frames only, and the store goes on', async () => {
    const dataDir = newDataDir();
    const fileOps = new FaultInjectingFileOps();
    const { store } = await GroupStore.open(dataDir, fileOps);
    await store.append([offsetRecord(0, 1n)]);
    const sizeBefore = store.sizeBytes;
    fileOps.fillDisk(9);
    await expect(store.append([offsetRecord(1, 2n)])).rejects.toMatchObject({ code: 'DISK_FULL' });
    expect(fs.statSync(path.join(dataDir, '__groups', 'groups.log')).size).toBe(sizeBefore);
    fileOps.clearFaults();
    await store.append([offsetRecord(2, 3n)]);
    await store.close();
    const reopened = await GroupStore.open(dataDir);
    expect(reopened.records).toEqual([offsetRecord(0, 1n), offsetRecord(2, 3n)]);
    expect(reopened.dropped).toBeNull();
    await reopened.store.close();
  });

  it('a failed fdatasync is reported, and the store refuses until reopened', async () => {
    const dataDir = newDataDir();
    const fileOps = new FaultInjectingFileOps();
    const { store } = await GroupStore.open(dataDir, fileOps);
    fileOps.inject('fdatasync', 'EIO');
    await expect(store.append([offsetRecord(0, 1n)])).rejects.toMatchObject({ code: 'STORAGE_ERROR', message: expect.stringContaining('EIO') });
    await expect(store.append([offsetRecord(1, 1n)])).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    await store.close();
  });

  it('a compaction that fails leaves the old log whole', async () => {
    const dataDir = newDataDir();
    const fileOps = new FaultInjectingFileOps();
    const { store } = await GroupStore.open(dataDir, fileOps);
    await store.append([offsetRecord(0, 1n), offsetRecord(0, 2n)]);
    fileOps.fillDisk(3);
    await expect(store.compact([offsetRecord(0, 2n)])).rejects.toMatchObject({ code: 'DISK_FULL' });
    fileOps.clearFaults();
    await store.close();
    const reopened = await GroupStore.open(dataDir);
    expect(reopened.records).toEqual([offsetRecord(0, 1n), offsetRecord(0, 2n)]);
    await reopened.store.close();
  });
});

// ---- The whole broker ------------------------------------------------------------------------

/** Remembers every path the broker created, wrote or renamed into through its file layer. */
class RecordingFileOps extends FaultInjectingFileOps {
  readonly written = new Set<string>();

  override open(filePath: string, flags: OpenFlags): number {
    if (flags !== 'r') this.written.add(filePath);
    return super.open(filePath, flags);
  }

  override writeFile(filePath: string, data: Uint8Array): void {
    this.written.add(filePath);
    super.writeFile(filePath, data);
  }

  override rename(fromPath: string, toPath: string): void {
    this.written.add(toPath);
    super.rename(fromPath, toPath);
  }
}

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
}

describe('the broker', () => {
  it('writes every file of its data directory through its FileOps (the lock file aside)', async () => {
    const dataDir = newDataDir();
    const fileOps = new RecordingFileOps();
    const broker = new Broker({ dataDir, port: 0, fileOps, log: quiet });
    await broker.start();
    const bootstrap = `127.0.0.1:${broker.port}`;
    const admin = new Admin({ bootstrap });
    await admin.createTopics([{ topic: 't', partitions: 2 }]);
    await admin.alterTopicConfig('t', { retentionMs: 3_600_000 });
    const producer = new Producer({ bootstrap, acks: 'all' });
    for (let i = 0; i < 5; i++) await producer.send({ topic: 't', partition: 0, value: `v${i}` });
    await producer.close();
    await admin.deleteRecords('t', 0, 2n);
    await admin.resetGroupOffsets('g', 't', 'earliest');
    await admin.upsertUser('alice', 'a long enough password');
    admin.close();
    await broker.stop();

    const files = filesUnder(dataDir).map((file) => path.relative(dataDir, file)).sort();
    for (const expected of [
      '.clean-shutdown', 'topics.json', 'producer-ids', 'users.json', path.join('__groups', 'groups.log'),
      path.join('topics', 't', '0.producer-state'), path.join('topics', 't', '0', 'leader-epoch-checkpoint'),
      path.join('topics', 't', '0', 'recovery-point'), path.join('topics', 't', '0', 'log-start-offset'),
    ]) {
      expect(files).toContain(expected);
    }
    const bypassing = files.filter((file) => file !== '.lock' && !fileOps.written.has(path.join(dataDir, file)));
    expect(bypassing).toEqual([]);
  });

  it('answers a topic create on a full disk with DISK_FULL, and the topic does not appear', async () => {
    const dataDir = newDataDir();
    const fileOps = new FaultInjectingFileOps();
    const broker = new Broker({ dataDir, port: 0, fileOps, log: quiet });
    await broker.start();
    const admin = new Admin({ bootstrap: `127.0.0.1:${broker.port}` });
    try {
      fileOps.fillDisk(10);
      await expect(admin.createTopics([{ topic: 'full', partitions: 2 }])).rejects.toMatchObject({ code: 'DISK_FULL' });
      fileOps.clearFaults();
      expect(await admin.listTopics()).toEqual([]);
      fileOps.inject('fdatasync', 'EIO');
      await expect(admin.createTopics([{ topic: 'unsynced', partitions: 1 }])).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
      expect(await admin.listTopics()).toEqual([]);
      await admin.createTopics([{ topic: 'full', partitions: 2 }]);
      expect(await admin.listTopics()).toEqual(['full']);
    } finally {
      admin.close();
      await broker.stop();
    }
    expect(fs.readdirSync(path.join(dataDir, 'topics'))).toEqual(['full']);
  });
});
