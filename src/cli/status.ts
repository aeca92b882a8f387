/**
 * Tells the user on stderr when a running command loses its broker and when it is back, instead
 * of retrying in silence: one line when the first retry is published on rill:client:retry, one
 * when a connection opens again (rill:client:reconnect). The clients publish; this only listens.
 */
import diagnostics from 'node:diagnostics_channel';
import { clientChannelNames, type ReconnectEvent, type RetryEvent } from '../client/instrumentation.js';

const unreachableCodes = new Set(['CONNECTION_ERROR', 'REQUEST_TIMED_OUT']);

export class BrokerStatusReporter {
  /** Broker -> when we said it was away. */
  private readonly away = new Map<string, number>();

  constructor(private readonly fallbackBroker: string, private readonly write: (line: string) => void = (line) => void process.stderr.write(`${line}\n`)) {}

  private readonly onRetry = (message: unknown): void => {
    const event = message as RetryEvent;
    const broker = event.broker ?? this.fallbackBroker;
    if (this.away.has(broker)) return;
    this.away.set(broker, Date.now());
    const what = unreachableCodes.has(event.error.code) ? 'unreachable' : 'answered';
    this.write(`broker ${broker} ${what} (${event.error.message}), retrying`);
  };

  private readonly onReconnect = (message: unknown): void => {
    const event = message as ReconnectEvent;
    const since = this.away.get(event.broker) ?? (this.away.size > 0 && event.broker === this.fallbackBroker ? [...this.away.values()][0] : undefined);
    if (since === undefined) return;
    this.away.clear();
    this.write(`broker ${event.broker} is back (after ${Math.round((Date.now() - since) / 1000)} s)`);
  };

  start(): this {
    diagnostics.subscribe(clientChannelNames.retry, this.onRetry);
    diagnostics.subscribe(clientChannelNames.reconnect, this.onReconnect);
    return this;
  }

  stop(): void {
    diagnostics.unsubscribe(clientChannelNames.retry, this.onRetry);
    diagnostics.unsubscribe(clientChannelNames.reconnect, this.onReconnect);
  }
}
