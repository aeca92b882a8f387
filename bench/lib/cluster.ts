/**
 * A replicated Rill cluster for one workload: one etcd (etcd-process.ts) and N brokers, node ids
 * 1..N, each a `node dist/src/cli/main.js broker --node-id N --etcd URL --cluster NAME --port P
 * --http off --data-dir DIR` started through the bench's broker helper (so --profile covers them),
 * each on a port picked free at the start and kept across restarts, each with its own data
 * directory, all with RILL_LEASE_TTL_MS set.
 *
 *   start()    etcd, then the brokers in parallel; ready once every broker lists all N alive and
 *              a controller (Admin.describeCluster through that broker)
 *   kill(id)   SIGKILL, wait for the exit; returns performance.now() just before the signal
 *   restart(id) same node id, port and data directory
 *   stop()     SIGTERM every broker (SIGKILL after a grace period), then etcd; removes every
 *              temporary directory. start() does the same when it fails.
 *
 * Waits poll with a deadline; a wait that runs out names what it waited for and what it saw last.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Admin, type PartitionDescription } from '../../src/client/index.js';
import { freshDataDir, repoRoot, type BrokerProcess } from './broker-process.js';
import type { BrokerStartOptions } from './context.js';
import { freePort, startEtcd, type EtcdProcess } from './etcd-process.js';
import { log, sleep } from './progress.js';

export interface ClusterSettings {
  /** `--cluster`; letters, digits, `.`, `_`, `-`. */
  name: string;
  brokers: number;
  /** RILL_LEASE_TTL_MS (the broker's minimum is 2000). */
  leaseTtlMs: number;
  /** Broker --log-level; default 'info' (kept in memory, saved when a workload fails). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

type StartBroker = (options: BrokerStartOptions) => Promise<BrokerProcess>;

/** Admin timeouts short enough that a dead broker costs one poll, not the wait. */
const adminOptions = { connectTimeoutMs: 1000, requestTimeoutMs: 3000 };
const pollIntervalMs = 50;
const brokerStopGraceMs = 10_000;
/** A restarted broker's port may still be held a moment after the SIGKILL. */
const restartPortRetryMs = 20_000;

export class ClusterNode {
  process: BrokerProcess | null = null;
  private earlierOutput = '';
  private starts = 0;

  constructor(readonly nodeId: number, readonly port: number, readonly dataDir: string) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    const child = this.process?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Everything the broker printed (the tail of each run), over all its runs. */
  output(): string {
    return this.earlierOutput + (this.process?.output() ?? '');
  }

  async start(cluster: BenchCluster, startBroker: StartBroker): Promise<void> {
    if (this.running) throw new Error(`broker ${this.nodeId} is already running`);
    if (this.process !== null) this.earlierOutput += `${this.process.output()}\n--- broker ${this.nodeId} restarted ---\n`;
    this.starts++;
    const deadlineMs = performance.now() + restartPortRetryMs;
    for (;;) {
      try {
        this.process = await startBroker({ dataDir: this.dataDir, port: this.port, args: cluster.brokerArgs(this), env: cluster.env, label: `n${this.nodeId}-${this.starts}` });
        return;
      } catch (error) {
        if (!/EADDRINUSE/.test(String(error)) || performance.now() > deadlineMs) throw error;
        await sleep(200);
      }
    }
  }
}

export class BenchCluster {
  readonly nodes: ClusterNode[] = [];
  readonly env: NodeJS.ProcessEnv;
  private stopped = false;

  private constructor(readonly settings: ClusterSettings, readonly etcd: EtcdProcess, private readonly startBroker: StartBroker) {
    this.env = { ...process.env, RILL_LEASE_TTL_MS: String(settings.leaseTtlMs) };
  }

  /** etcd and `settings.brokers` brokers, ready and seeing each other; everything stopped if that fails. */
  static async start(settings: ClusterSettings, startBroker: StartBroker): Promise<BenchCluster> {
    const startedMs = performance.now();
    const etcd = await startEtcd();
    const cluster = new BenchCluster(settings, etcd, startBroker);
    try {
      for (let nodeId = 1; nodeId <= settings.brokers; nodeId++) cluster.nodes.push(new ClusterNode(nodeId, await freePort(), freshDataDir(`${settings.name}-n${nodeId}`)));
      await Promise.all(cluster.nodes.map((node) => node.start(cluster, startBroker)));
      await cluster.waitForMembers(cluster.nodes.map((n) => n.nodeId));
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    log(`  cluster "${settings.name}": etcd ${etcd.url}, brokers ${cluster.nodes.map((n) => `${n.nodeId}@${n.port}`).join(', ')}, lease TTL ${settings.leaseTtlMs} ms; ready after ${Math.round(performance.now() - startedMs)} ms`);
    return cluster;
  }

  brokerArgs(node: ClusterNode): string[] {
    return ['--node-id', String(node.nodeId), '--etcd', this.etcd.url, '--cluster', this.settings.name, '--http', 'off', '--log-level', this.settings.logLevel ?? 'info'];
  }

  /** Every broker's address, comma-separated: a client's bootstrap. */
  get bootstrap(): string {
    return this.nodes.map((n) => n.address).join(',');
  }

  node(nodeId: number): ClusterNode {
    const node = this.nodes.find((n) => n.nodeId === nodeId);
    if (node === undefined) throw new Error(`no broker ${nodeId} in cluster ${this.settings.name}`);
    return node;
  }

  runningIds(): number[] {
    return this.nodes.filter((n) => n.running).map((n) => n.nodeId);
  }

  async admin<T>(via: string, use: (admin: Admin) => Promise<T>): Promise<T> {
    const admin = new Admin({ bootstrap: via, ...adminOptions });
    try {
      return await use(admin);
    } finally {
      admin.close();
    }
  }

  /** Waits until every broker in `nodeIds` lists exactly them alive, and a controller. */
  async waitForMembers(nodeIds: number[], limitMs = this.waitLimitMs()): Promise<void> {
    const want = [...nodeIds].sort((a, b) => a - b).join();
    for (const id of nodeIds) {
      await until(`broker ${id} lists brokers [${want}] alive and a controller`, async () => {
        const d = await this.admin(this.node(id).address, (admin) => admin.describeCluster());
        const alive = d.brokers.filter((b) => b.alive).map((b) => b.nodeId).join();
        return d.controller !== null && alive === want ? true : `alive [${alive}], controller ${d.controller?.nodeId ?? 'none'}`;
      }, limitMs);
    }
  }

  /** Creates a replicated topic through any broker. */
  async createTopic(topic: string, partitions: number, replicationFactor: number, minInSyncReplicas: number): Promise<void> {
    await this.admin(this.bootstrap, (admin) => admin.createTopics([{ topic, partitions, replicationFactor, config: { minInSyncReplicas } }]));
  }

  /**
   * A partition as every running broker describes it, once they agree on its leader, leader epoch
   * and ISR; a string saying what differs otherwise.
   */
  async agreedPartition(topic: string, partition: number): Promise<PartitionDescription | string> {
    const views = await Promise.all(this.runningIds().map((id) => this.admin(this.node(id).address, async (admin) => {
      const p = (await admin.describeTopic(topic)).partitions[partition];
      if (p === undefined) throw new Error(`broker ${id} describes no partition ${partition} of ${topic}`);
      return { id, p };
    })));
    const key = ({ p }: (typeof views)[number]): string => `leader ${p.leader} epoch ${p.leaderEpoch} isr [${[...p.isr].sort().join()}]`;
    const keys = views.map(key);
    return keys.every((k) => k === keys[0]) ? views[0]!.p : views.map((v, i) => `broker ${v.id}: ${keys[i]}`).join('; ');
  }

  /** Waits until the running brokers agree on the partition and `condition` holds; returns it. */
  waitForPartition(what: string, topic: string, partition: number, condition: (p: PartitionDescription) => boolean, limitMs = this.waitLimitMs()): Promise<PartitionDescription> {
    return until(what, async () => {
      const p = await this.agreedPartition(topic, partition);
      if (typeof p === 'string') return `brokers disagree: ${p}`;
      return condition(p) ? p : `leader ${p.leader} epoch ${p.leaderEpoch} isr [${p.isr.join()}] replicas [${p.replicas.join()}]`;
    }, limitMs);
  }

  /** Every partition led, with its whole replica set in the ISR, as every running broker sees it. */
  async waitForFullIsr(topic: string, partitions: number): Promise<PartitionDescription[]> {
    const views: PartitionDescription[] = [];
    for (let partition = 0; partition < partitions; partition++) {
      views.push(await this.waitForPartition(`${topic}/${partition} led with its whole replica set in sync`, topic, partition, (p) => p.leader >= 0 && sameSet(p.isr, p.replicas)));
    }
    return views;
  }

  /** SIGKILL; returns performance.now() taken just before the signal. */
  async kill(nodeId: number): Promise<number> {
    const node = this.node(nodeId);
    if (!node.running) throw new Error(`broker ${nodeId} is not running`);
    const killedAtMs = performance.now();
    await node.process!.kill();
    return killedAtMs;
  }

  restart(nodeId: number): Promise<void> {
    return this.node(nodeId).start(this, this.startBroker);
  }

  /** Long enough for lease expiry, an election and a loaded machine; a wait past it is a failure. */
  waitLimitMs(): number {
    return this.settings.leaseTtlMs * 5 + 20_000;
  }

  /** The brokers' and etcd's output, for a failure report. */
  logs(): string {
    const brokers = this.nodes.map((n) => `--- broker ${n.nodeId} (port ${n.port}, data ${n.dataDir}) ---\n${n.output()}`);
    return `${brokers.join('\n')}\n--- etcd (${this.etcd.url}) ---\n${this.etcd.output()}`;
  }

  /**
   * Each broker's last `perBroker` distinct warnings and errors (pino level >= 40), a message
   * repeated many times shown once with its count and first time: what a failure report quotes.
   */
  warnings(perBroker = 3): string {
    const parts: string[] = [];
    for (const node of this.nodes) {
      const seen = new Map<string, { firstTime: string; lastTime: string; count: number }>();
      for (const line of node.output().split('\n')) {
        if (!line.startsWith('{')) continue;
        let entry: { level?: number; time?: string; msg?: string };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          continue;
        }
        if ((entry.level ?? 0) < 40 || entry.msg === undefined) continue;
        const known = seen.get(entry.msg);
        seen.delete(entry.msg); // re-inserted last: Map order is then the order of last occurrence
        seen.set(entry.msg, { firstTime: known?.firstTime ?? entry.time ?? '?', lastTime: entry.time ?? '?', count: (known?.count ?? 0) + 1 });
      }
      const last = [...seen].slice(-perBroker).map(([msg, { firstTime, lastTime, count }]) => `    ${firstTime} ${msg}${count > 1 ? ` (×${count}, last ${lastTime})` : ''}`);
      if (last.length > 0) parts.push(`  broker ${node.nodeId}:\n${last.join('\n')}`);
    }
    return parts.join('\n');
  }

  /** Writes logs() to bench/results/<timestamp>-<label>-cluster.log; returns the path. */
  saveLogs(label: string): string {
    const dir = path.join(repoRoot, 'bench/results');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${label}-cluster.log`);
    fs.writeFileSync(file, this.logs());
    return file;
  }

  /** SIGTERM every broker (SIGKILL after 10 s), then stop etcd; removes the data directories. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.nodes.map((n) => n.process?.stop(brokerStopGraceMs)));
    await this.etcd.stop();
    for (const n of this.nodes) fs.rmSync(n.dataDir, { recursive: true, force: true });
  }
}

/**
 * Polls `probe` every 50 ms until it answers something other than a string; a string (what it saw)
 * or a thrown error is "not yet". Fails after `limitMs`, naming `what` and the last observation.
 */
export async function until<T>(what: string, probe: () => Promise<T | string>, limitMs: number): Promise<T> {
  const startedMs = performance.now();
  let last = 'nothing observed yet';
  for (;;) {
    try {
      const answer = await probe();
      if (typeof answer !== 'string') return answer;
      last = answer;
    } catch (error) {
      last = (error as Error).message;
    }
    if (performance.now() - startedMs > limitMs) throw new Error(`not within ${limitMs} ms: ${what}; last seen: ${last}`);
    await sleep(pollIntervalMs);
  }
}

export function sameSet(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}
