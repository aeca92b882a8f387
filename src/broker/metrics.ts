/**
 * Counters the broker keeps about what it served and what it refused: plain numbers bumped on
 * the hot path, read by the Prometheus collectors (prometheus.ts) only when scraped. Per-partition
 * traffic lives on the Partition itself (recordsIn, bytesIn, ...), for the same reason.
 */
import type { RillError } from '../lib/errors.js';
import type { LogFields, LogLevel } from '../lib/log.js';
import { OperatorAlerts, type ClientErrorWindow, type OperatorCondition } from './operator-alerts.js';

/** Slots for per-API counters, indexed by api key (the largest key is 1000). */
const apiKeySlots = 1024;

export class BrokerMetrics {
  connectionsAccepted = 0;
  connectionsOpen = 0;
  connectionsRefused = 0;
  /** Authentications that succeeded, failed (bad message, unknown user, wrong password, too many tries), or never came (auth required, closed after the timeout). */
  authSuccesses = 0;
  authFailures = 0;
  authTimeouts = 0;
  /** Requests (or parts of one: a topic, a group) refused by the ACLs, by resource type. */
  readonly authorizationDenials = new Map<string, number>();
  /** Quotas (quotas.ts): replies held back, and for how long in all (ms); connections refused. */
  produceThrottledRequests = 0;
  produceThrottleMs = 0;
  fetchThrottledRequests = 0;
  fetchThrottleMs = 0;
  quotaConnectionsRefused = 0;
  requests = 0;
  recordsAppended = 0;
  bytesAppended = 0;
  recordsFetched = 0;
  bytesFetched = 0;
  /** Requests by api key (unknown keys land in slot 0 of `requestsUnknownApi`). */
  readonly requestsByApi = new Float64Array(apiKeySlots);
  requestsUnknownApi = 0;
  /** Refusals by error name (bad frames, bad batches, unknown topics, ...). */
  readonly errors = new Map<string, number>();

  constructor(readonly alerts: OperatorAlerts = new OperatorAlerts(() => {})) {}

  countError(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  countRequest(apiKey: number): void {
    this.requests++;
    if (apiKey >= 0 && apiKey < apiKeySlots) this.requestsByApi[apiKey]!++;
    else this.requestsUnknownApi++;
  }

  /** An error about one partition: counted, and raised as an operator condition when it is one. */
  partitionError(topic: string, partition: number, error: Pick<RillError, 'code' | 'message'>): void {
    this.countError(error.code);
    const condition = partitionConditions.get(error.code);
    if (condition === undefined) return;
    const level: LogLevel = condition === 'disk_full' ? 'warn' : 'error';
    this.alert(condition, level, `${topic}/${partition}: ${error.message}`, { topic, partition });
  }

  alert(condition: OperatorCondition, level: LogLevel, message: string, fields: LogFields): void {
    this.alerts.raise(condition, level, message, fields);
  }

  /** An error reply to one client (see OperatorAlerts.clientError). */
  clientError(connection: ClientErrorWindow, code: string): void {
    this.alerts.clientError(connection, code);
  }

  snapshot(): Record<string, unknown> {
    return {
      connectionsAccepted: this.connectionsAccepted,
      connectionsOpen: this.connectionsOpen,
      connectionsRefused: this.connectionsRefused,
      authSuccesses: this.authSuccesses,
      authFailures: this.authFailures,
      authTimeouts: this.authTimeouts,
      authorizationDenials: Object.fromEntries(this.authorizationDenials),
      produceThrottledRequests: this.produceThrottledRequests,
      produceThrottleMs: this.produceThrottleMs,
      fetchThrottledRequests: this.fetchThrottledRequests,
      fetchThrottleMs: this.fetchThrottleMs,
      quotaConnectionsRefused: this.quotaConnectionsRefused,
      requests: this.requests,
      recordsAppended: this.recordsAppended,
      bytesAppended: this.bytesAppended,
      recordsFetched: this.recordsFetched,
      bytesFetched: this.bytesFetched,
      errors: Object.fromEntries(this.errors),
      alerts: Object.fromEntries(this.alerts.counts),
    };
  }
}

/** Error codes about a partition that an operator must act on. */
const partitionConditions = new Map<string, OperatorCondition>([
  ['DISK_FULL', 'disk_full'],
  ['CORRUPT_LOG', 'corrupt_log'],
  ['STORAGE_ERROR', 'storage_error'],
]);
