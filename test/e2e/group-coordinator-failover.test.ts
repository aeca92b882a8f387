/**
 * The group coordinator dies, the group does not notice: real processes (etcd, 3 brokers,
 * cluster-processes.ts; 3 consumer members, member-process.ts) and a producer sending numbered
 * records with acks 'all' to a topic of 12 partitions, replicationFactor 3.
 *
 * In a cluster the leader of `__groups/0` coordinates every group and writes every group record
 * (joins, commits) to that partition with acks 'all'; its successor replays the partition. Once
 * the group is stable (4/4/4) and commits flow, the coordinator is SIGKILLed. Then:
 *
 *   - a commit succeeds on the new coordinator: a committed offset whose last record a member
 *     processed after the kill (so the commit was sent after it) is read back from it; the time
 *     from the kill is printed (an election takes about a lease TTL);
 *   - no committed offset went back: each one read from the new coordinator is >= what the old
 *     one answered just before the kill;
 *   - the new coordinator describes the same 3 members with the same partitions;
 *   - the members kept their partitions: no 'revoked' or 'lost' from the moment the group was
 *     stable until the drain is over (observed for longer than the session timeout after the
 *     kill), and, over the whole run, no partition is owned by two members at once and no member
 *     processes a record of a partition it does not own (from the members' own event logs);
 *   - the producer stopped, every acknowledged record is processed at least once.
 *
 * Measured times are printed for the report; the bounds asserted on them leave room for a slow
 * machine (tests never fail on timing alone). Every wait polls a condition with a deadline.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/index.js';
import type { FetchedOffsetBody } from '../../src/wire/groups.js';
import { ClusterProcesses, until } from '../helpers/cluster-processes.js';
import { startMember, waitUntil, type MemberEvent, type MemberProcess } from '../helpers/member-process.js';
import { producerOptions } from '../helpers/numbered-workload.js';

const leaseTtlMs = 3000;
const topic = 'coordinator-failover';
const groupId = 'coordinator-failover';
const groupsTopic = '__groups';
const partitionCount = 12;
const allPartitions = Array.from({ length: partitionCount }, (_, p) => p);
/**
 * Longer than a coordinator failover (about a lease TTL for the election, then the replay of
 * `__groups` and the members' next heartbeat): a member whose heartbeats fail for this long drops
 * its partitions by itself (consumer-membership.ts, rule 1). With the default 3 s of
 * group-kill.test.ts, the members would lose their partitions every time the coordinator moves.
 */
const sessionTimeoutMs = 10_000;
/** The members' default auto-commit interval: commits reach the coordinator this often. */
const autoCommitIntervalMs = 1000;
/**
 * Bound on SIGKILL -> a commit read back from the new coordinator. Expected: lease TTL (the
 * controller sees the broker gone and elects a new leader of __groups) + the replay + a member's
 * next heartbeat or commit (backoff at most the 500 ms heartbeat interval, then the next auto-commit
 * within autoCommitIntervalMs) + a 100 ms poll: about lease TTL + 1.5 s. The 10 s above the lease
 * absorb a loaded machine; a failover that does not happen at all still fails the test.
 */
const commitAfterKillLimitMs = leaseTtlMs + 10_000;
/** One record to every partition per tick: 600 records a second. */
const tickMs = 20;
/** Sending pauses while this many records wait for their ack (the partitions of the killed broker wait for their new leader). */
const outstandingMax = 3000;

let cluster: ClusterProcesses | null = null;
const members: MemberProcess[] = [];
let producer: Producer | null = null;
let producing = false;
let producerLoop: Promise<void> = Promise.resolve();
/** "partition:offset" of every acknowledged record. */
const acked = new Set<string>();
const sendFailures: string[] = [];

/** Filled as the test goes; later steps use what earlier ones found. */
const run = {
  stableAtMs: 0,
  ownedAtStable: new Map<string, number[]>(),
  coordinatorId: -1,
  killedAtMs: -1,
  committedBeforeKill: new Map<number, bigint>(),
  newCoordinatorId: -1,
};

function startProducing(bootstrap: string): void {
  const p = (producer = new Producer({ bootstrap, ...producerOptions }));
  producing = true;
  let outstanding = 0;
  const next = new Array<number>(partitionCount).fill(0);
  producerLoop = (async () => {
    while (producing) {
      if (outstanding < outstandingMax) {
        for (const partition of allPartitions) {
          const value = `p${partition}-${next[partition]!++}`;
          outstanding++;
          p.send({ topic, partition, key: value, value }).then(
            (meta) => void acked.add(`${meta.partition}:${meta.offset}`),
            (error: Error) => void sendFailures.push(`${value}: ${error.message}`),
          ).finally(() => outstanding--);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, tickMs));
    }
    await waitUntil(() => outstanding === 0, producerOptions.deliveryTimeoutMs, 'every send answered');
  })();
}

const records = (member: MemberProcess, sinceMs = 0): MemberEvent[] => member.events.filter((e) => e.e === 'rec' && e.t >= sinceMs);
const losses = (member: MemberProcess, sinceMs: number): MemberEvent[] => member.events.filter((e) => (e.e === 'revoked' || e.e === 'lost') && e.t >= sinceMs);
const sorted = (partitions: Iterable<number>): number[] => [...partitions].sort((a, b) => a - b);

/** Committed offsets of the group by partition, from the coordinator of the brokers in `via`. */
async function committedOffsets(via: string): Promise<Map<number, bigint>> {
  const offsets: FetchedOffsetBody[] = await cluster!.admin(via, (admin) => admin.fetchGroupOffsets(groupId));
  return new Map(offsets.filter((o) => o.topic === topic && o.offset >= 0n).map((o) => [o.partition, o.offset]));
}

/** When a member first printed each record (key "partition:offset") as processed. */
function firstProcessedAtMs(): Map<string, number> {
  const first = new Map<string, number>();
  for (const m of members) {
    for (const e of records(m)) {
      const key = `${e.p}:${e.o}`;
      if (!first.has(key) || first.get(key)! > e.t) first.set(key, e.t);
    }
  }
  return first;
}

/**
 * Partitions assigned to a member while another member owned them, from the members' own event
 * logs merged by time. A hand-over prints 'revoked' (or 'lost') before the coordinator may give
 * the partition away, so at equal times a release goes first; one member's events keep their order.
 */
function doubleOwnership(): string[] {
  const events = members.flatMap((m) => m.events.map((e, index) => ({ member: m.name, index, ...e })))
    .filter((e) => e.e === 'assigned' || e.e === 'revoked' || e.e === 'lost');
  events.sort((x, y) => x.t - y.t || (x.member === y.member ? x.index - y.index : Number(x.e === 'assigned') - Number(y.e === 'assigned')));
  const owner = new Map<number, string>();
  const violations: string[] = [];
  for (const e of events) {
    for (const [, partition] of e.tps!) {
      if (e.e === 'assigned') {
        const current = owner.get(partition);
        if (current !== undefined && current !== e.member) violations.push(`partition ${partition} assigned to ${e.member} at ${e.t} while ${current} owned it`);
        owner.set(partition, e.member);
      } else if (owner.get(partition) === e.member) {
        owner.delete(partition);
      }
    }
  }
  return violations;
}

/** Records a member processed from a partition it did not own then (by its own events, in the order it printed them). */
function recordsNotOwned(): string[] {
  const violations: string[] = [];
  for (const m of members) {
    const owned = new Set<number>();
    for (const e of m.events) {
      if (e.e === 'assigned') for (const [, p] of e.tps!) owned.add(p);
      if (e.e === 'revoked' || e.e === 'lost') for (const [, p] of e.tps!) owned.delete(p);
      if (e.e === 'rec' && !owned.has(e.p!)) violations.push(`${m.name} processed ${e.p}:${e.o} at ${e.t} without owning partition ${e.p}`);
    }
  }
  return violations;
}

afterEach((context) => {
  if (context.task.result?.state !== 'fail') return;
  console.log(`${context.task.name} failed; ${acked.size} records acknowledged, ${sendFailures.length} sends failed ${sendFailures.slice(0, 3).join('; ')}`);
  for (const m of members) console.log(`--- member ${m.name}: owns [${sorted(m.owned())}], last events ${JSON.stringify(m.events.filter((e) => e.e !== 'rec').slice(-5))}; stderr:\n${m.stderr().slice(-2000)}`);
  if (cluster !== null) console.log(`broker output:\n${cluster.outputTail(40)}`);
});

afterAll(async () => {
  producing = false;
  await Promise.all(members.map((m) => m.kill()));
  // The producer is not closed: after a failure its records may wait for deliveryTimeoutMs.
  await cluster?.close(true);
  cluster = null;
});

describe.sequential('SIGKILL of the group coordinator (leader of __groups) under a running group of 3 member processes', () => {
  it('the group settles 4/4/4 on 12 partitions with replicationFactor 3, and commits flow', async () => {
    cluster = await ClusterProcesses.start({ name: 'coord-failover', leaseTtlMs });
    const c = cluster;
    await c.admin(c.bootstrap, (admin) => admin.createTopics([{ topic, partitions: partitionCount, replicationFactor: 3 }]));
    await c.waitForFullIsr(topic);
    startProducing(c.bootstrap);
    for (const name of ['a', 'b', 'c']) {
      // Every broker in the bootstrap list: the members must survive the death of any one.
      const config = { bootstrap: c.bootstrap, groupId, topics: [topic], sessionTimeoutMs, autoCommitIntervalMs, fromBeginning: true, handlerDelayMs: 1 };
      members.push(startMember(name, config));
    }
    await waitUntil(() => members.every((m) => m.owned().size === 4) && new Set(members.flatMap((m) => [...m.owned()])).size === partitionCount, 30_000, 'a 4/4/4 split');
    run.stableAtMs = Date.now();
    for (const m of members) run.ownedAtStable.set(m.name, sorted(m.owned()));
    await waitUntil(() => members.every((m) => records(m, run.stableAtMs).length > 200), 30_000, 'records flowing to every member');
    // Commits flow: every partition has a committed offset, and they move.
    const first = await until('a committed offset on every partition', async () => {
      const offsets = await committedOffsets(c.bootstrap);
      return offsets.size === partitionCount ? offsets : undefined;
    }, 20_000);
    await until('committed offsets moving on every partition', async () => {
      const offsets = await committedOffsets(c.bootstrap);
      return allPartitions.every((p) => offsets.get(p)! > first.get(p)!) ? true : undefined;
    }, 20_000);
    const described = await c.admin(c.bootstrap, (admin) => admin.describeGroup(groupId));
    expect(described.state).toBe('stable');
    expect(described.members).toHaveLength(3);
    const groups = await c.describeTopic(groupsTopic, 1);
    expect(groups.partitions).toHaveLength(1);
    expect(groups.partitions[0]!.replicas, `${groupsTopic} has replication factor 3`).toHaveLength(3);
  }, 90_000);

  it(`a commit succeeds on the new coordinator within lease TTL + ${(commitAfterKillLimitMs - leaseTtlMs) / 1000} s, and no committed offset goes back`, async () => {
    const c = cluster!;
    const groups = await c.waitForFullIsr(groupsTopic);
    run.coordinatorId = groups.partitions[0]!.leader;
    expect(run.coordinatorId).toBeGreaterThan(0);
    expect(c.node(run.coordinatorId).output()).toContain('coordinating the groups of the cluster (leader of __groups)');
    const survivors = c.nodes.map((n) => n.nodeId).filter((id) => id !== run.coordinatorId);
    const survivorsBootstrap = c.bootstrapOf(survivors);
    // FindCoordinator through every broker names it.
    for (const node of c.nodes) {
      const described = await c.admin(node.address, (admin) => admin.describeGroup(groupId));
      expect(described.members, `describeGroup through broker ${node.nodeId}`).toHaveLength(3);
    }

    run.committedBeforeKill = await committedOffsets(c.bootstrap);
    expect(run.committedBeforeKill.size).toBe(partitionCount);
    run.killedAtMs = Date.now();
    await c.node(run.coordinatorId).kill();
    const exitedAtMs = Date.now();

    // A commit sent after the old coordinator exited: the committed offset of a partition is C and
    // its record C - 1 was processed after the exit (a member commits only what its handler
    // finished), so the new coordinator took that commit.
    const reads: { offsets: Map<number, bigint>; afterKillMs: number }[] = [];
    const committedAfter = await until('a commit sent after the kill, read back from the new coordinator', async () => {
      const offsets = await committedOffsets(survivorsBootstrap);
      const readAtMs = Date.now();
      reads.push({ offsets, afterKillMs: readAtMs - run.killedAtMs });
      const processedAt = firstProcessedAtMs();
      const fresh = [...offsets].filter(([p, offset]) => (processedAt.get(`${p}:${offset - 1n}`) ?? -1) > exitedAtMs)
        .map(([p, offset]) => ({ partition: p, offset, lastProcessedAfterKillMs: processedAt.get(`${p}:${offset - 1n}`)! - run.killedAtMs }));
      return fresh.length === 0 ? undefined : { offsets, readAtMs, fresh };
    }, commitAfterKillLimitMs + 20_000, 100);
    const commitMs = committedAfter.readAtMs - run.killedAtMs;
    const fresh = committedAfter.fresh.sort((x, y) => x.lastProcessedAfterKillMs - y.lastProcessedAfterKillMs)[0]!;
    console.log(`SIGKILL of the coordinator to the group's next committed offset: ${commitMs} ms (broker ${run.coordinatorId} killed; `
      + `first answer from a new coordinator after ${reads[0]!.afterKillMs} ms; partition ${fresh.partition} committed at ${fresh.offset}, `
      + `its last record processed ${fresh.lastProcessedAfterKillMs} ms after the kill; lease TTL ${leaseTtlMs} ms, polled every 100 ms)`);
    expect(commitMs).toBeLessThan(commitAfterKillLimitMs);

    // Nothing the old coordinator acknowledged went back: in every answer of the new one.
    for (const read of reads.map((r) => r.offsets)) {
      for (const p of allPartitions) expect(read.get(p), `partition ${p}: committed before the kill ${run.committedBeforeKill.get(p)}`).toBeGreaterThanOrEqual(run.committedBeforeKill.get(p)!);
    }

    // The new coordinator is a survivor and says so; Admin's group calls reach it through FindCoordinator.
    const after = await c.waitForView(`a new leader of ${groupsTopic}`, groupsTopic, (v) => v.partitions[0]!.leader > 0 && v.partitions[0]!.leader !== run.coordinatorId);
    run.newCoordinatorId = after.partitions[0]!.leader;
    expect(survivors).toContain(run.newCoordinatorId);
    expect(c.node(run.newCoordinatorId).output()).toContain('coordinating the groups of the cluster (leader of __groups)');
    // It knows the same 3 members with the same partitions (the replayed group, not a new one).
    const described = await until('the new coordinator describes the group as stable', async () => {
      const d = await c.admin(survivorsBootstrap, (admin) => admin.describeGroup(groupId));
      return d.state === 'stable' ? d : undefined;
    }, 20_000);
    const assignedByCoordinator = described.members.map((m) => sorted(m.assigned.flatMap((t) => t.partitions))).sort((x, y) => x[0]! - y[0]!);
    const ownedByMembers = members.map((m) => sorted(m.owned())).sort((x, y) => x[0]! - y[0]!);
    expect(assignedByCoordinator).toEqual(ownedByMembers);
  }, 90_000);

  it('the members keep their partitions past the session timeout, and no partition ever has two owners', async () => {
    // Observe until a whole session timeout has passed since the kill: a member whose heartbeats
    // did not reach the new coordinator would have dropped its partitions by then (and the new
    // coordinator, whose session deadlines start after the replay, would have removed it).
    const observeUntilMs = run.killedAtMs + sessionTimeoutMs + 2000;
    await waitUntil(() => Date.now() >= observeUntilMs, sessionTimeoutMs + 5000, 'a session timeout past the kill');
    for (const m of members) {
      expect(losses(m, run.stableAtMs), `member ${m.name}: no revoked/lost since the group was stable`).toEqual([]);
      expect(sorted(m.owned()), `member ${m.name} owns what it owned before the kill`).toEqual(run.ownedAtStable.get(m.name));
      expect(m.events.filter((e) => e.e === 'assigned' && e.t >= run.stableAtMs), `member ${m.name}: nothing newly assigned`).toEqual([]);
      // Every member is consuming after the failover.
      expect(records(m, run.killedAtMs + leaseTtlMs).length, `member ${m.name} processed records after the failover`).toBeGreaterThan(0);
    }
    expect(doubleOwnership()).toEqual([]);
    expect(recordsNotOwned()).toEqual([]);
    // Commits still flow, and only forward.
    const later = await committedOffsets(cluster!.bootstrapOf(cluster!.healthyIds()));
    for (const p of allPartitions) expect(later.get(p)!).toBeGreaterThanOrEqual(run.committedBeforeKill.get(p)!);
  }, 60_000);

  it('the producer stopped, every acknowledged record is processed at least once; the members then close cleanly', async () => {
    producing = false;
    await producerLoop;
    await producer!.close();
    expect(sendFailures, 'every send was acknowledged (retries within deliveryTimeoutMs)').toEqual([]);
    let missing: string[] = [];
    await waitUntil(() => {
      const processed = new Set(members.flatMap((m) => records(m).map((e) => `${e.p}:${e.o}`)));
      missing = [...acked].filter((key) => !processed.has(key));
      return missing.length === 0;
    }, 30_000, 'every acknowledged record processed').catch((error: Error) => {
      throw new Error(`${error.message}; ${missing.length} missing, e.g. ${missing.slice(0, 10).join(', ')}`);
    });
    const processedCount = members.reduce((sum, m) => sum + records(m).length, 0);
    console.log(`[coordinator-failover] ${acked.size} records acknowledged, all processed (${processedCount - acked.size} processed twice or more)`);
    // Through the drain too, nobody lost a partition; then a graceful close on the new coordinator.
    for (const m of members) expect(losses(m, run.stableAtMs), `member ${m.name}`).toEqual([]);
    expect(doubleOwnership()).toEqual([]);
    expect(recordsNotOwned()).toEqual([]);
    const codes = await Promise.all(members.map((m) => m.terminate()));
    expect(codes).toEqual([0, 0, 0]);
  }, 90_000);
});
