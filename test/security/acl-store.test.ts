/** The ACL store: durable, deduplicated, strict when reading back, unchanged when a write fails. */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AclStore, AclStoreError, aclsFileName } from '../../src/security/acl-store.js';
import type { Acl } from '../../src/security/acl.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { tempDir } from '../helpers/broker-process.js';

const acl = (fields: Partial<Acl>): Acl => ({ principal: 'User:alice', resourceType: 'topic', name: 'orders', patternType: 'literal', operation: 'read', permission: 'allow', ...fields });

describe('AclStore', () => {
  it('keeps ACLs across reopen, once each, and removes what a filter matches', () => {
    const dir = tempDir('acls');
    const store = AclStore.open(dir);
    expect(store.add([acl({}), acl({}), acl({ operation: 'write' })])).toEqual({ added: 2 });
    expect(store.add([acl({})])).toEqual({ added: 0 });
    store.add([acl({ principal: 'User:bob', name: 'billing.', patternType: 'prefix' })]);
    expect(AclStore.open(dir).list()).toHaveLength(3);
    expect(AclStore.open(dir).list({ principal: 'User:bob' })).toEqual([acl({ principal: 'User:bob', name: 'billing.', patternType: 'prefix' })]);
    expect(store.remove([{ principal: 'User:alice', operation: 'write' }])).toEqual([acl({ operation: 'write' })]);
    expect(store.remove([{ principal: 'User:nobody' }])).toEqual([]);
    expect(AclStore.open(dir).list().map((a) => a.principal).sort()).toEqual(['User:alice', 'User:bob']);
  });

  it('refuses an invalid ACL without changing anything', () => {
    const dir = tempDir('acls-invalid');
    const store = AclStore.open(dir);
    expect(() => store.add([acl({}), acl({ operation: 'fly' as never })])).toThrow(AclStoreError);
    expect(store.size).toBe(0);
    expect(fs.existsSync(path.join(dir, aclsFileName))).toBe(false);
  });

  it('leaves memory and disk as they were when the write fails (disk full)', () => {
    const dir = tempDir('acls-enospc');
    const fileOps = new FaultInjectingFileOps();
    const store = AclStore.open(dir, fileOps);
    store.add([acl({})]);
    fileOps.fillDisk();
    expect(() => store.add([acl({ operation: 'write' })])).toThrow();
    expect(() => store.remove([{}])).toThrow();
    expect(store.list()).toEqual([acl({})]);
    fileOps.clearFaults();
    expect(AclStore.open(dir).list()).toEqual([acl({})]);
  });

  it('refuses a damaged or hostile file with an AclStoreError naming it (property)', () => {
    const dir = tempDir('acls-fuzz');
    const file = path.join(dir, aclsFileName);
    AclStore.open(dir).add([acl({}), acl({ principal: '*', resourceType: 'cluster', name: 'rill-cluster', operation: 'describe' })]);
    const good = fs.readFileSync(file, 'utf8');
    fc.assert(fc.property(fc.nat(good.length - 1), fc.string({ minLength: 1, maxLength: 4 }), (at, junk) => {
      fs.writeFileSync(file, good.slice(0, at) + junk + good.slice(at + junk.length));
      try {
        // A change that still parses must still be a valid set of ACLs.
        for (const loaded of AclStore.open(dir).list()) expect(loaded.principal.length).toBeGreaterThan(0);
      } catch (error) {
        expect(error).toBeInstanceOf(AclStoreError);
        expect((error as Error).message).toContain(file);
      }
    }), { numRuns: 500 });
  });
});
