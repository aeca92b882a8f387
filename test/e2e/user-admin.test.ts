/**
 * Online user administration end to end: broker processes, `rill users add|remove|list` through
 * the broker (AlterUserScramCredentials, DescribeUserScramCredentials), and logins over real TCP
 * that see each change at once.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { RawClient } from '../helpers/raw-client.js';
import { Admin } from '../../src/client/admin.js';
import { errorCodeOf, RillError } from '../../src/lib/errors.js';
import { ApiKey } from '../../src/wire/apis.js';
import { decodeMsgpack } from '../../src/wire/msgpack.js';
import { decodeAlterUsersResponse } from '../../src/wire/users.js';

const adminPassword = 'admin password 1';

/** Every salt and key in a users.json, base64 as stored. */
function storedSecrets(dataDir: string): string[] {
  const file = JSON.parse(fs.readFileSync(path.join(dataDir, 'users.json'), 'utf8')) as { users: Record<string, Record<string, Record<string, string>>> };
  return Object.values(file.users).flatMap((byMechanism) => Object.values(byMechanism).flatMap((c) => [c.salt!, c.storedKey!, c.serverKey!]));
}

function storedUsers(dataDir: string): string[] {
  return Object.keys((JSON.parse(fs.readFileSync(path.join(dataDir, 'users.json'), 'utf8')) as { users: object }).users).sort();
}

describe('online user administration (--auth required)', () => {
  let broker: BrokerProcess;
  let dataDir: string;
  let b: string[];
  const asAdmin = (): string[] => [...b, '--user', 'admin'];
  const adminEnv = { ...process.env, RILL_PASSWORD: adminPassword };

  /** `rill topics list` as a user: exit 0 when the login worked. */
  async function login(user: string, password: string, mechanism: 'scram-sha-256' | 'scram-sha-512'): Promise<{ code: number | null; stderr: string }> {
    return runCli(['topics', 'list', ...b, '--user', user, '--mechanism', mechanism], undefined, 60_000, { ...process.env, RILL_PASSWORD: password });
  }

  beforeAll(async () => {
    dataDir = tempDir('user-admin');
    const added = await runCli(['users', 'add', 'admin', '--data-dir', dataDir], `${adminPassword}\n`);
    expect(added.code, added.stderr).toBe(0);
    broker = await startBroker({ dataDir, args: ['--auth', 'required', '--super-users', 'admin'] });
    b = ['--bootstrap', broker.bootstrap];
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('add: a new user logs in at once with SCRAM-SHA-256 and SCRAM-SHA-512, and users.json holds it (never the password)', async () => {
    const added = await runCli(['users', 'add', 'carol', ...asAdmin()], 'carol first\n', 60_000, adminEnv);
    expect(added.stderr).toBe('');
    expect(added).toMatchObject({ code: 0, stdout: 'added user carol\n' });
    for (const mechanism of ['scram-sha-256', 'scram-sha-512'] as const) {
      const result = await login('carol', 'carol first', mechanism);
      expect(result.code, result.stderr).toBe(0);
    }
    expect(storedUsers(dataDir)).toEqual(['admin', 'carol']);
    expect(fs.readFileSync(path.join(dataDir, 'users.json'), 'utf8')).not.toContain('carol first');
    expect(broker.output()).toMatch(/user \\?"carol\\?" added \(SCRAM-SHA-256, SCRAM-SHA-512\) by User:admin/);
    expect(broker.output()).not.toContain('carol first');
  });

  it('a changed password: the old one fails, the new one works, for both mechanisms', async () => {
    const changed = await runCli(['users', 'add', 'carol', ...asAdmin()], 'carol second\n', 60_000, adminEnv);
    expect(changed).toMatchObject({ code: 0, stdout: 'changed the password of user carol\n' });
    const old = await login('carol', 'carol first', 'scram-sha-512');
    expect(old.code).toBe(1);
    expect(old.stderr).toContain('SASL_AUTHENTICATION_FAILED');
    for (const mechanism of ['scram-sha-256', 'scram-sha-512'] as const) {
      const result = await login('carol', 'carol second', mechanism);
      expect(result.code, result.stderr).toBe(0);
    }
  });

  it('list: names, or mechanisms and iterations with --json; never a salt or key', async () => {
    const listed = await runCli(['users', 'list', ...asAdmin()], undefined, 60_000, adminEnv);
    expect(listed).toMatchObject({ code: 0, stdout: 'admin\ncarol\n' });
    const json = await runCli(['users', 'list', '--json', ...asAdmin()], undefined, 60_000, adminEnv);
    expect(json.code, json.stderr).toBe(0);
    const both = [{ mechanism: 'SCRAM-SHA-256', iterations: 8192 }, { mechanism: 'SCRAM-SHA-512', iterations: 8192 }];
    expect(JSON.parse(json.stdout)).toEqual([{ name: 'admin', mechanisms: both }, { name: 'carol', mechanisms: both }]);
    const secrets = storedSecrets(dataDir);
    expect(secrets.length).toBe(12);
    for (const secret of secrets) {
      expect(json.stdout).not.toContain(secret);
      expect(json.stdout).not.toContain(Buffer.from(secret, 'base64').toString('hex'));
    }
    // Offline listing reads the file the broker keeps current.
    expect(await runCli(['users', 'list', '--data-dir', dataDir])).toMatchObject({ code: 0, stdout: 'admin\ncarol\n' });
  });

  it('the client library: chosen mechanisms and iterations; the user holds exactly those', async () => {
    const admin = new Admin({ bootstrap: broker.bootstrap, sasl: { username: 'admin', password: adminPassword } });
    try {
      await admin.upsertUser('dave', 'dave pw', { mechanisms: ['scram-sha-256'], iterations: 4096 });
      expect(await admin.listUsers(['dave'])).toEqual([{ name: 'dave', mechanisms: [{ mechanism: 'SCRAM-SHA-256', iterations: 4096 }] }]);
      expect((await login('dave', 'dave pw', 'scram-sha-256')).code).toBe(0);
      expect((await login('dave', 'dave pw', 'scram-sha-512')).stderr).toContain('SASL_AUTHENTICATION_FAILED');
      const unknown = await admin.listUsers(['ghost']).catch((e: unknown) => e);
      expect(unknown).toBeInstanceOf(RillError);
      expect((unknown as RillError).code).toBe('USER_NOT_FOUND');
      const weak = await admin.upsertUser('eve', 'pw', { iterations: 10 }).catch((e: unknown) => e);
      expect((weak as RillError).code).toBe('INVALID_ARGUMENT');
      const badName = await admin.upsertUser('', 'pw').catch((e: unknown) => e);
      expect((badName as RillError).code).toBe('INVALID_ARGUMENT');
    } finally {
      admin.close();
    }
  });

  it('remove: the user can no longer log in, users.json no longer holds it; its open connections stay open', async () => {
    const carol = new Admin({ bootstrap: broker.bootstrap, sasl: { mechanism: 'scram-sha-256', username: 'carol', password: 'carol second' } });
    try {
      expect(await carol.listTopics()).toEqual([]);
      const removed = await runCli(['users', 'remove', 'carol', ...asAdmin()], undefined, 60_000, adminEnv);
      expect(removed).toMatchObject({ code: 0, stdout: 'removed user carol\n' });
      expect(storedUsers(dataDir)).toEqual(['admin', 'dave']);
      const refused = await login('carol', 'carol second', 'scram-sha-256');
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('SASL_AUTHENTICATION_FAILED');
      // Authenticated before the removal: as in Kafka, the connection keeps its identity until it closes.
      expect(await carol.listTopics()).toEqual([]);
    } finally {
      carol.close();
    }
    const again = await runCli(['users', 'remove', 'carol', ...asAdmin()], undefined, 60_000, adminEnv);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('USER_NOT_FOUND');
  });

  it('offline changes refuse while the broker runs, pointing at the online way; mixing the two ways is a usage error', async () => {
    const offline = await runCli(['users', 'add', 'frank', '--data-dir', dataDir], 'pw\n');
    expect(offline.code).toBe(1);
    expect(offline.stderr).toMatch(/in use by another broker.*--bootstrap HOST:PORT instead of --data-dir/);
    const both = await runCli(['users', 'add', 'frank', '--data-dir', dataDir, ...asAdmin()], 'pw\n', 60_000, adminEnv);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--data-dir changes a stopped broker\'s users offline; --bootstrap, --user are for a running broker: give one or the other');
    const noPassword = await runCli(['users', 'add', 'frank', ...asAdmin()], '', 60_000, adminEnv);
    expect(noPassword.code).toBe(2);
    expect(noPassword.stderr).toContain('give the password on the first line of stdin');
    expect(storedUsers(dataDir)).toEqual(['admin', 'dave']);
  });

  it('changes survive a restart', async () => {
    expect(await broker.stop()).toBe(0);
    broker = await startBroker({ dataDir, port: broker.port, args: ['--auth', 'required', '--super-users', 'admin'] });
    expect((await login('dave', 'dave pw', 'scram-sha-256')).code).toBe(0);
    expect((await login('carol', 'carol second', 'scram-sha-256')).code).toBe(1);
  });
});

describe('online user administration on a broker without authentication', () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await startBroker();
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('the first change loads the credential store and creates users.json; the user can then log in', async () => {
    expect(fs.existsSync(path.join(broker.dataDir, 'users.json'))).toBe(false);
    const added = await runCli(['users', 'add', 'grace', '--bootstrap', broker.bootstrap], 'grace pw\n');
    expect(added).toMatchObject({ code: 0, stdout: 'added user grace\n' });
    expect(storedUsers(broker.dataDir)).toEqual(['grace']);
    const result = await runCli(['topics', 'list', '--bootstrap', broker.bootstrap, '--user', 'grace'], undefined, 60_000, { ...process.env, RILL_PASSWORD: 'grace pw' });
    expect(result.code, result.stderr).toBe(0);
    expect(broker.output()).toMatch(/user \\?"grace\\?" added .* by an unauthenticated connection from 127\.0\.0\.1/);
  });

  it('a raw request: results per user in request order, bad input answered per user', async () => {
    const raw = await RawClient.connect(broker.port);
    try {
      raw.msgpackRequest(ApiKey.AlterUserScramCredentials, 1, {
        upsertions: [{ name: 'short', credentials: [{ mechanism: 'SCRAM-SHA-256', salt: Buffer.alloc(24), iterations: 4096, storedKey: Buffer.alloc(31), serverKey: Buffer.alloc(32) }] }],
        deletions: ['ghost', 'grace'],
      });
      const reply = await raw.reply(1);
      expect(reply.errorCode).toBe(0);
      const results = decodeAlterUsersResponse(decodeMsgpack(reply.body, 'MALFORMED_RESPONSE'));
      expect(results.map((r) => [r.name, r.errorCode])).toEqual([['short', errorCodeOf('INVALID_ARGUMENT')], ['ghost', errorCodeOf('USER_NOT_FOUND')], ['grace', 0]]);
      raw.msgpackRequest(ApiKey.AlterUserScramCredentials, 2, { upsertions: [{ name: 'x', credentials: [{ mechanism: 'SCRAM-SHA-256', salt: 'not bin' }] }] });
      expect((await raw.reply(2)).errorCode).toBe(errorCodeOf('MALFORMED_REQUEST'));
    } finally {
      raw.close();
    }
    expect(storedUsers(broker.dataDir)).toEqual([]);
  });
});
