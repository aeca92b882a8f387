/**
 * The user-administration bodies (DescribeUserScramCredentials, AlterUserScramCredentials): round
 * trips, bounds, and mutated or arbitrary input that may only ever fail with DecodeError of the
 * body's code.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  decodeAlterUsersRequest, decodeAlterUsersResponse, decodeDescribeUsersRequest, decodeDescribeUsersResponse, scramCredentialBytesMax, userCredentialsMax,
} from '../../src/wire/users.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { requestUsersMax } from '../../src/lib/limits.js';
import { checkArbitraryBodies, checkMutatedBodies, expectDecodeError, type BodySample } from './helpers.js';

// msgpackr renames a map key "__proto__" on decode; names travel as values here, so any string goes.
const nameArb = fc.string({ minLength: 1, maxLength: 40 });
const i16Arb = fc.integer({ min: -0x8000, max: 0x7fff });
const messageArb = fc.string({ maxLength: 60 });
const binArb = (max: number) => fc.uint8Array({ maxLength: max }).map((bytes) => Buffer.from(bytes));
const credentialArb = fc.record({
  mechanism: fc.oneof(fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-512'), fc.string({ maxLength: 64 })),
  salt: binArb(scramCredentialBytesMax),
  iterations: fc.integer({ min: 0, max: 0x7fffffff }),
  storedKey: binArb(scramCredentialBytesMax),
  serverKey: binArb(scramCredentialBytesMax),
});

function roundTrip(value: unknown, code: 'MALFORMED_REQUEST' | 'MALFORMED_RESPONSE' = 'MALFORMED_REQUEST'): unknown {
  return decodeMsgpack(encodeMsgpack(value), code);
}

const credential = { mechanism: 'SCRAM-SHA-256', salt: Buffer.alloc(24, 1), iterations: 8192, storedKey: Buffer.alloc(32, 2), serverKey: Buffer.alloc(32, 3) };

describe('DescribeUserScramCredentials bodies', () => {
  it('request: names round trip; nil or absent means every user', () => {
    fc.assert(fc.property(fc.array(nameArb, { maxLength: 10 }), (users) => {
      expect(decodeDescribeUsersRequest(roundTrip({ users }))).toEqual({ users });
    }));
    expect(decodeDescribeUsersRequest(roundTrip({ users: null }))).toEqual({ users: null });
    expect(decodeDescribeUsersRequest(roundTrip({}))).toEqual({ users: null });
  });

  it('request: bounds and shapes are MALFORMED_REQUEST', () => {
    expectDecodeError(() => decodeDescribeUsersRequest(roundTrip({ users: Array.from({ length: requestUsersMax + 1 }, () => 'u') })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeDescribeUsersRequest(roundTrip({ users: ['u'.repeat(1025)] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeDescribeUsersRequest(roundTrip({ users: [5] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeDescribeUsersRequest(roundTrip({ users: 'alice' })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeDescribeUsersRequest(roundTrip(['alice'])), 'MALFORMED_REQUEST');
  });

  it('response: round trip; credentials default to empty; at most userCredentialsMax per user', () => {
    const infoArb = fc.record({ mechanism: fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-512'), iterations: fc.integer({ min: 0, max: 0x7fffffff }) });
    const userArb = fc.record({ name: nameArb, errorCode: i16Arb, errorMessage: messageArb, credentials: fc.array(infoArb, { maxLength: userCredentialsMax }) });
    fc.assert(fc.property(fc.array(userArb, { maxLength: 6 }), (users) => {
      expect(decodeDescribeUsersResponse(roundTrip({ users }, 'MALFORMED_RESPONSE'))).toEqual(users);
    }), { numRuns: 200 });
    expect(decodeDescribeUsersResponse(roundTrip({ users: [{ name: 'ghost', errorCode: 26 }] }, 'MALFORMED_RESPONSE')))
      .toEqual([{ name: 'ghost', errorCode: 26, errorMessage: '', credentials: [] }]);
    const tooMany = Array.from({ length: userCredentialsMax + 1 }, () => ({ mechanism: 'SCRAM-SHA-256', iterations: 4096 }));
    expectDecodeError(() => decodeDescribeUsersResponse(roundTrip({ users: [{ name: 'a', errorCode: 0, credentials: tooMany }] }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
    expectDecodeError(() => decodeDescribeUsersResponse(roundTrip({ users: [{ name: 'a', errorCode: 0, credentials: [{ mechanism: 'SCRAM-SHA-256', iterations: -1 }] }] }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
  });
});

describe('AlterUserScramCredentials bodies', () => {
  it('request: upsertions and deletions round trip, salt and keys as bin; both lists default to empty', () => {
    const upsertionArb = fc.record({ name: nameArb, credentials: fc.array(credentialArb, { maxLength: 3 }) });
    fc.assert(fc.property(fc.array(upsertionArb, { maxLength: 4 }), fc.array(nameArb, { maxLength: 4 }), (upsertions, deletions) => {
      expect(decodeAlterUsersRequest(roundTrip({ upsertions, deletions }))).toEqual({ upsertions, deletions });
    }), { numRuns: 300 });
    expect(decodeAlterUsersRequest(roundTrip({}))).toEqual({ upsertions: [], deletions: [] });
  });

  it('request: decoded bytes are copies, not views of the request frame', () => {
    const frame = encodeMsgpack({ upsertions: [{ name: 'alice', credentials: [credential] }] });
    const decoded = decodeAlterUsersRequest(decodeMsgpack(frame));
    const salt = decoded.upsertions[0]!.credentials[0]!.salt;
    expect(salt).toEqual(credential.salt);
    frame.fill(0);
    expect(salt).toEqual(credential.salt);
  });

  it('request: bounds and shapes are MALFORMED_REQUEST', () => {
    const upsert = (c: Record<string, unknown>) => () => decodeAlterUsersRequest(roundTrip({ upsertions: [{ name: 'alice', credentials: [{ ...credential, ...c }] }] }));
    expectDecodeError(upsert({ salt: Buffer.alloc(scramCredentialBytesMax + 1) }), 'MALFORMED_REQUEST');
    expectDecodeError(upsert({ storedKey: Buffer.alloc(scramCredentialBytesMax + 1) }), 'MALFORMED_REQUEST');
    expectDecodeError(upsert({ serverKey: 'not bin' }), 'MALFORMED_REQUEST');
    expectDecodeError(upsert({ salt: undefined }), 'MALFORMED_REQUEST');
    expectDecodeError(upsert({ iterations: -1 }), 'MALFORMED_REQUEST');
    expectDecodeError(upsert({ iterations: 2 ** 31 }), 'MALFORMED_REQUEST');
    expectDecodeError(upsert({ iterations: 4096.5 }), 'MALFORMED_REQUEST');
    expectDecodeError(upsert({ mechanism: 'M'.repeat(65) }), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeAlterUsersRequest(roundTrip({ upsertions: [{ name: 'alice' }] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeAlterUsersRequest(roundTrip({ upsertions: [{ name: 'alice', credentials: Array.from({ length: userCredentialsMax + 1 }, () => credential) }] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeAlterUsersRequest(roundTrip({ deletions: ['u'.repeat(1025)] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeAlterUsersRequest(roundTrip({ deletions: [null] })), 'MALFORMED_REQUEST');
    // The two lists together name at most requestUsersMax users.
    const half = Math.ceil(requestUsersMax / 2);
    const upsertions = Array.from({ length: half }, (_, i) => ({ name: `u${i}`, credentials: [] }));
    const deletions = Array.from({ length: requestUsersMax - half + 1 }, (_, i) => `d${i}`);
    expectDecodeError(() => decodeAlterUsersRequest(roundTrip({ upsertions, deletions })), 'MALFORMED_REQUEST');
    expect(decodeAlterUsersRequest(roundTrip({ upsertions, deletions: deletions.slice(1) })).deletions.length).toBe(requestUsersMax - half);
  });

  it('response: round trip; errorMessage defaults to empty', () => {
    fc.assert(fc.property(fc.array(fc.record({ name: nameArb, errorCode: i16Arb, errorMessage: messageArb }), { maxLength: 6 }), (results) => {
      expect(decodeAlterUsersResponse(roundTrip({ results }, 'MALFORMED_RESPONSE'))).toEqual(results);
    }));
    expect(decodeAlterUsersResponse(roundTrip({ results: [{ name: 'a', errorCode: 0 }] }, 'MALFORMED_RESPONSE'))).toEqual([{ name: 'a', errorCode: 0, errorMessage: '' }]);
    expectDecodeError(() => decodeAlterUsersResponse(roundTrip({ results: [{ name: 'a', errorCode: 40000 }] }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
  });
});

describe('user body mutations', () => {
  const samples: BodySample[] = [
    [{ users: ['alice', 'ghost'] }, decodeDescribeUsersRequest, 'MALFORMED_REQUEST'],
    [{ users: null }, decodeDescribeUsersRequest, 'MALFORMED_REQUEST'],
    [{ upsertions: [{ name: 'alice', credentials: [credential, { ...credential, mechanism: 'SCRAM-SHA-512', storedKey: Buffer.alloc(64), serverKey: Buffer.alloc(64) }] }], deletions: ['bob'] }, decodeAlterUsersRequest, 'MALFORMED_REQUEST'],
    [{ users: [{ name: 'alice', errorCode: 0, errorMessage: '', credentials: [{ mechanism: 'SCRAM-SHA-256', iterations: 8192 }] }, { name: 'ghost', errorCode: 26, errorMessage: 'no', credentials: [] }] }, decodeDescribeUsersResponse, 'MALFORMED_RESPONSE'],
    [{ results: [{ name: 'alice', errorCode: 0, errorMessage: '' }, { name: 'ghost', errorCode: 26, errorMessage: 'no' }] }, decodeAlterUsersResponse, 'MALFORMED_RESPONSE'],
  ];

  it('mutated bodies fail only with DecodeError of the body\'s code', () => {
    checkMutatedBodies(samples, 3000);
  });

  it('arbitrary MessagePack values fail only with DecodeError', () => {
    checkArbitraryBodies(samples, 1000, true);
  });
});
