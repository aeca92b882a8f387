/**
 * End-to-end latency: one producer sends stamped records at a fixed rate to a topic; one
 * PartitionReader (started at the end of every partition, before the first send) reads them in
 * the same process; latency = reader yields the record - the record was handed to send(). Both
 * ends read the same monotonic clock. The warm-up is not recorded.
 *
 * Send latency: one producer awaits each send before the next (one record per request).
 */
import { PartitionReader, Producer } from '../../src/client/index.js';
import type { Outcome, RunContext } from '../lib/context.js';
import { latencyLine, LatencyHistogram, roundSummary } from '../lib/histogram.js';
import { PayloadPool, stampOf } from '../lib/payload.js';
import { formatRate, log, sleep } from '../lib/progress.js';
import { sendAtRate } from '../lib/rate-sender.js';
import type { Workload } from '../lib/workload.js';
import { createTopic } from './produce.js';

export async function runEndToEnd(workload: Workload, ctx: RunContext): Promise<Outcome> {
  const broker = await ctx.startBroker();
  const topic = `bench-${workload.name}`;
  const producer = new Producer({ bootstrap: broker.bootstrap, acks: workload.acks, ...workload.producerOptions });
  const reader = new PartitionReader({ bootstrap: broker.bootstrap, topic, from: 'latest', maxWaitMs: 500 });
  try {
    await createTopic(broker.bootstrap, topic, workload.partitions);
    const payloads = new PayloadPool(workload.messageSize);
    const histogram = new LatencyHistogram();
    const warmupEndMs = performance.now() + workload.warmupSeconds * 1000 + 1000;
    let received = 0;
    let sendErrors = 0;
    const consumed = (async () => {
      for await (const message of reader) {
        const nowMs = performance.now();
        received++;
        if (nowMs >= warmupEndMs) histogram.recordMs(nowMs - stampOf(message.value));
      }
    })();
    // The reader resolves its start offsets before its first fetch: give it a moment.
    await sleep(1000);
    await ctx.clientProfile.start();
    let lastReport = performance.now();
    const figures = await sendAtRate(workload.producerRate, workload.durationSeconds * 1000 + workload.warmupSeconds * 1000, (stampMs) => {
      producer.send({ topic, value: payloads.stamped(stampMs) }).catch(() => sendErrors++);
      if (stampMs - lastReport >= 1000) {
        lastReport = stampMs;
        const s = histogram.summary();
        log(`  e2e @ ${formatRate(workload.producerRate)}/s: received ${received.toLocaleString('en-US')}, so far ${s.count > 0 ? latencyLine(s) : '(warming up)'}`);
      }
    });
    await producer.flush();
    const deadline = performance.now() + 10_000;
    while (received < figures.sent && performance.now() < deadline) await sleep(20);
    await ctx.clientProfile.stop();
    reader.close();
    await consumed.catch(() => undefined);
    const summary = histogram.summary();
    return {
      metrics: {
        targetRate: workload.producerRate,
        achievedRate: Math.round(figures.achievedRate),
        sent: figures.sent,
        received,
        sendErrors,
        scheduleLagMaxMs: Math.round(figures.scheduleLagMaxMs * 1000) / 1000,
        couldNotSustainRate: figures.gaveUp,
        ...roundSummary(summary),
      },
      summary: `${figures.gaveUp ? 'could not sustain the rate; ' : ''}${latencyLine(summary)} at ${formatRate(figures.achievedRate)}/s`,
    };
  } finally {
    reader.close();
    await producer.close().catch(() => undefined);
    await broker.stop();
    broker.removeData();
  }
}

export async function runSendLatency(workload: Workload, ctx: RunContext): Promise<Outcome> {
  const broker = await ctx.startBroker();
  const topic = `bench-${workload.name}`;
  const producer = new Producer({ bootstrap: broker.bootstrap, acks: workload.acks, ...workload.producerOptions });
  try {
    await createTopic(broker.bootstrap, topic, workload.partitions);
    const payloads = new PayloadPool(workload.messageSize);
    const histogram = new LatencyHistogram();
    await producer.send({ topic, value: payloads.take() });
    const warmupEndMs = performance.now() + workload.warmupSeconds * 1000;
    while (performance.now() < warmupEndMs) await producer.send({ topic, value: payloads.take() });
    await ctx.clientProfile.start();
    const endMs = performance.now() + workload.durationSeconds * 1000;
    const recordsMax = workload.messages > 0 ? workload.messages : Infinity;
    let nextReportMs = performance.now() + 1000;
    while (histogram.count < recordsMax) {
      const startMs = performance.now();
      if (startMs >= endMs) break;
      await producer.send({ topic, value: payloads.take() });
      histogram.recordMs(performance.now() - startMs);
      if (startMs >= nextReportMs) {
        nextReportMs = startMs + 1000;
        log(`  send latency, acks ${workload.acks}: ${histogram.count.toLocaleString('en-US')} sends, ${latencyLine(histogram.summary())}`);
      }
    }
    await ctx.clientProfile.stop();
    const summary = histogram.summary();
    return {
      metrics: { sends: summary.count, sendsPerSecond: Math.round(summary.count / workload.durationSeconds), ...roundSummary(summary) },
      summary: `${latencyLine(summary)} (${summary.count.toLocaleString('en-US')} sequential sends, acks ${workload.acks})`,
    };
  } finally {
    await producer.close().catch(() => undefined);
    await broker.stop();
    broker.removeData();
  }
}
