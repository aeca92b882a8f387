/**
 * A real etcd (Debian's etcd-server, /usr/bin/etcd, v3.4) for a cluster workload: client and peer
 * ports picked free, a temporary data directory, ready once GET /health answers true. Stopped with
 * SIGTERM (SIGKILL after a grace period); its data directory is removed then, also after a failed
 * start. Killed with the bench if the bench exits early.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { freshDataDir } from './broker-process.js';

export const etcdBinary = process.env.BENCH_ETCD ?? '/usr/bin/etcd';

const healthTimeoutMs = 20_000;
const healthPollMs = 100;
const stopGraceMs = 5000;

export interface EtcdProcess {
  /** http://127.0.0.1:PORT, for the brokers' --etcd. */
  url: string;
  output(): string;
  /** SIGTERM (SIGKILL after 5 s), wait for the exit, remove the data directory. */
  stop(): Promise<void>;
}

const liveEtcds = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveEtcds) child.kill('SIGKILL');
});

/** A TCP port free right now (bound once, then closed; another process may take it in between, rarely). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/health', timeout: 1000 }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve(response.statusCode === 200 && /"health":\s*"true"/.test(body)));
    });
    request.on('error', () => resolve(false));
    request.on('timeout', () => {
      request.destroy();
      resolve(false);
    });
  });
}

export async function startEtcd(): Promise<EtcdProcess> {
  if (!fs.existsSync(etcdBinary)) {
    throw new Error(`${etcdBinary} is missing: cluster workloads need a real etcd (apt-get install -y etcd-server, or BENCH_ETCD=PATH)`);
  }
  const baseDir = freshDataDir('etcd');
  const dataDir = path.join(baseDir, 'data');
  const clientPort = await freePort();
  const peerPort = await freePort();
  const args = [
    '--name', 'bench', '--data-dir', dataDir,
    '--listen-client-urls', `http://127.0.0.1:${clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${clientPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `bench=http://127.0.0.1:${peerPort}`, '--log-level', 'warn',
  ];
  const child = spawn(etcdBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  liveEtcds.add(child);
  let output = '';
  const append = (chunk: Buffer): void => {
    output += chunk.toString();
    if (output.length > 64 * 1024) output = output.slice(-32 * 1024);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    liveEtcds.delete(child);
    resolve();
  }));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const stop = async (): Promise<void> => {
    if (alive()) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), stopGraceMs);
    await exited;
    clearTimeout(timer);
    fs.rmSync(baseDir, { recursive: true, force: true });
  };
  try {
    const deadlineMs = performance.now() + healthTimeoutMs;
    while (!(await healthy(clientPort))) {
      if (!alive()) throw new Error(`etcd exited (${child.exitCode ?? child.signalCode}) before it was healthy:\n${output}`);
      if (performance.now() > deadlineMs) throw new Error(`etcd was not healthy on port ${clientPort} within ${healthTimeoutMs} ms:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, healthPollMs));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${clientPort}`, output: () => output, stop };
}
