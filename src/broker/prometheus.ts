/**
 * The broker's metrics in Prometheus form: one prom-client Registry per Broker (several brokers
 * may share a process in tests), filled at scrape time from plain numbers the hot path bumps
 * (BrokerMetrics, Partition.recordsIn, ...). Nothing here runs per record; per request there is
 * one FixedHistogram.observe (an array walk, no label lookup).
 *
 * Every metric is listed in docs/metrics.md; test/broker/prometheus.test.ts keeps the two equal.
 *
 * prom-client is loaded on the first scrape (or collectProcessMetrics), not at start: a broker
 * without an HTTP listener never loads it. Measured: the extra ~1.4 MB of baseline heap (prom-client,
 * node:http) made V8 run several more old-generation collections on a small broker heap, which
 * showed as ~10% more CPU per produced record (docs/metrics.md, Measured cost).
 */
import type { Metric, Registry } from 'prom-client';
import { apiNameByKey } from '../wire/apis.js';
import type { BrokerMetrics } from './metrics.js';
import type { Partition } from './partition.js';
import type { GroupView } from './group-host.js';

type Labels = Record<string, string | number>;
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** A metric whose samples are read from broker state when scraped (prom-client's `get` protocol). */
class ScrapedMetric {
  readonly aggregator = 'sum';
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge' | 'histogram', private readonly read: () => Sample[]) {}

  get(): { name: string; help: string; type: string; values: Sample[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.read(), aggregator: this.aggregator };
  }

  reset(): void {}
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
}

/** Prometheus text exposition format 0.0.4 (what prom-client's Registry produces). */
export const prometheusContentType = 'text/plain; version=0.0.4; charset=utf-8';

export class BrokerRegistry {
  private registryLoading: Promise<Registry> | null = null;
  private processMetrics = false;
  /**
   * Group views of the scrape in progress: four metrics read them, computed once. prom-client calls
   * every metric's get() synchronously when a scrape starts, so they are kept until the next microtask.
   */
  private scrapeGroups: readonly GroupView[] | null = null;
  /** Request latency per api key (created on first use; api keys are a fixed small set). */
  readonly requestSeconds = new Map<number, FixedHistogram>();
  readonly fsyncSeconds = new FixedHistogram(fsyncSecondsBuckets);
  readonly groupCommitRequests = new FixedHistogram(groupCommitRequestsBuckets);

  constructor(private readonly source: MetricsSource) {}

  /** This broker's own prom-client Registry (several brokers may share a process), loaded once. */
  registry(): Promise<Registry> {
    this.registryLoading ??= import('prom-client').then(({ Registry: RegistryClass, collectDefaultMetrics }) => {
      const registry = new RegistryClass();
      for (const metric of this.definitions()) registry.registerMetric(metric as unknown as Metric);
      if (this.processMetrics) {
        collectDefaultMetrics({ register: registry });
        // Gauges prom-client names with a counter's suffix (promtool check metrics rejects them);
        // nodejs_active_handles, nodejs_active_requests and nodejs_active_resources carry the same counts.
        for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
      }
      return registry;
    });
    return this.registryLoading;
  }

  /** Adds Node process metrics (event-loop lag, GC, RSS, CPU); for a broker that serves HTTP. Call before the first scrape. */
  async collectProcessMetrics(): Promise<void> {
    if (this.registryLoading !== null && !this.processMetrics) throw new Error('collectProcessMetrics must be called before the registry is loaded');
    this.processMetrics = true;
    await this.registry();
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
    return (await this.registry()).metrics();
  }

  private definitions(): ScrapedMetric[] {
    const m = this.source.metrics;
    const sampleOf = (p: Partition, value: number): Sample => ({ labels: { topic: p.topic, partition: p.index }, value });
    const perPartition = (read: (p: Partition) => number) => (): Sample[] => this.source.partitions().map((p) => sampleOf(p, read(p)));
    // Offline partitions have no log to read: their series are absent until the log is back.
    const perOnlinePartition = (read: (p: Partition) => number) => (): Sample[] =>
      this.source.partitions().filter((p) => !p.isOffline).map((p) => sampleOf(p, read(p)));
    const one = (value: () => number): (() => Sample[]) => () => [{ labels: {}, value: value() }];
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
      new ScrapedMetric('rill_requests_in_flight',
        'Requests being handled now, across connections (long-poll fetches included).',
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
        'Conditions an operator must act on (disk_full, fsync_failed, storage_error, corrupt_log, client_errors), every occurrence; '
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
