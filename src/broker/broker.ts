/**
 * The broker process: a TCP server, one Connection per client, a dispatch table by api key, the
 * partitions, and housekeeping (retention, time-based flushes). Bad input never escapes a
 * request: it becomes an error reply (or, for unframeable bytes, a closed connection) and a count.
 */
import net from 'node:net';
import { RillError, type DecodeError } from '../lib/errors.js';
import { connectionsMax, partialFramesBytesMax } from '../lib/limits.js';
import { ApiKey, apiNameByKey, apiVersionRanges } from '../wire/apis.js';
import { crc32cImplementation } from '../wire/crc32c.js';
import { brokerConfig, type BrokerConfig } from './config.js';
import { Connection, FrameMemoryBudget, type Dispatch, type ConnectionEvents, type RequestContext } from './connection.js';
import { BrokerMetrics } from './metrics.js';
import { OperatorAlerts } from './operator-alerts.js';
import { BrokerRegistry } from './prometheus.js';
import type { HttpListener } from './http/server.js';
import type { OverviewSource } from './http/overview.js';
import { brokerVersion } from './version.js';
import { PartitionManager } from './partition-manager.js';
import { GroupHost } from './group-host.js';
import { handleInitProducerId, handleProduce } from './handlers/produce.js';
import { ProducerStates } from './producer-state.js';
import { handleFetch } from './handlers/fetch.js';
import { handleApiVersions, handleCreateTopics, handleDeleteTopics, handleListOffsets, handleMetadata } from './handlers/admin.js';

/**
 * How often members heartbeat. Plain heartbeats persist nothing, so this is cheap; it bounds how
 * long a survivor takes to pick up partitions a member released (graceful close, leave).
 */
export const groupHeartbeatIntervalMs = 500;

export class Broker {
  readonly config: BrokerConfig;
  readonly metrics: BrokerMetrics;
  /** Prometheus view of this broker (its own Registry: several brokers may share a process). */
  readonly prometheus: BrokerRegistry;
  readonly partitions: PartitionManager;
  readonly producers: ProducerStates;
  private server: net.Server | null = null;
  private groups: GroupHost | null = null;
  private readonly connections = new Set<Connection>();
  private readonly frameBudget = new FrameMemoryBudget(partialFramesBytesMax);
  private housekeeping: NodeJS.Timeout | null = null;
  private stopping: Promise<void> | null = null;
  private boundPort = 0;
  private http: HttpListener | null = null;
  private isReady = false;
  private readonly startedAtMs = Date.now();

  constructor(config: Partial<BrokerConfig> = {}) {
    this.config = brokerConfig(config);
    const alerts = new OperatorAlerts(this.config.log);
    this.metrics = new BrokerMetrics(alerts);
    this.prometheus = new BrokerRegistry(this.metricsSource);
    // Partition lines tagged with a `condition` (fsync failures, ...) are rate-limited and counted.
    // TODO(merge): PartitionManager should pass this.prometheus.observeFlushRound to PartitionLog.open
    // (PartitionLogOptions.observeFlushRound); until then the fsync and group-commit histograms stay empty.
    this.partitions = new PartitionManager(this.config.dataDir, alerts.log, this.config.fileOps);
    this.producers = new ProducerStates(this.config.dataDir, this.config.log);
  }

  get port(): number {
    return this.boundPort;
  }

  /** The HTTP listener's port, or null when it is off (or not started yet). */
  get httpPort(): number | null {
    return this.http?.port ?? null;
  }

  /** True once recovery is done and the TCP listener accepts; false again once stop() begins. */
  get ready(): boolean {
    return this.isReady;
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
      get ready() {
        return broker.isReady;
      },
      info: () => ({ nodeId: broker.config.nodeId, host: broker.config.advertisedHost ?? broker.config.host, port: broker.boundPort, httpPort: broker.httpPort, version: brokerVersion(), startedAtMs: broker.startedAtMs }),
    };
  }

  async start(): Promise<void> {
    const log = this.config.log;
    const startedMs = Date.now();
    const { clean } = this.partitions.open();
    const topics = this.partitions.registry.size;
    const recovery = clean ? 'clean shutdown, no recovery needed' : topics === 0 ? 'nothing to recover' : 'no clean-shutdown marker, logs recovered from their recovery points';
    log('info', `data directory ${this.config.dataDir}: ${topics} topics, ${recovery} (${Date.now() - startedMs} ms)`);
    log('info', `CRC-32C implementation: ${crc32cImplementation}`);
    this.groups = await GroupHost.open(this.config.dataDir, this.partitions, log, { heartbeatIntervalMs: groupHeartbeatIntervalMs });
    this.groups.start();
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.port, this.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => log('error', `server error: ${error.message}`));
    this.boundPort = (server.address() as net.AddressInfo).port;
    this.housekeeping = setInterval(() => this.runHousekeeping(), this.config.housekeepingIntervalMs);
    this.housekeeping.unref();
    log('info', `rill broker listening on ${this.config.host}:${this.boundPort}`);
    if (this.config.http !== null) {
      // Loaded only when configured: a broker without HTTP does not carry prom-client (prometheus.ts).
      const { HttpListener } = await import('./http/server.js');
      await this.prometheus.collectProcessMetrics();
      this.http = await HttpListener.start(this.config.http.host, this.config.http.port, this.metricsSource, this.prometheus, log);
      log('info', `http listener (/metrics, /healthz, /readyz, console) on ${this.config.http.host}:${this.http.port}`);
    }
    this.isReady = true;
  }

  private accept(socket: net.Socket): void {
    if (this.stopping !== null || this.connections.size >= connectionsMax) {
      this.metrics.connectionsRefused++;
      socket.destroy();
      return;
    }
    this.metrics.connectionsAccepted++;
    this.metrics.connectionsOpen++;
    this.connections.add(new Connection(socket, this.dispatch, this.connectionEvents, this.frameBudget));
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
    switch (apiKey) {
      case ApiKey.Produce: return handleProduce(context, this.partitions, this.metrics, this.producers);
      case ApiKey.InitProducerId: return handleInitProducerId(context, this.producers);
      case ApiKey.Fetch: return handleFetch(context, this.partitions, this.metrics, this.config.log);
      case ApiKey.ApiVersions: return handleApiVersions();
      case ApiKey.Metadata: return handleMetadata(context, this.partitions, this.self());
      case ApiKey.CreateTopics: return handleCreateTopics(context, this.partitions, () => this.onTopicsChanged());
      case ApiKey.DeleteTopics: return handleDeleteTopics(context, this.partitions, () => this.onTopicsChanged());
      case ApiKey.ListOffsets: return handleListOffsets(context, this.partitions);
      case ApiKey.FindCoordinator: return this.groupHost().handleFindCoordinator(context, this.self());
      case ApiKey.ConsumerGroupHeartbeat: return this.groupHost().handleHeartbeat(context);
      case ApiKey.OffsetCommit: return this.groupHost().handleOffsetCommit(context);
      case ApiKey.OffsetFetch: return this.groupHost().handleOffsetFetch(context);
      case ApiKey.ListGroups: return this.groupHost().handleListGroups();
      case ApiKey.DescribeGroups: return this.groupHost().handleDescribeGroups(context);
      case ApiKey.ResetGroupOffsets: return this.groupHost().handleResetOffsets(context);
      default: throw new RillError('UNSUPPORTED_VERSION', `api key ${apiKey} is not supported by this broker`);
    }
  };

  private self(): { nodeId: number; host: string; port: number } {
    return { nodeId: this.config.nodeId, host: this.config.advertisedHost ?? this.config.host, port: this.boundPort };
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
    if (this.housekeeping !== null) clearInterval(this.housekeeping);
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    const deadlineMs = Date.now() + this.config.shutdownGraceMs;
    while (Date.now() < deadlineMs && [...this.connections].some((c) => c.requestsInFlight > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    for (const connection of this.connections) connection.close();
    await closed;
    await this.groups?.close();
    this.producers.snapshotAll(this.partitions.all());
    this.partitions.closeClean();
    await this.http?.close();
    log('info', 'rill broker stopped cleanly');
  }
}
