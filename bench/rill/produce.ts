/**
 * Produce throughput: `producers` Producer instances (one connection each) in this process send
 * random values of `messageSize` bytes, without keys, to one topic, each with at most
 * `windowRecords` sends outstanding. Throughput counts the records acknowledged after the
 * warm-up until the last acknowledgement.
 *
 * Ack latency: every Produce request of the bench's producers after the warm-up, from the moment
 * it is written to the socket to its reply (the `rill:client:request` events; one request carries
 * the batches of every partition that broker leads). It is the broker's side of a batch's life
 * (with acks all: fsync, and in a cluster the followers' fetch and fsync), not the time a record
 * waits in the producer for its batch to go out.
 */
import diagnostics from 'node:diagnostics_channel';
import { Admin, clientChannelNames, Producer, type RequestEvent } from '../../src/client/index.js';
import { ApiKey } from '../../src/wire/apis.js';
import { LatencyHistogram, roundSummary, type LatencySummary } from '../lib/histogram.js';
import type { BrokerProcess } from '../lib/broker-process.js';
import type { ClientSecurity } from '../lib/security.js';
import type { Outcome, RunContext } from '../lib/context.js';
import { PayloadPool } from '../lib/payload.js';
import { formatRate, log, RateTicker, sleep } from '../lib/progress.js';
import { pump, SendWindow } from '../lib/send-window.js';
import type { Workload } from '../lib/workload.js';

export interface ProduceLoad {
  bootstrap: string;
  /** TLS and SASL options of a secure broker (BrokerProcess.clientSecurity). */
  security?: ClientSecurity;
  topic: string;
  messageSize: number;
  producers: number;
  acks: Workload['acks'];
  windowRecords: number;
  producerOptions: Workload['producerOptions'];
  /** Stop after this long, or after `records` acknowledged records, whichever comes first. */
  durationMs: number;
  records: number;
  /** Acknowledged payload bytes at which to stop (recovery), 0 = none. */
  bytes?: number;
  /** Do not wait for outstanding sends at the end (the broker is about to be killed). */
  abandonAtEnd?: boolean;
  label: string;
}

export interface ProduceFigures {
  acked: number;
  failed: number;
  firstError: string | null;
  /** Records and seconds of the measured phase (after warm-up, until the last ack). */
  measuredRecords: number;
  measuredSeconds: number;
  totalSeconds: number;
  /** Produce requests answered after the warm-up: send to reply. */
  requestLatency: LatencySummary;
  producers: Producer[];
}

let loads = 0;

export async function createTopic(bootstrap: string, topic: string, partitions: number, security: ClientSecurity = {}): Promise<void> {
  const admin = new Admin({ bootstrap, ...security });
  try {
    await admin.createTopics([{ topic, partitions }]);
  } finally {
    admin.close();
  }
}

/** Drives the load; leaves the producers open for the caller to close. */
export async function produceLoad(load: ProduceLoad, warmupMs: number, onWarm?: () => Promise<void>): Promise<ProduceFigures> {
  const payloads = new PayloadPool(load.messageSize);
  // Request events of this load's producers only (an Admin or another load may publish too).
  const clientId = `bench-${load.label}-${++loads}`;
  const producers = Array.from({ length: load.producers }, () => new Producer({ bootstrap: load.bootstrap, ...load.security, clientId, acks: load.acks, deliveryTimeoutMs: load.abandonAtEnd ? 5000 : 120_000, ...load.producerOptions }));
  const requestLatency = new LatencyHistogram();
  let warm = warmupMs <= 0;
  const onRequest = (message: unknown): void => {
    const event = message as RequestEvent;
    if (warm && event.clientId === clientId && event.apiKey === ApiKey.Produce && event.error === undefined) requestLatency.recordMs(event.durationMs);
  };
  diagnostics.subscribe(clientChannelNames.request, onRequest);
  try {
    return await drive(load, warmupMs, payloads, producers, requestLatency, () => (warm = true), onWarm);
  } finally {
    diagnostics.unsubscribe(clientChannelNames.request, onRequest);
  }
}

async function drive(load: ProduceLoad, warmupMs: number, payloads: PayloadPool, producers: Producer[], requestLatency: LatencyHistogram, markWarm: () => void, onWarm?: () => Promise<void>): Promise<ProduceFigures> {
  // Metadata first, so the timed phase does not include the lookup.
  await Promise.all(producers.map((p) => p.send({ topic: load.topic, value: payloads.take() })));
  const windows = producers.map(() => new SendWindow(load.windowRecords));
  const acked = (): number => windows.reduce((sum, w) => sum + w.acked, 0);
  const startMs = performance.now();
  const endMs = startMs + load.durationMs;
  const recordsMax = load.records > 0 ? load.records : Infinity;
  const bytesMax = load.bytes !== undefined && load.bytes > 0 ? load.bytes : Infinity;
  let issued = 0;
  let stopped = false;
  const keepGoing = (): boolean => {
    if (stopped) return false;
    if (issued >= recordsMax || (issued & 255) === 0 && (performance.now() >= endMs || acked() * load.messageSize >= bytesMax)) stopped = true;
    return !stopped;
  };
  const ticker = new RateTicker(load.label, acked, load.messageSize);
  let warmAcked = 0;
  let warmAtMs = startMs;
  const warmTimer = setTimeout(() => {
    warmAcked = acked();
    warmAtMs = performance.now();
    markWarm();
    void onWarm?.();
  }, warmupMs);
  const runs = producers.map((producer, i) => {
    const window = windows[i]!;
    const send = (): void => {
      issued++;
      producer.send({ topic: load.topic, value: payloads.take() }).then(() => window.done(), (error: unknown) => window.fail(error));
    };
    return pump(window, send, keepGoing, load.abandonAtEnd);
  });
  await Promise.all(runs);
  const lastAckMs = performance.now();
  clearTimeout(warmTimer);
  ticker.stop();
  if (warmupMs > 0 && warmAtMs === startMs) warmAcked = 0; // ran shorter than the warm-up: count everything
  const failed = windows.reduce((sum, w) => sum + w.failed, 0);
  const firstError = windows.find((w) => w.firstError !== null)?.firstError?.message ?? null;
  return { acked: acked(), failed, firstError, measuredRecords: acked() - warmAcked, measuredSeconds: (lastAckMs - warmAtMs) / 1000, totalSeconds: (lastAckMs - startMs) / 1000, requestLatency: requestLatency.summary(), producers };
}

export async function closeAll(producers: Producer[]): Promise<void> {
  await Promise.all(producers.map((p) => p.close().catch(() => undefined)));
}

export async function runProduce(workload: Workload, ctx: RunContext): Promise<Outcome> {
  const broker: BrokerProcess = await ctx.startBroker();
  try {
    const topic = `bench-${workload.name}`;
    await createTopic(broker.bootstrap, topic, workload.partitions, broker.clientSecurity);
    await sleep(200);
    log(`  ${workload.producers} producer(s), ${workload.partitions} partitions, ${workload.messageSize} B values, acks ${workload.acks}, window ${workload.windowRecords} records per producer`);
    const figures = await produceLoad({
      bootstrap: broker.bootstrap,
      security: broker.clientSecurity,
      topic,
      messageSize: workload.messageSize,
      producers: workload.producers,
      acks: workload.acks,
      windowRecords: workload.windowRecords,
      producerOptions: workload.producerOptions,
      durationMs: workload.durationSeconds * 1000,
      records: workload.messages,
      label: 'produce',
    }, workload.warmupSeconds * 1000, () => ctx.clientProfile.start());
    await ctx.clientProfile.stop();
    await closeAll(figures.producers);
    return produceOutcome(workload, figures, `${workload.producers} producer${workload.producers === 1 ? '' : 's'}, acks ${workload.acks}`);
  } finally {
    await broker.stop();
    broker.removeData();
  }
}

/** Throughput and ack latency of a produce load, as metrics and a summary line; throws if sends failed. */
export function produceOutcome(workload: Workload, figures: ProduceFigures, setup: string): Outcome {
  if (figures.failed > 0) throw new Error(`${figures.failed} sends failed; first: ${figures.firstError}`);
  const recordsPerSecond = figures.measuredRecords / figures.measuredSeconds;
  const bytesPerSecond = recordsPerSecond * workload.messageSize;
  const requests = figures.requestLatency;
  return {
    metrics: {
      recordsPerSecond: Math.round(recordsPerSecond),
      megabytesPerSecond: Math.round(bytesPerSecond / 1e5) / 10,
      mebibytesPerSecond: Math.round(bytesPerSecond / 1024 / 1024 * 10) / 10,
      producers: workload.producers,
      connections: workload.producers,
      recordsAcked: figures.acked,
      measuredRecords: figures.measuredRecords,
      measuredSeconds: Math.round(figures.measuredSeconds * 1000) / 1000,
      totalSeconds: Math.round(figures.totalSeconds * 1000) / 1000,
      produceRequests: requests.count,
      recordsPerRequest: requests.count === 0 ? null : Math.round(figures.measuredRecords / requests.count),
      requestLatency: roundSummary(requests),
      requestP50Ms: round3(requests.p50Ms),
      requestP99Ms: round3(requests.p99Ms),
    },
    summary: `${formatRate(recordsPerSecond)} records/s, ${(bytesPerSecond / 1e6).toFixed(1)} MB/s (${setup}); produce request to ack p50 ${requests.p50Ms.toFixed(2)} ms, p99 ${requests.p99Ms.toFixed(2)} ms`,
  };
}

function round3(value: number): number | null {
  return Number.isFinite(value) ? Math.round(value * 1000) / 1000 : null;
}
