/**
 * Validation of decoded MessagePack control bodies. Each reader takes an untrusted value and
 * either returns it typed or throws DecodeError naming the field and what was expected.
 */
import { DecodeError, type ErrorName } from '../lib/errors.js';
import { bodyArrayLengthMax, bodyStringBytesMax } from '../lib/limits.js';

export type Obj = Record<string, unknown>;

export class Schema {
  constructor(private readonly code: ErrorName) {}

  fail(path: string, expected: string, value: unknown): never {
    const shown = typeof value === 'bigint' ? `${value}n` : value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
    throw new DecodeError(this.code, `${path}: expected ${expected}, got ${shown}`);
  }

  object(value: unknown, path: string): Obj {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || Buffer.isBuffer(value) || value instanceof Date) this.fail(path, 'a map', value);
    return value as Obj;
  }

  array(value: unknown, path: string, maxLength = bodyArrayLengthMax): unknown[] {
    if (!Array.isArray(value)) this.fail(path, 'an array', value);
    if (value.length > maxLength) this.fail(path, `at most ${maxLength} entries`, `${value.length} entries`);
    return value;
  }

  string(value: unknown, path: string, maxBytes = bodyStringBytesMax): string {
    if (typeof value !== 'string') this.fail(path, 'a string', value);
    if (value.length > maxBytes || Buffer.byteLength(value) > maxBytes) this.fail(path, `a string of at most ${maxBytes} bytes`, 'a longer string');
    return value;
  }

  optionalString(value: unknown, path: string, maxBytes = bodyStringBytesMax): string | undefined {
    return value === undefined || value === null ? undefined : this.string(value, path, maxBytes);
  }

  /** An integer within [min, max]; accepts number or bigint encodings. */
  int(value: unknown, path: string, min: number, max: number): number {
    let n: number;
    if (typeof value === 'number' && Number.isInteger(value)) n = value;
    else if (typeof value === 'bigint' && value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) n = Number(value);
    else this.fail(path, 'an integer', value);
    if (n < min || n > max) throw new DecodeError(this.code, `${path}: ${n} is outside ${min}..${max}`);
    return n;
  }

  optionalInt(value: unknown, path: string, min: number, max: number): number | undefined {
    return value === undefined || value === null ? undefined : this.int(value, path, min, max);
  }

  /** A 64-bit integer as bigint (offsets). */
  bigint(value: unknown, path: string, min: bigint, max: bigint): bigint {
    let n: bigint;
    if (typeof value === 'bigint') n = value;
    else if (typeof value === 'number' && Number.isSafeInteger(value)) n = BigInt(value);
    else this.fail(path, 'an integer', value);
    if (n < min || n > max) throw new DecodeError(this.code, `${path}: ${n} is outside ${min}..${max}`);
    return n;
  }

  boolean(value: unknown, path: string): boolean {
    if (typeof value !== 'boolean') this.fail(path, 'a boolean', value);
    return value;
  }

  optionalBoolean(value: unknown, path: string): boolean | undefined {
    return value === undefined || value === null ? undefined : this.boolean(value, path);
  }
}

export const requestSchema = new Schema('MALFORMED_REQUEST');
export const responseSchema = new Schema('MALFORMED_RESPONSE');
