/**
 * A real Rill broker as a separate process (`node dist/src/cli/main.js broker`) on a fresh
 * temporary data directory, for one workload. With a profile directory the broker runs under
 * `node --cpu-prof` and writes its profile when it exits after SIGTERM. With a security setting
 * (lib/security.ts) it speaks TLS and/or requires authentication, and `clientSecurity` holds what
 * a client needs to reach it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrokerSecurity, ClientSecurity } from './security.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const cliPath = path.join(repoRoot, 'dist/src/cli/main.js');

const readyTimeoutMs = 60_000;
const stopTimeoutMs = 30_000;

export interface StartBrokerOptions {
  /** Reuse a data directory (recovery workload); default: a fresh temporary one. */
  dataDir?: string;
  /** Run the broker under `--cpu-prof`, writing the profile into this directory. */
  profileDir?: string | undefined;
  /** Name the profile file gets (without extension). */
  profileName?: string;
  /** TLS and/or SASL (lib/security.ts); default plaintext without authentication. */
  security?: BrokerSecurity | undefined;
  /** Listener port; default 0 (the broker picks one). A cluster broker keeps its port across restarts. */
  port?: number;
  /** More broker flags (a cluster broker's --node-id, --etcd, --cluster, --http off). */
  args?: string[];
  /** The broker's environment; default the bench's (a cluster sets RILL_LEASE_TTL_MS). */
  env?: NodeJS.ProcessEnv;
}

export interface BrokerProcess {
  bootstrap: string;
  /** `tls` and `sasl` client options for this broker (empty when it is plain). */
  clientSecurity: ClientSecurity;
  dataDir: string;
  child: ChildProcess;
  /** performance.now() when spawn was called and when the ready line arrived. */
  spawnedAtMs: number;
  readyAtMs: number;
  output(): string;
  /** SIGTERM, wait for a clean exit (the profile is written then); SIGKILL after `graceMs` (default 30 s). */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL: no clean shutdown, nothing flushed by the broker. */
  kill(): Promise<void>;
  /** Deletes the data directory (after stop or kill). */
  removeData(): void;
}

/** Brokers still running: killed if the bench exits early (a crash must not leave brokers behind). */
const liveBrokers = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveBrokers) child.kill('SIGKILL');
});

export function freshDataDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `rill-bench-${label}-`));
}

export async function startBroker(options: StartBrokerOptions = {}): Promise<BrokerProcess> {
  if (!fs.existsSync(cliPath)) throw new Error(`${cliPath} is missing: run \`npm run build\` first`);
  const dataDir = options.dataDir ?? freshDataDir('broker');
  const nodeArgs: string[] = [];
  if (options.profileDir !== undefined) {
    fs.mkdirSync(options.profileDir, { recursive: true });
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', options.profileDir, '--cpu-prof-name', `${options.profileName ?? 'broker'}.cpuprofile`);
  }
  const security = options.security;
  await security?.prepareDataDir(cliPath, dataDir);
  const spawnedAtMs = performance.now();
  const brokerArgs = ['broker', '--data-dir', dataDir, '--port', String(options.port ?? 0), ...(security?.brokerArgs() ?? []), ...(options.args ?? [])];
  const child = spawn(process.execPath, [...nodeArgs, cliPath, ...brokerArgs], { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
  let output = '';
  const append = (chunk: Buffer): void => {
    output += chunk.toString();
    // Keep only the tail: a chatty broker must not grow the bench's memory.
    if (output.length > 64 * 1024) output = output.slice(-32 * 1024);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  liveBrokers.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    liveBrokers.delete(child);
    resolve();
  }));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`broker did not say it was ready within ${readyTimeoutMs} ms:\n${output}`));
    }, readyTimeoutMs);
    const check = (): void => {
      const match = /rill broker ready on [^:\s]+:(\d+)/.exec(output);
      if (match === null) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      resolve(Number(match[1]));
    };
    child.stdout!.on('data', check);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`broker exited (${code ?? signal}) before it was ready:\n${output}`));
    });
  });
  const readyAtMs = performance.now();
  try {
    await security?.probe(port);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`TLS handshake with the bench broker failed: ${(error as Error).message}`);
  }
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    bootstrap: `127.0.0.1:${port}`,
    clientSecurity: security?.clientOptions() ?? {},
    dataDir,
    child,
    spawnedAtMs,
    readyAtMs,
    output: () => output,
    async stop(graceMs = stopTimeoutMs) {
      if (alive()) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    async kill() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
    removeData() {
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
