/** Broker settings, with units in their names and the defaults a user gets from `rill broker`. */
import type { Log } from '../lib/log.js';
import path from 'node:path';
import os from 'node:os';
import { RillError } from '../lib/errors.js';
import type { FileOps } from '../storage/file-ops.js';
import type { EffectiveSetting } from './settings.js';
import type { ListenerTlsConfig } from './tls.js';
import type { QuotaConfig } from './quotas.js';
import type { ClusterConfig } from '../cluster/membership.js';

export interface BrokerConfig {
  /** Where topics, segments and group state live. */
  dataDir: string;
  /** Interface to listen on. 127.0.0.1 by default: exposing a broker is a decision to make on purpose. */
  host: string;
  /** TCP port; 0 picks a free one (the broker prints it). */
  port: number;
  /** Host name clients are told to connect to (Metadata); defaults to `host`. */
  advertisedHost?: string | undefined;
  /** Port clients are told to connect to; defaults to the bound port. */
  advertisedPort?: number | undefined;
  /**
   * Named listeners, each serving Rill's protocol on its own address and advertising its own
   * address in Metadata. Default: one listener called `rill` from host, port, advertisedHost
   * and advertisedPort above.
   */
  listeners?: ListenerConfig[] | undefined;
  /**
   * The settings as resolved from defaults, file, environment and flags (by the CLI), for the
   * start log and DescribeConfigs; when absent, DescribeConfigs lists the main fields as defaults.
   */
  effectiveConfig?: EffectiveSetting[] | undefined;
  /** The config file the settings were read from, if any (logged at start). */
  configFile?: string | null | undefined;
  /** The HTTP listener (/metrics, /healthz, /readyz, the console); null: none. */
  http: { host: string; port: number } | null;
  /** The HTTP address is a default, not the operator's choice: if it is taken, run without it. */
  httpOptional?: boolean | undefined;
  nodeId: number;
  /** How often retention and time-based flushes run. */
  housekeepingIntervalMs: number;
  /** Longest a graceful shutdown waits for in-flight requests before closing connections. */
  shutdownGraceMs: number;
  /** The file layer under every partition log; tests inject faults (ENOSPC, EIO) through it. */
  fileOps?: FileOps | undefined;
  /** A TLS handshake not done within this is cut off (default tlsHandshakeTimeoutMsDefault). */
  tlsHandshakeTimeoutMs?: number | undefined;
  /** Logs go here; the CLI prints them to stderr. */
  log: Log;
  /**
   * Authentication (broker/auth.ts). `required`: every listener refuses everything but
   * ApiVersions and the SASL handshake until the connection has authenticated. Users come from
   * `<dataDir>/users.json` (security/credentials.ts). Required also turns on the ACLs
   * (`<dataDir>/acls.json`, broker/authorization.ts), which super users bypass. The delays are for tests.
   */
  auth?: { required: boolean; superUsers?: readonly string[] | undefined; failureDelayMs?: number | undefined; timeoutMs?: number | undefined } | undefined;
  /** Protected mode was turned off (settings checked it): warned about at every start. */
  allowAnonymous?: boolean | undefined;
  /**
   * Join a cluster through etcd (membership and controller election, src/cluster/membership.ts);
   * absent or null: a single broker, which loads neither etcd3 nor gRPC.
   */
  cluster?: ClusterConfig | null | undefined;
  /** Connection and byte-rate quotas per principal (broker/quotas.ts); absent or all 0: none. */
  quotas?: QuotaConfig | undefined;
}

/** Whether any quota is set (the quota module is loaded only then). */
export function quotasConfigured(quotas: QuotaConfig | undefined): quotas is QuotaConfig {
  if (quotas === undefined) return false;
  return quotas.connectionsPerPrincipal > 0 || quotas.produceBytesPerSecond > 0 || quotas.fetchBytesPerSecond > 0 || quotas.users.size > 0;
}

export interface ListenerConfig {
  name: string;
  host: string;
  port: number;
  advertisedHost?: string | undefined;
  advertisedPort?: number | undefined;
  /** Absent: plaintext. */
  tls?: ListenerTlsConfig | null | undefined;
}

export function defaultDataDir(): string {
  return process.env.RILL_DATA_DIR ?? path.join(process.cwd(), 'rill-data');
}

export function brokerConfig(overrides: Partial<BrokerConfig> = {}): BrokerConfig {
  const config: BrokerConfig = {
    dataDir: defaultDataDir(),
    host: '127.0.0.1',
    port: 9092,
    nodeId: 0,
    housekeepingIntervalMs: 1000,
    shutdownGraceMs: 5000,
    http: null,
    log: (level, message, fields) => {
      if (level !== 'debug') process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} ${message}${fields === undefined ? '' : ` ${JSON.stringify(fields)}`}${os.EOL}`);
    },
    ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)),
  };
  config.listeners ??= [{ name: 'rill', host: config.host, port: config.port, advertisedHost: config.advertisedHost, advertisedPort: config.advertisedPort }];
  if (config.listeners.length === 0) throw new RillError('INVALID_CONFIG', 'the broker needs at least one listener');
  for (const listener of config.listeners) {
    if (!Number.isInteger(listener.port) || listener.port < 0 || listener.port > 65535) {
      throw new RillError('INVALID_CONFIG', `listener ${listener.name}: port ${listener.port} is not an integer in 0..65535`);
    }
  }
  return config;
}
