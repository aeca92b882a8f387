/**
 * The prose in protocol/ restates facts that live in code (limits, api keys, error names). These
 * checks make a change on one side without the other fail.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import * as limits from '../../src/lib/limits.js';
import { errorTable } from '../../src/lib/errors.js';
import { ApiKey, apiVersionRanges } from '../../src/wire/apis.js';
import { protocolDir, readProtocolFile } from './helpers.js';

const readme = readProtocolFile('README.md');

function sectionOf(markdown: string, heading: string): string {
  const start = markdown.indexOf(heading);
  expect(start, heading).toBeGreaterThanOrEqual(0);
  const next = markdown.indexOf('\n## ', start + heading.length);
  return markdown.slice(start, next < 0 ? undefined : next);
}

describe('protocol/README.md', () => {
  it('the limits table lists every constant of src/lib/limits.ts with its value, and nothing else', () => {
    const rows = new Map<string, string>();
    for (const match of sectionOf(readme, '## 10. Limits').matchAll(/^\| `(\w+)` \| (\S+) \|/gm)) rows.set(match[1]!, match[2]!);
    const inCode = Object.entries(limits).map(([name, value]) => [name, String(value)]);
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(inCode));
  });

  it('the api key table matches src/wire/apis.ts (keys, names, version ranges)', () => {
    const rows = [...sectionOf(readme, '## 7. API keys').matchAll(/^\| (\d+) \| (\w+) \| ([^|]+) \|/gm)]
      .map((m) => ({ key: Number(m[1]), name: m[2]!, versions: m[3]!.trim() }));
    const expected = Object.entries(ApiKey).map(([name, key]) => {
      const range = apiVersionRanges.get(key);
      return { key, name, versions: range ? `${range[0]}–${range[1]}` : 'reserved' };
    });
    const byKey = (a: { key: number }, b: { key: number }) => a.key - b.key;
    expect(rows.sort(byKey)).toEqual(expected.sort(byKey));
  });

  it('every served API has its page in protocol/apis/', () => {
    const pages = readdirSync(`${protocolDir}apis`);
    for (const [name, key] of Object.entries(ApiKey)) {
      if (!apiVersionRanges.has(key)) continue;
      const file = `${name.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase()}.md`;
      expect(pages, name).toContain(file);
    }
  });
});

describe('protocol/*.md', () => {
  const files = ['README.md', 'record-batch.md', 'log-format.md', ...readdirSync(`${protocolDir}apis`).map((f) => `apis/${f}`)];

  it('every error name written in backticks exists in the registry', () => {
    const known = new Set(Object.keys(errorTable));
    for (const file of files) {
      for (const match of readProtocolFile(file).matchAll(/`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`/g)) {
        expect(known.has(match[1]!), `${file}: ${match[1]}`).toBe(true);
      }
    }
  });

  it('every limit name written in backticks exists in src/lib/limits.ts', () => {
    const known = new Set(Object.keys(limits));
    for (const file of files) {
      for (const match of readProtocolFile(file).matchAll(/`([a-z][A-Za-z]*(?:Max|Min|Bytes|Ratio))`/g)) {
        const name = match[1]!;
        // Field names that happen to end like limits (maxBytes, minBytes, segmentBytes, …) are not limits.
        if (/^(max|min|partitionMax|segment|retention|auth)Bytes$|^batchLength$/.test(name)) continue;
        expect(known.has(name), `${file}: ${name}`).toBe(true);
      }
    }
  });
});
