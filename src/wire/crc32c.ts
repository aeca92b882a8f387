/**
 * CRC-32C (Castagnoli) through fast-crc32c. Its native addon (SSE4.2) runs at several GB/s; if
 * the addon failed to build it silently falls back to JavaScript at a few hundred MB/s, so we
 * report which implementation loaded.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface Crc32cImpl {
  calculate(input: Uint8Array | string, initial?: number): number;
}

function load(): { impl: Crc32cImpl; name: 'sse4.2-native' | 'javascript' } {
  try {
    const native = require('fast-crc32c/impls/sse4_crc32c') as Crc32cImpl;
    if (native.calculate('123456789') === 0xe3069283) return { impl: native, name: 'sse4.2-native' };
  } catch {
    // Fall through to the JavaScript implementation.
  }
  return { impl: require('fast-crc32c/impls/js_crc32c') as Crc32cImpl, name: 'javascript' };
}

const loaded = load();

/** Which CRC-32C implementation is in use: the broker logs it, the bench records it. */
export const crc32cImplementation = loaded.name;

export function crc32c(bytes: Uint8Array): number {
  return loaded.impl.calculate(bytes) >>> 0;
}
