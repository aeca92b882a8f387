/** SCRAM exchanges: RFC 7677's vector, both mechanisms end to end, and hostile messages. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScramClient, ScramError, ScramServer, scramCredential, scramMechanisms, type ScramCredential, type ScramMechanism } from '../../src/wire/scram.js';

// RFC 7677 section 3: SCRAM-SHA-256, user "user", password "pencil".
const rfc = {
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};
const secret = Buffer.from('unknown-user-secret');

function errorOf(action: () => unknown): ScramError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ScramError);
    return error as ScramError;
  }
  throw new Error('expected a ScramError');
}

function exchange(mechanism: ScramMechanism, stored: Map<string, ScramCredential>, user: string, password: string): { user: string } {
  const client = new ScramClient(mechanism, user, password);
  const server = new ScramServer(mechanism, (name) => stored.get(name) ?? null, secret);
  const serverFirst = server.first(client.first());
  const result = server.final(client.final(serverFirst));
  client.verify(result.serverFinal);
  return { user: result.user };
}

describe('SCRAM', () => {
  it('reproduces RFC 7677 on the client side', () => {
    const client = new ScramClient('SCRAM-SHA-256', 'user', 'pencil', rfc.clientNonce);
    expect(client.first()).toBe(rfc.clientFirst);
    expect(client.final(rfc.serverFirst)).toBe(rfc.clientFinal);
    expect(() => client.verify(rfc.serverFinal)).not.toThrow();
  });

  it('reproduces RFC 7677 on the server side, from the stored credential only', () => {
    const credential = scramCredential('SCRAM-SHA-256', 'pencil', 4096, rfc.salt);
    const server = new ScramServer('SCRAM-SHA-256', (name) => (name === 'user' ? credential : null), secret, rfc.serverNonce);
    expect(server.first(rfc.clientFirst)).toBe(rfc.serverFirst);
    expect(server.final(rfc.clientFinal)).toEqual({ user: 'user', serverFinal: rfc.serverFinal });
  });

  it.each(scramMechanisms)('%s: the right password authenticates, a wrong one or an unknown user does not', (mechanism) => {
    const stored = new Map([['alice', scramCredential(mechanism, 'correct horse')], ['a,b=c', scramCredential(mechanism, 'pw')]]);
    expect(exchange(mechanism, stored, 'alice', 'correct horse')).toEqual({ user: 'alice' });
    expect(exchange(mechanism, stored, 'a,b=c', 'pw')).toEqual({ user: 'a,b=c' });
    expect(errorOf(() => exchange(mechanism, stored, 'alice', 'wrong')).message).toBe('authentication failed');
    expect(errorOf(() => exchange(mechanism, stored, 'mallory', 'anything')).message).toBe('authentication failed');
  });

  it('answers an unknown user like a known one, with a salt stable per name', () => {
    const stored = new Map([['alice', scramCredential('SCRAM-SHA-512', 'pw')]]);
    const firstFor = (user: string): string => new ScramServer('SCRAM-SHA-512', (n) => stored.get(n) ?? null, secret, 'servernonce').first(`n,,n=${user},r=clientnonce`);
    expect(firstFor('mallory')).toMatch(/^r=clientnonceservernonce,s=[A-Za-z0-9+/=]+,i=\d+$/);
    expect(firstFor('mallory')).toBe(firstFor('mallory'));
    expect(firstFor('mallory')).not.toBe(firstFor('eve'));
  });

  it('stores no password: the credential does not contain it and differs per salt', () => {
    const a = scramCredential('SCRAM-SHA-256', 'hunter2');
    const b = scramCredential('SCRAM-SHA-256', 'hunter2');
    expect(a.storedKey.equals(b.storedKey)).toBe(false);
    expect(JSON.stringify(a)).not.toContain('hunter2');
  });

  it('refuses replays, wrong nonces, channel binding and messages out of order', () => {
    const credential = scramCredential('SCRAM-SHA-256', 'pencil', 4096, rfc.salt);
    const server = (): ScramServer => new ScramServer('SCRAM-SHA-256', () => credential, secret, rfc.serverNonce);
    // A recorded client-final replayed against a new exchange (new server nonce) fails.
    const fresh = new ScramServer('SCRAM-SHA-256', () => credential, secret, 'another-server-nonce');
    fresh.first(rfc.clientFirst);
    expect(errorOf(() => fresh.final(rfc.clientFinal)).message).toContain('nonce does not match');
    // The same exchange cannot be finished twice.
    const once = server();
    once.first(rfc.clientFirst);
    once.final(rfc.clientFinal);
    expect(errorOf(() => once.final(rfc.clientFinal)).message).toContain('out of order');
    expect(errorOf(() => server().final(rfc.clientFinal)).message).toContain('out of order');
    expect(errorOf(() => server().first('y,,n=user,r=abcdefgh')).message).toContain('channel binding');
    expect(errorOf(() => server().first('p=tls-unique,,n=user,r=abcdefgh')).message).toContain('channel binding');
    const tampered = server();
    tampered.first(rfc.clientFirst);
    expect(errorOf(() => tampered.final(rfc.clientFinal.replace('c=biws', 'c=eSws'))).message).toContain('channel binding');
  });

  it('the client refuses a server that does not know the credential', () => {
    const client = new ScramClient('SCRAM-SHA-256', 'user', 'pencil', rfc.clientNonce);
    client.final(rfc.serverFirst);
    expect(errorOf(() => client.verify('v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')).message).toContain('does not match');
    expect(errorOf(() => new ScramClient('SCRAM-SHA-256', 'user', 'pencil', rfc.clientNonce).final('r=someoneelse,s=AAAA,i=4096')).message).toContain('nonce');
    expect(errorOf(() => new ScramClient('SCRAM-SHA-256', 'user', 'pencil', rfc.clientNonce).final(`r=${rfc.clientNonce}x,s=AAAA,i=1`)).message).toContain('iteration');
  });

  it('any bytes from a client give a ScramError, never another exception (property)', () => {
    const credential = scramCredential('SCRAM-SHA-256', 'pencil', 4096, rfc.salt);
    const message = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.constantFrom(rfc.clientFirst, rfc.clientFinal).chain((base) => fc.tuple(fc.nat(base.length), fc.string({ maxLength: 10 })).map(([at, junk]) => base.slice(0, at) + junk + base.slice(at))),
      fc.string({ minLength: 5000, maxLength: 6000 }),
    );
    fc.assert(fc.property(message, message, (first, final) => {
      const server = new ScramServer('SCRAM-SHA-256', () => credential, secret, rfc.serverNonce);
      for (const step of [() => server.first(first), () => server.final(final)]) {
        try {
          step();
        } catch (error) {
          if (!(error instanceof ScramError)) throw error;
        }
      }
    }), { numRuns: 2000 });
  });
});
