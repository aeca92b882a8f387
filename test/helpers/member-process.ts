/**
 * Runs test/helpers/group-member.ts as a child process and collects the JSON lines it prints.
 * The script is transpiled once into dist/test/helpers/, next to the compiled client it imports
 * (the global setup has built dist/ before any test runs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { repoRoot } from './broker-process.js';
import type { MemberConfig } from './group-member.js';

export type { MemberConfig } from './group-member.js';

export interface MemberEvent {
  e: 'joined' | 'assigned' | 'revoked' | 'lost' | 'rec' | 'blocked' | 'error' | 'closed';
  t: number;
  tps?: [string, number][];
  p?: number;
  o?: number;
  k?: string | null;
  m?: string;
}

export interface MemberProcess {
  name: string;
  child: ChildProcess;
  events: MemberEvent[];
  stderr: () => string;
  /** Partitions it owns now, from its assigned / revoked / lost events. */
  owned(): Set<number>;
  waitFor(predicate: (events: MemberEvent[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** SIGTERM (the member closes gracefully) and wait for exit. */
  terminate(): Promise<number | null>;
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

let compiled: string | null = null;

export function compileMemberScript(): string {
  if (compiled !== null) return compiled;
  const source = path.join(repoRoot, 'test/helpers/group-member.ts');
  const output = ts.transpileModule(fs.readFileSync(source, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    fileName: source,
  });
  const target = path.join(repoRoot, 'dist/test/helpers/group-member.js');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, output.outputText);
  compiled = target;
  return target;
}

export async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function startMember(name: string, config: MemberConfig): MemberProcess {
  const script = compileMemberScript();
  const child = spawn(process.execPath, [script, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: MemberEvent[] = [];
  let partial = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) if (line.length > 0) events.push(JSON.parse(line) as MemberEvent);
  });
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    name,
    child,
    events,
    stderr: () => stderr,
    exited,
    owned() {
      const owned = new Set<number>();
      for (const event of events) {
        if (event.e === 'assigned') for (const [, p] of event.tps!) owned.add(p);
        if (event.e === 'revoked' || event.e === 'lost') for (const [, p] of event.tps!) owned.delete(p);
      }
      return owned;
    },
    async waitFor(predicate, timeoutMs = 20_000, what = 'a condition') {
      await waitUntil(() => predicate(events) || !alive(), timeoutMs, `${name}: ${what}`);
      if (!predicate(events)) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before ${what}; stderr: ${stderr}`);
    },
    async terminate() {
      if (alive()) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
  };
}
