/**
 * What a client tells the outside world about itself: a `logger` option (a pino-compatible
 * subset, silent by default) and `node:diagnostics_channel` channels that any code in the
 * process may subscribe to without touching the client's construction (APM agents, the CLI).
 *
 *   channel                  published when                                   message
 *   rill:client:request      a request got its reply or failed                RequestEvent
 *   rill:client:retry        a retriable error is retried after a backoff     RetryEvent
 *   rill:client:reconnect    a connection opened again after it had failed    ReconnectEvent
 *   rill:client:rebalance    a group member's partitions changed              RebalanceEvent
 *   rill:client:throttle     a produce or fetch reply was held back by a quota ThrottleEvent
 *
 * Publishing costs one property read when no one listens: every publish checks
 * `channel.hasSubscribers` first and builds no message otherwise. The logger gets the same
 * events: request and throttle at debug, retry at warn, reconnect and rebalance at info.
 * See docs/client-instrumentation.md.
 */
import diagnostics from 'node:diagnostics_channel';
import type { RillError } from '../lib/errors.js';

/** The subset of pino's API the client calls: `logger.warn({ broker }, 'retrying')`. */
export interface ClientLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const clientChannelNames = {
  request: 'rill:client:request',
  retry: 'rill:client:retry',
  reconnect: 'rill:client:reconnect',
  rebalance: 'rill:client:rebalance',
  throttle: 'rill:client:throttle',
} as const;

export type ClientKind = 'producer' | 'consumer' | 'reader' | 'admin';

interface EventBase {
  /** The options' clientId ('rill-client' by default). */
  clientId: string;
  /** Which client published it. */
  client: ClientKind;
}

export interface RequestEvent extends EventBase {
  /** HOST:PORT the request went to. */
  broker: string;
  apiKey: number;
  correlationId: number;
  /** From the send to the reply (or the failure). */
  durationMs: number;
  /** Undefined on success; the reply's top-level error is not inspected here. */
  error: RillError | undefined;
}

export interface RetryEvent extends EventBase {
  /** What is retried: 'produce', 'fetch', 'metadata', 'list-offsets', 'init-producer-id', 'heartbeat', 'offset-fetch'. */
  operation: string;
  /** HOST:PORT when known. */
  broker: string | undefined;
  /** 1 for the first retry of this operation since it last succeeded. */
  attempt: number;
  /** Wait before the next try. */
  delayMs: number;
  error: RillError;
}

export interface ReconnectEvent extends EventBase {
  broker: string;
  /** The connection's purpose: 'default', 'fetch', 'heartbeat', 'group'. */
  purpose: string;
  /** From the first failure (refused connect or broken socket) to this successful connect. */
  downMs: number;
  /** Connect attempts that failed in between. */
  failedConnects: number;
}

export interface RebalanceEvent extends EventBase {
  groupId: string;
  memberId: string;
  memberEpoch: number;
  /** 'assignment' (a heartbeat changed what this member owns) or 'lost' (membership dropped). */
  reason: 'assignment' | 'lost';
  assigned: { topic: string; partition: number }[];
  revoked: { topic: string; partition: number }[];
  /** With reason 'lost': why (session expiry, fencing, ...). */
  detail: string | undefined;
}

export interface ThrottleEvent extends EventBase {
  /** HOST:PORT that held the reply back. */
  broker: string;
  /** ApiKey.Produce or ApiKey.Fetch. */
  apiKey: number;
  /** How long the broker delayed the reply (and stopped reading this connection) for the principal's quota. */
  throttleTimeMs: number;
}

const requestChannel = diagnostics.channel(clientChannelNames.request);
const retryChannel = diagnostics.channel(clientChannelNames.retry);
const reconnectChannel = diagnostics.channel(clientChannelNames.reconnect);
const rebalanceChannel = diagnostics.channel(clientChannelNames.rebalance);
const throttleChannel = diagnostics.channel(clientChannelNames.throttle);

/** One per client: knows who publishes, and the logger to mirror events to. */
export class Instrumentation {
  constructor(readonly client: ClientKind, readonly clientId: string, readonly logger: ClientLogger | undefined) {}

  /** Whether request events are wanted: lets the connection skip timing when no one listens. */
  get wantsRequests(): boolean {
    return requestChannel.hasSubscribers || this.logger !== undefined;
  }

  request(broker: string, apiKey: number, correlationId: number, durationMs: number, error: RillError | undefined): void {
    if (!requestChannel.hasSubscribers && this.logger === undefined) return;
    const event: RequestEvent = { clientId: this.clientId, client: this.client, broker, apiKey, correlationId, durationMs, error };
    if (requestChannel.hasSubscribers) requestChannel.publish(event);
    this.logger?.debug({ ...event, error: error?.message }, 'request');
  }

  retry(operation: string, broker: string | undefined, attempt: number, delayMs: number, error: RillError): void {
    if (!retryChannel.hasSubscribers && this.logger === undefined) return;
    const event: RetryEvent = { clientId: this.clientId, client: this.client, operation, broker, attempt, delayMs: Math.round(delayMs), error };
    if (retryChannel.hasSubscribers) retryChannel.publish(event);
    this.logger?.warn({ ...event, error: error.message }, `${operation} failed, retrying`);
  }

  reconnect(broker: string, purpose: string, downMs: number, failedConnects: number): void {
    if (!reconnectChannel.hasSubscribers && this.logger === undefined) return;
    const event: ReconnectEvent = { clientId: this.clientId, client: this.client, broker, purpose, downMs, failedConnects };
    if (reconnectChannel.hasSubscribers) reconnectChannel.publish(event);
    this.logger?.info(event, `reconnected to ${broker}`);
  }

  /** A reply carried throttleTimeMs > 0 (the broker already waited it out: nothing to do but tell). */
  throttle(broker: string, apiKey: number, throttleTimeMs: number): void {
    if (!throttleChannel.hasSubscribers && this.logger === undefined) return;
    const event: ThrottleEvent = { clientId: this.clientId, client: this.client, broker, apiKey, throttleTimeMs };
    if (throttleChannel.hasSubscribers) throttleChannel.publish(event);
    this.logger?.debug(event, `reply held back ${throttleTimeMs} ms by ${broker} for a quota`);
  }

  rebalance(event: Omit<RebalanceEvent, 'clientId' | 'client'>): void {
    if (!rebalanceChannel.hasSubscribers && this.logger === undefined) return;
    const full: RebalanceEvent = { clientId: this.clientId, client: this.client, ...event };
    if (rebalanceChannel.hasSubscribers) rebalanceChannel.publish(full);
    this.logger?.info(full, 'rebalance');
  }
}

/** The broker named in a connection error, when the message carries one ("... to HOST:PORT ..."). */
export function brokerOf(error: RillError): string | undefined {
  return /(?:to|from) (\S+:\d+)/.exec(error.message)?.[1];
}
