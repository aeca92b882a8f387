/**
 * The console's static files (console/index.html, console.css, console.js), read once at start.
 *
 * They are plain files in the source tree, edited as HTML/CSS/JS. tsc does not copy them into
 * dist/, so at run time they are looked up first next to this module (running from src/, or a
 * build that copied them) and then in the source tree relative to the compiled module
 * (dist/src/broker/http -> ../../../../src/broker/http/console), which exists in a checkout and
 * after `npm install` of the repository (`prepare` builds dist/ beside src/). Missing files
 * leave the console out (404, one warning); /metrics and the rest work regardless.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { httpAssetBytesMax } from './limits.js';

export interface Asset {
  contentType: string;
  body: Buffer;
}

/** Served files, by URL path; nothing outside this list is ever read. */
const assetFiles: ReadonlyMap<string, { file: string; contentType: string }> = new Map([
  ['/index.html', { file: 'index.html', contentType: 'text/html; charset=utf-8' }],
  ['/console.css', { file: 'console.css', contentType: 'text/css; charset=utf-8' }],
  ['/console.js', { file: 'console.js', contentType: 'text/javascript; charset=utf-8' }],
]);

const moduleDir = path.dirname(fileURLToPath(import.meta.url));

export function consoleDirCandidates(): string[] {
  return [path.join(moduleDir, 'console'), path.resolve(moduleDir, '../../../../src/broker/http/console')];
}

export function consoleAssets(warn: (message: string) => void): Map<string, Asset> {
  const dir = consoleDirCandidates().find((candidate) => fs.existsSync(path.join(candidate, 'index.html')));
  const assets = new Map<string, Asset>();
  if (dir === undefined) {
    warn(`console files not found (looked in ${consoleDirCandidates().join(', ')}); / answers 404`);
    return assets;
  }
  for (const [urlPath, { file, contentType }] of assetFiles) {
    const full = path.join(dir, file);
    try {
      if (fs.statSync(full).size > httpAssetBytesMax) throw new Error(`larger than ${httpAssetBytesMax} bytes`);
      assets.set(urlPath, { contentType, body: fs.readFileSync(full) });
    } catch (error) {
      warn(`console file ${full} not served: ${(error as Error).message}`);
    }
  }
  return assets;
}
