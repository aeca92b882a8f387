/**
 * Produce throughput on a replicated cluster: `brokers` brokers and one etcd on this machine
 * (lib/cluster.ts), one topic of `partitions` partitions with `replicationFactor` copies and
 * `minInSyncReplicas`, loaded exactly as the single-broker produce workloads load one broker
 * (rill/produce.ts: same window, same producer options, same warm-up, same ack-latency figure).
 * The producer's bootstrap lists every broker; it routes each partition to its leader. With acks
 * 'all' a batch is acknowledged once it is fsynced on the leader and on every ISR follower.
 */
import path from 'node:path';
import { BenchCluster } from '../lib/cluster.js';
import type { Outcome, RunContext } from '../lib/context.js';
import { log } from '../lib/progress.js';
import type { Workload } from '../lib/workload.js';
import { closeAll, produceLoad, produceOutcome } from './produce.js';

export function clusterName(workload: Workload): string {
  return `bench-${workload.name}`;
}

export async function runClusterProduce(workload: Workload, ctx: RunContext): Promise<Outcome> {
  const cluster = await BenchCluster.start({ name: clusterName(workload), brokers: workload.brokers, leaseTtlMs: workload.leaseTtlMs }, ctx.startBroker);
  try {
    const topic = `bench-${workload.name}`;
    await cluster.createTopic(topic, workload.partitions, workload.replicationFactor, workload.minInSyncReplicas);
    const views = await cluster.waitForFullIsr(topic, workload.partitions);
    const leaders = views.map((p) => p.leader);
    log(`  ${workload.producers} producer(s), ${workload.partitions} partitions (leaders ${leaders.join(' ')}), RF ${workload.replicationFactor}, minInSyncReplicas ${workload.minInSyncReplicas}, ${workload.messageSize} B values, acks ${workload.acks}, window ${workload.windowRecords} records per producer`);
    const figures = await produceLoad({
      bootstrap: cluster.bootstrap,
      topic,
      messageSize: workload.messageSize,
      producers: workload.producers,
      acks: workload.acks,
      windowRecords: workload.windowRecords,
      producerOptions: workload.producerOptions,
      durationMs: workload.durationSeconds * 1000,
      records: workload.messages,
      label: 'cluster produce',
    }, workload.warmupSeconds * 1000, () => ctx.clientProfile.start());
    await ctx.clientProfile.stop();
    await closeAll(figures.producers);
    const setup = `${workload.producers} producer${workload.producers === 1 ? '' : 's'}, acks ${workload.acks}, ${workload.brokers} brokers, RF ${workload.replicationFactor}, min ISR ${workload.minInSyncReplicas}`;
    const outcome = produceOutcome(workload, figures, setup);
    outcome.metrics.brokers = workload.brokers;
    outcome.metrics.replicationFactor = workload.replicationFactor;
    outcome.metrics.minInSyncReplicas = workload.minInSyncReplicas;
    outcome.metrics.leaders = leaders;
    return outcome;
  } catch (error) {
    throw withClusterLogs(error, cluster, workload);
  } finally {
    await cluster.stop();
  }
}

/**
 * The error, with the path of the brokers' and etcd's saved output appended; the brokers' last
 * warnings go to the progress output (the reason stays one line for the table).
 */
export function withClusterLogs(error: unknown, cluster: BenchCluster, workload: Workload): Error {
  const file = cluster.saveLogs(workload.name);
  const warnings = cluster.warnings();
  if (warnings !== '') log(`  the brokers' last warnings and errors:\n${warnings}`);
  const base = error instanceof Error ? error : new Error(String(error));
  base.message = `${base.message} (broker and etcd output: ${path.relative(process.cwd(), file)})`;
  return base;
}
