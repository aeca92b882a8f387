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
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { Producer } from '../../src/client/index.js';
import { repoRoot } from '../lib/broker-process.js';
import type { MetricValue, Outcome, RunContext } from '../lib/context.js';
import { log, sleep } from '../lib/progress.js';
import type { Workload } from '../lib/workload.js';
import { createTopic } from './produce.js';

const memberScript = path.join(repoRoot, 'dist/bench/group-member.js');
const stableForMs = 2000;
const stableTimeoutMs = 60_000;

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
  missing = false;
  errors: string[] = [];

  constructor(private readonly args: string[]) {}

  spawnMember(name: string): Member {
    const child = spawn(process.execPath, [memberScript, ...this.args.slice(0, 3), name, ...this.args.slice(3)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const member: Member = { name, child, alive: true, readyAtMs: null };
    child.once('exit', () => (member.alive = false));
    child.stderr!.on('data', (chunk: Buffer) => this.errors.push(`${name}: ${chunk.toString().trim()}`.slice(0, 2000)));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let event: { type: string; partition?: number; atMs?: number; message?: string };
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        return;
      }
      if (event.type === 'missing') this.missing = true;
      else if (event.type === 'ready') member.readyAtMs = event.atMs ?? Date.now();
      else if (event.type === 'error') this.errors.push(`${name}: ${event.message}`);
      else if (event.type === 'consumed' && event.partition !== undefined && event.atMs !== undefined) {
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

export async function runGroup(workload: Workload, ctx: RunContext): Promise<Outcome> {
  const override = process.env.RILL_BENCH_CONSUMER_MODULE;
  const client = (await import(override === undefined ? '../../src/client/index.js' : `../${override}`)) as Record<string, unknown>;
  if (typeof client.Consumer !== 'function') throw new GroupSkipped('src/client/index.ts does not export Consumer yet (consumer groups, issue 3); rerun once it does');
  const broker = await ctx.startBroker();
  const topic = `bench-${workload.name}`;
  const groupId = `bench-group-${Date.now()}`;
  const observer = new GroupObserver([broker.bootstrap, topic, groupId, String(workload.sessionTimeoutMs)]);
  const producer = new Producer({ bootstrap: broker.bootstrap, acks: 1 });
  let producing = true;
  try {
    await createTopic(broker.bootstrap, topic, workload.partitions);
    const value = Buffer.alloc(workload.messageSize, 7);
    const writer = (async () => {
      while (producing) {
        for (let p = 0; p < workload.partitions; p++) void producer.send({ topic, partition: p, value }).catch(() => undefined);
        await sleep(10);
      }
    })();
    for (let i = 0; i < workload.members; i++) observer.spawnMember(`member-${i}`);
    log(`  ${workload.members} member processes joining group ${groupId} on ${workload.partitions} partitions (session timeout ${workload.sessionTimeoutMs} ms)`);
    let owners = await observer.waitStable(workload.partitions);
    const metrics: Record<string, MetricValue> = { members: workload.members, partitions: workload.partitions, sessionTimeoutMs: workload.sessionTimeoutMs };
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
    log(`  join ${joiner.name}: consuming its ${gained.length} partitions ${joinMs} ms after spawn (${metrics.joinFromReadyMs} ms after it subscribed); ${movedNow.length} partitions moved`);
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
    producing = false;
    await writer;
    return {
      metrics,
      summary: `SIGKILL: ${killMs} ms, ${metrics.sigkillPartitionsMoved} moved; close: ${closeMs} ms, ${metrics.closePartitionsMoved} moved; join: ${joinMs} ms, ${metrics.joinPartitionsMoved} moved`,
    };
  } finally {
    producing = false;
    for (const member of observer.members) if (member.alive) member.child.kill('SIGKILL');
    await producer.close().catch(() => undefined);
    await broker.stop();
    broker.removeData();
  }
}
