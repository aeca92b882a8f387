/**
 * Authentication on the broker's side: the SaslHandshake (17) and SaslAuthenticate (36)
 * handlers, around the pure per-connection state machine in security/sasl-server.ts, plus what
 * needs time and memory across connections:
 *
 * - a failed attempt is counted (rill_auth_failures_total), logged at warn with the peer address
 *   and user name (rate-limited per address through the operator alerts, condition
 *   auth_failures), answered only after authFailureDelayMs, and the connection is closed after
 *   the reply;
 * - an address with authFailuresMax failures within authFailureWindowMs is refused at once at
 *   its next handshake, or next SaslAuthenticate of an exchange begun before, until the window
 *   ends (no password is tried: exchanges opened in parallel get no guesses past the limit);
 * - with auth required, a connection that has not authenticated within authTimeoutMs is closed.
 *
 * Nothing here logs a password, a hash or a salt: the log lines carry the address, the user name
 * the client claimed and the failure reason from the state machine.
 */
import crypto from 'node:crypto';
import { RillError } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import type { Log } from '../lib/log.js';
import { AuthFailureLimiter, SaslFailure, SaslServerSession } from '../security/sasl-server.js';
import type { CredentialStore } from '../security/credentials.js';
import { decodeSaslAuthenticateRequest, decodeSaslHandshakeRequest } from '../wire/sasl.js';
import { decodeMsgpack } from '../wire/msgpack.js';
import { requestHeaderBytes } from '../lib/limits.js';
import { addressOf, msgpackReply, type Connection, type Reply, type RequestContext } from './connection.js';
import type { BrokerMetrics } from './metrics.js';

/** Failure reply held back this long: guessing passwords costs the guesser time. */
export const authFailureDelayMs = 1000;
/** Failures per address within authFailureWindowMs before the address is refused at once. */
export const authFailuresMax = 10;
export const authFailureWindowMs = 60_000;
/** Client addresses whose failures are remembered. */
export const authAddressesMax = 4096;
/** With auth required, a connection that has not authenticated after this long is closed. */
export const authTimeoutMs = 10_000;

/** Until the TLS work lands its own flag on Connection: a TLS socket is a tls.TLSSocket. */
export function isTlsConnection(connection: Connection): boolean {
  // TLSSocket sets `encrypted`; checking it does not load node:tls into a broker without TLS.
  return (connection.socket as { encrypted?: boolean }).encrypted === true;
}

export interface BrokerAuthOptions {
  required: boolean;
  failureDelayMs?: number;
  timeoutMs?: number;
  /**
   * Asked before a connection becomes `principal` (the connection quota, broker/quotas.ts): an
   * error refuses it, answering the authentication with that error and closing the connection.
   */
  admit?: ((connection: Connection, principal: string) => RillError | null) | undefined;
}

export class BrokerAuth {
  readonly required: boolean;
  readonly failureDelayMs: number;
  readonly timeoutMs: number;
  private readonly admit: BrokerAuthOptions['admit'];
  private readonly limiter = new AuthFailureLimiter(authFailuresMax, authFailureWindowMs, authAddressesMax);
  /** Makes the decoy salts of unknown users stable for this broker's life (wire/scram.ts). */
  private readonly unknownUserSecret = crypto.randomBytes(32);
  private readonly sessions = new WeakMap<Connection, SaslServerSession>();

  constructor(
    /** The users logins are checked against; user administration (handlers/users.ts) changes this one. */
    readonly store: CredentialStore,
    private readonly metrics: BrokerMetrics,
    private readonly log: Log,
    private readonly clock: Clock,
    options: BrokerAuthOptions,
  ) {
    this.required = options.required;
    this.failureDelayMs = options.failureDelayMs ?? authFailureDelayMs;
    this.timeoutMs = options.timeoutMs ?? authTimeoutMs;
    this.admit = options.admit;
  }

  /** Requests other than ApiVersions and the handshake need a principal when auth is required. */
  check(connection: Connection, apiName: string): void {
    if (this.required && connection.principal === null) {
      throw new RillError('SASL_AUTHENTICATION_REQUIRED', `${apiName} needs an authenticated connection: this broker requires authentication (give the client a user and password)`);
    }
  }

  /** Arms the unauthenticated-connection timeout (auth required only). */
  watch(connection: Connection): void {
    if (!this.required) return;
    const timer = setTimeout(() => {
      if (connection.principal !== null || connection.isClosed) return;
      this.metrics.authTimeouts++;
      this.log('info', `closing ${connection.remote}: not authenticated within ${this.timeoutMs} ms`, { remote: connection.remote });
      connection.close();
    }, this.timeoutMs);
    timer.unref();
    connection.socket.once('close', () => clearTimeout(timer));
  }

  handleHandshake(context: RequestContext): Reply {
    const { connection } = context;
    const { mechanism } = decodeSaslHandshakeRequest(decodeMsgpack(context.frame.subarray(requestHeaderBytes)));
    this.refuseIfBlocked(context, null);
    // Authenticated another way (a TLS client certificate) or already: one identity per connection.
    if (connection.principal !== null && !this.sessions.has(connection)) throw new RillError('ILLEGAL_SASL_STATE', `this connection is already authenticated as ${connection.principal}`);
    let session = this.sessions.get(connection);
    if (session === undefined) {
      session = new SaslServerSession(this.store, isTlsConnection(connection), this.unknownUserSecret);
      this.sessions.set(connection, session);
    }
    return msgpackReply({ mechanisms: session.handshake(mechanism) });
  }

  async handleAuthenticate(context: RequestContext): Promise<Reply> {
    const { connection } = context;
    const session = this.sessions.get(connection);
    if (session === undefined) {
      connection.endAfterReply(context.header.correlationId);
      throw new RillError('ILLEGAL_SASL_STATE', 'SaslAuthenticate before SaslHandshake');
    }
    if (connection.principal === null) this.refuseIfBlocked(context, session.user);
    let outcome: { reply: Buffer; principal: string | null };
    try {
      // A body that does not decode is a failed attempt like a bad SCRAM message.
      const { authBytes } = decodeSaslAuthenticateRequest(decodeMsgpack(context.frame.subarray(requestHeaderBytes)));
      outcome = await session.authenticate(authBytes);
    } catch (error) {
      if (!(error instanceof RillError)) throw error;
      connection.endAfterReply(context.header.correlationId);
      if (error.code === 'ILLEGAL_SASL_STATE') throw error;
      const reason = error instanceof SaslFailure ? (error.reason === 'authentication failed' ? 'unknown user or wrong password' : error.reason) : error.message;
      this.metrics.authFailures++;
      this.limiter.recordFailure(addressOf(connection.remote), this.clock.nowMs());
      this.warn(connection, session.user, reason);
      await new Promise((resolve) => setTimeout(resolve, this.failureDelayMs));
      throw new RillError('SASL_AUTHENTICATION_FAILED', reason);
    }
    const { reply, principal } = outcome;
    if (principal !== null) {
      // Right credentials, but not let in (too many connections): not a failed attempt.
      const refusal = this.admit?.(connection, principal) ?? null;
      if (refusal !== null) {
        connection.endAfterReply(context.header.correlationId);
        throw refusal;
      }
      connection.principal = principal;
      this.metrics.authSuccesses++;
      this.log('debug', `${connection.remote} authenticated as ${principal}`, { remote: connection.remote, principal });
    }
    return msgpackReply({ authBytes: reply });
  }

  /** An address past its failure limit is refused at once: counted, logged, closed after the reply. */
  private refuseIfBlocked(context: RequestContext, user: string | null): void {
    const { connection } = context;
    const address = addressOf(connection.remote);
    const blockedMs = this.limiter.blockedForMs(address, this.clock.nowMs());
    if (blockedMs <= 0) return;
    this.metrics.authFailures++;
    this.warn(connection, user, 'too many failed attempts from this address');
    connection.endAfterReply(context.header.correlationId);
    throw new RillError('SASL_AUTHENTICATION_FAILED', `too many failed authentications from ${address}; try again in ${Math.ceil(blockedMs / 1000)} s`);
  }

  private warn(connection: Connection, user: string | null, reason: string): void {
    const address = addressOf(connection.remote);
    this.metrics.alert('auth_failures', 'warn', `authentication failed from ${connection.remote}${user === null ? '' : ` (user "${user.slice(0, 255)}")`}: ${reason}`, {
      remote: connection.remote, address, ...(user === null ? {} : { user: user.slice(0, 255) }),
    });
  }
}
