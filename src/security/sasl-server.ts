/**
 * The server's side of authentication on one connection, as a pure state machine: no sockets,
 * no timers, no logging. The broker (broker/auth.ts) feeds it the SaslHandshake and
 * SaslAuthenticate bodies, and adds what needs a clock: the failure delay, the per-address limit,
 * the unauthenticated-connection timeout, the log lines and the counts.
 *
 *   state          request                                   next state        reply
 *   start          SaslHandshake(offered mechanism)          handshaken        mechanisms
 *   start          SaslHandshake(other)                      start             UNSUPPORTED_SASL_MECHANISM
 *   handshaken     SaslAuthenticate(SCRAM client-first)      scram-final       server-first
 *   handshaken     SaslAuthenticate(PLAIN)                   plain-check       (checking the password: async)
 *   plain-check    (the password matched)                    authenticated     (empty)
 *   plain-check    SaslAuthenticate                          failed            ILLEGAL_SASL_STATE
 *   scram-final    SaslAuthenticate(client-final, good)      authenticated     server-final
 *   handshaken,
 *   scram-final,
 *   plain-check    bad message, proof or password            failed            SASL_AUTHENTICATION_FAILED
 *   start          SaslAuthenticate                          failed            ILLEGAL_SASL_STATE
 *   authenticated  SaslHandshake / SaslAuthenticate          authenticated     ILLEGAL_SASL_STATE
 *   failed         anything                                  failed            ILLEGAL_SASL_STATE
 *
 * `failed` is final: the broker closes the connection after the reply, so a client starts a new
 * exchange (with new nonces) on a new connection, and a replayed SCRAM message meets a server
 * nonce it was not computed for. Failure reasons are safe to log: they never hold a password,
 * hash or salt. A PLAIN password is checked by deriving its SCRAM-SHA-512 credential (PBKDF2, ~10 ms
 * of CPU): on the thread pool, so `authenticate` answers PLAIN with a promise, SCRAM at once.
 */
import crypto from 'node:crypto';
import { DecodeError, RillError } from '../lib/errors.js';
import { decodePlain, type SaslMechanismName } from '../wire/sasl.js';
import { ScramError, ScramServer, scramCredentialAsync, scramIterationsDefault, type ScramCredential, type ScramMechanism } from '../wire/scram.js';

export type SaslState = 'start' | 'handshaken' | 'scram-final' | 'plain-check' | 'authenticated' | 'failed';

export interface SaslOutcome {
  reply: Buffer;
  principal: string | null;
}

/** Where credentials come from (the CredentialStore). */
export interface CredentialLookup {
  credential(user: string, mechanism: ScramMechanism): ScramCredential | null;
}

/** An authentication that failed; `reason` is safe to log and to send. */
export class SaslFailure extends RillError {
  constructor(readonly reason: string, readonly user: string | null) {
    super('SASL_AUTHENTICATION_FAILED', reason);
  }
}

/** Mechanisms a listener offers: PLAIN sends the password itself, so only where TLS protects it. */
export function offeredMechanisms(tls: boolean): SaslMechanismName[] {
  return tls ? ['SCRAM-SHA-256', 'SCRAM-SHA-512', 'PLAIN'] : ['SCRAM-SHA-256', 'SCRAM-SHA-512'];
}

export class SaslServerSession {
  private current: SaslState = 'start';
  private mechanism: SaslMechanismName | null = null;
  private scram: ScramServer | null = null;
  /** The user named in the exchange so far (for log lines), or null. */
  user: string | null = null;

  constructor(
    private readonly credentials: CredentialLookup,
    private readonly tls: boolean,
    private readonly unknownUserSecret: Buffer,
    private readonly serverNonce?: string,
  ) {}

  get state(): SaslState {
    return this.current;
  }

  /** SaslHandshake: returns the offered mechanisms when `mechanism` is one of them. */
  handshake(mechanism: string): SaslMechanismName[] {
    const offered = offeredMechanisms(this.tls);
    if (this.current !== 'start') throw new RillError('ILLEGAL_SASL_STATE', `SaslHandshake in state ${this.current}; a connection authenticates once`);
    const chosen = offered.find((m) => m === mechanism);
    if (chosen === undefined) {
      const plainHint = mechanism === 'PLAIN' && !this.tls ? 'PLAIN is offered only on TLS connections (it sends the password itself); ' : '';
      throw new RillError('UNSUPPORTED_SASL_MECHANISM', `${plainHint}mechanism "${mechanism.slice(0, 64)}" is not offered; this listener offers ${offered.join(', ')}`);
    }
    this.mechanism = chosen;
    this.current = 'handshaken';
    return offered;
  }

  /**
   * SaslAuthenticate: the reply bytes, and the principal (`User:NAME`) once authenticated.
   * Throws SaslFailure (state becomes failed) or ILLEGAL_SASL_STATE.
   */
  authenticate(authBytes: Buffer): SaslOutcome | Promise<SaslOutcome> {
    if (this.current !== 'handshaken' && this.current !== 'scram-final') {
      const was = this.current;
      if (was === 'start' || was === 'plain-check') this.current = 'failed';
      throw new RillError('ILLEGAL_SASL_STATE', was === 'start' ? 'SaslAuthenticate before SaslHandshake' : `SaslAuthenticate in state ${was}`);
    }
    try {
      if (this.mechanism === 'PLAIN') return this.plain(authBytes).catch((error: unknown) => Promise.reject(this.failure(error)));
      return this.scramStep(authBytes);
    } catch (error) {
      throw this.failure(error);
    }
  }

  /** The session fails; the error as the caller should see it. */
  private failure(error: unknown): unknown {
    this.current = 'failed';
    if (error instanceof SaslFailure) return error;
    if (error instanceof ScramError || error instanceof DecodeError) return new SaslFailure(error instanceof DecodeError ? error.message.replace(/^MALFORMED_REQUEST: /, '') : error.message, this.user);
    return error;
  }

  private scramStep(authBytes: Buffer): { reply: Buffer; principal: string | null } {
    const mechanism = this.mechanism as ScramMechanism;
    const message = authBytes.toString('utf8');
    if (this.current === 'handshaken') {
      this.scram = new ScramServer(mechanism, (user) => {
        this.user = user;
        return this.credentials.credential(user, mechanism);
      }, this.unknownUserSecret, this.serverNonce);
      const serverFirst = this.scram.first(message);
      this.current = 'scram-final';
      return { reply: Buffer.from(serverFirst, 'utf8'), principal: null };
    }
    const { user, serverFinal } = this.scram!.final(message);
    this.current = 'authenticated';
    return { reply: Buffer.from(serverFinal, 'utf8'), principal: `User:${user}` };
  }

  /**
   * PLAIN: the password is checked against the stored SCRAM-SHA-512 credential. An unknown user
   * costs the same derivation (default iterations, a random salt), so timing does not tell.
   */
  private async plain(authBytes: Buffer): Promise<SaslOutcome> {
    const { user, password } = decodePlain(authBytes);
    this.user = user;
    this.current = 'plain-check';
    const stored = this.credentials.credential(user, 'SCRAM-SHA-512');
    const candidate = await scramCredentialAsync('SCRAM-SHA-512', password, stored?.iterations ?? scramIterationsDefault, stored?.salt ?? crypto.randomBytes(32));
    if (this.current !== 'plain-check') throw new RillError('ILLEGAL_SASL_STATE', 'the PLAIN exchange ended while its password was checked');
    if (stored === null || !crypto.timingSafeEqual(candidate.storedKey, stored.storedKey)) throw new SaslFailure('authentication failed', user);
    this.current = 'authenticated';
    return { reply: Buffer.alloc(0), principal: `User:${user}` };
  }
}

/**
 * Failed authentications per client address in a fixed window: past `failuresMax` in
 * `windowMs`, the address is refused at once (without trying the password) until the window
 * ends. Addresses are bounded (`addressesMax`, the oldest window forgotten first).
 */
export class AuthFailureLimiter {
  private readonly windows = new Map<string, { startMs: number; failures: number }>();

  constructor(readonly failuresMax: number, readonly windowMs: number, readonly addressesMax: number) {}

  get size(): number {
    return this.windows.size;
  }

  /** Milliseconds until `address` may try again, or 0 when it may try now. */
  blockedForMs(address: string, nowMs: number): number {
    const window = this.windows.get(address);
    if (window === undefined || nowMs - window.startMs >= this.windowMs) return 0;
    return window.failures >= this.failuresMax ? window.startMs + this.windowMs - nowMs : 0;
  }

  recordFailure(address: string, nowMs: number): void {
    let window = this.windows.get(address);
    if (window === undefined || nowMs - window.startMs >= this.windowMs) {
      this.windows.delete(address);
      if (this.windows.size >= this.addressesMax) this.windows.delete(this.windows.keys().next().value!);
      window = { startMs: nowMs, failures: 0 };
      this.windows.set(address, window);
    }
    window.failures++;
  }
}
