/**
 * Issue 3's main end-to-end test: three consumer processes in one group on a 12-partition topic
 * while a producer writes keyed records.
 *   - SIGKILL one member: its partitions are consumed again by the survivors within the session
 *     timeout plus a second; the survivors' own partitions never move; duplicates come only from
 *     the killed member's partitions (what it processed after its last commit).
 *   - SIGTERM another (it closes: drains, commits, leaves): zero duplicates, hand-over at once.
 *   - SIGKILL the broker mid-stream and restart it: no committed offset goes back.
 *   - Every record the producer got acknowledged is processed at least once.
 * Measured times are printed for the report; the assertions on them leave headroom for a slow
 * machine (tests never fail on timing alone).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, Producer } from '../../src/client/index.js';
import { committedOffsets, startBroker, type BrokerProcess } from '../helpers/broker-process.js';
import { startMember, waitUntil, type MemberEvent, type MemberProcess } from '../helpers/member-process.js';

const topic = 'group-kill';
const groupId = 'group-kill';
const partitionCount = 12;
const sessionTimeoutMs = 3000;

let broker: BrokerProcess;
const members: MemberProcess[] = [];
const produced: { partition: number; offset: number }[] = [];
let producing = true;
let producerLoop: Promise<void> = Promise.resolve();

function startGroupMember(name: string): MemberProcess {
  const member = startMember(name, { bootstrap: broker.bootstrap, groupId, topics: [topic], sessionTimeoutMs, fromBeginning: true, handlerDelayMs: 1 });
  members.push(member);
  return member;
}

const records = (member: MemberProcess, since = 0): MemberEvent[] => member.events.filter((e) => e.e === 'rec' && e.t >= since);
const rebalanceLosses = (member: MemberProcess, sinceMs: number): MemberEvent[] => member.events.filter((e) => (e.e === 'revoked' || e.e === 'lost') && e.t >= sinceMs);

/** When every partition in `partitions` has been processed by one of `by` after `sinceMs`: the latest first record. */
function reconsumedAtMs(by: MemberProcess[], partitions: Iterable<number>, sinceMs: number): number | null {
  let latest = 0;
  for (const partition of partitions) {
    const first = Math.min(...by.flatMap((m) => records(m, sinceMs).filter((e) => e.p === partition).map((e) => e.t)));
    if (!Number.isFinite(first)) return null;
    latest = Math.max(latest, first);
  }
  return latest;
}

beforeAll(async () => {
  broker = await startBroker();
  const admin = new Admin({ bootstrap: broker.bootstrap });
  await admin.createTopics([{ topic, partitions: partitionCount }]);
  admin.close();
  const producer = new Producer({ bootstrap: broker.bootstrap, retryBackoffMaxMs: 200 });
  let seq = 0;
  producerLoop = (async () => {
    while (producing) {
      const batch = Array.from({ length: 10 }, () => {
        const i = seq++;
        return producer.send({ topic, key: `key-${i % 1000}`, value: `value-${i}` }).then((meta) => void produced.push({ partition: meta.partition, offset: Number(meta.offset) }));
      });
      await Promise.allSettled(batch);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await producer.close().catch(() => undefined);
  })();
});

afterAll(async () => {
  producing = false;
  await Promise.all(members.map((m) => m.kill()));
  await broker?.kill();
});

describe('group of 3 member processes on 12 partitions: SIGKILL, graceful close, broker restart', () => {
  let a: MemberProcess;
  let b: MemberProcess;
  let c: MemberProcess;
  let victimPartitions: Set<number>;

  it('spreads the partitions 4/4/4', async () => {
    a = startGroupMember('a');
    b = startGroupMember('b');
    c = startGroupMember('c');
    await waitUntil(() => [a, b, c].every((m) => m.owned().size === 4), 20_000, 'a 4/4/4 split');
    const all = new Set([...a.owned(), ...b.owned(), ...c.owned()]);
    expect(all.size).toBe(partitionCount);
    // Let them process (and commit) for a while.
    await waitUntil(() => [a, b, c].every((m) => records(m).length > 200), 20_000, 'records flowing to every member');
    await new Promise((resolve) => setTimeout(resolve, 1500));
  });

  it('SIGKILL a member: survivors take over its partitions within the session timeout plus a second; theirs never move', async () => {
    victimPartitions = a.owned();
    const ownedBefore = new Map([b, c].map((m) => [m, m.owned()]));
    const killedAtMs = Date.now();
    await a.kill();
    let reconsumed: number | null = null;
    await waitUntil(() => (reconsumed = reconsumedAtMs([b, c], victimPartitions, killedAtMs)) !== null, sessionTimeoutMs + 10_000, "the killed member's partitions consumed again");
    const handoverMs = reconsumed! - killedAtMs;
    const assignedAtMs = Math.max(...[...victimPartitions].map((p) => Math.min(...[b, c].flatMap((m) => m.events.filter((e) => e.e === 'assigned' && e.t >= killedAtMs && e.tps!.some(([, q]) => q === p)).map((e) => e.t)))));
    console.log(`[group-kill] SIGKILL -> partitions assigned to survivors after ${assignedAtMs - killedAtMs} ms, consumed again after ${handoverMs} ms (session timeout ${sessionTimeoutMs} ms)`);
    expect(handoverMs).toBeLessThan(sessionTimeoutMs + 1000 + 1000); // requirement: session + 1 s; +1 s headroom for a loaded machine
    for (const [member, before] of ownedBefore) {
      expect(rebalanceLosses(member, killedAtMs)).toEqual([]);
      const now = member.owned();
      for (const partition of before) expect(now.has(partition)).toBe(true);
    }
    expect(new Set([...b.owned(), ...c.owned()]).size).toBe(partitionCount);
  });

  it('duplicates come only from the killed member\u2019s partitions', async () => {
    // Every record produced before the kill, processed, then count who processed what.
    const seen = new Map<string, string[]>();
    for (const member of [a, b, c]) {
      for (const e of records(member)) {
        const key = `${e.p}:${e.o}`;
        seen.set(key, [...(seen.get(key) ?? []), member.name]);
      }
    }
    const duplicates = [...seen].filter(([, by]) => by.length > 1);
    console.log(`[group-kill] after SIGKILL: ${duplicates.length} records processed twice (the killed member's processed-but-uncommitted records), of ${seen.size}`);
    for (const [key, by] of duplicates) {
      expect(victimPartitions.has(Number(key.split(':')[0]))).toBe(true);
      expect(by).toContain('a');
      expect(by.length).toBe(2);
    }
  });

  it('SIGTERM a member: it drains, commits and leaves; zero duplicates and an immediate hand-over', async () => {
    const leaving = b.owned();
    const termAtMs = Date.now();
    expect(await b.terminate()).toBe(0);
    expect(b.events.some((e) => e.e === 'closed')).toBe(true);
    let reconsumed: number | null = null;
    await waitUntil(() => (reconsumed = reconsumedAtMs([c], leaving, termAtMs)) !== null, 10_000, "the closed member's partitions consumed again");
    const handoverMs = reconsumed! - termAtMs;
    const closedAtMs = b.events.find((e) => e.e === 'closed')!.t;
    console.log(`[group-kill] SIGTERM -> member closed after ${closedAtMs - termAtMs} ms, partitions consumed again after ${handoverMs} ms`);
    expect(handoverMs).toBeLessThan(3000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const byB = new Set(records(b).map((e) => `${e.p}:${e.o}`));
    const both = records(c).filter((e) => byB.has(`${e.p}:${e.o}`));
    expect(both).toEqual([]);
    expect(c.owned().size).toBe(partitionCount);
    expect(rebalanceLosses(c, termAtMs)).toEqual([]);
  });

  it('a broker restart (SIGKILL) mid-stream loses no committed offset, and consumption resumes', async () => {
    await new Promise((resolve) => setTimeout(resolve, 1200)); // an auto-commit of c's new partitions
    const before = await committedOffsets(broker.bootstrap, groupId);
    expect(before.size).toBe(partitionCount);
    await broker.kill();
    const restartedAtMs = Date.now();
    broker = await startBroker({ dataDir: broker.dataDir, port: broker.port });
    const after = await committedOffsets(broker.bootstrap, groupId);
    for (const [partition, offset] of before) expect(after.get(partition)! >= offset).toBe(true);
    console.log(`[group-kill] broker restarted in ${Date.now() - restartedAtMs} ms; committed offsets kept (${[...before.values()].reduce((s, o) => s + o, 0n)} before, ${[...after.values()].reduce((s, o) => s + o, 0n)} after)`);
    await waitUntil(() => records(c, restartedAtMs).length > 200, 20_000, 'consumption after the restart');
    // The committed offsets only move forward while it consumes.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const later = await committedOffsets(broker.bootstrap, groupId);
    for (const [partition, offset] of after) expect(later.get(partition)! >= offset).toBe(true);
  });

  it('every acknowledged record is processed at least once', async () => {
    producing = false;
    await producerLoop;
    const processed = new Set(members.flatMap((m) => records(m).map((e) => `${e.p}:${e.o}`)));
    await waitUntil(() => {
      for (const e of records(c)) processed.add(`${e.p}:${e.o}`);
      return produced.every((r) => processed.has(`${r.partition}:${r.offset}`));
    }, 20_000, 'every produced record processed');
    console.log(`[group-kill] ${produced.length} records acknowledged, all processed`);
    expect(await c.terminate()).toBe(0);
  });
});
