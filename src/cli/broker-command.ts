/**
 * `rill broker`: resolves the configuration (flags > RILL_* environment > config file >
 * defaults), runs a broker in the foreground, and shuts it down cleanly on SIGTERM/SIGINT.
 * The argument parser hands over the flags as the strings the user typed; validation happens
 * here, in one place for flags, environment and file alike.
 */
import { Broker } from '../broker/broker.js';
import { brokerConfig, defaultDataDir } from '../broker/config.js';
import { UsageError } from './args.js';

/** The broker's command-line flags, unparsed. */
export interface BrokerFlags {
  config?: string | undefined;
  dataDir?: string | undefined;
  port?: string | undefined;
  host?: string | undefined;
  listen?: string | undefined;
  advertise?: string | undefined;
  http?: string | undefined;
  nodeId?: string | undefined;
  logLevel?: string | undefined;
  logFormat?: string | undefined;
}

function hostPort(value: string, flag: string): { host: string; port: number } {
  const at = value.lastIndexOf(':');
  const port = Number(value.slice(at + 1));
  if (at < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--${flag} must be HOST:PORT, got "${value}"`);
  return { host: value.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port };
}

export async function brokerCommand(flags: BrokerFlags): Promise<number> {
  const port = flags.port === undefined ? 9092 : Number(flags.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be an integer in 0..65535, got "${flags.port}"`);
  const broker = new Broker(brokerConfig({
    dataDir: flags.dataDir ?? defaultDataDir(),
    port,
    host: flags.host ?? '127.0.0.1',
    http: flags.http === undefined ? null : hostPort(flags.http, 'http'),
  }));
  await broker.start();
  // The line tests and scripts wait for: the port actually bound (useful with --port 0).
  process.stdout.write(`rill broker ready on ${broker.config.host}:${broker.port}\n`);
  if (broker.config.http !== null) process.stdout.write(`rill http ready on ${broker.config.http.host}:${broker.httpPort}\n`);
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (++signals > 1) {
        process.stderr.write(`second ${signal}: exiting without a clean shutdown\n`);
        process.exit(130);
      }
      broker.config.log('info', `${signal} received, shutting down`);
      broker.stop().then(() => resolve(0), (error: unknown) => {
        broker.config.log('error', `shutdown failed: ${(error as Error).message}`);
        resolve(1);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
