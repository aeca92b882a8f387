/** The package version, read once from package.json (src/broker or dist/src/broker -> repo root). */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null = null;

export function brokerVersion(): string {
  if (cached !== null) return cached;
  const dir = path.dirname(fileURLToPath(import.meta.url));
  cached = 'unknown';
  for (const candidate of [path.resolve(dir, '../../package.json'), path.resolve(dir, '../../../package.json')]) {
    try {
      const parsed = JSON.parse(fs.readFileSync(candidate, 'utf8')) as { name?: unknown; version?: unknown };
      if (parsed.name === 'rill' && typeof parsed.version === 'string') {
        cached = parsed.version;
        break;
      }
    } catch {
      // Not there: try the next candidate.
    }
  }
  return cached;
}
