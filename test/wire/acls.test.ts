/**
 * The ACL bodies (DescribeAcls, CreateAcls, DeleteAcls): round trips of any well-formed body,
 * bounds, and mutated or arbitrary bytes that may only ever fail with DecodeError of the body's code.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  aclOperations, aclProblem, decodeCreateAclsRequest, decodeCreateAclsResponse, decodeDeleteAclsRequest, decodeDeleteAclsResponse,
  decodeDescribeAclsRequest, decodeDescribeAclsResponse, requestAclsMax, resourceTypes, type Acl,
} from '../../src/wire/acls.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { checkArbitraryBodies, checkMutatedBodies, expectDecodeError, type BodySample } from './helpers.js';

const textArb = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => s !== '__proto__');
const aclArb: fc.Arbitrary<Acl> = fc.record({
  principal: fc.oneof(fc.constant('*'), textArb.map((s) => `User:${s}`)),
  resourceType: fc.constantFrom(...resourceTypes),
  name: textArb,
  patternType: fc.constantFrom('literal' as const, 'prefix' as const),
  operation: fc.constantFrom(...aclOperations),
  permission: fc.constantFrom('allow' as const, 'deny' as const),
});
const filterArb = fc.record({
  principal: textArb, resourceType: fc.constantFrom(...resourceTypes), name: textArb,
  patternType: fc.constantFrom('literal' as const, 'prefix' as const), operation: fc.constantFrom(...aclOperations), permission: fc.constantFrom('allow' as const, 'deny' as const),
}, { requiredKeys: [] });
const errorArb = fc.record({ errorCode: fc.integer({ min: -0x8000, max: 0x7fff }), errorMessage: fc.string({ maxLength: 40 }) });

const roundTrip = (value: unknown, code: 'MALFORMED_REQUEST' | 'MALFORMED_RESPONSE' = 'MALFORMED_REQUEST'): unknown => decodeMsgpack(encodeMsgpack(value), code);

describe('ACL bodies', () => {
  it('round-trip any well-formed request and response', () => {
    fc.assert(fc.property(fc.array(aclArb, { maxLength: 6 }), fc.array(filterArb, { maxLength: 4 }), fc.array(errorArb, { maxLength: 4 }), (acls, filters, errors) => {
      expect(decodeCreateAclsRequest(roundTrip({ acls }))).toEqual({ acls });
      expect(decodeDeleteAclsRequest(roundTrip({ filters }))).toEqual({ filters });
      for (const filter of filters) expect(decodeDescribeAclsRequest(roundTrip({ filter }))).toEqual({ filter });
      expect(decodeDescribeAclsResponse(roundTrip({ acls }, 'MALFORMED_RESPONSE'))).toEqual(acls);
      expect(decodeCreateAclsResponse(roundTrip({ results: errors }, 'MALFORMED_RESPONSE'))).toEqual(errors);
      const deleted = errors.map((e) => ({ ...e, removed: acls }));
      expect(decodeDeleteAclsResponse(roundTrip({ results: deleted }, 'MALFORMED_RESPONSE'))).toEqual(deleted);
    }), { numRuns: 300 });
  });

  it('a missing or nil filter means every ACL; nil fields match anything', () => {
    expect(decodeDescribeAclsRequest(roundTrip({}))).toEqual({ filter: {} });
    expect(decodeDescribeAclsRequest(roundTrip({ filter: { principal: null, name: 'orders' } }))).toEqual({ filter: { name: 'orders' } });
  });

  it('bounds the number of ACLs and the length of every field', () => {
    const acl: Acl = { principal: 'User:a', resourceType: 'topic', name: 'orders', patternType: 'literal', operation: 'read', permission: 'allow' };
    expectDecodeError(() => decodeCreateAclsRequest(roundTrip({ acls: Array.from({ length: requestAclsMax + 1 }, () => acl) })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeCreateAclsRequest(roundTrip({ acls: [{ ...acl, name: 'x'.repeat(5000) }] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeDeleteAclsRequest(roundTrip({ filters: [{ operation: 'x'.repeat(100) }] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeCreateAclsRequest(roundTrip({ acls: [{ ...acl, permission: 7 }] })), 'MALFORMED_REQUEST');
  });

  it('leaves meaning to aclProblem: well formed is not valid', () => {
    const acl = decodeCreateAclsRequest(roundTrip({ acls: [{ principal: 'User:a', resourceType: 'topic', name: 'orders', patternType: 'literal', operation: 'fly', permission: 'allow' }] })).acls[0]!;
    expect(aclProblem(acl)).toContain('operation');
    expect(aclProblem({ ...acl, operation: 'read', resourceType: 'cluster', name: 'rill-cluster', patternType: 'prefix' })).toContain('literal');
  });

  const samples: BodySample[] = [
    [{ filter: { principal: 'User:a', resourceType: 'topic' } }, decodeDescribeAclsRequest, 'MALFORMED_REQUEST'],
    [{ acls: [{ principal: 'User:a', resourceType: 'topic', name: 'orders', patternType: 'prefix', operation: 'read', permission: 'deny' }] }, decodeCreateAclsRequest, 'MALFORMED_REQUEST'],
    [{ filters: [{ name: 'orders' }, {}] }, decodeDeleteAclsRequest, 'MALFORMED_REQUEST'],
    [{ acls: [{ principal: '*', resourceType: 'group', name: 'g', patternType: 'literal', operation: 'all', permission: 'allow' }] }, decodeDescribeAclsResponse, 'MALFORMED_RESPONSE'],
    [{ results: [{ errorCode: 0, errorMessage: '' }, { errorCode: 23, errorMessage: 'bad' }] }, decodeCreateAclsResponse, 'MALFORMED_RESPONSE'],
    [{ results: [{ errorCode: 0, errorMessage: '', removed: [{ principal: '*', resourceType: 'topic', name: 't', patternType: 'literal', operation: 'read', permission: 'allow' }] }] }, decodeDeleteAclsResponse, 'MALFORMED_RESPONSE'],
  ];

  it('mutated bodies fail only with DecodeError of the body\'s code', () => {
    checkMutatedBodies(samples, 2000);
  });

  it('arbitrary MessagePack values fail only with DecodeError', () => {
    checkArbitraryBodies(samples, 1000);
  });
});
