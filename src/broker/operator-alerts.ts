/**
 * Conditions an operator must hear about: a full disk, a failed fsync, a partition that cannot be
 * reopened, a corrupt range a reader hit, a client drowning in error replies, a TLS handshake that
 * failed. Each one is
 *
 *   counted    every occurrence, in rill_operator_alerts_total{condition};
 *   logged     at warn/error with fields ({ topic, partition } or { remote }, and `condition`),
 *              at most once per condition and partition (or client address) per
 *              alertLogIntervalMs; the line that passes says how many were held back.
 *
 * Modules raise a condition either directly (raise) or by logging through `log` with a
 * `condition` field (the partition does this, as it only has a Log); lines without one pass
 * through unchanged.
 */
import { type Clock, systemClock } from '../lib/clock.js';
import type { Log, LogFields, LogLevel } from '../lib/log.js';
import { RateLimiter } from '../lib/rate-limit.js';

export const operatorConditions = ['disk_full', 'fsync_failed', 'storage_error', 'corrupt_log', 'client_errors', 'auth_failures', 'tls_handshake_failed', 'authorization_denied'] as const;
export type OperatorCondition = (typeof operatorConditions)[number];

/** One log line per condition and partition (or client address) per this interval. */
export const alertLogIntervalMs = 10_000;
/** Distinct (condition, partition or client) keys the limiter remembers. */
export const alertKeysMax = 4096;
/** A connection that gets this many error replies within clientErrorWindowMs raises client_errors. */
export const clientErrorsAlertThreshold = 100;
export const clientErrorWindowMs = 10_000;

/** Per-connection error counting window (kept on the connection). */
export interface ClientErrorWindow {
  readonly remote: string;
  errorWindowStartMs: number;
  errorsInWindow: number;
}

function isCondition(value: unknown): value is OperatorCondition {
  return typeof value === 'string' && (operatorConditions as readonly string[]).includes(value);
}

export class OperatorAlerts {
  /** Occurrences by condition since start (read at scrape time). */
  readonly counts = new Map<OperatorCondition, number>(operatorConditions.map((c) => [c, 0]));
  private readonly limiter = new RateLimiter(alertLogIntervalMs, alertKeysMax);

  constructor(private readonly out: Log, private readonly clock: Clock = systemClock) {}

  /** A Log that routes lines carrying a `condition` field through raise(). */
  readonly log: Log = (level, message, fields) => {
    const condition = fields?.['condition'];
    if (isCondition(condition)) this.raise(condition, level, message, fields);
    else this.out(level, message, fields);
  };

  /** `key` overrides what the line is rate-limited by (default: the partition, else the client address). */
  raise(condition: OperatorCondition, level: LogLevel, message: string, fields: LogFields = {}, key?: string): void {
    this.counts.set(condition, (this.counts.get(condition) ?? 0) + 1);
    const where = key !== undefined ? key : fields['topic'] !== undefined ? `${String(fields['topic'])}/${String(fields['partition'])}` : String(fields['address'] ?? fields['remote'] ?? '');
    const decision = this.limiter.admit(`${condition}\u0000${where}`, this.clock.nowMs());
    if (!decision.pass) return;
    const held = decision.suppressed > 0 ? ` (${decision.suppressed} more like this since the last line were not logged)` : '';
    this.out(level, `${message}${held}`, { ...fields, condition, suppressed: decision.suppressed });
  }

  /**
   * Counts an error reply to a client; raises client_errors once per window in which the
   * connection reached the threshold. Keyed by address without port: a client that reconnects
   * after each failure is still one client.
   */
  clientError(connection: ClientErrorWindow, code: string): void {
    const nowMs = this.clock.nowMs();
    if (nowMs - connection.errorWindowStartMs >= clientErrorWindowMs) {
      connection.errorWindowStartMs = nowMs;
      connection.errorsInWindow = 0;
    }
    connection.errorsInWindow++;
    if (connection.errorsInWindow !== clientErrorsAlertThreshold) return;
    const address = connection.remote.slice(0, Math.max(0, connection.remote.lastIndexOf(':'))) || connection.remote;
    this.raise('client_errors', 'warn', `client ${connection.remote} got ${clientErrorsAlertThreshold} error replies within ${clientErrorWindowMs / 1000} s (last: ${code}); check its configuration`, {
      remote: connection.remote, address, lastError: code,
    });
  }
}
