/**
 * The broker's CPU cost per million produced records, to compare builds (with and without the
 * metrics instrumentation). Starts `node dist/src/cli/main.js broker` on a fresh directory, creates
 * a topic of 8 partitions, produces RECORDS records of 100 B (acks 1, 4 producers, window 16,384)
 * and reads the broker's utime+stime from /proc/<pid>/stat just before and just after the load.
 *
 *   node dist/bench/metrics-overhead.js [--records N] [--runs N] [--http | --http-off] [--scrape-ms N] [--cpu-prof DIR] [--node-arg FLAG]...
 *
 * Without --http or --http-off the broker runs with its defaults: the HTTP listener is on (port 0,
 * as --port is 0) and never requested, as in `npm run bench`. --http-off passes `--http off`.
 * --http starts the HTTP listener (`--http 127.0.0.1:0`) and GETs /metrics once before measuring
 * (the first request compiles the HTTP and exposition code: ~tens of ms, once per process), as a
 * Prometheus server that scrapes the broker would have;
 * --scrape-ms GETs /metrics that often during the load from a separate process, as a Prometheus
 * server would (the broker's side of it counts in the figure).
 * --cpu-prof DIR runs the broker under `node --cpu-prof` (see bench/profile-summary.ts).
 * Linux only (/proc). Not part of `npm run bench`: a tool for one question. Single runs vary by
 * ±15% on a shared machine: compare builds with bench/metrics-overhead-series.sh (rotating order,
 * medians).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { closeAll, createTopic, produceLoad } from './rill/produce.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cliPath = path.join(repoRoot, 'dist/src/cli/main.js');
/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat (100 on Linux). */
const clockTicksPerSecond = 100;

interface Options {
  records: number;
  runs: number;
  http: boolean;
  httpOff: boolean;
  scrapeMs: number;
  profileDir: string | null;
  nodeArgs: string[];
}

function parseArgs(argv: string[]): Options {
  const options: Options = { records: 2_000_000, runs: 3, http: false, httpOff: false, scrapeMs: 0, profileDir: null, nodeArgs: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--http') options.http = true;
    else if (arg === '--http-off') options.httpOff = true;
    else if (arg === '--records') options.records = Number(argv[++i]);
    else if (arg === '--runs') options.runs = Number(argv[++i]);
    else if (arg === '--scrape-ms') options.scrapeMs = Number(argv[++i]);
    else if (arg === '--cpu-prof') options.profileDir = argv[++i]!;
    else if (arg === '--node-arg') options.nodeArgs.push(argv[++i]!);
    else throw new Error(`unknown argument ${arg}`);
  }
  if (options.http && options.httpOff) throw new Error('--http and --http-off exclude each other');
  if (options.scrapeMs > 0 && !options.http) throw new Error('--scrape-ms needs --http');
  return options;
}

function statSeconds(file: string): number {
  const stat = fs.readFileSync(file, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
}

function cpuSeconds(pid: number): number {
  return statSeconds(`/proc/${pid}/stat`);
}

/** CPU of the main (JavaScript) thread alone: the rest is GC helpers, libuv's pool, the platform. */
function mainThreadSeconds(pid: number): number {
  return statSeconds(`/proc/${pid}/task/${pid}/stat`);
}

interface Started {
  child: ChildProcess;
  port: number;
  httpPort: number | null;
  dataDir: string;
}

async function start(withHttp: boolean, httpOff: boolean, profileDir: string | null, nodeArgs: string[]): Promise<Started> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rill-overhead-'));
  const args = [...nodeArgs, ...(profileDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]), cliPath, 'broker', '--data-dir', dataDir, '--port', '0', ...(withHttp ? ['--http', '127.0.0.1:0'] : httpOff ? ['--http', 'off'] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  const ready = await new Promise<{ port: number; httpPort: number | null }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`broker exited with ${code}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const port = /rill broker ready on [^:\s]+:(\d+)/.exec(output);
      const httpPort = /rill http ready on [^:\s]+:(\d+)/.exec(output);
      if (port !== null && (!withHttp || httpPort !== null)) resolve({ port: Number(port[1]), httpPort: httpPort === null ? null : Number(httpPort[1]) });
    });
  });
  return { child, dataDir, ...ready };
}

/**
 * Scrapes from a separate process, as Prometheus would: scraping from the bench process took CPU
 * from the producers, changed how they batch, and so changed the broker's work per record.
 */
const scraperSource = `
const http = require('node:http');
const [port, intervalMs] = process.argv.slice(1).map(Number);
let scrapes = 0;
setInterval(() => http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (response) => {
  response.resume();
  response.on('end', () => scrapes++);
}), intervalMs);
process.on('SIGTERM', () => { process.stdout.write(String(scrapes)); process.exit(0); });
`;

/** One GET /metrics before measuring: the first request compiles the HTTP and exposition code paths. */
function warmUp(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (response) => {
      response.resume();
      response.on('end', () => resolve());
    }).on('error', reject);
  });
}

function startScraper(port: number, intervalMs: number): { stop(): Promise<number> } {
  const child = spawn(process.execPath, ['-e', scraperSource, String(port), String(intervalMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    async stop() {
      child.kill('SIGTERM');
      await exited;
      return Number(output);
    },
  };
}

async function run(options: Options, index: number): Promise<number> {
  const broker = await start(options.http, options.httpOff, options.profileDir, options.nodeArgs);
  const bootstrap = `127.0.0.1:${broker.port}`;
  try {
    await createTopic(bootstrap, 'overhead', 8);
    let scrapes = 0;
    if (options.http) await warmUp(broker.httpPort!);
    const scraper = options.scrapeMs > 0 ? startScraper(broker.httpPort!, options.scrapeMs) : null;
    const before = cpuSeconds(broker.child.pid!);
    const mainBefore = mainThreadSeconds(broker.child.pid!);
    const startedMs = performance.now();
    const figures = await produceLoad({
      bootstrap, topic: 'overhead', messageSize: 100, producers: 4, acks: 1, windowRecords: 16_384,
      producerOptions: {}, durationMs: 600_000, records: options.records, label: `run ${index}`,
    }, 0);
    const seconds = (performance.now() - startedMs) / 1000;
    const used = cpuSeconds(broker.child.pid!) - before;
    const mainUsed = mainThreadSeconds(broker.child.pid!) - mainBefore;
    if (scraper !== null) scrapes = await scraper.stop();
    await closeAll(figures.producers);
    if (figures.failed > 0) throw new Error(`${figures.failed} sends failed: ${figures.firstError}`);
    const perMillion = used / (figures.acked / 1e6);
    process.stdout.write(`run ${index}: ${figures.acked} records in ${seconds.toFixed(2)} s, broker CPU ${used.toFixed(2)} s = ${perMillion.toFixed(3)} CPU-s per million records (main thread ${(mainUsed / (figures.acked / 1e6)).toFixed(3)})${scraper !== null ? `, ${scrapes} scrapes` : ''}\n`);
    return perMillion;
  } finally {
    broker.child.kill('SIGTERM');
    await new Promise((resolve) => broker.child.once('exit', resolve));
    fs.rmSync(broker.dataDir, { recursive: true, force: true });
  }
}

const options = parseArgs(process.argv.slice(2));
const results: number[] = [];
for (let i = 1; i <= options.runs; i++) results.push(await run(options, i));
results.sort((a, b) => a - b);
process.stdout.write(`median ${results[Math.floor(results.length / 2)]!.toFixed(3)} CPU-s per million records (min ${results[0]!.toFixed(3)}, max ${results.at(-1)!.toFixed(3)})\n`);
