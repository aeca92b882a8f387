/**
 * `rill broker`: resolves the configuration (flags > RILL_* environment > config file >
 * defaults, see src/broker/settings.ts), runs a broker in the foreground, and shuts it down
 * cleanly on SIGTERM/SIGINT. The argument parser hands over the flags as the strings the user
 * typed; validation happens in the settings resolver, in one place for flags, environment and
 * file alike. A configuration problem (bad file, unknown key, port in use, data directory locked
 * or unwritable) is one line on stderr and exit status 2, with nothing in the data directory
 * changed.
 */
import { createRequire } from 'node:module';
import pino from 'pino';
import { Broker } from '../broker/broker.js';
import { brokerConfig } from '../broker/config.js';
import { resolveSettings, SettingsError, type BrokerSettings, type SettingFlags } from '../broker/settings.js';
import type { Log } from '../lib/log.js';

/** The broker's command-line flags, unparsed (undefined: not given). */
export type BrokerFlags = SettingFlags;

/** pino on stderr: JSON for machines, or readable lines for a person at a terminal. */
export function brokerLogger(settings: Pick<BrokerSettings, 'logLevel' | 'logFormat'>): { log: Log; flush: () => void } {
  const prettyOutput = settings.logFormat === 'pretty' || (settings.logFormat === 'auto' && process.stderr.isTTY === true);
  // pino-pretty is loaded only for a terminal: every module the broker process holds on to costs it
  // CPU under load (more old-generation collections, docs/metrics.md, Measured cost).
  const destination = prettyOutput
    ? (createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty'))({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true })
    : pino.destination({ dest: 2, sync: true });
  const logger = pino({ level: settings.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  const log: Log = (level, message, fields) => {
    if (fields === undefined) logger[level](message);
    else logger[level](fields, message);
  };
  return { log, flush: () => logger.flush() };
}

export async function brokerCommand(flags: BrokerFlags): Promise<number> {
  let resolved;
  try {
    resolved = resolveSettings(flags);
  } catch (error) {
    if (error instanceof SettingsError) return configurationFailure(error);
    throw error;
  }
  const { settings, effective } = resolved;
  const { log, flush } = brokerLogger(settings);
  for (const warning of resolved.warnings) log('warn', warning);
  const rill = settings.listeners[0]!;
  const broker = new Broker(brokerConfig({
    dataDir: settings.dataDir,
    nodeId: settings.nodeId,
    host: rill.host,
    port: rill.port,
    listeners: settings.listeners.map((l) => ({ name: l.name, host: l.host, port: l.port, advertisedHost: l.advertise?.host, advertisedPort: l.advertise?.port, tls: l.tls })),
    http: settings.http,
    httpOptional: !settings.httpExplicit,
    shutdownGraceMs: settings.shutdownGraceMs,
    housekeepingIntervalMs: settings.housekeepingIntervalMs,
    auth: { required: settings.authRequired, superUsers: settings.superUsers },
    allowAnonymous: settings.allowAnonymous,
    quotas: settings.quotas,
    cluster: settings.cluster,
    effectiveConfig: effective,
    configFile: resolved.file,
    log,
  }));
  try {
    await broker.start();
  } catch (error) {
    flush();
    if (error instanceof SettingsError) return configurationFailure(error);
    throw error;
  }
  // The line tests and scripts wait for: the address actually bound (useful with --port 0).
  process.stdout.write(`rill broker ready on ${rill.host}:${broker.port}\n`);
  if (broker.httpPort !== null) process.stdout.write(`rill http ready on ${settings.http!.host}:${broker.httpPort}\n`);
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (++signals > 1) {
        process.stderr.write(`second ${signal}: exiting without a clean shutdown\n`);
        process.exit(130);
      }
      log('info', `${signal} received, shutting down`);
      broker.stop().then(() => {
        flush();
        resolve(0);
      }, (error: unknown) => {
        log('error', `shutdown failed: ${(error as Error).message}`);
        flush();
        resolve(1);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', () => reloadTls(broker, log));
  });
}

/** SIGHUP: re-read TLS certificates and keys; a bad file keeps the old ones and says why. */
function reloadTls(broker: Broker, log: Log): void {
  try {
    const listeners = broker.reloadTls();
    log('info', listeners.length === 0 ? 'SIGHUP received: no TLS listener, nothing to reload' : `SIGHUP received: TLS certificates reloaded (listeners ${listeners.join(', ')}); open connections keep theirs`, { listeners });
  } catch (error) {
    log('error', `SIGHUP received: TLS certificates NOT reloaded, the listeners keep the previous ones: ${(error as Error).message}`);
  }
}

function configurationFailure(error: SettingsError): number {
  process.stderr.write(`rill broker: ${error.message}\n`);
  return 2;
}
