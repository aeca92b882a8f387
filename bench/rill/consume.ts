/**
 * Consume throughput: fill a backlog of `messages` records (acks 1, `producers` producers), then
 * one PartitionReader reads it from the earliest offsets to the end of every partition. The time
 * runs from creating the reader to the last record. With --profile the broker is restarted
 * (cleanly) between fill and read, so its profile shows the read path alone.
 */
import { PartitionReader } from '../../src/client/index.js';
import type { Outcome, RunContext } from '../lib/context.js';
import type { ClientSecurity } from '../lib/security.js';
import { formatRate, log, RateTicker } from '../lib/progress.js';
import type { Workload } from '../lib/workload.js';
import { closeAll, createTopic, produceLoad } from './produce.js';

export async function fillBacklog(bootstrap: string, topic: string, workload: Workload, security: ClientSecurity = {}): Promise<number> {
  const figures = await produceLoad({
    bootstrap,
    security,
    topic,
    messageSize: workload.messageSize,
    producers: workload.producers,
    acks: 1,
    windowRecords: workload.windowRecords,
    producerOptions: workload.producerOptions,
    durationMs: 10 * 60_000,
    records: workload.messages,
    label: 'backlog',
  }, 0);
  await closeAll(figures.producers);
  if (figures.failed > 0) throw new Error(`backlog: ${figures.failed} sends failed; first: ${figures.firstError}`);
  log(`  backlog: ${figures.acked.toLocaleString('en-US')} records written in ${figures.totalSeconds.toFixed(1)} s`);
  return figures.acked;
}

/** A second read of the same backlog through reader.batches() (one array per fetch), when the client has it. */
async function readWithBatches(bootstrap: string, security: ClientSecurity, topic: string, backlog: number): Promise<number | null> {
  const reader = new PartitionReader({ bootstrap, ...security, topic, from: 'earliest', stopAtEnd: true }) as PartitionReader & { batches?: () => AsyncIterable<unknown[]> };
  if (typeof reader.batches !== 'function') return null;
  const startMs = performance.now();
  let records = 0;
  for await (const batch of reader.batches()) records += batch.length;
  const seconds = (performance.now() - startMs) / 1000;
  if (records !== backlog) throw new Error(`batches(): read ${records} records, expected ${backlog}`);
  log(`  the same backlog through reader.batches(): ${formatRate(records / seconds)} records/s`);
  return Math.round(records / seconds);
}

export async function runConsume(workload: Workload, ctx: RunContext): Promise<Outcome> {
  let broker = await ctx.startBroker({ label: 'fill' });
  const dataDir = broker.dataDir;
  try {
    const topic = `bench-${workload.name}`;
    await createTopic(broker.bootstrap, topic, workload.partitions, broker.clientSecurity);
    // The producers' metadata warm-up sends one record each: the backlog holds those too.
    const backlog = (await fillBacklog(broker.bootstrap, topic, workload, broker.clientSecurity)) + workload.producers;
    let restarted = false;
    if (ctx.profiling) {
      await broker.stop();
      broker = await ctx.startBroker({ dataDir, label: 'read' });
      restarted = true;
    }
    await ctx.clientProfile.start();
    let records = 0;
    let bytes = 0;
    const ticker = new RateTicker('consume', () => records, workload.messageSize);
    const startMs = performance.now();
    let firstRecordMs = NaN;
    const reader = new PartitionReader({ bootstrap: broker.bootstrap, ...broker.clientSecurity, topic, from: 'earliest', stopAtEnd: true });
    for await (const message of reader) {
      if (records === 0) firstRecordMs = performance.now() - startMs;
      records++;
      bytes += message.value?.length ?? 0;
    }
    const seconds = (performance.now() - startMs) / 1000;
    ticker.stop();
    await ctx.clientProfile.stop();
    if (records !== backlog) throw new Error(`read ${records} records, expected the backlog of ${backlog}`);
    const recordsPerSecond = records / seconds;
    const batchFigure = await readWithBatches(broker.bootstrap, broker.clientSecurity, topic, backlog);
    return {
      metrics: {
        recordsPerSecond: Math.round(recordsPerSecond),
        megabytesPerSecond: Math.round(bytes / seconds / 1e5) / 10,
        backlogRecords: backlog,
        backlogBytes: bytes,
        consumers: 1,
        seconds: Math.round(seconds * 1000) / 1000,
        firstRecordMs: Math.round(firstRecordMs * 10) / 10,
        brokerRestartedBeforeRead: restarted,
        reader: 'PartitionReader async iterator, one message at a time',
        batchIteratorRecordsPerSecond: batchFigure,
      },
      summary: `${formatRate(recordsPerSecond)} records/s, ${(bytes / seconds / 1e6).toFixed(1)} MB/s reading ${backlog.toLocaleString('en-US')} records with 1 reader`,
    };
  } finally {
    await broker.stop();
    broker.removeData();
  }
}
