/**
 * Model test: random join / heartbeat (prompt or slow to release) / leave / crash / time
 * sequences through the Coordinator, with clients that behave like real ones (they drop their
 * partitions when their own session timer, or the rebalance timer of a revocation the coordinator
 * has not yet acknowledged, runs out). After every step:
 *   - the coordinator never lets two members hold one partition;
 *   - no two clients that believe they are members consume the same partition.
 * At the end, with every live client heartbeating, the group converges: stable, every partition
 * owned by exactly one live client, each running exactly its target.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HeartbeatResponse } from '../../src/coordinator/coordinator.js';
import type { TopicPartition } from '../../src/coordinator/types.js';
import { FakeTopics, Harness, keys } from './harness.js';

const sessionTimeoutMs = 6000;
const rebalanceTimeoutMs = 4000;

class ModelClient {
  inGroup = false;
  memberEpoch = 0;
  owned: TopicPartition[] = [];
  lastOkMs = 0;
  revokingSinceMs: number | null = null;
  constructor(
    readonly h: Harness,
    readonly memberId: string,
  ) {}

  join(): void {
    this.owned = [];
    this.apply(this.h.join(this.memberId, { sessionTimeoutMs, rebalanceTimeoutMs }), true, []);
  }

  beat(release: boolean): void {
    if (!this.inGroup) return;
    const reported = this.owned;
    this.apply(this.h.heartbeat({ memberId: this.memberId, memberEpoch: this.memberEpoch, ownedPartitions: reported }), release, reported);
  }

  leave(): void {
    if (!this.inGroup) return;
    this.h.heartbeat({ memberId: this.memberId, memberEpoch: -1 });
    this.drop();
  }

  drop(): void {
    this.inGroup = false;
    this.owned = [];
    this.revokingSinceMs = null;
  }

  /** The client's own timers, as a real consumer runs them. */
  checkTimers(nowMs: number): void {
    if (!this.inGroup) return;
    if (nowMs - this.lastOkMs >= sessionTimeoutMs) this.drop();
    else if (this.revokingSinceMs !== null && nowMs - this.revokingSinceMs >= rebalanceTimeoutMs) this.drop();
  }

  /**
   * A revocation counts as done only once a heartbeat reporting it succeeded: until then the
   * coordinator's rebalance timer runs, so the client's timer (revokingSinceMs) runs too.
   */
  private apply(response: HeartbeatResponse, release: boolean, reported: readonly TopicPartition[]): void {
    if (response.errorCode !== 0) {
      this.drop();
      return;
    }
    this.inGroup = true;
    this.memberEpoch = response.memberEpoch;
    this.lastOkMs = this.h.nowMs;
    const assigned = new Set(keys(response.assignment));
    const unacknowledged = reported.some((p) => !assigned.has(`${p.topic}/${p.partition}`));
    if (unacknowledged) this.revokingSinceMs ??= this.h.nowMs;
    else this.revokingSinceMs = null;
    const mustRevoke = this.owned.filter((p) => !assigned.has(`${p.topic}/${p.partition}`));
    // Slow: still processing what it must give up, and already starting on the new ones.
    this.owned = release ? response.assignment : [...mustRevoke, ...response.assignment];
  }
}

type Command =
  | { kind: 'join' | 'leave' | 'crash'; client: number }
  | { kind: 'beat'; client: number; release: boolean }
  | { kind: 'time'; ms: number };

const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('join' as const), client: fc.nat(4) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('beat' as const), client: fc.nat(4), release: fc.boolean() }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('leave' as const), client: fc.nat(4) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('crash' as const), client: fc.nat(4) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('time' as const), ms: fc.integer({ min: 0, max: 3000 }) }), weight: 3 },
);

function expectClientsDisjoint(clients: readonly ModelClient[]): void {
  const consumer = new Map<string, string>();
  for (const client of clients) {
    if (!client.inGroup) continue;
    for (const key of keys(client.owned)) {
      expect(consumer.get(key), `${key} consumed by ${consumer.get(key)} and ${client.memberId}`).toBeUndefined();
      consumer.set(key, client.memberId);
    }
  }
}

function run(h: Harness, clients: ModelClient[], command: Command): void {
  switch (command.kind) {
    case 'join':
      if (!clients[command.client]!.inGroup) clients[command.client]!.join();
      return;
    case 'beat':
      return clients[command.client]!.beat(command.release);
    case 'leave':
      return clients[command.client]!.leave();
    case 'crash':
      return clients[command.client]!.drop();
    case 'time':
      h.advance(command.ms);
      for (const client of clients) client.checkTimers(h.nowMs);
      h.tick();
      return;
  }
}

describe('coordinator model', () => {
  it('never lets two members consume a partition, and converges once clients behave', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.array(commandArbitrary, { minLength: 10, maxLength: 60, size: 'max' }), (partitions, commands) => {
        const h = new Harness(new FakeTopics({ orders: partitions }), { sessionTimeoutMsMin: 1000 });
        const clients = [0, 1, 2, 3, 4].map((i) => new ModelClient(h, `m${i}`));
        for (const command of commands) {
          run(h, clients, command);
          expectClientsDisjoint(clients);
        }
        // Convergence: crashed clients expire; live ones heartbeat, release promptly, and rejoin
        // if they were fenced meanwhile.
        const live = clients.filter((c) => c.inGroup);
        for (let round = 0; round < 12; round += 1) {
          h.advance(1000);
          for (const client of live) {
            client.checkTimers(h.nowMs);
            if (client.inGroup) client.beat(true);
            else client.join();
          }
          h.tick();
          expectClientsDisjoint(clients);
        }
        for (const client of live) client.beat(true);
        if (live.length === 0) return;
        const group = h.coordinator.describeGroup('g');
        expect(group.state).toBe('stable');
        expect(group.members.map((m) => m.memberId)).toEqual(live.map((c) => c.memberId));
        for (const client of live) expect(keys(client.owned)).toEqual(keys(h.member(client.memberId).target));
        expect(live.flatMap((c) => keys(c.owned)).sort()).toEqual(keys(Array.from({ length: partitions }, (_, p) => ({ topic: 'orders', partition: p }))));
      }),
      { numRuns: 300 },
    );
  });
});
