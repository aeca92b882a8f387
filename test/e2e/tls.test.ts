/**
 * TLS on the rill listener, with real broker processes and certificates made by openssl in the
 * test: produce and consume over TLS, an untrusted broker certificate, mTLS (no certificate
 * refused, a certificate's subject becomes the principal), plaintext and TLS clients on the
 * wrong listener, SIGHUP re-reading the certificate, TLS 1.1 refused, and bad files refused
 * before the data directory is touched. (A handshake held open: test/broker/tls.test.ts.)
 */
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { Producer } from '../../src/client/producer.js';
import { PartitionReader } from '../../src/client/reader.js';
import type { ClientTlsOptions } from '../../src/client/connection.js';
import { RillError } from '../../src/lib/errors.js';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { makeCa, makePki, type CertPair, type TestPki } from '../helpers/tls-certs.js';

let pki: TestPki;
let server: CertPair;
let alice: CertPair;
let otherCa: TestPki;

beforeAll(() => {
  pki = makePki();
  server = pki.issue('server', '/O=Rill Test/CN=broker', { server: true, serial: 4001 });
  alice = pki.issue('alice', '/O=Rill Test/CN=alice');
  otherCa = makeCa(pki.dir, 'other-ca', '/CN=Someone Else CA');
});

const running: BrokerProcess[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((b) => b.kill()));
});

async function tlsBroker(extra: string[] = []): Promise<BrokerProcess> {
  const broker = await startBroker({ args: ['--tls-cert', server.cert, '--tls-key', server.key, ...extra] });
  running.push(broker);
  return broker;
}

function read(file: string): Buffer {
  return fs.readFileSync(file);
}

async function failure(action: () => Promise<unknown>): Promise<RillError> {
  try {
    await action();
  } catch (error) {
    return error as RillError;
  }
  throw new Error('expected a failure');
}

async function listTopics(bootstrap: string, tlsOptions: ClientTlsOptions | undefined): Promise<string[]> {
  const admin = new Admin({ bootstrap, connectTimeoutMs: 5000, requestTimeoutMs: 5000, ...(tlsOptions === undefined ? {} : { tls: tlsOptions }) });
  try {
    return await admin.listTopics();
  } finally {
    admin.close();
  }
}

/** The serial number and subject of the certificate a new TLS connection is shown. */
function peerCertificate(port: number): Promise<{ serial: string; subject: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: read(pki.ca.cert) }, () => {
      const cert = socket.getPeerX509Certificate()!;
      socket.destroy();
      resolve({ serial: cert.serialNumber, subject: cert.subject });
    });
    socket.once('error', reject);
  });
}

describe('TLS on the rill listener', () => {
  it('produces and consumes over TLS with the right CA, and the CLI speaks it with --tls-ca', async () => {
    const broker = await tlsBroker();
    expect(broker.output()).toContain('TLS, client certificates none');
    const tlsOptions = { ca: read(pki.ca.cert) };
    const admin = new Admin({ bootstrap: broker.bootstrap, tls: tlsOptions });
    await admin.createTopics([{ topic: 'secure', partitions: 1 }]);
    admin.close();
    const producer = new Producer({ bootstrap: broker.bootstrap, tls: tlsOptions });
    await Promise.all(Array.from({ length: 20 }, (_, i) => producer.send({ topic: 'secure', key: `k${i}`, value: `v${i}` })));
    await producer.close();
    const reader = new PartitionReader({ bootstrap: broker.bootstrap, tls: tlsOptions, topic: 'secure', from: 'earliest', stopAtEnd: true });
    const values: string[] = [];
    for await (const message of reader) values.push(message.value!.toString());
    expect(values).toEqual(Array.from({ length: 20 }, (_, i) => `v${i}`));

    const listed = await runCli(['topics', 'list', '-b', broker.bootstrap, '--tls-ca', pki.ca.cert], undefined, 30_000);
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('secure');
    const tlsArgs = ['-b', broker.bootstrap, '--tls-ca', pki.ca.cert];
    const produced = await runCli(['produce', 'secure', ...tlsArgs], 'cli-1\ncli-2\n', 30_000);
    expect(produced.stderr).toContain('produced 2 of 2 records to secure');
    expect(produced.code).toBe(0);
    const consumed = await runCli(['consume', 'secure', '--from-beginning', '--exit-at-end', ...tlsArgs], undefined, 30_000);
    expect(consumed.code).toBe(0);
    expect(consumed.stdout.trim().split('\n').slice(-2)).toEqual(['cli-1', 'cli-2']);
  });

  it('refuses a broker certificate the client does not trust, saying which CA to give', async () => {
    const broker = await tlsBroker();
    const error = await failure(() => listTopics(broker.bootstrap, { ca: read(otherCa.ca.cert) }));
    expect(error).toBeInstanceOf(RillError);
    expect(error.code).toBe('INVALID_CONFIG');
    expect(error.retriable).toBe(false);
    expect(error.message).toMatch(/certificate of 127\.0\.0\.1:\d+ is not trusted/);
    expect(error.message).toContain('--tls-ca');
    const cli = await runCli(['topics', 'list', '-b', broker.bootstrap, '--tls-ca', otherCa.ca.cert], undefined, 30_000);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/not trusted/);
    await waitFor(() => broker.output().includes('TLS handshake on listener rill failed'));
  });

  it('mTLS with client auth required: no certificate is refused, one signed by the CA gets its subject as principal', async () => {
    const broker = await tlsBroker(['--tls-ca', pki.ca.cert, '--tls-client-auth', 'required', '--log-level', 'debug']);
    const error = await failure(() => listTopics(broker.bootstrap, { ca: read(pki.ca.cert) }));
    expect(error.code).toBe('INVALID_CONFIG');
    expect(error.message).toContain('--tls-cert FILE --tls-key FILE');
    await expect(listTopics(broker.bootstrap, { ca: read(pki.ca.cert), cert: read(alice.cert), key: read(alice.key) })).resolves.toBeDefined();
    await waitFor(() => broker.output().includes('as User:CN=alice,O=Rill Test'));
    const cli = await runCli(['topics', 'list', '-b', broker.bootstrap, '--tls-ca', pki.ca.cert, '--tls-cert', alice.cert, '--tls-key', alice.key], undefined, 30_000);
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
  });

  it('client auth requested: a certificate from another CA, or none, gets in as User:ANONYMOUS', async () => {
    const broker = await tlsBroker(['--tls-ca', pki.ca.cert, '--tls-client-auth', 'requested', '--log-level', 'debug']);
    const mallory = otherCa.issue('mallory', '/CN=mallory');
    await expect(listTopics(broker.bootstrap, { ca: read(pki.ca.cert), cert: read(mallory.cert), key: read(mallory.key) })).resolves.toBeDefined();
    await expect(listTopics(broker.bootstrap, { ca: read(pki.ca.cert) })).resolves.toBeDefined();
    await expect(listTopics(broker.bootstrap, { ca: read(pki.ca.cert), cert: read(alice.cert), key: read(alice.key) })).resolves.toBeDefined();
    await waitFor(() => broker.output().includes('as User:CN=alice,O=Rill Test'));
    expect(broker.output().match(/ as User:ANONYMOUS/g)).toHaveLength(2);
    expect(broker.output()).not.toContain('mallory');
  });

  it('a plaintext client on the TLS listener is told the broker expects TLS; the broker keeps serving TLS clients', async () => {
    const broker = await tlsBroker();
    const error = await failure(() => listTopics(broker.bootstrap, undefined));
    expect(error.code).toBe('NOT_A_RILL_BROKER');
    expect(error.message).toContain('the broker expects TLS');
    const cli = await runCli(['topics', 'list', '-b', broker.bootstrap], undefined, 30_000);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain('the broker expects TLS');
    await expect(listTopics(broker.bootstrap, { ca: read(pki.ca.cert) })).resolves.toBeDefined();
    await waitFor(() => broker.output().includes('the client does not speak TLS (a plaintext client on a TLS listener)'));
  });

  it('a TLS client on a plaintext listener gets a clear error; the broker logs it and keeps serving', async () => {
    const broker = await startBroker();
    running.push(broker);
    const error = await failure(() => listTopics(broker.bootstrap, { ca: read(pki.ca.cert) }));
    expect(error.code).toBe('INVALID_CONFIG');
    expect(error.message).toMatch(/is its listener plaintext\?/);
    await expect(listTopics(broker.bootstrap, undefined)).resolves.toBeDefined();
    await waitFor(() => broker.output().includes('a TLS client on plaintext listener rill'));
  });

  it('refuses TLS 1.1', async () => {
    const broker = await tlsBroker();
    const outcome = await new Promise<string>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: broker.port, ca: read(pki.ca.cert), minVersion: 'TLSv1', maxVersion: 'TLSv1.1' }, () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (e: NodeJS.ErrnoException) => resolve(`refused ${e.code ?? e.message}`));
    });
    expect(outcome).toMatch(/^refused/);
    await expect(listTopics(broker.bootstrap, { ca: read(pki.ca.cert) })).resolves.toBeDefined();
  });

  it('re-reads the certificate on SIGHUP: new connections see the new one, open ones keep working', async () => {
    const dir = tempDir('tls-reload');
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    fs.copyFileSync(server.cert, cert);
    fs.copyFileSync(server.key, key);
    const broker = await startBroker({ args: ['--tls-cert', cert, '--tls-key', key] });
    running.push(broker);
    expect((await peerCertificate(broker.port)).subject).toContain('CN=broker');
    const admin = new Admin({ bootstrap: broker.bootstrap, tls: { ca: read(pki.ca.cert) } });
    try {
      await admin.createTopics([{ topic: 'before', partitions: 1 }]);
      const renewed = pki.issue('server-renewed', '/O=Rill Test/CN=broker-renewed', { server: true, serial: 4002 });
      fs.copyFileSync(renewed.cert, cert);
      fs.copyFileSync(renewed.key, key);
      broker.child.kill('SIGHUP');
      await waitFor(() => broker.output().includes('TLS certificates reloaded'));
      const seen = await peerCertificate(broker.port);
      expect(seen.subject).toContain('CN=broker-renewed');
      expect(seen.serial).toBe('0FA2');
      // The connection opened before the reload is the same one, and still works.
      await admin.createTopics([{ topic: 'after', partitions: 1 }]);
      expect((await admin.listTopics()).length).toBe(2);

      // A bad file on SIGHUP: the broker says so and keeps the certificate it has.
      fs.writeFileSync(key, 'not a key');
      broker.child.kill('SIGHUP');
      await waitFor(() => broker.output().includes('TLS certificates NOT reloaded'));
      await waitFor(() => broker.output().includes(key));
      expect((await peerCertificate(broker.port)).subject).toContain('CN=broker-renewed');
    } finally {
      admin.close();
    }
  });
});

describe('TLS configuration mistakes', () => {
  it('an unreadable or invalid certificate or key is exit 2 naming the file, before the data directory is touched', async () => {
    const dataDir = tempDir('tls-bad');
    const garbage = path.join(pki.dir, 'garbage.pem');
    fs.writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    const missing = path.join(pki.dir, 'missing.pem');
    const cases: [string[], string][] = [
      [['--tls-cert', missing, '--tls-key', server.key], missing],
      [['--tls-cert', garbage, '--tls-key', server.key], garbage],
      [['--tls-cert', server.cert, '--tls-key', alice.key], alice.key],
      [['--tls-cert', server.cert], '--tls-key'],
      [['--tls-cert', server.cert, '--tls-key', server.key, '--tls-client-auth', 'required'], '--tls-ca'],
    ];
    for (const [args, named] of cases) {
      const result = await runCli(['broker', '--data-dir', dataDir, '--port', '0', ...args], undefined, 30_000);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(named);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(fs.readdirSync(dataDir)).toEqual([]);
    }
  });

  it('takes the files from RILL_TLS_* and from listeners.NAME.tls in the config file', async () => {
    const viaEnv = await startBroker({ env: { ...process.env, RILL_TLS_CERT: server.cert, RILL_TLS_KEY: server.key } });
    running.push(viaEnv);
    await expect(listTopics(viaEnv.bootstrap, { ca: read(pki.ca.cert) })).resolves.toBeDefined();
    const config = path.join(pki.dir, 'rill.yaml');
    fs.writeFileSync(config, `listeners:\n  rill:\n    listen: 127.0.0.1:0\n    tls:\n      cert: ${server.cert}\n      key: ${server.key}\n      ca: ${pki.ca.cert}\n      clientAuth: required\n`);
    const viaFile = await startBroker({ port: null, args: ['--config', config] });
    running.push(viaFile);
    expect(viaFile.output()).toContain('client certificates required');
    await expect(listTopics(viaFile.bootstrap, { ca: read(pki.ca.cert), cert: read(alice.cert), key: read(alice.key) })).resolves.toBeDefined();
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadlineMs = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadlineMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
