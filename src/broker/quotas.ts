/**
 * Quotas per principal (the idea of Kafka's client quotas and max.connections.per.ip): how many
 * connections a principal may hold, and how many produce request bytes and fetch reply bytes per
 * second it may move, across all its connections.
 *
 * Who is counted: the connection's principal (`User:NAME` after SASL, `User:<subject DN>` from a
 * verified TLS client certificate), or for an anonymous connection its client address (so that
 * without authentication a quota is per client machine). A connection counts under its address
 * until it authenticates, then under its principal.
 *
 * Byte rates are a leaky bucket per principal (lib/quota.ts). Over the rate, the broker does what
 * Kafka does: the request is served, its reply says `throttleTimeMs` and is held back that long,
 * and the connection is muted meanwhile (Connection.throttle: nothing is read or dispatched, later
 * replies wait behind it in order), so a client cannot pipeline past its quota. A fetch reply
 * holds at most one burst (one second of the rate) or one batch, so no reply needs a throttle
 * longer than quotaThrottleMsMax.
 *
 * A connection over its principal's connection limit is answered TOO_MANY_CONNECTIONS (its SASL
 * login, or else its first request) and closed; counted, and logged at most once per principal
 * per 10 s.
 *
 * This module is loaded only when a quota is configured: without one, the hot path pays a null
 * check per produce and fetch (Connection.quotas).
 */
import { RillError } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import type { Log } from '../lib/log.js';
import { quotaKeysMax, quotaThrottleMsMax } from '../lib/limits.js';
import { ByteRateQuotas, type ByteRate } from '../lib/quota.js';
import { RateLimiter } from '../lib/rate-limit.js';
import { addressOf, type Connection, type ConnectionQuotas } from './connection.js';
import type { BrokerMetrics } from './metrics.js';
import { alertLogIntervalMs } from './operator-alerts.js';

/** What may pass at once without a throttle: this long at the rate. */
export const quotaBurstMs = 1000;

export interface QuotaOverride {
  connectionsPerPrincipal?: number;
  produceBytesPerSecond?: number;
  fetchBytesPerSecond?: number;
}

/** Every value 0 means unlimited. */
export interface QuotaConfig {
  connectionsPerPrincipal: number;
  produceBytesPerSecond: number;
  fetchBytesPerSecond: number;
  /** By user name (the principal `User:NAME`): values that replace the defaults above. */
  users: ReadonlyMap<string, QuotaOverride>;
}

/** A principal's limits, resolved once. */
interface Limits {
  connections: number;
  /** Where `connections` comes from, for the refusal message. */
  connectionsSetting: string;
  produce: ByteRate | null;
  fetch: ByteRate | null;
}

function byteRate(bytesPerSecond: number): ByteRate | null {
  return bytesPerSecond > 0 ? { bytesPerSecond, burstBytes: (bytesPerSecond * quotaBurstMs) / 1000 } : null;
}

/** The key a connection's quotas are counted under: its principal, or its client address. */
export function quotaKeyOf(connection: Connection): string {
  return connection.principal ?? addressOf(connection.remote);
}

export class BrokerQuotas implements ConnectionQuotas {
  private readonly defaults: Limits;
  private readonly byPrincipal = new Map<string, Limits>();
  private readonly produceBuckets = new ByteRateQuotas(quotaThrottleMsMax, quotaKeysMax);
  private readonly fetchBuckets = new ByteRateQuotas(quotaThrottleMsMax, quotaKeysMax);
  /** Open connections per key; a key leaves the map at 0 (so it is bounded by the connections). */
  private readonly connectionCounts = new Map<string, number>();
  /** The key each counted connection is counted under. */
  private readonly countedAs = new WeakMap<Connection, string>();
  private readonly refusalLog = new RateLimiter(alertLogIntervalMs, 4096);
  /** Whether any byte rate is configured (else connections need no ConnectionQuotas at all). */
  readonly limitsBytes: boolean;

  constructor(config: QuotaConfig, private readonly metrics: BrokerMetrics, private readonly log: Log, private readonly clock: Clock) {
    this.defaults = {
      connections: config.connectionsPerPrincipal,
      connectionsSetting: 'quotas.connectionsPerPrincipal',
      produce: byteRate(config.produceBytesPerSecond),
      fetch: byteRate(config.fetchBytesPerSecond),
    };
    let limitsBytes = this.defaults.produce !== null || this.defaults.fetch !== null;
    for (const [name, override] of config.users) {
      const limits: Limits = {
        connections: override.connectionsPerPrincipal ?? this.defaults.connections,
        connectionsSetting: override.connectionsPerPrincipal === undefined ? this.defaults.connectionsSetting : `quotas.users.${name}.connections`,
        produce: override.produceBytesPerSecond === undefined ? this.defaults.produce : byteRate(override.produceBytesPerSecond),
        fetch: override.fetchBytesPerSecond === undefined ? this.defaults.fetch : byteRate(override.fetchBytesPerSecond),
      };
      if (limits.produce !== null || limits.fetch !== null) limitsBytes = true;
      this.byPrincipal.set(`User:${name}`, limits);
    }
    this.limitsBytes = limitsBytes;
  }

  private limitsOf(key: string): Limits {
    return this.byPrincipal.get(key) ?? this.defaults;
  }

  /** Produce: records the request's bytes; mutes the connection and returns the throttle when over the rate. */
  produce(connection: Connection, bytes: number): number {
    const key = quotaKeyOf(connection);
    const rate = this.limitsOf(key).produce;
    if (rate === null) return 0;
    const throttleMs = this.produceBuckets.record(key, rate, bytes, this.clock.nowMs());
    if (throttleMs > 0) {
      this.metrics.produceThrottledRequests++;
      this.metrics.produceThrottleMs += throttleMs;
      connection.throttle(throttleMs);
    }
    return throttleMs;
  }

  /** Most record bytes a fetch reply may hold now (one burst; the first batch is sent whole anyway). */
  fetchBytesMax(connection: Connection): number {
    const rate = this.limitsOf(quotaKeyOf(connection)).fetch;
    return rate === null ? Number.MAX_SAFE_INTEGER : Math.max(1, Math.floor(rate.burstBytes));
  }

  /** Fetch: records the reply's record bytes; mutes the connection and returns the throttle when over the rate. */
  fetch(connection: Connection, bytes: number): number {
    const key = quotaKeyOf(connection);
    const rate = this.limitsOf(key).fetch;
    if (rate === null) return 0;
    const throttleMs = this.fetchBuckets.record(key, rate, bytes, this.clock.nowMs());
    if (throttleMs > 0) {
      this.metrics.fetchThrottledRequests++;
      this.metrics.fetchThrottleMs += throttleMs;
      connection.throttle(throttleMs);
    }
    return throttleMs;
  }

  /**
   * A new connection, counted under its principal (TLS certificate) or address. Over the limit it
   * is refused: answered TOO_MANY_CONNECTIONS at its first request, then closed.
   */
  accept(connection: Connection): void {
    if (this.limitsBytes) connection.quotas = this;
    const key = quotaKeyOf(connection);
    const refusal = this.refusal(connection, key);
    if (refusal !== null) {
      connection.refuse(refusal);
      return;
    }
    this.count(connection, key);
  }

  /**
   * A connection authenticated (SASL) as `principal`: it now counts under it. Over the limit the
   * error is returned (the authentication is answered with it and the connection closed) and the
   * connection stays counted where it was until it closes.
   */
  authenticated(connection: Connection, principal: string): RillError | null {
    const previous = this.countedAs.get(connection);
    if (previous === principal) return null;
    const refusal = this.refusal(connection, principal);
    if (refusal !== null) return refusal;
    this.release(connection);
    this.count(connection, principal);
    return null;
  }

  /** A connection closed. */
  release(connection: Connection): void {
    const key = this.countedAs.get(connection);
    if (key === undefined) return;
    this.countedAs.delete(connection);
    const count = (this.connectionCounts.get(key) ?? 1) - 1;
    if (count > 0) this.connectionCounts.set(key, count);
    else this.connectionCounts.delete(key);
  }

  /** Connections counted under `key` now (for tests and the log). */
  connectionsOf(key: string): number {
    return this.connectionCounts.get(key) ?? 0;
  }

  private count(connection: Connection, key: string): void {
    this.countedAs.set(connection, key);
    this.connectionCounts.set(key, (this.connectionCounts.get(key) ?? 0) + 1);
  }

  private refusal(connection: Connection, key: string): RillError | null {
    const { connections: limit, connectionsSetting: setting } = this.limitsOf(key);
    const open = this.connectionCounts.get(key) ?? 0;
    if (limit === 0 || open < limit) return null;
    this.metrics.quotaConnectionsRefused++;
    const who = key.startsWith('User:') ? key : `address ${key}`;
    const decision = this.refusalLog.admit(key, this.clock.nowMs());
    if (decision.pass) {
      const held = decision.suppressed > 0 ? ` (${decision.suppressed} more refusals since the last line were not logged)` : '';
      this.log('warn', `refusing a connection of ${who} from ${connection.remote}: ${open} connections open, the limit is ${limit} (${setting})${held}`, {
        remote: connection.remote, principal: key, open, limit, suppressed: decision.suppressed,
      });
    }
    return new RillError('TOO_MANY_CONNECTIONS', `${who} already has ${open} connections open to this broker, its limit (${setting}); close some or raise the limit`);
  }
}
