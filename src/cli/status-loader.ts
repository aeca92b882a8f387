/**
 * Loads the broker-status reporter (and with it the client's instrumentation module) only when a
 * client command runs: `rill broker` must not carry the client library (test/e2e/broker-footprint).
 */
import type { BrokerStatusReporter } from './status.js';

export async function startStatusReporter(bootstrap: string): Promise<BrokerStatusReporter> {
  const { BrokerStatusReporter: Reporter } = await import('./status.js');
  return new Reporter(bootstrap).start();
}
