/**
 * Leader failover under a steady stream: `brokers` brokers with RILL_LEASE_TTL_MS = `leaseTtlMs`
 * (lib/cluster.ts), one topic of one partition with `replicationFactor` copies and
 * `minInSyncReplicas`; one idempotent producer (acks 'all') sends `producerRate` records/s of
 * `messageSize` bytes, each value numbered (a uint32 sequence in its first 4 bytes).
 *
 * `failovers` times, once the running brokers agree the partition is led with its whole replica
 * set in sync: SIGKILL the leader, and measure
 *   failover  SIGKILL -> the first acknowledgement of a send started after the SIGKILL (what a
 *             producer sees: lease expiry, election, metadata refresh and retry backoff)
 *   election  SIGKILL -> a surviving broker's metadata names another leader (polled every 50 ms)
 *   rejoin    the killed broker's restart (same node id, port, data directory) -> it is back in
 *             the ISR, as every running broker describes the partition
 * then let the stream run a second longer, stop it, flush, and read the partition from the start
 * to its end with a PartitionReader: every acknowledged sequence must be there (a missing one is a
 * lost acknowledged record and fails the workload); duplicates are counted (idempotence should
 * make them 0).
 */
import diagnostics from 'node:diagnostics_channel';
import { clientChannelNames, PartitionReader, Producer, type RequestEvent, type RetryEvent } from '../../src/client/index.js';
import { ApiKey } from '../../src/wire/apis.js';
import { BenchCluster, sameSet } from '../lib/cluster.js';
import type { Outcome, RunContext } from '../lib/context.js';
import { PayloadPool } from '../lib/payload.js';
import { log, sleep } from '../lib/progress.js';
import { sendAtRate, type RateSenderFigures } from '../lib/rate-sender.js';
import type { Workload } from '../lib/workload.js';
import { clusterName, withClusterLogs } from './cluster.js';

/** A stream that runs longer than this has gone wrong: the sender stops. */
const streamDurationMaxMs = 30 * 60_000;
/** Steady acks between rounds: the next leader is killed only once the stream flows again. */
const settleMs = 1000;

interface Ack {
  sendStartMs: number;
  ackMs: number;
}

/** The steady stream: numbered values sent at a fixed rate, acknowledged sequences remembered. */
class SteadyStream {
  sent = 0;
  acked = 0;
  failed = 0;
  firstError: string | null = null;
  /** ackedFlags[seq] = 1 once seq is acknowledged. */
  private ackedFlags = new Uint8Array(1 << 16);
  private stopRequested = false;
  private watch: { fromMs: number; resolve: (ack: Ack) => void } | null = null;
  readonly finished: Promise<RateSenderFigures>;

  constructor(private readonly producer: Producer, private readonly topic: string, rate: number, messageSize: number) {
    const payloads = new PayloadPool(messageSize);
    this.finished = sendAtRate(rate, streamDurationMaxMs, (stampMs) => {
      const seq = this.sent++;
      const value = Buffer.allocUnsafe(messageSize);
      payloads.take().copy(value);
      value.writeUInt32LE(seq, 0);
      this.producer.send({ topic: this.topic, partition: 0, value }).then(() => this.onAck(seq, stampMs), (error: unknown) => {
        this.failed++;
        this.firstError ??= error instanceof Error ? error.message : String(error);
      });
    }, () => this.stopRequested);
  }

  /** Resolves with the first acknowledgement of a send started at or after `fromMs`. */
  firstAckOfSendFrom(fromMs: number): Promise<Ack> {
    if (this.watch !== null) throw new Error('one watch at a time');
    return new Promise((resolve) => (this.watch = { fromMs, resolve }));
  }

  stop(): Promise<RateSenderFigures> {
    this.stopRequested = true;
    return this.finished;
  }

  isAcked(seq: number): boolean {
    return seq < this.ackedFlags.length && this.ackedFlags[seq] === 1;
  }

  private onAck(seq: number, sendStartMs: number): void {
    const ackMs = performance.now();
    this.acked++;
    if (seq >= this.ackedFlags.length) {
      const grown = new Uint8Array(Math.max(seq + 1, this.ackedFlags.length * 2));
      grown.set(this.ackedFlags);
      this.ackedFlags = grown;
    }
    this.ackedFlags[seq] = 1;
    const watch = this.watch;
    if (watch !== null && sendStartMs >= watch.fromMs) {
      this.watch = null;
      watch.resolve({ sendStartMs, ackMs });
    }
  }
}

/**
 * What the producer went through in a round, from its own instrumentation (rill:client:retry and
 * rill:client:request): the retries after the kill and when the first successful produce request
 * after the kill was sent. Splits a failover into the cluster's part (until a new leader answers)
 * and the client's (retry backoff, metadata refresh).
 */
class ProducerTimeline {
  private fromMs = Infinity;
  retries = new Map<string, number>();
  firstGoodRequestSentMs: number | null = null;
  private readonly onRetry = (message: unknown): void => {
    const event = message as RetryEvent;
    if (event.clientId !== this.clientId || performance.now() < this.fromMs) return;
    const key = `${event.operation} ${event.error.code}`;
    this.retries.set(key, (this.retries.get(key) ?? 0) + 1);
  };
  private readonly onRequest = (message: unknown): void => {
    const event = message as RequestEvent;
    if (event.clientId !== this.clientId || event.apiKey !== ApiKey.Produce || event.error !== undefined || this.firstGoodRequestSentMs !== null) return;
    const sentMs = performance.now() - event.durationMs;
    if (sentMs >= this.fromMs) this.firstGoodRequestSentMs = sentMs - this.fromMs;
  };

  constructor(private readonly clientId: string) {
    diagnostics.subscribe(clientChannelNames.retry, this.onRetry);
    diagnostics.subscribe(clientChannelNames.request, this.onRequest);
  }

  /** Starts a round at `fromMs` (the kill). */
  reset(fromMs: number): void {
    this.fromMs = fromMs;
    this.retries = new Map();
    this.firstGoodRequestSentMs = null;
  }

  /** E.g. "retries: produce CONNECTION_ERROR ×21" (a produce retry is counted per batch). */
  describeRetries(): string {
    if (this.retries.size === 0) return 'no retries';
    return `retries: ${[...this.retries].map(([key, n]) => `${key} ×${n}`).join(', ')}`;
  }

  close(): void {
    diagnostics.unsubscribe(clientChannelNames.retry, this.onRetry);
    diagnostics.unsubscribe(clientChannelNames.request, this.onRequest);
  }
}

interface Round {
  killedLeader: number;
  newLeader: number;
  failoverMs: number;
  electionMs: number | null;
  /** The first send after the kill started this long after it (the sender's tick). */
  firstSendAfterKillMs: number;
  /** The first produce request after the kill that succeeded was sent this long after it. */
  firstGoodRequestSentMs: number | null;
  producerRetries: string;
  rejoinMs: number;
}

/** Rejects with a named timeout unless `promise` settles within `limitMs`. */
async function within<T>(what: string, promise: Promise<T>, limitMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not within ${limitMs} ms: ${what}`)), limitMs)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls the surviving brokers every 50 ms until they agree on a leader other than `oldLeader`;
 * stop() ends the polling and says what it saw (electionMs null: no new leader seen).
 */
function watchElection(cluster: BenchCluster, topic: string, oldLeader: number, fromMs: number): { stop(): Promise<{ electionMs: number | null; newLeader: number }> } {
  let polling = true;
  const seen = { electionMs: null as number | null, newLeader: -1 };
  const done = (async () => {
    while (polling) {
      const view = await cluster.agreedPartition(topic, 0).catch(() => 'no answer');
      if (typeof view !== 'string' && view.leader >= 0 && view.leader !== oldLeader) {
        seen.electionMs = performance.now() - fromMs;
        seen.newLeader = view.leader;
        return;
      }
      await sleep(50);
    }
  })();
  return {
    async stop() {
      polling = false;
      await done;
      return seen;
    },
  };
}

/** Waits for a fully in-sync partition, SIGKILLs its leader, and times until a later send is acknowledged. */
async function killLeader(cluster: BenchCluster, stream: SteadyStream, timeline: ProducerTimeline, topic: string, round: number): Promise<Omit<Round, 'rejoinMs'>> {
  const before = await cluster.waitForPartition(`${topic}/0 led with its whole replica set in sync`, topic, 0, (p) => p.leader >= 0 && sameSet(p.isr, p.replicas));
  const leader = before.leader;
  // No await from here to the signal (cluster.kill signals before its first await).
  const killedAtMs = performance.now();
  timeline.reset(killedAtMs);
  const firstAck = stream.firstAckOfSendFrom(killedAtMs);
  await cluster.kill(leader);
  log(`  round ${round}: SIGKILLed broker ${leader} (leader of ${topic}/0, epoch ${before.leaderEpoch}, ISR [${before.isr.join()}])`);
  const election = watchElection(cluster, topic, leader, killedAtMs);
  const acked = await within(`round ${round}: an acknowledged write sent after broker ${leader} (the leader) was SIGKILLed`, firstAck, cluster.waitLimitMs()).then(
    (ack) => ({ ack }),
    (error: unknown) => ({ error }),
  );
  const { electionMs, newLeader } = await election.stop();
  if ('error' in acked) throw acked.error;
  const { ack } = acked;
  const failoverMs = ack.ackMs - killedAtMs;
  const goodRequestMs = timeline.firstGoodRequestSentMs;
  const producerRetries = timeline.describeRetries();
  log(`  round ${round}: first write sent after the kill acknowledged after ${Math.round(failoverMs)} ms; new leader ${newLeader} in metadata after ${electionMs === null ? '?' : Math.round(electionMs)} ms; `
    + `the producer's first successful request went out after ${goodRequestMs === null ? '?' : Math.round(goodRequestMs)} ms (${producerRetries})`);
  return { killedLeader: leader, newLeader, failoverMs, electionMs, firstSendAfterKillMs: ack.sendStartMs - killedAtMs, firstGoodRequestSentMs: goodRequestMs, producerRetries };
}

/** Restarts a killed broker (same node id, port, data directory); returns the ms until it is back in the ISR. */
async function rejoin(cluster: BenchCluster, topic: string, nodeId: number, round: number): Promise<number> {
  const restartAtMs = performance.now();
  await cluster.restart(nodeId);
  await cluster.waitForPartition(`broker ${nodeId} back in the ISR of ${topic}/0 after its restart`, topic, 0, (p) => p.leader >= 0 && p.isr.includes(nodeId));
  const rejoinMs = performance.now() - restartAtMs;
  log(`  round ${round}: broker ${nodeId} restarted and back in the ISR after ${Math.round(rejoinMs)} ms`);
  return rejoinMs;
}

interface ReadBack {
  read: number;
  duplicates: number;
  /** Acknowledged sequences not found, and the first few of them. */
  lost: number;
  lostExamples: number[];
}

/** Reads the partition from the start to its end and looks for every acknowledged sequence. */
async function readBack(bootstrap: string, topic: string, stream: SteadyStream): Promise<ReadBack> {
  const reader = new PartitionReader({ bootstrap, topic, partitions: [0], from: 'earliest', stopAtEnd: true, maxWaitMs: 100 });
  const counts = new Map<number, number>();
  let read = 0;
  try {
    for await (const message of reader) {
      read++;
      if (message.value === null || message.value.length < 4) continue;
      const seq = message.value.readUInt32LE(0);
      counts.set(seq, (counts.get(seq) ?? 0) + 1);
    }
  } finally {
    reader.close();
  }
  let lost = 0;
  const lostExamples: number[] = [];
  for (let seq = 0; seq < stream.sent; seq++) {
    if (!stream.isAcked(seq) || counts.has(seq)) continue;
    lost++;
    if (lostExamples.length < 10) lostExamples.push(seq);
  }
  const duplicates = [...counts.values()].reduce((sum, n) => sum + n - 1, 0);
  return { read, duplicates, lost, lostExamples };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function failoverOutcome(workload: Workload, rounds: Round[], stream: SteadyStream, sender: RateSenderFigures, check: ReadBack): Outcome {
  const failovers = rounds.map((r) => Math.round(r.failoverMs));
  const failoverMedianMs = Math.round(median(failovers));
  const failoverMaxMs = Math.max(...failovers);
  return {
    metrics: {
      leaseTtlMs: workload.leaseTtlMs,
      failovers: rounds.length,
      failoverMs: failovers,
      failoverMedianMs,
      failoverMaxMs,
      electionMs: rounds.map((r) => (r.electionMs === null ? null : Math.round(r.electionMs))),
      firstGoodRequestSentMs: rounds.map((r) => (r.firstGoodRequestSentMs === null ? null : Math.round(r.firstGoodRequestSentMs))),
      producerRetries: rounds.map((r) => r.producerRetries),
      firstSendAfterKillMs: rounds.map((r) => Math.round(r.firstSendAfterKillMs * 1000) / 1000),
      rejoinMs: rounds.map((r) => Math.round(r.rejoinMs)),
      killedLeaders: rounds.map((r) => r.killedLeader),
      newLeaders: rounds.map((r) => r.newLeader),
      targetRate: workload.producerRate,
      achievedRate: Math.round(sender.achievedRate),
      scheduleLagMaxMs: Math.round(sender.scheduleLagMaxMs * 1000) / 1000,
      recordsSent: stream.sent,
      recordsAcked: stream.acked,
      sendFailures: stream.failed,
      firstSendError: stream.firstError,
      recordsRead: check.read,
      duplicates: check.duplicates,
      acknowledgedRecordsLost: check.lost,
    },
    summary: `failover ms (SIGKILL of the leader to the first ack of a later send): median ${failoverMedianMs}, max ${failoverMaxMs} over ${rounds.length} kills (${failovers.join(', ')}), lease TTL ${workload.leaseTtlMs.toLocaleString('en-US')} ms; `
      + `0 of ${stream.acked.toLocaleString('en-US')} acknowledged records lost, ${check.duplicates} duplicates${stream.failed > 0 ? `, ${stream.failed} sends failed (${stream.firstError})` : ''}`,
  };
}

export async function runClusterFailover(workload: Workload, ctx: RunContext): Promise<Outcome> {
  const cluster = await BenchCluster.start({ name: clusterName(workload), brokers: workload.brokers, leaseTtlMs: workload.leaseTtlMs }, ctx.startBroker);
  const topic = `bench-${workload.name}`;
  const clientId = `bench-${workload.name}`;
  const producer = new Producer({ bootstrap: cluster.bootstrap, clientId, ...workload.producerOptions, acks: 'all', idempotent: true });
  const timeline = new ProducerTimeline(clientId);
  let stream: SteadyStream | null = null;
  const rounds: Round[] = [];
  let succeeded = false;
  try {
    await cluster.createTopic(topic, workload.partitions, workload.replicationFactor, workload.minInSyncReplicas);
    await cluster.waitForFullIsr(topic, workload.partitions);
    log(`  ${workload.producerRate.toLocaleString('en-US')} records/s of ${workload.messageSize} B to ${topic}/0 (RF ${workload.replicationFactor}, min ISR ${workload.minInSyncReplicas}, acks all, idempotent); ${workload.failovers} leader kills, lease TTL ${workload.leaseTtlMs} ms`);
    stream = new SteadyStream(producer, topic, workload.producerRate, workload.messageSize);
    await within('the first acknowledged write of the stream', stream.firstAckOfSendFrom(0), cluster.waitLimitMs());
    await sleep(workload.warmupSeconds * 1000);
    await ctx.clientProfile.start();
    for (let round = 1; round <= workload.failovers; round++) {
      const done: Round = { ...(await killLeader(cluster, stream, timeline, topic, round)), rejoinMs: NaN };
      rounds.push(done);
      done.rejoinMs = await rejoin(cluster, topic, done.killedLeader, round);
      await within(`the stream acknowledged again after round ${round}`, stream.firstAckOfSendFrom(performance.now()), cluster.waitLimitMs());
      await sleep(settleMs);
    }
    const sender = await stream.stop();
    await within('the producer flushed every outstanding send', producer.flush(), cluster.waitLimitMs());
    await ctx.clientProfile.stop();
    const check = await readBack(cluster.bootstrap, topic, stream);
    log(`  stream: ${stream.sent.toLocaleString('en-US')} sent, ${stream.acked.toLocaleString('en-US')} acknowledged, ${stream.failed} failed; read back ${check.read.toLocaleString('en-US')}, ${check.duplicates} duplicates, ${check.lost} acknowledged records missing`);
    if (check.lost > 0) {
      throw new Error(`${check.lost} acknowledged records are missing from ${topic}/0 (sequences ${check.lostExamples.join(', ')}${check.lost > check.lostExamples.length ? ', ...' : ''})`);
    }
    succeeded = true;
    return failoverOutcome(workload, rounds, stream, sender, check);
  } catch (error) {
    const measured = rounds.length === 0 ? '' : ` (failover measured in ${rounds.length} round${rounds.length === 1 ? '' : 's'}: ${rounds.map((r) => Math.round(r.failoverMs)).join(', ')} ms)`;
    if (error instanceof Error) error.message += measured;
    throw withClusterLogs(error, cluster, workload);
  } finally {
    await stream?.stop();
    timeline.close();
    // After a failure sends may be outstanding against a cluster that never answers: close()
    // would flush them until their delivery timeout (2 min), so it is not awaited then.
    const closed = producer.close().catch(() => undefined);
    if (succeeded) await closed;
    await cluster.stop();
  }
}
