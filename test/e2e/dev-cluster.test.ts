/**
 * `rill dev-cluster` as a user runs it: one command that starts a real etcd (/usr/bin/etcd, or
 * RILL_TEST_ETCD; the test fails when it is missing, it never skips) and three broker processes,
 * prints where they are, and takes them all down on SIGINT. `--port 0` puts every child on a free
 * port, so the test does not collide with a cluster already running on the defaults.
 * Every wait is on output or a polled condition with a generous deadline; nothing sleeps.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer } from '../../src/client/index.js';
import { runCli, tempDir } from '../helpers/broker-process.js';
import { spawnCli, type CliProcess } from '../helpers/cli-process.js';
import { etcdBinary } from '../helpers/etcd-process.js';

interface Summary {
  bootstrap: string;
  brokers: { nodeId: number; address: string; http: string; pid: number; dataDir: string }[];
  etcd: { url: string; pid: number };
  reused: boolean;
}

const readyTimeoutMs = 120_000;
/** Longer than the command's own SIGKILL fallback (15 s for brokers, then 10 s for etcd). */
const stopTimeoutMs = 40_000;
const running: { cli: CliProcess; dataDir: string; pids: number[] }[] = [];

beforeAll(() => {
  if (!fs.existsSync(etcdBinary)) throw new Error(`${etcdBinary} is missing: this test needs a real etcd (apt-get install -y etcd-server; .ci/run installs it)`);
});

// A failed test must not leave a cluster behind: the command, then every child it printed or recorded.
afterEach(() => {
  for (const { cli, dataDir, pids } of running.splice(0)) {
    if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
    for (const pid of new Set([...pids, ...recordedChildren(dataDir)])) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
});

function recordedChildren(dataDir: string): number[] {
  try {
    const record = JSON.parse(fs.readFileSync(path.join(dataDir, 'dev-cluster.json'), 'utf8')) as { children: { pid: number }[] };
    return record.children.map((c) => c.pid);
  } catch {
    return [];
  }
}

async function startDevCluster(dataDir: string): Promise<{ cli: CliProcess; summary: Summary }> {
  const cli = spawnCli(['dev-cluster', '--brokers', '3', '--data-dir', dataDir, '--port', '0', '--etcd-bin', etcdBinary]);
  const entry = { cli, dataDir, pids: [] as number[] };
  running.push(entry);
  await cli.waitFor('stdout', /^Stop: .*\n/m, readyTimeoutMs);
  const summary = parseSummary(cli.stdout());
  entry.pids.push(summary.etcd.pid, ...summary.brokers.map((b) => b.pid));
  return { cli, summary };
}

function parseSummary(stdout: string): Summary {
  expect(stdout).toMatch(/^rill dev-cluster ready: cluster "dev", 3 brokers/m);
  const bootstrap = /^bootstrap: (\S+)$/m.exec(stdout)?.[1];
  const etcd = /^etcd: (http:\/\/\S+) \(pid (\d+), data \S+\)$/m.exec(stdout);
  const brokers = [...stdout.matchAll(/^ {2}(\d+) +(\S+) +(\S+) +(\d+) +(\S+)$/gm)].map((m) => ({
    nodeId: Number(m[1]), address: m[2]!, http: m[3]!, pid: Number(m[4]), dataDir: m[5]!,
  }));
  expect(bootstrap, stdout).toBeDefined();
  expect(etcd, stdout).not.toBeNull();
  return { bootstrap: bootstrap!, brokers, etcd: { url: etcd![1]!, pid: Number(etcd![2]) }, reused: /data of an earlier run reused/.test(stdout) };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Resolves true when nothing accepts connections on HOST:PORT. */
function portClosed(address: string): Promise<boolean> {
  const at = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = net.connect({ host: address.slice(0, at), port: Number(address.slice(at + 1)) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/** SIGINT: the command exits 0 and takes every child with it, their ports closed. */
async function interruptAndCheckNothingLeft(cli: CliProcess, summary: Summary, dataDir: string): Promise<void> {
  cli.child.kill('SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`still running ${stopTimeoutMs} ms after SIGINT`), stopTimeoutMs)));
  const code = await Promise.race([cli.exited, hung]);
  clearTimeout(timer);
  expect(code, cli.stderr()).toBe(0);
  expect(cli.stderr()).toMatch(/stopped; the data stays in/);
  for (const pid of [summary.etcd.pid, ...summary.brokers.map((b) => b.pid)]) expect(alive(pid), `pid ${pid} still running`).toBe(false);
  for (const address of [summary.etcd.url.replace('http://', ''), ...summary.brokers.flatMap((b) => [b.address, b.http])]) {
    expect(await portClosed(address), `${address} still open`).toBe(true);
  }
  expect(fs.existsSync(path.join(dataDir, 'dev-cluster.json'))).toBe(false);
}

async function readValues(bootstrap: string, topic: string): Promise<string[]> {
  const values: string[] = [];
  const reader = new PartitionReader({ bootstrap, topic, from: 'earliest', stopAtEnd: true, connectTimeoutMs: 2000 });
  for await (const message of reader) values.push(Buffer.from(message.value!).toString());
  return values.sort();
}

/** Polls `probe` until it returns a value (a throw counts as not yet), or fails after `limitMs`. */
async function eventually<T>(what: string, probe: () => Promise<T | undefined>, limitMs = 30_000): Promise<T> {
  const startedMs = Date.now();
  let last = 'nothing yet';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() - startedMs > limitMs) throw new Error(`not within ${limitMs} ms: ${what}; last: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const topic = 'dev-orders';
const values = Array.from({ length: 9 }, (_, n) => `order-${n}`);

describe('rill dev-cluster (real etcd and brokers)', () => {
  it('refuses a missing etcd with the install hint (exit 2), and touches no data directory', async () => {
    const dataDir = path.join(tempDir('dev-cluster-no-etcd'), 'cluster');
    const result = await runCli(['dev-cluster', '--etcd-bin', path.join(path.dirname(dataDir), 'no-etcd'), '--data-dir', dataDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^rill: --etcd-bin \S+no-etcd is not an executable file: install etcd \(Debian\/Ubuntu: sudo apt-get install etcd-server;/);
    expect(fs.existsSync(dataDir)).toBe(false);
    fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
  });

  it('starts etcd and 3 brokers that serve a replicated topic, stops them all on SIGINT; a second run brings the topic back, and a broker killed under it is reported while the others run on', async () => {
    const dataDir = tempDir('dev-cluster');
    const first = await startDevCluster(dataDir);
    expect(first.summary.reused).toBe(false);
    expect(first.summary.brokers.map((b) => b.nodeId)).toEqual([1, 2, 3]);
    expect(first.summary.bootstrap).toBe(first.summary.brokers.map((b) => b.address).join(','));
    expect(first.summary.brokers.map((b) => path.basename(b.dataDir))).toEqual(['broker-1', 'broker-2', 'broker-3']);
    // Each child's output reaches stderr behind its name.
    expect(first.cli.stderr()).toMatch(/^broker-2 \| rill broker ready on /m);

    const admin = new Admin({ bootstrap: first.summary.bootstrap });
    try {
      await admin.createTopics([{ topic, partitions: 3, replicationFactor: 3 }]);
      const description = await admin.describeTopic(topic);
      expect(description.partitions.map((p) => [...p.replicas].sort())).toEqual([[1, 2, 3], [1, 2, 3], [1, 2, 3]]);
    } finally {
      admin.close();
    }
    const producer = new Producer({ bootstrap: first.summary.bootstrap, acks: 'all' });
    try {
      await Promise.all(values.map((value, n) => producer.send({ topic, key: `k${n}`, value })));
    } finally {
      await producer.close();
    }
    expect(await readValues(first.summary.bootstrap, topic)).toEqual(values);
    await interruptAndCheckNothingLeft(first.cli, first.summary, dataDir);

    // Same directory, new ports: the cluster comes back with its topic and records.
    const second = await startDevCluster(dataDir);
    expect(second.summary.reused).toBe(true);
    expect(await eventually('the records of the first run, read through the second', async () => {
      const read = await readValues(second.summary.bootstrap, topic);
      return read.length === values.length ? read : undefined;
    })).toEqual(values);

    // A broker killed on purpose: said which and how; etcd and the other brokers run on and answer.
    const victim = second.summary.brokers[1]!;
    process.kill(victim.pid, 'SIGKILL');
    await second.cli.waitFor('stderr', new RegExp(`^rill dev-cluster: broker-2 \\(pid ${victim.pid}\\) was killed by SIGKILL: the others keep running`, 'm'));
    expect(second.cli.child.exitCode).toBeNull();
    for (const pid of [second.summary.etcd.pid, second.summary.brokers[0]!.pid, second.summary.brokers[2]!.pid]) expect(alive(pid)).toBe(true);
    const survivor = new Admin({ bootstrap: second.summary.brokers[0]!.address });
    try {
      expect((await survivor.describeCluster()).cluster).toBe('dev');
    } finally {
      survivor.close();
    }
    await interruptAndCheckNothingLeft(second.cli, second.summary, dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }, 300_000);
});
