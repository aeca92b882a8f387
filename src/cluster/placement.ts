/**
 * Replica placement: which brokers hold each partition of a topic, and which of them is the
 * preferred leader (the first of each list). Pure and deterministic: the result is a function of
 * the broker set (ids and racks), the topic name, the partition count, the replication factor and
 * the current placement, never of the order the brokers are listed in. The controller calls it
 * when it creates a topic, adds partitions, or rebalances after brokers come or go; what it
 * returns is written to etcd, so only determinism within one run matters, but it holds across
 * brokers and versions too (wire/hash.ts).
 *
 * How it works (T = partitions x replicationFactor replicas over N brokers)
 *   1. Quotas. Every broker may hold base = floor(T/N) replicas, and the T mod N extras left
 *      over each let one broker hold base + 1 (a shared pool, as in the group assignor: which
 *      brokers end up with an extra is decided by where room is needed, not fixed up front).
 *      Loads are therefore exactly floor or ceil of the average: bounded loads with c = 1. The
 *      paper's slack (c > 1) buys stability when nothing is remembered; `current` remembers, so
 *      the tight bound costs no movement.
 *   2. Keep. A current replica on a live broker stays where it is, up to base per broker; brokers
 *      that held more keep one more while extras last (most surplus first, ties by a hash of
 *      (topic, broker)). A broker over its limit (a broker joined) gives up the surplus, choosing
 *      partitions no other broker gave up yet (so one newcomer can take them all), then follower
 *      rather than leader replicas, then replicas whose rack is doubled in the partition, then
 *      the lowest hash score.
 *   3. Fill. Every empty slot is placed by rendezvous hashing (highest random weight, a form of
 *      consistent hashing): each (partition, broker) pair has a hash score, and the slot goes to
 *      the broker with room, not yet in the partition, whose rack is least used by the partition,
 *      highest score first. Partitions missing the most replicas are filled first. When no
 *      broker with room is outside the partition, a chain of single moves (an augmenting path in
 *      the flow sense, found breadth first, moving only replicas placed in this run when it can)
 *      frees one: a broker outside the partition joins it and hands one of its slots on, the
 *      taker does the same or is below its limit, and a broker at base may take an extra that a
 *      broker at base + 1 frees by handing a slot on. Such a chain exists whenever a slot is
 *      empty, because a complete placement within the bounds exists (each bound is at most P).
 *   4. Racks. With two racks or more, while the total number of racks spanned by partitions can
 *      grow: swap two replicas placed in this run between partitions, or move one from a broker
 *      holding an extra to a broker at base (loads stay within the bounds). Racks are a
 *      preference, the load bound is a rule: with very unequal racks a partition may span fewer
 *      racks than it could with unbounded loads. Kept replicas never move for racks. A broker
 *      without a rack counts as a rack of its own.
 *   5. Preferred leaders. Each broker leads between floor(P/N) and ceil(P/N) partitions (such an
 *      assignment always exists because replica loads are balanced). Current leaders stay while
 *      under the cap; leaderless partitions take the replica with the highest score among those
 *      with room (a chain of leadership moves when all are full); then brokers below floor(P/N)
 *      take leaderships along chains from brokers above it.
 *   6. Order. The preferred leader first, then the kept replicas in their current order, then the
 *      new ones in the order they were placed. The order matters: the controller elects the first
 *      live in-sync replica in this order.
 *
 * Guarantees (property-tested in test/cluster/placement.test.ts):
 *   - every partition has replicationFactor distinct live brokers;
 *   - each broker holds floor(T/N) or ceil(T/N) replicas and leads floor(P/N) or ceil(P/N);
 *   - placing again with the result as `current` changes nothing;
 *   - removing a broker moves only its replicas (survivors keep every replica they had)
 *     whenever some balanced placement allows it; the test checks "whenever" with an independent
 *     max-flow oracle. The exception is small clusters with RF close to N: with 4 brokers, RF 3
 *     and 4 partitions, the two survivors below their quota may both already hold the two
 *     partitions that lost a replica; then a chain moves one survivor's replica (about 1 removal
 *     in 1000 in the random test);
 *   - adding a broker moves only the replicas it takes, at most ceil(T/(N+1));
 *   - with racks of equal size, every new partition spans min(replicationFactor, racks) racks.
 *
 * Cost: O(P x N) for scores, plus the fill (O(P x RF x N)) and, rarely, chains of O(T x N) each.
 */
import { assert } from '../lib/assert.js';
import { RillError } from '../lib/errors.js';
import { topicPartitionsMax } from '../lib/limits.js';
import { partitionKey } from '../lib/topic-partition.js';
import { murmur3 } from '../wire/hash.js';

export interface PlacementBroker {
  nodeId: number;
  rack?: string;
}

export interface PlacementInput {
  /** The live brokers replicas may go to. Node ids are unique. */
  brokers: readonly PlacementBroker[];
  topic: string;
  partitions: number;
  replicationFactor: number;
  /**
   * The current replica lists by partition (first = preferred leader), for a rebalance or for
   * added partitions (a shorter list: the new partitions have none). Brokers not in `brokers`
   * are dead or removed; their replicas move.
   */
  current?: readonly (readonly number[])[];
}

const brokerHashSeed = 0x2545f491;
const partitionHashSeed = 0x5bd1e995;
const quotaTieSeed = 0x68e31da4;

/** murmur3's finaliser: a bijection on 32-bit integers with full avalanche. */
function mix32(value: number): number {
  let h = value >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Places replicas for every partition of a topic; returns the replica lists by partition. */
export function placeReplicas(input: PlacementInput): number[][] {
  validate(input);
  const state = new PlacementState(input);
  state.keepCurrent();
  state.fill();
  state.spreadRacks();
  state.chooseLeaders();
  return state.result();
}

function validate(input: PlacementInput): void {
  const { brokers, partitions, replicationFactor, current } = input;
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > topicPartitionsMax) {
    throw new RillError('INVALID_PARTITIONS', `partitions must be an integer in 1..${topicPartitionsMax}, got ${partitions}`);
  }
  if (!Number.isInteger(replicationFactor) || replicationFactor < 1) {
    throw new RillError('INVALID_REPLICATION_FACTOR', `replication factor must be an integer of at least 1, got ${replicationFactor}`);
  }
  if (replicationFactor > brokers.length) {
    const alive = `${brokers.length} ${brokers.length === 1 ? 'is' : 'are'} alive`;
    const detail = `replication factor ${replicationFactor} needs at least ${replicationFactor} live brokers; ${alive}`;
    throw new RillError('INVALID_REPLICATION_FACTOR', detail);
  }
  const ids = new Set<number>();
  for (const broker of brokers) {
    assert(Number.isInteger(broker.nodeId) && broker.nodeId >= 0, `placement: bad node id ${broker.nodeId}`);
    assert(!ids.has(broker.nodeId), `placement: duplicate node id ${broker.nodeId}`);
    ids.add(broker.nodeId);
  }
  assert(current === undefined || current.length <= partitions, 'placement: current lists more partitions than the topic has');
}

/**
 * A chain step, recorded for the broker it reaches: `giver` hands its slot in `partition` to that
 * broker; or, with partition -1, `giver` (at base, no extras left) takes the extra that this
 * broker frees by handing one of its own slots on.
 */
interface Step {
  giver: number;
  partition: number;
}

class PlacementState {
  readonly brokerCount: number;
  readonly partitionCount: number;
  readonly replicationFactor: number;
  /** Brokers sorted by node id; everything inside works on indices into this list. */
  readonly nodeIds: number[];
  readonly racks: string[];
  readonly rackCount: number;
  readonly brokerHash: number[];
  readonly partitionHash: number[];
  /** Current lists as broker indices: live, distinct, at most replicationFactor. */
  readonly currentLists: number[][];
  /** Index of each partition's current preferred leader, or -1. */
  readonly currentLeader: number[];
  /** Every broker may hold `base` replicas; `extras` of them may hold one more. */
  readonly base: number;
  readonly extras: number;
  /** Brokers holding base + 1 now (extras in use). */
  extrasUsed = 0;
  readonly load: number[];
  /** Partitions each broker holds. */
  readonly holdings: Set<number>[];
  readonly replicas: number[][];
  /** Per partition, the brokers placed in this run (they may move freely; kept ones may not). */
  readonly fresh: Set<number>[];
  readonly leader: number[];
  readonly leads: number[];
  readonly topicTie: number[];

  constructor(input: PlacementInput) {
    const sorted = [...input.brokers].sort((a, b) => a.nodeId - b.nodeId);
    this.brokerCount = sorted.length;
    this.partitionCount = input.partitions;
    this.replicationFactor = input.replicationFactor;
    this.nodeIds = sorted.map((b) => b.nodeId);
    this.racks = sorted.map((b) => (b.rack === undefined ? `\u0000node ${b.nodeId}` : `rack ${b.rack}`));
    this.rackCount = new Set(this.racks).size;
    this.brokerHash = this.nodeIds.map((id) => murmur3(String(id), brokerHashSeed));
    this.topicTie = this.nodeIds.map((id) => murmur3(`${input.topic}\u0000${id}`, quotaTieSeed));
    this.partitionHash = Array.from({ length: this.partitionCount }, (_, p) => murmur3(partitionKey(input.topic, p), partitionHashSeed));
    const indexOf = new Map(this.nodeIds.map((id, index) => [id, index]));
    this.currentLists = [];
    this.currentLeader = [];
    for (let p = 0; p < this.partitionCount; p += 1) {
      const list = input.current?.[p] ?? [];
      const live: number[] = [];
      for (const id of list) {
        const index = indexOf.get(id);
        if (index !== undefined && !live.includes(index) && live.length < this.replicationFactor) live.push(index);
      }
      this.currentLists.push(live);
      const first = list.length > 0 ? indexOf.get(list[0]!) : undefined;
      this.currentLeader.push(first ?? -1);
    }
    const total = this.partitionCount * this.replicationFactor;
    this.base = Math.floor(total / this.brokerCount);
    this.extras = total - this.base * this.brokerCount;
    this.load = new Array<number>(this.brokerCount).fill(0);
    this.holdings = this.nodeIds.map(() => new Set<number>());
    this.replicas = Array.from({ length: this.partitionCount }, () => []);
    this.fresh = Array.from({ length: this.partitionCount }, () => new Set<number>());
    this.leader = new Array<number>(this.partitionCount).fill(-1);
    this.leads = new Array<number>(this.brokerCount).fill(0);
  }

  score(partition: number, broker: number): number {
    return mix32(this.partitionHash[partition]! ^ this.brokerHash[broker]!);
  }

  /** Current replicas each broker may keep: base, plus one for those that held most while extras last. */
  private keepLimits(): number[] {
    const held = new Array<number>(this.brokerCount).fill(0);
    for (const list of this.currentLists) for (const broker of list) held[broker]! += 1;
    const order = this.nodeIds.map((_, index) => index).filter((broker) => held[broker]! > this.base);
    order.sort((a, b) => held[b]! - held[a]! || this.topicTie[a]! - this.topicTie[b]! || a - b);
    const limits = new Array<number>(this.brokerCount).fill(this.base);
    for (const broker of order.slice(0, this.extras)) limits[broker] = this.base + 1;
    return limits;
  }

  private changeLoad(broker: number, delta: 1 | -1): void {
    if (delta < 0 && this.load[broker] === this.base + 1) this.extrasUsed -= 1;
    this.load[broker]! += delta;
    if (delta > 0 && this.load[broker] === this.base + 1) this.extrasUsed += 1;
    assert(this.load[broker]! <= this.base + 1 && this.extrasUsed <= this.extras, 'placement: load over its bound');
  }

  private add(partition: number, broker: number, isFresh: boolean): void {
    assert(!this.replicas[partition]!.includes(broker), 'placement: broker placed twice in a partition');
    this.replicas[partition]!.push(broker);
    this.changeLoad(broker, 1);
    this.holdings[broker]!.add(partition);
    if (isFresh) this.fresh[partition]!.add(broker);
  }

  /** Hands `giver`'s slot in `partition` to `taker`, in place (the list keeps its order). */
  private replace(partition: number, giver: number, taker: number): void {
    const list = this.replicas[partition]!;
    const position = list.indexOf(giver);
    assert(position >= 0 && !list.includes(taker), 'placement: invalid move');
    list[position] = taker;
    this.changeLoad(giver, -1);
    this.changeLoad(taker, 1);
    this.holdings[giver]!.delete(partition);
    this.holdings[taker]!.add(partition);
    this.fresh[partition]!.delete(giver);
    this.fresh[partition]!.add(taker);
  }

  /** `a` (in p) and `b` (in q) trade places; loads do not change. */
  private exchange(p: number, a: number, q: number, b: number): void {
    const listP = this.replicas[p]!;
    const listQ = this.replicas[q]!;
    assert(!listP.includes(b) && !listQ.includes(a), 'placement: invalid exchange');
    listP[listP.indexOf(a)] = b;
    listQ[listQ.indexOf(b)] = a;
    this.holdings[a]!.delete(p);
    this.holdings[a]!.add(q);
    this.holdings[b]!.delete(q);
    this.holdings[b]!.add(p);
    this.fresh[p]!.delete(a);
    this.fresh[p]!.add(b);
    this.fresh[q]!.delete(b);
    this.fresh[q]!.add(a);
  }

  private hasRoom(broker: number): boolean {
    const load = this.load[broker]!;
    return load < this.base || (load === this.base && this.extrasUsed < this.extras);
  }

  /** Step 2: keep current replicas up to each broker's limit. */
  keepCurrent(): void {
    const limits = this.keepLimits();
    const dropped = new Set<string>();
    const droppedFrom = new Array<number>(this.partitionCount).fill(0);
    for (let broker = 0; broker < this.brokerCount; broker += 1) {
      const mine: number[] = [];
      for (let p = 0; p < this.partitionCount; p += 1) if (this.currentLists[p]!.includes(broker)) mine.push(p);
      const surplus = mine.length - limits[broker]!;
      if (surplus <= 0) continue;
      const rackDoubled = (p: number): number =>
        this.currentLists[p]!.some((other) => other !== broker && this.racks[other] === this.racks[broker]) ? 0 : 1;
      mine.sort(
        (a, b) =>
          droppedFrom[a]! - droppedFrom[b]! ||
          Number(this.currentLeader[a] === broker) - Number(this.currentLeader[b] === broker) ||
          rackDoubled(a) - rackDoubled(b) ||
          this.score(a, broker) - this.score(b, broker) ||
          a - b,
      );
      for (const p of mine.slice(0, surplus)) {
        dropped.add(`${p}:${broker}`);
        droppedFrom[p]! += 1;
      }
    }
    for (let p = 0; p < this.partitionCount; p += 1) {
      for (const broker of this.currentLists[p]!) if (!dropped.has(`${p}:${broker}`)) this.add(p, broker, false);
    }
  }

  private racksUsed(partition: number, rack: string): number {
    let count = 0;
    for (const broker of this.replicas[partition]!) if (this.racks[broker] === rack) count += 1;
    return count;
  }

  /** The best broker with room for one more replica of `partition`, or -1. */
  private candidate(partition: number): number {
    let best = -1;
    let bestRackUse = 0;
    let bestScore = 0;
    for (let broker = 0; broker < this.brokerCount; broker += 1) {
      if (!this.hasRoom(broker) || this.replicas[partition]!.includes(broker)) continue;
      const rackUse = this.racksUsed(partition, this.racks[broker]!);
      const score = this.score(partition, broker);
      if (best < 0 || rackUse < bestRackUse || (rackUse === bestRackUse && score > bestScore)) {
        best = broker;
        bestRackUse = rackUse;
        bestScore = score;
      }
    }
    return best;
  }

  /** Step 3: fill every empty slot, partitions with the most empty slots first. */
  fill(): void {
    const missing = (p: number): number => this.replicationFactor - this.replicas[p]!.length;
    const order = Array.from({ length: this.partitionCount }, (_, p) => p).sort((a, b) => missing(b) - missing(a) || a - b);
    for (const p of order) {
      while (missing(p) > 0) {
        const broker = this.candidate(p);
        if (broker >= 0) this.add(p, broker, true);
        else this.augment(p);
      }
    }
  }

  /**
   * Every broker with room already holds `partition`. Finds, breadth first, a chain: a broker X
   * outside the partition joins it and leaves some q, a broker Y outside q takes X's slot there
   * and leaves another, and so on until a broker with room. Tries moving only fresh replicas
   * first, then any.
   */
  private augment(partition: number): void {
    const found = this.findChain(partition, true) ?? this.findChain(partition, false);
    assert(found !== undefined, 'placement: no augmenting chain although quotas sum to the demand');
    const [end, cameFrom] = found;
    // Applied from the end, so no load ever passes its bound on the way.
    let current = end;
    for (let step = cameFrom.get(current); step !== null && step !== undefined; step = cameFrom.get(current)) {
      if (step.partition >= 0) this.replace(step.partition, step.giver, current);
      current = step.giver;
    }
    this.add(partition, current, true);
  }

  private findChain(partition: number, freshOnly: boolean): [number, Map<number, Step | null>] | undefined {
    const cameFrom = new Map<number, Step | null>();
    const queue: number[] = [];
    for (let broker = 0; broker < this.brokerCount; broker += 1) {
      if (this.replicas[partition]!.includes(broker)) continue;
      cameFrom.set(broker, null);
      queue.push(broker);
    }
    // Every queued broker gains a slot and must hand one on (or, at base with no extras left,
    // may instead take the extra of a broker at base + 1, which then hands one on).
    for (let head = 0; head < queue.length; head += 1) {
      const giver = queue[head]!;
      if (this.load[giver] === this.base && this.extrasUsed === this.extras) {
        for (let holder = 0; holder < this.brokerCount; holder += 1) {
          if (cameFrom.has(holder) || this.load[holder] !== this.base + 1) continue;
          cameFrom.set(holder, { giver, partition: -1 });
          queue.push(holder);
        }
      }
      for (const q of this.holdings[giver]!) {
        if (q === partition || (freshOnly && !this.fresh[q]!.has(giver))) continue;
        for (let taker = 0; taker < this.brokerCount; taker += 1) {
          if (cameFrom.has(taker) || this.replicas[q]!.includes(taker)) continue;
          cameFrom.set(taker, { giver, partition: q });
          if (this.hasRoom(taker)) return [taker, cameFrom];
          queue.push(taker);
        }
      }
    }
    return undefined;
  }

  private distinctRacks(list: readonly number[]): number {
    return new Set(list.map((broker) => this.racks[broker])).size;
  }

  /** Step 4: moves and swaps of fresh replicas while the racks spanned, summed over partitions, grow. */
  spreadRacks(): void {
    if (this.rackCount < 2) return;
    const target = Math.min(this.replicationFactor, this.rackCount);
    // Every change adds a rack to the sum, which is at most P x target: the loop ends.
    for (let changed = true; changed && this.racksSpanned() < this.racksSpannedMax(); ) {
      changed = false;
      for (let p = 0; p < this.partitionCount; p += 1) {
        if (this.distinctRacks(this.replicas[p]!) >= target) continue;
        for (const a of [...this.fresh[p]!]) {
          if (this.racksUsed(p, this.racks[a]!) < 2) continue;
          if (this.moveToNewRack(p, a) || this.swapToNewRack(p, a)) {
            changed = true;
            break;
          }
        }
      }
    }
  }

  /** Racks spanned, summed over partitions. */
  private racksSpanned(): number {
    let sum = 0;
    for (const list of this.replicas) sum += this.distinctRacks(list);
    return sum;
  }

  /**
   * An upper bound of racksSpanned() over every balanced placement: a rack appears in at most
   * min(P, its replicas) partitions, and its n brokers hold base x n replicas plus the extras
   * it gets (at most n; E in all, best spent on racks below P).
   */
  private racksSpannedMax(): number {
    const brokersByRack = new Map<string, number>();
    for (const rack of this.racks) brokersByRack.set(rack, (brokersByRack.get(rack) ?? 0) + 1);
    let sum = 0;
    let extrasUseful = 0;
    for (const brokers of brokersByRack.values()) {
      sum += Math.min(this.partitionCount, this.base * brokers);
      extrasUseful += Math.min(brokers, Math.max(0, this.partitionCount - this.base * brokers));
    }
    sum += Math.min(this.extras, extrasUseful);
    return Math.min(sum, this.partitionCount * Math.min(this.replicationFactor, this.rackCount));
  }

  /** `a` (an extra's holder, rack doubled in p) hands its slot in p to a broker at base in a rack p lacks. */
  private moveToNewRack(p: number, a: number): boolean {
    for (let b = 0; b < this.brokerCount; b += 1) {
      if (this.replicas[p]!.includes(b) || this.racksUsed(p, this.racks[b]!) > 0) continue;
      const freesAnExtra = this.load[a] === this.base + 1 && this.load[b] === this.base;
      if (!freesAnExtra && !this.hasRoom(b)) continue;
      this.replace(p, a, b);
      return true;
    }
    return false;
  }

  /** Swaps `a` in p with a fresh `b` of another partition q, if p gains a rack and q loses none. */
  private swapToNewRack(p: number, a: number): boolean {
    for (let q = 0; q < this.partitionCount; q += 1) {
      if (q === p || this.replicas[q]!.includes(a)) continue;
      for (const b of this.fresh[q]!) {
        if (this.replicas[p]!.includes(b) || this.racksUsed(p, this.racks[b]!) > 0) continue;
        // a's rack differs from b's (p holds a's rack and lacks b's), so q loses b's rack only if b
        // was alone in it, and gains a's only if q lacked it.
        const losesRack = this.racksUsed(q, this.racks[b]!) === 1;
        const gainsRack = this.racksUsed(q, this.racks[a]!) === 0;
        if (losesRack && !gainsRack) continue;
        this.exchange(p, a, q, b);
        return true;
      }
    }
    return false;
  }

  /** Step 5: preferred leaders, each broker between floor(P/N) and ceil(P/N). */
  chooseLeaders(): void {
    const cap = Math.ceil(this.partitionCount / this.brokerCount);
    const floor = Math.floor(this.partitionCount / this.brokerCount);
    for (let p = 0; p < this.partitionCount; p += 1) {
      const current = this.currentLeader[p]!;
      if (current >= 0 && this.replicas[p]!.includes(current) && this.leads[current]! < cap) this.setLeader(p, current);
    }
    for (let p = 0; p < this.partitionCount; p += 1) {
      if (this.leader[p]! >= 0) continue;
      const best = this.leaderCandidate(p, floor, cap);
      if (best >= 0) this.setLeader(p, best);
      else this.augmentLeader(p, cap);
    }
    for (let broker = 0; broker < this.brokerCount; broker += 1) {
      while (this.leads[broker]! < floor) this.levelLeader(broker, floor);
    }
  }

  private setLeader(partition: number, broker: number): void {
    const previous = this.leader[partition]!;
    if (previous >= 0) this.leads[previous]! -= 1;
    this.leader[partition] = broker;
    this.leads[broker]! += 1;
  }

  /** Below floor first, then below cap; highest score within each. */
  private leaderCandidate(partition: number, floor: number, cap: number): number {
    let best = -1;
    for (const broker of this.replicas[partition]!) {
      if (this.leads[broker]! >= cap) continue;
      if (best < 0) {
        best = broker;
        continue;
      }
      const below = Number(this.leads[broker]! < floor) - Number(this.leads[best]! < floor);
      if (below > 0 || (below === 0 && this.score(partition, broker) > this.score(partition, best))) best = broker;
    }
    return best;
  }

  /** All replicas of `partition` lead `cap` partitions: one hands a leadership on, along a chain. */
  private augmentLeader(partition: number, cap: number): void {
    const cameFrom = new Map<number, Step | null>();
    const queue: number[] = [];
    for (const broker of this.replicas[partition]!) {
      cameFrom.set(broker, null);
      queue.push(broker);
    }
    let end = -1;
    for (let head = 0; head < queue.length && end < 0; head += 1) {
      const giver = queue[head]!;
      for (const q of this.holdings[giver]!) {
        if (this.leader[q] !== giver) continue;
        for (const taker of this.replicas[q]!) {
          if (cameFrom.has(taker)) continue;
          cameFrom.set(taker, { giver, partition: q });
          if (this.leads[taker]! < cap) {
            end = taker;
            break;
          }
          queue.push(taker);
        }
        if (end >= 0) break;
      }
    }
    assert(end >= 0, 'placement: no leadership chain although balanced leaders exist');
    let current = end;
    for (let step = cameFrom.get(current); step !== null && step !== undefined; step = cameFrom.get(current)) {
      this.setLeader(step.partition, current);
      current = step.giver;
    }
    this.setLeader(partition, current);
  }

  /**
   * `broker` leads fewer than floor(P/N): it takes a leadership from a replica-mate, who takes
   * one from its own mates, and so on until a broker that leads more than floor(P/N) gives one.
   */
  private levelLeader(broker: number, floor: number): void {
    const cameFrom = new Map<number, Step | null>([[broker, null]]);
    const queue = [broker];
    let end = -1;
    for (let head = 0; head < queue.length && end < 0; head += 1) {
      const taker = queue[head]!;
      for (const q of this.holdings[taker]!) {
        const holder = this.leader[q]!;
        if (holder === taker || cameFrom.has(holder)) continue;
        // Reversed direction: `holder` gives q to `taker`.
        cameFrom.set(holder, { giver: taker, partition: q });
        if (this.leads[holder]! > floor) {
          end = holder;
          break;
        }
        queue.push(holder);
      }
    }
    assert(end >= 0, 'placement: no leadership chain to level a broker below floor');
    for (let current = end, step = cameFrom.get(current); step !== null && step !== undefined; step = cameFrom.get(current)) {
      this.setLeader(step.partition, step.giver);
      current = step.giver;
    }
  }

  /** Step 6: node ids, preferred leader first, then the others in their order. */
  result(): number[][] {
    return this.replicas.map((list, p) => {
      const leader = this.leader[p]!;
      assert(leader >= 0 && list.length === this.replicationFactor, 'placement: incomplete partition');
      return [leader, ...list.filter((broker) => broker !== leader)].map((broker) => this.nodeIds[broker]!);
    });
  }
}
