/**
 * Membership and the controller election against an in-memory etcd (fake-etcd.ts), on fake
 * time: registration, duplicate node ids, an earlier run's registration taken over, fencing when
 * the lease may have ended, re-registration, and a model test that cuts and heals links and
 * kills brokers at random while checking, every 50 ms of fake time, that no two brokers ever
 * believe they are controller, that a broker that believes it is controller (or registered)
 * really holds that key in etcd, and that epochs only grow.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ClusterMembership, NodeIdTakenError } from '../../src/cluster/membership.js';
import { clusterKeys, type BrokerRegistration } from '../../src/cluster/records.js';
import type { LogLevel } from '../../src/lib/log.js';
import { FakeEtcd, type FakeEtcdClient, type LinkMode } from './fake-etcd.js';

const leaseTtlMs = 3000;
const keys = clusterKeys('model');

interface Member {
  nodeId: number;
  client: FakeEtcdClient;
  membership: ClusterMembership;
  joined: Promise<void>;
  logs: { level: LogLevel; message: string }[];
  dead: boolean;
}

let etcd: FakeEtcd;
const members: Member[] = [];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  etcd = new FakeEtcd();
});

afterEach(async () => {
  for (const member of members.splice(0)) {
    if (member.client.mode === 'dead') continue;
    member.client.mode = 'up';
    const closed = member.membership.close();
    await vi.advanceTimersByTimeAsync(2000);
    await closed;
  }
  etcd.close();
  vi.useRealTimers();
});

function registration(nodeId: number, dataDir = `/data/${nodeId}`, pid = 100 + nodeId): BrokerRegistration {
  return { nodeId, listeners: [{ name: 'rill', host: '127.0.0.1', port: 9000 + nodeId }], rack: null, version: 'test', startedAtMs: Date.now(), host: 'model-host', pid, dataDir };
}

function start(nodeId: number, self = registration(nodeId)): Member {
  const client = etcd.client(1000);
  const logs: Member['logs'] = [];
  const membership = new ClusterMembership({
    port: client, cluster: 'model', leaseTtlMs, self, clock: { nowMs: () => Date.now() }, log: (level, message) => logs.push({ level, message }),
  });
  const joined = membership.join(15_000);
  joined.catch(() => undefined);
  const member = { nodeId, client, membership, joined, logs, dead: false };
  members.push(member);
  return member;
}

/** Advances fake time in steps until `condition` holds; fails after `limitMs` of fake time. */
async function until(condition: () => boolean, limitMs: number, what: string): Promise<number> {
  for (let elapsedMs = 0; elapsedMs <= limitMs; elapsedMs += 50) {
    if (condition()) return elapsedMs;
    await vi.advanceTimersByTimeAsync(50);
  }
  throw new Error(`not within ${limitMs} ms of fake time: ${what}`);
}

function controllers(): Member[] {
  return members.filter((m) => !m.dead && m.membership.isController);
}

describe('cluster membership (fake etcd, fake time)', () => {
  it('three brokers register, see each other, and elect exactly one controller', async () => {
    const started = [1, 2, 3].map((id) => start(id));
    await vi.advanceTimersByTimeAsync(200);
    await Promise.all(started.map((m) => m.joined));
    await until(() => started.every((m) => m.membership.brokers().length === 3), 2000, 'every broker sees three');
    expect(controllers()).toHaveLength(1);
    const controller = started[0]!.membership.controller()!;
    for (const m of started) expect(m.membership.controller()).toEqual(controller);
    expect(etcd.get(keys.controller)!.createRevision).toBe(controller.epoch);
    expect(started.map((m) => m.membership.brokers().map((b) => b.listeners[0]!.port))).toEqual([[9001, 9002, 9003], [9001, 9002, 9003], [9001, 9002, 9003]]);
  });

  it('is not chatty: one keepalive and one read per third of the TTL when nothing changes', async () => {
    const m = start(1);
    await vi.advanceTimersByTimeAsync(200);
    await m.joined;
    const before = { keepAlive: m.client.requests.get('keepAlive') ?? 0, snapshot: m.client.requests.get('snapshot') ?? 0 };
    await vi.advanceTimersByTimeAsync(30_000);
    const keepAlives = (m.client.requests.get('keepAlive') ?? 0) - before.keepAlive;
    const snapshots = (m.client.requests.get('snapshot') ?? 0) - before.snapshot;
    expect(keepAlives).toBeGreaterThanOrEqual(29);
    expect(keepAlives).toBeLessThanOrEqual(31);
    expect(snapshots).toBeLessThanOrEqual(keepAlives + 1);
  });

  it('refuses a second live broker with the same node id, naming the holder; takes the id once the holder is gone', async () => {
    const first = start(1);
    await vi.advanceTimersByTimeAsync(200);
    await first.joined;
    const second = start(1, registration(1, '/other/data', 999));
    await vi.advanceTimersByTimeAsync(200);
    const error = await second.joined.then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(NodeIdTakenError);
    expect((error as Error).message).toMatch(/node id 1 is taken in cluster model by a live broker at 127\.0\.0\.1:9001 \(host model-host, pid 101, data directory \/data\/1\)/);
    const closed = second.membership.close();
    await vi.advanceTimersByTimeAsync(100);
    await closed;
    expect(etcd.get(keys.broker(1))!.leaseId).toBe(first.membership['leaseId']);

    first.client.mode = 'dead';
    first.dead = true;
    await until(() => etcd.get(keys.broker(1)) === null, leaseTtlMs + 500, 'the holder\'s lease expires');
    const third = start(1, registration(1, '/other/data', 1000));
    await vi.advanceTimersByTimeAsync(200);
    await third.joined;
    expect(third.membership.registered).toBe(true);
  });

  it('a restart on the same machine and data directory takes over the registration of its earlier run at once', async () => {
    const first = start(1);
    const other = start(2);
    await vi.advanceTimersByTimeAsync(200);
    await Promise.all([first.joined, other.joined]);
    first.client.mode = 'dead';
    first.dead = true;
    const again = start(1, registration(1, '/data/1', 555));
    await vi.advanceTimersByTimeAsync(200);
    await again.joined;
    expect(again.logs.some((l) => /taking over the registration of broker 1 left by an earlier run of this broker \(pid 101/.test(l.message))).toBe(true);
    await until(() => other.membership.brokers().find((b) => b.nodeId === 1)?.pid === 555, 1000, 'the others see the new run');
  });

  it('fences a broker cut off from etcd before its lease can have expired, elects another, and lets it back in', async () => {
    const started = [1, 2, 3].map((id) => start(id));
    await vi.advanceTimersByTimeAsync(200);
    await Promise.all(started.map((m) => m.joined));
    await until(() => controllers().length === 1 && started.every((m) => m.membership.controller() !== null), 2000, 'a controller');
    const old = controllers()[0]!;
    const oldEpoch = old.membership.controller()!.epoch;
    old.client.mode = 'blackhole';
    // It stops claiming the seat no later than its lease deadline, and etcd still holds the key
    // for it at that moment: no other broker can be controller yet.
    await until(() => !old.membership.isController, leaseTtlMs + 100, 'the cut-off controller steps down');
    expect(etcd.get(keys.controller)?.leaseId ?? null).toBe(old.membership['leaseId']);
    expect(old.membership.registered).toBe(false);
    expect(old.membership.brokers()).toEqual([]);
    expect(old.membership.controller()).toBeNull();
    await vi.advanceTimersByTimeAsync(50);
    expect(old.logs.some((l) => l.level === 'warn' && /is fenced/.test(l.message))).toBe(true);
    const elapsedMs = await until(() => controllers().length === 1 && controllers()[0] !== old, leaseTtlMs + 2000, 'another controller');
    expect(elapsedMs).toBeLessThan(leaseTtlMs + 1500);
    const successor = controllers()[0]!;
    expect(successor.membership.controller()!.epoch).toBeGreaterThan(oldEpoch);
    await until(() => successor.membership.brokers().length === 2, 2000, 'the cut-off broker is gone from the others\' view');

    old.client.mode = 'up';
    await until(() => old.membership.registered && successor.membership.brokers().length === 3, 3000, 'back in, under a new lease');
    expect(old.membership.isController).toBe(false);
    expect(old.membership.controller()).toEqual(successor.membership.controller());
    expect(old.logs.some((l) => /registered again as broker/.test(l.message))).toBe(true);
  });

  it('a lost reply does not confuse it: a registration or election that etcd applied counts', async () => {
    const m = start(1);
    m.client.mode = 'oneway';
    await vi.advanceTimersByTimeAsync(3000);
    m.client.mode = 'up';
    await until(() => m.membership.registered && m.membership.isController, 5000, 'registered and controller');
    expect(etcd.get(keys.broker(1))!.leaseId).toBe(m.membership['leaseId']);
  });

  it('ignores records it cannot read (INVALID_CLUSTER_STATE), with one warning each, and refuses a node id held by one', async () => {
    etcd.putRaw(keys.broker(7), Buffer.from('{"nodeId": "seven"}'));
    etcd.putRaw(keys.broker(8), Buffer.from('not json'));
    const m = start(1);
    await vi.advanceTimersByTimeAsync(200);
    await m.joined;
    await vi.advanceTimersByTimeAsync(5000);
    expect(m.membership.brokers().map((b) => b.nodeId)).toEqual([1]);
    const warnings = m.logs.filter((l) => /INVALID_CLUSTER_STATE/.test(l.message));
    expect(warnings.map((w) => w.message)).toEqual([
      expect.stringMatching(/brokers\/7: nodeId must be an integer .*etcdctl del \/rill\/model\/brokers\/7/),
      expect.stringMatching(/brokers\/8: value is not JSON/),
    ]);
    const squatter = start(7);
    await vi.advanceTimersByTimeAsync(200);
    await expect(squatter.joined).rejects.toThrow(/holds a value that is not a broker registration; remove it \(etcdctl del \/rill\/model\/brokers\/7\)/);
  });

  it('close() revokes the lease: the others see the broker gone and elect at once', async () => {
    const a = start(1);
    const b = start(2);
    await vi.advanceTimersByTimeAsync(200);
    await Promise.all([a.joined, b.joined]);
    await until(() => controllers().length === 1 && b.membership.brokers().length === 2, 2000, 'settled');
    const leaving = controllers()[0]!;
    const staying = leaving === a ? b : a;
    const closed = leaving.membership.close();
    await vi.advanceTimersByTimeAsync(50);
    await closed;
    members.splice(members.indexOf(leaving), 1);
    const elapsedMs = await until(() => staying.membership.isController && staying.membership.brokers().length === 1, 1000, 'the other takes over');
    expect(elapsedMs).toBeLessThan(300);
  });

  it('model: random link failures, kills and restarts never make two controllers, and the cluster settles once healed', async () => {
    const action = fc.oneof(
      fc.record({ kind: fc.constant('link' as const), member: fc.integer({ min: 0, max: 2 }), mode: fc.constantFrom<LinkMode>('up', 'up', 'refuse', 'blackhole', 'oneway') }),
      fc.record({ kind: fc.constant('kill' as const), member: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 50, max: 4000 }) }),
    );
    await fc.assert(fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 12 }), async (actions) => {
      // Each run: a fresh store and three brokers.
      for (const m of members.splice(0)) m.client.mode = 'dead';
      etcd.close();
      etcd = new FakeEtcd();
      const slots = [1, 2, 3].map((id) => start(id));
      const incarnation = [0, 0, 0];
      const epochs = new Map<Member, number>();
      const check = (): void => {
        const claiming = controllers();
        expect(claiming.length).toBeLessThanOrEqual(1);
        for (const m of claiming) expect(etcd.get(keys.controller)?.leaseId).toBe(m.membership['leaseId']);
        for (const m of members) {
          if (m.dead) continue;
          if (m.membership.registered) expect(etcd.get(keys.broker(m.nodeId))?.leaseId).toBe(m.membership['leaseId']);
          const epoch = m.membership.controller()?.epoch;
          if (epoch !== undefined) {
            expect(epoch).toBeGreaterThanOrEqual(epochs.get(m) ?? 0);
            epochs.set(m, epoch);
          }
        }
      };
      const advance = async (ms: number): Promise<void> => {
        for (let t = 0; t < ms; t += 50) {
          await vi.advanceTimersByTimeAsync(50);
          check();
        }
      };
      await advance(300);
      for (const step of actions) {
        if (step.kind === 'wait') await advance(step.ms);
        else if (step.kind === 'link') slots[step.member]!.client.mode = step.mode;
        else {
          const killed = slots[step.member]!;
          killed.client.mode = 'dead';
          killed.dead = true;
          incarnation[step.member]!++;
          slots[step.member] = start(killed.nodeId, registration(killed.nodeId, `/data/${killed.nodeId}`, 100 + killed.nodeId + 10 * incarnation[step.member]!));
        }
        await advance(50);
      }
      for (const m of slots) m.client.mode = 'up';
      await advance(2 * leaseTtlMs + 2000);
      const live = slots.filter((m) => !m.dead);
      expect(controllers()).toHaveLength(1);
      for (const m of live) {
        expect(m.membership.registered).toBe(true);
        expect(m.membership.brokers().map((b) => b.nodeId)).toEqual([1, 2, 3]);
        expect(m.membership.controller()).toEqual(live[0]!.membership.controller());
      }
    }), { numRuns: 40 });
  });
});
