/**
 * The broker process: a TCP server, one Connection per client, a dispatch table by api key, the
 * partitions, and housekeeping (retention, time-based flushes). Bad input never escapes a
 * request: it becomes an error reply (or, for unframeable bytes, a closed connection) and a count.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import { RillError, type DecodeError } from '../lib/errors.js';
import { monotonicClock, systemClock } from '../lib/clock.js';
import type { BrokerAuth } from './auth.js';
import { clusterResource, openAccess, type Access } from './access.js';
import type { BrokerAuthorization } from './authorization.js';
import type { CredentialStore as CredentialStoreType } from '../security/credentials.js';
import { connectionsMax, partialFramesBytesMax, requestHeaderBytes } from '../lib/limits.js';
import { ApiKey, apiNameByKey, apiVersionRanges, preAuthenticationApiKeys } from '../wire/apis.js';
import { crc32cImplementation } from '../wire/crc32c.js';
import { brokerConfig, quotasConfigured, type BrokerConfig, type ListenerConfig } from './config.js';
import type { BrokerQuotas } from './quotas.js';
import { DataDirLock } from './data-dir-lock.js';
import { isLoopbackHost, SettingsError } from './settings.js';
import type { TlsMaterial } from './tls.js';
import { Connection, FrameMemoryBudget, msgpackReply, type Dispatch, type ConnectionEvents, type Reply, type RequestContext } from './connection.js';
import { BrokerMetrics } from './metrics.js';
import { OperatorAlerts } from './operator-alerts.js';
import { BrokerRegistry } from './prometheus.js';
import type { HttpListener } from './http/server.js';
import type { OverviewSource } from './http/overview.js';
import { brokerVersion } from './version.js';
import { PartitionManager } from './partition-manager.js';
import type { Partition } from './partition.js';
import { decodeFindCoordinatorRequest } from '../wire/groups.js';
import { decodeMsgpack } from '../wire/msgpack.js';
import { defaultTopicConfig } from '../wire/control.js';
import { GroupHost } from './group-host.js';
import { handleInitProducerId, handleProduce } from './handlers/produce.js';
import { ProducerStates } from './producer-state.js';
import { handleFetch } from './handlers/fetch.js';
import { handleApiVersions, handleCreateTopics, handleDeleteTopics, handleListOffsets, handleMetadata, type MetadataBrokers } from './handlers/admin.js';
import type { ClusterMembership, LiveBroker } from '../cluster/membership.js';
import type { EtcdPort } from '../cluster/etcd-port.js';
import type { ClusterMetadata } from '../cluster/cluster-metadata.js';
import type { ReplicaManager } from './replica-manager.js';
import type { ClusterController } from '../cluster/controller.js';
import type { ClusterTopics } from './cluster-topics.js';
import type { BrokerRegistration } from '../cluster/records.js';
import { handleAlterConfigs, handleCreatePartitions, handleDeleteRecords, handleDescribeConfigs, type BrokerConfigEntry } from './handlers/admin-ops.js';

/**
 * How often members heartbeat. Plain heartbeats persist nothing, so this is cheap; it bounds how
 * long a survivor takes to pick up partitions a member released (graceful close, leave).
 */
export const groupHeartbeatIntervalMs = 500;

/** How long a start waits for etcd to let the broker register before it gives up (exit 2). */
export const clusterJoinTimeoutMs = 15_000;

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** A broker's address for clients of the listener `name` (else its `rill` listener, else its first). */
function addressOn(broker: LiveBroker, name: string): { nodeId: number; host: string; port: number } {
  const listener = broker.listeners.find((l) => l.name === name) ?? broker.listeners.find((l) => l.name === 'rill') ?? broker.listeners[0]!;
  return { nodeId: broker.nodeId, host: listener.host, port: listener.port };
}

/** A TLS 1.2 record: fatal (2) alert unexpected_message (10). */
const tlsUnexpectedMessageAlert = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a]);

interface BoundListener {
  config: ListenerConfig;
  server: net.Server;
  /** Its TLS files as last read (null: plaintext). */
  tls: TlsMaterial | null;
  /** The port actually bound (differs from config.port when that is 0). */
  port: number;
}

export class Broker {
  readonly config: BrokerConfig;
  readonly metrics: BrokerMetrics;
  /** Prometheus view of this broker (its own Registry: several brokers may share a process). */
  readonly prometheus: BrokerRegistry;
  readonly partitions: PartitionManager;
  readonly producers: ProducerStates;
  private readonly listeners: BoundListener[] = [];
  /** Sockets accepted while the data directory was still being opened; served once ready. */
  private readonly early = new Map<net.Socket, BoundListener>();
  private lock: DataDirLock | null = null;
  private isReady = false;
  private groups: GroupHost | null = null;
  /** Which takeover of __groups is current (a stale one closes the host it opened). */
  private groupsToken: symbol | null = null;
  /** replicated-group-store.ts, loaded with replication (before the replica manager reports leaderships). */
  private groupStoreModule: typeof import('./replicated-group-store.js') | null = null;
  private auth: BrokerAuth | null = null;
  private authLoading: Promise<BrokerAuth> | null = null;
  /** The ACLs, when authentication is required; otherwise everything is allowed. */
  private authorization: BrokerAuthorization | null = null;
  private access: Access = openAccess;
  /** handlers/acls.ts, loaded with the ACLs. */
  private aclHandlers: typeof import('./handlers/acls.js') | null = null;
  private readonly connections = new Set<Connection>();
  private readonly frameBudget = new FrameMemoryBudget(partialFramesBytesMax);
  private housekeeping: NodeJS.Timeout | null = null;
  private stopping: Promise<void> | null = null;
  private http: HttpListener | null = null;
  private readonly startedAtMs = Date.now();
  /** tls.ts (and node:tls), loaded only when a listener speaks TLS: a broker loads only what it uses. */
  private tlsModule: typeof import('./tls.js') | null = null;
  /** Connection and byte-rate quotas (quotas.ts), loaded only when one is configured. */
  private quotas: BrokerQuotas | null = null;
  /** Membership and the controller election, with --etcd; null: a single broker. */
  private membership: ClusterMembership | null = null;
  private etcdPort: EtcdPort | null = null;
  /** Replication, with --etcd (cluster/*): started once the data directory is open. */
  private replication: {
    metadata: ClusterMetadata;
    replicas: ReplicaManager;
    controller: ClusterController;
    topics: ClusterTopics;
    handlers: typeof import('./handlers/cluster-admin.js');
    groupStore: typeof import('./replicated-group-store.js');
  } | null = null;

  constructor(config: Partial<BrokerConfig> = {}) {
    this.config = brokerConfig(config);
    const alerts = new OperatorAlerts(this.config.log);
    this.metrics = new BrokerMetrics(alerts);
    this.prometheus = new BrokerRegistry(this.metricsSource);
    // Partition lines tagged with a `condition` (fsync failures, ...) are rate-limited and counted.
    this.partitions = new PartitionManager(this.config.dataDir, alerts.log, this.config.fileOps, this.prometheus.observeFlushRound);
    this.producers = new ProducerStates(this.config.dataDir, this.config.log, this.config.fileOps);
  }

  /** The bound port of the first listener (useful with port 0). */
  get port(): number {
    return this.listeners[0]?.port ?? 0;
  }

  /** The HTTP listener's port, or null when it is off (or not started yet). */
  get httpPort(): number | null {
    return this.http?.port ?? null;
  }

  private get metricsSource(): OverviewSource {
    const broker = this;
    return {
      metrics: this.metrics,
      partitions: () => broker.partitions.all(),
      requestsInFlight: () => {
        let total = 0;
        for (const connection of broker.connections) total += connection.requestsInFlight;
        return total;
      },
      groups: () => broker.groups?.views() ?? [],
      replication: () => broker.replication?.replicas.health() ?? null,
      get ready() {
        return broker.ready;
      },
      info: () => {
        const first = broker.listeners[0];
        const host = first === undefined ? broker.config.host : first.config.advertisedHost ?? first.config.host;
        const port = first === undefined ? 0 : first.config.advertisedPort ?? first.port;
        return { nodeId: broker.config.nodeId, host, port, httpPort: broker.httpPort, version: brokerVersion(), startedAtMs: broker.startedAtMs };
      },
    };
  }

  /** Every listener with the address it actually bound. */
  get boundListeners(): readonly { name: string; host: string; port: number }[] {
    return this.listeners.map(({ config, port }) => ({ name: config.name, host: config.host, port }));
  }

  /** True once the data directory is open and every listener serves; false again while stopping. */
  get ready(): boolean {
    return this.isReady && this.stopping === null;
  }

  /**
   * Starts in the order that keeps a failed start harmless: take the data directory's lock
   * (nothing else there is read or written before), bind every listener (a port in use fails
   * here, and the lock is released), then open and recover the logs and the groups, and only then
   * serve the connections that arrived meanwhile. A SettingsError means the operator's
   * configuration is at fault (lock held, directory unwritable, port in use): nothing in the data
   * directory was changed.
   */
  async start(): Promise<void> {
    const log = this.config.log;
    for (const listener of this.config.listeners!) {
      if (isWildcard(listener.host) && listener.advertisedHost === undefined) {
        log('warn', `listener ${listener.name} listens on every interface (${listener.host}) without an advertised address: each client is told the address it connected to; set --advertise HOST:PORT if clients go through NAT or a proxy`, { listener: listener.name });
      }
    }
    if (this.config.allowAnonymous === true && !(this.config.auth?.required ?? false)) {
      const open = this.config.listeners!.filter((l) => !isLoopbackHost(l.host) && l.tls?.clientAuth !== 'required').map((l) => `${l.name} (${l.host}:${l.port})`);
      if (open.length > 0) log('warn', `--allow-anonymous: listeners ${open.join(', ')} are not on loopback and anyone who reaches them may produce, read and delete every topic; require authentication (--auth required) unless a network boundary does this job`, { allowAnonymous: true, listeners: open });
    }
    // Unreadable or invalid TLS files are the operator's to fix, found before the data directory is touched.
    if (this.config.listeners!.some((l) => l.tls)) this.tlsModule = await import('./tls.js');
    if (quotasConfigured(this.config.quotas)) {
      const { BrokerQuotas: Quotas } = await import('./quotas.js');
      this.quotas = new Quotas(this.config.quotas, this.metrics, this.config.log, { nowMs: () => performance.now() });
    }
    const tlsByListener = new Map(this.config.listeners!.map((l) => [l.name, l.tls ? this.tlsModule!.loadTlsMaterial(l.name, l.tls) : null]));
    this.lock = DataDirLock.acquire(this.config.dataDir);
    if (this.lock.tookOverFrom !== null) {
      const stale = this.lock.tookOverFrom;
      log('warn', `took over the lock of ${this.config.dataDir} left by pid ${stale.pid} (started ${stale.startedAt}), which is no longer running`, { dataDir: this.config.dataDir, stalePid: stale.pid });
    }
    try {
      await this.openAuth();
      for (const listener of this.config.listeners!) this.listeners.push(await this.bind(listener, tlsByListener.get(listener.name) ?? null));
      await this.startHttp();
      this.logEffectiveConfig();
      await this.joinCluster();
      await this.open();
    } catch (error) {
      await this.abandonStart();
      throw error;
    }
    for (const { config, port, tls: material } of this.listeners) {
      const security = material === null ? '' : `, TLS, client certificates ${config.tls?.clientAuth ?? 'none'}`;
      log('info', `rill broker listening on ${config.host}:${port} (listener ${config.name}${security})`, { listener: config.name, host: config.host, port, tls: material !== null });
    }
  }

  /**
   * Authentication is loaded at start when it is required or users exist (a bad users.json then
   * stops the start: the broker must not run with an unknown set of users), else on the first
   * SASL handshake: a broker that no one logs in to does not carry the SASL and crypto modules
   * (every module the broker process holds costs it CPU under load: docs/metrics.md).
   */
  private async openAuth(): Promise<void> {
    // The file CredentialStore keeps (security/credentials.ts, usersFileName).
    const usersFile = path.join(this.config.dataDir, 'users.json');
    if ((this.config.auth?.required ?? false) || fs.existsSync(usersFile)) await this.loadAuth();
  }

  private loadAuth(): Promise<BrokerAuth> {
    this.authLoading ??= (async () => {
      const [{ CredentialStore, CredentialStoreError }, { BrokerAuth: Auth }] = await Promise.all([import('../security/credentials.js'), import('./auth.js')]);
      let store: CredentialStoreType;
      try {
        store = CredentialStore.open(this.config.dataDir, this.config.fileOps);
      } catch (error) {
        if (error instanceof CredentialStoreError) throw new SettingsError(error.message);
        throw error;
      }
      const required = this.config.auth?.required ?? false;
      if (required) await this.loadAuthorization();
      const auth = new Auth(store, this.metrics, this.metrics.alerts.log, systemClock, {
        required, failureDelayMs: this.config.auth?.failureDelayMs, timeoutMs: this.config.auth?.timeoutMs,
        admit: (connection, principal) => this.quotas?.authenticated(connection, principal) ?? null,
      });
      if (required) {
        const users = store.size === 0 ? 'no users yet: no client can connect until one is added (rill users add NAME --data-dir DIR, broker stopped)' : `${store.size} users`;
        this.config.log(store.size === 0 ? 'warn' : 'info', `authentication required on every listener (SCRAM-SHA-256, SCRAM-SHA-512; PLAIN on TLS only); ${users}`, { authRequired: true, users: store.size });
      }
      this.auth = auth;
      return auth;
    })();
    return this.authLoading;
  }

  /** The ACLs (acls.json) and the authorizer every handler asks; a bad file stops the start. */
  private async loadAuthorization(): Promise<void> {
    const [{ AclStore, AclStoreError }, { BrokerAuthorization: Authorization }, handlers] = await Promise.all([
      import('../security/acl-store.js'), import('./authorization.js'), import('./handlers/acls.js'),
    ]);
    let store;
    try {
      store = AclStore.open(this.config.dataDir, this.config.fileOps);
    } catch (error) {
      if (error instanceof AclStoreError) throw new SettingsError(error.message);
      throw error;
    }
    const authorization = new Authorization(store, this.config.auth?.superUsers ?? [], this.metrics);
    const superUsers = authorization.superUserPrincipals;
    this.config.log(store.size === 0 && superUsers.length === 0 ? 'warn' : 'info',
      `ACLs enforced: ${store.size} ACLs, super users ${superUsers.length === 0 ? 'none (no one can manage ACLs online: give --super-users)' : superUsers.join(', ')}; anything no ACL allows is refused`,
      { acls: store.size, superUsers });
    this.authorization = authorization;
    this.access = authorization;
    this.aclHandlers = handlers;
  }

  /** Once the start can no longer fail on the operator's settings: what this broker runs with. */
  private logEffectiveConfig(): void {
    const entries = this.config.effectiveConfig;
    if (entries === undefined) return;
    const shown = Object.fromEntries(entries.map((e) => [e.name, e.source === 'default' ? e.value : `${e.value} (${e.source})`]));
    const file = this.config.configFile;
    this.config.log('info', `starting rill broker${file ? ` with config file ${file}` : ''}`, { config: shown });
  }

  /** Opens (and if needed recovers) the logs and the groups, then serves who is waiting. */
  private async open(): Promise<void> {
    const log = this.config.log;
    const startedMs = Date.now();
    const { clean } = this.partitions.open();
    const topics = this.partitions.registry.size;
    const recovery = clean ? 'clean shutdown, no recovery needed' : topics === 0 ? 'nothing to recover' : 'no clean-shutdown marker, logs recovered from their recovery points';
    log('info', `data directory ${this.config.dataDir}: ${topics} topics, ${recovery} (${Date.now() - startedMs} ms)`, { dataDir: this.config.dataDir, topics, clean, recoveryMs: Date.now() - startedMs });
    log('info', `CRC-32C implementation: ${crc32cImplementation}`, { crc32c: crc32cImplementation });
    await this.startReplication();
    // In a cluster the groups live in the replicated __groups partition: its leader coordinates
    // them (onLeadership). Alone, in the data directory's group store.
    if (this.replication === null) {
      this.groups = await GroupHost.open(this.config.dataDir, this.partitions, log, { heartbeatIntervalMs: groupHeartbeatIntervalMs }, this.config.fileOps);
      this.groups.start();
    }
    this.housekeeping = setInterval(() => this.runHousekeeping(), this.config.housekeepingIntervalMs);
    this.housekeeping.unref();
    this.isReady = true;
    for (const [socket, listener] of this.early) this.serve(socket, listener);
    this.early.clear();
  }

  /**
   * With --etcd: registers this broker and takes part in the controller election, after the
   * listeners are bound (their advertised ports are what it registers) and before the data
   * directory is opened. Its node id held by another live broker, or etcd not answering, fails
   * the start with one line (SettingsError): nothing in the data directory was read or written
   * but the lock. etcd3 and gRPC are loaded here, and only here.
   */
  private async joinCluster(): Promise<void> {
    const cluster = this.config.cluster;
    if (cluster === null || cluster === undefined) return;
    const [{ ClusterMembership: Membership, ClusterStartError, etcdRequestTimeoutMs }, { openEtcd }] = await Promise.all([
      import('../cluster/membership.js'), import('../cluster/etcd-client.js'),
    ]);
    const port = openEtcd(cluster.etcdEndpoints, { requestTimeoutMs: etcdRequestTimeoutMs(cluster.leaseTtlMs) });
    this.etcdPort = port;
    this.membership = new Membership({
      port, cluster: cluster.name, leaseTtlMs: cluster.leaseTtlMs, self: this.registration(cluster.rack), log: this.config.log, clock: monotonicClock, endpoints: cluster.etcdEndpoints,
    });
    try {
      await this.membership.join(clusterJoinTimeoutMs);
    } catch (error) {
      if (error instanceof ClusterStartError) throw new SettingsError(error.message);
      throw error;
    }
  }

  /**
   * In a cluster, before any client is served: the topics and partition states from etcd, this
   * broker's role for each partition (a partition is served only once its role is known), the
   * controller (active while this broker holds the controller key) and topic administration.
   */
  private async startReplication(): Promise<void> {
    const cluster = this.config.cluster;
    const membership = this.membership;
    const port = this.etcdPort;
    if (cluster === null || cluster === undefined || membership === null || port === null) return;
    const [{ ClusterMetadata: Metadata }, { ReplicaManager: Replicas }, { ClusterController: Controller }, { ClusterTopics: Topics }, handlers, groupStore] = await Promise.all([
      import('../cluster/cluster-metadata.js'), import('./replica-manager.js'), import('../cluster/controller.js'), import('./cluster-topics.js'), import('./handlers/cluster-admin.js'),
      import('./replicated-group-store.js'),
    ]);
    this.groupStoreModule = groupStore;
    const log = this.metrics.alerts.log;
    const metadata = new Metadata(port, membership.keys, log);
    const listener = this.listeners.find((l) => l.config.name === 'rill') ?? this.listeners[0]!;
    // Over TLS, a broker presents its own certificate (its principal must be allowed to
    // replicate: a super user, or alter on the cluster) and trusts the listener's CA.
    const listenerTls = listener.config.tls;
    const tls = listenerTls ? {
      ca: listenerTls.caFile ? fs.readFileSync(listenerTls.caFile) : undefined, cert: fs.readFileSync(listenerTls.certFile), key: fs.readFileSync(listenerTls.keyFile),
    } : undefined;
    const replicas = new Replicas({
      nodeId: this.config.nodeId, port, keys: membership.keys, membership, metadata, partitions: this.partitions, producers: this.producers, log,
      replicaLagMaxMs: cluster.replicaLagMaxMs, moveBytesPerSec: cluster.moveBytesPerSec ?? 0, listenerName: listener.config.name, onTopicsChanged: () => this.onTopicsChanged(),
      onLeadership: (partition, leading) => this.onLeadership(partition, leading),
      connection: { clientId: `rill-broker-${this.config.nodeId}`, tls, sasl: this.interBrokerSasl(cluster.interBrokerUser ?? null) },
    });
    replicas.start();
    await metadata.start();
    const controller = new Controller(port, membership.keys, membership, metadata, log, cluster.autoReplaceDeadBrokersMs ?? 0);
    controller.start();
    const topics = new Topics(port, membership.keys, membership, metadata, this.partitions, log);
    topics.reserveSpare();
    this.replication = { metadata, replicas, controller, topics, handlers, groupStore };
  }

  /** SCRAM credentials replication logs in with (cluster.interBrokerUser, RILL_INTER_BROKER_PASSWORD). */
  private interBrokerSasl(user: string | null): { mechanism: 'scram-sha-512'; username: string; password: string } | undefined {
    if (user === null) return undefined;
    const password = process.env.RILL_INTER_BROKER_PASSWORD;
    if (password === undefined || password === '') throw new SettingsError(`cluster.interBrokerUser is ${user}, but RILL_INTER_BROKER_PASSWORD is not set: replication could not log in`);
    return { mechanism: 'scram-sha-512', username: user, password };
  }

  /** What this broker tells the cluster about itself: each listener's advertised address. */
  private registration(rack: string | null): BrokerRegistration {
    const listeners = this.listeners.map(({ config, port }) => ({
      name: config.name,
      // On every interface and told nothing: the host name is the best guess for other machines.
      host: config.advertisedHost ?? (isWildcard(config.host) ? os.hostname() : config.host),
      port: config.advertisedPort ?? port,
    }));
    return {
      nodeId: this.config.nodeId, listeners, rack, version: brokerVersion(), startedAtMs: this.startedAtMs,
      host: os.hostname(), pid: process.pid, dataDir: path.resolve(this.config.dataDir),
    };
  }

  /** The membership, when this broker is in a cluster (tests and the HTTP overview read it). */
  get cluster(): ClusterMembership | null {
    return this.membership;
  }

  /** Undoes a start that failed after binding: no listener, no lock, no timer left behind. */
  private async abandonStart(): Promise<void> {
    await this.membership?.close();
    if (this.housekeeping !== null) clearInterval(this.housekeeping);
    await this.http?.close();
    this.http = null;
    this.prometheus.close();
    for (const socket of this.early.keys()) socket.destroy();
    this.early.clear();
    await Promise.all(this.listeners.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve()))));
    this.listeners.length = 0;
    await this.groups?.close().catch(() => undefined);
    this.lock?.release();
  }

  /**
   * The HTTP listener binds with the others, before the data directory is opened: /healthz
   * answers during a long recovery and /readyz says when it is over. At its default address (not
   * chosen by the operator) a port in use is a warning: the broker runs without it.
   */
  private async startHttp(): Promise<void> {
    const address = this.config.http;
    if (address === null) return;
    // node:http and the listener are loaded only when configured.
    const { HttpListener } = await import('./http/server.js');
    try {
      this.http = await HttpListener.start(address.host, address.port, this.metricsSource, this.prometheus, this.config.log);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const where = `${address.host}:${address.port}`;
      if (code === 'EADDRINUSE' && this.config.httpOptional === true) {
        this.config.log('warn', `HTTP listener not started: its default address ${where} is in use (another broker?); give this broker its own with --http HOST:PORT, or --http off`, { http: where });
        return;
      }
      if (code === 'EADDRINUSE') throw new SettingsError(`HTTP listener: ${where} is already in use by another process (EADDRINUSE); choose another with --http HOST:PORT (or http.listen), or --http off`);
      if (code === 'EACCES' || code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new SettingsError(`HTTP listener: cannot listen on ${where} (${code}); choose another with --http HOST:PORT (or http.listen)`);
      throw error;
    }
    this.prometheus.collectProcessMetrics();
    this.config.log('info', `http listener (/metrics, /healthz, /readyz, console) on ${address.host}:${this.http.port}`, { http: `${address.host}:${this.http.port}` });
  }

  /**
   * Re-reads the certificate, key and CA of every TLS listener (SIGHUP). New handshakes use the
   * new files; open connections keep going. All files are checked before any listener changes:
   * a bad file is a SettingsError and every listener keeps what it had.
   */
  reloadTls(): string[] {
    const module = this.tlsModule;
    if (module === null) return [];
    const reloaded = this.listeners.filter((l) => l.tls !== null && l.config.tls).map((l) => ({ listener: l, material: module.loadTlsMaterial(l.config.name, l.config.tls!) }));
    for (const { listener, material } of reloaded) {
      (listener.server as tls.Server).setSecureContext(module.secureContextOptions(material));
      listener.tls = material;
    }
    return reloaded.map(({ listener }) => listener.config.name);
  }

  /** Binds one listener; a port in use or not allowed is the operator's to fix (SettingsError). */
  private async bind(config: ListenerConfig, material: TlsMaterial | null): Promise<BoundListener> {
    const module = this.tlsModule;
    const server = material === null || !config.tls || module === null
      ? net.createServer({ pauseOnConnect: true })
      : module.createTlsServer(config.tls, material, this.config.tlsHandshakeTimeoutMs ?? module.tlsHandshakeTimeoutMsDefault);
    const bound: BoundListener = { config, server, tls: material, port: 0 };
    if (material !== null) {
      // Served once the handshake is done; a failed or timed-out handshake never becomes a Connection.
      server.on('secureConnection', (socket) => this.accept(socket, bound));
      server.on('tlsClientError', (error: Error, socket: tls.TLSSocket) => this.onTlsClientError(error, socket, config.name));
    } else {
      server.on('connection', (socket) => this.accept(socket, bound));
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => {
        const address = `${config.host}:${config.port}`;
        if (error.code === 'EADDRINUSE') reject(new SettingsError(`listener ${config.name}: ${address} is already in use by another process (EADDRINUSE); choose another port (--port, --listen or listeners.${config.name}.listen)`));
        else if (error.code === 'EACCES') reject(new SettingsError(`listener ${config.name}: not allowed to listen on ${address} (ports below 1024 need privileges); choose another port`));
        else if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND') reject(new SettingsError(`listener ${config.name}: ${config.host} is not an address of this machine; choose another host (--host, --listen or listeners.${config.name}.listen)`));
        else reject(error);
      });
      server.listen(config.port, config.host, () => resolve());
    });
    server.on('error', (error) => this.config.log('error', `listener ${config.name}: ${error.message}`, { listener: config.name }));
    bound.port = (server.address() as net.AddressInfo).port;
    return bound;
  }

  /** A handshake that failed (plaintext client, untrusted or missing client certificate, old TLS, timeout): counted, logged, closed. */
  private onTlsClientError(error: Error, socket: tls.TLSSocket, listener: string): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.metrics.countError('TLS_HANDSHAKE_FAILED');
    const code = (error as NodeJS.ErrnoException).code ?? '';
    const plaintext = code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_HTTP_REQUEST';
    const reason = plaintext ? 'the client does not speak TLS (a plaintext client on a TLS listener)' : error.message.trim();
    // Rate-limited per client address: a client retrying a bad setup is one line per 10 s.
    const address = socket.remoteAddress ?? remote;
    this.metrics.alerts.raise('tls_handshake_failed', 'warn', `closing ${remote}: TLS handshake on listener ${listener} failed: ${reason}`, { remote, address, listener, code });
    // OpenSSL answers a non-TLS record with silence; a plaintext Rill client then sees only a
    // closed connection, which it retries. A fatal TLS alert (unexpected_message) lets it tell the
    // user that the broker expects TLS. `_parent` is the TCP socket under the TLS one (node internal).
    const raw = (socket as unknown as { _parent?: net.Socket })._parent;
    if (plaintext && raw instanceof net.Socket && raw.writable) raw.end(tlsUnexpectedMessageAlert, () => socket.destroy());
    else socket.destroy();
  }

  private accept(socket: net.Socket, listener: BoundListener): void {
    if (this.stopping !== null || this.connections.size + this.early.size >= connectionsMax) {
      this.metrics.connectionsRefused++;
      socket.destroy();
      return;
    }
    if (!this.isReady) {
      socket.pause();
      this.early.set(socket, listener);
      socket.once('close', () => this.early.delete(socket));
      socket.on('error', () => socket.destroy());
      return;
    }
    this.serve(socket, listener);
  }

  private serve(socket: net.Socket, listener: BoundListener): void {
    if (socket.destroyed) return;
    this.metrics.connectionsAccepted++;
    this.metrics.connectionsOpen++;
    const connection = new Connection(socket, this.dispatch, this.connectionEvents, this.frameBudget, listener.config.name);
    if (listener.tls !== null && this.tlsModule !== null) {
      // A verified client certificate authenticates the connection; without one it is anonymous
      // (principal null) and, with --auth required, must still authenticate through SASL.
      const principal = this.tlsModule.principalOf(socket);
      if (principal !== this.tlsModule.anonymousPrincipal) connection.principal = principal;
      this.config.log('debug', `TLS connection from ${connection.remote} on listener ${listener.config.name} as ${principal}`, { remote: connection.remote, listener: listener.config.name, principal });
    }
    this.connections.add(connection);
    this.quotas?.accept(connection);
    this.auth?.watch(connection);
    socket.resume();
  }

  private readonly connectionEvents: ConnectionEvents = {
    onProtocolError: (connection: Connection, error: DecodeError) => {
      this.metrics.countError(error.code);
      this.metrics.clientError(connection, error.code);
      this.config.log('warn', `closing ${connection.remote}: ${error.message}`, { remote: connection.remote });
    },
    onRequestError: (connection: Connection, error: RillError) => {
      this.metrics.countError(error.code);
      this.metrics.clientError(connection, error.code);
    },
    onInternalError: (connection: Connection, error: unknown) => {
      this.metrics.countError('UNKNOWN_SERVER_ERROR');
      this.config.log('error', `internal error serving ${connection.remote}: ${(error as Error)?.stack ?? String(error)}`, { remote: connection.remote });
    },
    onRequestDone: (apiKey: number, seconds: number) => this.prometheus.observeRequest(apiKey, seconds),
    onClose: (connection: Connection) => {
      if (this.connections.delete(connection)) this.metrics.connectionsOpen--;
      this.quotas?.release(connection);
    },
  };

  private readonly dispatch: Dispatch = (context: RequestContext) => {
    const { apiKey, apiVersion } = context.header;
    this.metrics.countRequest(apiKey);
    const range = apiVersionRanges.get(apiKey);
    if (range === undefined) throw new RillError('UNSUPPORTED_VERSION', `api key ${apiKey} is not supported by this broker`);
    if (apiVersion < range[0] || apiVersion > range[1]) {
      throw new RillError('UNSUPPORTED_VERSION', `${apiNameByKey.get(apiKey)} version ${apiVersion} is not supported; this broker speaks ${range[0]}..${range[1]}`);
    }
    if (this.stopping !== null) throw new RillError('BROKER_SHUTTING_DOWN');
    if (!preAuthenticationApiKeys.has(apiKey)) this.auth?.check(context.connection, apiNameByKey.get(apiKey)!);
    const access = this.access;
    switch (apiKey) {
      case ApiKey.SaslHandshake: return this.auth !== null ? this.auth.handleHandshake(context) : this.loadAuth().then((auth) => auth.handleHandshake(context));
      case ApiKey.SaslAuthenticate: return this.auth !== null ? this.auth.handleAuthenticate(context) : this.loadAuth().then((auth) => auth.handleAuthenticate(context));
      case ApiKey.Produce: return handleProduce(context, this.partitions, this.metrics, this.producers, access);
      case ApiKey.InitProducerId: return this.replication === null ? handleInitProducerId(context, this.producers, access) : handleInitProducerId(context, this.producers, access, () => this.replication!.topics.allocateProducerId());
      case ApiKey.ReplicaFetch: return this.replicaFetch(context, access);
      case ApiKey.AlterPlacement: return this.alterPlacement(context, access);
      case ApiKey.Fetch: return handleFetch(context, this.partitions, this.metrics, access);
      case ApiKey.ApiVersions: return handleApiVersions();
      case ApiKey.Metadata: return handleMetadata(context, this.partitions, this.metadataBrokers(context), this.config.nodeId, access, this.replication?.replicas ?? null);
      case ApiKey.CreateTopics: return this.replication === null ? handleCreateTopics(context, this.partitions, () => this.onTopicsChanged(), access) : this.replication.handlers.handleClusterCreateTopics(context, this.replication.topics, access);
      case ApiKey.DeleteTopics: return this.replication === null ? handleDeleteTopics(context, this.partitions, () => this.onTopicsChanged(), access) : this.replication.handlers.handleClusterDeleteTopics(context, this.replication.topics, access);
      case ApiKey.ListOffsets: return handleListOffsets(context, this.partitions, access);
      case ApiKey.FindCoordinator: return this.replication === null ? this.groupHost().handleFindCoordinator(context, this.self(context), access) : this.findCoordinator(context, access);
      case ApiKey.ConsumerGroupHeartbeat: return this.groupHost().handleHeartbeat(context, access);
      case ApiKey.OffsetCommit: return this.groupHost().handleOffsetCommit(context, access);
      case ApiKey.OffsetFetch: return this.groupHost().handleOffsetFetch(context, access);
      case ApiKey.ListGroups: return this.groupHost().handleListGroups(context, access);
      case ApiKey.DescribeGroups: return this.groupHost().handleDescribeGroups(context, access);
      case ApiKey.ResetGroupOffsets: return this.groupHost().handleResetOffsets(context, access);
      case ApiKey.DeleteGroups: return this.groupHost().handleDeleteGroups(context, access);
      case ApiKey.IncrementalAlterConfigs: return this.replication === null ? handleAlterConfigs(context, this.partitions, access) : this.replication.handlers.handleClusterAlterConfigs(context, this.replication.topics, access);
      case ApiKey.DescribeConfigs: return handleDescribeConfigs(context, this.partitions, () => this.effectiveConfig(), access);
      case ApiKey.CreatePartitions: return this.replication === null ? handleCreatePartitions(context, this.partitions, () => this.onTopicsChanged(), access) : this.replication.handlers.handleClusterCreatePartitions(context, this.replication.topics, access);
      case ApiKey.DeleteRecords: return handleDeleteRecords(context, this.partitions, access);
      case ApiKey.DescribeAcls: return this.acls().handlers.handleDescribeAcls(context, this.acls().authorization);
      case ApiKey.CreateAcls: return this.acls().handlers.handleCreateAcls(context, this.acls().authorization, this.config.log);
      case ApiKey.DeleteAcls: return this.acls().handlers.handleDeleteAcls(context, this.acls().authorization, this.config.log);
      case ApiKey.DescribeUserScramCredentials: return this.withUsers((users, store) => users.handleDescribeUsers(context, store, access));
      case ApiKey.AlterUserScramCredentials: return this.withUsers((users, store) => users.handleAlterUsers(context, store, access, this.config.log));
      default: throw new RillError('UNSUPPORTED_VERSION', `api key ${apiKey} is not supported by this broker`);
    }
  };

  /** AlterPlacement (rebalance, decommission): only in a cluster. */
  private alterPlacement(context: RequestContext, access: Access): Promise<Reply> {
    if (this.replication === null) throw new RillError('INVALID_ARGUMENT', 'this broker is not in a cluster: there is no placement to change');
    return this.replication.handlers.handleAlterPlacement(context, this.replication.topics, access);
  }

  /** ReplicaFetch: only between brokers of a cluster; with ACLs enforced it needs alter on the cluster. */
  private replicaFetch(context: RequestContext, access: Access): Reply | Promise<Reply> {
    if (this.replication === null) throw new RillError('INVALID_ARGUMENT', 'this broker is not in a cluster: there is nothing to replicate');
    if (access.enforced && !access.allows(context.connection, 'cluster', clusterResource, 'alter')) {
      throw new RillError('CLUSTER_AUTHORIZATION_FAILED', `${context.connection.principal ?? 'this connection'} may not replicate (alter on the cluster)`);
    }
    return this.replication.replicas.handleReplicaFetch(context);
  }

  /**
   * User administration works on the store BrokerAuth logs users in with, so it loads with
   * authentication (loadAuth), and its handlers with it: a broker no one administers or logs in
   * to carries neither.
   */
  private async withUsers(handle: (users: typeof import('./handlers/users.js'), store: CredentialStoreType) => Reply): Promise<Reply> {
    const [users, auth] = await Promise.all([import('./handlers/users.js'), this.loadAuth()]);
    return handle(users, auth.store);
  }

  /** This broker as clients of the listener a request came in on should reach it. */
  private self(context: RequestContext): { nodeId: number; host: string; port: number } {
    const listener = this.listeners.find((l) => l.config.name === context.connection.listenerName) ?? this.listeners[0]!;
    const { config, port } = listener;
    // Listening on every interface and told nothing: the address this client reached us at is
    // one it can reach again (advertising 0.0.0.0 would send it nowhere).
    const host = config.advertisedHost ?? (isWildcard(config.host) ? context.connection.socket.localAddress ?? config.host : config.host);
    return { nodeId: this.config.nodeId, host, port: config.advertisedPort ?? port };
  }

  /**
   * In a cluster every group is coordinated by the leader of __groups/0 (its records replicate
   * with the partition): FindCoordinator names it, creating the internal topic on first use (as
   * Kafka creates __consumer_offsets), with retention off and the default replication factor.
   */
  private async findCoordinator(context: RequestContext, access: Access): Promise<Reply> {
    const { key } = decodeFindCoordinatorRequest(decodeMsgpack(context.frame.subarray(requestHeaderBytes)));
    if (access.enforced && !access.allows(context.connection, 'group', key, 'describe')) {
      throw new RillError('GROUP_AUTHORIZATION_FAILED', `${context.connection.principal ?? 'this connection'} may not describe group "${key}"`);
    }
    const replication = this.replication!;
    const { groupsTopic } = replication.groupStore;
    let state = replication.replicas.assignment(groupsTopic, 0);
    if (state === undefined && replication.metadata.view.topics.get(groupsTopic) === undefined) {
      await replication.topics.create(groupsTopic, 1, -1, { ...defaultTopicConfig, retentionMs: -1, retentionBytes: -1 }).catch((error: unknown) => {
        if (!(error instanceof RillError) || error.code !== 'TOPIC_ALREADY_EXISTS') throw error;
      });
      state = replication.replicas.assignment(groupsTopic, 0);
    }
    if (state === undefined || state.leader < 0) throw new RillError('COORDINATOR_NOT_AVAILABLE', `${groupsTopic} has no leader now; retry shortly`);
    if (state.leader === this.config.nodeId) return msgpackReply(this.self(context));
    const leader = this.membership?.knownBrokers().find((b) => b.nodeId === state!.leader);
    if (leader === undefined) throw new RillError('COORDINATOR_NOT_AVAILABLE', `broker ${state.leader} leads ${groupsTopic} but its address is not known here; retry shortly`);
    return msgpackReply(addressOn(leader, context.connection.listenerName));
  }

  /** This broker started or stopped leading a partition: for __groups/0, it starts or stops coordinating groups. */
  private onLeadership(partition: Partition, leading: boolean): void {
    const groupStore = this.groupStoreModule;
    if (groupStore === null || partition.topic !== groupStore.groupsTopic || partition.index !== 0) return;
    const previous = this.groups;
    this.groups = null;
    const token = Symbol('coordinating');
    this.groupsToken = token;
    if (previous !== null) {
      this.config.log('info', 'no longer coordinating groups (another broker leads __groups now)', {});
      previous.close().catch(() => undefined);
    }
    if (!leading || this.stopping !== null) return;
    const log = this.config.log;
    const takeOver = (): void => {
      GroupHost.open(this.config.dataDir, this.partitions, log, { heartbeatIntervalMs: groupHeartbeatIntervalMs }, this.config.fileOps, () => groupStore.ReplicatedGroupStore.open(partition, log)).then((host) => {
        if (this.groupsToken !== token || this.stopping !== null) {
          host.close().catch(() => undefined);
          return;
        }
        this.groups = host;
        host.start();
        log('info', 'coordinating the groups of the cluster (leader of __groups)', {});
      }, (error: unknown) => {
        // Still the leader (e.g. too few in-sync replicas for acks all yet): try again shortly.
        if (this.groupsToken !== token || this.stopping !== null) return;
        log('warn', `could not take over the groups of the cluster yet: ${(error as Error).message}; retrying in 1 s (clients get COORDINATOR_NOT_AVAILABLE and retry)`, {});
        setTimeout(takeOver, 1000).unref();
      });
    };
    takeOver();
  }

  /**
   * The brokers Metadata names, each with its address on the listener the request came in on.
   * A single broker: itself, as controller. In a cluster: the live brokers and the controller,
   * from etcd; while this broker is not registered (lease lapsed, etcd unreachable) it vouches
   * for nothing but itself (alive: false, no controller), and keeps serving.
   */
  private metadataBrokers(context: RequestContext): MetadataBrokers {
    const self = this.self(context);
    const membership = this.membership;
    const rack = this.config.cluster?.rack ?? null;
    if (membership === null) return { brokers: [{ ...self, rack, alive: true }], controllerId: self.nodeId, controllerEpoch: 0, cluster: null };
    const cluster = this.config.cluster!.name;
    const live = membership.brokers();
    if (live.length === 0) {
      // Not registered now (etcd away): the brokers as last known, so clients still reach the
      // leaders; only this one is vouched for as not alive.
      const known = membership.knownBrokers().filter((broker) => broker.nodeId !== self.nodeId).map((broker) => ({ ...addressOn(broker, context.connection.listenerName), rack: broker.rack, alive: true }));
      return { brokers: [{ ...self, rack, alive: false }, ...known].sort((a, b) => a.nodeId - b.nodeId), controllerId: -1, controllerEpoch: -1, cluster };
    }
    const listenerName = context.connection.listenerName;
    // This broker as self() gives it (the address this client reached), the others as registered.
    const others = live.filter((broker) => broker.nodeId !== self.nodeId).map((broker) => ({ ...addressOn(broker, listenerName), rack: broker.rack, alive: true }));
    const brokers = [{ ...self, rack, alive: true }, ...others].sort((a, b) => a.nodeId - b.nodeId);
    const controller = membership.controller();
    return { brokers, controllerId: controller?.nodeId ?? -1, controllerEpoch: controller?.epoch ?? -1, cluster };
  }

  /** For DescribeConfigs: the resolved configuration when the CLI passed one, else the main fields as defaults. */
  private effectiveConfig(): readonly BrokerConfigEntry[] {
    if (this.config.effectiveConfig !== undefined) return this.config.effectiveConfig;
    const { dataDir, host, port, nodeId, housekeepingIntervalMs, shutdownGraceMs } = this.config;
    return Object.entries({ dataDir, host, port, nodeId, housekeepingIntervalMs, shutdownGraceMs }).map(([name, value]) => ({ name, value, source: 'default' }));
  }

  /** The ACL handlers and store; SECURITY_DISABLED when no ACLs are enforced. */
  private acls(): { handlers: typeof import('./handlers/acls.js'); authorization: BrokerAuthorization } {
    if (this.authorization === null || this.aclHandlers === null) {
      throw new RillError('SECURITY_DISABLED', 'this broker does not require authentication, so it enforces no ACLs; start it with --auth required (and --super-users) to manage them');
    }
    return { handlers: this.aclHandlers, authorization: this.authorization };
  }

  private groupHost(): GroupHost {
    if (this.groups === null) throw new RillError('COORDINATOR_NOT_AVAILABLE', 'the group coordinator is not loaded yet');
    return this.groups;
  }

  /** Groups subscribed to a created or deleted topic rebalance. */
  private onTopicsChanged(): void {
    this.groups?.onTopicsChanged();
  }

  private runHousekeeping(): void {
    const nowMs = Date.now();
    for (const partition of this.partitions.all()) {
      try {
        const deleted = partition.log.applyRetention(nowMs);
        if (deleted.deletedSegments > 0) this.config.log('info', `${partition.topic}/${partition.index}: retention deleted ${deleted.deletedSegments} segments (${deleted.deletedBytes} bytes)`, partition.fields);
        if (partition.log.needsFlush(nowMs)) {
          partition.flush().catch((error: unknown) => this.metrics.alerts.log('warn', `${partition.topic}/${partition.index}: background flush failed: ${(error as Error).message}`, { ...partition.fields, condition: 'storage_error' }));
        }
      } catch (error) {
        // Every second while a partition is offline: rate-limited and counted as storage_error.
        this.metrics.alerts.log('warn', `${partition.topic}/${partition.index}: housekeeping failed: ${(error as Error).message}`, { ...partition.fields, condition: 'storage_error' });
      }
    }
  }

  /**
   * Graceful stop: refuse new work, let in-flight requests finish (bounded by shutdownGraceMs),
   * close connections, flush and close every log, and write the clean-shutdown marker.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const log = this.config.log;
    this.isReady = false;
    // Stop replicating, then leave the cluster (revoke the lease): the others see this broker go
    // at once, and its partitions' leadership moves without waiting for the lease to expire.
    const replication = this.replication;
    this.replication = null;
    replication?.controller.close();
    const leaving = (replication === null ? Promise.resolve() : Promise.all([replication.replicas.close(), replication.metadata.close()]))
      .catch(() => undefined).then(() => this.membership?.close());
    if (this.housekeeping !== null) clearInterval(this.housekeeping);
    const closed = Promise.all(this.listeners.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const socket of this.early.keys()) socket.destroy();
    const deadlineMs = Date.now() + this.config.shutdownGraceMs;
    while (Date.now() < deadlineMs && [...this.connections].some((c) => c.requestsInFlight > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    for (const connection of this.connections) connection.close();
    await closed;
    try {
      await this.groups?.close();
      this.producers.snapshotAll(this.partitions.all());
      this.partitions.closeClean();
    } finally {
      // Even when the data could not be closed cleanly (the next start recovers it), nothing may
      // keep the process alive or the directory locked.
      await leaving;
      await this.http?.close();
      this.prometheus.close();
      this.lock?.release();
    }
    log('info', 'rill broker stopped cleanly');
  }
}
