/** Counters the broker keeps about what it served and what it refused. */
export class BrokerMetrics {
  connectionsAccepted = 0;
  connectionsOpen = 0;
  connectionsRefused = 0;
  requests = 0;
  recordsAppended = 0;
  bytesAppended = 0;
  /** Refusals by error name (bad frames, bad batches, unknown topics, ...). */
  readonly errors = new Map<string, number>();

  countError(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  snapshot(): Record<string, unknown> {
    return {
      connectionsAccepted: this.connectionsAccepted,
      connectionsOpen: this.connectionsOpen,
      connectionsRefused: this.connectionsRefused,
      requests: this.requests,
      recordsAppended: this.recordsAppended,
      bytesAppended: this.bytesAppended,
      errors: Object.fromEntries(this.errors),
    };
  }
}
