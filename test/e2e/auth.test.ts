/**
 * Authentication end to end: a broker process with `--auth required`, users added offline with
 * `rill users add`, and the CLI, the client and a raw socket over real TCP.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { RawClient } from '../helpers/raw-client.js';
import { Admin } from '../../src/client/admin.js';
import { RillError, errorCodeOf } from '../../src/lib/errors.js';
import { ApiKey } from '../../src/wire/apis.js';
import { decodeMsgpack } from '../../src/wire/msgpack.js';
import { ScramClient } from '../../src/wire/scram.js';

const password = 'correct horse battery staple';

async function scrape(broker: BrokerProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`)).text();
  const match = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return match === null ? Number.NaN : Number(match[1]);
}

describe('authentication (--auth required)', () => {
  let broker: BrokerProcess;
  let dataDir: string;
  let b: string[];
  const env = { ...process.env, RILL_PASSWORD: password };

  beforeAll(async () => {
    dataDir = tempDir('auth');
    const added = await runCli(['users', 'add', 'alice', '--data-dir', dataDir], `${password}\n`);
    expect(added.stderr).toBe('');
    expect(added.stdout).toContain('added user alice');
    const users = fs.readFileSync(path.join(dataDir, 'users.json'), 'utf8');
    expect(users).not.toContain(password);
    broker = await startBroker({ dataDir, http: '127.0.0.1:0', args: ['--auth', 'required', '--super-users', 'alice'] });
    b = ['--bootstrap', broker.bootstrap];
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('users list shows names only; users add and remove refuse while the broker holds the data directory', async () => {
    const added = await runCli(['users', 'add', 'bob', '--data-dir', dataDir], `${password}\n`);
    expect(added.code).toBe(1);
    expect(added.stderr).toMatch(/in use by another broker.*stop the broker/);
    const removed = await runCli(['users', 'remove', 'alice', '--data-dir', dataDir]);
    expect(removed.code).toBe(1);
    expect(removed.stderr).toMatch(/in use by another broker/);
    const listed = await runCli(['users', 'list', '--data-dir', dataDir]);
    expect(listed).toMatchObject({ code: 0, stdout: 'alice\n' });
  });

  for (const mechanism of ['scram-sha-256', 'scram-sha-512']) {
    it(`${mechanism}: with the right password, produce and consume work`, async () => {
      const topic = `t-${mechanism}`;
      // SHA-512 (the default mechanism) reads the password from a file instead of RILL_PASSWORD.
      const passwordFile = path.join(tempDir('password'), 'password');
      fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
      const auth = mechanism === 'scram-sha-256' ? ['--user', 'alice', '--mechanism', mechanism] : ['--user', 'alice', '--password-file', passwordFile];
      expect((await runCli(['topics', 'create', topic, ...b, ...auth], undefined, 60_000, env)).code).toBe(0);
      const produced = await runCli(['produce', topic, ...b, ...auth], 'one\ntwo\nthree\n', 60_000, env);
      expect(produced.code, produced.stderr).toBe(0);
      const consumed = await runCli(['consume', topic, '--from-beginning', '--exit-at-end', ...b, ...auth], undefined, 60_000, env);
      expect(consumed.code, consumed.stderr).toBe(0);
      expect(consumed.stdout.trim().split('\n')).toEqual(['one', 'two', 'three']);
    });
  }

  it('a wrong password: exit 1 with SASL_AUTHENTICATION_FAILED, counted, and the broker keeps serving', async () => {
    const before = await scrape(broker, 'rill_auth_failures_total');
    const wrong = await runCli(['topics', 'list', ...b, '--user', 'alice'], undefined, 60_000, { ...process.env, RILL_PASSWORD: 'nope' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('SASL_AUTHENTICATION_FAILED');
    expect(wrong.stderr).not.toContain('nope');
    const unknown = await runCli(['topics', 'list', ...b, '--user', 'mallory'], undefined, 60_000, env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('SASL_AUTHENTICATION_FAILED');
    expect(await scrape(broker, 'rill_auth_failures_total')).toBe(before + 2);
    // One line per address per 10 s (operator alerts): the second failure is counted, not logged.
    expect(broker.output()).toMatch(/"address":"127\.0\.0\.1","user":"alice","condition":"auth_failures".*authentication failed from 127\.0\.0\.1:\d+ .*unknown user or wrong password/);
    expect(broker.output()).not.toContain('nope');
    expect(broker.output()).not.toContain(password);
    const ok = await runCli(['topics', 'list', ...b, '--user', 'alice'], undefined, 60_000, env);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('flag mistakes are usage errors (exit 2)', async () => {
    const noPassword = await runCli(['topics', 'list', ...b, '--user', 'alice'], undefined, 60_000, { ...process.env, RILL_PASSWORD: '' });
    expect(noPassword).toMatchObject({ code: 2 });
    expect(noPassword.stderr).toContain('needs a password: set RILL_PASSWORD or give --password-file FILE');
    const badMechanism = await runCli(['topics', 'list', ...b, '--user', 'alice', '--mechanism', 'md5'], undefined, 60_000, env);
    expect(badMechanism.code).toBe(2);
    expect(badMechanism.stderr).toContain('--mechanism must be one of scram-sha-512, scram-sha-256, plain');
  });

  it('without credentials the CLI fails at once with SASL_AUTHENTICATION_REQUIRED', async () => {
    const result = await runCli(['topics', 'list', ...b]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('SASL_AUTHENTICATION_REQUIRED');
  });

  it('an unauthenticated connection may call ApiVersions and nothing else', async () => {
    const raw = await RawClient.connect(broker.port);
    try {
      raw.msgpackRequest(ApiKey.ApiVersions, 1, {});
      expect((await raw.reply(1)).errorCode).toBe(0);
      raw.msgpackRequest(ApiKey.Metadata, 2, { topics: null });
      const refused = await raw.reply(2);
      expect(refused.errorCode).toBe(errorCodeOf('SASL_AUTHENTICATION_REQUIRED'));
      expect(raw.message(refused)).toContain('Metadata');
      raw.msgpackRequest(ApiKey.CreateTopics, 3, { topics: [{ name: 'sneaky', partitions: 1 }] });
      expect((await raw.reply(3)).errorCode).toBe(errorCodeOf('SASL_AUTHENTICATION_REQUIRED'));
    } finally {
      raw.close();
    }
  });

  it('PLAIN is refused without TLS, with a reason', async () => {
    const raw = await RawClient.connect(broker.port);
    try {
      raw.msgpackRequest(ApiKey.SaslHandshake, 1, { mechanism: 'PLAIN' });
      const reply = await raw.reply(1);
      expect(reply.errorCode).toBe(errorCodeOf('UNSUPPORTED_SASL_MECHANISM'));
      expect(raw.message(reply)).toContain('only on TLS');
    } finally {
      raw.close();
    }
    const cli = await runCli(['topics', 'list', ...b, '--user', 'alice', '--mechanism', 'plain'], undefined, 60_000, env);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain('UNSUPPORTED_SASL_MECHANISM');
  });

  it('garbage and a replayed SCRAM exchange get SASL_AUTHENTICATION_FAILED and a closed connection, and are counted', async () => {
    const before = await scrape(broker, 'rill_auth_failures_total');
    const garbage = await RawClient.connect(broker.port);
    garbage.msgpackRequest(ApiKey.SaslHandshake, 1, { mechanism: 'SCRAM-SHA-256' });
    expect((await garbage.reply(1)).errorCode).toBe(0);
    garbage.msgpackRequest(ApiKey.SaslAuthenticate, 2, { authBytes: Buffer.from('hello, I am root') });
    const refused = await garbage.reply(2);
    expect(refused.errorCode).toBe(errorCodeOf('SASL_AUTHENTICATION_FAILED'));
    expect(garbage.message(refused)).toMatch(/gs2 header/);
    expect(await garbage.waitClosed(5000)).toBe(true);

    // A complete, valid exchange recorded on one connection, replayed on another.
    const recorded: Buffer[] = [];
    const first = await RawClient.connect(broker.port);
    const scram = new ScramClient('SCRAM-SHA-256', 'alice', password);
    first.msgpackRequest(ApiKey.SaslHandshake, 1, { mechanism: 'SCRAM-SHA-256' });
    await first.reply(1);
    recorded.push(Buffer.from(scram.first()));
    first.msgpackRequest(ApiKey.SaslAuthenticate, 2, { authBytes: recorded[0] });
    const serverFirst = (decodeMsgpack((await first.reply(2)).body) as { authBytes: Buffer }).authBytes.toString();
    recorded.push(Buffer.from(scram.final(serverFirst)));
    first.msgpackRequest(ApiKey.SaslAuthenticate, 3, { authBytes: recorded[1] });
    expect((await first.reply(3)).errorCode).toBe(0);
    first.msgpackRequest(ApiKey.Metadata, 4, { topics: null });
    expect((await first.reply(4)).errorCode).toBe(0);
    first.close();

    const replay = await RawClient.connect(broker.port);
    replay.msgpackRequest(ApiKey.SaslHandshake, 1, { mechanism: 'SCRAM-SHA-256' });
    await replay.reply(1);
    replay.msgpackRequest(ApiKey.SaslAuthenticate, 2, { authBytes: recorded[0] });
    expect((await replay.reply(2)).errorCode).toBe(0);
    replay.msgpackRequest(ApiKey.SaslAuthenticate, 3, { authBytes: recorded[1] });
    const replayed = await replay.reply(3);
    expect(replayed.errorCode).toBe(errorCodeOf('SASL_AUTHENTICATION_FAILED'));
    expect(replay.message(replayed)).toContain('nonce does not match');
    expect(await replay.waitClosed(5000)).toBe(true);
    expect(await scrape(broker, 'rill_auth_failures_total')).toBe(before + 2);
  });

  it('the client library: sasl option authenticates; a wrong password is a non-retriable RillError', async () => {
    const admin = new Admin({ bootstrap: broker.bootstrap, sasl: { mechanism: 'scram-sha-256', username: 'alice', password } });
    try {
      expect(await admin.listTopics()).toEqual(expect.arrayContaining(['t-scram-sha-256']));
    } finally {
      admin.close();
    }
    const wrong = new Admin({ bootstrap: broker.bootstrap, sasl: { username: 'alice', password: 'wrong' } });
    try {
      const error = await wrong.listTopics().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RillError);
      expect((error as RillError).code).toBe('SASL_AUTHENTICATION_FAILED');
      expect((error as RillError).retriable).toBe(false);
    } finally {
      wrong.close();
    }
  });

  it('a client authenticates again after the broker restarts; users removed offline can no longer log in', async () => {
    const admin = new Admin({ bootstrap: broker.bootstrap, sasl: { username: 'alice', password } });
    try {
      expect(await admin.listTopics()).toContain('t-scram-sha-512');
      const port = broker.port;
      expect(await broker.stop()).toBe(0);
      broker = await startBroker({ dataDir, port, http: '127.0.0.1:0', args: ['--auth', 'required', '--super-users', 'alice'] });
      expect(await admin.listTopics().catch(async () => admin.listTopics())).toContain('t-scram-sha-512');
      expect(await scrape(broker, 'rill_auth_successes_total')).toBe(1);
    } finally {
      admin.close();
    }
    expect(await broker.stop()).toBe(0);
    const removed = await runCli(['users', 'remove', 'alice', '--data-dir', dataDir]);
    expect(removed).toMatchObject({ code: 0, stdout: 'removed user alice\n' });
    expect((await runCli(['users', 'remove', 'alice', '--data-dir', dataDir])).code).toBe(1);
    broker = await startBroker({ dataDir, http: '127.0.0.1:0', args: ['--auth', 'required', '--super-users', 'alice'] });
    const refused = await runCli(['topics', 'list', '--bootstrap', broker.bootstrap, '--user', 'alice'], undefined, 60_000, env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('SASL_AUTHENTICATION_FAILED');
    expect(broker.output()).toContain('no users yet');
  });
});
