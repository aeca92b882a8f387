/**
 * GET /api/overview: what the console shows, as JSON, read from broker state when asked. Counters
 * are cumulative since the broker started; the console turns two polls into rates. Lists are
 * bounded (limits.ts); what is left out is counted in `omitted`.
 */
import type { BrokerRegistry, MetricsSource } from '../prometheus.js';
import type { Partition } from '../partition.js';
import { requestSecondsBuckets } from '../prometheus.js';
import { apiNameByKey } from '../../wire/apis.js';
import { overviewGroupsMax, overviewHistoryMax, overviewPartitionsMax } from './limits.js';

export interface BrokerInfo {
  nodeId: number;
  host: string;
  port: number;
  httpPort: number | null;
  version: string;
  startedAtMs: number;
}

export interface OverviewSource extends MetricsSource {
  info(): BrokerInfo;
}

export interface PartitionOverview {
  partition: number;
  offline: boolean;
  logStartOffset: number | null;
  logEndOffset: number | null;
  highWatermark: number;
  sizeBytes: number | null;
  recordsIn: number;
  bytesIn: number;
  recordsOut: number;
  bytesOut: number;
}

function partitionOverview(p: Partition): PartitionOverview {
  const traffic = { recordsIn: p.recordsIn, bytesIn: p.bytesIn, recordsOut: p.recordsOut, bytesOut: p.bytesOut };
  if (p.isOffline) return { partition: p.index, offline: true, logStartOffset: null, logEndOffset: null, highWatermark: p.highWatermark, sizeBytes: null, ...traffic };
  const log = p.log;
  return { partition: p.index, offline: false, logStartOffset: log.logStartOffset, logEndOffset: log.nextOffset, highWatermark: p.highWatermark, sizeBytes: log.sizeBytes, ...traffic };
}

/** bigint offsets as numbers (exact below 2^53, which every Rill offset is). */
function toNumber(value: bigint): number {
  return Number(value);
}

export function overview(source: OverviewSource, registry: BrokerRegistry, nowMs: number): Record<string, unknown> {
  const info = source.info();
  const m = source.metrics;
  const topics = new Map<string, PartitionOverview[]>();
  let partitionsOmitted = 0;
  let listed = 0;
  for (const p of source.partitions()) {
    if (listed >= overviewPartitionsMax) {
      partitionsOmitted++;
      continue;
    }
    listed++;
    let list = topics.get(p.topic);
    if (list === undefined) topics.set(p.topic, (list = []));
    list.push(partitionOverview(p));
  }
  const allGroups = source.groups();
  const groups = allGroups.slice(0, overviewGroupsMax).map((g) => ({
    groupId: g.groupId,
    state: g.state,
    groupEpoch: g.groupEpoch,
    members: g.members.map((member) => ({ memberId: member.memberId, clientId: member.clientId, host: member.host, state: member.state, memberEpoch: member.memberEpoch, assigned: member.assigned })),
    offsets: g.offsets.map((o) => ({ topic: o.topic, partition: o.partition, committedOffset: toNumber(o.committedOffset), endOffset: toNumber(o.endOffset), lag: toNumber(o.lag), owner: o.owner })),
    history: g.history.slice(-overviewHistoryMax).map((event) => ({
      groupEpoch: event.groupEpoch, atMs: event.atMs, reason: event.reason, memberId: event.memberId,
      moves: event.moves.length + event.movesOmitted, stableAfterMs: event.stableAfterMs,
    })),
  }));
  const latency = [...registry.requestSeconds].map(([apiKey, histogram]) => ({
    api: apiNameByKey.get(apiKey) ?? 'unknown', count: histogram.count, sumSeconds: histogram.sum, buckets: [...histogram.counts],
  }));
  let recordsIn = 0;
  let bytesIn = 0;
  let recordsOut = 0;
  let bytesOut = 0;
  for (const p of source.partitions()) {
    recordsIn += p.recordsIn;
    bytesIn += p.bytesIn;
    recordsOut += p.recordsOut;
    bytesOut += p.bytesOut;
  }
  return {
    nowMs,
    broker: { ...info, uptimeSeconds: Math.max(0, (nowMs - info.startedAtMs) / 1000), ready: source.ready },
    totals: {
      recordsIn, bytesIn, recordsOut, bytesOut, requests: m.requests,
      connectionsOpen: m.connectionsOpen, requestsInFlight: source.requestsInFlight(),
    },
    latency: { boundsSeconds: requestSecondsBuckets, apis: latency },
    topics: [...topics].map(([name, partitions]) => ({ name, partitions })),
    groups,
    alerts: Object.fromEntries(m.alerts.counts),
    omitted: { partitions: partitionsOmitted, groups: Math.max(0, allGroups.length - overviewGroupsMax) },
  };
}
