/**
 * The server-side assignor: balanced, sticky, consistent hashing with bounded loads. Pure and
 * deterministic: the output is a function of the member set, their subscriptions, the partition
 * counts and the previous assignment, never of the order anything is listed in.
 *
 * How it works
 *   1. Quotas. Each member's fair share is  sum over its subscribed topics t of
 *      partitions(t) / subscribers(t). Its floor is floor(share); the partitions left over
 *      (extras = P - sum of floors) may each raise one member with a fractional share to
 *      floor + 1. Loads therefore stay within floor..floor+1 of the fair share.
 *   2. Stickiness. Every member keeps its previous partitions that are still valid (topic exists,
 *      partition in range, topic still subscribed) up to its floor; then members that held more
 *      (most first, ties by hash of memberId) keep one more while extras remain.
 *   3. Placement. Every partition not kept is placed on a hash ring (murmur3, virtual nodes per
 *      member): the first member clockwise from the partition's hash that subscribes to the topic
 *      and has room takes it (consistent hashing with bounded loads); members below their floor
 *      are preferred over members taking an extra. Topics with the fewest subscribers are placed
 *      first, because they have the fewest choices.
 *   4. Only with heterogeneous subscriptions can every subscriber of a topic be full. Then a
 *      chain of single moves (an augmenting path) frees a slot; failing that, the least-loaded
 *      subscriber takes the partition over its quota.
 *
 * Guarantees when all members subscribe to the same topics (P partitions, N members):
 *   - every partition is owned by exactly one member; loads are floor(P/N) or ceil(P/N);
 *   - when members leave or die, only their partitions move; survivors keep all of theirs;
 *   - when one member joins, only the partitions it needs (floor or ceil of P/(N+1)) move, all to it;
 *   - running again with the same inputs moves nothing;
 *   - with no previous assignment, the result depends only on the member ids and the topics.
 * With heterogeneous subscriptions:
 *   - every partition of a subscribed, existing topic is owned by exactly one member subscribed
 *     to it (always);
 *   - a member keeps its valid previous partitions up to its quota;
 *   - loads stay within floor..ceil of the fair share whenever the augmenting search finds room,
 *     which it does except for rare shapes of overlapping subscriptions; then the least-loaded
 *     subscriber takes the rest, and a later run may move those few partitions again.
 *
 * Cost: O(P log P + N*V log(N*V)) plus ring walks; a walk is short unless almost every member is
 * full, bounded by the ring size N*V.
 */
import { assert } from '../lib/assert.js';
import { murmur3 } from '../wire/hash.js';
import {
  compareStrings,
  compareTopicPartitions,
  partitionKey,
  type PartitionKey,
  type TopicPartition,
} from './types.js';

export interface AssignorMember {
  memberId: string;
  subscribedTopics: readonly string[];
}

export interface AssignorInput {
  members: readonly AssignorMember[];
  /** Partition count per existing topic. Topics absent here get no assignment. */
  partitionCounts: ReadonlyMap<string, number>;
  /** The previous assignment by member id (members absent from `members` are gone). */
  previous: ReadonlyMap<string, readonly TopicPartition[]>;
}

/** Partitions per member id, each list sorted; every input member has an entry (possibly empty). */
export type Assignment = Map<string, TopicPartition[]>;

/** Virtual nodes per member on the ring: enough to spread placement, few enough to stay cheap. */
const ringVirtualNodes = 16;
const partitionHashSeed = 0x5f3759df;
/** Slack for floating-point shares (shares are sums of fractions). */
const shareEpsilon = 1e-7;

const hashString = murmur3;

interface MemberLoad {
  memberId: string;
  subscribed: Set<string>;
  /** floor(fair share). */
  floor: number;
  /** May take floor + 1 while extras remain. */
  fractional: boolean;
  owned: TopicPartition[];
}

/** The extras (partitions above a member's floor) still available. */
interface Extras {
  left: number;
}

function hasRoom(load: MemberLoad, extras: Extras): boolean {
  if (load.owned.length < load.floor) return true;
  return load.fractional && load.owned.length === load.floor && extras.left > 0;
}

function give(load: MemberLoad, tp: TopicPartition, extras: Extras): void {
  if (load.owned.length >= load.floor) extras.left -= 1;
  load.owned.push(tp);
}

function take(load: MemberLoad, index: number, extras: Extras): TopicPartition {
  if (load.owned.length > load.floor) extras.left += 1;
  return load.owned.splice(index, 1)[0]!;
}

export function assign(input: AssignorInput): Assignment {
  const members = [...input.members].sort((a, b) => compareStrings(a.memberId, b.memberId));
  for (let index = 1; index < members.length; index += 1) {
    assert(members[index - 1]!.memberId !== members[index]!.memberId, 'assignor: duplicate member id');
  }
  const subscribers = subscribersByTopic(members, input.partitionCounts);
  const loads: MemberLoad[] = members.map((member) => ({
    memberId: member.memberId,
    subscribed: new Set(member.subscribedTopics),
    floor: 0,
    fractional: false,
    owned: [],
  }));
  const previousValid = validPrevious(loads, input);
  const extras = setFloors(loads, subscribers, input.partitionCounts);
  keepPrevious(loads, previousValid, extras);
  placeRemaining(loads, subscribers, input.partitionCounts, extras);

  const result: Assignment = new Map();
  for (const load of loads) result.set(load.memberId, load.owned.sort(compareTopicPartitions));
  return result;
}

/** Topic -> sorted ids of members subscribed to it, for existing topics with at least one subscriber. */
function subscribersByTopic(
  members: readonly AssignorMember[],
  partitionCounts: ReadonlyMap<string, number>,
): Map<string, string[]> {
  const subscribers = new Map<string, string[]>();
  for (const member of members) {
    for (const topic of new Set(member.subscribedTopics)) {
      if (!partitionCounts.has(topic)) continue;
      const list = subscribers.get(topic) ?? [];
      list.push(member.memberId);
      subscribers.set(topic, list);
    }
  }
  return subscribers;
}

/** Previous partitions each member may keep: existing, in range, subscribed, not claimed twice. */
function validPrevious(loads: readonly MemberLoad[], input: AssignorInput): Map<string, TopicPartition[]> {
  const claimed = new Set<PartitionKey>();
  const result = new Map<string, TopicPartition[]>();
  for (const load of loads) {
    const previous = [...(input.previous.get(load.memberId) ?? [])].sort(compareTopicPartitions);
    const valid: TopicPartition[] = [];
    for (const tp of previous) {
      const count = input.partitionCounts.get(tp.topic);
      if (count === undefined || !load.subscribed.has(tp.topic)) continue;
      if (!Number.isInteger(tp.partition) || tp.partition < 0 || tp.partition >= count) continue;
      const key = partitionKey(tp.topic, tp.partition);
      if (claimed.has(key)) continue;
      claimed.add(key);
      valid.push({ topic: tp.topic, partition: tp.partition });
    }
    result.set(load.memberId, valid);
  }
  return result;
}

function setFloors(
  loads: MemberLoad[],
  subscribers: ReadonlyMap<string, string[]>,
  partitionCounts: ReadonlyMap<string, number>,
): Extras {
  let partitionsTotal = 0;
  for (const topic of subscribers.keys()) partitionsTotal += partitionCounts.get(topic)!;
  let floorsTotal = 0;
  for (const load of loads) {
    let share = 0;
    for (const topic of load.subscribed) {
      const topicSubscribers = subscribers.get(topic);
      if (topicSubscribers !== undefined) share += partitionCounts.get(topic)! / topicSubscribers.length;
    }
    load.floor = Math.floor(share + shareEpsilon);
    load.fractional = share - load.floor > shareEpsilon;
    floorsTotal += load.floor;
  }
  return { left: partitionsTotal - floorsTotal };
}

/** Each member keeps up to its floor; those that held more keep one extra while extras last. */
function keepPrevious(loads: readonly MemberLoad[], previousValid: ReadonlyMap<string, TopicPartition[]>, extras: Extras): void {
  for (const load of loads) {
    for (const tp of (previousValid.get(load.memberId) ?? []).slice(0, load.floor)) give(load, tp, extras);
  }
  const candidates = loads.filter((load) => load.fractional && (previousValid.get(load.memberId)?.length ?? 0) > load.floor);
  const held = (load: MemberLoad): number => previousValid.get(load.memberId)!.length;
  candidates.sort(
    (a, b) => held(b) - b.floor - (held(a) - a.floor) || hashString(a.memberId, 0) - hashString(b.memberId, 0) || compareStrings(a.memberId, b.memberId),
  );
  for (const load of candidates) {
    if (extras.left <= 0) break;
    give(load, previousValid.get(load.memberId)![load.floor]!, extras);
  }
}

interface RingNode {
  position: number;
  load: MemberLoad;
}

function buildRing(loads: readonly MemberLoad[]): RingNode[] {
  const ring: RingNode[] = [];
  for (const load of loads) {
    for (let node = 0; node < ringVirtualNodes; node += 1) {
      ring.push({ position: hashString(load.memberId, node), load });
    }
  }
  // Ties between positions are broken by member id so the ring does not depend on input order.
  ring.sort((a, b) => a.position - b.position || compareStrings(a.load.memberId, b.load.memberId));
  return ring;
}

/** Index of the first ring node at or after `position`, wrapping to 0. */
function ringStart(ring: readonly RingNode[], position: number): number {
  let low = 0;
  let high = ring.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (ring[middle]!.position < position) low = middle + 1;
    else high = middle;
  }
  return low === ring.length ? 0 : low;
}

function placeRemaining(
  loads: readonly MemberLoad[],
  subscribers: ReadonlyMap<string, string[]>,
  partitionCounts: ReadonlyMap<string, number>,
  extras: Extras,
): void {
  if (loads.length === 0) return;
  const assigned = new Set<PartitionKey>();
  for (const load of loads) for (const tp of load.owned) assigned.add(partitionKey(tp.topic, tp.partition));
  const ring = buildRing(loads);
  const topics = [...subscribers.keys()].sort(
    (a, b) => subscribers.get(a)!.length - subscribers.get(b)!.length || compareStrings(a, b),
  );
  for (const topic of topics) {
    const count = partitionCounts.get(topic)!;
    for (let partition = 0; partition < count; partition += 1) {
      if (assigned.has(partitionKey(topic, partition))) continue;
      const owner = ringOwner(ring, topic, partition, extras) ?? shiftToMakeRoom(loads, topic, extras) ?? leastLoaded(ring, topic);
      give(owner, { topic, partition }, extras);
    }
  }
}

/**
 * Clockwise from the partition's hash: the first subscriber below its floor, else the first
 * subscriber that may take an extra.
 */
function ringOwner(ring: readonly RingNode[], topic: string, partition: number, extras: Extras): MemberLoad | undefined {
  const start = ringStart(ring, hashString(partitionKey(topic, partition), partitionHashSeed));
  let extraTaker: MemberLoad | undefined;
  for (let step = 0; step < ring.length; step += 1) {
    const load = ring[(start + step) % ring.length]!.load;
    if (!load.subscribed.has(topic)) continue;
    if (load.owned.length < load.floor) return load;
    if (extraTaker === undefined && hasRoom(load, extras)) extraTaker = load;
  }
  return extraTaker;
}

/** Only when quotas cannot all be met: the subscriber with the fewest partitions, first on the ring. */
function leastLoaded(ring: readonly RingNode[], topic: string): MemberLoad {
  let best: MemberLoad | undefined;
  for (const node of ring) {
    if (!node.load.subscribed.has(topic)) continue;
    if (best === undefined || node.load.owned.length < best.owned.length) best = node.load;
  }
  assert(best !== undefined, 'assignor: topic without a subscriber');
  return best;
}

interface Shift {
  giver: MemberLoad;
  topic: string;
}

/**
 * Every subscriber of `topic` is full. Looks, breadth first, for a chain of moves that frees a
 * slot in one of them: a full member hands a partition of another topic to a subscriber of that
 * topic, and so on, until a member in the chain has room. Returns the subscriber of `topic` that
 * now has a free slot, or undefined. Each member is visited once and offers one partition per
 * topic, so the search is O(members x topics x members).
 */
function shiftToMakeRoom(loads: readonly MemberLoad[], topic: string, extras: Extras): MemberLoad | undefined {
  const cameFrom = new Map<MemberLoad, Shift | null>();
  const queue: MemberLoad[] = [];
  for (const load of loads) {
    if (!load.subscribed.has(topic)) continue;
    cameFrom.set(load, null);
    queue.push(load);
  }
  for (let head = 0; head < queue.length; head += 1) {
    const giver = queue[head]!;
    for (const ownedTopic of new Set(giver.owned.map((tp) => tp.topic))) {
      for (const taker of loads) {
        if (cameFrom.has(taker) || !taker.subscribed.has(ownedTopic)) continue;
        cameFrom.set(taker, { giver, topic: ownedTopic });
        if (hasRoom(taker, extras)) return applyShifts(taker, cameFrom, extras);
        queue.push(taker);
      }
    }
  }
  return undefined;
}

/** Walks the chain back from the member with room; returns its root, which now has a free slot. */
function applyShifts(taker: MemberLoad, cameFrom: ReadonlyMap<MemberLoad, Shift | null>, extras: Extras): MemberLoad {
  let current = taker;
  for (let shift = cameFrom.get(current); shift !== null && shift !== undefined; shift = cameFrom.get(current)) {
    let index = shift.giver.owned.length - 1;
    while (index >= 0 && shift.giver.owned[index]!.topic !== shift.topic) index -= 1;
    assert(index >= 0, 'assignor: giver lost the partition it offered');
    give(current, take(shift.giver, index, extras), extras);
    current = shift.giver;
  }
  return current;
}
