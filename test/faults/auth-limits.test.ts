/**
 * The broker's defences around authentication, in process over real TCP (short delays, so the
 * test does not wait for the defaults): the unauthenticated-connection timeout, the per-address
 * failure limit, a failure delay, and the handshake on a broker that does not require auth.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { authFailuresMax } from '../../src/broker/auth.js';
import { Admin } from '../../src/client/admin.js';
import { errorCodeOf } from '../../src/lib/errors.js';
import type { LogFields } from '../../src/lib/log.js';
import { CredentialStore } from '../../src/security/credentials.js';
import { ApiKey } from '../../src/wire/apis.js';
import { tempDir } from '../helpers/broker-process.js';
import { RawClient } from '../helpers/raw-client.js';

const password = 'hunter2-but-longer';
const failureDelayMs = 200;

function withUser(prefix: string): string {
  const dataDir = tempDir(prefix);
  CredentialStore.open(dataDir).upsert('alice', password, 4096);
  return dataDir;
}

describe('authentication limits (in-process broker, auth required)', () => {
  const lines: { level: string; message: string; fields: LogFields | undefined }[] = [];
  const broker = new Broker({ dataDir: withUser('auth-limits'), port: 0, log: (level, message, fields) => lines.push({ level, message, fields }), auth: { required: true, failureDelayMs, timeoutMs: 300 } });

  beforeAll(async () => {
    await broker.start();
  });

  afterAll(async () => {
    await broker.stop();
  });

  it('closes a connection that does not authenticate in time, and counts it', async () => {
    const raw = await RawClient.connect(broker.port);
    raw.msgpackRequest(ApiKey.ApiVersions, 1, {});
    expect((await raw.reply(1)).errorCode).toBe(0);
    expect(await raw.waitClosed(3000)).toBe(true);
    expect(broker.metrics.authTimeouts).toBeGreaterThanOrEqual(1);
  });

  it('answers a failure only after the delay; after the limit the address is refused at once', async () => {
    const failuresBefore = broker.metrics.authFailures;
    let first = true;
    for (let i = 0; i < authFailuresMax; i++) {
      const admin = new Admin({ bootstrap: `127.0.0.1:${broker.port}`, sasl: { mechanism: 'scram-sha-256', username: 'alice', password: `guess-${i}` } });
      const startedMs = Date.now();
      const error = await admin.listTopics().catch((e: unknown) => e as { code: string });
      admin.close();
      expect(error.code).toBe('SASL_AUTHENTICATION_FAILED');
      if (first) expect(Date.now() - startedMs).toBeGreaterThanOrEqual(failureDelayMs - 20);
      first = false;
    }
    // Even the right password is refused now, at the handshake, without trying it.
    const raw = await RawClient.connect(broker.port);
    raw.msgpackRequest(ApiKey.SaslHandshake, 1, { mechanism: 'SCRAM-SHA-512' });
    const refused = await raw.reply(1);
    expect(refused.errorCode).toBe(errorCodeOf('SASL_AUTHENTICATION_FAILED'));
    expect(raw.message(refused)).toMatch(/too many failed authentications from 127\.0\.0\.1; try again in \d+ s/);
    expect(await raw.waitClosed(3000)).toBe(true);
    expect(broker.metrics.authFailures).toBe(failuresBefore + authFailuresMax + 1);
    const logged = lines.filter((l) => l.fields?.['condition'] === 'auth_failures');
    expect(logged.length).toBeGreaterThanOrEqual(1);
    for (const line of lines) expect(JSON.stringify(line)).not.toContain(password);
    for (const line of lines) expect(JSON.stringify(line)).not.toContain('guess-');
  });
});

describe('a broker that does not require authentication', () => {
  const broker = new Broker({ dataDir: withUser('auth-optional'), port: 0, log: () => {} });

  beforeAll(async () => {
    await broker.start();
  });

  afterAll(async () => {
    await broker.stop();
  });

  it('serves clients without credentials, and authenticates clients that bring them', async () => {
    const anonymous = new Admin({ bootstrap: `127.0.0.1:${broker.port}` });
    const named = new Admin({ bootstrap: `127.0.0.1:${broker.port}`, sasl: { username: 'alice', password } });
    try {
      await anonymous.createTopics([{ topic: 'open', partitions: 1 }]);
      expect(await named.listTopics()).toEqual(['open']);
      expect(broker.metrics.authSuccesses).toBe(1);
    } finally {
      anonymous.close();
      named.close();
    }
  });
});

describe('hostile SASL input against a live broker', () => {
  const broker = new Broker({ dataDir: withUser('auth-hostile'), port: 0, log: () => {}, auth: { required: true, failureDelayMs: 5, timeoutMs: 5000 } });

  beforeAll(async () => {
    await broker.start();
  });

  afterAll(async () => {
    await broker.stop();
  });

  it('random handshakes and auth bytes get an error reply and a closed connection, each counted; the broker keeps serving', async () => {
    const mechanisms = ['SCRAM-SHA-256', 'SCRAM-SHA-512', 'PLAIN', '', 'x'.repeat(100)];
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let failuresExpected = 0;
    for (let i = 0; i < 40; i++) {
      const raw = await RawClient.connect(broker.port);
      const mechanism = mechanisms[random(mechanisms.length)]!;
      raw.msgpackRequest(ApiKey.SaslHandshake, 1, i % 7 === 0 ? [mechanism] : { mechanism });
      const handshake = await raw.reply(1);
      if (handshake.errorCode === 0) {
        const bodies: unknown[] = [
          { authBytes: Buffer.from(Array.from({ length: random(300) }, () => random(256))) },
          { authBytes: Buffer.from(`n,,n=alice,r=${'A'.repeat(random(20))}`) },
          { authBytes: 'not bin' },
          { authBytes: Buffer.alloc(5000, 0x41) },
          { authBytes: Buffer.from('c=biws,r=abc,p=AAAA') },
          42,
        ];
        raw.msgpackRequest(ApiKey.SaslAuthenticate, 2, bodies[random(bodies.length)]);
        const reply = await raw.reply(2).catch(() => null);
        if (reply !== null && reply.errorCode === 0) {
          // A client-first message that parsed: the next (garbage) step fails.
          raw.msgpackRequest(ApiKey.SaslAuthenticate, 3, { authBytes: Buffer.from('c=biws,r=x,p=AAAA') });
          expect((await raw.reply(3)).errorCode).toBe(errorCodeOf('SASL_AUTHENTICATION_FAILED'));
        } else {
          expect(reply?.errorCode).toBe(errorCodeOf('SASL_AUTHENTICATION_FAILED'));
        }
        failuresExpected++;
        expect(await raw.waitClosed(3000)).toBe(true);
      } else {
        expect([errorCodeOf('UNSUPPORTED_SASL_MECHANISM'), errorCodeOf('MALFORMED_REQUEST'), errorCodeOf('SASL_AUTHENTICATION_FAILED')]).toContain(handshake.errorCode);
        if (handshake.errorCode === errorCodeOf('SASL_AUTHENTICATION_FAILED')) failuresExpected++;
        raw.close();
      }
    }
    expect(broker.metrics.authFailures).toBe(failuresExpected);
    expect(failuresExpected).toBeGreaterThan(authFailuresMax);
    const raw = await RawClient.connect(broker.port);
    raw.msgpackRequest(ApiKey.ApiVersions, 1, {});
    expect((await raw.reply(1)).errorCode).toBe(0);
    raw.close();
  });
});
