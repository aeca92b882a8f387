/**
 * `rill dev-cluster`: etcd and N brokers on this machine as children of one command, to try a
 * cluster and play with its failures (kill a broker, watch its partitions move). One machine is
 * one failure domain: this is for development, not production.
 *
 *   claim DIR -> pick ports -> etcd answers /health -> every broker printed its ready lines
 *     -> every broker sees all N registered and a controller -> summary on stdout: running
 *
 *   running   a child that exits is reported (name, pid, exit code or signal) and left down; the
 *             others run on: the user may well have killed it on purpose
 *   signal    SIGINT, SIGTERM or SIGHUP, in any phase: the brokers get SIGTERM (SIGKILL after
 *             brokerStopGraceMs), then etcd, last, so that the brokers can revoke their leases -> exit 0
 *   again     another signal after duplicateSignalWindowMs: SIGKILL to every child -> exit 130
 *   failure   a child exits, or a step outlasts its deadline, before the summary: stop the rest -> exit 1
 *
 * The children run in process groups of their own (detached), so a Ctrl-C at the terminal reaches
 * this process alone and the order above holds: a broker must not lose etcd while it is leaving.
 * Their output is forwarded to our stderr, each line prefixed with the child's name, rather than
 * written to a file per child: one stream in time order tells the story of a failure (broker-2
 * died, broker-1 took over its partitions) that separate files would scatter, and redirecting
 * stderr keeps it all the same.
 *
 * DIR/dev-cluster.json names the run using DIR and its children's pids while it runs: a second
 * run on DIR is refused while the first (or children a SIGKILLed run left behind) still runs,
 * instead of a second etcd waiting forever for the first one's lock on DIR/etcd.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { integerIn, UsageError } from './args.js';
import type { Run } from './client-options.js';

const brokersMax = 9;
const brokersDefault = 3;
const basePortDefault = 9092;
const httpBasePortDefault = 9644;
const etcdClientPortDefault = 2379;
const etcdPeerPortDefault = 2380;
const dataDirDefault = './rill-dev-cluster';
const clusterName = 'dev';
const etcdBinaryDefault = '/usr/bin/etcd';
const etcdInstallHint = 'install etcd (Debian/Ubuntu: sudo apt-get install etcd-server; macOS: brew install etcd) or give --etcd-bin PATH (env RILL_ETCD_BIN)';
const etcdHealthyTimeoutMs = 30_000;
/** Long enough for brokers to recover data directories of some size on a later run. */
const brokersReadyTimeoutMs = 120_000;
const membersTimeoutMs = 60_000;
/** The broker's own shutdown waits up to shutdownGraceMs (5 s) for requests in flight, then leaves etcd. */
const brokerStopGraceMs = 15_000;
const etcdStopGraceMs = 10_000;
const pollIntervalMs = 200;
/** One Ctrl-C may arrive twice (from the terminal, and forwarded by `npm run`): not a second one. */
const duplicateSignalWindowMs = 1000;
/** A child's line longer than this is forwarded in pieces, so a missing newline cannot grow a buffer without bound. */
const lineCharsMax = 64 * 1024;
const stateFileName = 'dev-cluster.json';
const stopSignals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const cliMain = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');

/** The flags as commander parsed them (undefined: not given). */
export interface DevClusterFlags {
  brokers?: number;
  dataDir?: string;
  port?: number;
  etcdBin?: string;
}

export function registerDevCluster(program: Command, run: Run): void {
  program
    .command('dev-cluster')
    .description('etcd and N brokers on this machine in one command, to try a cluster; Ctrl-C stops them all')
    .option('--brokers <n>', `brokers to start, 1..${brokersMax} (default ${brokersDefault})`, integerIn('--brokers', 1, brokersMax))
    .option('--data-dir <dir>', `where etcd and the brokers keep their data (DIR/etcd, DIR/broker-N), reused by the next run (default ${dataDirDefault})`)
    .option('--port <n>', `rill port of broker 1; broker N gets PORT+N-1 (default ${basePortDefault}; 0: free ports for everything, etcd and HTTP too)`, integerIn('--port', 0, 65535))
    .option('--etcd-bin <path>', `the etcd executable (env RILL_ETCD_BIN; default ${etcdBinaryDefault}, else etcd on PATH)`)
    .addHelpText('after', `
Starts etcd (client port ${etcdClientPortDefault}, peer ${etcdPeerPortDefault}, data in DIR/etcd) and brokers 1..N of
cluster "${clusterName}", broker N as
  rill broker --node-id N --etcd URL --cluster ${clusterName} --port PORT+N-1 --http 127.0.0.1:${httpBasePortDefault}+N-1 --data-dir DIR/broker-N
A default port that is taken gives way to a free one (said on stderr). Once every broker is
registered it prints the bootstrap list and a table of the brokers (address, HTTP, pid, data) on
stdout; the children's output goes to stderr, each line prefixed with the child's name. A child
that dies (kill a broker to watch a failover) is reported and the others keep running. Ctrl-C or
SIGTERM stops the brokers gracefully, then etcd, and exits 0; the next run on DIR brings the
cluster back with its topics. RILL_* variables reach every broker (RILL_LOG_LEVEL=warn: quieter).

Examples:
  rill dev-cluster
  rill dev-cluster --brokers 5 --data-dir /tmp/rill-dev
  rill dev-cluster --port 0 --data-dir ./second     # beside another cluster, on free ports
  npm run cluster                                   # builds, then rill dev-cluster --brokers 3`)
    .action((flags: DevClusterFlags) => run(() => devCluster(flags)));
}

export async function devCluster(flags: DevClusterFlags): Promise<number> {
  const brokerCount = flags.brokers ?? brokersDefault;
  if (flags.port !== undefined && flags.port !== 0 && flags.port + brokerCount - 1 > 65535) {
    throw new UsageError(`--port ${flags.port} leaves no room for ${brokerCount} brokers (ports up to ${flags.port + brokerCount - 1}); give a lower --port`);
  }
  const etcdBinary = resolveEtcdBinary(flags.etcdBin, process.env);
  const dataDir = path.resolve(flags.dataDir ?? dataDirDefault);
  const reused = fs.existsSync(path.join(dataDir, 'etcd'));
  const claim = DataDirClaim.take(dataDir);
  let ports: PortPlan;
  try {
    ports = await planPorts(brokerCount, flags.port);
  } catch (error) {
    claim.release();
    throw error;
  }
  return new DevCluster({ etcdBinary, dataDir, reused, ports }, claim).run();
}

// ---- etcd executable ----

/** --etcd-bin, else RILL_ETCD_BIN, else /usr/bin/etcd, else etcd on PATH; none: a UsageError with the install hint. */
export function resolveEtcdBinary(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const given = flag ?? (env.RILL_ETCD_BIN === '' ? undefined : env.RILL_ETCD_BIN);
  if (given !== undefined) {
    if (executableFile(given)) return given;
    throw new UsageError(`${flag === undefined ? 'RILL_ETCD_BIN' : '--etcd-bin'} ${given} is not an executable file: ${etcdInstallHint}`);
  }
  if (executableFile(etcdBinaryDefault)) return etcdBinaryDefault;
  const onPath = (env.PATH ?? '').split(path.delimiter).filter((dir) => dir !== '').map((dir) => path.join(dir, 'etcd')).find(executableFile);
  if (onPath !== undefined) return onPath;
  throw new UsageError(`etcd not found (not at ${etcdBinaryDefault}, not on PATH): ${etcdInstallHint}`);
}

function executableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

// ---- the data directory, claimed by one run at a time ----

interface RunRecord {
  pid: number;
  startedAt: string;
  children: { name: string; pid: number }[];
}

class DataDirClaim {
  private readonly file: string;
  private readonly record: RunRecord = { pid: process.pid, startedAt: new Date().toISOString(), children: [] };

  private constructor(readonly dir: string) {
    this.file = path.join(dir, stateFileName);
  }

  /** Creates DIR if needed; refused (UsageError) while an earlier run, or children a killed run left, still use it. */
  static take(dir: string): DataDirClaim {
    fs.mkdirSync(dir, { recursive: true });
    // Data, not source: keep it out of git wherever it is, as virtualenvs and build directories do.
    const gitignore = path.join(dir, '.gitignore');
    if (!fs.existsSync(gitignore)) fs.writeFileSync(gitignore, '*\n');
    const claim = new DataDirClaim(dir);
    const previous = readRunRecord(claim.file);
    if (previous !== null) {
      if (runningWith(previous.pid, 'dev-cluster')) {
        throw new UsageError(`${display(dir)} is in use by rill dev-cluster pid ${previous.pid} (started ${previous.startedAt}): stop it (Ctrl-C in its terminal, or kill ${previous.pid}) or give another --data-dir`);
      }
      const left = previous.children.filter((c) => runningWith(c.pid, dir));
      if (left.length > 0) {
        throw new UsageError(`the rill dev-cluster that ran on ${display(dir)} was killed and left ${left.map((c) => `${c.name} (pid ${c.pid})`).join(', ')} running: stop ${left.length === 1 ? 'it' : 'them'} (kill ${left.map((c) => c.pid).join(' ')}) and run again`);
      }
    }
    claim.write();
    return claim;
  }

  addChild(name: string, pid: number): void {
    this.record.children.push({ name, pid });
    this.write();
  }

  release(): void {
    fs.rmSync(this.file, { force: true });
  }

  private write(): void {
    fs.writeFileSync(this.file, `${JSON.stringify(this.record, null, 2)}\n`);
  }
}

/** The record an earlier run left; null when absent or not one (a file we cannot read is no claim). */
function readRunRecord(file: string): RunRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
  const record = value as Partial<RunRecord> | null;
  if (record === null || typeof record !== 'object' || !Number.isSafeInteger(record.pid) || !Array.isArray(record.children)) return null;
  const children = record.children.filter((c): c is { name: string; pid: number } => typeof c?.name === 'string' && Number.isSafeInteger(c?.pid));
  return { pid: record.pid!, startedAt: String(record.startedAt), children };
}

/** A live process whose command line holds `mark` (where /proc says; elsewhere, alive is all we know). */
function runningWith(pid: number, mark: string): boolean {
  if (pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!fs.existsSync('/proc/self/cmdline')) return true;
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(mark);
  } catch {
    return false;
  }
}

// ---- ports ----

/** 0 for a broker port: the broker binds any free port and says which in its ready line. */
interface PortPlan {
  etcdClientPort: number;
  etcdPeerPort: number;
  brokerPorts: number[];
  httpPorts: number[];
}

/**
 * The defaults (9092.., 9644.., 2379, 2380), each replaced by a free port when taken, saying so;
 * `--port 0`: free ports everywhere. A port given with --port that is taken is a UsageError: the
 * user asked for it. A port seen free here may be taken before its child binds it (rare): that
 * child then fails to start, with its own message.
 */
async function planPorts(brokerCount: number, basePort: number | undefined): Promise<PortPlan> {
  const anyPorts = basePort === 0;
  const reserved = new Set<number>();
  const replaced: string[] = [];
  /** null: `port` is ours; else why not. */
  const take = async (port: number): Promise<string | null> => {
    if (anyPorts) return 'any';
    const problem = reserved.has(port) ? 'wanted twice' : await portProblem(port);
    if (problem === null) reserved.add(port);
    return problem;
  };
  const because = (problem: string): string => (problem === 'in use' ? '' : `, ${problem}`);
  const brokerPorts: number[] = [];
  const httpPorts: number[] = [];
  for (let nodeId = 1; nodeId <= brokerCount; nodeId++) {
    const wanted = (basePort ?? basePortDefault) + nodeId - 1;
    const problem = await take(wanted);
    if (problem !== null && !anyPorts && basePort !== undefined) throw new UsageError(`port ${wanted} (broker ${nodeId}) cannot be used (${problem}): give another --port, or --port 0 for free ports`);
    if (problem !== null && !anyPorts) replaced.push(`${wanted} (broker ${nodeId}${because(problem)})`);
    brokerPorts.push(problem === null ? wanted : 0);
  }
  for (let nodeId = 1; nodeId <= brokerCount; nodeId++) {
    const wanted = httpBasePortDefault + nodeId - 1;
    const problem = await take(wanted);
    if (problem !== null && !anyPorts) replaced.push(`${wanted} (broker ${nodeId} HTTP${because(problem)})`);
    httpPorts.push(problem === null ? wanted : 0);
  }
  // etcd cannot bind port 0 and tell us which it got: its ports are picked here.
  const etcdPort = async (wanted: number, what: string): Promise<number> => {
    const problem = await take(wanted);
    if (problem === null) return wanted;
    const port = await freePort(reserved);
    if (!anyPorts) replaced.push(`${wanted} (etcd ${what}${because(problem)}: ${port} instead)`);
    return port;
  };
  const etcdClientPort = await etcdPort(etcdClientPortDefault, 'client');
  const etcdPeerPort = await etcdPort(etcdPeerPortDefault, 'peer');
  if (replaced.length > 0) notice(`ports taken, free ones used instead (the summary shows where each broker landed): ${replaced.join(', ')}`);
  return { etcdClientPort, etcdPeerPort, brokerPorts, httpPorts };
}

/** null: 127.0.0.1:port can be bound now; else why not (EADDRINUSE, EACCES). */
function portProblem(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'EADDRINUSE' ? 'in use' : (error.code ?? error.message)));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(null)));
  });
}

async function freePort(reserved: Set<number>): Promise<number> {
  for (;;) {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (!reserved.has(port)) {
      reserved.add(port);
      return port;
    }
  }
}

// ---- one child process ----

interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when it could not be started at all. */
  error?: string;
}

class Child {
  readonly process: ChildProcess;
  readonly exited: Promise<ExitStatus>;
  /** Set once we asked it to stop: its exit is then no news. */
  stopping = false;
  private status: ExitStatus | null = null;
  private readonly lineWatchers = new Set<(line: string) => void>();

  constructor(readonly name: string, readonly command: string, readonly args: string[], env: NodeJS.ProcessEnv, prefix: string) {
    this.process = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
    this.exited = new Promise((resolve) => {
      const done = (status: ExitStatus): void => {
        if (this.status !== null) return;
        this.status = status;
        resolve(status);
      };
      this.process.once('exit', (code, signal) => done({ code, signal }));
      // Also emitted when a signal cannot be sent; only a failed spawn (no pid) means it never ran.
      this.process.on('error', (error) => {
        if (this.process.pid === undefined) done({ code: null, signal: null, error: error.message });
      });
    });
    const forward = (line: string): void => {
      process.stderr.write(`${prefix}${line}\n`);
      for (const watcher of this.lineWatchers) watcher(line);
    };
    forwardLines(this.process.stdout!, forward);
    forwardLines(this.process.stderr!, forward);
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get running(): boolean {
    return this.status === null && this.process.pid !== undefined;
  }

  /** The first line (stdout or stderr) matching `pattern`; never resolves if none comes. */
  line(pattern: RegExp): Promise<RegExpExecArray> {
    return new Promise((resolve) => {
      const watcher = (line: string): void => {
        const match = pattern.exec(line);
        if (match === null) return;
        this.lineWatchers.delete(watcher);
        resolve(match);
      };
      this.lineWatchers.add(watcher);
    });
  }

  kill(): void {
    if (this.running) this.process.kill('SIGKILL');
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited: true if it had to be killed. */
  async stop(graceMs: number): Promise<boolean> {
    this.stopping = true;
    if (!this.running) return false;
    this.process.kill('SIGTERM');
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      this.kill();
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
    return killed;
  }

  /** The command line, to paste into a shell. */
  commandLine(): string {
    return [this.command, ...this.args].map(shellWord).join(' ');
  }
}

function forwardLines(stream: Readable, emit: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) emit(line);
    while (partial.length > lineCharsMax) {
      emit(partial.slice(0, lineCharsMax));
      partial = partial.slice(lineCharsMax);
    }
  });
  stream.on('end', () => {
    if (partial !== '') emit(partial);
  });
}

function describeExit(status: ExitStatus): string {
  if (status.error !== undefined) return `could not be started (${status.error})`;
  return status.code !== null ? `exited with code ${status.code}` : `was killed by ${status.signal ?? 'a signal'}`;
}

// ---- the cluster ----

interface BrokerChild {
  nodeId: number;
  dataDir: string;
  child: Child;
  /** HOST:PORT, from its ready lines. */
  address: string;
  http: string;
}

interface DevClusterPlan {
  etcdBinary: string;
  dataDir: string;
  /** DIR/etcd existed before this run. */
  reused: boolean;
  ports: PortPlan;
}

class StopRequested extends Error {
  override name = 'StopRequested';
}

class StartFailure extends Error {
  override name = 'StartFailure';
}

type Phase = 'starting' | 'running' | 'stopping';

class DevCluster {
  private phase: Phase = 'starting';
  private etcd: Child | null = null;
  /** Brokers once ready (with the addresses they printed). */
  private readonly brokers: BrokerChild[] = [];
  /** Every child, ready or not, etcd first. */
  private readonly spawned: Child[] = [];
  private readonly prefixWidth: number;
  private firstSignalMs: number | null = null;
  private forced = false;
  private requestStop!: () => void;
  private readonly stopRequested = new Promise<void>((resolve) => (this.requestStop = resolve));
  private failStart!: (error: Error) => void;
  private readonly startFailed = new Promise<never>((_resolve, reject) => (this.failStart = reject));
  private readonly onSignal = (signal: NodeJS.Signals): void => this.signalled(signal);
  /** Whatever ends this process, no child outlives it (short of a SIGKILL to us). */
  private readonly killAll = (): void => {
    for (const child of this.spawned) child.kill();
  };

  constructor(private readonly plan: DevClusterPlan, private readonly claim: DataDirClaim) {
    this.startFailed.catch(() => undefined);
    this.prefixWidth = Math.max('etcd'.length, `broker-${plan.ports.brokerPorts.length}`.length);
  }

  private get etcdUrl(): string {
    return `http://127.0.0.1:${this.plan.ports.etcdClientPort}`;
  }

  async run(): Promise<number> {
    for (const signal of stopSignals) process.on(signal, this.onSignal);
    process.once('exit', this.killAll);
    let code = 0;
    try {
      await this.untilStopOrFailure((abort) => this.start(abort));
      this.phase = 'running';
      process.stdout.write(this.summary());
      await this.stopRequested;
    } catch (error) {
      if (!(error instanceof StopRequested)) {
        notice(error instanceof StartFailure ? `the cluster did not start: ${error.message}` : `failed: ${(error as Error).message}`);
        code = 1;
      }
    } finally {
      await this.stopAll();
      for (const signal of stopSignals) process.off(signal, this.onSignal);
      process.off('exit', this.killAll);
      this.claim.release();
    }
    return this.forced ? 130 : code;
  }

  /** `start` until it is done, a stop is requested or a child dies; then the start's waits are abandoned. */
  private async untilStopOrFailure(start: (abort: AbortSignal) => Promise<void>): Promise<void> {
    const abort = new AbortController();
    const starting = start(abort.signal);
    const stopped = this.stopRequested.then(() => {
      throw new StopRequested();
    });
    try {
      await Promise.race([starting, stopped, this.startFailed]);
    } finally {
      abort.abort();
      starting.catch(() => undefined);
      stopped.catch(() => undefined);
    }
  }

  private async start(abort: AbortSignal): Promise<void> {
    const { ports, dataDir } = this.plan;
    this.etcd = this.spawn('etcd', this.plan.etcdBinary, etcdArgs(path.join(dataDir, 'etcd'), ports.etcdClientPort, ports.etcdPeerPort), process.env);
    await withDeadline(waitForEtcd(ports.etcdClientPort, abort), etcdHealthyTimeoutMs, `etcd did not answer GET ${this.etcdUrl}/health`);
    abort.throwIfAborted();
    // Pretty lines read better behind a name prefix than JSON; RILL_LOG_FORMAT still decides.
    const env = { ...process.env, RILL_LOG_FORMAT: process.env.RILL_LOG_FORMAT ?? 'pretty' };
    const ready = ports.brokerPorts.map((port, i) => this.startBroker(i + 1, port, ports.httpPorts[i]!, env));
    await withDeadline(Promise.all(ready), brokersReadyTimeoutMs, 'not every broker printed "rill broker ready"');
    abort.throwIfAborted();
    this.brokers.sort((a, b) => a.nodeId - b.nodeId);
    await waitForMembers(this.brokers.map((b) => b.address), this.brokers.map((b) => b.nodeId), abort);
  }

  private async startBroker(nodeId: number, port: number, httpPort: number, env: NodeJS.ProcessEnv): Promise<void> {
    const dataDir = path.join(this.plan.dataDir, `broker-${nodeId}`);
    const args = brokerArgs(nodeId, this.etcdUrl, `127.0.0.1:${port}`, `127.0.0.1:${httpPort}`, dataDir);
    const child = this.spawn(`broker-${nodeId}`, process.execPath, [cliMain, ...args], env);
    const [rill, httpReady] = await Promise.all([child.line(/^rill broker ready on (\S+)$/), child.line(/^rill http ready on (\S+)$/)]);
    this.brokers.push({ nodeId, dataDir, child, address: rill[1]!, http: httpReady[1]! });
  }

  private spawn(name: string, command: string, args: string[], env: NodeJS.ProcessEnv): Child {
    const child = new Child(name, command, args, env, prefixOf(name, this.prefixWidth));
    this.spawned.push(child);
    if (child.pid !== undefined) this.claim.addChild(name, child.pid);
    void child.exited.then((status) => this.exited(child, status));
    return child;
  }

  private exited(child: Child, status: ExitStatus): void {
    if (child.stopping || this.phase === 'stopping') return;
    const who = `${child.name}${child.pid === undefined ? '' : ` (pid ${child.pid})`}`;
    if (this.phase === 'starting') {
      this.failStart(new StartFailure(`${who} ${describeExit(status)} (its output is above)`));
      return;
    }
    const broker = this.brokers.find((b) => b.child === child);
    const consequence = broker === undefined
      ? 'the brokers keep serving what they lead, but no election, ISR or topic change happens until etcd is back'
      : 'the others keep running; the partitions it led move to in-sync replicas on other brokers once its etcd lease expires';
    notice(`${who} ${describeExit(status)}: ${consequence}. Ctrl-C stops the rest.`);
    // A broker again on the address it had (it may have had port 0), with the data directory as the user would type it.
    const again = broker === undefined
      ? child.commandLine()
      : ['rill', ...brokerArgs(broker.nodeId, this.etcdUrl, broker.address, broker.http, display(broker.dataDir))].map(shellWord).join(' ');
    notice(`to start it again by hand (not stopped by Ctrl-C here): ${again}`);
  }

  private signalled(signal: NodeJS.Signals): void {
    const nowMs = Date.now();
    if (this.firstSignalMs === null) {
      this.firstSignalMs = nowMs;
      notice(`${signal}: stopping`);
      this.requestStop();
      return;
    }
    if (this.forced || nowMs - this.firstSignalMs < duplicateSignalWindowMs) return;
    this.forced = true;
    notice(`${signal} again: SIGKILL to every child, no clean shutdown`);
    this.killAll();
  }

  /** The brokers in parallel (SIGTERM, SIGKILL after a grace period), then etcd. */
  private async stopAll(): Promise<void> {
    this.phase = 'stopping';
    const brokers = this.spawned.filter((c) => c !== this.etcd);
    const running = brokers.filter((c) => c.running);
    const thenEtcd = this.etcd?.running === true ? ', then etcd' : '';
    if (running.length > 0) notice(`stopping ${running.map((c) => c.name).join(', ')} (SIGTERM; SIGKILL after ${brokerStopGraceMs / 1000} s)${thenEtcd}`);
    const killed = (await Promise.all(brokers.map(async (c) => ((await c.stop(brokerStopGraceMs)) ? c.name : null)))).filter((name) => name !== null);
    if (this.etcd !== null && (await this.etcd.stop(etcdStopGraceMs))) killed.push('etcd');
    if (killed.length > 0 && !this.forced) notice(`${killed.join(', ')} did not stop in time: SIGKILLed`);
    notice(`stopped; the data stays in ${display(this.plan.dataDir)}: run again on it to bring the cluster back`);
  }

  private summary(): string {
    const bootstrap = this.brokers.map((b) => b.address).join(',');
    const header = ['NODE', 'ADDRESS', 'HTTP', 'PID', 'DATA'];
    const rows = this.brokers.map((b) => [String(b.nodeId), b.address, b.http, String(b.child.pid), display(b.dataDir)]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)) + 2);
    const table = [header, ...rows].map((row) => `  ${row.map((cell, i) => cell.padEnd(widths[i]!)).join('').trimEnd()}`);
    const count = this.brokers.length;
    return [
      `rill dev-cluster ready: cluster "${clusterName}", ${count} broker${count === 1 ? '' : 's'}${this.plan.reused ? ', data of an earlier run reused' : ''}`,
      `bootstrap: ${bootstrap}`,
      ...table,
      `etcd: ${this.etcdUrl} (pid ${this.etcd!.pid}, data ${display(path.join(this.plan.dataDir, 'etcd'))})`,
      `Try:  rill topics create orders -p 3 --replication-factor ${Math.min(3, count)} -b ${bootstrap}`,
      `      rill cluster describe -b ${bootstrap}`,
      `Stop: Ctrl-C here (or kill ${process.pid}): the brokers stop gracefully, then etcd; the data stays in ${display(this.plan.dataDir)} for the next run`,
      '',
    ].join('\n');
  }
}

function etcdArgs(dataDir: string, clientPort: number, peerPort: number): string[] {
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  // On a later run etcd takes its membership from dataDir and ignores --initial-*: a single
  // member does not mind that its peer port changed.
  return [
    '--name', clusterName, '--data-dir', dataDir, '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
    '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `${clusterName}=${peer}`,
  ];
}

async function waitForEtcd(clientPort: number, abort: AbortSignal): Promise<void> {
  // Loaded here: `rill broker` loads this module too, and keeps node:http out until HTTP is asked for (broker-footprint.test.ts).
  const http = await import('node:http');
  while (!(await etcdHealthy(http, clientPort))) await sleep(pollIntervalMs, undefined, { signal: abort });
}

function etcdHealthy(http: typeof import('node:http'), port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/health', timeout: 1000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(response.statusCode === 200 && /"health":\s*"true"/.test(body)));
    });
    request.on('error', () => resolve(false));
    request.on('timeout', () => {
      request.destroy();
      resolve(false);
    });
  });
}

/** Until every broker sees exactly `nodeIds` alive and a controller: a topic created then gets its replicas at once. */
async function waitForMembers(addresses: string[], nodeIds: number[], abort: AbortSignal): Promise<void> {
  // Loaded here, not at the top: `rill broker` loads this module too, and must not carry the client.
  const { Admin } = await import('../client/admin.js');
  const want = nodeIds.join();
  const waiting = new Set(addresses);
  const deadlineMs = Date.now() + membersTimeoutMs;
  let last = 'no answer yet';
  for (;;) {
    for (const address of [...waiting]) {
      const admin = new Admin({ bootstrap: address, clientId: 'rill-dev-cluster', connectTimeoutMs: 1000, requestTimeoutMs: 3000 });
      try {
        const description = await admin.describeCluster();
        const alive = description.brokers.filter((b) => b.alive).map((b) => b.nodeId).join();
        if (alive === want && description.controller !== null) waiting.delete(address);
        else last = `${address} sees brokers [${alive}] alive and ${description.controller === null ? 'no controller' : `controller ${description.controller.nodeId}`}`;
      } catch (error) {
        last = `${address}: ${(error as Error).message}`;
      } finally {
        admin.close();
      }
    }
    if (waiting.size === 0) return;
    abort.throwIfAborted();
    if (Date.now() > deadlineMs) throw new StartFailure(`not every broker saw brokers [${want}] registered and a controller within ${membersTimeoutMs / 1000} s; last: ${last}`);
    await sleep(pollIntervalMs, undefined, { signal: abort });
  }
}

async function withDeadline<T>(work: Promise<T>, limitMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new StartFailure(`${what} within ${limitMs / 1000} s`)), limitMs);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** `rill broker` arguments of broker `nodeId` (`address`, `http`: HOST:PORT). */
function brokerArgs(nodeId: number, etcdUrl: string, address: string, http: string, dataDir: string): string[] {
  const port = address.slice(address.lastIndexOf(':') + 1);
  return ['broker', '--node-id', String(nodeId), '--etcd', etcdUrl, '--cluster', clusterName, '--port', port, '--http', http, '--data-dir', dataDir];
}

function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A path as short as it stays unambiguous: relative below the working directory, else absolute. */
function display(file: string): string {
  const relative = path.relative(process.cwd(), file);
  if (relative === '') return '.';
  return relative.startsWith('..') || path.isAbsolute(relative) ? file : relative;
}

const prefixColors = [36, 35, 33, 32, 34, 31];

function prefixOf(name: string, width: number): string {
  const padded = name.padEnd(width);
  const colored = process.stderr.isTTY === true && (process.env.NO_COLOR ?? '') === '';
  if (!colored) return `${padded} | `;
  const nodeId = /^broker-(\d+)$/.exec(name)?.[1];
  const color = nodeId === undefined ? 90 : prefixColors[(Number(nodeId) - 1) % prefixColors.length]!;
  return `\x1b[${color}m${padded}\x1b[0m | `;
}

function notice(message: string): void {
  process.stderr.write(`rill dev-cluster: ${message}\n`);
}
