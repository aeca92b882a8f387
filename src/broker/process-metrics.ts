/**
 * Node process metrics with the names prom-client's collectDefaultMetrics gives them (so dashboards
 * and alerts written for Node services keep working), read when scraped: CPU, memory, file
 * descriptors, heap spaces, handles and requests, the event loop's lag, and GC durations.
 *
 * Why not collectDefaultMetrics: loading prom-client puts ~1.4 MB of modules in the broker process
 * (its cluster, pushgateway, summary and OpenTelemetry code come with it), and V8 then ran several
 * times more old-generation collections under produce load (docs/metrics.md, Measured cost).
 *
 * Nothing runs before the first scrape: start() (called by the first scrape) enables the event-loop
 * delay histogram (a libuv timer in C++, no JavaScript per tick) and a GC observer that adds each
 * collection to a fixed histogram (one array walk, no label objects). So nodejs_gc_duration_seconds
 * counts the collections since the first scrape, and the event-loop percentiles cover the time since
 * the previous scrape (they are reset after each one, as prom-client does).
 */
import fs from 'node:fs';
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks';
import v8 from 'node:v8';

export interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values: Sample[];
}

/** GC duration bounds (seconds), prom-client's defaults. */
const gcSecondsBuckets = [0.001, 0.01, 0.1, 1, 2, 5];
const gcKinds = new Map<number, string>([
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR, 'major'],
  [perfConstants.NODE_PERFORMANCE_GC_MINOR, 'minor'],
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL, 'incremental'],
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB, 'weakcb'],
]);

/** Cumulative counts per bound and +Inf (le), sum and count: one kind's GC durations. */
class GcHistogram {
  readonly counts = new Float64Array(gcSecondsBuckets.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < gcSecondsBuckets.length && seconds > gcSecondsBuckets[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

const processStartSeconds = Math.round(Date.now() / 1000 - process.uptime());
const [versionMajor, versionMinor, versionPatch] = process.versions.node.split('.').map(Number);

export class ProcessMetrics {
  private eventLoopDelay: IntervalHistogram | null = null;
  private gcObserver: PerformanceObserver | null = null;
  private readonly gc = new Map<string, GcHistogram>();

  /** Starts the event-loop delay histogram and the GC observer (idempotent). */
  start(): void {
    if (this.eventLoopDelay !== null) return;
    this.eventLoopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.eventLoopDelay.enable();
    this.gcObserver = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = gcKinds.get((entry as { detail?: { kind?: number } }).detail?.kind ?? -1);
        if (kind === undefined) continue;
        let histogram = this.gc.get(kind);
        if (histogram === undefined) this.gc.set(kind, (histogram = new GcHistogram()));
        histogram.observe(entry.duration / 1000);
      }
    });
    this.gcObserver.observe({ entryTypes: ['gc'] });
  }

  stop(): void {
    this.eventLoopDelay?.disable();
    this.gcObserver?.disconnect();
    this.eventLoopDelay = null;
    this.gcObserver = null;
  }

  /** Every family, read now; the lag gauge waits one turn of the event loop (setImmediate), as prom-client's does. */
  async collect(): Promise<MetricFamily[]> {
    this.start();
    const lagSeconds = await measureLag();
    const families: MetricFamily[] = [];
    const one = (name: string, help: string, type: 'counter' | 'gauge', value: number): void => {
      families.push({ name, help, type, values: [{ labels: {}, value }] });
    };

    const cpu = process.cpuUsage();
    one('process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', 'counter', cpu.user / 1e6);
    one('process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.', 'counter', cpu.system / 1e6);
    one('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', 'counter', (cpu.user + cpu.system) / 1e6);
    one('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', 'gauge', processStartSeconds);

    const memory = process.memoryUsage();
    const status = procStatus();
    one('process_resident_memory_bytes', 'Resident memory size in bytes.', 'gauge', status?.get('VmRSS') ?? memory.rss);
    if (status !== null) {
      one('process_virtual_memory_bytes', 'Virtual memory size in bytes.', 'gauge', status.get('VmSize') ?? 0);
      one('process_heap_bytes', 'Process heap size in bytes.', 'gauge', status.get('VmData') ?? 0);
    }
    const fds = openFds();
    if (fds !== null) one('process_open_fds', 'Number of open file descriptors.', 'gauge', fds);
    const maxFds = maxOpenFds();
    if (maxFds !== null) one('process_max_fds', 'Maximum number of open file descriptors.', 'gauge', maxFds);

    one('nodejs_eventloop_lag_seconds', 'Lag of event loop in seconds.', 'gauge', lagSeconds);
    const delay = this.eventLoopDelay!;
    const seen = delay.count > 0;
    const ns = (value: number): number => (seen ? value / 1e9 : 0);
    one('nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay.', 'gauge', ns(delay.min));
    one('nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.', 'gauge', ns(delay.max));
    one('nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.', 'gauge', ns(delay.mean));
    one('nodejs_eventloop_lag_stddev_seconds', 'The standard deviation of the recorded event loop delays.', 'gauge', ns(delay.stddev));
    one('nodejs_eventloop_lag_p50_seconds', 'The 50th percentile of the recorded event loop delays.', 'gauge', ns(delay.percentile(50)));
    one('nodejs_eventloop_lag_p90_seconds', 'The 90th percentile of the recorded event loop delays.', 'gauge', ns(delay.percentile(90)));
    one('nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays.', 'gauge', ns(delay.percentile(99)));
    delay.reset();

    const byType = (name: string, help: string, types: readonly string[]): void => {
      const counts = new Map<string, number>();
      for (const type of types) counts.set(type, (counts.get(type) ?? 0) + 1);
      families.push({ name, help, type: 'gauge', values: [...counts].map(([type, value]) => ({ labels: { type }, value })) });
    };
    const internal = process as unknown as { _getActiveHandles?(): object[]; _getActiveRequests?(): object[] };
    const constructorNames = (list: object[] | undefined): string[] => (list ?? []).filter((o) => o?.constructor !== undefined).map((o) => o.constructor.name);
    byType('nodejs_active_handles', 'Number of active libuv handles grouped by handle type. Every handle type is C++ class name.', constructorNames(internal._getActiveHandles?.()));
    byType('nodejs_active_requests', 'Number of active libuv requests grouped by request type. Every request type is C++ class name.', constructorNames(internal._getActiveRequests?.()));
    byType('nodejs_active_resources', 'Number of active resources that are currently keeping the event loop alive, grouped by async resource type.', process.getActiveResourcesInfo());

    one('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', 'gauge', memory.heapTotal);
    one('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', 'gauge', memory.heapUsed);
    one('nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', 'gauge', memory.external);
    const spaces = v8.getHeapSpaceStatistics();
    const perSpace = (kind: 'total' | 'used' | 'available', read: (s: v8.HeapSpaceInfo) => number): void => {
      families.push({
        name: `nodejs_heap_space_size_${kind}_bytes`, help: `Process heap space size ${kind} from Node.js in bytes.`, type: 'gauge',
        values: spaces.map((s) => ({ labels: { space: s.space_name.replace(/_space$/, '') }, value: read(s) })),
      });
    };
    perSpace('total', (s) => s.space_size);
    perSpace('used', (s) => s.space_used_size);
    perSpace('available', (s) => s.space_available_size);

    families.push({
      name: 'nodejs_version_info', help: 'Node.js version info.', type: 'gauge',
      values: [{ labels: { version: process.version, major: versionMajor!, minor: versionMinor!, patch: versionPatch! }, value: 1 }],
    });

    const gcValues: Sample[] = [];
    for (const [kind, histogram] of this.gc) {
      let cumulative = 0;
      for (let i = 0; i <= gcSecondsBuckets.length; i++) {
        cumulative += histogram.counts[i]!;
        gcValues.push({ metricName: 'nodejs_gc_duration_seconds_bucket', labels: { le: i < gcSecondsBuckets.length ? gcSecondsBuckets[i]! : '+Inf', kind }, value: cumulative });
      }
      gcValues.push({ metricName: 'nodejs_gc_duration_seconds_sum', labels: { kind }, value: histogram.sum });
      gcValues.push({ metricName: 'nodejs_gc_duration_seconds_count', labels: { kind }, value: histogram.count });
    }
    families.push({ name: 'nodejs_gc_duration_seconds', help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.', type: 'histogram', values: gcValues });
    return families;
  }
}

function measureLag(): Promise<number> {
  const startNs = process.hrtime.bigint();
  return new Promise((resolve) => setImmediate(() => resolve(Number(process.hrtime.bigint() - startNs) / 1e9)));
}

/** VmRSS, VmSize, VmData in bytes from /proc/self/status; null where there is no /proc. */
function procStatus(): Map<string, number> | null {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/status', 'utf8');
  } catch {
    return null;
  }
  const fields = new Map<string, number>();
  for (const match of text.matchAll(/^(VmRSS|VmSize|VmData):\s+(\d+) kB$/gm)) fields.set(match[1]!, Number(match[2]) * 1024);
  return fields;
}

function openFds(): number | null {
  try {
    return fs.readdirSync('/proc/self/fd').length - 1; // minus the descriptor readdir itself opened
  } catch {
    return null;
  }
}

function maxOpenFds(): number | null {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return match === null ? null : Number(match[1]);
  } catch {
    return null;
  }
}
