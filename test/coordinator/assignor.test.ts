import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assign, type Assignment, type AssignorMember } from '../../src/coordinator/assignor.js';
import type { TopicPartition } from '../../src/coordinator/types.js';
import { shuffled } from '../helpers/shuffled.js';

const key = (tp: TopicPartition) => `${tp.topic}/${tp.partition}`;

function allPartitions(partitionCounts: ReadonlyMap<string, number>, topics: Iterable<string>): string[] {
  const keys: string[] = [];
  for (const topic of new Set(topics)) {
    const count = partitionCounts.get(topic);
    for (let partition = 0; partition < (count ?? 0); partition += 1) keys.push(`${topic}/${partition}`);
  }
  return keys.sort();
}

/** Property 1: each partition of a subscribed topic is owned by exactly one subscribed member. */
function expectExactCover(members: readonly AssignorMember[], partitionCounts: ReadonlyMap<string, number>, result: Assignment): void {
  const owners = new Map<string, string>();
  for (const member of members) {
    for (const tp of result.get(member.memberId) ?? []) {
      expect(owners.has(key(tp)), `${key(tp)} owned twice`).toBe(false);
      expect(member.subscribedTopics).toContain(tp.topic);
      owners.set(key(tp), member.memberId);
    }
  }
  expect([...owners.keys()].sort()).toEqual(allPartitions(partitionCounts, members.flatMap((m) => m.subscribedTopics)));
  expect([...result.keys()].sort()).toEqual(members.map((m) => m.memberId).sort());
}

function keysOf(result: Assignment, memberId: string): Set<string> {
  return new Set((result.get(memberId) ?? []).map(key));
}

const topicsArbitrary = fc
  .array(fc.integer({ min: 1, max: 24 }), { minLength: 1, maxLength: 3 })
  .map((counts) => new Map(counts.map((count, index) => [`topic-${index}`, count])));

type Step = { kind: 'join'; memberId: string } | { kind: 'leave'; index: number };
const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('join' as const), memberId: fc.string({ minLength: 1, maxLength: 6 }) }),
  fc.record({ kind: fc.constant('leave' as const), index: fc.nat() }),
);

describe('assignor (homogeneous subscriptions)', () => {
  it('keeps exact cover, bounded loads and minimal movement over random join/leave sequences', () => {
    fc.assert(
      fc.property(topicsArbitrary, fc.array(stepArbitrary, { minLength: 1, maxLength: 40 }), fc.nat(), (partitionCounts, steps, seed) => {
        const topics = [...partitionCounts.keys()];
        const partitionsTotal = [...partitionCounts.values()].reduce((a, b) => a + b, 0);
        let memberIds: string[] = [];
        let previous: Assignment = new Map();
        for (const step of steps) {
          const before = memberIds;
          if (step.kind === 'join') {
            if (memberIds.includes(step.memberId)) continue;
            memberIds = [...memberIds, step.memberId];
          } else {
            if (memberIds.length === 0) continue;
            memberIds = memberIds.filter((_, index) => index !== step.index % memberIds.length);
          }
          const members = memberIds.map((memberId) => ({ memberId, subscribedTopics: topics }));
          const result = assign({ members, partitionCounts, previous });
          // 1. exact cover by subscribed members
          expectExactCover(members, partitionCounts, result);
          // 2. bounded loads: floor or ceil of P/N
          if (members.length > 0) {
            for (const partitions of result.values()) {
              expect(partitions.length).toBeLessThanOrEqual(Math.ceil(partitionsTotal / members.length));
              expect(partitions.length).toBeGreaterThanOrEqual(Math.floor(partitionsTotal / members.length));
            }
          }
          if (step.kind === 'leave') {
            // 3. survivors keep everything they had
            for (const memberId of memberIds) {
              for (const partition of keysOf(previous, memberId)) expect(keysOf(result, memberId).has(partition)).toBe(true);
            }
          } else {
            // 4. old members only lose partitions, and only to the newcomer, no more than balance needs
            const newcomer = step.memberId;
            for (const memberId of before) {
              for (const partition of keysOf(result, memberId)) expect(keysOf(previous, memberId).has(partition)).toBe(true);
            }
            const moved = before.reduce((sum, memberId) => sum + keysOf(previous, memberId).size - keysOf(result, memberId).size, 0);
            const previouslyUnowned = before.length === 0 ? partitionsTotal : 0;
            expect(keysOf(result, newcomer).size).toBe(moved + previouslyUnowned);
            expect(keysOf(result, newcomer).size).toBeLessThanOrEqual(Math.ceil(partitionsTotal / memberIds.length));
          }
          // 5. permutation invariance of members and of the previous lists
          const permuted = assign({
            members: shuffled(members, seed),
            partitionCounts: new Map(shuffled([...partitionCounts], seed + 1)),
            previous: new Map(shuffled([...previous], seed + 2).map(([id, tps]) => [id, shuffled(tps, seed + 3)])),
          });
          expect(permuted).toEqual(result);
          previous = result;
        }
      }),
      { numRuns: 300 },
    );
  });

  it('with no previous assignment depends only on membership, not on arrival order', () => {
    fc.assert(
      fc.property(topicsArbitrary, fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 12 }), fc.nat(), (partitionCounts, ids, seed) => {
        const topics = [...partitionCounts.keys()];
        const fresh = (order: string[]) =>
          assign({ members: order.map((memberId) => ({ memberId, subscribedTopics: topics })), partitionCounts, previous: new Map() });
        expect(fresh(shuffled(ids, seed))).toEqual(fresh(ids));
      }),
    );
  });

  it('spreads partitions (consistent hashing), not in member-id order blocks', () => {
    const partitionCounts = new Map([['orders', 12]]);
    const members = ['a', 'b', 'c'].map((memberId) => ({ memberId, subscribedTopics: ['orders'] }));
    const result = assign({ members, partitionCounts, previous: new Map() });
    for (const partitions of result.values()) expect(partitions).toHaveLength(4);
    const contiguous = [...result.values()].every((tps) => tps[3]!.partition - tps[0]!.partition === 3);
    expect(contiguous).toBe(false);
  });
});

describe('assignor (heterogeneous subscriptions)', () => {
  const subscriptionArbitrary = fc.subarray(['topic-0', 'topic-1', 'topic-2', 'missing'], { minLength: 1 });

  it('always covers every subscribed partition with exactly one subscriber, deterministically', () => {
    fc.assert(
      fc.property(
        topicsArbitrary,
        fc.uniqueArray(fc.record({ memberId: fc.string({ minLength: 1, maxLength: 4 }), subscribedTopics: subscriptionArbitrary }), {
          selector: (m) => m.memberId,
          maxLength: 8,
        }),
        fc.nat(),
        (partitionCounts, members, seed) => {
          const first = assign({ members, partitionCounts, previous: new Map() });
          expectExactCover(members, partitionCounts, first);
          // Loads stay within ceil(fair share) (fair share = sum of partitions(t) / subscribers(t)).
          for (const member of members) {
            let share = 0;
            for (const topic of new Set(member.subscribedTopics)) {
              const subscribers = members.filter((m) => m.subscribedTopics.includes(topic)).length;
              share += (partitionCounts.get(topic) ?? 0) / subscribers;
            }
            expect(first.get(member.memberId)!.length).toBeLessThanOrEqual(Math.ceil(share - 1e-9));
          }
          // A second round with the first as previous is stable: nothing moves.
          const second = assign({ members: shuffled(members, seed), partitionCounts, previous: first });
          expectExactCover(members, partitionCounts, second);
          expect(second).toEqual(first);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('balances members that share a topic next to a member with its own topic', () => {
    const partitionCounts = new Map([
      ['shared', 6],
      ['solo', 4],
    ]);
    const members = [
      { memberId: 'a', subscribedTopics: ['shared'] },
      { memberId: 'b', subscribedTopics: ['shared'] },
      { memberId: 'c', subscribedTopics: ['shared', 'solo'] },
    ];
    const result = assign({ members, partitionCounts, previous: new Map() });
    expectExactCover(members, partitionCounts, result);
    // fair shares: a = b = 2, c = 2 + 4 = 6
    expect(result.get('a')).toHaveLength(2);
    expect(result.get('b')).toHaveLength(2);
    expect(result.get('c')).toHaveLength(6);
  });

  it('drops partitions of unsubscribed or deleted topics and partitions past a shrunk count', () => {
    const previous = new Map([['a', [{ topic: 't', partition: 0 }, { topic: 't', partition: 5 }, { topic: 'gone', partition: 0 }]]]);
    const result = assign({ members: [{ memberId: 'a', subscribedTopics: ['t'] }], partitionCounts: new Map([['t', 2]]), previous });
    expect(result.get('a')).toEqual([
      { topic: 't', partition: 0 },
      { topic: 't', partition: 1 },
    ]);
  });
});
