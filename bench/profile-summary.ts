/**
 * Top functions by self time in V8 .cpuprofile files (as written by `node --cpu-prof` or the
 * inspector):  node dist/bench/profile-summary.js FILE.cpuprofile... [--top N]
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

export interface HotSpot {
  function: string;
  location: string;
  selfPercent: number;
}

export function hotSpots(file: string, top: number): { totalMs: number; idlePercent: number; spots: HotSpot[] } {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + (deltas[i + 1] ?? deltas[i] ?? 0));
  const byFunction = new Map<string, { fn: string; location: string; us: number }>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    totalUs += us;
    if (frame.functionName === '(idle)') idleUs += us;
    const location = frame.url === '' ? '' : `${frame.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:')}:${frame.lineNumber + 1}`;
    const key = `${frame.functionName}|${location}`;
    const entry = byFunction.get(key) ?? { fn: frame.functionName || '(anonymous)', location, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
  }
  const busyUs = Math.max(1, totalUs - idleUs);
  const spots = [...byFunction.values()]
    .filter((e) => e.fn !== '(idle)')
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ function: e.fn, location: e.location, selfPercent: Math.round((e.us / busyUs) * 1000) / 10 }));
  return { totalMs: totalUs / 1000, idlePercent: Math.round((idleUs / Math.max(1, totalUs)) * 1000) / 10, spots };
}

function main(argv: string[]): void {
  const topIndex = argv.indexOf('--top');
  const top = topIndex >= 0 ? Number(argv[topIndex + 1]) : 15;
  const files = argv.filter((arg, i) => arg !== '--top' && (topIndex < 0 || i !== topIndex + 1));
  for (const file of files) {
    const { totalMs, idlePercent, spots } = hotSpots(file, top);
    process.stdout.write(`\n${path.basename(file)}: ${(totalMs / 1000).toFixed(1)} s sampled, ${idlePercent}% idle; self time as % of busy time:\n`);
    for (const s of spots) process.stdout.write(`  ${s.selfPercent.toFixed(1).padStart(5)}%  ${s.function}  ${s.location}\n`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
