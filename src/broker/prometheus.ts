/**
 * The broker's metrics in Prometheus form: one registry per Broker (several brokers may share a
 * process in tests), filled at scrape time from plain numbers the hot path bumps (BrokerMetrics,
 * Partition.recordsIn, ...). Nothing here runs per record; per request there is one
 * FixedHistogram.observe (an array walk, no label lookup).
 *
 * Every metric is listed in docs/metrics.md; test/broker/prometheus.test.ts keeps the two equal.
 *
 * The text exposition is written here (renderExposition), not by prom-client: prom-client loads
 * ~1.4 MB of modules (cluster, pushgateway, summaries, OpenTelemetry), and on this small broker heap
 * every module the process holds makes V8 start old-generation collections sooner under produce
 * load (docs/metrics.md, Measured cost). The Node process metrics keep prom-client's names
 * (process-metrics.ts) and start with the first scrape.
 */
import { apiNameByKey } from '../wire/apis.js';
import type { BrokerMetrics } from './metrics.js';
import type { Partition } from './partition.js';
import type { GroupView } from './group-host.js';
import { ProcessMetrics, type MetricFamily, type Sample } from './process-metrics.js';

type Labels = Record<string, string | number>;

/** A metric whose samples are read from broker state when scraped (the `get` protocol prom-client's metrics also have). */
class ScrapedMetric {
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge' | 'histogram', private readonly read: () => Sample[]) {}

  get(): MetricFamily {
    return { name: this.name, help: this.help, type: this.type, values: this.read() };
  }
}

/** HELP text: backslash and newline escaped. */
function escapeHelp(text: string): string {
  return /[\\\n]/.test(text) ? text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n') : text;
}

/** A label value: backslash, double quote and newline escaped. */
function escapeLabelValue(value: string | number): string {
  if (typeof value === 'number') return formatValue(value);
  return /[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : value;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/**
 * Prometheus text exposition format 0.0.4: per family `# HELP`, `# TYPE`, then one line per sample
 * (`name{label="value",...} value`), families separated by a blank line, as prom-client writes it.
 */
export function renderExposition(families: readonly MetricFamily[]): string {
  const parts: string[] = [];
  for (const family of families) {
    if (parts.length > 0) parts.push('\n');
    parts.push(`# HELP ${family.name} ${escapeHelp(family.help)}\n# TYPE ${family.name} ${family.type}\n`);
    for (const sample of family.values) {
      let line = sample.metricName ?? family.name;
      let first = true;
      for (const label in sample.labels) {
        line += `${first ? '{' : ','}${label}="${escapeLabelValue(sample.labels[label]!)}"`;
        first = false;
      }
      parts.push(`${first ? line : `${line}}`} ${formatValue(sample.value)}\n`);
    }
  }
  return parts.join('');
}

/** What registry() returns: the metric list (for tests and tools) and the text a scrape gets. */
export interface MetricsRegistry {
  getMetricsAsArray(): readonly { get(): MetricFamily | Promise<MetricFamily> }[];
  metrics(): Promise<string>;
}

/** Request latency bounds (seconds): 100 µs .. 30 s (a long-poll fetch waits up to 30 s). */
export const requestSecondsBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** fsync round bounds (seconds). */
export const fsyncSecondsBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Requests answered by one group-commit round. */
export const groupCommitRequestsBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** A histogram with fixed bounds as plain counts: observe is a short array walk. */
export class FixedHistogram {
  /** counts[i]: observations <= bounds[i] and > bounds[i-1]; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** Prometheus samples: cumulative _bucket per bound and +Inf, _sum, _count. */
  samples(name: string, labels: Labels): Sample[] {
    const samples: Sample[] = [];
    let cumulative = 0;
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += this.counts[i]!;
      samples.push({ metricName: `${name}_bucket`, labels: { ...labels, le: i < this.bounds.length ? this.bounds[i]! : '+Inf' }, value: cumulative });
    }
    samples.push({ metricName: `${name}_sum`, labels, value: this.sum });
    samples.push({ metricName: `${name}_count`, labels, value: this.count });
    return samples;
  }
}

/** What the collectors read; the Broker provides it. */
export interface MetricsSource {
  readonly metrics: BrokerMetrics;
  partitions(): readonly Partition[];
  requestsInFlight(): number;
  groups(): readonly GroupView[];
  readonly ready: boolean;
  /** In a cluster: partitions this broker leads, of those the under-replicated, and offline ones it prefers; null alone. */
  replication?(): { leaders: number; underReplicated: number; offline: number } | null;
}

/** Prometheus text exposition format 0.0.4 (what prom-client's Registry produces). */
export const prometheusContentType = 'text/plain; version=0.0.4; charset=utf-8';

export class BrokerRegistry {
  private readonly rill: readonly ScrapedMetric[];
  private processMetrics: ProcessMetrics | null = null;
  private readonly view: MetricsRegistry = { getMetricsAsArray: () => this.rill, metrics: () => this.text() };
  /**
   * Group views of the scrape in progress: four metrics read them, computed once. prom-client calls
   * every metric's get() synchronously when a scrape starts, so they are kept until the next microtask.
   */
  private scrapeGroups: readonly GroupView[] | null = null;
  /** Request latency per api key (created on first use; api keys are a fixed small set). */
  readonly requestSeconds = new Map<number, FixedHistogram>();
  readonly fsyncSeconds = new FixedHistogram(fsyncSecondsBuckets);
  readonly groupCommitRequests = new FixedHistogram(groupCommitRequestsBuckets);

  constructor(private readonly source: MetricsSource) {
    this.rill = this.definitions();
  }

  /** This broker's own registry (several brokers may share a process). */
  registry(): Promise<MetricsRegistry> {
    return Promise.resolve(this.view);
  }

  /**
   * Adds Node process metrics (event-loop lag, GC, RSS, CPU); for a broker that serves HTTP. They
   * start with the first scrape (process-metrics.ts): nothing runs until someone asks.
   */
  collectProcessMetrics(): void {
    this.processMetrics ??= new ProcessMetrics();
  }

  /** Stops the process collectors (the GC observer and the event-loop delay timer). */
  close(): void {
    this.processMetrics?.stop();
  }

  observeRequest(apiKey: number, seconds: number): void {
    let histogram = this.requestSeconds.get(apiKey);
    if (histogram === undefined) {
      if (!apiNameByKey.has(apiKey)) apiKey = -1;
      histogram = this.requestSeconds.get(apiKey);
      if (histogram === undefined) this.requestSeconds.set(apiKey, (histogram = new FixedHistogram(requestSecondsBuckets)));
    }
    histogram.observe(seconds);
  }

  /** The storage observer (PartitionLogOptions.observeFlushRound). */
  readonly observeFlushRound = (requests: number, seconds: number): void => {
    this.fsyncSeconds.observe(seconds);
    this.groupCommitRequests.observe(requests);
  };

  async text(): Promise<string> {
    const families = this.rill.map((metric) => metric.get());
    if (this.processMetrics !== null) families.push(...await this.processMetrics.collect());
    return renderExposition(families);
  }

  private definitions(): ScrapedMetric[] {
    const m = this.source.metrics;
    const sampleOf = (p: Partition, value: number): Sample => ({ labels: { topic: p.topic, partition: p.index }, value });
    const perPartition = (read: (p: Partition) => number) => (): Sample[] => this.source.partitions().map((p) => sampleOf(p, read(p)));
    // Offline partitions have no log to read: their series are absent until the log is back.
    const perOnlinePartition = (read: (p: Partition) => number) => (): Sample[] =>
      this.source.partitions().filter((p) => !p.isOffline).map((p) => sampleOf(p, read(p)));
    const one = (value: () => number): (() => Sample[]) => () => [{ labels: {}, value: value() }];
    const clusterGauge = (read: (r: { leaders: number; underReplicated: number; offline: number }) => number) => (): Sample[] => {
      const replication = this.source.replication?.() ?? null;
      return replication === null ? [] : [{ labels: {}, value: read(replication) }];
    };
    const groups = (): readonly GroupView[] => {
      if (this.scrapeGroups === null) {
        this.scrapeGroups = this.source.groups();
        queueMicrotask(() => (this.scrapeGroups = null));
      }
      return this.scrapeGroups;
    };
    return [
      new ScrapedMetric('rill_partition_records_in_total',
        'Records appended to the partition by produce requests since the broker started.',
        'counter', perPartition((p) => p.recordsIn)),
      new ScrapedMetric('rill_partition_bytes_in_total',
        'Record batch bytes appended to the partition by produce requests since the broker started.',
        'counter', perPartition((p) => p.bytesIn)),
      new ScrapedMetric('rill_partition_records_out_total',
        'Records sent to consumers from the partition by fetch requests since the broker started.',
        'counter', perPartition((p) => p.recordsOut)),
      new ScrapedMetric('rill_partition_bytes_out_total',
        'Record batch bytes sent to consumers from the partition by fetch requests since the broker started.',
        'counter', perPartition((p) => p.bytesOut)),
      new ScrapedMetric('rill_partition_log_size_bytes',
        'Bytes of the partition log on disk (all segments); absent while the partition is offline.',
        'gauge', perOnlinePartition((p) => p.log.sizeBytes)),
      new ScrapedMetric('rill_partition_log_start_offset',
        'First offset still in the partition log.',
        'gauge', perOnlinePartition((p) => p.log.logStartOffset)),
      new ScrapedMetric('rill_partition_log_end_offset',
        'Offset the next record appended to the partition gets.',
        'gauge', perOnlinePartition((p) => p.log.nextOffset)),
      new ScrapedMetric('rill_partition_high_watermark',
        'Offsets below this are visible to consumers (acks=all records count once fsynced).',
        'gauge', perPartition((p) => p.highWatermark)),
      new ScrapedMetric('rill_partition_offline',
        '1 while the partition log could not be reopened after an fsync failure, else 0.',
        'gauge', perPartition((p) => (p.isOffline ? 1 : 0))),
      new ScrapedMetric('rill_cluster_partitions_led',
        'In a cluster: partitions this broker leads (absent on a single broker).',
        'gauge', clusterGauge((r) => r.leaders)),
      new ScrapedMetric('rill_cluster_partitions_under_replicated',
        'In a cluster: partitions this broker leads whose in-sync replicas are fewer than their replicas.',
        'gauge', clusterGauge((r) => r.underReplicated)),
      new ScrapedMetric('rill_cluster_partitions_offline',
        'In a cluster: partitions with no leader (no in-sync replica alive) whose preferred replica is this broker; summed over brokers, each offline partition counts once.',
        'gauge', clusterGauge((r) => r.offline)),
      new ScrapedMetric('rill_requests_total',
        'Requests received, by API.',
        'counter', () => this.requestsByApi()),
      new ScrapedMetric('rill_request_duration_seconds',
        'Time from decoding a request to queueing its reply, by API.',
        'histogram', () => this.requestHistograms()),
      new ScrapedMetric('rill_errors_total',
        'Error replies and refusals, by error code name (per partition for produce and fetch).',
        'counter', () => [...m.errors].map(([code, value]) => ({ labels: { code }, value }))),
      new ScrapedMetric('rill_log_fsync_duration_seconds',
        'Duration of one group-commit fsync round of a partition log (its dirty segments and directories, synced together).',
        'histogram', () => this.fsyncSeconds.samples('rill_log_fsync_duration_seconds', {})),
      new ScrapedMetric('rill_log_group_commit_requests',
        'Flush requests (acks=all produce entries and policy flushes) answered by one group-commit fsync round.',
        'histogram', () => this.groupCommitRequests.samples('rill_log_group_commit_requests', {})),
      new ScrapedMetric('rill_connections_open',
        'Client connections open now.',
        'gauge', one(() => m.connectionsOpen)),
      new ScrapedMetric('rill_connections_accepted_total',
        'Client connections accepted.',
        'counter', one(() => m.connectionsAccepted)),
      new ScrapedMetric('rill_connections_refused_total',
        'Client connections refused (connection limit reached, or shutting down).',
        'counter', one(() => m.connectionsRefused)),
      new ScrapedMetric('rill_auth_successes_total',
        'Connections that authenticated (SASL).',
        'counter', one(() => m.authSuccesses)),
      new ScrapedMetric('rill_auth_failures_total',
        'Failed authentications: bad SASL message, unknown user, wrong password, or refused for too many failures from the address.',
        'counter', one(() => m.authFailures)),
      new ScrapedMetric('rill_auth_timeouts_total',
        'Connections closed because they did not authenticate in time (auth required).',
        'counter', one(() => m.authTimeouts)),
      new ScrapedMetric('rill_authorization_denials_total',
        'Requests, or the topics and groups in one, refused by the ACLs (auth required), by resource type.',
        'counter', () => [...m.authorizationDenials].map(([resource_type, value]) => ({ labels: { resource_type }, value }))),
      new ScrapedMetric('rill_quota_throttled_requests_total',
        'Produce and fetch replies held back because their principal was over its byte-rate quota, by kind.',
        'counter', () => [{ labels: { kind: 'produce' }, value: m.produceThrottledRequests }, { labels: { kind: 'fetch' }, value: m.fetchThrottledRequests }]),
      new ScrapedMetric('rill_quota_throttle_seconds_total',
        'Time replies were held back (and their connections muted) for byte-rate quotas, by kind.',
        'counter', () => [{ labels: { kind: 'produce' }, value: m.produceThrottleMs / 1000 }, { labels: { kind: 'fetch' }, value: m.fetchThrottleMs / 1000 }]),
      new ScrapedMetric('rill_quota_connections_refused_total',
        'Connections refused because their principal (or client address) had as many open as its connection quota allows.',
        'counter', one(() => m.quotaConnectionsRefused)),
      new ScrapedMetric('rill_requests_in_flight',
        'Requests being handled now, across connections (long-poll fetches, and replies held back by a quota, included).',
        'gauge', one(() => this.source.requestsInFlight())),
      new ScrapedMetric('rill_consumer_groups',
        'Consumer groups the coordinator knows (empty ones included).',
        'gauge', one(() => groups().length)),
      new ScrapedMetric('rill_consumer_group_members',
        'Members of the consumer group.',
        'gauge', () => groups().map((g) => ({ labels: { group: g.groupId }, value: g.members.length }))),
      new ScrapedMetric('rill_consumer_group_rebalances_total',
        'Rebalances of the consumer group (its group epoch; persisted across restarts).',
        'counter', () => groups().map((g) => ({ labels: { group: g.groupId }, value: g.groupEpoch }))),
      new ScrapedMetric('rill_consumer_group_lag',
        'Records between the group\'s committed offset and the partition\'s high watermark (partitions with a commit only).',
        'gauge', () => groups().flatMap((g) => g.offsets.filter((o) => o.lag >= 0n)
        .map((o) => ({ labels: { group: g.groupId, topic: o.topic, partition: o.partition }, value: Number(o.lag) })))),
      new ScrapedMetric('rill_operator_alerts_total',
        'Conditions an operator must act on (disk_full, fsync_failed, storage_error, corrupt_log, client_errors, auth_failures, tls_handshake_failed, authorization_denied), every occurrence; '
        + 'the log shows at most one line per condition and partition or client per 10 s.',
        'counter', () => [...m.alerts.counts].map(([condition, value]) => ({ labels: { condition }, value }))),
      new ScrapedMetric('rill_broker_ready',
        '1 once recovery is done and the TCP listener accepts connections, 0 before and while stopping.',
        'gauge', one(() => (this.source.ready ? 1 : 0))),
    ];
  }

  private requestsByApi(): Sample[] {
    const samples: Sample[] = [];
    const m = this.source.metrics;
    let unknown = m.requestsUnknownApi;
    m.requestsByApi.forEach((count, apiKey) => {
      if (count > 0 && !apiNameByKey.has(apiKey)) unknown += count;
    });
    for (const [apiKey, api] of apiNameByKey) samples.push({ labels: { api }, value: m.requestsByApi[apiKey] ?? 0 });
    samples.push({ labels: { api: 'unknown' }, value: unknown });
    return samples;
  }

  private requestHistograms(): Sample[] {
    return [...this.requestSeconds].flatMap(([apiKey, histogram]) => histogram.samples('rill_request_duration_seconds', { api: apiNameByKey.get(apiKey) ?? 'unknown' }));
  }
}
