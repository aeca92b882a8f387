/**
 * TLS and SASL together on one broker process (`--tls-cert --tls-key --tls-ca --auth required`;
 * a CA without --tls-client-auth means client certificates requested): PLAIN works only here (over TLS), SCRAM works over TLS, an
 * anonymous TLS connection must still log in, and a verified client certificate is a login whose
 * principal (User: + the subject DN) the ACLs name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { Admin } from '../../src/client/admin.js';
import type { ClientOptions } from '../../src/client/cluster.js';
import { RillError } from '../../src/lib/errors.js';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { makePki, type CertPair, type TestPki } from '../helpers/tls-certs.js';

let pki: TestPki;
let server: CertPair;
let carol: CertPair;
let broker: BrokerProcess;
const password = 'correct horse battery staple';

beforeAll(async () => {
  pki = makePki();
  server = pki.issue('server', '/O=Rill Test/CN=broker', { server: true, serial: 5001 });
  carol = pki.issue('carol', '/O=Rill Test/CN=carol');
  const dataDir = tempDir('tls-auth');
  const added = await runCli(['users', 'add', 'alice', '--data-dir', dataDir], `${password}\n`);
  expect(added.code).toBe(0);
  broker = await startBroker({ dataDir, args: ['--tls-cert', server.cert, '--tls-key', server.key, '--tls-ca', pki.ca.cert, '--auth', 'required', '--super-users', 'alice'] });
  const admin = new Admin({ bootstrap: broker.bootstrap, tls: { ca: fs.readFileSync(pki.ca.cert) }, sasl: { username: 'alice', password } });
  await admin.createTopics([{ topic: 'payments', partitions: 1 }]);
  admin.close();
});

afterAll(async () => {
  await broker?.kill();
});

async function list(options: Partial<ClientOptions>): Promise<string[]> {
  const admin = new Admin({ bootstrap: broker.bootstrap, connectTimeoutMs: 5000, requestTimeoutMs: 5000, tls: { ca: fs.readFileSync(pki.ca.cert) }, ...options });
  try {
    return await admin.listTopics();
  } finally {
    admin.close();
  }
}

async function refusal(options: Partial<ClientOptions>): Promise<RillError> {
  try {
    await list(options);
  } catch (error) {
    return error as RillError;
  }
  throw new Error('expected a refusal');
}

describe('TLS and authentication together', () => {
  it('accepts PLAIN and SCRAM over TLS', async () => {
    expect(await list({ sasl: { mechanism: 'plain', username: 'alice', password } })).toEqual(['payments']);
    expect(await list({ sasl: { mechanism: 'scram-sha-256', username: 'alice', password } })).toEqual(['payments']);
    expect((await refusal({ sasl: { mechanism: 'plain', username: 'alice', password: 'wrong' } })).code).toBe('SASL_AUTHENTICATION_FAILED');
  });

  it('asks an anonymous TLS connection to log in', async () => {
    expect((await refusal({})).code).toBe('SASL_AUTHENTICATION_REQUIRED');
  });

  it('takes a verified client certificate as the login, and the ACLs name it by its subject', async () => {
    const asCarol = { tls: { ca: fs.readFileSync(pki.ca.cert), cert: fs.readFileSync(carol.cert), key: fs.readFileSync(carol.key) } };
    // Logged in (not SASL_AUTHENTICATION_REQUIRED), but no ACL lets carol see anything yet.
    expect(await list(asCarol)).toEqual([]);
    const added = await runCli(['acls', 'add', '--allow', 'User:CN=carol,O=Rill Test', '--operation', 'describe', '--topic', 'payments', '--bootstrap', broker.bootstrap, '--tls-ca', pki.ca.cert, '--user', 'alice'], undefined, 60_000, { ...process.env, RILL_PASSWORD: password });
    expect(added.code, added.stderr).toBe(0);
    expect(await list(asCarol)).toEqual(['payments']);
  });
});
