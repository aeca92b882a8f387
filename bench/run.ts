/**
 * `npm run bench`: runs the workloads in bench/workloads/ against real broker processes, prints
 * progress (stderr) and a table (stdout), and writes every setting and figure to
 * bench/results/<timestamp>.json (and --json PATH).
 *
 *   npm run bench -- [--quick] [--workload NAME[,NAME...]] [--peers] [--json PATH] [--profile] [--list]
 */
import fs from 'node:fs';
import path from 'node:path';
import { Session } from 'node:inspector/promises';
import { repoRoot, startBroker } from './lib/broker-process.js';
import type { Outcome, PeerResult, RunContext, TargetCheck, WorkloadResult } from './lib/context.js';
import { machineInfo } from './lib/machine.js';
import { formatRate, log } from './lib/progress.js';
import { loadWorkloads, type Workload } from './lib/workload.js';
import { reachablePeers, runPeers } from './peers/run-peers.js';
import type { Peer } from './peers/peer.js';
import { hotSpots } from './profile-summary.js';
import { runClusterProduce } from './rill/cluster.js';
import { runClusterFailover } from './rill/cluster-failover.js';
import { runConsume } from './rill/consume.js';
import { GroupSkipped, runGroup } from './rill/group.js';
import { runEndToEnd, runSendLatency } from './rill/latency.js';
import { runProduce } from './rill/produce.js';
import { runRecovery } from './rill/recovery.js';
import { runSecureComparison } from './rill/secure.js';

interface Options {
  quick: boolean;
  peers: boolean;
  profile: boolean;
  list: boolean;
  workloads: string[];
  jsonPath: string | null;
}

const usage = `usage: npm run bench -- [--quick] [--workload NAME[,NAME...]] [--peers] [--json PATH] [--profile] [--list]
  --quick      shorter durations and smaller backlogs (under a minute)
  --workload   run only the named workload(s) (see --list; the file name without .json works too)
  --peers      also run produce, consume and latency against Redis Streams, NATS JetStream and
               RabbitMQ Streams when their servers are reachable (skipped with a line otherwise)
  --json PATH  also write the results JSON to PATH
  --profile    CPU-profile the broker (node --cpu-prof) and the bench client per workload, into
               bench/results/profiles-<timestamp>/, and print the top functions
  --list       list the workloads and exit
`;

function parseArgs(argv: string[]): Options {
  const options: Options = { quick: false, peers: false, profile: false, list: false, workloads: [], jsonPath: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') options.quick = true;
    else if (arg === '--peers') options.peers = true;
    else if (arg === '--profile') options.profile = true;
    else if (arg === '--list') options.list = true;
    else if (arg === '--workload' || arg === '--json') {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${arg} needs a value\n${usage}`);
      if (arg === '--workload') options.workloads.push(...value.split(','));
      else options.jsonPath = value;
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(usage);
      process.exit(0);
    } else throw new Error(`unknown argument "${arg}"\n${usage}`);
  }
  return options;
}

const runners: Record<Workload['kind'], (w: Workload, ctx: RunContext) => Promise<Outcome>> = {
  produce: runProduce,
  consume: runConsume,
  'e2e-latency': runEndToEnd,
  'send-latency': runSendLatency,
  group: runGroup,
  recovery: runRecovery,
  'cluster-produce': runClusterProduce,
  'cluster-failover': runClusterFailover,
};

function checkTargets(workload: Workload, metrics: Outcome['metrics']): TargetCheck[] {
  return workload.targets.map((target) => {
    const raw = metrics[target.metric];
    const value = typeof raw === 'number' && Number.isFinite(raw) ? raw : null;
    const met = value === null ? null : (target.min === undefined || value >= target.min) && (target.max === undefined || value <= target.max);
    return { metric: target.metric, label: target.label, value, met };
  });
}

class ClientProfiler {
  private session: Session | null = null;
  private running = false;

  constructor(private readonly dir: string | null) {}

  async start(): Promise<void> {
    if (this.dir === null || this.running) return;
    if (this.session === null) {
      this.session = new Session();
      this.session.connect();
      await this.session.post('Profiler.enable');
    }
    await this.session.post('Profiler.start');
    this.running = true;
  }

  async stop(name: string): Promise<string | null> {
    if (this.dir === null || this.session === null || !this.running) return null;
    this.running = false;
    const { profile } = await this.session.post('Profiler.stop');
    const file = path.join(this.dir, `${name}-client.cpuprofile`);
    fs.writeFileSync(file, JSON.stringify(profile));
    return file;
  }
}

async function runWorkload(workload: Workload, options: Options, peers: Peer[], profileDir: string | null, profiler: ClientProfiler): Promise<WorkloadResult> {
  const startedAt = new Date().toISOString();
  const startMs = performance.now();
  let brokers = 0;
  const ctx: RunContext = {
    quick: options.quick,
    profiling: profileDir !== null,
    startBroker: ({ label, ...o } = {}) => startBroker({ ...o, profileDir: profileDir ?? undefined, profileName: `${workload.name}-broker-${label ?? ++brokers}` }),
    clientProfile: { start: () => profiler.start(), stop: async (label) => void (await profiler.stop(label === undefined ? workload.name : `${workload.name}-${label}`)) },
  };
  const base = { name: workload.name, kind: workload.kind, startedAt, settings: workload, peers: [] as PeerResult[] };
  log(`\n== ${workload.name}: ${workload.description}`);
  try {
    // A workload with TLS/SASL is measured plain and secure, back to back (rill/secure.ts).
    const runner = runners[workload.kind];
    const outcome = workload.security === null ? await runner(workload, ctx) : await runSecureComparison(workload, ctx, runner);
    await profiler.stop(workload.name);
    const targets = checkTargets(workload, outcome.metrics);
    log(`  => ${outcome.summary}`);
    const result: WorkloadResult = { ...base, status: 'ok', elapsedSeconds: (performance.now() - startMs) / 1000, metrics: outcome.metrics, summary: outcome.summary, targets };
    if (options.peers && workload.peers) result.peers = await runPeers(peers, workload, outcome.metrics);
    return result;
  } catch (error) {
    await profiler.stop(workload.name);
    const skipped = error instanceof GroupSkipped;
    const reason = error instanceof Error ? error.message : String(error);
    log(`  ${skipped ? 'skipped' : 'FAILED'} ${workload.name}: ${reason}`);
    return { ...base, status: skipped ? 'skipped' : 'failed', reason, elapsedSeconds: (performance.now() - startMs) / 1000, metrics: {}, summary: `${skipped ? 'skipped' : 'FAILED'}: ${reason}`, targets: checkTargets(workload, {}) };
  }
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

function printTable(results: WorkloadResult[]): void {
  const rows: string[][] = [['workload', 'result', 'target', 'met']];
  for (const r of results) {
    const checks = r.targets.length > 0 ? r.targets : [null];
    checks.forEach((check, i) => {
      const verdict = check === null ? '' : check.met === null ? 'n/a' : check.met ? 'met' : 'MISSED';
      rows.push([i === 0 ? r.name : '', i === 0 ? r.summary : '', check === null ? '-' : `${check.label}`, verdict]);
    });
  }
  printRows('Results', rows);
  const peerRows: string[][] = [['workload', 'peer', 'peer figure', 'Rill ratio', 'target (>= 10x / lower p99)']];
  for (const r of results) {
    for (const p of r.peers) {
      const goal = r.kind === 'e2e-latency' ? 1 : 10;
      const verdict = p.rillRatio === null ? '' : p.rillRatio >= goal && r.kind !== 'e2e-latency' || r.kind === 'e2e-latency' && p.rillRatio > 1 ? 'met' : 'MISSED';
      peerRows.push([r.name, p.peer, p.summary, p.rillRatio === null ? '-' : `${p.rillRatio.toFixed(2)}x`, verdict]);
    }
  }
  if (peerRows.length > 1) printRows('Peers (same run)', peerRows);
  const securityRows: string[][] = [['workload', 'security', 'plain records/s', 'secure records/s', 'secure / plain']];
  for (const r of results) {
    const m = r.metrics;
    if (r.status !== 'ok' || typeof m.plainRecordsPerSecond !== 'number' || typeof m.recordsPerSecond !== 'number') continue;
    const setup = `${String(m.security)}${typeof m.tlsCipher === 'string' ? ` (${String(m.tlsProtocol)} ${m.tlsCipher})` : ''}`;
    securityRows.push([r.name, setup, formatRate(m.plainRecordsPerSecond), formatRate(m.recordsPerSecond), typeof m.ratioToPlain === 'number' ? m.ratioToPlain.toFixed(2) : '-']);
  }
  if (securityRows.length > 1) printRows('Security: the same load plain and secure (same run)', securityRows);
}

function printRows(title: string, rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.min(100, Math.max(...rows.map((row) => row[c]!.length))));
  process.stdout.write(`\n${title}\n`);
  rows.forEach((row, i) => {
    process.stdout.write(`${row.map((cell, c) => pad(cell, widths[c]!)).join(' | ')}\n`);
    if (i === 0) process.stdout.write(`${widths.map((w) => '-'.repeat(w)).join('-|-')}\n`);
  });
}

function printProfiles(dir: string): Record<string, unknown> {
  const summaries: Record<string, unknown> = {};
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  process.stdout.write(`\nCPU profiles in ${path.relative(process.cwd(), dir)} (top functions by self time, % of busy time):\n`);
  for (const file of files) {
    try {
      const summary = hotSpots(path.join(dir, file), 8);
      summaries[file] = summary;
      process.stdout.write(`  ${file} (${(summary.totalMs / 1000).toFixed(1)} s, ${summary.idlePercent}% idle)\n`);
      for (const s of summary.spots) process.stdout.write(`    ${s.selfPercent.toFixed(1).padStart(5)}%  ${s.function}  ${s.location}\n`);
    } catch (error) {
      process.stdout.write(`  ${file}: unreadable (${(error as Error).message})\n`);
    }
  }
  return summaries;
}

/** Client bugs (a rejection nobody awaits) are counted and reported instead of ending the run. */
const unhandledRejections: string[] = [];
process.on('uncaughtException', (error) => {
  process.stderr.write(`bench: uncaught exception (a client library threw outside any request): ${error.stack ?? error.message}\n`);
  process.exit(2);
});
process.on('unhandledRejection', (reason) => {
  const text = reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason);
  if (unhandledRejections.length < 20) unhandledRejections.push(text);
  log(`  warning: unhandled promise rejection in the client: ${text}`);
});

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  let workloads = loadWorkloads(options.quick);
  if (options.list) {
    for (const w of workloads) process.stdout.write(`${pad(w.name, 32)} ${w.kind.padEnd(16)} ${w.description}\n`);
    return;
  }
  if (options.workloads.length > 0) {
    // A workload is named by its name or its file's (`cluster-failover` or `16-cluster-failover`).
    const named = (w: Workload, name: string): boolean => w.name === name || w.file === name;
    const unknown = options.workloads.filter((name) => !workloads.some((w) => named(w, name)));
    if (unknown.length > 0) throw new Error(`unknown workload ${unknown.join(', ')}; known: ${workloads.map((w) => w.name).join(', ')}`);
    workloads = workloads.filter((w) => options.workloads.some((name) => named(w, name)));
  }
  const timestamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = path.join(repoRoot, 'bench/results');
  const profileDir = options.profile ? path.join(resultsDir, `profiles-${timestamp}`) : null;
  const machine = machineInfo();
  log(`rill bench${options.quick ? ' --quick' : ''}: ${workloads.length} workload(s) on ${machine.cpuModel}, ${machine.cores} cores, ${(machine.memoryBytes / 1024 ** 3).toFixed(0)} GiB, Node ${machine.nodeVersion}, CRC-32C ${machine.crc32cImplementation}`);
  if (machine.crc32cImplementation !== 'sse4.2-native') log('warning: the native CRC-32C addon is not loaded; produce and fetch validation run at JavaScript speed');
  const { peers, skipped } = options.peers ? await reachablePeers() : { peers: [], skipped: [] };
  const profiler = new ClientProfiler(profileDir);
  if (profileDir !== null) fs.mkdirSync(profileDir, { recursive: true });
  const startedAt = new Date().toISOString();
  const startMs = performance.now();
  const results: WorkloadResult[] = [];
  for (const workload of workloads) results.push(await runWorkload(workload, options, peers, profileDir, profiler));
  const elapsedSeconds = (performance.now() - startMs) / 1000;
  printTable(results);
  for (const s of skipped) process.stdout.write(`skipped ${s.peer}: ${s.reason}\n`);
  const profiles = profileDir === null ? null : printProfiles(profileDir);
  const report = {
    rillVersion: (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version,
    startedAt,
    elapsedSeconds: Math.round(elapsedSeconds * 10) / 10,
    argv: process.argv.slice(2),
    mode: options.quick ? 'quick' : 'default',
    machine: { ...machine, loadAverageAtEnd: (await import('node:os')).loadavg() },
    peersSkipped: skipped,
    profiles,
    unhandledRejections,
    results,
  };
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${timestamp}.json`);
  const json = `${JSON.stringify(report, null, 2)}\n`;
  fs.writeFileSync(file, json);
  if (options.jsonPath !== null) fs.writeFileSync(options.jsonPath, json);
  process.stdout.write(`\n${results.length} workloads in ${elapsedSeconds.toFixed(0)} s; results: ${path.relative(process.cwd(), file)}${options.jsonPath === null ? '' : ` and ${options.jsonPath}`}\n`);
  if (results.some((r) => r.status === 'failed')) process.exitCode = 1;
}

main().then(
  () => setTimeout(() => process.exit(), 200).unref(),
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  },
);
