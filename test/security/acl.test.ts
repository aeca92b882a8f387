/** The authorizer: Kafka's rules, checked case by case and against a reference model. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { aclOperations, aclProblem, Authorizer, resourceTypes, type Acl, type AuthorizationRequest } from '../../src/security/acl.js';

const acl = (fields: Partial<Acl>): Acl => ({ principal: 'User:alice', resourceType: 'topic', name: 'orders', patternType: 'literal', operation: 'read', permission: 'allow', ...fields });
const ask = (fields: Partial<AuthorizationRequest>): AuthorizationRequest => ({ principal: 'User:alice', resourceType: 'topic', name: 'orders', operation: 'read', ...fields });

describe('Authorizer', () => {
  it('allows nothing without an ACL', () => {
    expect(new Authorizer([]).authorize(ask({}))).toBe(false);
  });

  it('allows what an ACL allows, for that principal, resource and operation only', () => {
    const authorizer = new Authorizer([acl({})]);
    expect(authorizer.authorize(ask({}))).toBe(true);
    expect(authorizer.authorize(ask({ principal: 'User:bob' }))).toBe(false);
    expect(authorizer.authorize(ask({ name: 'orders2' }))).toBe(false);
    expect(authorizer.authorize(ask({ operation: 'write' }))).toBe(false);
    expect(authorizer.authorize(ask({ resourceType: 'group' }))).toBe(false);
  });

  it('lets deny win over allow', () => {
    const authorizer = new Authorizer([acl({ principal: '*', operation: 'all' }), acl({ permission: 'deny', operation: 'write' })]);
    expect(authorizer.authorize(ask({ operation: 'read' }))).toBe(true);
    expect(authorizer.authorize(ask({ operation: 'write' }))).toBe(false);
    expect(authorizer.authorize(ask({ principal: 'User:bob', operation: 'write' }))).toBe(true);
  });

  it('matches prefixes and the literal wildcard name', () => {
    const authorizer = new Authorizer([acl({ name: 'billing.', patternType: 'prefix' }), acl({ principal: 'User:bob', name: '*' })]);
    expect(authorizer.authorize(ask({ name: 'billing.invoices' }))).toBe(true);
    expect(authorizer.authorize(ask({ name: 'billing' }))).toBe(false);
    expect(authorizer.authorize(ask({ principal: 'User:bob', name: 'anything' }))).toBe(true);
  });

  it('lets read, write, delete and alter imply describe, but not the other way round', () => {
    for (const operation of ['read', 'write', 'delete', 'alter'] as const) {
      expect(new Authorizer([acl({ operation })]).authorize(ask({ operation: 'describe' }))).toBe(true);
    }
    expect(new Authorizer([acl({ operation: 'create' })]).authorize(ask({ operation: 'describe' }))).toBe(false);
    expect(new Authorizer([acl({ operation: 'describe' })]).authorize(ask({ operation: 'read' }))).toBe(false);
  });

  it('lets super users do everything, even against a deny', () => {
    const authorizer = new Authorizer([acl({ permission: 'deny', operation: 'all' })], ['User:alice']);
    expect(authorizer.authorize(ask({ operation: 'delete' }))).toBe(true);
  });

  it('decides as the rules say, for any ACLs and request (model)', () => {
    const principals = ['User:alice', 'User:bob', '*'];
    const names = ['orders', 'ord', 'o', '*', 'billing'];
    const aclArb = fc.record({
      principal: fc.constantFrom(...principals),
      resourceType: fc.constantFrom(...resourceTypes),
      name: fc.constantFrom(...names),
      patternType: fc.constantFrom('literal' as const, 'prefix' as const),
      operation: fc.constantFrom(...aclOperations),
      permission: fc.constantFrom('allow' as const, 'deny' as const),
    });
    const requestArb = fc.record({
      principal: fc.constantFrom('User:alice', 'User:bob'),
      resourceType: fc.constantFrom(...resourceTypes),
      name: fc.constantFrom('orders', 'ord', 'billing', 'x'),
      operation: fc.constantFrom(...aclOperations.filter((o) => o !== 'all')),
    });
    fc.assert(fc.property(fc.array(aclArb, { maxLength: 8 }), requestArb, (acls, request) => {
      // The rules written out the slow, obvious way.
      const applies = (a: Acl): boolean => (a.principal === '*' || a.principal === request.principal) && a.resourceType === request.resourceType
        && (a.patternType === 'prefix' ? request.name.startsWith(a.name) : a.name === '*' || a.name === request.name);
      const denied = acls.some((a) => applies(a) && a.permission === 'deny' && (a.operation === 'all' || a.operation === request.operation));
      const allowed = acls.some((a) => applies(a) && a.permission === 'allow' && (a.operation === 'all' || a.operation === request.operation
        || (request.operation === 'describe' && ['read', 'write', 'delete', 'alter'].includes(a.operation))));
      expect(new Authorizer(acls).authorize(request)).toBe(!denied && allowed);
    }), { numRuns: 3000 });
  });

  it('allowsSome: some name of the type is allowed, exactly when one is (model over representative names)', () => {
    const names = ['orders', 'ord', 'o', '*', 'billing'];
    const aclArb = fc.record({
      principal: fc.constantFrom('User:alice', 'User:bob', '*'),
      resourceType: fc.constantFrom(...resourceTypes),
      name: fc.constantFrom(...names),
      patternType: fc.constantFrom('literal' as const, 'prefix' as const),
      operation: fc.constantFrom(...aclOperations),
      permission: fc.constantFrom('allow' as const, 'deny' as const),
    });
    // Every name an ACL can single out, plus a fresh extension of each (what a prefix allows
    // beyond the names written down) and a name no ACL mentions (what `*` allows).
    const universe = [...names, ...names.map((n) => `${n}\u0001fresh`), '\u0001fresh'];
    fc.assert(fc.property(fc.array(aclArb, { maxLength: 8 }), fc.constantFrom(...resourceTypes), fc.constantFrom(...aclOperations.filter((o) => o !== 'all')), (acls, resourceType, operation) => {
      const authorizer = new Authorizer(acls);
      const expected = universe.some((name) => authorizer.authorize({ principal: 'User:alice', resourceType, name, operation }));
      expect(authorizer.allowsSome('User:alice', resourceType, operation)).toBe(expected);
    }), { numRuns: 3000 });
    expect(new Authorizer([], ['User:root']).allowsSome('User:root', 'topic', 'write')).toBe(true);
  });

  it('validates ACLs', () => {
    expect(aclProblem(acl({}))).toBeNull();
    expect(aclProblem(acl({ operation: 'fly' as never }))).toContain('operation');
    expect(aclProblem(acl({ resourceType: 'cluster', name: 'x' }))).toContain('rill-cluster');
    expect(aclProblem({})).toContain('principal');
  });
});
