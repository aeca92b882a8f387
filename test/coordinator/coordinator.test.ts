import { describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.js';
import { errorCodeOf } from '../../src/lib/errors.js';
import { Client, FakeTopics, Harness, keys, settle, tp } from './harness.js';

const code = errorCodeOf;

describe('join, heartbeat, leave', () => {
  it('a first member gets every partition at epoch 1 with the default intervals', () => {
    const h = new Harness();
    const response = h.join('a');
    expect(response.errorCode).toBe(0);
    expect(response.memberEpoch).toBe(1);
    expect(response.heartbeatIntervalMs).toBe(1000);
    expect(keys(response.assignment)).toEqual(keys([0, 1, 2, 3, 4, 5].map((p) => tp('orders', p))));
    expect(h.member('a').sessionTimeoutMs).toBe(10_000);
    expect(response.records.length).toBeGreaterThan(0);
    expect(h.coordinator.describeGroup('g').state).toBe('stable');
  });

  it('requires subscribedTopics to join and validates ids', () => {
    const h = new Harness();
    expect(h.heartbeat({ memberId: 'a', memberEpoch: 0 }).errorCode).toBe(code('INVALID_ARGUMENT'));
    expect(h.coordinator.heartbeat({ groupId: '', memberId: 'a', memberEpoch: 0, subscribedTopics: [] }, 0).errorCode).toBe(code('INVALID_GROUP_ID'));
    expect(h.coordinator.heartbeat({ groupId: 'x'.repeat(256), memberId: 'a', memberEpoch: 0, subscribedTopics: [] }, 0).errorCode).toBe(code('INVALID_GROUP_ID'));
    expect(h.heartbeat({ memberId: '', memberEpoch: 0, subscribedTopics: [] }).errorCode).toBe(code('INVALID_ARGUMENT'));
    expect(h.heartbeat({ memberId: 'a', memberEpoch: -2, subscribedTopics: [] }).errorCode).toBe(code('INVALID_ARGUMENT'));
    expect(h.coordinator.listGroups()).toEqual([]);
  });

  it('bounds the session timeout and shortens the heartbeat interval for short sessions', () => {
    const h = new Harness();
    const tooShort = h.join('a', { sessionTimeoutMs: 999 });
    expect(tooShort.errorCode).toBe(code('INVALID_SESSION_TIMEOUT'));
    expect(tooShort.errorMessage).toContain('1000..1800000');
    expect(h.join('a', { sessionTimeoutMs: 1_800_001 }).errorCode).toBe(code('INVALID_SESSION_TIMEOUT'));
    const ok = h.join('a', { sessionTimeoutMs: 1500 });
    expect(ok.errorCode).toBe(0);
    expect(ok.heartbeatIntervalMs).toBe(500);
  });

  it('rejects joins past the group size limit', () => {
    const h = new Harness(new FakeTopics({ orders: 6 }), { groupMembersMax: 2 });
    h.join('a');
    h.join('b');
    expect(h.join('c').errorCode).toBe(code('GROUP_MAX_SIZE_REACHED'));
  });

  it('answers UNKNOWN_MEMBER_ID to an unknown member, which then rejoins with epoch 0 and the same id', () => {
    const h = new Harness();
    expect(h.heartbeat({ memberId: 'a', memberEpoch: 3 }).errorCode).toBe(code('UNKNOWN_MEMBER_ID'));
    expect(h.join('a').memberEpoch).toBe(1);
  });

  it('fences a heartbeat with a stale epoch, and a fenced member rejoins keeping its target', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    const b = new Client(h, 'b');
    a.join();
    b.join();
    settle([a, b]);
    const aTarget = keys(h.member('a').target);
    expect(a.memberEpoch).toBe(2);
    const fenced = h.heartbeat({ memberId: 'a', memberEpoch: 7, ownedPartitions: a.owned });
    expect(fenced.errorCode).toBe(code('FENCED_MEMBER_EPOCH'));
    expect(fenced.assignment).toEqual([]);
    // The fenced member still holds its partitions until it rejoins (nobody else may take them).
    expect(keys(h.member('a').assigned)).toEqual(aTarget);
    const rejoined = a.join();
    expect(rejoined.errorCode).toBe(0);
    expect(keys(rejoined.assignment)).toEqual(aTarget);
    expect(h.coordinator.describeGroup('g').groupEpoch).toBe(2);
  });

  it('accepts the previous epoch once when the last response was lost', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    a.join();
    const b = new Client(h, 'b');
    b.join();
    // a's response moving it to a new epoch is "lost": it keeps sending its old epoch.
    const oldEpoch = a.memberEpoch;
    const lost = h.heartbeat({ memberId: 'a', memberEpoch: oldEpoch, ownedPartitions: a.owned });
    expect(lost.errorCode).toBe(0);
    h.heartbeat({ memberId: 'a', memberEpoch: oldEpoch, ownedPartitions: lost.assignment });
    const epochNow = h.member('a').memberEpoch;
    expect(epochNow).toBeGreaterThan(oldEpoch);
    const retry = h.heartbeat({ memberId: 'a', memberEpoch: oldEpoch, ownedPartitions: lost.assignment });
    expect(retry.errorCode).toBe(0);
    expect(retry.memberEpoch).toBe(epochNow);
    // Claiming partitions it never held with the previous epoch is a zombie: fenced.
    const zombie = h.heartbeat({ memberId: 'a', memberEpoch: oldEpoch, ownedPartitions: [tp('orders', 0), tp('orders', 1), tp('orders', 2), tp('orders', 3), tp('orders', 4), tp('orders', 5)] });
    expect(zombie.errorCode).toBe(code('FENCED_MEMBER_EPOCH'));
  });

  it('leave releases partitions at once and is idempotent', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    const b = new Client(h, 'b');
    a.join();
    b.join();
    settle([a, b]);
    expect(a.leave().errorCode).toBe(0);
    expect(h.heartbeat({ memberId: 'a', memberEpoch: -1 }).errorCode).toBe(0);
    expect(keys(b.beat().assignment)).toHaveLength(6);
    const last = h.coordinator.describeGroup('g').history.at(-1)!;
    expect(last.reason).toBe('leave');
    expect(last.memberId).toBe('a');
  });
});

describe('session timeout', () => {
  it('removes a member silent for its session timeout, not earlier, and gives its partitions to survivors', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    const b = new Client(h, 'b');
    a.join({ sessionTimeoutMs: 5000 });
    b.join({ sessionTimeoutMs: 30_000 });
    settle([a, b]);
    h.advance(4999);
    b.beat();
    h.tick();
    expect(h.coordinator.describeGroup('g').members).toHaveLength(2);
    h.advance(1);
    h.tick();
    const group = h.coordinator.describeGroup('g');
    expect(group.members.map((m) => m.memberId)).toEqual(['b']);
    expect(group.history.at(-1)).toMatchObject({ reason: 'session-timeout', memberId: 'a' });
    expect(keys(b.beat().assignment)).toHaveLength(6);
    expect(a.beat().errorCode).toBe(code('UNKNOWN_MEMBER_ID'));
  });

  it('heartbeats keep a member alive indefinitely', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    a.join();
    for (let i = 0; i < 100; i += 1) {
      h.advance(9000);
      a.beat();
      h.tick();
    }
    expect(h.coordinator.describeGroup('g').members).toHaveLength(1);
  });
});

describe('revoke before assign', () => {
  it('gives a newcomer partitions only after their owner released them, never to two members', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    a.join();
    expect(a.owned).toHaveLength(6);
    const b = new Client(h, 'b');
    // b joins: its target has 3 partitions, all still held by a.
    expect(b.join().assignment).toEqual([]);
    expect(h.member('b').state).toBe('unreleased-partitions');
    const bTarget = keys(h.member('b').target);
    expect(bTarget).toHaveLength(3);
    // a learns about the revocation: its assignment shrinks, the 3 are pending revocation.
    const aResponse = h.heartbeat({ memberId: 'a', memberEpoch: a.memberEpoch, ownedPartitions: a.owned });
    expect(aResponse.assignment).toHaveLength(3);
    expect(keys(h.member('a').pendingRevocation)).toEqual(bTarget);
    expect(aResponse.memberEpoch).toBe(1); // a stays at its epoch until it has released
    expect(b.beat().assignment).toEqual([]);
    // a reports it released them.
    const released = h.heartbeat({ memberId: 'a', memberEpoch: 1, ownedPartitions: aResponse.assignment });
    expect(released.memberEpoch).toBe(2);
    expect(h.member('a').pendingRevocation).toEqual([]);
    expect(keys(b.beat().assignment)).toEqual(bTarget);
    expect(h.coordinator.describeGroup('g').state).toBe('stable');
  });

  it('members whose partitions do not move keep them throughout a rebalance', () => {
    const h = new Harness(new FakeTopics({ orders: 12 }));
    const clients = ['a', 'b', 'c'].map((id) => new Client(h, id));
    for (const client of clients) client.join();
    settle(clients);
    const before = new Map(clients.map((c) => [c.memberId, keys(c.owned)]));
    clients[2]!.leave();
    const survivors = clients.slice(0, 2);
    for (let round = 0; round < 5; round += 1) {
      for (const client of survivors) {
        client.beat();
        for (const key of before.get(client.memberId)!) expect(keys(client.owned)).toContain(key);
      }
    }
    expect(survivors.map((c) => c.owned.length)).toEqual([6, 6]);
  });

  it('fences a member that does not release within its rebalance timeout', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    a.join({ rebalanceTimeoutMs: 5000 });
    const b = new Client(h, 'b');
    b.join();
    // a hears about the revocation but keeps reporting all six partitions (stuck in user code).
    const stuck = h.heartbeat({ memberId: 'a', memberEpoch: 1, ownedPartitions: a.owned });
    expect(stuck.assignment).toHaveLength(3);
    for (let i = 0; i < 4; i += 1) {
      h.advance(1000);
      h.heartbeat({ memberId: 'a', memberEpoch: 1, ownedPartitions: a.owned });
      b.beat();
      h.tick();
    }
    expect(b.owned).toEqual([]);
    h.advance(1000);
    h.tick();
    expect(h.coordinator.describeGroup('g').history.at(-1)).toMatchObject({ reason: 'fenced', memberId: 'a' });
    expect(b.beat().assignment).toHaveLength(6);
  });
});

describe('committed offsets', () => {
  function twoMembers() {
    const h = new Harness();
    const a = new Client(h, 'a');
    const b = new Client(h, 'b');
    a.join();
    b.join();
    settle([a, b]);
    return { h, a, b };
  }
  const commit = (h: Harness, memberId: string, memberEpoch: number, partition: number, offset = 10n) =>
    h.coordinator.commitOffsets({ groupId: 'g', memberId, memberEpoch, offsets: [{ topic: 'orders', partition, offset }] }, h.nowMs).results[0]!.errorCode;

  it('accepts commits from the owner and rejects others per partition', () => {
    const { h, a, b } = twoMembers();
    const mine = a.owned[0]!.partition;
    const theirs = b.owned[0]!.partition;
    const result = h.coordinator.commitOffsets(
      {
        groupId: 'g',
        memberId: 'a',
        memberEpoch: a.memberEpoch,
        offsets: [
          { topic: 'orders', partition: mine, offset: 42n, metadata: 'm' },
          { topic: 'orders', partition: theirs, offset: 7n },
          { topic: 'nope', partition: 0, offset: 1n },
          { topic: 'orders', partition: mine, offset: -1n },
        ],
      },
      h.nowMs,
    );
    expect(result.results.map((r) => r.errorCode)).toEqual([0, code('NOT_PARTITION_OWNER'), code('UNKNOWN_TOPIC_OR_PARTITION'), code('INVALID_ARGUMENT')]);
    expect(result.records).toHaveLength(1);
    expect(h.coordinator.fetchOffsets('g', [tp('orders', mine), tp('orders', theirs)])).toEqual([
      { topic: 'orders', partition: mine, offset: 42n, metadata: 'm' },
      { topic: 'orders', partition: theirs, offset: -1n, metadata: '' },
    ]);
  });

  it('rejects commits with a stale or future epoch and from unknown members', () => {
    const { h, a } = twoMembers();
    const mine = a.owned[0]!.partition;
    expect(commit(h, 'a', a.memberEpoch + 1, mine)).toBe(code('FENCED_MEMBER_EPOCH'));
    expect(commit(h, 'a', 0, mine)).toBe(code('FENCED_MEMBER_EPOCH'));
    expect(commit(h, 'zombie', 1, mine)).toBe(code('UNKNOWN_MEMBER_ID'));
  });

  it('lets a revoking member commit until it reports the release, then never again', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    a.join();
    new Client(h, 'b').join();
    const response = h.heartbeat({ memberId: 'a', memberEpoch: 1, ownedPartitions: a.owned });
    const revoked = h.member('a').pendingRevocation[0]!.partition;
    // Commit on revoke, before reporting the release.
    expect(commit(h, 'a', 1, revoked)).toBe(0);
    h.heartbeat({ memberId: 'a', memberEpoch: 1, ownedPartitions: response.assignment });
    expect(commit(h, 'a', 1, revoked)).toBe(code('NOT_PARTITION_OWNER'));
    expect(commit(h, 'a', 2, revoked)).toBe(code('NOT_PARTITION_OWNER'));
  });

  it('is not falsely fenced by an unrelated epoch bump (per-partition assignment epochs)', () => {
    const h = new Harness(new FakeTopics({ orders: 4, audit: 2 }));
    const a = new Client(h, 'a');
    a.join();
    const epochBefore = a.memberEpoch;
    const partition = a.owned[0]!.partition;
    // A member on another topic joins: group epoch bumps, a's partitions do not move.
    new Client(h, 'x', ['audit']).join();
    expect(commit(h, 'a', epochBefore, partition)).toBe(0);
    a.beat();
    expect(a.memberEpoch).toBeGreaterThan(epochBefore);
    // A commit still in flight from before the heartbeat carries the old epoch: accepted.
    expect(commit(h, 'a', epochBefore, partition)).toBe(0);
    expect(commit(h, 'a', a.memberEpoch, partition)).toBe(0);
  });

  it('accepts standalone commits only while the group has no members', () => {
    const h = new Harness();
    const standalone = (partition: number) =>
      h.coordinator.commitOffsets({ groupId: 'g', memberId: '', memberEpoch: -1, offsets: [{ topic: 'orders', partition, offset: 5n }] }, h.nowMs);
    const first = standalone(0);
    expect(first.results[0]!.errorCode).toBe(0);
    expect(first.records.map((r) => r.type)).toEqual(['group', 'offset']);
    h.join('a');
    expect(standalone(1).results[0]!.errorCode).toBe(code('NON_EMPTY_GROUP'));
    expect(h.coordinator.fetchOffsets('g')).toEqual([{ topic: 'orders', partition: 0, offset: 5n, metadata: '' }]);
  });

  it('resets offsets only for an empty group', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    a.join();
    expect(() => h.coordinator.resetOffsets('g', [{ topic: 'orders', partition: 0, offset: 0n }], h.nowMs)).toThrow(/NON_EMPTY_GROUP/);
    a.leave();
    expect(() => h.coordinator.resetOffsets('g', [{ topic: 'orders', partition: 9, offset: 0n }], h.nowMs)).toThrow(/UNKNOWN_TOPIC_OR_PARTITION/);
    const records = h.coordinator.resetOffsets('g', [{ topic: 'orders', partition: 0, offset: 3n }], h.nowMs);
    expect(records).toHaveLength(1);
    expect(h.coordinator.fetchOffsets('g', [tp('orders', 0)])[0]!.offset).toBe(3n);
    expect(h.coordinator.fetchOffsets('unknown-group', [tp('orders', 0)])[0]!.offset).toBe(-1n);
  });

  it('deletes only empty groups', () => {
    const h = new Harness();
    const a = new Client(h, 'a');
    a.join();
    expect(() => h.coordinator.deleteGroup('g')).toThrow(/NON_EMPTY_GROUP/);
    a.leave();
    expect(h.coordinator.deleteGroup('g')).toEqual([{ type: 'group-deleted', groupId: 'g' }]);
    expect(() => h.coordinator.describeGroup('g')).toThrow(/GROUP_ID_NOT_FOUND/);
  });
});

describe('topic changes', () => {
  it('rebalances when a subscribed topic grows and when it is deleted, dropping its offsets', () => {
    const h = new Harness(new FakeTopics({ orders: 2 }));
    const a = new Client(h, 'a');
    const b = new Client(h, 'b');
    a.join();
    b.join();
    settle([a, b]);
    h.coordinator.commitOffsets({ groupId: 'g', memberId: 'a', memberEpoch: a.memberEpoch, offsets: [{ topic: 'orders', partition: a.owned[0]!.partition, offset: 1n }] }, h.nowMs);
    h.topics.counts.set('orders', 4);
    h.log.push(...h.coordinator.onTopicsChanged(h.nowMs));
    expect(h.coordinator.describeGroup('g').history.at(-1)).toMatchObject({ reason: 'topic-change', memberId: null });
    settle([a, b]);
    expect(a.owned.length + b.owned.length).toBe(4);
    h.topics.counts.delete('orders');
    h.log.push(...h.coordinator.onTopicsChanged(h.nowMs));
    settle([a, b]);
    expect([...a.owned, ...b.owned]).toEqual([]);
    expect(h.coordinator.fetchOffsets('g')).toEqual([]);
    expect(h.coordinator.describeGroup('g').state).toBe('stable');
  });

  it('notices a topic change on a heartbeat even without onTopicsChanged', () => {
    const h = new Harness(new FakeTopics({}));
    const a = new Client(h, 'a');
    a.join();
    expect(a.owned).toEqual([]);
    h.topics.counts.set('orders', 3);
    a.beat();
    expect(a.owned).toHaveLength(3);
  });
});

describe('rebalance history', () => {
  it('records when, why, what moved from whom to whom, and how long until stable', () => {
    const h = new Harness(new FakeTopics({ orders: 4 }));
    const a = new Client(h, 'a');
    a.join();
    h.advance(100);
    const b = new Client(h, 'b');
    b.join();
    const joinAtMs = h.nowMs;
    h.advance(250);
    a.beat(); // learns of the revocation
    h.advance(250);
    a.beat(); // reports the release
    b.beat(); // takes its partitions: the group is stable
    const history = h.coordinator.describeGroup('g').history;
    expect(history.map((e) => [e.groupEpoch, e.reason, e.memberId])).toEqual([
      [1, 'join', 'a'],
      [2, 'join', 'b'],
    ]);
    expect(history[0]!.moves).toHaveLength(4);
    expect(history[0]!.moves.every((m) => m.from === null && m.to === 'a')).toBe(true);
    expect(history[0]!.stableAfterMs).toBe(0);
    const second = history[1]!;
    expect(second.atMs).toBe(joinAtMs);
    expect(second.moves).toHaveLength(2);
    expect(second.moves.every((m) => m.from === 'a' && m.to === 'b')).toBe(true);
    expect(keys(second.moves)).toEqual(keys(h.member('b').assigned));
    expect(second.stableAfterMs).toBe(500);
  });

  it('keeps only the newest events', () => {
    const h = new Harness(new FakeTopics({ orders: 2 }), { rebalanceHistoryMax: 3 });
    for (let i = 0; i < 6; i += 1) {
      h.join(`m${i}`);
      h.heartbeat({ memberId: `m${i}`, memberEpoch: -1 });
    }
    expect(h.coordinator.describeGroup('g').history.map((e) => e.groupEpoch)).toEqual([10, 11, 12]);
  });
});

describe('replay and snapshot', () => {
  function busyHarness(): { h: Harness; clients: Client[] } {
    const h = new Harness(new FakeTopics({ orders: 8, audit: 3 }));
    const clients = [new Client(h, 'a'), new Client(h, 'b', ['orders', 'audit']), new Client(h, 'c')];
    for (const client of clients) client.join({ clientId: `app-${client.memberId}`, host: '10.0.0.1' });
    settle(clients, 2);
    const a = clients[0]!;
    h.coordinator.commitOffsets({ groupId: 'g', memberId: 'a', memberEpoch: a.memberEpoch, offsets: a.owned.map((p, i) => ({ ...p, offset: BigInt(100 + i), metadata: `m${i}` })) }, h.nowMs).records.forEach((r) => h.log.push(r));
    h.log.push(...h.coordinator.commitOffsets({ groupId: 'other', memberId: '', memberEpoch: -1, offsets: [{ topic: 'audit', partition: 1, offset: 9n }] }, h.nowMs).records);
    clients[2]!.leave();
    clients[0]!.beat(); // mid-rebalance: some partitions pending
    return { h, clients };
  }

  function replayed(records: readonly unknown[], topics: FakeTopics): Coordinator {
    const fresh = new Coordinator({ topics });
    for (const record of records) fresh.replay(record as never);
    return fresh;
  }

  it('replaying every emitted record restores members, assignments, offsets and history', () => {
    const { h } = busyHarness();
    const restored = replayed(h.log, h.topics);
    for (const groupId of ['g', 'other']) expect(restored.describeGroup(groupId)).toEqual(h.coordinator.describeGroup(groupId));
    expect(restored.snapshot()).toEqual(h.coordinator.snapshot());
    expect(restored.fetchOffsets('g')).toEqual(h.coordinator.fetchOffsets('g'));
  });

  it('a snapshot replays to the same state, and so does a snapshot followed by later records', () => {
    const { h, clients } = busyHarness();
    const snapshot = h.coordinator.snapshot();
    expect(snapshot.length).toBeLessThan(h.log.length);
    const restored = replayed(snapshot, h.topics);
    expect(restored.snapshot()).toEqual(snapshot);
    const mark = h.log.length;
    settle(clients.slice(0, 2), 3);
    const later = replayed([...snapshot, ...h.log.slice(mark)], h.topics);
    expect(later.describeGroup('g')).toEqual(h.coordinator.describeGroup('g'));
  });

  it('members continue seamlessly after a restart: no expiry from downtime, same epochs accepted', () => {
    const { h, clients } = busyHarness();
    const restarted = new Harness(h.topics);
    for (const record of h.log) restarted.coordinator.replay(record);
    // The broker was down for a minute: longer than every session timeout.
    restarted.nowMs = h.nowMs + 60_000;
    restarted.tick();
    expect(restarted.coordinator.describeGroup('g').members.map((m) => m.memberId)).toEqual(['a', 'b']);
    const moved = clients.slice(0, 2).map((c) => Object.assign(new Client(restarted, c.memberId, c.subscribedTopics), { memberEpoch: c.memberEpoch, owned: c.owned }));
    for (const client of moved) expect(client.beat().errorCode).toBe(0);
    settle(moved);
    expect(restarted.coordinator.describeGroup('g').state).toBe('stable');
    // Deadlines did start at the first tick: silence after the restart still expires members.
    restarted.advance(10_000);
    restarted.tick();
    expect(restarted.coordinator.describeGroup('g').members).toEqual([]);
  });
});
