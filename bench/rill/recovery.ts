/**
 * Recovery: write at least `bytesBeforeKill` bytes of `messageSize` values (acks 1) and SIGKILL
 * the broker while the producers are still sending (no clean shutdown, so no clean-shutdown
 * marker). Start a broker on the same data directory and time, from its spawn: the ready line,
 * the first acknowledged produce, and the first fetch of a record written before the crash.
 * A fresh broker's spawn-to-ready time on an empty directory is the baseline (Node start-up).
 */
import { Admin, PartitionReader, Producer } from '../../src/client/index.js';
import type { Outcome, RunContext } from '../lib/context.js';
import { formatBytes, log, sleep } from '../lib/progress.js';
import type { Workload } from '../lib/workload.js';
import { createTopic, produceLoad } from './produce.js';

export async function runRecovery(workload: Workload, ctx: RunContext): Promise<Outcome> {
  const first = await ctx.startBroker({ label: 'before-crash' });
  const dataDir = first.dataDir;
  const emptyStartMs = first.readyAtMs - first.spawnedAtMs;
  const topic = `bench-${workload.name}`;
  let second: Awaited<ReturnType<RunContext['startBroker']>> | null = null;
  try {
    await createTopic(first.bootstrap, topic, workload.partitions);
    log(`  writing ${formatBytes(workload.bytesBeforeKill)} of ${workload.messageSize} B records with acks 1, then SIGKILL`);
    const figures = await produceLoad({
      bootstrap: first.bootstrap,
      topic,
      messageSize: workload.messageSize,
      producers: workload.producers,
      acks: 1,
      windowRecords: workload.windowRecords,
      producerOptions: workload.producerOptions,
      durationMs: 10 * 60_000,
      records: 0,
      bytes: workload.bytesBeforeKill,
      abandonAtEnd: true,
      label: 'write',
    }, 0);
    const ackedBeforeKill = figures.acked + workload.producers;
    await first.kill();
    const writtenBytes = ackedBeforeKill * workload.messageSize;
    log(`  SIGKILLed the broker after ${ackedBeforeKill.toLocaleString('en-US')} acknowledged records (${formatBytes(writtenBytes)}); restarting on the same data directory`);
    // The abandoned producers retry into the void until their delivery timeout: close them without waiting.
    for (const producer of figures.producers) void producer.close().catch(() => undefined);

    await ctx.clientProfile.start();
    second = await ctx.startBroker({ dataDir, label: 'after-crash' });
    const readyMs = second.readyAtMs - second.spawnedAtMs;
    const producer = new Producer({ bootstrap: second.bootstrap, acks: 1 });
    await producer.send({ topic, value: Buffer.from('after the crash'), partition: 0 });
    const produceMs = performance.now() - second.spawnedAtMs;
    await producer.close();
    // Read the last record written before the crash in partition 1 (stopAtEnd: no fetch left in flight).
    const admin = new Admin({ bootstrap: second.bootstrap });
    const latest = await admin.listOffsets(topic, 'latest');
    const reader = new PartitionReader({ bootstrap: second.bootstrap, topic, partitions: [1], from: latest[1]! - 1n, stopAtEnd: true, maxWaitMs: 100 });
    let fetched = 0;
    for await (const message of reader) fetched += message.value === null ? 0 : 1;
    if (fetched !== 1) throw new Error(`expected to fetch 1 record after recovery, got ${fetched}`);
    const fetchMs = performance.now() - second.spawnedAtMs;
    await ctx.clientProfile.stop();

    admin.close();
    const recordsAfter = latest.reduce((sum, offset) => sum + Number(offset), 0) - 1;
    const lost = Math.max(0, ackedBeforeKill - recordsAfter);
    return {
      metrics: {
        writtenBytes,
        ackedRecordsBeforeKill: ackedBeforeKill,
        recordsAfterRecovery: recordsAfter,
        acknowledgedRecordsLost: lost,
        emptyBrokerSpawnToReadyMs: Math.round(emptyStartMs),
        spawnToReadyMs: Math.round(readyMs),
        spawnToFirstProduceMs: Math.round(produceMs),
        spawnToFirstFetchMs: Math.round(fetchMs),
      },
      summary: `after SIGKILL with ${formatBytes(writtenBytes)} written: ready ${Math.round(readyMs)} ms, produce ${Math.round(produceMs)} ms, fetch ${Math.round(fetchMs)} ms after spawn (empty broker: ${Math.round(emptyStartMs)} ms); ${lost} acknowledged records lost`,
    };
  } finally {
    await first.kill();
    if (second !== null) await second.stop();
    first.removeData();
    await sleep(0);
  }
}
