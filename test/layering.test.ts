/**
 * The direction of imports (DESIGN.md): lib <- wire <- {storage, coordinator, security, client};
 * storage <- security; {lib, wire, storage} <- cluster; {storage, coordinator, security, cluster, client} <- broker; {broker, client} <- cli. Nothing imports cli; the client
 * ships alone, so it never reaches into storage, coordinator or broker.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/broker-process.js';

const allowed: Record<string, string[]> = {
  lib: ['lib'],
  wire: ['lib', 'wire'],
  storage: ['lib', 'wire', 'storage'],
  coordinator: ['lib', 'wire', 'coordinator'],
  client: ['lib', 'wire', 'client'],
  security: ['lib', 'wire', 'storage', 'security'],
  cluster: ['lib', 'wire', 'storage', 'cluster'],
  // A broker is also a client of the other brokers (replication fetches over Rill's protocol).
  broker: ['lib', 'wire', 'storage', 'coordinator', 'security', 'cluster', 'client', 'broker'],
  cli: ['lib', 'wire', 'broker', 'client', 'cli'],
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(full) : entry.name.endsWith('.ts') ? [full] : [];
  });
}

describe('module layering', () => {
  const srcDir = path.join(repoRoot, 'src');
  const files = sourceFiles(srcDir);

  it('finds the source tree', () => {
    expect(files.length).toBeGreaterThan(20);
  });

  it('every import goes in the allowed direction', () => {
    const violations: string[] = [];
    for (const file of files) {
      const layer = path.relative(srcDir, file).split(path.sep)[0]!;
      const permitted = allowed[layer];
      if (permitted === undefined) {
        violations.push(`${file}: unknown layer ${layer}`);
        continue;
      }
      const text = fs.readFileSync(file, 'utf8');
      for (const match of text.matchAll(/(?:import|export)[^'"]*from\s+'(\.[^']+)'/g)) {
        const target = path.resolve(path.dirname(file), match[1]!);
        const targetLayer = path.relative(srcDir, target).split(path.sep)[0]!;
        if (!permitted.includes(targetLayer)) violations.push(`${path.relative(repoRoot, file)} imports ${targetLayer} (${match[1]})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('only the broker imports prom-client (storage reports through observer callbacks)', () => {
    for (const file of files.filter((f) => !path.relative(srcDir, f).startsWith('broker'))) {
      expect(fs.readFileSync(file, 'utf8'), file).not.toMatch(/from\s+'prom-client'/);
    }
  });

  it('lib imports only node: builtins among packages', () => {
    for (const file of files.filter((f) => path.relative(srcDir, f).startsWith('lib'))) {
      const text = fs.readFileSync(file, 'utf8');
      for (const match of text.matchAll(/from\s+'([^.'][^']*)'/g)) expect(match[1]!.startsWith('node:'), `${file} imports ${match[1]}`).toBe(true);
    }
  });
});
