/**
 * Shared by the wire tests: loading protocol/ files, the value forms the vectors use, and a
 * check that something fails only with DecodeError.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import fc from 'fast-check';
import { DecodeError, type ErrorName } from '../../src/lib/errors.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';

export const protocolDir = fileURLToPath(new URL('../../protocol/', import.meta.url));

export function readProtocolFile(relativePath: string): string {
  return readFileSync(protocolDir + relativePath, 'utf8');
}

export function readProtocolJson<T>(relativePath: string): T {
  return JSON.parse(readProtocolFile(relativePath)) as T;
}

export function hex(value: string): Buffer {
  return Buffer.from(value, 'hex');
}

/** How vectors write keys, values and header values. */
export type VectorBytes = { utf8: string } | { hex: string } | null;

export function vectorBytes(value: VectorBytes): Buffer | null {
  if (value === null) return null;
  return 'utf8' in value ? Buffer.from(value.utf8, 'utf8') : Buffer.from(value.hex, 'hex');
}

/** Vector JSON -> MessagePack value: {"$int64": "n"} becomes a bigint (written as int64). */
export function toWireValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toWireValue);
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    if (typeof obj.$int64 === 'string' && Object.keys(obj).length === 1) return BigInt(obj.$int64);
    if (typeof obj.$bin === 'string' && Object.keys(obj).length === 1) return Buffer.from(obj.$bin, 'hex');
    return Object.fromEntries(Object.entries(obj).map(([key, inner]) => [key, toWireValue(inner)]));
  }
  return value;
}

/** Decoded MessagePack value -> vector JSON form (bigint -> {"$int64": "n"}). */
export function fromWireValue(value: unknown): unknown {
  if (typeof value === 'bigint') return { $int64: value.toString() };
  if (value instanceof Uint8Array) return { $bin: Buffer.from(value).toString('hex') };
  if (Array.isArray(value)) return value.map(fromWireValue);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([key, inner]) => [key, fromWireValue(inner)]));
  }
  return value;
}

/** Runs `fn`; returns the DecodeError code it threw, or null. Anything else fails the test. */
export function decodeErrorOf(fn: () => unknown): ErrorName | null {
  try {
    fn();
    return null;
  } catch (error) {
    if (!(error instanceof DecodeError)) {
      throw new Error(`expected only DecodeError, got ${(error as Error)?.name}: ${(error as Error)?.message}`, { cause: error });
    }
    return error.code;
  }
}

export function expectDecodeError(fn: () => unknown, code: ErrorName): void {
  expect(decodeErrorOf(fn)).toBe(code);
}

// ---- byte mutations for fuzz-style properties -----------------------------------------------


export type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0x00, 0x01, 0x7f, 0x80, 0xff, 0x0f, 0x10) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);

export const mutationsArb = fc.array(mutationArb, { minLength: 1, maxLength: 4 });

/** Applies mutations at positions within [from, length) (positions wrap); returns a new buffer. */
export function mutate(input: Buffer, mutations: Mutation[], from = 0): Buffer {
  let bytes = Buffer.from(input);
  for (const m of mutations) {
    const span = bytes.length - from;
    const at = span > 0 ? from + (m.at % span) : bytes.length;
    switch (m.kind) {
      case 'flip':
        if (at < bytes.length) bytes[at]! ^= 1 << m.bit;
        break;
      case 'set':
        if (at < bytes.length) bytes[at] = m.value;
        break;
      case 'insert':
        bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
        break;
      case 'delete':
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.count)]);
        break;
      case 'truncate':
        bytes = bytes.subarray(0, at);
        break;
    }
  }
  return bytes;
}

/** A MessagePack body, its decoder, and the code its decoder must fail with. */
export type BodySample = [value: unknown, decode: (value: unknown) => unknown, code: 'MALFORMED_REQUEST' | 'MALFORMED_RESPONSE'];

/** Mutated encodings of the samples decode, or fail only with DecodeError of the sample's code. */
export function checkMutatedBodies(samples: readonly BodySample[], numRuns: number): void {
  fc.assert(fc.property(fc.integer({ min: 0, max: samples.length - 1 }), mutationsArb, (index, mutations) => {
    const [value, decode, code] = samples[index]!;
    const result = decodeErrorOf(() => decode(decodeMsgpack(mutate(encodeMsgpack(value), mutations), code)));
    if (result !== null) expect(result).toBe(code);
  }), { numRuns });
}

/** Any MessagePack value given to the samples' decoders decodes, or fails only with DecodeError of the decoder's code. */
export function checkArbitraryBodies(samples: readonly BodySample[], numRuns: number, withTypedArray = false): void {
  fc.assert(fc.property(fc.anything({ maxDepth: 4, withTypedArray }), fc.integer({ min: 0, max: samples.length - 1 }), (value, index) => {
    const [, decode, code] = samples[index]!;
    let bytes: Buffer;
    try {
      bytes = encodeMsgpack(value);
    } catch {
      return;
    }
    const result = decodeErrorOf(() => decode(decodeMsgpack(bytes, code)));
    if (result !== null) expect(result).toBe(code);
  }), { numRuns });
}
