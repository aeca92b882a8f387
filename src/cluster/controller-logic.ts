/**
 * The controller's decisions, as pure functions of the cluster's state: which broker leads each
 * partition, and who is in its in-sync replica set (ISR). The etcd adapter reads the state,
 * calls these, and writes each returned state with a compare-and-swap on the version it read;
 * a CAS that fails means someone decided first: read again and decide again. No I/O, no clock.
 *
 * The state of a partition (one etcd key each)
 *   replicas        the brokers that hold a copy, preferred leader first (placement.ts). Elections
 *                   go through it in this order.
 *   leader          the broker that takes writes, or -1 (noLeader): offline.
 *   leaderEpoch     +1 on every change of leader, to none included. Batches are stamped with it;
 *                   a request or a fetch carrying an older one is fenced (FENCED_LEADER_EPOCH).
 *   partitionEpoch  +1 on every change of this state (leader or ISR): orders the versions.
 *   isr             the in-sync replicas. Rule: every member holds, fsynced, every batch ever
 *                   acknowledged with acks 'all' (replica-tracker.ts keeps it so). Never empty; the
 *                   leader, when there is one, is a member.
 *   version         the etcd mod revision the state was read at; the CAS compares it.
 *
 * Decisions, made by reconcile() from the live broker set alone (so a new controller, or one
 * that missed events, decides the same as one that saw every event):
 *
 *   leader         ISR has a live member      none live, unclean allowed    none live, clean only
 *   ------------   ------------------------   ---------------------------   ---------------------
 *   live           drop dead followers from   (cannot happen: the leader    (cannot happen)
 *                  the ISR; leaderEpoch kept  is a live ISR member)
 *   dead or none   first live ISR member in   first live replica; ISR =     leader -1 (offline);
 *                  replica order; ISR minus   [it]; mayLoseData: it may     ISR kept: its dead
 *                  the dead; leaderEpoch+1    lack acknowledged batches     members hold everything
 *
 *   So a broker that dies loses its leaderships (clean elections among the ISR) and its ISR
 *   memberships; a broker that comes back is not put back into the ISR by the controller (its
 *   leader adds it once it has caught up), except that an offline partition whose ISR names it
 *   is led by it again (leaderEpoch+1): it holds every acknowledged batch.
 *
 * Also: the initial states of a new topic (createPartitionStates), the preferred-leader election
 * (electPreferredLeader: the first replica leads again once it is a live ISR member), and the
 * leader's own ISR changes (changeIsr: the leader proposes, this checks and builds the state to
 * CAS; additions of brokers the cluster considers dead are dropped).
 *
 * Kafka's KRaft controller makes the same choices (PartitionChangeBuilder): the leader epoch
 * moves only with the leader; an ISR change bumps the partition epoch alone.
 */
import { assert } from '../lib/assert.js';
import { RillError } from '../lib/errors.js';
import { compareStrings, parsePartitionKey, partitionKey, type PartitionKey } from '../lib/topic-partition.js';

export const noLeader = -1;

export interface PartitionState {
  readonly replicas: readonly number[];
  readonly leader: number;
  readonly leaderEpoch: number;
  readonly partitionEpoch: number;
  readonly isr: readonly number[];
  /** etcd mod revision the state was read at (0: not written yet); a write compares it. */
  readonly version: number;
  /**
   * While replicas move (reassignment: rebalance, decommission): the replica list the partition
   * moves to. `replicas` is then the old list plus the new brokers, so the new ones fetch and
   * join the ISR; once every target is in the ISR the controller makes `replicas` the target
   * (completeMove). Absent: no move.
   */
  readonly targetReplicas?: readonly number[];
}

export interface ClusterState {
  readonly liveBrokers: ReadonlySet<number>;
  readonly partitions: ReadonlyMap<PartitionKey, PartitionState>;
}

export interface ElectionPolicy {
  /** The topic's `uncleanLeaderElection` setting (default false). */
  uncleanLeaderElection(topic: string): boolean;
}

export const cleanElectionsOnly: ElectionPolicy = { uncleanLeaderElection: () => false };

export type ChangeReason =
  /** A live ISR member was elected leader. */
  | 'leader-election'
  /** No ISR member was alive; a live replica outside it was elected (topic allows it). */
  | 'unclean-election'
  /** The leader died and no ISR member is alive: no leader until one comes back. */
  | 'offline'
  /** Dead followers left the ISR; the leader stays. */
  | 'isr-shrink'
  /** The first replica leads again. */
  | 'preferred-election'
  /** The leader changed the ISR (changeIsr). */
  | 'isr-change';

export interface PartitionChange {
  readonly key: PartitionKey;
  readonly topic: string;
  readonly partition: number;
  readonly before: PartitionState;
  /** The state to write; its `version` is before.version, the one the CAS compares. */
  readonly after: PartitionState;
  readonly reason: ChangeReason;
  /** Unclean election: batches acknowledged by the old ISR may be missing from the new leader. */
  readonly mayLoseData: boolean;
}

/** Why a state read from etcd breaks the rules, or undefined if it keeps them. */
export function partitionStateProblem(state: PartitionState): string | undefined {
  const { replicas, isr, leader } = state;
  const isBrokerId = (id: number) => Number.isInteger(id) && id >= 0;
  if (replicas.length === 0 || !replicas.every(isBrokerId)) return 'replicas must be a non-empty list of broker ids';
  if (new Set(replicas).size !== replicas.length) return 'replicas must be distinct';
  if (isr.length === 0) return 'the ISR must not be empty';
  if (new Set(isr).size !== isr.length) return 'ISR members must be distinct';
  if (!isr.every((id) => replicas.includes(id))) return 'the ISR must be a subset of the replicas';
  if (leader !== noLeader && !isr.includes(leader)) return 'the leader must be in the ISR';
  const target = state.targetReplicas;
  if (target !== undefined) {
    if (target.length === 0 || new Set(target).size !== target.length) return 'target replicas must be a non-empty list of distinct broker ids';
    if (!target.every((id) => replicas.includes(id))) return 'target replicas must be among the replicas while they move';
  }
  const counters = { leaderEpoch: state.leaderEpoch, partitionEpoch: state.partitionEpoch, version: state.version };
  for (const [name, value] of Object.entries(counters)) {
    if (!Number.isSafeInteger(value) || value < 0) return `${name} must be a non-negative integer`;
  }
  return undefined;
}

function assertValid(state: PartitionState): void {
  const problem = partitionStateProblem(state);
  assert(problem === undefined, `controller: invalid partition state: ${problem}`);
}

/** A new topic: each partition led by its first replica, every replica in sync (the logs are empty). */
export function createPartitionStates(topic: string, replicaLists: readonly (readonly number[])[]): Map<PartitionKey, PartitionState> {
  const states = new Map<PartitionKey, PartitionState>();
  replicaLists.forEach((replicas, partition) => {
    const state: PartitionState = {
      replicas: [...replicas],
      leader: replicas[0]!,
      leaderEpoch: 0,
      partitionEpoch: 0,
      isr: [...replicas],
      version: 0,
    };
    assertValid(state);
    states.set(partitionKey(topic, partition), state);
  });
  return states;
}

interface Decision {
  after: PartitionState;
  reason: ChangeReason;
  mayLoseData: boolean;
}

function withChange(state: PartitionState, leader: number, isr: readonly number[]): PartitionState {
  const leaderChanged = leader !== state.leader;
  return {
    replicas: state.replicas,
    leader,
    leaderEpoch: leaderChanged ? state.leaderEpoch + 1 : state.leaderEpoch,
    partitionEpoch: state.partitionEpoch + 1,
    isr,
    version: state.version,
    ...(state.targetReplicas === undefined ? {} : { targetReplicas: state.targetReplicas }),
  };
}

/**
 * Starts moving a partition to `target` replicas (placement.ts decides them): the new brokers
 * join `replicas` (after the current ones, so elections still prefer the current), nothing else
 * changes; they fetch, catch up and the leader adds them to the ISR. Undefined when the partition
 * already has exactly these replicas or a move is under way.
 */
export function startMove(state: PartitionState, target: readonly number[]): PartitionState | undefined {
  assertValid(state);
  if (state.targetReplicas !== undefined) return undefined;
  if (target.length === state.replicas.length && target.every((id, i) => state.replicas[i] === id)) return undefined;
  const after: PartitionState = {
    ...withChange(state, state.leader, state.isr),
    replicas: [...state.replicas, ...target.filter((id) => !state.replicas.includes(id))],
    targetReplicas: [...target],
  };
  assertValid(after);
  return after;
}

/**
 * Finishes a move once every target replica is in the ISR: replicas become the target, the ISR
 * keeps its members that are targets, and a leader that is not a target hands over to the first
 * target in the ISR that is alive (leaderEpoch + 1). Undefined while a target lags (or, for a
 * leader change, no target in the ISR is alive).
 */
export function completeMove(state: PartitionState, liveBrokers: ReadonlySet<number>): PartitionState | undefined {
  assertValid(state);
  const target = state.targetReplicas;
  if (target === undefined || !target.every((id) => state.isr.includes(id))) return undefined;
  const isr = target.filter((id) => state.isr.includes(id));
  const leader = state.leader !== noLeader && target.includes(state.leader) ? state.leader : target.find((id) => isr.includes(id) && liveBrokers.has(id));
  if (leader === undefined) return undefined;
  const { targetReplicas: _done, ...rest } = withChange(state, leader, isr);
  const after: PartitionState = { ...rest, replicas: [...target] };
  assertValid(after);
  return after;
}

function sameMembers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}

/** The decision the table in the header gives for one partition, or undefined if nothing changes. */
export function reconcilePartition(state: PartitionState, liveBrokers: ReadonlySet<number>, uncleanAllowed: boolean): Decision | undefined {
  assertValid(state);
  const liveIsr = state.isr.filter((id) => liveBrokers.has(id));
  if (state.leader !== noLeader && liveBrokers.has(state.leader)) {
    if (sameMembers(liveIsr, state.isr)) return undefined;
    return { after: withChange(state, state.leader, liveIsr), reason: 'isr-shrink', mayLoseData: false };
  }
  const clean = state.replicas.find((id) => liveIsr.includes(id));
  if (clean !== undefined) return { after: withChange(state, clean, liveIsr), reason: 'leader-election', mayLoseData: false };
  const unclean = uncleanAllowed ? state.replicas.find((id) => liveBrokers.has(id)) : undefined;
  if (unclean !== undefined) return { after: withChange(state, unclean, [unclean]), reason: 'unclean-election', mayLoseData: true };
  if (state.leader === noLeader) return undefined;
  return { after: withChange(state, noLeader, state.isr), reason: 'offline', mayLoseData: false };
}

function change(key: PartitionKey, before: PartitionState, decision: Decision): PartitionChange {
  const { topic, partition } = parsePartitionKey(key);
  return { key, topic, partition, before, ...decision };
}

/** Every partition's decision for the current live set, in key order. */
export function reconcile(cluster: ClusterState, policy: ElectionPolicy = cleanElectionsOnly): PartitionChange[] {
  const changes: PartitionChange[] = [];
  for (const key of [...cluster.partitions.keys()].sort(compareStrings)) {
    const state = cluster.partitions.get(key)!;
    const decision = reconcilePartition(state, cluster.liveBrokers, policy.uncleanLeaderElection(parsePartitionKey(key).topic));
    if (decision !== undefined) changes.push(change(key, state, decision));
  }
  return changes;
}

/** The decisions when `brokerId` dies (its lease expired): reconcile without it. */
export function brokerDied(cluster: ClusterState, brokerId: number, policy: ElectionPolicy = cleanElectionsOnly): PartitionChange[] {
  const liveBrokers = new Set(cluster.liveBrokers);
  liveBrokers.delete(brokerId);
  return reconcile({ liveBrokers, partitions: cluster.partitions }, policy);
}

/** The decisions when `brokerId` registers again: reconcile with it. */
export function brokerReturned(cluster: ClusterState, brokerId: number, policy: ElectionPolicy = cleanElectionsOnly): PartitionChange[] {
  return reconcile({ liveBrokers: new Set([...cluster.liveBrokers, brokerId]), partitions: cluster.partitions }, policy);
}

/**
 * Leadership back to the preferred (first) replica once it is a live ISR member and leads
 * nothing else here. Optional: Kafka runs it periodically when a broker's share of preferred
 * leaderships it does not hold passes a threshold; the caller decides when.
 */
export function electPreferredLeader(state: PartitionState, liveBrokers: ReadonlySet<number>): Decision | undefined {
  assertValid(state);
  const preferred = state.replicas[0]!;
  if (state.leader === preferred || !liveBrokers.has(preferred) || !state.isr.includes(preferred)) return undefined;
  return { after: withChange(state, preferred, state.isr), reason: 'preferred-election', mayLoseData: false };
}

export function electPreferredLeaders(cluster: ClusterState): PartitionChange[] {
  const changes: PartitionChange[] = [];
  for (const key of [...cluster.partitions.keys()].sort(compareStrings)) {
    const state = cluster.partitions.get(key)!;
    const decision = electPreferredLeader(state, cluster.liveBrokers);
    if (decision !== undefined) changes.push(change(key, state, decision));
  }
  return changes;
}

export interface IsrChangeRequest {
  /** The broker asking: it must be the leader, at the leader epoch it names. */
  leaderId: number;
  leaderEpoch: number;
  /** The ISR the leader wants (replica-tracker.ts proposes it). */
  isr: readonly number[];
}

/**
 * The leader's ISR change as a state to CAS, or undefined if it changes nothing. A leader that
 * was replaced gets NOT_LEADER or FENCED_LEADER_EPOCH (it must stop acting as leader); one
 * ahead of this state gets UNKNOWN_LEADER_EPOCH (the state it read is older than its own: read
 * again). Brokers not in `liveBrokers` are not added: a broker the cluster considers dead never
 * joins the ISR (it could not be elected). The result lists the ISR in replica order.
 */
export function changeIsr(state: PartitionState, request: IsrChangeRequest, liveBrokers: ReadonlySet<number>): PartitionState | undefined {
  assertValid(state);
  if (request.leaderEpoch < state.leaderEpoch) {
    throw new RillError('FENCED_LEADER_EPOCH', `leader epoch ${request.leaderEpoch} is older than the partition's ${state.leaderEpoch}`);
  }
  if (request.leaderEpoch > state.leaderEpoch) {
    throw new RillError('UNKNOWN_LEADER_EPOCH', `leader epoch ${request.leaderEpoch} is newer than the partition's ${state.leaderEpoch}`);
  }
  if (state.leader !== request.leaderId) {
    throw new RillError('NOT_LEADER', `broker ${request.leaderId} does not lead this partition (leader: ${state.leader})`);
  }
  assert(request.isr.includes(request.leaderId), 'controller: an ISR change must keep the leader');
  assert(new Set(request.isr).size === request.isr.length, 'controller: ISR members must be distinct');
  // In replica order; members not (or no longer) replicas, and dead newcomers, are left out.
  const isr = state.replicas.filter((id) => request.isr.includes(id) && (state.isr.includes(id) || liveBrokers.has(id)));
  if (sameMembers(isr, state.isr)) return undefined;
  const after = withChange(state, state.leader, isr);
  assertValid(after);
  return after;
}
