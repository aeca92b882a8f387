/** The credential store: durable, strict when reading back, never holding a password. */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CredentialStore, CredentialStoreError, credentialsProblem, usersFileName } from '../../src/security/credentials.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { ScramClient, ScramServer, scramCredential, type ScramMechanism } from '../../src/wire/scram.js';
import { tempDir } from '../helpers/broker-process.js';

function login(store: CredentialStore, user: string, password: string, mechanism: ScramMechanism = 'SCRAM-SHA-512'): boolean {
  const client = new ScramClient(mechanism, user, password);
  const server = new ScramServer(mechanism, (name) => store.credential(name, mechanism), Buffer.from('secret'));
  try {
    const { serverFinal } = server.final(client.final(server.first(client.first())));
    client.verify(serverFinal);
    return true;
  } catch {
    return false;
  }
}

describe('CredentialStore', () => {
  it('keeps users across reopen, and a changed password replaces the old one', () => {
    const dir = tempDir('users');
    const store = CredentialStore.open(dir);
    store.upsert('alice', 'first password');
    store.upsert('bob', 'bob password');
    store.upsert('alice', 'second password');
    const reopened = CredentialStore.open(dir);
    expect(reopened.names()).toEqual(['alice', 'bob']);
    expect(login(reopened, 'alice', 'second password')).toBe(true);
    expect(login(reopened, 'alice', 'first password')).toBe(false);
    expect(reopened.remove('bob')).toBe(true);
    expect(CredentialStore.open(dir).names()).toEqual(['alice']);
  });

  it('never writes a password to disk', () => {
    const dir = tempDir('users-secret');
    CredentialStore.open(dir).upsert('carol', 'very-secret-password-123');
    const text = fs.readFileSync(path.join(dir, usersFileName), 'utf8');
    expect(text).not.toContain('very-secret-password-123');
    expect(text).not.toContain(Buffer.from('very-secret-password-123').toString('base64'));
  });

  it('leaves memory and disk as they were when the write fails (disk full)', () => {
    const dir = tempDir('users-enospc');
    const fileOps = new FaultInjectingFileOps();
    const store = CredentialStore.open(dir, fileOps);
    store.upsert('alice', 'pw');
    fileOps.fillDisk();
    expect(() => store.upsert('dave', 'pw')).toThrow();
    expect(store.names()).toEqual(['alice']);
    fileOps.clearFaults();
    expect(CredentialStore.open(dir).names()).toEqual(['alice']);
  });

  it('refuses a damaged or hostile file with a CredentialStoreError naming it (property)', () => {
    const dir = tempDir('users-fuzz');
    const file = path.join(dir, usersFileName);
    CredentialStore.open(dir).upsert('alice', 'pw');
    const good = fs.readFileSync(file, 'utf8');
    fc.assert(fc.property(fc.nat(good.length - 1), fc.string({ minLength: 1, maxLength: 4 }), (at, junk) => {
      fs.writeFileSync(file, good.slice(0, at) + junk + good.slice(at + junk.length));
      try {
        CredentialStore.open(dir);
      } catch (error) {
        expect(error).toBeInstanceOf(CredentialStoreError);
        expect((error as Error).message).toContain(file);
      }
    }), { numRuns: 500 });
  });

  it('apply: credentials derived elsewhere (online administration) log in at once; the user holds exactly the mechanisms given', () => {
    const dir = tempDir('users-apply');
    const store = CredentialStore.open(dir);
    store.upsert('alice', 'old password');
    store.apply([
      { user: 'alice', credentials: [scramCredential('SCRAM-SHA-256', 'new password', 4096)] },
      { user: 'bob', credentials: [scramCredential('SCRAM-SHA-256', 'bob pw'), scramCredential('SCRAM-SHA-512', 'bob pw')] },
    ]);
    expect(login(store, 'alice', 'new password', 'SCRAM-SHA-256')).toBe(true);
    expect(login(store, 'alice', 'old password', 'SCRAM-SHA-256')).toBe(false);
    // The SHA-512 credential with the old password is gone, not left behind.
    expect(login(store, 'alice', 'old password', 'SCRAM-SHA-512')).toBe(false);
    expect(store.describe('alice')).toEqual([{ mechanism: 'SCRAM-SHA-256', iterations: 4096 }]);
    expect(store.describe('bob')).toEqual([{ mechanism: 'SCRAM-SHA-256', iterations: 8192 }, { mechanism: 'SCRAM-SHA-512', iterations: 8192 }]);
    expect(store.describe('ghost')).toBeNull();
    const reopened = CredentialStore.open(dir);
    expect(login(reopened, 'bob', 'bob pw', 'SCRAM-SHA-512')).toBe(true);
    reopened.apply([{ user: 'bob', credentials: null }]);
    expect(login(reopened, 'bob', 'bob pw')).toBe(false);
    expect(CredentialStore.open(dir).names()).toEqual(['alice']);
  });

  it('apply: all or none; an invalid change leaves memory and disk unchanged', () => {
    const dir = tempDir('users-apply-invalid');
    const store = CredentialStore.open(dir);
    store.upsert('alice', 'pw');
    const before = fs.readFileSync(path.join(dir, usersFileName), 'utf8');
    const good = { user: 'bob', credentials: [scramCredential('SCRAM-SHA-256', 'pw')] };
    const bad = [
      { user: 'ghost', credentials: null },
      { user: '', credentials: [scramCredential('SCRAM-SHA-256', 'pw')] },
      { user: 'carol', credentials: [] },
      { user: 'bob', credentials: null },
    ];
    for (const change of bad) expect(() => store.apply([good, change])).toThrow(CredentialStoreError);
    expect(store.names()).toEqual(['alice']);
    expect(fs.readFileSync(path.join(dir, usersFileName), 'utf8')).toBe(before);
  });

  it('apply: a failed write (disk full) undoes every change of the call', () => {
    const dir = tempDir('users-apply-enospc');
    const fileOps = new FaultInjectingFileOps();
    const store = CredentialStore.open(dir, fileOps);
    store.upsert('alice', 'pw');
    store.upsert('bob', 'pw');
    fileOps.fillDisk();
    expect(() => store.apply([{ user: 'alice', credentials: null }, { user: 'bob', credentials: [scramCredential('SCRAM-SHA-256', 'new')] }, { user: 'carol', credentials: [scramCredential('SCRAM-SHA-256', 'c')] }])).toThrow();
    expect(store.names()).toEqual(['alice', 'bob']);
    expect(login(store, 'bob', 'pw')).toBe(true);
    fileOps.clearFaults();
    expect(CredentialStore.open(dir).names()).toEqual(['alice', 'bob']);
  });

  it('credentialsProblem: mechanisms, iterations, salt and key lengths', () => {
    const sha256 = scramCredential('SCRAM-SHA-256', 'pw', 4096);
    const sha512 = scramCredential('SCRAM-SHA-512', 'pw', 4096);
    expect(credentialsProblem([sha256, sha512])).toBeNull();
    expect(credentialsProblem([])).toMatch(/at least one/);
    expect(credentialsProblem([sha256, sha256])).toMatch(/twice/);
    expect(credentialsProblem([{ ...sha256, mechanism: 'SCRAM-MD5' as ScramMechanism }])).toMatch(/unknown mechanism/);
    expect(credentialsProblem([{ ...sha256, iterations: 4095 }])).toMatch(/iterations must be in 4096\.\.1000000/);
    expect(credentialsProblem([{ ...sha256, iterations: 1_000_001 }])).toMatch(/iterations/);
    expect(credentialsProblem([{ ...sha256, salt: Buffer.alloc(15) }])).toMatch(/salt must be 16\.\.64 bytes/);
    expect(credentialsProblem([{ ...sha256, salt: Buffer.alloc(65) }])).toMatch(/salt/);
    expect(credentialsProblem([{ ...sha256, storedKey: sha512.storedKey }])).toMatch(/must be 32 bytes/);
    expect(credentialsProblem([{ ...sha512, serverKey: sha256.serverKey }])).toMatch(/must be 64 bytes/);
  });
});
