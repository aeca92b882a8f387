/**
 * Consumer group: `members` member processes (bench/group-member.ts) on a topic of `partitions`
 * partitions while a producer in this process writes to every partition (100 records/s each).
 * Ownership is observed, not asked for: the owner of a partition is the member that last
 * consumed from it. Three events, each after the group is stable:
 *   1. SIGKILL one member: time until every partition it owned is consumed by another member;
 *   2. a member joins (a new process): time until it consumes every partition that moves to it;
 *   3. SIGTERM one member (graceful close: commit and leave): as 1.
 * For each: the number of partitions whose owner changed, and how many of those were not the
 * leaving member's (survivors' partitions should never move).
 *
 * With `brokers` > 1 the same runs against a cluster (lib/cluster.ts: etcd and the brokers, lease
 * TTL `leaseTtlMs`), the topic with `replicationFactor` copies, every client given all brokers as
 * bootstrap. The coordinator is then the leader of `__groups/0`, and a fourth event follows:
 *   4. SIGKILL the coordinator's broker: time until the group's next committed offset (Admin
 *      fetchGroupOffsets polled every 50 ms until a partition's offset is above what it was just
 *      before the kill); a session timeout later, the partitions moved and those the members
 *      reported revoked or lost since the kill (both should be 0: the new coordinator replays
 *      the group from `__groups`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { Admin, Producer } from '../../src/client/index.js';
import { repoRoot } from '../lib/broker-process.js';
import { BenchCluster, sameSet } from '../lib/cluster.js';
import type { MetricValue, Outcome, RunContext } from '../lib/context.js';
import { log, sleep } from '../lib/progress.js';
import type { Workload } from '../lib/workload.js';
import { clusterName, withClusterLogs } from './cluster.js';
import { createTopic } from './produce.js';

const memberScript = path.join(repoRoot, 'dist/bench/group-member.js');
const stableForMs = 2000;
const stableTimeoutMs = 60_000;
const groupsTopic = '__groups';
/** Admin polls of the committed offsets after the coordinator's SIGKILL. */
const offsetPollMs = 50;

interface Member {
  name: string;
  child: ChildProcess;
  alive: boolean;
  readyAtMs: number | null;
}

export class GroupSkipped extends Error {}

class GroupObserver {
  readonly owner = new Map<number, string>();
  /** When each partition was last consumed, and by whom. */
  readonly lastConsumed = new Map<number, { member: string; atMs: number }>();
  lastOwnerChangeMs = Date.now();
  readonly members: Member[] = [];
  /** 'revoked' and 'lost' as the members reported them. */
  readonly releases: { member: string; type: 'revoked' | 'lost'; partitions: number[]; atMs: number }[] = [];
  missing = false;
  errors: string[] = [];

  constructor(private readonly args: string[]) {}

  spawnMember(name: string): Member {
    const child = spawn(process.execPath, [memberScript, ...this.args.slice(0, 3), name, ...this.args.slice(3)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const member: Member = { name, child, alive: true, readyAtMs: null };
    child.once('exit', () => (member.alive = false));
    child.stderr!.on('data', (chunk: Buffer) => this.errors.push(`${name}: ${chunk.toString().trim()}`.slice(0, 2000)));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let event: { type: string; partition?: number; partitions?: number[]; atMs?: number; message?: string };
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        return;
      }
      if (event.type === 'missing') this.missing = true;
      else if (event.type === 'ready') member.readyAtMs = event.atMs ?? Date.now();
      else if (event.type === 'error') this.errors.push(`${name}: ${event.message}`);
      else if ((event.type === 'revoked' || event.type === 'lost') && event.partitions !== undefined) {
        this.releases.push({ member: name, type: event.type, partitions: event.partitions, atMs: event.atMs ?? Date.now() });
      } else if (event.type === 'consumed' && event.partition !== undefined && event.atMs !== undefined) {
        this.lastConsumed.set(event.partition, { member: name, atMs: event.atMs });
        if (this.owner.get(event.partition) !== name) {
          this.owner.set(event.partition, name);
          this.lastOwnerChangeMs = Date.now();
        }
      }
    });
    this.members.push(member);
    return member;
  }

  /** Partitions the members reported revoked or lost (or only `type`) at or after `sinceMs`. */
  releasedSince(sinceMs: number, type?: 'revoked' | 'lost'): number {
    return this.releases.filter((r) => r.atMs >= sinceMs && (type === undefined || r.type === type)).reduce((sum, r) => sum + r.partitions.length, 0);
  }

  live(): Member[] {
    return this.members.filter((m) => m.alive);
  }

  /** Waits until every partition is owned by a live member and no owner changed for stableForMs. */
  async waitStable(partitions: number, extra: (owners: Map<number, string>) => boolean = () => true): Promise<Map<number, string>> {
    const deadline = Date.now() + stableTimeoutMs;
    for (;;) {
      if (this.missing) throw new GroupSkipped('src/client/index.ts does not export Consumer yet');
      const liveNames = new Set(this.live().map((m) => m.name));
      const allOwned = Array.from({ length: partitions }, (_, p) => p).every((p) => liveNames.has(this.owner.get(p) ?? ''));
      if (allOwned && extra(this.owner) && Date.now() - this.lastOwnerChangeMs >= stableForMs) return new Map(this.owner);
      if (Date.now() > deadline) throw new Error(`group not stable within ${stableTimeoutMs} ms; owners ${JSON.stringify([...this.owner])}; ${this.errors.slice(-3).join(' | ')}`);
      await sleep(50);
    }
  }

  /** Ms from eventMs until each partition in `wanted` was consumed by a member in `by` after eventMs. */
  async waitConsumedBy(wanted: number[], accept: (member: string) => boolean, eventMs: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const times = wanted.map((p) => {
        const last = this.lastConsumed.get(p);
        return last !== undefined && last.atMs > eventMs && accept(last.member) ? last.atMs - eventMs : null;
      });
      if (times.every((t) => t !== null)) return Math.max(0, ...(times as number[]));
      if (Date.now() > deadline) throw new Error(`partitions ${wanted.join(',')} not consumed again within ${timeoutMs} ms`);
      await sleep(10);
    }
  }
}

function moved(before: Map<number, string>, after: Map<number, string>): number[] {
  return [...before.keys()].filter((p) => before.get(p) !== after.get(p));
}

/** Where the group runs: one broker, or a cluster when the workload has `brokers` > 1. */
interface GroupBrokers {
  bootstrap: string;
  cluster: BenchCluster | null;
  /** Creates the topic (in a cluster: replicated, and waits until every partition is fully in sync). */
  createTopic(topic: string): Promise<void>;
  stop(): Promise<void>;
}

async function startGroupBrokers(workload: Workload, ctx: RunContext): Promise<GroupBrokers> {
  if (workload.brokers === 1) {
    const broker = await ctx.startBroker();
    return {
      bootstrap: broker.bootstrap,
      cluster: null,
      createTopic: (topic) => createTopic(broker.bootstrap, topic, workload.partitions),
      stop: async () => {
        await broker.stop();
        broker.removeData();
      },
    };
  }
  const cluster = await BenchCluster.start({ name: clusterName(workload), brokers: workload.brokers, leaseTtlMs: workload.leaseTtlMs }, ctx.startBroker);
  return {
    bootstrap: cluster.bootstrap,
    cluster,
    createTopic: async (topic) => {
      const { partitions, replicationFactor } = workload;
      await cluster.admin(cluster.bootstrap, (admin) => admin.createTopics([{ topic, partitions, replicationFactor }]));
      await cluster.waitForFullIsr(topic, partitions);
    },
    stop: () => cluster.stop(),
  };
}

/** The group's committed offsets of `topic` by partition (those with one), through `bootstrap`. */
async function committedOffsets(bootstrap: string, groupId: string, topic: string): Promise<Map<number, bigint>> {
  const admin = new Admin({ bootstrap, connectTimeoutMs: 1000, requestTimeoutMs: 3000 });
  try {
    const offsets = await admin.fetchGroupOffsets(groupId);
    return new Map(offsets.filter((o) => o.topic === topic && o.offset >= 0n).map((o) => [o.partition, o.offset]));
  } finally {
    admin.close();
  }
}

interface CoordinatorKill {
  coordinator: number;
  newCoordinator: number;
  /** SIGKILL -> the first answer of fetchGroupOffsets, and the first one with an offset above the one before the kill. */
  firstAnswerMs: number;
  nextCommitMs: number;
  /** Why the polls in between failed, e.g. "CONNECTION_ERROR ×12". */
  pollErrors: string;
  /** Partitions whose committed offset was below the one before the kill in some answer (should be 0). */
  offsetsWentBack: number;
  partitionsMoved: number;
  /** Partitions the members reported revoked or lost from the kill until a session timeout after it. */
  partitionsReleased: number;
}

/**
 * Step 4 (cluster only): SIGKILL the broker that leads `__groups/0`, poll the committed offsets
 * every 50 ms through every broker's address (Admin finds the coordinator and retries while it
 * moves) until one is above what it was just before the kill; then wait a session timeout past
 * the kill (a member cut off from the coordinator that long drops its partitions) and count the
 * partitions moved and released.
 */
async function killCoordinator(cluster: BenchCluster, observer: GroupObserver, workload: Workload, topic: string, groupId: string, owners: Map<number, string>): Promise<CoordinatorKill> {
  const groups = await cluster.waitForPartition(`${groupsTopic}/0 led with its whole replica set in sync`, groupsTopic, 0, (p) => p.leader >= 0 && sameSet(p.isr, p.replicas));
  const coordinator = groups.leader;
  const before = await committedOffsets(cluster.bootstrap, groupId, topic);
  // No await between taking the time and the signal (cluster.kill signals before its first await).
  const killedAtMs = Date.now();
  await cluster.kill(coordinator);
  log(`  SIGKILLed broker ${coordinator} (group coordinator: leader of ${groupsTopic}/0, epoch ${groups.leaderEpoch}); committed offsets before: ${before.size} partitions`);
  const errors = new Map<string, number>();
  const wentBack = new Set<number>();
  let firstAnswerMs: number | null = null;
  const deadlineMs = killedAtMs + cluster.waitLimitMs();
  for (;;) {
    try {
      const offsets = await committedOffsets(cluster.bootstrap, groupId, topic);
      const answeredMs = Date.now() - killedAtMs;
      firstAnswerMs ??= answeredMs;
      for (const [p, offset] of before) if ((offsets.get(p) ?? -1n) < offset) wentBack.add(p);
      if ([...offsets].some(([p, offset]) => offset > (before.get(p) ?? -1n))) {
        const nextCommitMs = answeredMs;
        const pollErrors = errors.size === 0 ? 'none' : [...errors].map(([code, n]) => `${code} ×${n}`).join(', ');
        log(`  the group's next committed offset read ${nextCommitMs} ms after the kill (first answer after ${firstAnswerMs} ms; failed polls: ${pollErrors})`);
        const after = await settleAfterCoordinatorKill(cluster, observer, workload, coordinator, killedAtMs, owners);
        return { coordinator, firstAnswerMs, nextCommitMs, pollErrors, offsetsWentBack: wentBack.size, ...after };
      }
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const key = typeof code === 'string' ? code : (error as Error).message.slice(0, 80);
      errors.set(key, (errors.get(key) ?? 0) + 1);
    }
    if (Date.now() > deadlineMs) throw new Error(`no committed offset of group ${groupId} moved within ${cluster.waitLimitMs()} ms of the coordinator's SIGKILL (broker ${coordinator}); failed polls: ${JSON.stringify([...errors])}`);
    await sleep(offsetPollMs);
  }
}

/** After the coordinator's SIGKILL: its successor, and a session timeout later the partitions moved and released. */
async function settleAfterCoordinatorKill(cluster: BenchCluster, observer: GroupObserver, workload: Workload, coordinator: number, killedAtMs: number, owners: Map<number, string>): Promise<Pick<CoordinatorKill, 'newCoordinator' | 'partitionsMoved' | 'partitionsReleased'>> {
  const groups = await cluster.waitForPartition(`a new leader of ${groupsTopic}/0`, groupsTopic, 0, (p) => p.leader >= 0 && p.leader !== coordinator);
  const observeUntilMs = killedAtMs + workload.sessionTimeoutMs + stableForMs;
  await sleep(Math.max(0, observeUntilMs - Date.now()));
  const after = await observer.waitStable(workload.partitions);
  const partitionsMoved = moved(owners, after).length;
  const releases = observer.releases.filter((r) => r.atMs >= killedAtMs);
  const partitionsReleased = observer.releasedSince(killedAtMs);
  const described = releases.map((r) => `${r.member} ${r.type} [${r.partitions.join()}]`).join('; ');
  log(`  new coordinator: broker ${groups.leader}; ${workload.sessionTimeoutMs + stableForMs} ms after the kill: ${partitionsMoved} partitions moved, ${partitionsReleased} revoked or lost${described === '' ? '' : ` (${described})`}`);
  return { newCoordinator: groups.leader, partitionsMoved, partitionsReleased };
}

export async function runGroup(workload: Workload, ctx: RunContext): Promise<Outcome> {
  const override = process.env.RILL_BENCH_CONSUMER_MODULE;
  const client = (await import(override === undefined ? '../../src/client/index.js' : `../${override}`)) as Record<string, unknown>;
  if (typeof client.Consumer !== 'function') throw new GroupSkipped('src/client/index.ts does not export Consumer yet (consumer groups, issue 3); rerun once it does');
  const brokers = await startGroupBrokers(workload, ctx);
  const topic = `bench-${workload.name}`;
  const groupId = `bench-group-${Date.now()}`;
  const observer = new GroupObserver([brokers.bootstrap, topic, groupId, String(workload.sessionTimeoutMs)]);
  const producer = new Producer({ bootstrap: brokers.bootstrap, acks: 1 });
  let producing = true;
  let succeeded = false;
  try {
    await brokers.createTopic(topic);
    const value = Buffer.alloc(workload.messageSize, 7);
    const writer = (async () => {
      while (producing) {
        for (let p = 0; p < workload.partitions; p++) void producer.send({ topic, partition: p, value }).catch(() => undefined);
        await sleep(10);
      }
    })();
    for (let i = 0; i < workload.members; i++) observer.spawnMember(`member-${i}`);
    const where = brokers.cluster === null ? '' : ` on ${workload.brokers} brokers (RF ${workload.replicationFactor}, lease TTL ${workload.leaseTtlMs} ms)`;
    log(`  ${workload.members} member processes joining group ${groupId} on ${workload.partitions} partitions${where} (session timeout ${workload.sessionTimeoutMs} ms)`);
    let owners = await observer.waitStable(workload.partitions);
    const metrics: Record<string, MetricValue> = { members: workload.members, partitions: workload.partitions, sessionTimeoutMs: workload.sessionTimeoutMs, brokers: workload.brokers };
    const spread = (map: Map<number, string>): Record<string, number> => Object.fromEntries(observer.live().map((m) => [m.name, [...map.values()].filter((o) => o === m.name).length]));
    metrics.initialSpread = spread(owners);

    // 1. SIGKILL
    const victim = observer.live()[0]!;
    const victimPartitions = [...owners].filter(([, o]) => o === victim.name).map(([p]) => p);
    let eventMs = Date.now();
    victim.child.kill('SIGKILL');
    const killMs = await observer.waitConsumedBy(victimPartitions, (m) => m !== victim.name, eventMs, workload.sessionTimeoutMs + 30_000);
    let after = await observer.waitStable(workload.partitions);
    let movedNow = moved(owners, after);
    metrics.sigkillConsumedAgainMs = killMs;
    metrics.sigkillPartitionsMoved = movedNow.length;
    metrics.sigkillSurvivorPartitionsMoved = movedNow.filter((p) => !victimPartitions.includes(p)).length;
    log(`  SIGKILL ${victim.name}: its ${victimPartitions.length} partitions consumed again after ${killMs} ms; ${movedNow.length} partitions moved`);
    owners = after;

    // 2. join
    eventMs = Date.now();
    const joiner = observer.spawnMember(`member-${workload.members}`);
    after = await observer.waitStable(workload.partitions, (owners) => [...owners.values()].includes(joiner.name));
    const gained = [...after].filter(([, o]) => o === joiner.name).map(([p]) => p);
    const joinMs = await observer.waitConsumedBy(gained, (m) => m === joiner.name, eventMs, 1000);
    movedNow = moved(owners, after);
    metrics.joinConsumingAllMs = joinMs;
    metrics.joinFromReadyMs = joiner.readyAtMs === null ? null : joinMs - (joiner.readyAtMs - eventMs);
    metrics.joinPartitionsMoved = movedNow.length;
    metrics.joinPartitionsMovedNotToJoiner = movedNow.filter((p) => after.get(p) !== joiner.name).length;
    // What the members reported releasing for the joiner: shows their revoked/lost events arrive.
    metrics.joinPartitionsRevoked = observer.releasedSince(eventMs, 'revoked');
    log(`  join ${joiner.name}: consuming its ${gained.length} partitions ${joinMs} ms after spawn (${metrics.joinFromReadyMs} ms after it subscribed); ${movedNow.length} partitions moved (${metrics.joinPartitionsRevoked} reported revoked)`);
    owners = after;

    // 3. graceful close
    const leaver = observer.live()[0]!;
    const leaverPartitions = [...owners].filter(([, o]) => o === leaver.name).map(([p]) => p);
    eventMs = Date.now();
    leaver.child.kill('SIGTERM');
    const closeMs = await observer.waitConsumedBy(leaverPartitions, (m) => m !== leaver.name, eventMs, workload.sessionTimeoutMs + 30_000);
    after = await observer.waitStable(workload.partitions);
    movedNow = moved(owners, after);
    metrics.closeConsumedAgainMs = closeMs;
    metrics.closePartitionsMoved = movedNow.length;
    metrics.closeSurvivorPartitionsMoved = movedNow.filter((p) => !leaverPartitions.includes(p)).length;
    log(`  graceful close ${leaver.name}: its ${leaverPartitions.length} partitions consumed again after ${closeMs} ms; ${movedNow.length} partitions moved`);
    metrics.finalSpread = spread(after);
    let summary = `SIGKILL: ${killMs} ms, ${metrics.sigkillPartitionsMoved} moved; close: ${closeMs} ms, ${metrics.closePartitionsMoved} moved; join: ${joinMs} ms, ${metrics.joinPartitionsMoved} moved`;

    // 4. SIGKILL of the coordinator's broker (cluster only)
    if (brokers.cluster !== null) {
      const k = await killCoordinator(brokers.cluster, observer, workload, topic, groupId, after);
      metrics.leaseTtlMs = workload.leaseTtlMs;
      metrics.replicationFactor = workload.replicationFactor;
      metrics.coordinatorKilled = k.coordinator;
      metrics.coordinatorNew = k.newCoordinator;
      metrics.coordinatorKillFirstAnswerMs = k.firstAnswerMs;
      metrics.coordinatorKillNextCommitMs = k.nextCommitMs;
      metrics.coordinatorKillPollErrors = k.pollErrors;
      metrics.coordinatorKillOffsetsWentBack = k.offsetsWentBack;
      metrics.coordinatorKillPartitionsMoved = k.partitionsMoved;
      metrics.coordinatorKillPartitionsReleased = k.partitionsReleased;
      summary = `${workload.brokers} brokers, RF ${workload.replicationFactor}; ${summary}; coordinator SIGKILL: next commit ${k.nextCommitMs} ms (lease TTL ${workload.leaseTtlMs.toLocaleString('en-US')} ms), `
        + `${k.partitionsMoved} moved, ${k.partitionsReleased} revoked/lost${k.offsetsWentBack > 0 ? `, ${k.offsetsWentBack} committed offsets went back` : ''}`;
    }
    producing = false;
    await writer;
    succeeded = true;
    return { metrics, summary };
  } catch (error) {
    if (brokers.cluster === null || error instanceof GroupSkipped) throw error;
    throw withClusterLogs(error, brokers.cluster, workload);
  } finally {
    producing = false;
    for (const member of observer.members) if (member.alive) member.child.kill('SIGKILL');
    // After a failure in a cluster sends may wait for a leader that never comes: close() would
    // flush them until their delivery timeout, so it is awaited only after a success.
    const closed = producer.close().catch(() => undefined);
    if (succeeded || brokers.cluster === null) await closed;
    await brokers.stop();
  }
}
