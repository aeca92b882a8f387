import { mkdtemp, readFile, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupStore, encodeFrame } from '../../src/broker/group-store.js';
import { Coordinator } from '../../src/coordinator/coordinator.js';
import type { GroupRecord } from '../../src/coordinator/records.js';
import { FakeTopics } from '../coordinator/harness.js';

let dataDir: string;
const logPath = () => join(dataDir, '__groups', 'groups.log');

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'rill-group-store-'));
});
afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

const offsetRecord = (partition: number, offset: bigint): GroupRecord => ({
  type: 'offset',
  groupId: 'g',
  topic: 'orders',
  partition,
  offset,
  metadata: `meta-${partition}`,
  commitTimestampMs: 1_700_000_000_000 + partition,
});

const memberRecord: GroupRecord = {
  type: 'member',
  groupId: 'g',
  memberId: 'm-1',
  clientId: 'app',
  host: '10.0.0.1',
  sessionTimeoutMs: 10_000,
  rebalanceTimeoutMs: 60_000,
  subscribedTopics: ['orders'],
  memberEpoch: 3,
  previousMemberEpoch: 2,
  assigned: [{ topic: 'orders', partition: 0, assignmentEpoch: 2 }],
  pendingRevocation: [{ topic: 'orders', partition: 1, assignmentEpoch: 1 }],
};

describe('GroupStore', () => {
  it('returns appended records, in order and equal, after reopening', async () => {
    const first = await GroupStore.open(dataDir);
    expect(first.records).toEqual([]);
    expect(first.dropped).toBeNull();
    const records = [memberRecord, offsetRecord(0, 5n), offsetRecord(1, (1n << 62n) + 7n), { type: 'member-removed', groupId: 'g', memberId: 'm-1' } as GroupRecord];
    await first.store.append(records.slice(0, 2));
    await first.store.append(records.slice(2));
    await first.store.close();
    const second = await GroupStore.open(dataDir);
    expect(second.records).toEqual(records);
    expect(second.dropped).toBeNull();
    await second.store.close();
  });

  it('truncates a torn tail, reports it, and appends after the valid prefix', async () => {
    const { store } = await GroupStore.open(dataDir);
    await store.append([offsetRecord(0, 1n), offsetRecord(1, 2n)]);
    await store.close();
    const whole = await readFile(logPath());
    const torn = encodeFrame(offsetRecord(2, 3n)).subarray(0, 11);
    await writeFile(logPath(), Buffer.concat([whole, torn]));
    const reopened = await GroupStore.open(dataDir);
    expect(reopened.records).toEqual([offsetRecord(0, 1n), offsetRecord(1, 2n)]);
    expect(reopened.dropped).toEqual({ bytes: 11, reason: expect.stringContaining('torn frame') });
    expect((await stat(logPath())).size).toBe(whole.length);
    await reopened.store.append([offsetRecord(3, 4n)]);
    await reopened.store.close();
    const again = await GroupStore.open(dataDir);
    expect(again.records.map((r) => (r as { partition: number }).partition)).toEqual([0, 1, 3]);
    expect(again.dropped).toBeNull();
    await again.store.close();
  });

  it('detects a flipped bit by CRC and drops that record and everything after it', async () => {
    const { store } = await GroupStore.open(dataDir);
    await store.append([offsetRecord(0, 1n), offsetRecord(1, 2n), offsetRecord(2, 3n)]);
    await store.close();
    const bytes = await readFile(logPath());
    const firstFrameBytes = encodeFrame(offsetRecord(0, 1n)).length;
    bytes[firstFrameBytes + 12]! ^= 0x10; // inside the second frame's payload
    await writeFile(logPath(), bytes);
    const reopened = await GroupStore.open(dataDir);
    expect(reopened.records).toEqual([offsetRecord(0, 1n)]);
    expect(reopened.dropped?.reason).toContain('CRC-32C mismatch');
    expect(reopened.dropped?.bytes).toBe(bytes.length - firstFrameBytes);
    await reopened.store.close();
  });

  it('rejects an absurd length without allocating it, and never throws on garbage', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (garbage) => {
        await rm(join(dataDir, '__groups'), { recursive: true, force: true });
        const { store } = await GroupStore.open(dataDir);
        await store.append([offsetRecord(0, 1n)]);
        await store.close();
        const good = await readFile(logPath());
        await writeFile(logPath(), Buffer.concat([good, garbage]));
        const reopened = await GroupStore.open(dataDir);
        expect(reopened.records[0]).toEqual(offsetRecord(0, 1n));
        if (reopened.dropped !== null) expect(reopened.dropped.bytes).toBeLessThanOrEqual(garbage.length);
        await reopened.store.close();
      }),
      { numRuns: 60 },
    );
    const huge = Buffer.alloc(8);
    huge.writeUInt32BE(0xffff_fff0, 0);
    await writeFile(logPath(), huge);
    const opened = await GroupStore.open(dataDir);
    expect(opened.records).toEqual([]);
    expect(opened.dropped?.reason).toContain('outside 1..');
    await opened.store.close();
  });

  it('drops a frame with a valid CRC that is not a GroupRecord', async () => {
    const { store } = await GroupStore.open(dataDir);
    await store.append([offsetRecord(0, 1n), { ...offsetRecord(1, 2n), type: 'bogus' } as unknown as GroupRecord]);
    await store.close();
    const reopened = await GroupStore.open(dataDir);
    expect(reopened.records).toEqual([offsetRecord(0, 1n)]);
    expect(reopened.dropped?.reason).toContain('unknown record type');
    await reopened.store.close();
  });

  it('shares one fdatasync among appends issued together (group commit)', async () => {
    const { store } = await GroupStore.open(dataDir);
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.append([offsetRecord(i, BigInt(i))])));
    expect(store.appendSyncCount).toBe(1);
    // One append in flight, 20 more arrive meanwhile: they share the next fsync.
    const inFlight = store.append([offsetRecord(100, 1n)]);
    await Promise.resolve();
    await Promise.resolve();
    const followers = Array.from({ length: 20 }, (_, i) => store.append([offsetRecord(200 + i, 1n)]));
    await Promise.all([inFlight, ...followers]);
    expect(store.appendSyncCount).toBeLessThanOrEqual(3);
    await store.close();
    const reopened = await GroupStore.open(dataDir);
    expect(reopened.records).toHaveLength(71);
    await reopened.store.close();
  });

  it('compaction replaces the log with a snapshot that replays to the same coordinator state', async () => {
    const topics = new FakeTopics({ orders: 4 });
    const coordinator = new Coordinator({ topics });
    const { store } = await GroupStore.open(dataDir);
    let nowMs = 0;
    await store.append(coordinator.heartbeat({ groupId: 'g', memberId: 'a', memberEpoch: 0, subscribedTopics: ['orders'], ownedPartitions: [] }, nowMs).records);
    for (let i = 0; i < 500; i += 1) {
      nowMs += 10;
      const { records } = coordinator.commitOffsets({ groupId: 'g', memberId: 'a', memberEpoch: 1, offsets: [{ topic: 'orders', partition: i % 4, offset: BigInt(i) }] }, nowMs);
      await store.append(records);
    }
    const sizeBefore = store.sizeBytes;
    const pending = store.append(coordinator.heartbeat({ groupId: 'g', memberId: 'b', memberEpoch: 0, subscribedTopics: ['orders'], ownedPartitions: [] }, nowMs).records);
    await store.compact(coordinator.snapshot());
    await pending;
    const late = coordinator.heartbeat({ groupId: 'g', memberId: 'a', memberEpoch: 1, ownedPartitions: [] }, nowMs).records;
    await store.append(late);
    expect(store.sizeBytes).toBeLessThan(sizeBefore / 4);
    await store.close();
    expect((await readdir(join(dataDir, '__groups'))).sort()).toEqual(['groups.log']);

    const reopened = await GroupStore.open(dataDir);
    const restored = new Coordinator({ topics });
    for (const record of reopened.records) restored.replay(record);
    expect(restored.describeGroup('g')).toEqual(coordinator.describeGroup('g'));
    expect(restored.fetchOffsets('g')).toEqual(coordinator.fetchOffsets('g'));
    await reopened.store.close();
  });

  it('asks for compaction only when the log is large and has outgrown its last snapshot', async () => {
    const { store } = await GroupStore.open(dataDir);
    await store.append([offsetRecord(0, 1n)]);
    expect(store.shouldCompact()).toBe(false);
    const big = Array.from({ length: 20_000 }, (_, i) => offsetRecord(i % 8, BigInt(i)));
    await store.append(big);
    expect(store.sizeBytes).toBeGreaterThan(1024 * 1024);
    expect(store.shouldCompact()).toBe(true);
    await store.compact(big.slice(-8));
    expect(store.shouldCompact()).toBe(false);
    await store.close();
  });

  it('ignores a leftover temporary file from a compaction that crashed', async () => {
    const { store } = await GroupStore.open(dataDir);
    await store.append([offsetRecord(0, 1n)]);
    await store.close();
    await writeFile(join(dataDir, '__groups', 'groups.log.tmp'), Buffer.from('half a snapshot'));
    const reopened = await GroupStore.open(dataDir);
    expect(reopened.records).toEqual([offsetRecord(0, 1n)]);
    expect((await readdir(join(dataDir, '__groups'))).sort()).toEqual(['groups.log']);
    await reopened.store.close();
  });
});
