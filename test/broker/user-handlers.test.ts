/**
 * The user-administration handlers on a real CredentialStore: what they ask the Access, per-user
 * errors, one durable write for the accepted changes, and answers that never carry a salt or key.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Access } from '../../src/broker/access.js';
import type { Connection, Reply, RequestContext } from '../../src/broker/connection.js';
import { handleAlterUsers, handleDescribeUsers } from '../../src/broker/handlers/users.js';
import { errorCodeOf, RillError } from '../../src/lib/errors.js';
import type { Log } from '../../src/lib/log.js';
import { CredentialStore, usersFileName } from '../../src/security/credentials.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { ApiKey } from '../../src/wire/apis.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { scramCredential } from '../../src/wire/scram.js';
import { decodeAlterUsersResponse, decodeDescribeUsersResponse } from '../../src/wire/users.js';
import { tempDir } from '../helpers/broker-process.js';

const connection = { principal: 'User:admin', remote: '127.0.0.1:5555' } as Connection;

function context(apiKey: number, body: unknown): RequestContext {
  const header = Buffer.alloc(8);
  header.writeUInt16BE(apiKey, 0);
  return { header: { apiKey, apiVersion: 0, correlationId: 1 }, frame: Buffer.concat([header, encodeMsgpack(body)]), connection } as RequestContext;
}

function replyBody(reply: Reply): unknown {
  expect(reply.errorCode).toBe(0);
  return decodeMsgpack(Buffer.concat(reply.chunks), 'MALFORMED_RESPONSE');
}

/** Allows everything, and remembers what it was asked. */
function recordingAccess(allow: boolean): Access & { asked: unknown[][] } {
  const asked: unknown[][] = [];
  return {
    enforced: true,
    asked,
    allows: (c, type, name, operation) => {
      asked.push([c, type, name, operation]);
      return allow;
    },
    allowsQuietly: () => allow,
    allowsSome: () => allow,
  };
}

function wireCredential(mechanism: 'SCRAM-SHA-256' | 'SCRAM-SHA-512', password: string, iterations = 4096) {
  const { salt, storedKey, serverKey } = scramCredential(mechanism, password, iterations);
  return { mechanism, salt, iterations, storedKey, serverKey };
}

describe('user administration handlers', () => {
  const lines: string[] = [];
  const log: Log = (_level, message) => lines.push(message);

  it('ask describe (Describe) and alter (Alter) on the cluster; a denial is CLUSTER_AUTHORIZATION_FAILED and changes nothing', () => {
    const store = CredentialStore.open(tempDir('users-handler-deny'));
    const denied = recordingAccess(false);
    const alter = context(ApiKey.AlterUserScramCredentials, { upsertions: [{ name: 'mallory', credentials: [wireCredential('SCRAM-SHA-256', 'pw')] }] });
    expect(() => handleAlterUsers(alter, store, denied, log)).toThrow(expect.objectContaining({ code: 'CLUSTER_AUTHORIZATION_FAILED' }) as RillError);
    expect(() => handleDescribeUsers(context(ApiKey.DescribeUserScramCredentials, {}), store, denied)).toThrow(expect.objectContaining({ code: 'CLUSTER_AUTHORIZATION_FAILED' }) as RillError);
    expect(denied.asked).toEqual([[connection, 'cluster', 'rill-cluster', 'alter'], [connection, 'cluster', 'rill-cluster', 'describe']]);
    expect(store.names()).toEqual([]);
  });

  it('Alter answers each user on its own, writes the accepted ones durably, and logs who changed what', () => {
    const dir = tempDir('users-handler-alter');
    const store = CredentialStore.open(dir);
    store.upsert('bob', 'bob pw');
    lines.length = 0;
    const request = {
      upsertions: [
        { name: 'alice', credentials: [wireCredential('SCRAM-SHA-256', 'a'), wireCredential('SCRAM-SHA-512', 'a')] },
        { name: 'twice', credentials: [wireCredential('SCRAM-SHA-256', 't')] },
        { name: 'md5', credentials: [{ ...wireCredential('SCRAM-SHA-256', 'm'), mechanism: 'SCRAM-MD5' }] },
        { name: 'weak', credentials: [{ ...wireCredential('SCRAM-SHA-256', 'w'), iterations: 1 }] },
        { name: 'short', credentials: [{ ...wireCredential('SCRAM-SHA-512', 's'), storedKey: Buffer.alloc(32) }] },
        { name: 'none', credentials: [] },
        { name: 'bad\u0001name', credentials: [wireCredential('SCRAM-SHA-256', 'b')] },
      ],
      deletions: ['bob', 'ghost', 'twice'],
    };
    const results = decodeAlterUsersResponse(replyBody(handleAlterUsers(context(ApiKey.AlterUserScramCredentials, request), store, recordingAccess(true), log)));
    expect(results.map((r) => [r.name, r.errorCode])).toEqual([
      ['alice', 0],
      ['twice', errorCodeOf('INVALID_ARGUMENT')],
      ['md5', errorCodeOf('UNSUPPORTED_SASL_MECHANISM')],
      ['weak', errorCodeOf('INVALID_ARGUMENT')],
      ['short', errorCodeOf('INVALID_ARGUMENT')],
      ['none', errorCodeOf('INVALID_ARGUMENT')],
      ['bad\u0001name', errorCodeOf('INVALID_ARGUMENT')],
      ['bob', 0],
      ['ghost', errorCodeOf('USER_NOT_FOUND')],
      ['twice', errorCodeOf('INVALID_ARGUMENT')],
    ]);
    expect(results[1]!.errorMessage).toContain('named 2 times');
    expect(results[3]!.errorMessage).toContain('4096..1000000');
    expect(CredentialStore.open(dir).names()).toEqual(['alice']);
    expect(lines).toEqual(['user "alice" added (SCRAM-SHA-256, SCRAM-SHA-512) by User:admin (127.0.0.1:5555)', 'user "bob" removed by User:admin (127.0.0.1:5555)']);
  });

  it('Describe answers mechanisms and iterations, never a salt or key; every user when none is named', () => {
    const dir = tempDir('users-handler-describe');
    const store = CredentialStore.open(dir);
    store.upsert('alice', 'pw', 4096);
    store.apply([{ user: 'bob', credentials: [scramCredential('SCRAM-SHA-512', 'pw', 5000)] }]);
    const all = replyBody(handleDescribeUsers(context(ApiKey.DescribeUserScramCredentials, { users: null }), store, recordingAccess(true)));
    expect(decodeDescribeUsersResponse(all)).toEqual([
      { name: 'alice', errorCode: 0, errorMessage: '', credentials: [{ mechanism: 'SCRAM-SHA-256', iterations: 4096 }, { mechanism: 'SCRAM-SHA-512', iterations: 4096 }] },
      { name: 'bob', errorCode: 0, errorMessage: '', credentials: [{ mechanism: 'SCRAM-SHA-512', iterations: 5000 }] },
    ]);
    const secrets = Object.values(JSON.parse(fs.readFileSync(path.join(dir, usersFileName), 'utf8')).users as Record<string, Record<string, Record<string, unknown>>>)
      .flatMap((byMechanism) => Object.values(byMechanism).flatMap((c) => [c.salt, c.storedKey, c.serverKey] as string[]));
    const raw = JSON.stringify(all, (_key, value: unknown) => (value instanceof Uint8Array ? Buffer.from(value).toString('base64') : value));
    for (const secret of secrets) expect(raw).not.toContain(secret);
    const named = decodeDescribeUsersResponse(replyBody(handleDescribeUsers(context(ApiKey.DescribeUserScramCredentials, { users: ['ghost', 'bob', ''] }), store, recordingAccess(true))));
    expect(named.map((u) => [u.name, u.errorCode, u.credentials.length])).toEqual([['ghost', errorCodeOf('USER_NOT_FOUND'), 0], ['bob', 0, 1], ['', errorCodeOf('INVALID_ARGUMENT'), 0]]);
  });

  it('a failed write of users.json fails every accepted change (retriable) and changes nothing', () => {
    const dir = tempDir('users-handler-enospc');
    const fileOps = new FaultInjectingFileOps();
    const store = CredentialStore.open(dir, fileOps);
    store.upsert('bob', 'pw');
    fileOps.fillDisk();
    lines.length = 0;
    const request = { upsertions: [{ name: 'alice', credentials: [wireCredential('SCRAM-SHA-256', 'a')] }], deletions: ['bob', 'ghost'] };
    const results = decodeAlterUsersResponse(replyBody(handleAlterUsers(context(ApiKey.AlterUserScramCredentials, request), store, recordingAccess(true), log)));
    expect(results.map((r) => [r.name, r.errorCode])).toEqual([['alice', errorCodeOf('DISK_FULL')], ['bob', errorCodeOf('DISK_FULL')], ['ghost', errorCodeOf('USER_NOT_FOUND')]]);
    expect(store.names()).toEqual(['bob']);
    expect(lines).toEqual([expect.stringContaining('user administration failed, nothing changed: DISK_FULL: cannot write users.json')]);
    fileOps.clearFaults();
    expect(CredentialStore.open(dir).names()).toEqual(['bob']);
  });
});
