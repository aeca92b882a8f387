/**
 * A cluster of real processes for failover tests: one etcd (etcd-process.ts) and N brokers
 * (broker-process.ts), node ids 1..N, each on its own port and data directory, all with
 * `--http off` and a short lease TTL (RILL_LEASE_TTL_MS). Faults, per broker:
 *
 *   kill()     SIGKILL, wait for the exit          restart()  same node id, port and data directory
 *   pause()    SIGSTOP                             resume()   SIGCONT
 *   stop()     SIGTERM (after SIGCONT if paused), wait for the exit
 *   isolate()  with `proxies`: cut it off from etcd, from the other brokers and from clients
 *   heal()     undo isolate()
 *
 * With `proxies`, every broker reaches etcd through a proxy of its own (--etcd) and advertises a
 * proxy in front of its listener (--advertise), so everyone else (brokers and clients, which learn
 * addresses from Metadata) reaches it only through that proxy. isolate() cuts both, and makes the
 * other brokers' proxies refuse connections the isolated broker opens (tcp-proxy.ts, refuseFrom),
 * so it can reach nobody either: a symmetric partition.
 *
 * Waits poll a condition with a generous deadline (`until`); nothing sleeps to let things
 * settle. Views of a topic come from Admin.describeTopic; the fields replication adds to each
 * partition (leaderEpoch, replicas, isr) are checked once per answer (`replicatedTopic`): without
 * them a wait fails at once with a ContractMissing error instead of running into its deadline.
 *
 * Every child this module starts is SIGKILLed when the test process exits, whatever happens.
 */
import fs from 'node:fs';
import { Admin, type ClusterDescription, type PartitionDescription, type TopicDescription } from '../../src/client/index.js';
import { startBroker, tempDir, type BrokerProcess } from './broker-process.js';
import { startEtcd, type EtcdProcess } from './etcd-process.js';
import { TcpProxy, type CutMode } from './tcp-proxy.js';

export interface ClusterOptions {
  /** `--cluster`; also names the data directories. */
  name: string;
  /** Default 3. */
  brokerCount?: number;
  /** RILL_LEASE_TTL_MS; default 3000 (the broker accepts 2000 and up). */
  leaseTtlMs?: number;
  /** A proxy in front of every broker's listener and one between every broker and etcd. */
  proxies?: boolean;
  /** Default 'info': the output is kept in memory and printed when a test fails. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Default 30 000 ms: a start on a loaded 2-core machine. */
  startTimeoutMs?: number;
}

/** A partition as Admin.describeTopic gives it. */
export type ReplicatedPartition = PartitionDescription;

export interface ReplicatedTopic {
  name: string;
  partitions: ReplicatedPartition[];
}

/** What the code under test does not offer yet: a wait fails at once with it, never retries. */
export class ContractMissing extends Error {
  override name = 'ContractMissing';
}

/** Children alive in this process, killed on exit even when a test or a hook failed. */
const liveChildren = new Set<{ kill(signal: NodeJS.Signals): boolean; pid?: number | undefined }>();
process.once('exit', () => {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

/**
 * Checks that a description carries the fields replication adds (a broker too old to give them
 * fails the wait at once); throws ContractMissing if not.
 */
export function replicatedTopic(description: TopicDescription): ReplicatedTopic {
  const partitions = description.partitions as (TopicDescription['partitions'][number] & Partial<ReplicatedPartition>)[];
  for (const p of partitions) {
    if (!Array.isArray(p.replicas) || !Array.isArray(p.isr) || typeof p.leaderEpoch !== 'number') {
      throw new ContractMissing(`Admin.describeTopic("${description.name}") partition ${p.partition} has no replicas/isr/leaderEpoch (got ${JSON.stringify(p, bigintJson)}): the broker does not report replication`);
    }
  }
  return { name: description.name, partitions: partitions as ReplicatedPartition[] };
}

export function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `${value}n` : value;
}

/**
 * Polls `probe` every `intervalMs` until it returns something other than undefined; an error
 * thrown by the probe counts as "not yet" (kept as the last observation), except ContractMissing.
 * Fails after `limitMs` naming `what` and the last observation.
 */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, limitMs: number, intervalMs = 100): Promise<T> {
  const startedMs = Date.now();
  let last = 'nothing observed yet';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
      last = 'condition not met';
    } catch (error) {
      if (error instanceof ContractMissing) throw error;
      last = (error as Error).message;
    }
    if (Date.now() - startedMs > limitMs) throw new Error(`not within ${limitMs} ms: ${what}; last: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Admin timeouts short enough that a paused broker costs a poll, not the test. */
const adminOptions = { connectTimeoutMs: 1000, requestTimeoutMs: 3000 };

export class ClusterNode {
  private broker: BrokerProcess | null = null;
  private earlierOutput = '';
  private paused = false;
  private isolated = false;
  /** The broker's own listener port, fixed by its first start and kept by restarts. */
  port = 0;
  readonly dataDir: string;

  constructor(
    readonly nodeId: number,
    private readonly cluster: ClusterProcesses,
    readonly listenerProxy: TcpProxy | null,
    readonly etcdProxy: TcpProxy | null,
  ) {
    this.dataDir = tempDir(`${cluster.name}-n${nodeId}`);
  }

  /** HOST:PORT others use: the listener proxy's when there is one. */
  get address(): string {
    return this.listenerProxy?.address ?? `127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.broker !== null && this.broker.child.exitCode === null && this.broker.child.signalCode === null;
  }

  /** Running, not paused and not isolated: its answers reflect the cluster. */
  get healthy(): boolean {
    return this.running && !this.paused && !this.isolated;
  }

  get pid(): number {
    const pid = this.broker?.child.pid;
    if (pid === undefined || !this.running) throw new Error(`broker ${this.nodeId} is not running`);
    return pid;
  }

  /** Everything the broker printed, over all its runs. */
  output(): string {
    return this.earlierOutput + (this.broker?.output() ?? '');
  }

  async start(): Promise<void> {
    if (this.running) throw new Error(`broker ${this.nodeId} is already running`);
    if (this.broker !== null) this.earlierOutput += `${this.broker.output()}\n--- broker ${this.nodeId} restarted ---\n`;
    const deadlineMs = Date.now() + this.cluster.startTimeoutMs;
    // A restart reuses the port: a moment after a SIGKILL it may still be taken (crash-loop.test.ts).
    for (;;) {
      try {
        this.broker = await startBroker({ dataDir: this.dataDir, port: this.port, args: this.cluster.brokerArgs(this), env: this.cluster.env, timeoutMs: this.cluster.startTimeoutMs });
        break;
      } catch (error) {
        if (this.port === 0 || !/EADDRINUSE|in use/i.test(String(error)) || Date.now() > deadlineMs) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    liveChildren.add(this.broker.child);
    const child = this.broker.child;
    child.once('exit', () => liveChildren.delete(child));
    this.paused = false;
    if (this.port === 0) {
      this.port = this.broker.port;
      this.listenerProxy?.setTarget({ host: '127.0.0.1', port: this.port });
    }
  }

  /** Same node id, port and data directory. */
  restart(): Promise<void> {
    return this.start();
  }

  async kill(): Promise<void> {
    await this.broker?.kill();
    this.paused = false;
  }

  pause(): void {
    if (!this.running) throw new Error(`broker ${this.nodeId} is not running`);
    this.broker!.child.kill('SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    if (!this.running) throw new Error(`broker ${this.nodeId} is not running`);
    this.broker!.child.kill('SIGCONT');
    this.paused = false;
  }

  /** SIGTERM and wait; SIGKILL after `graceMs`. Returns the exit code (null: it had to be killed). */
  async stop(graceMs = 20_000): Promise<number | null> {
    if (!this.running) return this.broker?.child.exitCode ?? null;
    if (this.paused) this.resume();
    const timer = setTimeout(() => this.broker!.child.kill('SIGKILL'), graceMs);
    try {
      return await this.broker!.stop();
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Cuts the broker off from etcd, from the other brokers and from clients. The listener proxy
   * refuses (connects fail at once, clients move to the next broker); etcd is blackholed (its
   * requests hang, as across a dead link) unless `etcdMode` says otherwise.
   */
  isolate(etcdMode: CutMode = 'blackhole'): void {
    if (this.listenerProxy === null || this.etcdProxy === null) throw new Error('isolate() needs a cluster started with proxies: true');
    const pid = this.pid;
    this.isolated = true;
    this.etcdProxy.cut(etcdMode);
    this.listenerProxy.cut('refuse');
    for (const other of this.cluster.nodes) if (other !== this) other.listenerProxy!.refuseFrom(pid);
  }

  async heal(): Promise<void> {
    if (this.listenerProxy === null || this.etcdProxy === null) throw new Error('heal() needs a cluster started with proxies: true');
    for (const other of this.cluster.nodes) if (other !== this && this.broker?.child.pid !== undefined) other.listenerProxy!.allowFrom(this.broker.child.pid);
    await this.etcdProxy.heal();
    await this.listenerProxy.heal();
    this.isolated = false;
  }
}

export class ClusterProcesses {
  readonly nodes: ClusterNode[] = [];
  readonly leaseTtlMs: number;
  readonly startTimeoutMs: number;
  readonly env: NodeJS.ProcessEnv;
  readonly name: string;
  private readonly logLevel: string;

  private constructor(readonly etcd: EtcdProcess, options: ClusterOptions) {
    this.name = options.name;
    this.leaseTtlMs = options.leaseTtlMs ?? 3000;
    this.startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.logLevel = options.logLevel ?? 'info';
    this.env = { ...process.env, RILL_LEASE_TTL_MS: String(this.leaseTtlMs) };
  }

  /** Starts etcd and the brokers (in parallel), and waits until every broker sees all of them and a controller. */
  static async start(options: ClusterOptions): Promise<ClusterProcesses> {
    const etcd = await startEtcd();
    liveChildren.add(etcd.child);
    const cluster = new ClusterProcesses(etcd, options);
    try {
      for (let nodeId = 1; nodeId <= (options.brokerCount ?? 3); nodeId++) {
        const proxies = options.proxies === true;
        const listenerProxy = proxies ? await TcpProxy.start({ name: `broker-${nodeId}` }) : null;
        const etcdProxy = proxies ? await TcpProxy.start({ name: `etcd-for-${nodeId}`, target: { host: '127.0.0.1', port: etcd.clientPort } }) : null;
        cluster.nodes.push(new ClusterNode(nodeId, cluster, listenerProxy, etcdProxy));
      }
      await Promise.all(cluster.nodes.map((node) => node.start()));
      await cluster.waitForMembers(cluster.nodes.map((n) => n.nodeId));
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  /** The flags of one broker (--data-dir and --port come from startBroker). */
  brokerArgs(node: ClusterNode): string[] {
    const etcdUrl = node.etcdProxy === null ? this.etcd.url : `http://${node.etcdProxy.address}`;
    const advertise = node.listenerProxy === null ? [] : ['--advertise', node.listenerProxy.address];
    return ['--node-id', String(node.nodeId), '--etcd', etcdUrl, '--cluster', this.name, '--http', 'off', '--log-level', this.logLevel, ...advertise];
  }

  node(nodeId: number): ClusterNode {
    const node = this.nodes.find((n) => n.nodeId === nodeId);
    if (node === undefined) throw new Error(`no broker ${nodeId} in cluster ${this.name}`);
    return node;
  }

  /** Every broker's address, comma-separated, as a client's bootstrap. */
  get bootstrap(): string {
    return this.nodes.map((n) => n.address).join(',');
  }

  /** The addresses of the healthy brokers (or of `nodeIds`). */
  bootstrapOf(nodeIds: number[] = this.healthyIds()): string {
    return nodeIds.map((id) => this.node(id).address).join(',');
  }

  healthyIds(): number[] {
    return this.nodes.filter((n) => n.healthy).map((n) => n.nodeId);
  }

  async admin<T>(via: string, use: (admin: Admin) => Promise<T>): Promise<T> {
    const admin = new Admin({ bootstrap: via, ...adminOptions });
    try {
      return await use(admin);
    } finally {
      admin.close();
    }
  }

  describeCluster(via: number): Promise<ClusterDescription> {
    return this.admin(this.node(via).address, (admin) => admin.describeCluster());
  }

  /** Admin.describeTopic through one broker (its own view of leaders and ISRs). */
  describeTopic(topic: string, via: number): Promise<ReplicatedTopic> {
    return this.admin(this.node(via).address, async (admin) => replicatedTopic(await admin.describeTopic(topic)));
  }

  /**
   * The topic as every broker in `via` (default: the healthy ones) describes it, once they all
   * agree on each partition's leader, leader epoch and ISR; undefined while they disagree.
   */
  async agreedView(topic: string, via: number[] = this.healthyIds()): Promise<ReplicatedTopic | undefined> {
    if (via.length === 0) throw new Error('agreedView: no broker to ask');
    const answers = await Promise.allSettled(via.map((id) => this.describeTopic(topic, id)));
    const failures = answers.flatMap((a) => (a.status === 'rejected' ? [a.reason as Error] : []));
    if (failures.length > 0) throw failures.find((e) => e instanceof ContractMissing) ?? failures[0]!;
    const views = answers.map((a) => (a as PromiseFulfilledResult<ReplicatedTopic>).value);
    const key = (t: ReplicatedTopic): string => JSON.stringify(t.partitions.map((p) => [p.leader, p.leaderEpoch, [...p.isr].sort(), p.replicas]));
    return views.every((v) => key(v) === key(views[0]!)) ? views[0] : undefined;
  }

  /** Waits until the brokers in `via` agree and `condition` holds of their view; returns it. */
  waitForView(what: string, topic: string, condition: (view: ReplicatedTopic) => boolean, options: { via?: () => number[]; limitMs?: number } = {}): Promise<ReplicatedTopic> {
    return until(what, async () => {
      const view = await this.agreedView(topic, options.via?.() ?? this.healthyIds());
      return view !== undefined && condition(view) ? view : undefined;
    }, options.limitMs ?? this.leaseTtlMs * 5 + 20_000);
  }

  /** Every partition has a leader among the live brokers and its ISR holds all its replicas. */
  waitForFullIsr(topic: string, limitMs?: number): Promise<ReplicatedTopic> {
    return this.waitForView(`every partition of ${topic} led, with its whole replica set in sync`, topic, (view) => view.partitions.every((p) => p.leader >= 0 && sameSet(p.isr, p.replicas)), { limitMs });
  }

  /** Waits until every broker in `nodeIds` (running and registered) sees exactly them alive and a controller. */
  async waitForMembers(nodeIds: number[], limitMs = this.leaseTtlMs * 5 + 20_000): Promise<ClusterDescription> {
    const want = [...nodeIds].sort((a, b) => a - b).join();
    let last: ClusterDescription | undefined;
    for (const id of nodeIds) {
      last = await until(`broker ${id} sees brokers [${want}] alive and a controller`, async () => {
        const d = await this.describeCluster(id);
        return d.controller !== null && d.brokers.filter((b) => b.alive).map((b) => b.nodeId).join() === want ? d : undefined;
      }, limitMs);
    }
    return last!;
  }

  /** SIGKILL etcd and wait for its exit. */
  async killEtcd(): Promise<void> {
    await this.etcd.kill();
  }

  /** etcd again, same ports and data directory. */
  async restartEtcd(): Promise<void> {
    await this.etcd.restart();
    liveChildren.add(this.etcd.child);
  }

  /** SIGTERM to every running broker at once; resolves with their exit codes by node id. */
  async stopAll(): Promise<Map<number, number | null>> {
    const codes = await Promise.all(this.nodes.map(async (n) => [n.nodeId, await n.stop()] as const));
    return new Map(codes);
  }

  /** The last `lines` lines of each broker's output, for a failed test's report. */
  outputTail(lines = 60): string {
    return this.nodes.map((n) => `--- broker ${n.nodeId} (data ${n.dataDir}) ---\n${n.output().split('\n').slice(-lines).join('\n')}`).join('\n');
  }

  /** SIGKILLs everything, closes the proxies, stops etcd; removes the data directories if `removeData`. */
  async close(removeData = false): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.kill()));
    await Promise.all(this.nodes.flatMap((n) => [n.listenerProxy?.close(), n.etcdProxy?.close()]));
    await this.etcd.stop();
    liveChildren.delete(this.etcd.child);
    if (removeData) for (const n of this.nodes) fs.rmSync(n.dataDir, { recursive: true, force: true });
  }
}

export function sameSet(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}
