/**
 * What a client knows about the cluster: one connection per broker, and topic metadata (partition
 * counts and leaders) cached until an error says it is stale or it is older than
 * metadataMaxAgeMs (then refreshed in the background, so partitions added to a topic reach
 * long-lived producers and readers without a restart). Partitions are routed to the
 * broker the metadata names as leader, so clients keep working when Rill grows past one broker.
 */
import { RillError } from '../lib/errors.js';
import { ApiKey } from '../wire/apis.js';
import { decodeMetadataResponse, type BrokerInfo, type MetadataResponse, type TopicMetadata } from '../wire/control.js';
import { BrokerConnection, parseAddress, type BrokerAddress, type ClientTlsOptions } from './connection.js';
import { Instrumentation, type ClientKind, type ClientLogger } from './instrumentation.js';
import { validateSaslOptions, type SaslOptions } from './sasl.js';

export interface ClientOptions {
  /**
   * HOST:PORT of a broker, or several (an array, or comma-separated): control requests (metadata,
   * admin) go to the first that accepts a connection. Default 127.0.0.1:9092.
   */
  bootstrap?: string | string[];
  clientId?: string;
  /**
   * Speak TLS to every broker: `{ ca, cert, key, servername }`, PEM strings or Buffers (cert and
   * key for mTLS). Default: plaintext.
   */
  tls?: ClientTlsOptions;
  /** Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** Default 30 000 ms. */
  requestTimeoutMs?: number;
  /**
   * Cached topic metadata older than this is refreshed (in the background: sends keep using
   * the old metadata meanwhile), like Kafka's metadata.max.age.ms. Default 30 000 ms.
   */
  metadataMaxAgeMs?: number;
  /**
   * Where the client logs requests (debug), retries (warn), reconnects and rebalances (info):
   * pino or anything with its `debug/info/warn/error(obj, msg?)` methods. Default: silent.
   * The same events go to `node:diagnostics_channel` (see clientChannelNames).
   */
  logger?: ClientLogger;
  /**
   * Authenticate to the brokers: `{ mechanism: 'scram-sha-512' (default) | 'scram-sha-256' |
   * 'plain' (TLS only), username, password }`. Every connection authenticates right after it
   * connects (and after every reconnect) before anything else is sent; a refusal is a
   * non-retriable RillError (SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM).
   */
  sasl?: SaslOptions;
}

export const metadataMaxAgeMsDefault = 30_000;

/**
 * Errors that say the cached leader of a partition is wrong (leadership moved, an election is under
 * way, the broker went away): the client marks the topic's metadata stale, so the retry goes to
 * the leader the fresh metadata names.
 */
export const leaderErrorCodes: ReadonlySet<string> = new Set(['NOT_LEADER', 'LEADER_NOT_AVAILABLE', 'FENCED_LEADER_EPOCH', 'UNKNOWN_LEADER_EPOCH', 'CONNECTION_ERROR']);

export function isLeaderError(error: unknown): boolean {
  return error instanceof RillError && leaderErrorCodes.has(error.code);
}

/** Groups partitions by the broker that leads them (unknown leader: -1, the bootstrap broker), keeping their order. */
export function byLeader<T extends { topic: string; partition: number }>(cluster: Cluster, items: readonly T[]): Map<number, T[]> {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const leader = cluster.cachedTopic(item.topic)?.partitions[item.partition]?.leader ?? -1;
    let list = groups.get(leader);
    if (list === undefined) groups.set(leader, (list = []));
    list.push(item);
  }
  return groups;
}
/** After a failed background refresh, the next one waits this long (or metadataMaxAgeMs if shorter). */
const metadataRetryBackoffMs = 1000;

/**
 * The bootstrap brokers as one connection for control requests: a request goes to the broker
 * that answered last, or, when that one refuses the connection, to the next in the list that
 * accepts one. Only a failed connect moves on: a request that was sent is never sent again to
 * another broker here (retrying is the caller's decision).
 */
export class BootstrapConnection {
  private index = 0;

  constructor(private readonly addresses: readonly BrokerAddress[], private readonly open: (address: BrokerAddress) => BrokerConnection) {}

  /** The broker requests go to now. */
  get address(): BrokerAddress {
    return this.addresses[this.index]!;
  }

  async call<T>(apiKey: number, request: unknown, decode: (value: unknown) => T, options: { timeoutMs?: number } = {}): Promise<T> {
    const failures: string[] = [];
    let last: RillError | null = null;
    for (let tried = 0; tried < this.addresses.length; tried++) {
      const at = (this.index + tried) % this.addresses.length;
      const connection = this.open(this.addresses[at]!);
      try {
        await connection.connected();
      } catch (error) {
        if (!(error instanceof RillError) || error.code !== 'CONNECTION_ERROR') throw error;
        last = error;
        failures.push(`${connection.name}: ${error.message}`);
        continue;
      }
      this.index = at;
      return connection.call(apiKey, request, decode, options);
    }
    if (this.addresses.length === 1) throw last!;
    throw new RillError('CONNECTION_ERROR', `no bootstrap broker accepted a connection (${failures.join('; ')})`, { cause: last?.cause ?? last });
  }
}

export class Cluster {
  private readonly bootstrap: BrokerAddress[];
  private readonly bootstrapConnection: BootstrapConnection;
  private readonly connections = new Map<string, BrokerConnection>();
  private brokers = new Map<number, BrokerInfo>();
  private readonly topics = new Map<string, TopicMetadata>();
  private readonly refreshing = new Map<string, Promise<TopicMetadata>>();
  /** When each cached topic's metadata must be refreshed (Date.now() ms). */
  private readonly staleAtMs = new Map<string, number>();
  /** Topics whose cached metadata an error proved wrong: the next topic() waits for fresh metadata. */
  private readonly mustRefresh = new Set<string>();
  private readonly metadataMaxAgeMs: number;
  private closed = false;
  readonly clientId: string;
  readonly instrumentation: Instrumentation;

  /** `kind` names the client in instrumentation events. */
  constructor(readonly options: ClientOptions = {}, kind: ClientKind = 'admin') {
    const given = options.bootstrap === undefined ? ['127.0.0.1:9092'] : Array.isArray(options.bootstrap) ? options.bootstrap : options.bootstrap.split(',');
    const list = given.map((address) => address.trim()).filter((address) => address !== '');
    if (list.length === 0) throw new RillError('INVALID_ARGUMENT', 'bootstrap needs at least one HOST:PORT');
    this.bootstrap = list.map(parseAddress);
    this.bootstrapConnection = new BootstrapConnection(this.bootstrap, (address) => this.connectionTo(address));
    this.clientId = options.clientId ?? 'rill-client';
    this.metadataMaxAgeMs = options.metadataMaxAgeMs ?? metadataMaxAgeMsDefault;
    if (!Number.isSafeInteger(this.metadataMaxAgeMs) || this.metadataMaxAgeMs < 0) {
      throw new RillError('INVALID_ARGUMENT', `metadataMaxAgeMs ${String(options.metadataMaxAgeMs)} is not a non-negative integer`);
    }
    this.instrumentation = new Instrumentation(kind, this.clientId, options.logger);
    if (options.sasl !== undefined) validateSaslOptions(options.sasl);
  }

  /** HOST:PORT of the first bootstrap broker, as messages name it. */
  get bootstrapName(): string {
    const first = this.bootstrap[0]!;
    return `${first.host}:${first.port}`;
  }

  /** A connection per broker address, opened lazily. `key` separates purposes (e.g. long-poll fetches). */
  connectionTo(address: BrokerAddress, purpose = 'default'): BrokerConnection {
    const key = `${address.host}:${address.port}/${purpose}`;
    let connection = this.connections.get(key);
    if (connection === undefined) {
      connection = new BrokerConnection(address, {
        tls: this.options.tls, connectTimeoutMs: this.options.connectTimeoutMs, requestTimeoutMs: this.options.requestTimeoutMs, purpose, instrumentation: this.instrumentation, sasl: this.options.sasl,
      });
      this.connections.set(key, connection);
    }
    return connection;
  }

  /** HOST:PORT of the bootstrap broker control requests go to now. */
  get currentBootstrap(): string {
    const { host, port } = this.bootstrapConnection.address;
    return `${host}:${port}`;
  }

  /** Any broker: for control requests that every broker can answer; tries each bootstrap broker in turn. */
  anyConnection(): BootstrapConnection {
    return this.bootstrapConnection;
  }

  connectionForNode(nodeId: number, purpose = 'default'): BrokerConnection {
    const broker = this.brokers.get(nodeId);
    return broker === undefined ? this.connectionTo(this.bootstrapConnection.address, purpose) : this.connectionTo({ host: broker.host, port: broker.port }, purpose);
  }

  async metadata(topics: string[] | null): Promise<MetadataResponse> {
    const response = await this.anyConnection().call(ApiKey.Metadata, { topics }, decodeMetadataResponse);
    this.brokers = new Map(response.brokers.map((b) => [b.nodeId, b]));
    const staleAtMs = Date.now() + this.metadataMaxAgeMs;
    for (const topic of response.topics) {
      this.mustRefresh.delete(topic.name);
      if (topic.errorCode === 0) {
        this.topics.set(topic.name, topic);
        this.staleAtMs.set(topic.name, staleAtMs);
      } else {
        this.topics.delete(topic.name);
        this.staleAtMs.delete(topic.name);
      }
    }
    this.lastTopic = undefined;
    return response;
  }

  /** Cached metadata of one topic; throws the broker's error (e.g. UNKNOWN_TOPIC_OR_PARTITION). */
  async topic(name: string, refresh = false): Promise<TopicMetadata> {
    const cached = this.topics.get(name);
    if (cached !== undefined && !refresh && !this.mustRefresh.has(name)) {
      if (this.isStale(name)) this.refreshInBackground(name);
      return cached;
    }
    let pending = this.refreshing.get(name);
    if (pending === undefined) {
      pending = this.metadata([name]).then((response) => {
        const topic = response.topics.find((t) => t.name === name);
        if (topic === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${name}" does not exist`);
        if (topic.errorCode !== 0) throw RillError.fromCode(topic.errorCode, `topic "${name}"`);
        return topic;
      }).finally(() => this.refreshing.delete(name));
      this.refreshing.set(name, pending);
    }
    return pending;
  }

  /** The hot path asks for the same topic record after record: remember the last answer. */
  private lastTopic: TopicMetadata | undefined;

  private lastTopicStaleAtMs = 0;

  /** The cached metadata, even if old; old metadata is refreshed in the background. */
  cachedTopic(name: string): TopicMetadata | undefined {
    const last = this.lastTopic;
    if (last !== undefined && last.name === name) {
      if (Date.now() >= this.lastTopicStaleAtMs) this.refreshInBackground(name);
      return last;
    }
    const topic = this.topics.get(name);
    this.lastTopic = topic;
    this.lastTopicStaleAtMs = this.staleAtMs.get(name) ?? 0;
    if (topic !== undefined && this.isStale(name)) this.refreshInBackground(name);
    return topic;
  }

  private isStale(name: string): boolean {
    return Date.now() >= (this.staleAtMs.get(name) ?? 0);
  }

  /**
   * One refresh at a time per topic. A failure keeps the old metadata and waits a little before
   * the next try, so a broker that is down is not asked once per record.
   */
  private refreshInBackground(name: string): void {
    // After close() a refresh would open a new connection that nothing closes.
    if (this.closed || this.refreshing.has(name)) return;
    this.topic(name, true).catch(() => {
      if (!this.topics.has(name)) return;
      this.staleAtMs.set(name, Date.now() + Math.min(this.metadataMaxAgeMs, metadataRetryBackoffMs));
      this.lastTopic = undefined;
    });
  }

  /**
   * An error said the cached leaders of `name` are wrong: the next topic(name) waits for fresh
   * metadata, and a refresh starts now in the background for cachedTopic's callers.
   */
  markStale(name: string): void {
    if (!this.topics.has(name)) return;
    this.mustRefresh.add(name);
    this.staleAtMs.set(name, 0);
    this.lastTopic = undefined;
    this.refreshInBackground(name);
  }

  /** markStale for the topic when `error` is one of the leader errors; returns the error. */
  noteError<E>(name: string, error: E): E {
    if (isLeaderError(error)) this.markStale(name);
    return error;
  }

  /**
   * One request per leader for some partitions of one topic (Kafka's rule: a partition's
   * ListOffsets, DeleteRecords, Fetch and Produce go to its leader). `call` gets the leader's
   * connection and the partitions it leads, in the order given; a leader error marks the
   * topic's metadata stale before it is rethrown.
   */
  async perLeader<T>(name: string, partitions: readonly number[], call: (connection: BrokerConnection, partitions: number[]) => Promise<T>): Promise<T[]> {
    await this.topic(name);
    const groups = byLeader(this, partitions.map((partition) => ({ topic: name, partition })));
    try {
      return await Promise.all([...groups].map(([leader, items]) => call(this.connectionForNode(leader), items.map((item) => item.partition))));
    } catch (error) {
      throw this.noteError(name, error);
    }
  }

  forget(name: string): void {
    this.mustRefresh.delete(name);
    this.topics.delete(name);
    this.staleAtMs.delete(name);
    this.lastTopic = undefined;
  }

  close(): void {
    this.closed = true;
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
  }
}
