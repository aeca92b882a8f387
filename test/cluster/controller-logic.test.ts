import { describe, expect, it } from 'vitest';
import {
  brokerDied,
  brokerReturned,
  changeIsr,
  createPartitionStates,
  electPreferredLeaders,
  noLeader,
  partitionStateProblem,
  reconcile,
  type ClusterState,
  type PartitionState,
} from '../../src/cluster/controller-logic.js';
import { partitionKey } from '../../src/lib/topic-partition.js';

const key = partitionKey('orders', 0);

function cluster(live: number[], state: Partial<PartitionState>): ClusterState {
  const full: PartitionState = { replicas: [1, 2, 3], leader: 1, leaderEpoch: 4, partitionEpoch: 9, isr: [1, 2, 3], version: 77, ...state };
  return { liveBrokers: new Set(live), partitions: new Map([[key, full]]) };
}

describe('controller decisions', () => {
  it('creates a topic led by each first replica, every replica in sync', () => {
    const states = createPartitionStates('orders', [[2, 1], [1, 3]]);
    const expected = { replicas: [1, 3], leader: 1, leaderEpoch: 0, partitionEpoch: 0, isr: [1, 3], version: 0 };
    expect(states.get(partitionKey('orders', 1))).toEqual(expected);
  });

  it('elects the first live ISR member in replica order when the leader dies; the epoch goes up', () => {
    const [change] = brokerDied(cluster([1, 2, 3], { isr: [3, 1, 2] }), 1);
    expect(change!.reason).toBe('leader-election');
    expect(change!.after).toEqual({ replicas: [1, 2, 3], leader: 2, leaderEpoch: 5, partitionEpoch: 10, isr: [3, 2], version: 77 });
  });

  it('never elects a live replica outside the ISR unless the topic allows unclean election', () => {
    const state = cluster([1, 2], { isr: [1, 3] });
    const [offline] = brokerDied(state, 1);
    expect(offline!.reason).toBe('offline');
    expect(offline!.after).toMatchObject({ leader: noLeader, leaderEpoch: 5, isr: [1, 3] });
    const [unclean] = brokerDied(state, 1, { uncleanLeaderElection: (topic) => topic === 'orders' });
    expect(unclean!).toMatchObject({ reason: 'unclean-election', mayLoseData: true, after: { leader: 2, leaderEpoch: 5, isr: [2] } });
  });

  it('a follower that dies leaves the ISR; the leader epoch stays, the partition epoch moves', () => {
    const [change] = brokerDied(cluster([1, 2, 3], {}), 3);
    expect(change!).toMatchObject({ reason: 'isr-shrink', after: { leader: 1, leaderEpoch: 4, partitionEpoch: 10, isr: [1, 2] } });
  });

  it('a returning broker does not rejoin the ISR, but leads an offline partition whose ISR names it', () => {
    expect(brokerReturned(cluster([1], { isr: [1] }), 2)).toEqual([]);
    const [change] = brokerReturned(cluster([], { leader: noLeader, leaderEpoch: 5, isr: [3] }), 3);
    expect(change!).toMatchObject({ reason: 'leader-election', after: { leader: 3, leaderEpoch: 6, isr: [3] } });
    expect(brokerReturned(cluster([], { leader: noLeader, leaderEpoch: 5, isr: [3] }), 2)).toEqual([]);
  });

  it('is idempotent: a second run over its own result decides nothing', () => {
    const before = cluster([2, 3], {});
    const [change] = reconcile(before);
    expect(reconcile({ liveBrokers: before.liveBrokers, partitions: new Map([[key, change!.after]]) })).toEqual([]);
  });

  it('hands leadership back to the preferred replica once it is a live ISR member', () => {
    expect(electPreferredLeaders(cluster([1, 2, 3], { leader: 2, isr: [2, 3] }))).toEqual([]);
    const [change] = electPreferredLeaders(cluster([1, 2, 3], { leader: 2, isr: [2, 3, 1] }));
    expect(change!).toMatchObject({ reason: 'preferred-election', after: { leader: 1, leaderEpoch: 5, isr: [2, 3, 1] } });
  });

  it('flags states that break the rules', () => {
    const base: PartitionState = { replicas: [1, 2], leader: 1, leaderEpoch: 0, partitionEpoch: 0, isr: [1], version: 0 };
    expect(partitionStateProblem(base)).toBeUndefined();
    expect(partitionStateProblem({ ...base, leader: 2 })).toMatch(/leader must be in the ISR/);
    expect(partitionStateProblem({ ...base, isr: [] })).toMatch(/not be empty/);
    expect(partitionStateProblem({ ...base, isr: [1, 4] })).toMatch(/subset/);
    expect(partitionStateProblem({ ...base, leaderEpoch: -1 })).toMatch(/leaderEpoch/);
  });
});

describe('changeIsr (the leader\'s ISR change)', () => {
  const state: PartitionState = { replicas: [1, 2, 3], leader: 1, leaderEpoch: 4, partitionEpoch: 9, isr: [1, 2], version: 77 };
  const live = new Set([1, 2, 3]);

  it('builds the state to CAS: ISR in replica order, partition epoch up, leader epoch and version kept', () => {
    expect(changeIsr(state, { leaderId: 1, leaderEpoch: 4, isr: [3, 1, 2] }, live)).toEqual({ ...state, isr: [1, 2, 3], partitionEpoch: 10 });
    expect(changeIsr(state, { leaderId: 1, leaderEpoch: 4, isr: [1] }, live)).toEqual({ ...state, isr: [1], partitionEpoch: 10 });
    expect(changeIsr(state, { leaderId: 1, leaderEpoch: 4, isr: [2, 1] }, live)).toBeUndefined();
  });

  it('fences a replaced leader and does not add brokers the cluster considers dead', () => {
    expect(() => changeIsr(state, { leaderId: 1, leaderEpoch: 3, isr: [1] }, live)).toThrow(/FENCED_LEADER_EPOCH/);
    expect(() => changeIsr(state, { leaderId: 1, leaderEpoch: 5, isr: [1] }, live)).toThrow(/UNKNOWN_LEADER_EPOCH/);
    expect(() => changeIsr(state, { leaderId: 2, leaderEpoch: 4, isr: [2] }, live)).toThrow(/NOT_LEADER/);
    expect(changeIsr(state, { leaderId: 1, leaderEpoch: 4, isr: [1, 2, 3] }, new Set([1, 2]))).toBeUndefined();
  });
});
