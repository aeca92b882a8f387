/**
 * Starts a real broker as a child process through the CLI (`node dist/src/cli/main.js broker`),
 * on a fresh data directory and a free port, and waits until it says it is ready.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Admin } from '../../src/client/admin.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(repoRoot, 'dist/src/cli/main.js');

export interface BrokerProcess {
  port: number;
  /** The HTTP listener's port when started with `http` (parsed from `rill http ready on`), else null. */
  httpPort: number | null;
  bootstrap: string;
  dataDir: string;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `rill-${prefix}-`));
}

/**
 * `http`: HOST:PORT for `--http` (e.g. 127.0.0.1:0); the helper then also waits for `rill http ready on`.
 * `port: null`: no --port flag (the test gives --listen or a config file).
 */
export async function startBroker(options: { dataDir?: string; port?: number | null; timeoutMs?: number; http?: string; args?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<BrokerProcess> {
  const dataDir = options.dataDir ?? tempDir('broker');
  const httpArgs = options.http === undefined ? [] : ['--http', options.http];
  const portArgs = options.port === null ? [] : ['--port', String(options.port ?? 0)];
  const child = spawn(process.execPath, [cliPath, 'broker', '--data-dir', dataDir, ...portArgs, ...httpArgs, ...(options.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const [port, httpPort] = await new Promise<[number, number | null]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker did not start within ${options.timeoutMs ?? 20_000} ms:\n${output}`)), options.timeoutMs ?? 20_000);
    const check = (): void => {
      const match = /rill broker ready on [^:\s]+:(\d+)/.exec(output);
      const httpMatch = /rill http ready on [^:\s]+:(\d+)/.exec(output);
      if (match && (options.http === undefined || httpMatch)) {
        clearTimeout(timer);
        resolve([Number(match[1]), httpMatch ? Number(httpMatch[1]) : null]);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code} before it was ready:\n${output}`));
    });
  });
  return {
    port,
    httpPort,
    bootstrap: `127.0.0.1:${port}`,
    dataDir,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs the CLI to completion with optional stdin; returns exit code and output. */
export function runCli(args: string[], input?: string | Buffer, timeoutMs = 120_000, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => stdout.push(c));
    child.stderr.on('data', (c: Buffer) => stderr.push(c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`rill ${args.join(' ')} timed out; stderr: ${Buffer.concat(stderr).toString()}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/** A group's committed offsets by partition (-1n where none), through Admin. */
export async function committedOffsets(bootstrap: string, groupId: string): Promise<Map<number, bigint>> {
  const admin = new Admin({ bootstrap });
  try {
    return new Map((await admin.fetchGroupOffsets(groupId)).map((o) => [o.partition, o.offset]));
  } finally {
    admin.close();
  }
}
