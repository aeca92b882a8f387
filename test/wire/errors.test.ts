import { describe, expect, it } from 'vitest';
import { errorTable, errorCodeOf, errorNameOf, RillError, type ErrorName } from '../../src/lib/errors.js';
import { readProtocolJson } from './helpers.js';

interface ErrorRow {
  code: number;
  name: string;
  retriable: boolean;
  message: string;
}

const published = readProtocolJson<ErrorRow[]>('errors.json');
const inCode: ErrorRow[] = (Object.keys(errorTable) as ErrorName[]).map((name) => ({ name, ...errorTable[name] }));

describe('error registry', () => {
  it('protocol/errors.json and src/lib/errors.ts list the same errors, field for field, in the same order', () => {
    const normalise = (rows: ErrorRow[]) => rows.map(({ code, name, retriable, message }) => ({ code, name, retriable, message }));
    expect(normalise(published)).toEqual(normalise(inCode));
  });

  it('every row of errors.json has exactly the four documented fields with the right types', () => {
    for (const row of published) {
      expect(Object.keys(row).sort()).toEqual(['code', 'message', 'name', 'retriable']);
      expect(Number.isInteger(row.code)).toBe(true);
      expect(typeof row.retriable).toBe('boolean');
      expect(row.message.length).toBeGreaterThan(0);
      expect(row.name).toMatch(/^[A-Z][A-Z0-9_]*$/);
    }
  });

  it('codes and names are unique, fit an int16 and NONE is 0', () => {
    const codes = published.map((row) => row.code);
    expect(new Set(codes).size).toBe(codes.length);
    expect(new Set(published.map((row) => row.name)).size).toBe(published.length);
    for (const code of codes) expect(code >= 0 && code <= 0x7fff).toBe(true);
    expect(errorCodeOf('NONE')).toBe(0);
  });

  it('maps codes to names both ways; an unknown code becomes UNKNOWN_SERVER_ERROR', () => {
    for (const row of published) {
      expect(errorNameOf(row.code)).toBe(row.name);
      expect(errorCodeOf(row.name as ErrorName)).toBe(row.code);
    }
    expect(errorNameOf(32_000)).toBe('UNKNOWN_SERVER_ERROR');
    const unknown = RillError.fromCode(32_000, 'from a newer broker');
    expect(unknown.code).toBe('UNKNOWN_SERVER_ERROR');
    expect(unknown.message).toContain('32000');
  });
});
