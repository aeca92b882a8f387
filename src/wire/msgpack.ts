/**
 * MessagePack for control bodies: plain maps, arrays, strings, integers, binary. No msgpackr-only
 * extensions (records, bundled strings), so any language's MessagePack library reads them.
 * 64-bit integers decode as bigint; smaller integers as number.
 */
import { Packr, Unpackr } from 'msgpackr';
import { DecodeError, type ErrorName } from '../lib/errors.js';

const packr = new Packr({ useRecords: false, moreTypes: false, bundleStrings: false, encodeUndefinedAsNil: true, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, bundleStrings: false, mapsAsObjects: true, int64AsType: 'bigint' });

export function encodeMsgpack(value: unknown): Buffer {
  return packr.pack(integersBeyond32Bits(value));
}

/**
 * msgpackr writes whole numbers outside the 32-bit range as float64; strict readers in other
 * languages want integers there (timestamps, offsets, byte counts). Such numbers become bigint,
 * which msgpackr writes as int64.
 */
function integersBeyond32Bits(value: unknown): unknown {
  if (typeof value === 'number') return Number.isInteger(value) && (value > 0xffffffff || value < -0x80000000) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(integersBeyond32Bits);
  if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value)) {
    const copy: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) copy[k] = integersBeyond32Bits(v);
    return copy;
  }
  return value;
}

/** Decodes exactly one MessagePack value that must fill `bytes`; throws DecodeError otherwise. */
export function decodeMsgpack(bytes: Uint8Array, code: ErrorName = 'MALFORMED_REQUEST'): unknown {
  if (bytes.length === 0) throw new DecodeError(code, 'empty body');
  let values: unknown[];
  try {
    values = unpackr.unpackMultiple(bytes) as unknown[];
  } catch (error) {
    throw new DecodeError(code, `invalid MessagePack: ${(error as Error).message}`);
  }
  if (values.length !== 1) throw new DecodeError(code, `expected one MessagePack value, found ${values.length}`);
  return values[0];
}
