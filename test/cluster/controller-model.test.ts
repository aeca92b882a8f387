/**
 * Model test of the controller's decisions and the leader's ISR changes, over a fake etcd that
 * does what the real adapter will rely on: every write is a compare-and-swap on the version.
 *
 * Five brokers, a topic of three partitions placed with replication factor 3. Each broker keeps
 * a cached view of the partition states that it refreshes only when told (a watch event), so
 * leaders and followers act on stale views: a broker that died and came back still believes it
 * leads. Random sequences of: broker deaths and returns; controller runs (fresh, or a stale
 * controller that decided on an old snapshot and writes later); preferred-leader elections;
 * produce to whoever believes it leads; follower fetches (only from a broker that leads at the
 * follower's epoch: the fetch carries it, and truncation to the leader's log first); leader ISR
 * shrinks and expansions through changeIsr and CAS. A batch is acknowledged when every member
 * of the ISR the leader believes in holds it and that ISR has at least minInSyncReplicas.
 *
 * After every step:
 *   - every state in etcd keeps the rules: leader in ISR, ISR a non-empty subset of replicas;
 *   - leader and partition epochs never go down; every write raises the partition epoch; a new
 *     leader always comes with a higher leader epoch;
 *   - only live brokers join an ISR; after a controller run, a led partition's ISR is all live;
 *   - a clean election never picks a broker outside the ISR it replaced;
 *   - after a controller run, a partition with a live ISR member has a live leader;
 *   - without unclean elections, every acknowledged batch is in the log of every ISR member,
 *     at its offset: nothing acknowledged is lost, whatever leads next.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  changeIsr,
  createPartitionStates,
  electPreferredLeaders,
  noLeader,
  partitionStateProblem,
  reconcile,
  type ElectionPolicy,
  type PartitionChange,
  type PartitionState,
} from '../../src/cluster/controller-logic.js';
import { placeReplicas } from '../../src/cluster/placement.js';
import { RillError } from '../../src/lib/errors.js';
import type { PartitionKey } from '../../src/lib/topic-partition.js';

class FakeEtcd {
  revision = 0;
  readonly states = new Map<PartitionKey, PartitionState>();

  create(key: PartitionKey, state: PartitionState): void {
    this.revision += 1;
    this.states.set(key, { ...state, version: this.revision });
  }

  /** Writes `next` if the key is still at `expectedVersion`; returns the stored state or undefined. */
  compareAndSwap(key: PartitionKey, expectedVersion: number, next: PartitionState): PartitionState | undefined {
    if (this.states.get(key)?.version !== expectedVersion) return undefined;
    this.revision += 1;
    const stored = { ...next, version: this.revision };
    this.states.set(key, stored);
    return stored;
  }
}

const brokerIds = [0, 1, 2, 3, 4];
const partitionCount = 3;

class World {
  readonly etcd = new FakeEtcd();
  readonly alive = new Set(brokerIds);
  /** Each broker's cached view of the states. */
  readonly views = new Map<number, Map<PartitionKey, PartitionState>>();
  /** logs.get(broker).get(key): batch ids, by offset (every append is fsynced in this model). */
  readonly logs = new Map<number, Map<PartitionKey, number[]>>();
  /** Offset at which a broker's leadership at its view's epoch began. */
  readonly epochStart = new Map<string, number>();
  /** The ghost: every acknowledged batch id by offset. */
  readonly acked = new Map<PartitionKey, number[]>();
  readonly lossy = new Set<PartitionKey>();
  readonly keys: PartitionKey[];
  nextBatchId = 1;
  staleSnapshot: { liveBrokers: Set<number>; partitions: Map<PartitionKey, PartitionState> } | undefined;

  constructor(
    readonly minInSyncReplicas: number,
    readonly policy: ElectionPolicy,
  ) {
    const brokers = brokerIds.map((nodeId) => ({ nodeId }));
    const placement = placeReplicas({ brokers, topic: 'orders', partitions: partitionCount, replicationFactor: 3 });
    for (const [key, state] of createPartitionStates('orders', placement)) this.etcd.create(key, state);
    this.keys = [...this.etcd.states.keys()];
    for (const broker of brokerIds) {
      this.logs.set(broker, new Map(this.keys.map((key) => [key, []])));
      this.watch(broker);
    }
    for (const key of this.keys) this.acked.set(key, []);
  }

  view(broker: number, key: PartitionKey): PartitionState {
    return this.views.get(broker)!.get(key)!;
  }

  log(broker: number, key: PartitionKey): number[] {
    return this.logs.get(broker)!.get(key)!;
  }

  watch(broker: number): void {
    this.views.set(broker, new Map(this.etcd.states));
    for (const key of this.keys) this.noteLeadership(broker, key);
  }

  private noteLeadership(broker: number, key: PartitionKey): void {
    const state = this.view(broker, key);
    const id = `${broker}/${key}/${state.leaderEpoch}`;
    if (state.leader === broker && !this.epochStart.has(id)) this.epochStart.set(id, this.log(broker, key).length);
  }

  /** Applies controller decisions with CAS; returns the changes that were written. */
  applyChanges(changes: readonly PartitionChange[]): PartitionChange[] {
    const written: PartitionChange[] = [];
    for (const change of changes) {
      if (this.etcd.compareAndSwap(change.key, change.before.version, change.after) === undefined) continue;
      written.push(change);
      if (change.mayLoseData) this.lossy.add(change.key);
    }
    return written;
  }

  leaderOf(key: PartitionKey): number | undefined {
    return brokerIds.find((b) => this.alive.has(b) && this.view(b, key).leader === b);
  }

  /** Whoever believes it leads appends a batch (a zombie included). */
  produce(broker: number, key: PartitionKey): void {
    if (!this.alive.has(broker) || this.view(broker, key).leader !== broker) return;
    this.log(broker, key).push(this.nextBatchId);
    this.nextBatchId += 1;
  }

  /** The follower fetches from the leader of its view, if that broker leads at the same epoch. */
  fetch(follower: number, key: PartitionKey, batchesMax: number): void {
    const state = this.view(follower, key);
    const leader = state.leader;
    if (!this.alive.has(follower) || leader === noLeader || leader === follower || !this.alive.has(leader)) return;
    const leaderState = this.view(leader, key);
    if (leaderState.leader !== leader || leaderState.leaderEpoch !== state.leaderEpoch) return; // fenced either way
    const mine = this.log(follower, key);
    const theirs = this.log(leader, key);
    let common = 0;
    while (common < mine.length && common < theirs.length && mine[common] === theirs[common]) common += 1;
    mine.length = common;
    mine.push(...theirs.slice(common, common + batchesMax));
  }

  private commonPrefix(a: readonly number[], b: readonly number[]): number {
    let common = 0;
    while (common < a.length && common < b.length && a[common] === b[common]) common += 1;
    return common;
  }

  /** The leader's high watermark in its own view: what every ISR member it believes in shares with it. */
  highWatermark(leader: number, key: PartitionKey): number {
    const own = this.log(leader, key);
    return Math.min(...this.view(leader, key).isr.map((member) => this.commonPrefix(own, this.log(member, key))));
  }

  /** The leader CASes an ISR change; on any failure it refreshes its view, as the adapter would. */
  changeIsr(leader: number, key: PartitionKey, isr: readonly number[]): void {
    const state = this.view(leader, key);
    try {
      const next = changeIsr(state, { leaderId: leader, leaderEpoch: state.leaderEpoch, isr }, this.alive);
      if (next === undefined) return;
      const stored = this.etcd.compareAndSwap(key, state.version, next);
      if (stored !== undefined) {
        this.views.get(leader)!.set(key, stored);
        return;
      }
    } catch (error) {
      if (!(error instanceof RillError)) throw error;
    }
    this.watch(leader);
  }

  /** Drops the pick-th follower (modulo their number) of the ISR the leader believes in. */
  shrink(leader: number, key: PartitionKey, pick: number): void {
    const state = this.view(leader, key);
    const followers = state.isr.filter((id) => id !== leader);
    if (!this.alive.has(leader) || state.leader !== leader || followers.length === 0) return;
    const follower = followers[pick % followers.length]!;
    this.changeIsr(leader, key, state.isr.filter((id) => id !== follower));
  }

  /**
   * Adds the pick-th replica outside the ISR if it passes the tracker's rule: it has the leader's
   * log up to the high watermark and up to the start of the leader's epoch.
   */
  expand(leader: number, key: PartitionKey, pick: number): void {
    const state = this.view(leader, key);
    const outside = state.replicas.filter((id) => !state.isr.includes(id));
    if (!this.alive.has(leader) || state.leader !== leader || outside.length === 0) return;
    const follower = outside[pick % outside.length]!;
    const caughtUp = this.commonPrefix(this.log(leader, key), this.log(follower, key));
    const epochStart = this.epochStart.get(`${leader}/${key}/${state.leaderEpoch}`) ?? Infinity;
    if (caughtUp < this.highWatermark(leader, key) || caughtUp < epochStart) return;
    this.changeIsr(leader, key, [...state.isr, follower]);
  }

  /** Every broker that believes it leads acknowledges what its believed ISR all hold. */
  acknowledge(): void {
    for (const key of this.keys) {
      for (const leader of brokerIds) {
        const state = this.view(leader, key);
        if (!this.alive.has(leader) || state.leader !== leader || state.isr.length < this.minInSyncReplicas) continue;
        const highWatermark = this.highWatermark(leader, key);
        const acked = this.acked.get(key)!;
        const own = this.log(leader, key);
        for (let offset = acked.length; offset < highWatermark; offset += 1) acked.push(own[offset]!);
        if (!this.lossy.has(key)) {
          for (let offset = 0; offset < Math.min(highWatermark, acked.length); offset += 1) {
            expect(own[offset], `leader ${leader} acknowledged over another batch at ${offset}`).toBe(acked[offset]);
          }
        }
      }
    }
  }
}

type Command =
  | { kind: 'kill' | 'revive' | 'watch'; broker: number }
  | { kind: 'controller' | 'preferred' | 'snapshot' | 'stale-controller' | 'watch-all' }
  | { kind: 'produce'; broker: number; partition: number }
  | { kind: 'fetch'; broker: number; partition: number; batchesMax: number }
  | { kind: 'fetch-all'; partition: number }
  | { kind: 'shrink' | 'expand'; broker: number; partition: number; pick: number };

/** A broker id, or `leader`: the broker etcd names as the partition's leader (most actions go there). */
const leaderOrAny = -1;
const broker = fc.constantFrom(...brokerIds);
const actor = fc.oneof({ arbitrary: fc.constant(leaderOrAny), weight: 3 }, { arbitrary: broker, weight: 1 });
const partition = fc.nat(partitionCount - 1);
const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('kill' as const), broker: actor }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('revive' as const), broker }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('watch' as const), broker }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('watch-all' as const) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('controller' as const) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constantFrom('preferred' as const, 'snapshot' as const, 'stale-controller' as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('produce' as const), broker: actor, partition }), weight: 5 },
  { arbitrary: fc.record({ kind: fc.constant('fetch' as const), broker, partition, batchesMax: fc.integer({ min: 1, max: 3 }) }), weight: 8 },
  { arbitrary: fc.record({ kind: fc.constant('fetch-all' as const), partition }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('shrink' as const), broker: actor, partition, pick: fc.nat(4) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('expand' as const), broker: actor, partition, pick: fc.nat(4) }), weight: 4 },
);

function run(world: World, given: Command): PartitionChange[] {
  const key = 'partition' in given ? world.keys[given.partition]! : world.keys[0]!;
  const leader = world.etcd.states.get(key)!.leader;
  const command = 'broker' in given && given.broker === leaderOrAny ? { ...given, broker: leader === noLeader ? 0 : leader } : given;
  switch (command.kind) {
    case 'kill':
      world.alive.delete(command.broker);
      return [];
    case 'revive':
      world.alive.add(command.broker);
      return [];
    case 'watch':
      world.watch(command.broker);
      return [];
    case 'watch-all':
      for (const id of brokerIds) world.watch(id);
      return [];
    case 'controller':
      return world.applyChanges(reconcile({ liveBrokers: world.alive, partitions: world.etcd.states }, world.policy));
    case 'preferred':
      return world.applyChanges(electPreferredLeaders({ liveBrokers: world.alive, partitions: world.etcd.states }));
    case 'snapshot':
      world.staleSnapshot = { liveBrokers: new Set(world.alive), partitions: new Map(world.etcd.states) };
      return [];
    case 'stale-controller':
      return world.staleSnapshot ? world.applyChanges(reconcile(world.staleSnapshot, world.policy)) : [];
    case 'produce':
      world.produce(command.broker, key);
      return [];
    case 'fetch':
      world.fetch(command.broker, key, command.batchesMax);
      return [];
    case 'fetch-all':
      for (const id of brokerIds) world.fetch(id, key, Number.MAX_SAFE_INTEGER);
      return [];
    case 'shrink':
      world.shrink(command.broker, key, command.pick);
      return [];
    case 'expand':
      world.expand(command.broker, key, command.pick);
      return [];
  }
}

function expectInvariants(
  world: World,
  previous: ReadonlyMap<PartitionKey, PartitionState>,
  written: readonly PartitionChange[],
  controllerRan: boolean,
): void {
  for (const key of world.keys) {
    const state = world.etcd.states.get(key)!;
    const before = previous.get(key)!;
    expect(partitionStateProblem(state), key).toBeUndefined();
    expect(state.leaderEpoch).toBeGreaterThanOrEqual(before.leaderEpoch);
    if (state.leader !== before.leader) expect(state.leaderEpoch, `${key}: new leader, same epoch`).toBeGreaterThan(before.leaderEpoch);
    if (state.version !== before.version) expect(state.partitionEpoch).toBeGreaterThan(before.partitionEpoch);
    for (const member of state.isr) {
      if (!before.isr.includes(member)) expect(world.alive.has(member), `dead broker ${member} joined the ISR of ${key}`).toBe(true);
    }
    if (controllerRan && state.isr.some((id) => world.alive.has(id))) {
      expect(state.leader, `${key} has a live ISR member but no leader`).not.toBe(noLeader);
      expect(world.alive.has(state.leader)).toBe(true);
      for (const member of state.isr) expect(world.alive.has(member), `dead broker ${member} left in the ISR of ${key}`).toBe(true);
    }
    if (!world.lossy.has(key)) {
      const acked = world.acked.get(key)!;
      for (const member of state.isr) {
        expect(world.log(member, key).slice(0, acked.length), `ISR member ${member} of ${key} lacks acknowledged batches`).toEqual(acked);
      }
    }
  }
  for (const change of written) {
    if (change.reason === 'leader-election' || change.reason === 'preferred-election') {
      expect(change.before.isr, `clean election of ${change.after.leader} outside the ISR`).toContain(change.after.leader);
    }
  }
}

describe('controller model', () => {
  it('keeps leaders in the ISR, epochs monotonic, and every acknowledged batch on every ISR member', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.boolean(),
        fc.array(commandArbitrary, { minLength: 20, maxLength: 150 }),
        (minInSyncReplicas, unclean, commands) => {
          const world = new World(minInSyncReplicas, { uncleanLeaderElection: () => unclean });
          for (const command of commands) {
            const previous = new Map(world.etcd.states);
            const written = run(world, command);
            world.acknowledge();
            expectInvariants(world, previous, written, command.kind === 'controller');
          }
          // Everyone comes back: every partition gets a leader.
          for (const id of brokerIds) world.alive.add(id);
          world.applyChanges(reconcile({ liveBrokers: world.alive, partitions: world.etcd.states }, world.policy));
          for (const state of world.etcd.states.values()) expect(state.leader).not.toBe(noLeader);
        },
      ),
      { numRuns: 400 },
    );
  });
});
