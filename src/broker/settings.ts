/**
 * The broker's settings as an operator sets them: one table of keys, each with its type, default,
 * environment variable and flag, resolved with the precedence
 *
 *     flags  >  RILL_* environment  >  config file (YAML)  >  defaults
 *
 * The table below is the single source: the resolver reads it, the README's config table is
 * generated from it (a test keeps the two equal), and the effective configuration the broker
 * logs at start and answers to DescribeConfigs comes from it, with secrets masked.
 *
 * Listeners are named: `listeners.<name>.listen` / `.advertise`. The listener called `rill` is
 * the one `--listen`, `--advertise`, `--host` and `--port` (and RILL_LISTEN / RILL_ADVERTISE)
 * change; more listeners (a TLS one, a Kafka one) are more names under `listeners`.
 *
 * Nothing here touches the disk or the network except reading the config file: a bad file, an
 * unknown key or a bad value is a SettingsError naming the file, key and what to do, raised
 * before the data directory is touched.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { didYouMean } from '../lib/closest.js';
import { logLevels, type LogLevel } from '../lib/log.js';
import { connectionsMax } from '../lib/limits.js';
import type { QuotaConfig, QuotaOverride } from './quotas.js';
import { clusterNameProblem, rackProblem } from '../cluster/records.js';
import type { ClusterConfig } from '../cluster/membership.js';

/** Where a setting's value came from. */
export type SettingSource = 'default' | 'file' | 'env' | 'flag';

/** A problem with the configuration the operator gave: reported in one line, exit status 2. */
export class SettingsError extends Error {
  override name = 'SettingsError';
}

export type LogFormat = 'json' | 'pretty' | 'auto';

export interface ListenerSettings {
  name: string;
  host: string;
  port: number;
  /** What Metadata tells clients to connect to; null: the listen address. */
  advertise: { host: string; port: number } | null;
  /** null: plaintext. */
  tls: ListenerTlsSettings | null;
}

/** Who must show a client certificate on a TLS listener. */
export const tlsClientAuthModes = ['none', 'requested', 'required'] as const;
export type TlsClientAuth = (typeof tlsClientAuthModes)[number];

/** A listener's TLS files, as absolute paths (read by the broker, before the data directory). */
export interface ListenerTlsSettings {
  certFile: string;
  keyFile: string;
  /** CA bundle that verifies client certificates; null: none (then clientAuth must be 'none'). */
  caFile: string | null;
  clientAuth: TlsClientAuth;
}

export interface BrokerSettings {
  dataDir: string;
  nodeId: number;
  listeners: ListenerSettings[];
  /** null: no HTTP listener. */
  http: { host: string; port: number } | null;
  /** True when the HTTP address was given by the operator (not the default). */
  httpExplicit: boolean;
  logLevel: LogLevel;
  logFormat: LogFormat;
  shutdownGraceMs: number;
  housekeepingIntervalMs: number;
  /** Every listener requires SASL authentication (auth.mode required). */
  authRequired: boolean;
  /** Principals the ACLs do not bind (auth.superUsers): `User:NAME`, or as given when it holds a colon. */
  superUsers: string[];
  /** Protected mode off: a listener off loopback may run without authentication (auth.allowAnonymous). */
  allowAnonymous: boolean;
  /** Per-principal connection and byte-rate quotas (0: unlimited). */
  quotas: QuotaConfig;
  /** null: a single broker (no cluster.etcd). */
  cluster: ClusterConfig | null;
}

/** One resolved setting, as the broker logs it and DescribeConfigs returns it. */
export interface EffectiveSetting {
  name: string;
  value: string | number | null;
  source: SettingSource;
  secret: boolean;
}

type Kind = 'path' | 'address' | 'address-or-off' | 'int' | 'level' | 'format' | 'auth-mode' | 'client-auth' | 'names' | 'bool' | 'urls' | 'name';

interface SettingSpec {
  /** Dotted key in the config file; `listeners.rill.*` stands for every named listener. */
  key: string;
  kind: Kind;
  /** Default as the operator would write it. */
  default: string | number;
  env: string | null;
  flag: string | null;
  /** Integer bounds for kind 'int'. */
  min?: number;
  max?: number;
  secret?: boolean;
  description: string;
}

export const defaultListenerName = 'rill';
/** Largest byte rate a quota may be set to (1 TB/s: beyond it a quota means nothing). */
const quotaBytesPerSecondMax = 1e12;
/** `quotas.users.<name>.<field>`: the name may hold dots (a certificate subject), the field may not. */
const userQuotaKeyPattern = /^quotas\.users\.(.+)\.(connections|produceBytesPerSecond|fetchBytesPerSecond)$/;
const userQuotaFields = ['connections', 'produceBytesPerSecond', 'fetchBytesPerSecond'] as const;
export const defaultPort = 9092;
export const defaultHttpPort = 9644;

export const settingSpecs: readonly SettingSpec[] = [
  { key: 'dataDir', kind: 'path', default: './rill-data', env: 'RILL_DATA_DIR', flag: '--data-dir', description: 'Topics, segments, group state and the lock file. One broker per directory.' },
  { key: 'nodeId', kind: 'int', default: 0, min: 0, max: 0x7fffffff, env: 'RILL_NODE_ID', flag: '--node-id', description: 'This broker\'s id in Metadata.' },
  { key: 'listeners.rill.listen', kind: 'address', default: `127.0.0.1:${defaultPort}`, env: 'RILL_LISTEN', flag: '--listen', description: 'Address a listener of Rill\'s protocol binds. The `rill` listener is on by default; the flag and variable set it, and `--host` / `--port` change one half. Port 0 picks a free one (printed at start). More names under `listeners` are more listeners.' },
  { key: 'listeners.rill.advertise', kind: 'address', default: '', env: 'RILL_ADVERTISE', flag: '--advertise', description: 'Address Metadata gives the clients of this listener. Default: the listen address; on 0.0.0.0, the address each client connected to. Set it behind NAT, proxies or containers.' },
  { key: 'listeners.rill.tls.cert', kind: 'path', default: '', env: 'RILL_TLS_CERT', flag: '--tls-cert', description: 'PEM certificate (chain) of a listener: set with `.key`, the listener speaks TLS only (1.2 or later). Re-read with `.key` and `.ca` on SIGHUP, open connections kept.' },
  { key: 'listeners.rill.tls.key', kind: 'path', default: '', env: 'RILL_TLS_KEY', flag: '--tls-key', description: 'PEM private key of that certificate.' },
  { key: 'listeners.rill.tls.ca', kind: 'path', default: '', env: 'RILL_TLS_CA', flag: '--tls-ca', description: 'PEM CA bundle that verifies client certificates (needed by `.clientAuth` requested or required).' },
  { key: 'listeners.rill.tls.clientAuth', kind: 'client-auth', default: '', env: 'RILL_TLS_CLIENT_AUTH', flag: '--tls-client-auth', description: '`none`, `requested` (a certificate signed by `.ca` is used when shown; the default when `.ca` is given) or `required` (mTLS: no valid certificate, no connection); without `.ca`, `none`. A verified certificate makes the connection\'s principal `User:` + its subject DN (RFC 2253, e.g. `User:CN=alice,O=Acme`), as Kafka\'s default; otherwise `User:ANONYMOUS`.' },
  { key: 'http.listen', kind: 'address-or-off', default: `127.0.0.1:${defaultHttpPort}`, env: 'RILL_HTTP', flag: '--http', description: 'HTTP listener: `/metrics`, `/healthz`, `/readyz` and the console at `/`; read-only. On by default, loopback only; `off` disables it. When not set: port 0 if the `rill` listener has port 0, and if the default port is taken the broker warns and runs without it.' },
  { key: 'log.level', kind: 'level', default: 'info', env: 'RILL_LOG_LEVEL', flag: '--log-level', description: '`debug`, `info`, `warn` or `error`.' },
  { key: 'log.format', kind: 'format', default: 'auto', env: 'RILL_LOG_FORMAT', flag: '--log-format', description: '`json`, `pretty` or `auto` (pretty when stderr is a terminal, JSON otherwise). Logs go to stderr.' },
  { key: 'auth.mode', kind: 'auth-mode', default: 'off', env: 'RILL_AUTH', flag: '--auth', description: '`off` or `required`. Required: on every listener a connection may call only ApiVersions and the SASL handshake (SCRAM-SHA-256, SCRAM-SHA-512; PLAIN on TLS only) until it authenticates, and is closed after 10 s if it does not. Users live in `<dataDir>/users.json` (`rill users add`). Also turns on the ACLs (`<dataDir>/acls.json`, `rill acls add`): nothing is allowed unless an ACL allows it, super users excepted.' },
  { key: 'auth.superUsers', kind: 'names', default: '', env: 'RILL_SUPER_USERS', flag: '--super-users', description: 'Comma-separated users the ACLs do not bind (e.g. `admin`, or a certificate principal `User:CN=ops`). Give the first admin here, create it offline (`rill users add admin --data-dir DIR`), then manage users and ACLs online.' },
  { key: 'auth.allowAnonymous', kind: 'bool', default: 'false', env: 'RILL_ALLOW_ANONYMOUS', flag: '--allow-anonymous', description: 'Protected mode: a listener that is not on loopback (127.0.0.0/8, ::1, localhost) refuses to start without authentication (`auth.mode required`, or `tls.clientAuth required` on it) unless this is true, which is logged as a warning on every start.' },
  { key: 'quotas.connectionsPerPrincipal', kind: 'int', default: 0, min: 0, max: connectionsMax, env: 'RILL_QUOTA_CONNECTIONS_PER_PRINCIPAL', flag: '--quota-connections-per-principal', description: 'Connections one principal may have open at once; 0: unlimited. The principal is the SASL user or TLS certificate (`User:...`); an anonymous connection counts under its client address. The one over the limit is answered `TOO_MANY_CONNECTIONS` (to its SASL login, or else to its first request) and closed.' },
  { key: 'quotas.produceBytesPerSecond', kind: 'int', default: 0, min: 0, max: quotaBytesPerSecondMax, env: 'RILL_QUOTA_PRODUCE_BYTES_PER_SECOND', flag: '--quota-produce-bytes-per-second', description: 'Produce request bytes per second per principal (all its connections together); 0: unlimited. Up to one second of it passes at once; past that each reply is held back (`throttleTimeMs`) until the principal is back under the rate, and its connection is not read meanwhile.' },
  { key: 'quotas.fetchBytesPerSecond', kind: 'int', default: 0, min: 0, max: quotaBytesPerSecondMax, env: 'RILL_QUOTA_FETCH_BYTES_PER_SECOND', flag: '--quota-fetch-bytes-per-second', description: 'Fetch reply bytes per second per principal, throttled the same way; 0: unlimited. A reply then holds at most one second of the rate (or one batch).' },
  { key: 'quotas.users.NAME.connections', kind: 'int', default: '', min: 0, max: connectionsMax, env: null, flag: null, description: 'Config file only: the user `NAME` (principal `User:NAME`, a SASL user or a certificate subject) gets this connection limit instead of `quotas.connectionsPerPrincipal`; 0: unlimited.' },
  { key: 'quotas.users.NAME.produceBytesPerSecond', kind: 'int', default: '', min: 0, max: quotaBytesPerSecondMax, env: null, flag: null, description: 'Config file only: this user\'s produce rate instead of `quotas.produceBytesPerSecond`; 0: unlimited.' },
  { key: 'quotas.users.NAME.fetchBytesPerSecond', kind: 'int', default: '', min: 0, max: quotaBytesPerSecondMax, env: null, flag: null, description: 'Config file only: this user\'s fetch rate instead of `quotas.fetchBytesPerSecond`; 0: unlimited.' },
  { key: 'cluster.etcd', kind: 'urls', default: '', env: 'RILL_ETCD', flag: '--etcd', description: 'etcd client URLs (`http://HOST:PORT`, comma-separated). Set: the broker joins the cluster `cluster.name`, registering itself under an etcd lease it keeps alive, and takes part in the controller election; a second live broker with the same `nodeId` refuses to start. Empty: a single broker, no etcd.' },
  { key: 'cluster.name', kind: 'name', default: 'rill', env: 'RILL_CLUSTER', flag: '--cluster', description: 'Brokers with the same etcd and cluster name form one cluster (its keys live under `/rill/<name>/` in etcd). Letters, digits, `.`, `_`, `-`.' },
  { key: 'cluster.autoReplaceDeadBrokersMs', kind: 'int', default: 0, min: 0, max: 604_800_000, env: 'RILL_AUTO_REPLACE_DEAD_BROKERS_MS', flag: null, description: 'When a broker holding replicas has been dead (no lease) this long, the controller re-creates its replicas on live brokers (a rebalance), so the replication factor heals by itself. 0 (default, as in Kafka): never; its partitions stay under-replicated until it returns or `rill cluster decommission` moves them.' },
  { key: 'cluster.moveBytesPerSec', kind: 'int', default: 52_428_800, min: 0, max: 10_737_418_240, env: 'RILL_MOVE_BYTES_PER_SEC', flag: null, description: 'How fast a leader sends a partition to a replica that is being added by a move (rebalance, decommission), per follower, in bytes/s, so moves do not starve producers and consumers. 0: unlimited. Followers already in the ISR, and replicas catching up after a restart, are never throttled.' },
  { key: 'cluster.interBrokerUser', kind: 'name', default: '', env: 'RILL_INTER_BROKER_USER', flag: null, description: 'With `auth.mode` required: the user this broker authenticates as (SCRAM-SHA-512) when it replicates from the others; its password comes from `RILL_INTER_BROKER_PASSWORD` only. Make it a super user (or give it alter on the cluster). Not needed when the listeners use mTLS: a broker then presents its own certificate.' },
  { key: 'cluster.rack', kind: 'name', default: '', env: 'RILL_RACK', flag: '--rack', description: 'The rack (or zone) of this broker, shown in Metadata and `rill cluster describe`.' },
  { key: 'cluster.leaseTtlMs', kind: 'int', default: 6000, min: 2000, max: 300_000, env: 'RILL_LEASE_TTL_MS', flag: null, description: 'TTL of the etcd lease that is the broker\'s heartbeat (whole seconds in etcd: rounded up). A broker whose lease was not renewed for this long is dead to the cluster, and a dead controller is replaced after about this long.' },
  { key: 'cluster.replicaLagMaxMs', kind: 'int', default: 10_000, min: 500, max: 600_000, env: 'RILL_REPLICA_LAG_MAX_MS', flag: null, description: 'A follower that has not caught up with its leader (log end and fsync) for this long leaves the in-sync replicas, so acks \'all\' stops waiting for it; it rejoins once it has caught up.' },
  { key: 'shutdownGraceMs', kind: 'int', default: 5000, min: 0, max: 600_000, env: 'RILL_SHUTDOWN_GRACE_MS', flag: null, description: 'Longest a graceful stop waits for in-flight requests.' },
  { key: 'housekeepingIntervalMs', kind: 'int', default: 1000, min: 10, max: 3_600_000, env: 'RILL_HOUSEKEEPING_INTERVAL_MS', flag: null, description: 'How often retention and time-based flushes run.' },
];

/** Keys a listener may have under `listeners.<name>`. */
const listenerKeys = ['listen', 'advertise', 'tls.cert', 'tls.key', 'tls.ca', 'tls.clientAuth'] as const;

/** The environment variable naming a config file (the `--config` flag wins over it). */
export const configFileEnv = 'RILL_CONFIG';

const specByKey = new Map(settingSpecs.map((spec) => [spec.key, spec]));
const knownFileKeys = settingSpecs.map((spec) => spec.key.replace(`listeners.${defaultListenerName}.`, 'listeners.NAME.'));

/** A file key as its generic spec key: `listeners.NAME.*` and `quotas.users.NAME.*`. */
function genericKey(key: string): string {
  const user = userQuotaKeyPattern.exec(key);
  if (user !== null) return `quotas.users.NAME.${user[2]}`;
  return key.replace(/^listeners\.[^.]+\./, 'listeners.NAME.');
}
const listenerNamePattern = /^[a-zA-Z][a-zA-Z0-9_-]{0,31}$/;
const configFileBytesMax = 1024 * 1024;

/** Flag values as typed on the command line (undefined: not given). */
export interface SettingFlags {
  config?: string | undefined;
  dataDir?: string | undefined;
  nodeId?: string | undefined;
  host?: string | undefined;
  port?: string | undefined;
  listen?: string | undefined;
  advertise?: string | undefined;
  http?: string | undefined;
  logLevel?: string | undefined;
  logFormat?: string | undefined;
  auth?: string | undefined;
  superUsers?: string | undefined;
  /** A boolean flag: present (true) or absent. */
  allowAnonymous?: boolean | undefined;
  quotaConnectionsPerPrincipal?: string | undefined;
  quotaProduceBytesPerSecond?: string | undefined;
  quotaFetchBytesPerSecond?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  tlsCa?: string | undefined;
  tlsClientAuth?: string | undefined;
  etcd?: string | undefined;
  cluster?: string | undefined;
  rack?: string | undefined;
}

const flagFieldBySpec: Record<string, keyof SettingFlags> = {
  '--data-dir': 'dataDir',
  '--node-id': 'nodeId',
  '--listen': 'listen',
  '--advertise': 'advertise',
  '--http': 'http',
  '--log-level': 'logLevel',
  '--log-format': 'logFormat',
  '--auth': 'auth',
  '--super-users': 'superUsers',
  '--allow-anonymous': 'allowAnonymous',
  '--quota-connections-per-principal': 'quotaConnectionsPerPrincipal',
  '--quota-produce-bytes-per-second': 'quotaProduceBytesPerSecond',
  '--quota-fetch-bytes-per-second': 'quotaFetchBytesPerSecond',
  '--tls-cert': 'tlsCert',
  '--tls-key': 'tlsKey',
  '--tls-ca': 'tlsCa',
  '--tls-client-auth': 'tlsClientAuth',
  '--etcd': 'etcd',
  '--cluster': 'cluster',
  '--rack': 'rack',
};

export interface ResolvedSettings {
  settings: BrokerSettings;
  effective: EffectiveSetting[];
  /** The config file read, if any. */
  file: string | null;
  /** Things worth a warning that are not errors (unknown RILL_* variables). */
  warnings: string[];
}

/** Resolves flags, environment, file and defaults into validated settings. */
export function resolveSettings(flags: SettingFlags, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): ResolvedSettings {
  const warnings: string[] = [];
  const filePath = flags.config ?? nonEmpty(env[configFileEnv]);
  const fileValues = filePath === undefined ? new Map<string, unknown>() : readConfigFile(path.resolve(cwd, filePath));
  const where = (source: SettingSource, spec: SettingSpec, key: string): string => {
    if (source === 'flag') return `flag ${spec.flag}`;
    if (source === 'env') return `environment variable ${spec.env}`;
    if (source === 'file') return `${filePath}: key ${key}`;
    return `default of ${key}`;
  };

  // Raw values per key (listener keys per listener name), with their source.
  const raw = new Map<string, { value: unknown; source: SettingSource }>();
  for (const spec of settingSpecs) {
    if (spec.key.startsWith('listeners.') || spec.key.startsWith('quotas.users.')) continue;
    raw.set(spec.key, { value: spec.default, source: 'default' });
  }
  const listenerNames = new Set<string>();
  for (const [key, value] of fileValues) {
    const listener = /^listeners\.([^.]+)\.(.+)$/.exec(key);
    if (listener !== null) listenerNames.add(listener[1]!);
    raw.set(key, { value, source: 'file' });
  }
  const targetsDefault = flags.host !== undefined || flags.port !== undefined || flags.listen !== undefined || flags.advertise !== undefined
    || nonEmpty(env.RILL_LISTEN) !== undefined || nonEmpty(env.RILL_ADVERTISE) !== undefined
    || flags.tlsCert !== undefined || flags.tlsKey !== undefined || flags.tlsCa !== undefined || flags.tlsClientAuth !== undefined
    || nonEmpty(env.RILL_TLS_CERT) !== undefined || nonEmpty(env.RILL_TLS_KEY) !== undefined || nonEmpty(env.RILL_TLS_CA) !== undefined || nonEmpty(env.RILL_TLS_CLIENT_AUTH) !== undefined;
  if (listenerNames.size === 0 || targetsDefault) listenerNames.add(defaultListenerName);
  for (const spec of settingSpecs) {
    const envValue = spec.env === null ? undefined : nonEmpty(env[spec.env]);
    if (envValue !== undefined) raw.set(spec.key, { value: envValue, source: 'env' });
    const field = spec.flag === null ? undefined : flagFieldBySpec[spec.flag];
    const flagValue = field === undefined ? undefined : flags[field];
    if (flagValue !== undefined) raw.set(spec.key, { value: flagValue, source: 'flag' });
  }
  const knownEnv = new Set([configFileEnv, ...settingSpecs.flatMap((s) => (s.env === null ? [] : [s.env]))]);
  for (const name of Object.keys(env)) {
    if (name.startsWith('RILL_') && !knownEnv.has(name)) warnings.push(`ignoring unknown environment variable ${name}${didYouMean(name, knownEnv)}`);
  }

  const value = (key: string): { value: unknown; source: SettingSource; spec: SettingSpec } => {
    const spec = specByKey.get(genericKey(key).replace('listeners.NAME.', `listeners.${defaultListenerName}.`))!;
    const found = raw.get(key);
    return found === undefined ? { value: '', source: 'default', spec } : { ...found, spec };
  };
  const parse = <T>(key: string, parser: (v: unknown, spec: SettingSpec) => T): { parsed: T; source: SettingSource } => {
    const { value: v, source, spec } = value(key);
    try {
      return { parsed: parser(v, spec), source };
    } catch (error) {
      throw new SettingsError(`${where(source, spec, key)}: ${(error as Error).message}`);
    }
  };

  const effective: EffectiveSetting[] = [];
  const record = (name: string, source: SettingSource, shown: string | number | null, spec: SettingSpec): void => {
    effective.push({ name, value: spec.secret === true && shown !== null ? '******' : shown, source, secret: spec.secret === true });
  };

  const dataDir = parse('dataDir', (v) => path.resolve(cwd, asString(v, 'a directory path')));
  record('dataDir', dataDir.source, dataDir.parsed, specByKey.get('dataDir')!);
  const nodeId = parse('nodeId', asInt);
  record('nodeId', nodeId.source, nodeId.parsed, specByKey.get('nodeId')!);

  const listeners: ListenerSettings[] = [];
  for (const name of [...listenerNames].sort((a, b) => (a === defaultListenerName ? -1 : b === defaultListenerName ? 1 : a.localeCompare(b)))) {
    if (!listenerNamePattern.test(name)) throw new SettingsError(`${filePath}: listener name "${name}" must start with a letter and hold only letters, digits, '_' and '-' (at most 32)`);
    const listenKey = `listeners.${name}.listen`;
    if (name !== defaultListenerName && raw.get(listenKey) === undefined) throw new SettingsError(`${filePath}: listener "${name}" needs ${listenKey}: HOST:PORT`);
    const listen = parse(listenKey, (v) => parseAddress(v === '' ? `127.0.0.1:${defaultPort}` : v));
    let { host, port } = listen.parsed;
    let source = listen.source;
    if (name === defaultListenerName) {
      if ((flags.host !== undefined || flags.port !== undefined) && flags.listen !== undefined) throw new SettingsError('give --listen HOST:PORT, or --host and --port, not both');
      if (flags.host !== undefined) {
        if (flags.host.trim() === '') throw new SettingsError('flag --host: expected a host name or IP address');
        host = flags.host;
        source = 'flag';
      }
      if (flags.port !== undefined) {
        port = parsePort(flags.port, '--port');
        source = 'flag';
      }
    }
    record(listenKey, source, `${host}:${port}`, specByKey.get('listeners.rill.listen')!);
    const advertiseKey = `listeners.${name}.advertise`;
    const advertise = parse(advertiseKey, (v) => (v === '' || v === null ? null : parseAddress(v)));
    if (advertise.parsed !== null && (advertise.parsed.host === '0.0.0.0' || advertise.parsed.host === '::')) {
      throw new SettingsError(`${where(advertise.source, specByKey.get('listeners.rill.advertise')!, advertiseKey)}: ${advertise.parsed.host} is not an address a client can connect to; advertise this machine's host name or IP`);
    }
    record(advertiseKey, advertise.source, advertise.parsed === null ? null : `${advertise.parsed.host}:${advertise.parsed.port}`, specByKey.get('listeners.rill.advertise')!);
    const tls = listenerTls(name, parse, (key, source, shown) => record(key, source, shown, listenerSpec(key)), (source, key) => where(source, listenerSpec(key), key), cwd);
    listeners.push({ name, host, port, advertise: advertise.parsed, tls });
  }

  const http = parse('http.listen', (v) => (v === 'off' || v === false ? null : parseAddress(v)));
  let httpAddress = http.parsed;
  // A broker asked to pick a free Rill port (port 0, as tests and scripts do) picks a free HTTP
  // port too, unless told otherwise: several such brokers then run side by side.
  if (http.source === 'default' && httpAddress !== null && listeners[0]!.port === 0) httpAddress = { ...httpAddress, port: 0 };
  record('http.listen', http.source, httpAddress === null ? 'off' : `${httpAddress.host}:${httpAddress.port}`, specByKey.get('http.listen')!);

  const level = parse('log.level', (v) => oneOf(v, logLevels));
  record('log.level', level.source, level.parsed, specByKey.get('log.level')!);
  const format = parse('log.format', (v) => oneOf(v, ['json', 'pretty', 'auto'] as const));
  record('log.format', format.source, format.parsed, specByKey.get('log.format')!);
  const auth = parse('auth.mode', (v) => oneOf(v, ['off', 'required'] as const));
  record('auth.mode', auth.source, auth.parsed, specByKey.get('auth.mode')!);
  const superUsers = parse('auth.superUsers', asNames);
  record('auth.superUsers', superUsers.source, superUsers.parsed.join(',') || null, specByKey.get('auth.superUsers')!);
  const allowAnonymous = parse('auth.allowAnonymous', asBool);
  record('auth.allowAnonymous', allowAnonymous.source, String(allowAnonymous.parsed), specByKey.get('auth.allowAnonymous')!);
  if (auth.parsed !== 'required' && !allowAnonymous.parsed) {
    for (const listener of listeners) {
      if (isLoopbackHost(listener.host) || listener.tls?.clientAuth === 'required') continue;
      throw new SettingsError(`listener ${listener.name} listens on ${listener.host}:${listener.port}, which is not loopback, and nothing authenticates its clients: `
        + 'require authentication (--auth required, with users from rill users add), or require client certificates on it (--tls-client-auth required), '
        + 'or accept anyone who can reach it with --allow-anonymous (protected mode; see the README, Securing Rill)');
    }
  }
  const cluster = resolveCluster(parse, (key, source, shown) => record(key, source, shown, specByKey.get(key)!), warnings);
  const grace = parse('shutdownGraceMs', asInt);
  record('shutdownGraceMs', grace.source, grace.parsed, specByKey.get('shutdownGraceMs')!);
  const housekeeping = parse('housekeepingIntervalMs', asInt);
  record('housekeepingIntervalMs', housekeeping.source, housekeeping.parsed, specByKey.get('housekeepingIntervalMs')!);
  const quotas = resolveQuotas(fileValues, parse, record);

  return {
    settings: {
      dataDir: dataDir.parsed,
      nodeId: nodeId.parsed,
      listeners,
      http: httpAddress,
      httpExplicit: http.source !== 'default',
      logLevel: level.parsed,
      logFormat: format.parsed,
      shutdownGraceMs: grace.parsed,
      housekeepingIntervalMs: housekeeping.parsed,
      authRequired: auth.parsed === 'required',
      superUsers: superUsers.parsed,
      allowAnonymous: allowAnonymous.parsed,
      quotas,
      cluster,
    },
    effective,
    file: filePath === undefined ? null : path.resolve(cwd, filePath),
    warnings,
  };
}

/** The `quotas.*` keys: defaults for every principal, and per-user overrides from the file. */
function resolveQuotas(fileValues: Map<string, unknown>, parse: Parse, record: (name: string, source: SettingSource, shown: string | number | null, spec: SettingSpec) => void): QuotaConfig {
  const int = (key: string, spec: SettingSpec): number => {
    const { parsed, source } = parse(key, asInt);
    record(key, source, parsed, spec);
    return parsed;
  };
  const users = new Map<string, QuotaOverride>();
  for (const key of fileValues.keys()) {
    const match = userQuotaKeyPattern.exec(key);
    if (match === null) continue;
    const [, name, field] = match as unknown as [string, string, (typeof userQuotaFields)[number]];
    const override = users.get(name) ?? {};
    override[field === 'connections' ? 'connectionsPerPrincipal' : field] = int(key, specByKey.get(`quotas.users.NAME.${field}`)!);
    users.set(name, override);
  }
  return {
    connectionsPerPrincipal: int('quotas.connectionsPerPrincipal', specByKey.get('quotas.connectionsPerPrincipal')!),
    produceBytesPerSecond: int('quotas.produceBytesPerSecond', specByKey.get('quotas.produceBytesPerSecond')!),
    fetchBytesPerSecond: int('quotas.fetchBytesPerSecond', specByKey.get('quotas.fetchBytesPerSecond')!),
    users,
  };
}

/** `cluster.*`: null without etcd endpoints (the other keys then only earn a warning). */
function resolveCluster(parse: Parse, record: (key: string, source: SettingSource, shown: string | number | null) => void, warnings: string[]): ClusterConfig | null {
  const etcd = parse('cluster.etcd', asEtcdUrls);
  record('cluster.etcd', etcd.source, etcd.parsed.join(',') || null);
  const name = parse('cluster.name', (v) => asChecked(v, clusterNameProblem));
  record('cluster.name', name.source, name.parsed);
  const rack = parse('cluster.rack', (v) => (v === '' || v === null ? null : asChecked(v, rackProblem)));
  record('cluster.rack', rack.source, rack.parsed);
  const ttl = parse('cluster.leaseTtlMs', asInt);
  record('cluster.leaseTtlMs', ttl.source, ttl.parsed);
  const lag = parse('cluster.replicaLagMaxMs', asInt);
  record('cluster.replicaLagMaxMs', lag.source, lag.parsed);
  const autoReplace = parse('cluster.autoReplaceDeadBrokersMs', asInt);
  record('cluster.autoReplaceDeadBrokersMs', autoReplace.source, autoReplace.parsed);
  const moveRate = parse('cluster.moveBytesPerSec', asInt);
  record('cluster.moveBytesPerSec', moveRate.source, moveRate.parsed);
  const interBrokerUser = parse('cluster.interBrokerUser', (v) => (v === '' || v === null ? null : String(v)));
  record('cluster.interBrokerUser', interBrokerUser.source, interBrokerUser.parsed);
  if (etcd.parsed.length === 0) {
    const stray = [name, rack, ttl, lag].some((s) => s.source !== 'default');
    if (stray) warnings.push('cluster.name, cluster.rack, cluster.leaseTtlMs and cluster.replicaLagMaxMs do nothing without cluster.etcd (--etcd URL): this broker runs alone');
    return null;
  }
  return { etcdEndpoints: etcd.parsed, name: name.parsed, rack: rack.parsed, leaseTtlMs: ttl.parsed, replicaLagMaxMs: lag.parsed, autoReplaceDeadBrokersMs: autoReplace.parsed, moveBytesPerSec: moveRate.parsed, interBrokerUser: interBrokerUser.parsed };
}

const etcdEndpointsMax = 16;

/** `http://HOST:PORT[,...]` (or HOST:PORT, taken as http). */
function asEtcdUrls(value: unknown): string[] {
  if (value === '' || value === null) return [];
  if (typeof value !== 'string') throw new Error(`expected etcd URLs (http://HOST:PORT, comma-separated), got ${JSON.stringify(value)}`);
  const urls = value.split(',').map((url) => url.trim()).filter((url) => url !== '');
  if (urls.length > etcdEndpointsMax) throw new Error(`at most ${etcdEndpointsMax} etcd URLs, got ${urls.length}`);
  return urls.map((url) => {
    if (/^https:\/\//i.test(url)) throw new Error(`${url}: TLS to etcd is not supported yet; use an http:// URL`);
    const address = url.replace(/^http:\/\//i, '').replace(/\/$/, '');
    try {
      parseAddress(address);
    } catch {
      throw new Error(`expected etcd URLs like http://127.0.0.1:2379, got ${JSON.stringify(url)}`);
    }
    return `http://${address}`;
  });
}

function asChecked(value: unknown, problem: (text: string) => string | null): string {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string') throw new Error(`expected a name, got ${JSON.stringify(value)}`);
  const reason = problem(text);
  if (reason !== null) throw new Error(`${JSON.stringify(text)} ${reason}`);
  return text;
}

/** The spec of `listeners.<any name>.<key>`. */
function listenerSpec(key: string): SettingSpec {
  return specByKey.get(key.replace(/^listeners\.[^.]+\./, `listeners.${defaultListenerName}.`))!;
}

type Parse = <T>(key: string, parser: (v: unknown, spec: SettingSpec) => T) => { parsed: T; source: SettingSource };

/** A listener's `tls.*` keys: cert and key together or neither; client auth needs a CA. */
function listenerTls(name: string, parse: Parse, record: (key: string, source: SettingSource, shown: string | null) => void, where: (source: SettingSource, key: string) => string, cwd: string): ListenerTlsSettings | null {
  const file = (suffix: string): { path: string | null; source: SettingSource; key: string } => {
    const key = `listeners.${name}.tls.${suffix}`;
    const { parsed, source } = parse(key, (v) => (v === '' || v === null ? null : path.resolve(cwd, asString(v, 'a file path'))));
    record(key, source, parsed);
    return { path: parsed, source, key };
  };
  const cert = file('cert');
  const key = file('key');
  const ca = file('ca');
  const clientAuthKey = `listeners.${name}.tls.clientAuth`;
  // Not set: a listener given a CA asks for client certificates (uses one when shown); without a CA, none.
  const clientAuth = parse(clientAuthKey, (v) => oneOf(v === '' ? (ca.path !== null ? 'requested' : 'none') : v, tlsClientAuthModes));
  record(clientAuthKey, clientAuth.source, clientAuth.parsed);
  if (cert.path === null && key.path === null) {
    const stray = ca.path !== null ? ca : clientAuth.source !== 'default' && clientAuth.parsed !== 'none' ? { source: clientAuth.source, key: clientAuthKey } : null;
    if (stray !== null) throw new SettingsError(`${where(stray.source, stray.key)}: listener ${name} has no TLS certificate; give --tls-cert FILE and --tls-key FILE (listeners.${name}.tls.cert and .key)`);
    return null;
  }
  if (cert.path === null || key.path === null) {
    const given = cert.path === null ? key : cert;
    throw new SettingsError(`${where(given.source, given.key)}: listener ${name} needs both a TLS certificate and its key (--tls-cert FILE --tls-key FILE, or listeners.${name}.tls.cert and .key)`);
  }
  if (clientAuth.parsed !== 'none' && ca.path === null) {
    throw new SettingsError(`${where(clientAuth.source, clientAuthKey)}: client certificates ${clientAuth.parsed} on listener ${name} need the CA that signs them (--tls-ca FILE or listeners.${name}.tls.ca)`);
  }
  return { certFile: cert.path, keyFile: key.path, caFile: ca.path, clientAuth: clientAuth.parsed };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/**
 * Reads and validates the YAML file into dotted keys. Every key must be known; an unknown one
 * names the closest known key.
 */
export function readConfigFile(file: string): Map<string, unknown> {
  let text: string;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new SettingsError(`config file ${file} is not a regular file`);
    if (stat.size > configFileBytesMax) throw new SettingsError(`config file ${file} is ${stat.size} bytes; at most ${configFileBytesMax} are read`);
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (error instanceof SettingsError) throw error;
    throw new SettingsError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  // Loaded only when there is a file to read: every module the broker process holds on to costs it
  // CPU under load (more old-generation collections, docs/metrics.md, Measured cost).
  const { parseDocument } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  const document = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (document.errors.length > 0) {
    const first = document.errors[0]!;
    const line = first.linePos?.[0];
    throw new SettingsError(`config file ${file}${line === undefined ? '' : ` line ${line.line} column ${line.col}`} is not valid YAML: ${first.message.split('\n')[0]}`);
  }
  let root: unknown;
  try {
    // maxAliasCount bounds alias expansion ("billion laughs").
    root = document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new SettingsError(`config file ${file} is not valid YAML: ${(error as Error).message}`);
  }
  if (root === null || root === undefined) return new Map();
  const values = new Map<string, unknown>();
  flatten(root, '', values, file);
  for (const key of values.keys()) {
    const generic = genericKey(key);
    if (!knownFileKeys.includes(generic)) {
      const listener = /^listeners\.[^.]+\.(.+)$/.exec(key);
      const hint = listener !== null ? didYouMean(listener[1]!, listenerKeys) : didYouMean(key, knownFileKeys);
      throw new SettingsError(`config file ${file}: unknown key "${key}"${hint}; the keys are listed in the README's configuration table`);
    }
  }
  return values;
}

/** Keys whose file value may be a YAML list. */
const listKeys: ReadonlySet<string> = new Set(['auth.superUsers']);

function flatten(value: unknown, prefix: string, into: Map<string, unknown>, file: string): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0 && prefix !== '') throw new SettingsError(`config file ${file}: "${prefix}" is empty`);
    for (const [key, child] of entries) flatten(child, prefix === '' ? key : `${prefix}.${key}`, into, file);
    return;
  }
  if (prefix === '') throw new SettingsError(`config file ${file}: expected a mapping of keys at the top level`);
  if (Array.isArray(value) && !listKeys.has(prefix)) throw new SettingsError(`config file ${file}: key "${prefix}" takes a single value, not a list`);
  into.set(prefix, value);
}

function asString(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new Error(`expected ${what}, got ${JSON.stringify(value)}`);
  return value;
}

/** `a,b` (flag, variable, file) or a YAML list of names. */
function asNames(value: unknown): string[] {
  const items = Array.isArray(value) ? value : value === '' || value === null ? [] : [value];
  const names = items.flatMap((item) => {
    if (typeof item !== 'string') throw new Error(`expected user names, got ${JSON.stringify(item)}`);
    return item.split(',').map((name) => name.trim()).filter((name) => name !== '');
  });
  for (const name of names) if (name.length > 255 || /[\u0000-\u001f\u007f]/.test(name)) throw new Error(`"${name.slice(0, 40)}" is not a user name`);
  return names;
}

function asBool(value: unknown): boolean {
  if (value === true || value === 'true' || value === '1') return true;
  if (value === false || value === 'false' || value === '0') return false;
  throw new Error(`expected true or false, got ${JSON.stringify(value)}`);
}

/** Loopback only: 127.0.0.0/8, ::1, localhost. A wildcard (0.0.0.0, ::) is every interface. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || /^::ffff:127\./i.test(host);
}

function asInt(value: unknown, spec: SettingSpec): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < (spec.min ?? 0) || n > (spec.max ?? Number.MAX_SAFE_INTEGER)) {
    throw new Error(`expected an integer in ${spec.min ?? 0}..${spec.max ?? Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function oneOf<T extends string>(value: unknown, choices: readonly T[]): T {
  if (typeof value === 'string' && (choices as readonly string[]).includes(value)) return value as T;
  throw new Error(`expected one of ${choices.join(', ')}, got ${JSON.stringify(value)}${typeof value === 'string' ? didYouMean(value, choices) : ''}`);
}

function parsePort(value: string, what: string): number {
  const port = /^\d{1,5}$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isInteger(port) || port > 65535) throw new SettingsError(`${what} must be an integer in 0..65535, got "${value}"`);
  return port;
}

/** HOST:PORT, with [v6]:PORT for IPv6. */
export function parseAddress(value: unknown): { host: string; port: number } {
  const text = typeof value === 'number' ? `:${value}` : typeof value === 'string' ? value.trim() : '';
  const match = /^(\[[^\]]+\]|[^:\s]*):(\d{1,5})$/.exec(text);
  const port = match === null ? Number.NaN : Number(match[2]);
  if (match === null || match[1] === '' || port > 65535) throw new Error(`expected HOST:PORT (e.g. 127.0.0.1:9092), got ${JSON.stringify(value)}`);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

/** The README's configuration table, generated from settingSpecs. */
export function settingsTableMarkdown(): string {
  const rows = settingSpecs.map((spec) => {
    const key = genericKey(spec.key.replace(`listeners.${defaultListenerName}.`, 'listeners.NAME.'));
    const shown = spec.default === '' ? '–' : `\`${spec.default}\``;
    return `| \`${key}\` | ${shown} | ${spec.env === null ? '–' : `\`${spec.env}\``} | ${spec.flag === null ? '–' : `\`${spec.flag}\``} | ${spec.description} |`;
  });
  return ['| key | default | environment | flag | what it does |', '|---|---|---|---|---|', ...rows].join('\n');
}
