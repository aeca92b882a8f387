/** The credential store: durable, strict when reading back, never holding a password. */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CredentialStore, CredentialStoreError, usersFileName } from '../../src/security/credentials.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { ScramClient, ScramServer } from '../../src/wire/scram.js';
import { tempDir } from '../helpers/broker-process.js';

function login(store: CredentialStore, user: string, password: string): boolean {
  const client = new ScramClient('SCRAM-SHA-512', user, password);
  const server = new ScramServer('SCRAM-SHA-512', (name) => store.credential(name, 'SCRAM-SHA-512'), Buffer.from('secret'));
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
});
