/**
 * The controller at work (src/cluster/controller.ts) over the in-memory etcd (fake-etcd.ts) and
 * the real metadata view (cluster-metadata.ts): it places new topics, elects a new leader from
 * the ISR when one dies, deletes the states of a deleted topic, and a deposed controller (whose
 * controller key was taken over) writes nothing, whatever it believes.
 */
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterController } from '../../src/cluster/controller.js';
import { ClusterMetadata } from '../../src/cluster/cluster-metadata.js';
import { clusterKeys, encodeRecord, type TopicRecord } from '../../src/cluster/records.js';
import type { ClusterMembership } from '../../src/cluster/membership.js';
import type { PartitionState } from '../../src/cluster/controller-logic.js';
import { defaultTopicConfig } from '../../src/wire/control.js';
import { partitionKey } from '../../src/lib/topic-partition.js';
import { FakeEtcd } from './fake-etcd.js';

const keys = clusterKeys('test');
const quiet = (): void => {};

/** What the controller reads of membership: the live brokers and whether it holds the key at an epoch. */
class FakeMembership extends EventEmitter {
  live = [1, 2, 3];
  epoch = 0;
  holds = true;
  get isController(): boolean {
    return this.holds;
  }
  controller(): { nodeId: number; epoch: number } | null {
    return this.holds ? { nodeId: 1, epoch: this.epoch } : null;
  }
  brokers(): { nodeId: number; rack: string | null }[] {
    return this.live.map((nodeId) => ({ nodeId, rack: null }));
  }
  setLive(live: number[]): void {
    this.live = live;
    this.emit('brokers', this.brokers());
  }
}

let etcd: FakeEtcd | null = null;
const closers: (() => unknown)[] = [];

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  etcd?.close();
  etcd = null;
});

async function until<T>(probe: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not within 5 s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function setup(autoReplaceDeadBrokersMs = 0): Promise<{ etcd: FakeEtcd; membership: FakeMembership; metadata: ClusterMetadata; controller: ClusterController }> {
  etcd = new FakeEtcd(1);
  const port = etcd.client();
  // The controller key, as membership.ts creates it; its create revision is the epoch.
  const lease = etcd.grant(60);
  etcd.createIfAbsent(keys.controller, encodeRecord({ nodeId: 1, electedAtMs: 0 }), lease.leaseId);
  const membership = new FakeMembership();
  membership.epoch = etcd.get(keys.controller)!.createRevision;
  const metadata = new ClusterMetadata(port, keys, quiet);
  await metadata.start();
  const controller = new ClusterController(port, keys, membership as unknown as ClusterMembership, metadata, quiet, autoReplaceDeadBrokersMs);
  controller.start();
  closers.push(() => controller.close(), () => metadata.close());
  return { etcd, membership, metadata, controller };
}

function createTopic(store: FakeEtcd, name: string, partitions: number, replicationFactor: number): void {
  const record: TopicRecord = { name, partitions, replicationFactor, config: defaultTopicConfig, createdAtMs: 1 };
  store.putRaw(keys.topic(name), encodeRecord(record));
}

function statesOf(metadata: ClusterMetadata, topic: string, partitions: number): PartitionState[] | undefined {
  const states = Array.from({ length: partitions }, (_, i) => metadata.view.partitions.get(partitionKey(topic, i)));
  return states.every((s) => s !== undefined) ? (states as PartitionState[]) : undefined;
}

describe('ClusterController over etcd', () => {
  it('places a new topic: every partition gets RF distinct live replicas, led by the first, all in sync', async () => {
    const { etcd: store, metadata } = await setup();
    createTopic(store, 'orders', 6, 3);
    await metadata.refresh();
    const states = await until(() => statesOf(metadata, 'orders', 6), 'orders placed');
    for (const state of states) {
      expect(new Set(state.replicas).size).toBe(3);
      expect(state.leader).toBe(state.replicas[0]);
      expect([...state.isr].sort()).toEqual([...state.replicas].sort());
      expect(state.leaderEpoch).toBe(0);
    }
    // Leadership spread: each broker leads 2 of the 6.
    const leads = new Map<number, number>();
    for (const state of states) leads.set(state.leader, (leads.get(state.leader) ?? 0) + 1);
    expect([...leads.values()]).toEqual([2, 2, 2]);
  });

  it('a broker dies: its leaderships move to an ISR member (epoch + 1), it leaves every ISR; a deleted topic loses its states', async () => {
    const { etcd: store, membership, metadata } = await setup();
    createTopic(store, 'orders', 3, 3);
    await metadata.refresh();
    const before = await until(() => statesOf(metadata, 'orders', 3), 'orders placed');
    membership.setLive([2, 3]);
    const after = await until(() => {
      const states = statesOf(metadata, 'orders', 3);
      return states?.every((s) => !s.isr.includes(1)) ? states : undefined;
    }, 'broker 1 out of every ISR');
    after.forEach((state, i) => {
      const was = before[i]!;
      expect(state.leader).not.toBe(1);
      expect(was.isr).toContain(state.leader);
      expect(state.leaderEpoch).toBe(was.leader === 1 ? was.leaderEpoch + 1 : was.leaderEpoch);
    });

    store.txn([], [{ key: keys.topic('orders'), value: null }]);
    await metadata.refresh();
    await until(() => (metadata.view.partitions.size === 0 ? true : undefined), 'states of the deleted topic removed');
  });

  it('autoReplaceDeadBrokersMs: a broker dead that long has its replicas moved to live brokers (a rebalance); a broker back in time keeps them', async () => {
    const { etcd: store, membership, metadata } = await setup(300);
    membership.live = [1, 2, 3, 4];
    createTopic(store, 'orders', 4, 2);
    await metadata.refresh();
    const placed = await until(() => statesOf(metadata, 'orders', 4), 'orders placed');
    const victim = placed[0]!.replicas[0]!;
    const held = placed.filter((s) => s.replicas.includes(victim)).length;
    // Dead briefly, back before the delay: nothing moves.
    membership.setLive([1, 2, 3, 4].filter((id) => id !== victim));
    await new Promise((resolve) => setTimeout(resolve, 100));
    membership.setLive([1, 2, 3, 4]);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await metadata.refresh();
    expect(statesOf(metadata, 'orders', 4)!.every((s) => s.targetReplicas === undefined)).toBe(true);
    // Dead for good: after the delay every partition it held moves to live brokers only.
    membership.setLive([1, 2, 3, 4].filter((id) => id !== victim));
    const moving = await until(() => {
      const states = statesOf(metadata, 'orders', 4);
      const targets = states?.filter((s) => s.targetReplicas !== undefined) ?? [];
      return targets.length === held ? targets : undefined;
    }, 'moves off the dead broker');
    for (const state of moving) {
      expect(state.targetReplicas).not.toContain(victim);
      expect(state.targetReplicas).toHaveLength(2);
    }
  });

  it('a deposed controller writes nothing: its guard on the controller key fails', async () => {
    const { etcd: store, membership, metadata } = await setup();
    createTopic(store, 'orders', 2, 3);
    await metadata.refresh();
    const placed = await until(() => statesOf(metadata, 'orders', 2), 'orders placed');
    // Another broker won the key (the old lease expired): a new create revision.
    store.revoke(store.get(keys.controller)!.leaseId);
    const lease = store.grant(60);
    store.createIfAbsent(keys.controller, encodeRecord({ nodeId: 2, electedAtMs: 1 }), lease.leaseId);
    // This one has not noticed and still believes it is controller at its old epoch.
    const revisionBefore = store.revision;
    membership.setLive([2, 3]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await metadata.refresh();
    expect(statesOf(metadata, 'orders', 2)!.map((s) => s.version)).toEqual(placed.map((s) => s.version));
    expect(store.revision).toBe(revisionBefore);
  });
});
