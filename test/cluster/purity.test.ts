/**
 * The cluster's deterministic cores decide from their inputs and an injected clock: no files,
 * sockets, timers, wall clock or randomness. (The etcd adapter beside them does the I/O.)
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/broker-process.js';

const cores = ['placement.ts', 'controller-logic.ts', 'replica-tracker.ts'];
const forbidden = [/from\s+'node:/, /\bDate\.now\b/, /\bnew Date\b/, /\bMath\.random\b/, /\bset(?:Timeout|Interval|Immediate)\b/, /\bprocess\./];

describe('cluster cores are pure', () => {
  for (const file of cores) {
    it(file, () => {
      const text = fs.readFileSync(path.join(repoRoot, 'src', 'cluster', file), 'utf8');
      for (const pattern of forbidden) expect(text, `${file} matches ${pattern}`).not.toMatch(pattern);
    });
  }
});
