/**
 * A real etcd (Debian's etcd-server, /usr/bin/etcd, v3.4) as a child process for one test file:
 * free ports, a temporary data directory, ready when GET /health answers. Tests that need etcd
 * fail loudly when it is missing (.ci/run installs it): they never skip.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { tempDir } from './broker-process.js';

export const etcdBinary = process.env.RILL_TEST_ETCD ?? '/usr/bin/etcd';

export interface EtcdProcess {
  /** http://127.0.0.1:PORT, for --etcd. */
  url: string;
  clientPort: number;
  dataDir: string;
  child: ChildProcess;
  output(): string;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** Starts etcd again on the same ports and data directory (after kill). */
  restart(): Promise<void>;
  /** SIGTERM (or SIGKILL after 5 s) and remove the data directory. */
  stop(): Promise<void>;
}

/** A TCP port free right now (bound once, then closed). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
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

export async function startEtcd(options: { timeoutMs?: number } = {}): Promise<EtcdProcess> {
  if (!fs.existsSync(etcdBinary)) {
    throw new Error(`${etcdBinary} is missing: these tests need a real etcd (apt-get install -y etcd-server; .ci/run installs it)`);
  }
  const dataDir = path.join(tempDir('etcd'), 'data');
  // Ports picked free, then handed to etcd: a clash with another process in between is possible
  // but rare; the start then fails with etcd's own message.
  const clientPort = await freePort();
  const peerPort = await freePort();
  const args = [
    '--name', 'default', '--data-dir', dataDir,
    '--listen-client-urls', `http://127.0.0.1:${clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${clientPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `default=http://127.0.0.1:${peerPort}`, '--log-level', 'warn',
  ];
  let child: ChildProcess;
  let output = '';
  let exited: Promise<void>;
  const timeoutMs = options.timeoutMs ?? 20_000;

  const launch = async (): Promise<void> => {
    child = spawn(etcdBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const deadlineMs = Date.now() + timeoutMs;
    while (!(await healthy(clientPort))) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`etcd exited (${child.exitCode ?? child.signalCode}) before it was healthy:\n${output}`);
      if (Date.now() > deadlineMs) {
        child.kill('SIGKILL');
        throw new Error(`etcd was not healthy on port ${clientPort} within ${timeoutMs} ms:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  await launch();

  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  return {
    url: `http://127.0.0.1:${clientPort}`,
    clientPort,
    dataDir,
    get child() {
      return child;
    },
    output: () => output,
    kill,
    restart: launch,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
    },
  };
}
