/**
 * Replication through failures, with real processes: etcd and three brokers (child processes,
 * cluster-processes.ts), a topic of 3 partitions with replicationFactor 3 and minInSyncReplicas 2,
 * an idempotent producer with acks 'all' sending numbered records all the time and a reader per
 * partition (numbered-workload.ts). The faults:
 *
 *   a. SIGKILL of a partition leader, 10 times, rotating over the partitions (so over the brokers):
 *      each time a new leader from the ISR (leaderEpoch + 1) and an acknowledged write, then the
 *      killed broker restarted and back in every ISR. Prints the time from each kill to the
 *      first acknowledged write on a partition it led.
 *   b. SIGSTOP of the leader past its lease, then SIGCONT: the zombie becomes a follower.
 *   c. The leader cut off through proxies (from etcd, the other brokers and clients) past its
 *      lease, then healed: the same.
 *   d. etcd SIGKILLed while producing: acknowledged writes keep coming while it is down (each
 *      leader keeps serving what it leads); after its restart a leader's SIGKILL still fails over.
 *
 * After each: nothing acknowledged was lost, and nothing is stored twice or out of order (the
 * log read from 0 to the high watermark); every record a reader was given is still there at the
 * same offset; and, the brokers stopped, every replica holds the same batches, byte for byte, up
 * to the high watermark (read with the storage code from each data directory).
 *
 * Every wait is for a condition with a generous deadline; one cluster (and one etcd) per test,
 * everything killed in afterEach whatever happened. ListOffsets 'latest' answers the high
 * watermark; a follower's copy lives where a single broker's does (partitionDir). While etcd is
 * down, leaders keep acknowledging (docs/replication.md, "Why a zombie leader cannot
 * acknowledge") and Metadata still names the other brokers as last known.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PartitionReader } from '../../src/client/index.js';
import { runCli } from '../helpers/broker-process.js';
import { ClusterProcesses, bigintJson, sameSet, until, type ReplicatedTopic } from '../helpers/cluster-processes.js';
import { NumberedWorkload, clientTimeouts, type AckedRecord } from '../helpers/numbered-workload.js';
import { compareReplicas, readReplica } from '../helpers/replica-files.js';

const leaseTtlMs = 3000;
const partitionCount = 3;
const allPartitions = [0, 1, 2];
const kills = 10;
/** An election takes about a lease TTL; anything past this is a failure, not slowness. */
const failoverLimitMs = leaseTtlMs * 5 + 15_000;

/**
 * One test's cluster, topic and workload. The topic is named after the test, so a producer left
 * retrying by a failed test cannot write into the next test's topic (ports get reused).
 */
class Scenario {
  readonly topic: string;

  private constructor(readonly c: ClusterProcesses, readonly w: NumberedWorkload, readonly initial: ReplicatedTopic) {
    this.topic = initial.name;
  }

  /** A cluster, the topic created with replicationFactor 3, and the workload running with acks on every partition. */
  static async start(name: string, options: { proxies?: boolean } = {}): Promise<Scenario> {
    const c = (cluster = await ClusterProcesses.start({ name, leaseTtlMs, proxies: options.proxies ?? false }));
    const topic = `${name}-orders`;
    await c.admin(c.bootstrap, (admin) =>
      admin.createTopics([{ topic, partitions: partitionCount, replicationFactor: 3, config: { minInSyncReplicas: 2 } }]));
    const view = await c.waitForFullIsr(topic);
    for (const p of view.partitions) expect(sameSet(p.replicas, [1, 2, 3]), `partition ${p.partition} replicas ${p.replicas}`).toBe(true);
    const w = (workload = new NumberedWorkload({ bootstrap: c.bootstrap, topic, partitions: partitionCount }));
    const startedMs = Date.now();
    w.start();
    await w.acksOnEvery(allPartitions, startedMs, 30_000);
    return new Scenario(c, w, view);
  }

  /** Waits until none of the partitions `nodeId` led in `before` is led by it, each at a higher leader epoch. */
  waitForNewLeaders(before: ReplicatedTopic, nodeId: number, what: string): Promise<ReplicatedTopic> {
    const led = before.partitions.filter((p) => p.leader === nodeId);
    return this.c.waitForView(`new leaders of partitions [${led.map((p) => p.partition).join()}] (${what})`, this.topic, (view) => led.every((old) => {
      const now = view.partitions[old.partition]!;
      return now.leader >= 0 && now.leader !== nodeId && now.leaderEpoch > old.leaderEpoch;
    }), { limitMs: failoverLimitMs });
  }

  /**
   * Waits until the broker that was paused or cut off is back in every ISR and every broker,
   * itself included, agrees on the leaders: it no longer claims what it led. It may lead again
   * (a preferred-leader election), but only at an epoch past the one elected without it.
   */
  waitForZombieToRejoin(zombie: number, before: ReplicatedTopic, elected: ReplicatedTopic): Promise<ReplicatedTopic> {
    return this.c.waitForView(`broker ${zombie} back in every ISR, agreeing that it lost what it led`, this.topic, (view) => view.partitions.every((p) => {
      const old = before.partitions[p.partition]!;
      const electedEpoch = elected.partitions[p.partition]!.leaderEpoch;
      const stillClaims = old.leader === zombie && (p.leaderEpoch <= old.leaderEpoch || (p.leader === zombie && p.leaderEpoch <= electedEpoch));
      return !stillClaims && sameSet(p.isr, p.replicas);
    }), { limitMs: failoverLimitMs });
  }

  /** One partition's log from its start to the high watermark (what 'latest' answers). */
  async readLog(partition: number): Promise<{ offset: bigint; value: string }[]> {
    const log: { offset: bigint; value: string }[] = [];
    const reader = new PartitionReader({ bootstrap: this.c.bootstrap, ...clientTimeouts, topic: this.topic, partitions: [partition], from: 'earliest', stopAtEnd: true });
    for await (const batch of reader.batches()) {
      for (const m of batch) log.push({ offset: m.offset, value: m.value === null ? '<null>' : Buffer.from(m.value).toString() });
    }
    return log;
  }

  /**
   * The checks every test ends with (see the top of the file). Stops the producer, waits for the
   * whole ISR, reads every partition to its high watermark, then stops the brokers and compares
   * their copies.
   */
  async finishAndCheck(): Promise<void> {
    const { c, w, topic } = this;
    await w.stopProducing();
    expect(w.failures, 'every send was acknowledged (retries within deliveryTimeoutMs)').toEqual([]);
    const view = await c.waitForFullIsr(topic);
    const highWatermarks = await c.admin(c.bootstrap, (admin) => admin.listOffsets(topic, 'latest'));
    // Readers that waited out a failover catch up: each is given the last record below the high watermark.
    await until('every reader given the records up to the high watermark', async () => (
      allPartitions.every((p) => w.seen[p]!.has(highWatermarks[p]! - 1n)) ? true : undefined), failoverLimitMs);
    await w.stopReading();
    expect(w.readerProblems).toEqual([]);
    for (const partition of allPartitions) {
      const hw = highWatermarks[partition]!;
      const acked = w.ackedIn(partition);
      expect(acked.length, `acknowledged records in partition ${partition}`).toBeGreaterThan(0);
      expect(acked[acked.length - 1]!.offset, `partition ${partition}: the last acknowledged offset is below the high watermark`).toBeLessThan(hw);
      expect(w.seen[partition]!.size, `the reader of partition ${partition} was given records`).toBeGreaterThan(0);
      const log = await this.readLog(partition);
      expect(log.length, `partition ${partition}: records below the high watermark ${hw}`).toBeGreaterThan(0);
      expect(w.checkLog(partition, log), `partition ${partition}`).toEqual([]);
    }
    const codes = await c.stopAll();
    expect([...codes.values()], 'graceful stops').toEqual(c.nodes.map(() => 0));
    for (const partition of allPartitions) {
      const hw = Number(highWatermarks[partition]!);
      const copies = view.partitions[partition]!.replicas.map((id) => readReplica(id, c.node(id).dataDir, topic, partition, hw));
      expect(compareReplicas(copies, hw), `partition ${partition}: replicas up to the high watermark ${hw}`).toEqual([]);
    }
    console.log(`${c.name}: ${w.summary()}; high watermarks ${JSON.stringify(highWatermarks, bigintJson)}`);
  }
}

let cluster: ClusterProcesses | null = null;
let workload: NumberedWorkload | null = null;

afterEach(async (context) => {
  const failed = context.task.result?.state === 'fail';
  if (failed && cluster !== null) console.log(`${context.task.name} failed; workload ${workload?.summary()}; broker output:\n${cluster.outputTail()}`);
  // The producer is not closed here: after a failure its records may wait for deliveryTimeoutMs.
  await workload?.stopReading();
  await cluster?.close(!failed);
  cluster = null;
  workload = null;
});

/** The new leaders came from the old ISR: a clean election. */
function expectCleanElection(before: ReplicatedTopic, after: ReplicatedTopic, nodeId: number): void {
  for (const old of before.partitions.filter((p) => p.leader === nodeId)) {
    expect(old.isr, `partition ${old.partition}: the new leader was in the ISR`).toContain(after.partitions[old.partition]!.leader);
  }
}

/**
 * The broker to kill in round `round`: the leader of partition round % 3, or of the next
 * partition whose leader is not the one killed last (so the kills rotate over the brokers).
 */
function pickVictim(view: ReplicatedTopic, round: number, previous: number): number {
  for (let i = 0; i < partitionCount; i++) {
    const leader = view.partitions[(round + i) % partitionCount]!.leader;
    if (leader !== previous) return leader;
  }
  return view.partitions[round % partitionCount]!.leader;
}

describe.sequential('replication through failures (real processes: etcd and 3 brokers)', () => {
  it(`SIGKILL of a partition leader ${kills} times while producing with acks all: each time a new leader from the ISR and acknowledged writes; nothing acknowledged lost, replicas identical`, async () => {
    const s = await Scenario.start('repl-kill');
    const { c, w } = s;
    // The CLI shows what the Admin shows.
    const cli = await runCli(['topics', 'describe', s.topic, '--json', '--bootstrap', c.bootstrap], undefined, 30_000);
    expect(cli.code, cli.stderr).toBe(0);
    const described = JSON.parse(cli.stdout) as { partitions: { partition: number; leader: number; leaderEpoch: number; replicas: number[]; isr: number[] }[] };
    expect(described.partitions.map(({ partition, replicas }) => ({ partition, replicas }))).toEqual(s.initial.partitions.map(({ partition, replicas }) => ({ partition, replicas })));
    for (const p of described.partitions) {
      expect(p.leaderEpoch).toBeGreaterThanOrEqual(0);
      expect(p.isr).toContain(p.leader);
    }

    let view = s.initial;
    let previous = -1;
    const timings: { victim: number; electedMs: number; firstAckMs: number }[] = [];
    for (let round = 0; round < kills; round++) {
      const victimId = pickVictim(view, round, previous);
      const led = view.partitions.filter((p) => p.leader === victimId).map((p) => p.partition);
      const victim = c.node(victimId);
      const killedAtMs = Date.now();
      await victim.kill();
      const elected = await s.waitForNewLeaders(view, victimId, `broker ${victimId} SIGKILLed`);
      const electedMs = Date.now() - killedAtMs;
      expectCleanElection(view, elected, victimId);
      const firstAck: AckedRecord = await w.nextAck(led, killedAtMs, failoverLimitMs);
      const firstAckMs = firstAck.ackedAtMs - killedAtMs;
      timings.push({ victim: victimId, electedMs, firstAckMs });
      console.log(`kill ${round + 1}: broker ${victimId} (led [${led.join()}]): new leaders seen after ${electedMs} ms, first acknowledged write after ${firstAckMs} ms (partition ${firstAck.partition}; lease TTL ${leaseTtlMs} ms)`);
      await victim.restart();
      view = await c.waitForFullIsr(s.topic);
      previous = victimId;
    }
    const ackTimes = timings.map((t) => t.firstAckMs).sort((a, b) => a - b);
    console.log(`SIGKILL to first acknowledged write, ${kills} kills: min ${ackTimes[0]} ms, median ${ackTimes[Math.floor(ackTimes.length / 2)]} ms, max ${ackTimes[ackTimes.length - 1]} ms; victims ${timings.map((t) => t.victim).join(',')}`);
    expect(new Set(timings.map((t) => t.victim)).size, 'the kills rotated over the brokers').toBeGreaterThan(1);
    await s.finishAndCheck();
  }, 240_000);

  it('SIGSTOP of the leader past its lease, then SIGCONT: a new leader takes writes meanwhile; the zombie becomes a follower; nothing acknowledged lost or stored twice', async () => {
    const s = await Scenario.start('repl-pause');
    const { c, w, initial } = s;
    const zombieId = initial.partitions[0]!.leader;
    const zombie = c.node(zombieId);
    const led = initial.partitions.filter((p) => p.leader === zombieId).map((p) => p.partition);
    const pausedAtMs = Date.now();
    zombie.pause();
    let elected: ReplicatedTopic;
    try {
      elected = await s.waitForNewLeaders(initial, zombieId, `broker ${zombieId} paused`);
      expectCleanElection(initial, elected, zombieId);
      expect(Date.now() - pausedAtMs, 'no new leader before the lease could have run out').toBeGreaterThan(leaseTtlMs - 1000);
      // Writes to what it led go to the new leaders, through the brokers that are not paused (the
      // workload's producer may be waiting on the paused one: a stopped process accepts connects).
      await w.probe(c.bootstrapOf(), led);
      // The paused broker leaves every ISR before it wakes.
      await c.waitForView(`broker ${zombieId} out of every ISR`, s.topic, (v) => v.partitions.every((p) => !p.isr.includes(zombieId)), { limitMs: failoverLimitMs });
    } finally {
      zombie.resume();
    }
    const resumedAtMs = Date.now();
    await s.waitForZombieToRejoin(zombieId, initial, elected);
    expect(zombie.output()).toMatch(/is fenced/);
    // The workload's own producer and readers got through it too.
    await w.acksOnEvery(allPartitions, resumedAtMs, failoverLimitMs);
    await s.finishAndCheck();
  }, 120_000);

  it('the leader cut off from etcd, the other brokers and clients past its lease, then healed: a new leader takes writes meanwhile; the old one becomes a follower; nothing acknowledged lost or stored twice', async () => {
    const s = await Scenario.start('repl-partition', { proxies: true });
    const { c, w, initial } = s;
    const isolatedId = initial.partitions[0]!.leader;
    const isolated = c.node(isolatedId);
    const led = initial.partitions.filter((p) => p.leader === isolatedId).map((p) => p.partition);
    const cutAtMs = Date.now();
    isolated.isolate();
    let elected: ReplicatedTopic;
    try {
      elected = await s.waitForNewLeaders(initial, isolatedId, `broker ${isolatedId} cut off`);
      expectCleanElection(initial, elected, isolatedId);
      expect(Date.now() - cutAtMs, 'no new leader before the lease could have run out').toBeGreaterThan(leaseTtlMs - 1000);
      await w.probe(c.bootstrapOf(), led);
      // The workload's producer is refused by the cut-off broker and finds the new leaders.
      await w.acksOnEvery(led, Date.now(), failoverLimitMs);
      await c.waitForView(`broker ${isolatedId} out of every ISR`, s.topic, (v) => v.partitions.every((p) => !p.isr.includes(isolatedId)), { limitMs: failoverLimitMs });
    } finally {
      await isolated.heal();
    }
    const healedAtMs = Date.now();
    await s.waitForZombieToRejoin(isolatedId, initial, elected);
    expect(isolated.output()).toMatch(/is fenced/);
    await w.acksOnEvery(allPartitions, healedAtMs, failoverLimitMs);
    await s.finishAndCheck();
  }, 120_000);

  it('etcd SIGKILLed while producing: acknowledged writes keep coming while it is down; after its restart a leader\'s SIGKILL still fails over', async () => {
    const s = await Scenario.start('repl-etcd');
    const { c, w } = s;
    const etcdKilledAtMs = Date.now();
    await c.killEtcd();
    // Past a whole lease without etcd, every partition still takes acknowledged writes (records
    // sent from then on: the wait is for their acks, not a sleep).
    const sinceMs = etcdKilledAtMs + leaseTtlMs + 1000;
    const during = await w.acksOnEvery(allPartitions, sinceMs, failoverLimitMs);
    expect(c.etcd.child.exitCode !== null || c.etcd.child.signalCode !== null, 'etcd was still down').toBe(true);
    console.log(`etcd down: acknowledged writes on every partition up to ${Math.max(...during.map((r) => r.ackedAtMs)) - etcdKilledAtMs} ms after the kill (lease TTL ${leaseTtlMs} ms)`);
    await c.restartEtcd();
    await c.waitForMembers(c.nodes.map((n) => n.nodeId));
    // Coordination resumed: kill the leader of partition 0 and see the cluster fail over.
    const view = await c.waitForFullIsr(s.topic);
    const victimId = view.partitions[0]!.leader;
    const led = view.partitions.filter((p) => p.leader === victimId).map((p) => p.partition);
    const killedAtMs = Date.now();
    await c.node(victimId).kill();
    const elected = await s.waitForNewLeaders(view, victimId, `broker ${victimId} SIGKILLed after etcd's restart`);
    expectCleanElection(view, elected, victimId);
    const firstAck = await w.nextAck(led, killedAtMs, failoverLimitMs);
    console.log(`after etcd's restart: broker ${victimId} SIGKILLed, first acknowledged write on [${led.join()}] after ${firstAck.ackedAtMs - killedAtMs} ms`);
    await c.node(victimId).restart();
    await s.finishAndCheck();
  }, 120_000);
});
