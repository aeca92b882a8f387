/** Runs a Rill workload's counterpart against each reachable peer and computes Rill's ratio to it. */
import type { PeerResult, MetricValue } from '../lib/context.js';
import { formatRate, log } from '../lib/progress.js';
import type { Workload } from '../lib/workload.js';
import { roundSummary, latencyLine } from '../lib/histogram.js';
import { natsPeer } from './nats.js';
import { rabbitmqPeer } from './rabbitmq.js';
import { reachable, type Peer } from './peer.js';
import { redisPeer } from './redis.js';

export const allPeers: Peer[] = [redisPeer, natsPeer, rabbitmqPeer];

/** Which peers answer on their port; prints a skip line for the others. */
export async function reachablePeers(): Promise<{ peers: Peer[]; skipped: PeerResult[] }> {
  const peers: Peer[] = [];
  const skipped: PeerResult[] = [];
  for (const peer of allPeers) {
    const up = await reachable(peer.host, peer.port);
    const unusable = up ? ((await peer.unusable?.()) ?? null) : null;
    if (unusable !== null) {
      log(`skipped ${peer.name}: ${unusable}`);
      skipped.push({ peer: peer.name, status: 'skipped', reason: unusable, settings: {}, metrics: {}, summary: `skipped: ${unusable}`, rillRatio: null, ratioMeaning: '' });
    } else if (up) {
      log(`peer ${peer.name}: server at ${peer.host}:${peer.port}`);
      peers.push(peer);
    } else {
      const reason = `no server at ${peer.host}:${peer.port} (start one with: ${peer.startHint})`;
      log(`skipped ${peer.name}: ${reason}`);
      skipped.push({ peer: peer.name, status: 'skipped', reason, settings: {}, metrics: {}, summary: `skipped: ${reason}`, rillRatio: null, ratioMeaning: '' });
    }
  }
  return { peers, skipped };
}

async function runOne(peer: Peer, workload: Workload, rill: Record<string, MetricValue>): Promise<PeerResult> {
  const session = await peer.open();
  const settings: Record<string, MetricValue> = { ...peer.settings, server: `${peer.host}:${peer.port}`, messageSize: workload.messageSize, partitions: workload.partitions };
  const progress = (what: string) => (count: number): void => log(`  ${peer.name} ${what}: ${count.toLocaleString('en-US')} records`);
  try {
    if (workload.kind === 'produce') {
      settings.producers = workload.producers;
      settings.windowRecords = workload.windowRecords;
      const r = await session.produce({ messageSize: workload.messageSize, producers: workload.producers, partitions: workload.partitions, windowRecords: workload.windowRecords, durationMs: workload.durationSeconds * 1000, onProgress: progress('produce') });
      const ratio = Number(rill.recordsPerSecond) / r.recordsPerSecond;
      return { peer: peer.name, status: 'ok', settings, metrics: { recordsPerSecond: Math.round(r.recordsPerSecond), megabytesPerSecond: Math.round((r.recordsPerSecond * workload.messageSize) / 1e5) / 10, records: r.records, seconds: r.seconds }, summary: `${formatRate(r.recordsPerSecond)} records/s`, rillRatio: ratio, ratioMeaning: 'Rill records/s ÷ peer records/s' };
    }
    if (workload.kind === 'consume') {
      // Peers fill their backlog for a bounded time (the slow ones would take minutes for 2M records).
      const fillSeconds = Math.min(workload.durationSeconds, 15);
      settings.producers = workload.producers;
      settings.backlogFillSeconds = fillSeconds;
      const written = await session.produce({ messageSize: workload.messageSize, producers: workload.producers, partitions: workload.partitions, windowRecords: workload.windowRecords, durationMs: fillSeconds * 1000, onProgress: progress('backlog') });
      const r = await session.consume({ expectedRecords: written.records, onProgress: progress('consume') });
      const ratio = Number(rill.recordsPerSecond) / r.recordsPerSecond;
      return { peer: peer.name, status: r.records === written.records ? 'ok' : 'failed', reason: r.records === written.records ? undefined : `read ${r.records} of ${written.records}`, settings, metrics: { recordsPerSecond: Math.round(r.recordsPerSecond), backlogRecords: written.records, seconds: r.seconds }, summary: `${formatRate(r.recordsPerSecond)} records/s reading a backlog of ${written.records.toLocaleString('en-US')}`, rillRatio: ratio, ratioMeaning: 'Rill records/s ÷ peer records/s' } as PeerResult;
    }
    if (workload.kind === 'e2e-latency') {
      settings.rate = workload.producerRate;
      const r = await session.latency({ messageSize: workload.messageSize, partitions: workload.partitions, rate: workload.producerRate, durationMs: workload.durationSeconds * 1000, warmupMs: workload.warmupSeconds * 1000 + 1000 });
      const ratio = r.latency.p99Ms / Number(rill.p99Ms);
      return { peer: peer.name, status: 'ok', settings, metrics: { achievedRate: Math.round(r.achievedRate), sent: r.sent, received: r.received, scheduleLagMaxMs: r.scheduleLagMaxMs, couldNotSustainRate: r.gaveUp, ...roundSummary(r.latency) }, summary: `${r.gaveUp ? 'could not sustain the rate (stopped > 3 s behind schedule); ' : ''}${latencyLine(r.latency)} at ${formatRate(r.achievedRate)}/s${r.received < r.sent ? ` (only ${r.received.toLocaleString('en-US')} of ${r.sent.toLocaleString('en-US')} arrived)` : ''}`, rillRatio: ratio, ratioMeaning: 'peer p99 ÷ Rill p99 (> 1: Rill lower)' };
    }
    return { peer: peer.name, status: 'skipped', reason: `no peer version of a ${workload.kind} workload`, settings, metrics: {}, summary: 'skipped', rillRatio: null, ratioMeaning: '' };
  } finally {
    await session.close().catch(() => undefined);
  }
}

export async function runPeers(peers: Peer[], workload: Workload, rill: Record<string, MetricValue>): Promise<PeerResult[]> {
  const results: PeerResult[] = [];
  for (const peer of peers) {
    log(`  -- ${peer.name}: ${workload.name}`);
    try {
      const result = await runOne(peer, workload, rill);
      log(`  ${peer.name}: ${result.summary}${result.rillRatio === null ? '' : `; Rill ratio ${result.rillRatio.toFixed(2)} (${result.ratioMeaning})`}`);
      results.push(result);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      log(`  ${peer.name} failed: ${reason}`);
      results.push({ peer: peer.name, status: 'failed', reason, settings: {}, metrics: {}, summary: `failed: ${reason}`, rillRatio: null, ratioMeaning: '' });
    }
  }
  return results;
}
