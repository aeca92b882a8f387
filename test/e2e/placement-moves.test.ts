/**
 * Moving replicas under load, with real processes: etcd and brokers as child processes
 * (cluster-processes.ts), a topic of 6 partitions with minInSyncReplicas 2, and the numbered
 * idempotent acks-'all' workload with a reader per partition (numbered-workload.ts, 1500 records a
 * second) running the whole time.
 *
 *   1. Rebalance: 3 brokers, replicationFactor 2; a 4th broker joins and `alterPlacement('rebalance')`
 *      is asked for. The moves it answers are exactly what placeReplicas computes from brokers
 *      1..4 and the replica lists before the call; only partitions whose list changes move, and
 *      every move adds broker 4 alone. Then, through the CLI, `rill cluster decommission 4 --json`
 *      prints the moves (placement over 1..3) and exits 0 once they finished.
 *   2. Decommission: 4 brokers, replicationFactor 3; the leader of partition 0 is decommissioned.
 *      The moves are exactly the partitions it held, each to placement's choice among the others;
 *      the partitions end with 3 replicas, all in the ISR, none of them it; a topic created then
 *      gets none of its replicas either; it stops cleanly (SIGTERM, exit 0) and every partition
 *      still takes acknowledged writes. Prints how long the decommission took and how many
 *      partitions moved.
 *
 * While partitions move, every view the brokers agree on shows a moving partition with its old
 * list, the old list plus the new brokers (appended), or the new list: the replication factor
 * never drops. When the moves finish, every partition has exactly its target replicas (in
 * order), a full ISR, its leader unchanged at the same epoch if the leader stays, or a target at
 * leaderEpoch + 1 if it left; partitions that did not move keep leader and epoch. Each partition
 * got acks for records sent while the moves ran.
 *
 * Each test ends with the checks of replication.test.ts: nothing acknowledged lost, nothing stored
 * twice or out of order, every record a reader was given still there at the same offset; and, the
 * brokers stopped, the replicas of each partition (its final replica list only: a broker moved off
 * a partition keeps stale files) identical byte for byte up to the high watermark.
 *
 * A broker joins a running ClusterProcesses through its exported ClusterNode (the same
 * constructor ClusterProcesses.start uses), added to `nodes` so bootstrap lists, views, stopAll
 * and close() include it: the helper needed no change.
 *
 * Waits poll conditions with deadlines; one cluster per test, everything killed in afterEach.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PartitionReader } from '../../src/client/index.js';
import { placeReplicas } from '../../src/cluster/placement.js';
import { runCli } from '../helpers/broker-process.js';
import { ClusterNode, ClusterProcesses, bigintJson, sameSet, until, type ReplicatedTopic } from '../helpers/cluster-processes.js';
import { NumberedWorkload, clientTimeouts } from '../helpers/numbered-workload.js';
import { compareReplicas, readReplica } from '../helpers/replica-files.js';

const leaseTtlMs = 3000;
const partitionCount = 6;
const allPartitions = Array.from({ length: partitionCount }, (_, p) => p);
/** 5 records per partition every 20 ms: 1500 records a second over the topic. */
const recordsPerTick = 5;
/** Records each partition holds before anything moves, so a new replica has something to copy. */
const recordsBeforeMove = 1000;
/** Moves copy a few hundred KB over loopback; anything past this is a failure, not slowness. */
const moveLimitMs = 60_000;
const ackLimitMs = 30_000;

interface Move {
  topic: string;
  partition: number;
  from: number[];
  to: number[];
}

class Scenario {
  private constructor(readonly c: ClusterProcesses, readonly w: NumberedWorkload, readonly topic: string, readonly replicationFactor: number) {}

  /** A cluster of `brokerCount`, the topic, and the workload running with acks on every partition and some records in each. */
  static async start(name: string, brokerCount: number, replicationFactor: number): Promise<Scenario> {
    const c = (cluster = await ClusterProcesses.start({ name, brokerCount, leaseTtlMs }));
    const topic = `${name}-orders`;
    await c.admin(c.bootstrap, (admin) =>
      admin.createTopics([{ topic, partitions: partitionCount, replicationFactor, config: { minInSyncReplicas: 2 } }]));
    const view = await c.waitForFullIsr(topic);
    for (const p of view.partitions) expect(p.replicas.length, `partition ${p.partition} replicas ${p.replicas}`).toBe(replicationFactor);
    const w = (workload = new NumberedWorkload({ bootstrap: c.bootstrap, topic, partitions: partitionCount, recordsPerTick }));
    const startedMs = Date.now();
    w.start();
    await w.acksOnEvery(allPartitions, startedMs, ackLimitMs);
    await until(`${recordsBeforeMove} acknowledged records in every partition`, async () => (
      allPartitions.every((p) => w.ackedIn(p).length >= recordsBeforeMove) ? true : undefined), ackLimitMs);
    return new Scenario(c, w, topic, replicationFactor);
  }

  /** The moves placement gives for `brokers` (the ones that should hold replicas) from `before`: the partitions whose list changes. */
  async expectedMoves(before: ReplicatedTopic, brokers: number[]): Promise<Move[]> {
    const described = await this.c.describeCluster(brokers[0]!);
    const rackOf = new Map(described.brokers.map((b) => [b.nodeId, b.rack]));
    const current = before.partitions.map((p) => [...p.replicas]);
    const target = placeReplicas({
      brokers: brokers.map((nodeId) => { const rack = rackOf.get(nodeId); return rack === null || rack === undefined ? { nodeId } : { nodeId, rack }; }),
      topic: this.topic,
      partitions: partitionCount,
      replicationFactor: this.replicationFactor,
      current,
    });
    return target.flatMap((to, partition) => (sameList(to, current[partition]!) ? [] : [{ topic: this.topic, partition, from: current[partition]!, to }]));
  }

  /**
   * Waits until every partition has exactly `targets[p]` as replicas, all in the ISR, and a
   * leader. Every view seen on the way is checked: a moving partition lists its old replicas, the
   * old ones plus the new brokers appended, or its target; others keep theirs. Returns the final
   * view and how many partitions were seen mid-move (old plus new).
   */
  async waitForTargets(what: string, before: ReplicatedTopic, targets: number[][], extra: (view: ReplicatedTopic) => boolean = () => true): Promise<{ view: ReplicatedTopic; seenMidMove: number; problems: string[] }> {
    const problems: string[] = [];
    const midMove = new Set<number>();
    const view = await this.c.waitForView(what, this.topic, (v) => {
      for (const p of v.partitions) {
        const from = before.partitions[p.partition]!.replicas;
        const to = targets[p.partition]!;
        const expanded = [...from, ...to.filter((id) => !from.includes(id))];
        if (sameList(p.replicas, expanded) && !sameList(expanded, to)) midMove.add(p.partition);
        else if (!sameList(p.replicas, from) && !sameList(p.replicas, to)) problems.push(`partition ${p.partition}: replicas [${p.replicas}] are neither [${from}], [${expanded}] nor [${to}]`);
      }
      return v.partitions.every((p) => sameList(p.replicas, targets[p.partition]!) && p.leader >= 0 && sameSet(p.isr, p.replicas)) && extra(v);
    }, { limitMs: moveLimitMs });
    return { view, seenMidMove: midMove.size, problems };
  }

  /** Leaders after the moves: kept (same epoch) where the leader stays a replica; otherwise a target, at leaderEpoch + 1. */
  expectLeaders(before: ReplicatedTopic, after: ReplicatedTopic, moves: Move[]): void {
    for (const old of before.partitions) {
      const now = after.partitions[old.partition]!;
      const moved = moves.some((m) => m.partition === old.partition);
      if (!moved || now.replicas.includes(old.leader)) {
        expect({ leader: now.leader, leaderEpoch: now.leaderEpoch }, `partition ${old.partition} (${moved ? 'moved, its leader stayed' : 'not moved'}): leader and epoch kept`).toEqual({ leader: old.leader, leaderEpoch: old.leaderEpoch });
      } else {
        expect(now.replicas, `partition ${old.partition}: its leader ${old.leader} left, a target leads`).toContain(now.leader);
        expect(now.leaderEpoch, `partition ${old.partition}: its leader ${old.leader} left; handed over at leaderEpoch + 1`).toBe(old.leaderEpoch + 1);
      }
    }
  }

  /**
   * Every partition got acks for records sent between `fromMs` and `toMs` (the moves under way);
   * returns the longest wait between acks of one partition in that window.
   */
  expectAcksThroughout(fromMs: number, toMs: number): number {
    let longestGapMs = 0;
    for (const partition of allPartitions) {
      const inWindow = this.w.ackedIn(partition).filter((r) => r.sentAtMs >= fromMs && r.sentAtMs < toMs);
      expect(inWindow.length, `partition ${partition}: acknowledged records sent while the moves ran (${toMs - fromMs} ms)`).toBeGreaterThan(0);
      const times = [fromMs, ...inWindow.map((r) => r.ackedAtMs).sort((a, b) => a - b)];
      for (let i = 1; i < times.length; i++) longestGapMs = Math.max(longestGapMs, times[i]! - times[i - 1]!);
    }
    return longestGapMs;
  }

  /** One partition's log from its start to the high watermark, through the brokers still running. */
  async readLog(partition: number): Promise<{ offset: bigint; value: string }[]> {
    const log: { offset: bigint; value: string }[] = [];
    const reader = new PartitionReader({ bootstrap: this.c.bootstrapOf(), ...clientTimeouts, topic: this.topic, partitions: [partition], from: 'earliest', stopAtEnd: true });
    for await (const batch of reader.batches()) {
      for (const m of batch) log.push({ offset: m.offset, value: m.value === null ? '<null>' : Buffer.from(m.value).toString() });
    }
    return log;
  }

  /** replication.test.ts's final checks; the replicas compared are each partition's final replica list. */
  async finishAndCheck(): Promise<void> {
    const { c, w, topic } = this;
    await w.stopProducing();
    expect(w.failures, 'every send was acknowledged (retries within deliveryTimeoutMs)').toEqual([]);
    const view = await c.waitForFullIsr(topic);
    const highWatermarks = await c.admin(c.bootstrapOf(), (admin) => admin.listOffsets(topic, 'latest'));
    await until('every reader given the records up to the high watermark', async () => (
      allPartitions.every((p) => w.seen[p]!.has(highWatermarks[p]! - 1n)) ? true : undefined), ackLimitMs);
    await w.stopReading();
    expect(w.readerProblems).toEqual([]);
    for (const partition of allPartitions) {
      const hw = highWatermarks[partition]!;
      const acked = w.ackedIn(partition);
      expect(acked.length, `acknowledged records in partition ${partition}`).toBeGreaterThan(0);
      expect(acked[acked.length - 1]!.offset, `partition ${partition}: the last acknowledged offset is below the high watermark`).toBeLessThan(hw);
      const log = await this.readLog(partition);
      expect(log.length, `partition ${partition}: records below the high watermark ${hw}`).toBeGreaterThan(0);
      expect(w.checkLog(partition, log), `partition ${partition}`).toEqual([]);
    }
    const codes = await c.stopAll();
    expect([...codes.values()], 'graceful stops').toEqual(c.nodes.map(() => 0));
    for (const partition of allPartitions) {
      const hw = Number(highWatermarks[partition]!);
      const copies = view.partitions[partition]!.replicas.map((id) => readReplica(id, c.node(id).dataDir, topic, partition, hw));
      expect(compareReplicas(copies, hw), `partition ${partition}: replicas [${view.partitions[partition]!.replicas}] up to the high watermark ${hw}`).toEqual([]);
    }
    console.log(`${c.name}: ${w.summary()}; high watermarks ${JSON.stringify(highWatermarks, bigintJson)}`);
  }
}

let cluster: ClusterProcesses | null = null;
let workload: NumberedWorkload | null = null;

afterEach(async (context) => {
  const failed = context.task.result?.state === 'fail';
  if (failed && cluster !== null) console.log(`${context.task.name} failed; workload ${workload?.summary()}; broker output:\n${cluster.outputTail(120)}`);
  // The producer is not closed here: after a failure its records may wait for deliveryTimeoutMs.
  await workload?.stopReading();
  await cluster?.close(!failed);
  cluster = null;
  workload = null;
});

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => b[i] === id);
}

function byPartition(moves: Move[]): Move[] {
  return [...moves].sort((a, b) => a.partition - b.partition);
}

function added(move: Move): number[] {
  return move.to.filter((id) => !move.from.includes(id));
}

function removed(move: Move): number[] {
  return move.from.filter((id) => !move.to.includes(id));
}

/** A broker joins the running cluster: node `nodeId`, started like the others, then seen by every broker. */
async function addBroker(c: ClusterProcesses, nodeId: number): Promise<ClusterNode> {
  const node = new ClusterNode(nodeId, c, null, null);
  c.nodes.push(node);
  await node.start();
  await c.waitForMembers(c.nodes.map((n) => n.nodeId));
  return node;
}

describe.sequential('moving replicas under load (real processes: etcd and brokers)', () => {
  it('rebalance after a 4th broker joins (RF 2): exactly placement\'s moves, each adding broker 4 alone; acks throughout; then `rill cluster decommission 4 --json` moves them back and exits 0 when done; nothing acknowledged lost, replicas identical', async () => {
    const s = await Scenario.start('place-rebalance', 3, 2);
    const { c, w, topic } = s;
    await addBroker(c, 4);
    const before = await c.waitForFullIsr(topic);
    for (const p of before.partitions) expect(p.replicas, `partition ${p.partition}: broker 4 holds nothing before the rebalance`).not.toContain(4);
    const expected = await s.expectedMoves(before, [1, 2, 3, 4]);
    // 12 replicas over 4 brokers: the newcomer takes 3 of them.
    expect(expected.length, 'placement moves some partitions to broker 4').toBeGreaterThan(0);

    const startedMs = Date.now();
    const moves = byPartition(await c.admin(c.bootstrap, (admin) => admin.alterPlacement('rebalance')));
    expect(moves, 'the moves started are placement\'s, for exactly the partitions whose list changes').toEqual(expected);
    for (const move of moves) {
      expect(sameList(move.from, before.partitions[move.partition]!.replicas), `move of ${move.partition}: from is the list before`).toBe(true);
      expect(added(move), `partition ${move.partition} [${move.from}] -> [${move.to}]: only the newcomer joins`).toEqual([4]);
      expect(removed(move).length, `partition ${move.partition}: one replica leaves for the one that joins`).toBe(1);
    }
    const targets = before.partitions.map((p) => moves.find((m) => m.partition === p.partition)?.to ?? [...p.replicas]);
    expect(targets.filter((list) => list.includes(4)).length, 'broker 4 holds its share: 12 replicas / 4 brokers').toBe(3);

    const { view: after, seenMidMove, problems } = await s.waitForTargets('every partition on its rebalanced replicas, whole ISR', before, targets);
    const tookMs = Date.now() - startedMs;
    expect(problems, 'views seen during the moves').toEqual([]);
    s.expectLeaders(before, after, moves);
    const longestGapMs = s.expectAcksThroughout(startedMs, startedMs + tookMs);
    await w.acksOnEvery(allPartitions, Date.now(), ackLimitMs);
    console.log(`rebalance (broker 4 joined, RF 2, ${partitionCount} partitions, ${recordsBeforeMove}+ records each): ${moves.length} partitions moved in ${tookMs} ms (${seenMidMove} seen mid-move); longest wait between acks of one partition meanwhile ${longestGapMs} ms; moves ${moves.map((m) => `${m.partition}:[${m.from}]->[${m.to}]`).join(' ')}`);

    // The CLI, once: decommission the newcomer through broker 1; it prints the moves and returns when they finished.
    const cliExpected = await s.expectedMoves(after, [1, 2, 3]);
    expect(cliExpected.map((m) => m.partition).sort(), 'the partitions broker 4 holds move back').toEqual(targets.flatMap((list, p) => (list.includes(4) ? [p] : [])));
    const cliStartedMs = Date.now();
    const cli = await runCli(['cluster', 'decommission', '4', '--json', '-b', c.node(1).address], undefined, moveLimitMs + 30_000);
    const cliTookMs = Date.now() - cliStartedMs;
    expect(cli.code, `rill cluster decommission 4: ${cli.stderr}`).toBe(0);
    const printed = JSON.parse(cli.stdout) as { moves: Move[] };
    expect(byPartition(printed.moves), 'rill cluster decommission 4 --json prints placement\'s moves').toEqual(cliExpected);
    const afterCli = await c.describeTopic(topic, 1);
    const cliTargets = after.partitions.map((p) => cliExpected.find((m) => m.partition === p.partition)?.to ?? [...p.replicas]);
    for (const p of afterCli.partitions) {
      expect(p.replicas, `partition ${p.partition}, as broker 1 answers when the CLI exited`).toEqual(cliTargets[p.partition]);
      expect(p.isr, `partition ${p.partition}: broker 4 out of the ISR when the CLI exited`).not.toContain(4);
    }
    const { view: final, problems: cliProblems } = await s.waitForTargets('every partition off broker 4, whole ISR', after, cliTargets);
    expect(cliProblems, 'views seen during the CLI\'s moves').toEqual([]);
    s.expectLeaders(after, final, printed.moves);
    console.log(`rill cluster decommission 4 (RF 2): ${printed.moves.length} partitions moved; the CLI exited 0 after ${cliTookMs} ms`);
    const stoppedMs = Date.now();
    expect(await c.node(4).stop(), 'broker 4, decommissioned, stops cleanly').toBe(0);
    await w.acksOnEvery(allPartitions, stoppedMs, ackLimitMs);
    await s.finishAndCheck();
  }, 120_000);

  it('decommission of a partition leader (4 brokers, RF 3): exactly its partitions move, to placement\'s choice; RF back to 3 without it; new topics avoid it; it stops with exit 0 and writes go on; nothing acknowledged lost, replicas identical', async () => {
    const s = await Scenario.start('place-decommission', 4, 3);
    const { c, w, topic } = s;
    const before = await c.waitForFullIsr(topic);
    const victim = before.partitions[0]!.leader;
    const held = before.partitions.filter((p) => p.replicas.includes(victim)).map((p) => p.partition);
    const others = [1, 2, 3, 4].filter((id) => id !== victim);
    const expected = await s.expectedMoves(before, others);
    expect(expected.map((m) => m.partition), `the partitions broker ${victim} holds, and only they, move`).toEqual(held);

    const startedMs = Date.now();
    const moves = byPartition(await c.admin(c.bootstrap, (admin) => admin.alterPlacement('decommission', victim)));
    expect(moves, 'the moves started are placement\'s over the other brokers').toEqual(expected);
    for (const move of moves) {
      expect(removed(move), `partition ${move.partition} [${move.from}] -> [${move.to}]: broker ${victim} alone leaves`).toEqual([victim]);
      expect(added(move).length, `partition ${move.partition}: one other broker takes its place`).toBe(1);
      expect(others, `partition ${move.partition}: the new replica is another broker`).toContain(added(move)[0]);
    }
    const targets = before.partitions.map((p) => moves.find((m) => m.partition === p.partition)?.to ?? [...p.replicas]);
    const { view: after, seenMidMove, problems } = await s.waitForTargets(`broker ${victim} in no partition's replicas or ISR, every partition at RF 3 with a whole ISR`, before, targets,
      (v) => v.partitions.every((p) => p.replicas.length === 3 && !p.replicas.includes(victim) && !p.isr.includes(victim)));
    const tookMs = Date.now() - startedMs;
    expect(problems, 'views seen during the moves').toEqual([]);
    s.expectLeaders(before, after, moves);
    const longestGapMs = s.expectAcksThroughout(startedMs, startedMs + tookMs);
    console.log(`decommission of broker ${victim} (4 brokers, RF 3, ${partitionCount} partitions, ${recordsBeforeMove}+ records each; it led [${before.partitions.filter((p) => p.leader === victim).map((p) => p.partition)}]): ${moves.length} partitions moved in ${tookMs} ms (${seenMidMove} seen mid-move); longest wait between acks of one partition meanwhile ${longestGapMs} ms`);

    // Decommissioned brokers get no replicas afterwards, also of a topic created now (while it still runs).
    const later = `${topic}-later`;
    await c.admin(c.bootstrap, (admin) => admin.createTopics([{ topic: later, partitions: partitionCount, replicationFactor: 3 }]));
    const laterView = await c.waitForFullIsr(later);
    for (const p of laterView.partitions) expect(p.replicas, `${later}/${p.partition}`).not.toContain(victim);

    const stoppedMs = Date.now();
    expect(await c.node(victim).stop(), `broker ${victim}, decommissioned, stops cleanly`).toBe(0);
    await w.acksOnEvery(allPartitions, stoppedMs, ackLimitMs);
    const stillFull = await c.waitForFullIsr(topic);
    for (const p of stillFull.partitions) expect(p.replicas, `partition ${p.partition} after broker ${victim} stopped`).toEqual(targets[p.partition]);
    await s.finishAndCheck();
  }, 120_000);
});
