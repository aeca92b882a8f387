/**
 * Zigzag varints as in protobuf and Kafka's record format. Readers work on untrusted bytes:
 * they bound the encoded length and throw DecodeError, never read past `end`.
 *
 * The reader returns the value and leaves the next position in `cursor.pos`, so the hot loop
 * allocates nothing.
 */
import { DecodeError } from '../lib/errors.js';

export interface Cursor {
  pos: number;
}

/** Bytes a zigzag varint of a 32-bit signed value takes. */
export function sizeOfVarint(value: number): number {
  let z = ((value << 1) ^ (value >> 31)) >>> 0;
  let size = 1;
  while (z >= 0x80) {
    z >>>= 7;
    size++;
  }
  return size;
}

/** Writes a zigzag varint of a 32-bit signed value; returns the next position. */
export function writeVarint(buf: Uint8Array, pos: number, value: number): number {
  let z = ((value << 1) ^ (value >> 31)) >>> 0;
  while (z >= 0x80) {
    buf[pos++] = (z & 0x7f) | 0x80;
    z >>>= 7;
  }
  buf[pos++] = z;
  return pos;
}

/**
 * Varlongs carry JavaScript numbers, so their range is |v| <= varlongMax (2^52 - 1): the zigzag
 * form of such a value is still an exact integer. Record timestamp deltas need far less.
 */
export const varlongMax = 2 ** 52 - 1;

function zigzagLong(value: number): number {
  if (!Number.isInteger(value) || value > varlongMax || value < -varlongMax - 1) throw new RangeError(`varlong ${value} is outside -2^52..2^52-1`);
  return value >= 0 ? value * 2 : -value * 2 - 1;
}

/** Bytes a zigzag varlong takes; values are safe integers. */
export function sizeOfVarlong(value: number): number {
  let z = zigzagLong(value);
  let size = 1;
  while (z >= 0x80) {
    z = Math.floor(z / 128);
    size++;
  }
  return size;
}

/** Writes a zigzag varlong of a safe integer; returns the next position. */
export function writeVarlong(buf: Uint8Array, pos: number, value: number): number {
  let z = zigzagLong(value);
  while (z >= 0x80) {
    buf[pos++] = (z % 128) | 0x80;
    z = Math.floor(z / 128);
  }
  buf[pos++] = z;
  return pos;
}

/** Reads a zigzag varint (at most 5 bytes, 32-bit range). */
export function readVarint(buf: Uint8Array, cursor: Cursor, end: number): number {
  let pos = cursor.pos;
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= end) throw new DecodeError('INVALID_BATCH', 'varint runs past the end of its record');
    const byte = buf[pos++]!;
    if (shift === 28) {
      if (byte > 0x0f) throw new DecodeError('INVALID_BATCH', 'varint exceeds 32 bits');
      result |= byte << 28;
      break;
    }
    result |= (byte & 0x7f) << shift;
    if (byte < 0x80) break;
    shift += 7;
  }
  cursor.pos = pos;
  const z = result >>> 0;
  return (z >>> 1) ^ -(z & 1);
}

/** Reads a zigzag varlong in -2^52..2^52-1 (see varlongMax). */
export function readVarlong(buf: Uint8Array, cursor: Cursor, end: number): number {
  let pos = cursor.pos;
  let result = 0;
  let scale = 1;
  for (let i = 0; ; i++) {
    if (pos >= end) throw new DecodeError('INVALID_BATCH', 'varlong runs past the end of its record');
    if (i === 8) throw new DecodeError('INVALID_BATCH', 'varlong exceeds the safe integer range');
    const byte = buf[pos++]!;
    result += (byte & 0x7f) * scale;
    if (byte < 0x80) break;
    scale *= 128;
  }
  if (result > Number.MAX_SAFE_INTEGER) throw new DecodeError('INVALID_BATCH', 'varlong exceeds the safe integer range');
  cursor.pos = pos;
  return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
}
