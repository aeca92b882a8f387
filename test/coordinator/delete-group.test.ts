/**
 * Deleting a group in the deterministic core: refused while any member is live (by the
 * coordinator's clock, not the wall clock), and durable through the records it returns: a
 * coordinator rebuilt by replaying the log (or a snapshot) has no trace of the group or its
 * offsets, and a later group of the same id starts empty.
 */
import { describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.js';
import type { GroupRecord } from '../../src/coordinator/records.js';
import { RillError } from '../../src/lib/errors.js';
import { Client, FakeTopics, Harness, tp } from './harness.js';

function replayed(topics: FakeTopics, records: readonly GroupRecord[]): Coordinator {
  const coordinator = new Coordinator({ topics });
  for (const record of records) coordinator.replay(record);
  return coordinator;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(RillError);
    return (error as RillError).code;
  }
  return 'NONE';
}

function commit(h: Harness, client: Client, partition: number, offset: bigint): void {
  const { results, records } = h.coordinator.commitOffsets({ groupId: 'g', memberId: client.memberId, memberEpoch: client.memberEpoch, offsets: [{ topic: 'orders', partition, offset }] }, h.nowMs);
  expect(results[0]!.errorCode).toBe(0);
  h.log.push(...records);
}

describe('deleteGroup', () => {
  it('is refused while a member is live, even one that went silent, until the clock expires it', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    a.join({ sessionTimeoutMs: 10_000 });
    commit(h, a, 0, 42n);
    h.advance(9_999);
    h.tick();
    expect(codeOf(() => h.coordinator.deleteGroup('g'))).toBe('NON_EMPTY_GROUP');
    h.advance(1);
    h.tick();
    expect(h.coordinator.listGroups()).toEqual([{ groupId: 'g', state: 'empty', memberCount: 0 }]);
    h.log.push(...h.coordinator.deleteGroup('g'));
    expect(h.coordinator.listGroups()).toEqual([]);
  });

  it('unknown groups are GROUP_ID_NOT_FOUND, and so is a second delete', () => {
    const h = new Harness();
    expect(codeOf(() => h.coordinator.deleteGroup('nobody'))).toBe('GROUP_ID_NOT_FOUND');
    const a = new Client(h, 'a');
    a.join();
    a.leave();
    h.coordinator.deleteGroup('g');
    expect(codeOf(() => h.coordinator.deleteGroup('g'))).toBe('GROUP_ID_NOT_FOUND');
  });

  it('replaying the log after a delete gives a coordinator without the group or its offsets', () => {
    const topics = new FakeTopics({ orders: 6 });
    const h = new Harness(topics);
    const a = new Client(h, 'a');
    a.join();
    commit(h, a, 1, 7n);
    h.log.push(...h.coordinator.heartbeat({ groupId: 'other', memberId: 'x', memberEpoch: 0, subscribedTopics: ['orders'], ownedPartitions: [] }, h.nowMs).records);
    a.leave();
    h.log.push(...h.coordinator.deleteGroup('g'));
    expect(h.log[h.log.length - 1]).toEqual({ type: 'group-deleted', groupId: 'g' });
    const rebuilt = replayed(topics, h.log);
    expect(rebuilt.listGroups().map((g) => g.groupId)).toEqual(['other']);
    expect(rebuilt.fetchOffsets('g', [tp('orders', 1)])).toEqual([{ topic: 'orders', partition: 1, offset: -1n, metadata: '' }]);
    expect(codeOf(() => rebuilt.describeGroup('g'))).toBe('GROUP_ID_NOT_FOUND');
    // The live coordinator and the replayed one agree on everything that is left.
    expect(rebuilt.snapshot()).toEqual(h.coordinator.snapshot());
  });

  it('a group created again under the same id after a delete starts empty, live and after replay', () => {
    const topics = new FakeTopics({ orders: 6 });
    const h = new Harness(topics);
    const a = new Client(h, 'a');
    a.join();
    commit(h, a, 0, 10n);
    commit(h, a, 2, 20n);
    a.leave();
    h.log.push(...h.coordinator.deleteGroup('g'));
    // A standalone commit (memberEpoch -1) recreates the group with one offset.
    const { records } = h.coordinator.commitOffsets({ groupId: 'g', memberId: '', memberEpoch: -1, offsets: [{ topic: 'orders', partition: 2, offset: 5n }] }, h.nowMs);
    h.log.push(...records);
    for (const coordinator of [h.coordinator, replayed(topics, h.log)]) {
      const offsets = coordinator.fetchOffsets('g', [tp('orders', 0), tp('orders', 2)]).map((o) => o.offset);
      expect(offsets).toEqual([-1n, 5n]);
    }
  });

  it('a snapshot taken after the delete (log compaction) leaves the group out', () => {
    const topics = new FakeTopics({ orders: 6 });
    const h = new Harness(topics);
    const a = new Client(h, 'a');
    a.join();
    commit(h, a, 3, 9n);
    a.leave();
    h.coordinator.deleteGroup('g');
    const snapshot = h.coordinator.snapshot();
    expect(snapshot.some((record) => record.groupId === 'g')).toBe(false);
    expect(replayed(topics, snapshot).listGroups()).toEqual([]);
  });
});
