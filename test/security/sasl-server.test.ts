/**
 * The server's SASL state machine (security/sasl-server.ts), the per-address failure limiter,
 * and the SaslHandshake / SaslAuthenticate body decoders: driven directly, no sockets.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError, RillError } from '../../src/lib/errors.js';
import { AuthFailureLimiter, SaslServerSession, type CredentialLookup, type SaslOutcome } from '../../src/security/sasl-server.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { decodePlain, decodeSaslAuthenticateRequest, decodeSaslAuthenticateResponse, decodeSaslHandshakeRequest, decodeSaslHandshakeResponse, encodePlain, saslAuthBytesMax } from '../../src/wire/sasl.js';
import { ScramClient, scramCredential, type ScramCredential, type ScramMechanism } from '../../src/wire/scram.js';

const iterations = 4096;
const users = new Map<string, Map<ScramMechanism, ScramCredential>>([
  ['alice', new Map([
    ['SCRAM-SHA-256', scramCredential('SCRAM-SHA-256', 'secret', iterations)],
    ['SCRAM-SHA-512', scramCredential('SCRAM-SHA-512', 'secret', iterations)],
  ])],
]);
const store: CredentialLookup = { credential: (user, mechanism) => users.get(user)?.get(mechanism) ?? null };
const secret = Buffer.alloc(32, 7);

function session(tls = false): SaslServerSession {
  return new SaslServerSession(store, tls, secret);
}

function scramExchange(mechanism: ScramMechanism, user: string, password: string): { session: SaslServerSession; result: () => string | null } {
  const server = session();
  server.handshake(mechanism);
  const client = new ScramClient(mechanism, user, password);
  const serverFirst = (server.authenticate(Buffer.from(client.first())) as SaslOutcome).reply.toString();
  return {
    session: server,
    result: () => {
      const { reply, principal } = server.authenticate(Buffer.from(client.final(serverFirst))) as SaslOutcome;
      client.verify(reply.toString());
      return principal;
    },
  };
}

function codeOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    return (error as RillError).code;
  }
  return 'NONE';
}

async function asyncCodeOf(outcome: unknown): Promise<string> {
  try {
    await outcome;
  } catch (error) {
    return (error as RillError).code;
  }
  return 'NONE';
}

describe('SaslServerSession', () => {
  for (const mechanism of ['SCRAM-SHA-256', 'SCRAM-SHA-512'] as const) {
    it(`${mechanism}: the right password authenticates as User:alice, and the client verifies the server`, () => {
      const exchange = scramExchange(mechanism, 'alice', 'secret');
      expect(exchange.result()).toBe('User:alice');
      expect(exchange.session.state).toBe('authenticated');
    });

    it(`${mechanism}: a wrong password or an unknown user fails the same way, and the session is failed`, () => {
      for (const [user, password] of [['alice', 'wrong'], ['nobody', 'secret']] as const) {
        const exchange = scramExchange(mechanism, user, password);
        expect(codeOf(exchange.result)).toBe('SASL_AUTHENTICATION_FAILED');
        expect(exchange.session.state).toBe('failed');
      }
    });
  }

  it('offers PLAIN only on TLS, and checks its password against the stored credential, off the event loop', async () => {
    expect(codeOf(() => session(false).handshake('PLAIN'))).toBe('UNSUPPORTED_SASL_MECHANISM');
    const good = session(true);
    expect(good.handshake('PLAIN')).toContain('PLAIN');
    const checking = good.authenticate(encodePlain('alice', 'secret'));
    expect(checking).toBeInstanceOf(Promise);
    expect(good.state).toBe('plain-check');
    expect((await checking).principal).toBe('User:alice');
    for (const [user, password] of [['alice', 'guess'], ['nobody', 'secret']] as const) {
      const bad = session(true);
      bad.handshake('PLAIN');
      expect(await asyncCodeOf(bad.authenticate(encodePlain(user, password)))).toBe('SASL_AUTHENTICATION_FAILED');
      expect(bad.state).toBe('failed');
    }
    // A second message while the password is being checked ends the exchange.
    const eager = session(true);
    eager.handshake('PLAIN');
    const pending = eager.authenticate(encodePlain('alice', 'secret'));
    expect(codeOf(() => eager.authenticate(encodePlain('alice', 'secret')))).toBe('ILLEGAL_SASL_STATE');
    expect(await asyncCodeOf(pending)).toBe('ILLEGAL_SASL_STATE');
    expect(eager.state).toBe('failed');
  });

  it('refuses requests out of order (the transition table in the header comment)', () => {
    expect(codeOf(() => session().handshake('GSSAPI'))).toBe('UNSUPPORTED_SASL_MECHANISM');
    const early = session();
    expect(codeOf(() => early.authenticate(Buffer.from('n,,n=alice,r=abcdefghij')))).toBe('ILLEGAL_SASL_STATE');
    const twice = session();
    twice.handshake('SCRAM-SHA-256');
    expect(codeOf(() => twice.handshake('SCRAM-SHA-256'))).toBe('ILLEGAL_SASL_STATE');
    const done = scramExchange('SCRAM-SHA-256', 'alice', 'secret');
    done.result();
    expect(codeOf(() => done.session.authenticate(Buffer.from('anything')))).toBe('ILLEGAL_SASL_STATE');
    expect(codeOf(() => done.session.handshake('SCRAM-SHA-256'))).toBe('ILLEGAL_SASL_STATE');
  });

  it('a replayed client-final message fails against a new server nonce', () => {
    const client = new ScramClient('SCRAM-SHA-256', 'alice', 'secret');
    const first = session();
    first.handshake('SCRAM-SHA-256');
    const serverFirst = (first.authenticate(Buffer.from(client.first())) as SaslOutcome).reply.toString();
    const clientFinal = Buffer.from(client.final(serverFirst));
    expect((first.authenticate(clientFinal) as SaslOutcome).principal).toBe('User:alice');
    const replay = session();
    replay.handshake('SCRAM-SHA-256');
    replay.authenticate(Buffer.from(client.first()));
    expect(codeOf(() => replay.authenticate(clientFinal))).toBe('SASL_AUTHENTICATION_FAILED');
  });

  it('property: any sequence of arbitrary messages ends authenticated only through a valid exchange, and never throws anything but RillError', async () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('handshake' as const), mechanism: fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-512', 'PLAIN', 'x', '') }),
      fc.record({ kind: fc.constant('auth' as const), bytes: fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.string({ maxLength: 200 }).map((s) => new TextEncoder().encode(`n,,n=alice,r=${s}`))) }),
    );
    await fc.assert(fc.asyncProperty(fc.boolean(), fc.array(step, { maxLength: 6 }), async (tls, steps) => {
      const server = session(tls);
      for (const s of steps) {
        try {
          if (s.kind === 'handshake') server.handshake(s.mechanism);
          else await server.authenticate(Buffer.from(s.bytes));
        } catch (error) {
          expect(error).toBeInstanceOf(RillError);
        }
        expect(server.state).not.toBe('authenticated');
      }
    }), { numRuns: 300 });
  });
});

describe('AuthFailureLimiter', () => {
  it('refuses an address after failuresMax failures until its window ends; other addresses are unaffected', () => {
    const limiter = new AuthFailureLimiter(3, 60_000, 100);
    for (let i = 0; i < 3; i++) {
      expect(limiter.blockedForMs('10.0.0.1', 1000 + i)).toBe(0);
      limiter.recordFailure('10.0.0.1', 1000 + i);
    }
    expect(limiter.blockedForMs('10.0.0.1', 2000)).toBe(59_000);
    expect(limiter.blockedForMs('10.0.0.2', 2000)).toBe(0);
    expect(limiter.blockedForMs('10.0.0.1', 61_000)).toBe(0);
    limiter.recordFailure('10.0.0.1', 61_000);
    expect(limiter.blockedForMs('10.0.0.1', 61_001)).toBe(0);
  });

  it('remembers at most addressesMax addresses', () => {
    const limiter = new AuthFailureLimiter(1, 60_000, 10);
    for (let i = 0; i < 100; i++) limiter.recordFailure(`10.0.0.${i}`, i);
    expect(limiter.size).toBe(10);
    expect(limiter.blockedForMs('10.0.0.99', 100)).toBeGreaterThan(0);
  });
});

describe('SaslHandshake and SaslAuthenticate bodies', () => {
  it('round-trip through MessagePack', () => {
    const roundTrip = <T>(value: unknown, decode: (v: unknown) => T): T => decode(decodeMsgpack(encodeMsgpack(value)));
    expect(roundTrip({ mechanism: 'SCRAM-SHA-512' }, decodeSaslHandshakeRequest)).toEqual({ mechanism: 'SCRAM-SHA-512' });
    expect(roundTrip({ mechanisms: ['SCRAM-SHA-256'] }, decodeSaslHandshakeResponse)).toEqual({ mechanisms: ['SCRAM-SHA-256'] });
    expect(roundTrip({ authBytes: Buffer.from('n,,n=a,r=b') }, decodeSaslAuthenticateRequest).authBytes.toString()).toBe('n,,n=a,r=b');
    expect(roundTrip({ authBytes: Buffer.alloc(0) }, decodeSaslAuthenticateResponse).authBytes.length).toBe(0);
  });

  it('reject oversized and mistyped fields with MALFORMED_REQUEST / MALFORMED_RESPONSE', () => {
    expect(() => decodeSaslAuthenticateRequest({ authBytes: Buffer.alloc(saslAuthBytesMax + 1) })).toThrow(/MALFORMED_REQUEST.*at most/);
    expect(() => decodeSaslAuthenticateRequest({ authBytes: 'text' })).toThrow(DecodeError);
    expect(() => decodeSaslHandshakeRequest({ mechanism: 'x'.repeat(65) })).toThrow(DecodeError);
    expect(() => decodeSaslHandshakeResponse({ mechanisms: Array(17).fill('A') })).toThrow(/MALFORMED_RESPONSE/);
    expect(() => decodePlain(Buffer.from('alice\u0000secret'))).toThrow(DecodeError);
    expect(() => decodePlain(Buffer.from('bob\u0000alice\u0000secret'))).toThrow(DecodeError);
    expect(decodePlain(encodePlain('alice', 'se\u00e7ret'))).toEqual({ user: 'alice', password: 'se\u00e7ret' });
  });

  it('property: mutated valid bodies either decode to bounded values or throw DecodeError, never anything else', () => {
    const valid = [
      encodeMsgpack({ mechanism: 'SCRAM-SHA-256' }),
      encodeMsgpack({ authBytes: Buffer.from('n,,n=alice,r=0123456789') }),
    ];
    const decoders = [decodeSaslHandshakeRequest, decodeSaslAuthenticateRequest, decodeSaslHandshakeResponse, decodeSaslAuthenticateResponse];
    fc.assert(fc.property(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(), (bytes, flips, cut) => {
      const mutated = Buffer.from(bytes);
      for (const [at, value] of flips) mutated[at % mutated.length] = value;
      const input = mutated.subarray(0, mutated.length - (cut % 3));
      for (const decode of decoders) {
        try {
          const value = decode(decodeMsgpack(input));
          const text = JSON.stringify(value, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.length : v));
          expect(text.length).toBeLessThan(2 * saslAuthBytesMax);
        } catch (error) {
          expect(error).toBeInstanceOf(DecodeError);
        }
      }
    }), { numRuns: 1000 });
  });
});
