import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { placeReplicas, type PlacementBroker, type PlacementInput } from '../../src/cluster/placement.js';
import { RillError } from '../../src/lib/errors.js';
import { shuffled } from '../helpers/shuffled.js';

function countBy(lists: readonly (readonly number[])[], pick: (list: readonly number[]) => readonly number[]): Map<number, number> {
  const counts = new Map<number, number>();
  for (const list of lists) for (const id of pick(list)) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

/** Distinct live replicas, replica loads and preferred-leader counts within floor..ceil of the average. */
function expectValid(input: PlacementInput, result: number[][]): void {
  const ids = input.brokers.map((b) => b.nodeId);
  expect(result).toHaveLength(input.partitions);
  for (const list of result) {
    expect(list).toHaveLength(input.replicationFactor);
    expect(new Set(list).size).toBe(list.length);
    for (const id of list) expect(ids).toContain(id);
  }
  const total = input.partitions * input.replicationFactor;
  const n = ids.length;
  const loads = countBy(result, (list) => list);
  const leads = countBy(result, (list) => list.slice(0, 1));
  for (const id of ids) {
    expect(loads.get(id) ?? 0, `load of ${id}`).toBeLessThanOrEqual(Math.ceil(total / n));
    expect(loads.get(id) ?? 0, `load of ${id}`).toBeGreaterThanOrEqual(Math.floor(total / n));
    expect(leads.get(id) ?? 0, `leaderships of ${id}`).toBeLessThanOrEqual(Math.ceil(input.partitions / n));
    expect(leads.get(id) ?? 0, `leaderships of ${id}`).toBeGreaterThanOrEqual(Math.floor(input.partitions / n));
  }
}

/**
 * The oracle for removals, independent of the placement code: can the empty slots left by the
 * removed broker be filled without moving any survivor's replica, with every load ending within
 * floor..ceil of the average? A max flow: slot -> survivor not in the partition -> survivor's room
 * below the floor, or one of the (T mod N) extras that lift a broker to the ceiling.
 */
function survivorsCanKeepAll(previous: readonly (readonly number[])[], survivors: readonly number[], replicationFactor: number): boolean {
  const total = previous.length * replicationFactor;
  const base = Math.floor(total / survivors.length);
  const extras = total - base * survivors.length;
  const kept = previous.map((list) => list.filter((id) => survivors.includes(id)));
  const load = new Map(survivors.map((id) => [id, kept.filter((list) => list.includes(id)).length]));
  // Nodes: 0 source, 1 sink, 2 pool, 3.. partitions, then survivors.
  const partitionNode = (p: number) => 3 + p;
  const survivorNode = (i: number) => 3 + previous.length + i;
  const size = 3 + previous.length + survivors.length;
  const capacity = Array.from({ length: size }, () => new Array<number>(size).fill(0));
  let demand = 0;
  previous.forEach((_, p) => {
    const missing = replicationFactor - kept[p]!.length;
    demand += missing;
    capacity[0]![partitionNode(p)] = missing;
    survivors.forEach((id, i) => {
      if (!kept[p]!.includes(id)) capacity[partitionNode(p)]![survivorNode(i)] = 1;
    });
  });
  let extrasInUse = 0;
  survivors.forEach((id, i) => {
    const held = load.get(id)!;
    if (held > base + 1) extrasInUse = Infinity;
    if (held === base + 1) extrasInUse += 1;
    capacity[survivorNode(i)]![1] = Math.max(0, base - held);
    capacity[survivorNode(i)]![2] = held <= base ? 1 : 0;
  });
  if (extrasInUse > extras) return false;
  capacity[2]![1] = extras - extrasInUse;
  let flow = 0;
  for (;;) {
    const parent = new Array<number>(size).fill(-1);
    parent[0] = 0;
    const queue = [0];
    for (let head = 0; head < queue.length && parent[1] === -1; head += 1) {
      const node = queue[head]!;
      for (let next = 0; next < size; next += 1) {
        if (parent[next] === -1 && capacity[node]![next]! > 0) {
          parent[next] = node;
          queue.push(next);
        }
      }
    }
    if (parent[1] === -1) return flow === demand;
    for (let node = 1; node !== 0; node = parent[node]!) {
      capacity[parent[node]!]![node]! -= 1;
      capacity[node]![parent[node]!]! += 1;
    }
    flow += 1;
  }
}

const pairs = (lists: readonly (readonly number[])[]): Set<string> => new Set(lists.flatMap((list, p) => list.map((id) => `${p}:${id}`)));

const brokersArbitrary = (racks: boolean): fc.Arbitrary<PlacementBroker[]> =>
  fc.uniqueArray(fc.nat(60), { minLength: 1, maxLength: 9 }).chain((ids) =>
    racks
      ? fc.tuple(...ids.map(() => fc.constantFrom('a', 'b', 'c'))).map((rs) => ids.map((nodeId, i) => ({ nodeId, rack: rs[i]! })))
      : fc.constant(ids.map((nodeId) => ({ nodeId }))),
  );

const inputArbitrary: fc.Arbitrary<PlacementInput> = fc
  .tuple(
    fc.boolean().chain(brokersArbitrary),
    fc.integer({ min: 1, max: 40 }),
    fc.integer({ min: 1, max: 4 }),
    fc.constantFrom('orders', 'audit', 't'),
  )
  .map(([brokers, partitions, rf, topic]) => ({ brokers, topic, partitions, replicationFactor: Math.min(rf, brokers.length) }));

describe('placeReplicas', () => {
  it('places distinct live replicas with bounded replica and leader loads', () => {
    fc.assert(
      fc.property(inputArbitrary, (input) => {
        expectValid(input, placeReplicas(input));
      }),
      { numRuns: 500 },
    );
  });

  it('is deterministic and independent of the order brokers are listed in', () => {
    fc.assert(
      fc.property(inputArbitrary, fc.nat(), (input, seed) => {
        const result = placeReplicas(input);
        expect(placeReplicas({ ...input, brokers: shuffled(input.brokers, seed) })).toEqual(result);
      }),
      { numRuns: 300 },
    );
  });

  it('placing again with the result as current changes nothing', () => {
    fc.assert(
      fc.property(inputArbitrary, (input) => {
        const result = placeReplicas(input);
        expect(placeReplicas({ ...input, current: result })).toEqual(result);
      }),
      { numRuns: 300 },
    );
  });

  type Step = { kind: 'add'; nodeId: number } | { kind: 'remove'; index: number };
  const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ kind: fc.constant('add' as const), nodeId: fc.nat(60) }),
    fc.record({ kind: fc.constant('remove' as const), index: fc.nat() }),
  );

  it('moves only the removed broker\'s replicas, and only the newcomer\'s share on an add', () => {
    let unavoidableMoves = 0;
    let removals = 0;
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.nat(60), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(stepArbitrary, { minLength: 1, maxLength: 12 }),
        (initialIds, partitions, rf, steps) => {
          let ids = initialIds;
          removals += steps.filter((step) => step.kind === 'remove').length;
          const input = (brokerIds: number[], current?: number[][]): PlacementInput => ({
            brokers: brokerIds.map((nodeId) => ({ nodeId })),
            topic: 'orders',
            partitions,
            replicationFactor: Math.min(rf, brokerIds.length),
            ...(current ? { current } : {}),
          });
          let previous = placeReplicas(input(ids));
          for (const step of steps) {
            const before = ids;
            if (step.kind === 'add') {
              if (ids.includes(step.nodeId)) continue;
              ids = [...ids, step.nodeId];
            } else {
              if (ids.length <= 1) continue;
              ids = ids.filter((_, index) => index !== step.index % ids.length);
            }
            // The replication factor is fixed for the sequence, as for a real topic.
            if (Math.min(rf, before.length) !== Math.min(rf, ids.length)) {
              previous = placeReplicas(input(ids));
              continue;
            }
            const next = placeReplicas(input(ids, previous));
            expectValid(input(ids), next);
            const old = pairs(previous);
            const now = pairs(next);
            const added = [...now].filter((pair) => !old.has(pair));
            if (step.kind === 'remove') {
              const removed = before.find((id) => !ids.includes(id))!;
              // Survivors keep every replica they had (the moves are exactly the removed broker's)
              // whenever a balanced placement allows it; only then may a survivor's replica move.
              const kept = [...old].every((pair) => pair.endsWith(`:${removed}`) || now.has(pair));
              expect(kept).toBe(survivorsCanKeepAll(previous, ids, Math.min(rf, ids.length)));
              if (kept) expect(added.length).toBe([...old].filter((pair) => pair.endsWith(`:${removed}`)).length);
              else unavoidableMoves += 1;
            } else {
              // Everything that moves goes to the newcomer, and no more than its share.
              for (const pair of added) expect(pair.endsWith(`:${step.nodeId}`), pair).toBe(true);
              expect(added.length).toBeLessThanOrEqual(Math.ceil((partitions * Math.min(rf, ids.length)) / ids.length));
            }
            previous = next;
          }
        },
      ),
      { numRuns: 500 },
    );
    // Balance forcing a survivor's replica to move is the exception, not the rule.
    expect(unavoidableMoves).toBeLessThan(removals / 20);
  });

  it('spreads each partition over min(replicationFactor, racks) racks when racks are of equal size', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 4 }),
        fc.nat(),
        (rackCount, perRack, partitions, rf, seed) => {
          const ids = shuffled(Array.from({ length: rackCount * perRack }, (_, i) => i * 7 + 3), seed);
          const brokers = ids.map((nodeId, i) => ({ nodeId, rack: `r${i % rackCount}` }));
          const replicationFactor = Math.min(rf, brokers.length);
          const input = { brokers, topic: 'orders', partitions, replicationFactor };
          const result = placeReplicas(input);
          expectValid(input, result);
          const rackOf = new Map(brokers.map((b) => [b.nodeId, b.rack]));
          for (const list of result) {
            expect(new Set(list.map((id) => rackOf.get(id))).size).toBe(Math.min(replicationFactor, rackCount));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('spreads partitions by hash, not in broker-id blocks, and gives each topic its own layout', () => {
    const brokers = [1, 2, 3, 4].map((nodeId) => ({ nodeId }));
    const orders = placeReplicas({ brokers, topic: 'orders', partitions: 12, replicationFactor: 3 });
    const audit = placeReplicas({ brokers, topic: 'audit', partitions: 12, replicationFactor: 3 });
    expect(orders).not.toEqual(audit);
    const roundRobin = orders.every((list, p) => list[0] === [1, 2, 3, 4][p % 4]);
    expect(roundRobin).toBe(false);
  });

  it('keeps replicas on live brokers when partitions are added', () => {
    const brokers = [1, 2, 3].map((nodeId) => ({ nodeId }));
    const first = placeReplicas({ brokers, topic: 'orders', partitions: 6, replicationFactor: 2 });
    const grown = placeReplicas({ brokers, topic: 'orders', partitions: 9, replicationFactor: 2, current: first });
    expect(grown.slice(0, 6).map((list) => [...list].sort())).toEqual(first.map((list) => [...list].sort()));
  });

  it('rejects a replication factor above the live brokers, or below 1, with INVALID_REPLICATION_FACTOR', () => {
    const brokers = [{ nodeId: 1 }, { nodeId: 2 }];
    for (const replicationFactor of [3, 0, 1.5]) {
      const attempt = () => placeReplicas({ brokers, topic: 'orders', partitions: 3, replicationFactor });
      expect(attempt).toThrow(RillError);
      expect(attempt).toThrow(/INVALID_REPLICATION_FACTOR/);
    }
    expect(() => placeReplicas({ brokers, topic: 'orders', partitions: 3, replicationFactor: 3 })).toThrow(/3 live brokers; 2 are alive/);
    expect(() => placeReplicas({ brokers, topic: 'orders', partitions: 0, replicationFactor: 1 })).toThrow(/INVALID_PARTITIONS/);
  });
});
