/**
 * The broker's TLS pieces on their own: the principal a client certificate gives (Kafka's
 * convention, RFC 2253 order), what a bad file is reported as, and a handshake held open being
 * cut off (in-process, with a short handshake timeout).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { SettingsError } from '../../src/broker/settings.js';
import { anonymousPrincipal, loadTlsMaterial, principalFromSubject, principalOf } from '../../src/broker/tls.js';
import { Admin } from '../../src/client/admin.js';
import { tempDir } from '../helpers/broker-process.js';
import { makePki, type CertPair, type TestPki } from '../helpers/tls-certs.js';

let pki: TestPki;
let server: CertPair;
let alice: CertPair;
beforeAll(() => {
  pki = makePki('tls-unit');
  server = pki.issue('server', '/O=Rill Test/CN=broker', { server: true });
  alice = pki.issue('alice', '/C=DE/O=Acme, Inc./OU=payments/CN=alice');
});

describe('principal of a connection', () => {
  it('is User: + the subject DN, most specific RDN first, values escaped as node gives them (Kafka default)', () => {
    expect(principalFromSubject('CN=alice')).toBe('User:CN=alice');
    expect(principalFromSubject('C=DE\nO=Acme\\, Inc.\nOU=payments\nCN=alice')).toBe('User:CN=alice,OU=payments,O=Acme\\, Inc.,C=DE');
  });

  it('reads node\'s subject of a real certificate', () => {
    const certificate = new crypto.X509Certificate(fs.readFileSync(alice.cert));
    expect(principalFromSubject(certificate.subject)).toBe('User:CN=alice,OU=payments,O=Acme\\, Inc.,C=DE');
  });

  it('is anonymous on a plaintext socket', () => {
    expect(principalOf(new net.Socket())).toBe(anonymousPrincipal);
    expect(anonymousPrincipal).toBe('User:ANONYMOUS');
  });
});

describe('TLS files', () => {
  it('names the file at fault', () => {
    const dir = tempDir('tls-files');
    const empty = path.join(dir, 'empty.pem');
    fs.writeFileSync(empty, '');
    const attempt = (config: Parameters<typeof loadTlsMaterial>[1]): string => {
      try {
        loadTlsMaterial('rill', config);
      } catch (error) {
        expect(error).toBeInstanceOf(SettingsError);
        return (error as Error).message;
      }
      return 'loaded';
    };
    expect(attempt({ certFile: server.cert, keyFile: server.key, caFile: pki.ca.cert })).toBe('loaded');
    expect(attempt({ certFile: path.join(dir, 'nope.pem'), keyFile: server.key })).toMatch(/cannot read TLS certificate file .*nope\.pem/);
    expect(attempt({ certFile: server.cert, keyFile: empty })).toMatch(/TLS key file .*empty\.pem is not PEM/);
    expect(attempt({ certFile: server.key, keyFile: server.key })).toMatch(/TLS certificate file .*server-key\.pem is not valid/);
    expect(attempt({ certFile: server.cert, keyFile: alice.key })).toMatch(/TLS key file .*alice-key\.pem is not valid/);
    expect(attempt({ certFile: server.cert, keyFile: server.key, caFile: dir })).toMatch(/cannot read TLS CA file/);
  });
});

describe('TLS handshake timeout', () => {
  let broker: Broker | null = null;
  afterEach(async () => {
    await broker?.stop();
    broker = null;
  });

  it('closes a connection that never completes its handshake, and keeps serving others', async () => {
    const lines: string[] = [];
    broker = new Broker({
      dataDir: tempDir('tls-timeout'), port: 0, tlsHandshakeTimeoutMs: 300, log: (_level, message) => lines.push(message),
      listeners: [{ name: 'rill', host: '127.0.0.1', port: 0, tls: { certFile: server.cert, keyFile: server.key } }],
    });
    await broker.start();
    const startedMs = Date.now();
    const closedAfterMs = await new Promise<number>((resolve) => {
      const socket = net.connect(broker!.port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(Date.now() - startedMs));
    });
    expect(closedAfterMs).toBeGreaterThanOrEqual(250);
    expect(closedAfterMs).toBeLessThan(5000);
    expect(lines.some((line) => /TLS handshake on listener rill failed/.test(line))).toBe(true);
    expect(broker.metrics.errors.get('TLS_HANDSHAKE_FAILED')).toBe(1);
    const admin = new Admin({ bootstrap: `127.0.0.1:${broker.port}`, tls: { ca: fs.readFileSync(pki.ca.cert) } });
    try {
      expect(await admin.listTopics()).toEqual([]);
    } finally {
      admin.close();
    }
  });
});
