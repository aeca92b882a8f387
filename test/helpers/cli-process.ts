/**
 * A long-running `rill` child (consume, produce) whose output a test waits on: `waitFor` resolves
 * when a pattern appears on stdout or stderr, so tests wait on events, never on sleeps.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import net from 'node:net';
import { cliPath } from './broker-process.js';

export interface CliProcess {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** Resolves when `pattern` matches the stream's text so far (or later); rejects after timeoutMs. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
}

export function spawnCli(args: string[]): CliProcess {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const text = { stdout: '', stderr: '' };
  const waiters: (() => void)[] = [];
  const wake = (): void => {
    for (const waiter of [...waiters]) waiter();
  };
  child.stdout.on('data', (chunk: Buffer) => {
    text.stdout += chunk.toString();
    wake();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    text.stderr += chunk.toString();
    wake();
  });
  child.stdout.on('error', () => undefined);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    wake();
    resolve(code);
  }));
  return {
    child,
    stdout: () => text.stdout,
    stderr: () => text.stderr,
    exited,
    waitFor(stream, pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const match = pattern.exec(text[stream]);
          if (match !== null) {
            done();
            resolve(match);
          } else if (child.exitCode !== null) {
            done();
            reject(new Error(`rill ${args.join(' ')} exited (${child.exitCode}) before ${stream} matched ${pattern}\nstdout: ${text.stdout}\nstderr: ${text.stderr}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${stream} of rill ${args.join(' ')} did not match ${pattern} within ${timeoutMs} ms\nstdout: ${text.stdout}\nstderr: ${text.stderr}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          const at = waiters.indexOf(check);
          if (at >= 0) waiters.splice(at, 1);
        };
        waiters.push(check);
        check();
      });
    },
  };
}

/** A port nothing listens on (bound once, then closed). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
