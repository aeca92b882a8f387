/**
 * A secure workload (one with `security` in its file) measured against itself in plaintext: the
 * same runner (produce or consume) with the same settings, each time on a fresh broker, plain and
 * secure back to back, `rounds` times, the order alternating (plain first in odd rounds, secure
 * first in even ones) so that drift on a busy machine does not always favour one side. Each round
 * gives a ratio secure / plain; the ratio reported is the median of those, the figures the
 * medians of each side. Only the connection changes: the secure broker has a certificate, a user
 * added offline and `--auth required`, and every client (the backlog's producers too) speaks TLS
 * and authenticates (lib/security.ts).
 */
import type { MetricValue, Outcome, RunContext } from '../lib/context.js';
import { formatRate, log } from '../lib/progress.js';
import { BrokerSecurity } from '../lib/security.js';
import type { Workload } from '../lib/workload.js';

type Runner = (workload: Workload, ctx: RunContext) => Promise<Outcome>;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function figure(outcome: Outcome, metric: string): number | null {
  const value = outcome.metrics[metric];
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** Median of `metric` over the outcomes that have it, or null. */
function medianOf(outcomes: Outcome[], metric: string): number | null {
  const values = outcomes.map((o) => figure(o, metric)).filter((v) => v !== null);
  return values.length === 0 ? null : median(values);
}

function ratio(secure: number | null, plain: number | null): number | null {
  return secure === null || plain === null || plain === 0 ? null : Math.round((secure / plain) * 100) / 100;
}

/** The context of one half of a round: brokers and client profile labelled for --profile, secure or not. */
function contextFor(ctx: RunContext, label: string, security: BrokerSecurity | undefined): RunContext {
  return {
    ...ctx,
    startBroker: (o = {}) => ctx.startBroker({ ...o, label: `${label}-${o.label ?? 'broker'}`, ...(security === undefined ? {} : { security }) }),
    clientProfile: { start: () => ctx.clientProfile.start(), stop: () => ctx.clientProfile.stop(label) },
  };
}

export async function runSecureComparison(workload: Workload, ctx: RunContext, runner: Runner): Promise<Outcome> {
  if (workload.security === null) throw new Error(`${workload.name} has no security setting`);
  const security = new BrokerSecurity(workload.security);
  const plain: Outcome[] = [];
  const secure: Outcome[] = [];
  const half = async (round: number, secured: boolean): Promise<void> => {
    log(`  round ${round}/${workload.rounds}, ${secured ? security.label : 'plaintext'}:`);
    const outcome = await runner(workload, contextFor(ctx, `${secured ? 'secure' : 'plain'}${round}`, secured ? security : undefined));
    log(`    ${outcome.summary}`);
    (secured ? secure : plain).push(outcome);
  };
  try {
    for (let round = 1; round <= workload.rounds; round++) {
      const secureFirst = round % 2 === 0;
      await half(round, secureFirst);
      await half(round, !secureFirst);
    }
  } finally {
    security.dispose();
  }
  const secureRate = medianOf(secure, 'recordsPerSecond')!;
  const plainRate = medianOf(plain, 'recordsPerSecond')!;
  const roundRatios = plain.map((p, i) => ratio(figure(secure[i]!, 'recordsPerSecond'), figure(p, 'recordsPerSecond')));
  const knownRatios = roundRatios.filter((r) => r !== null);
  const ratioToPlain = knownRatios.length === 0 ? null : Math.round(median(knownRatios) * 100) / 100;
  const batchSecure = medianOf(secure, 'batchIteratorRecordsPerSecond');
  const batchPlain = medianOf(plain, 'batchIteratorRecordsPerSecond');
  const negotiated = security.negotiated;
  const metrics: Record<string, MetricValue> = {
    recordsPerSecond: Math.round(secureRate),
    plainRecordsPerSecond: Math.round(plainRate),
    ratioToPlain,
    megabytesPerSecond: medianOf(secure, 'megabytesPerSecond'),
    plainMegabytesPerSecond: medianOf(plain, 'megabytesPerSecond'),
    security: security.label,
    tlsProtocol: negotiated?.protocol ?? null,
    tlsCipher: negotiated?.cipher ?? null,
    rounds: workload.rounds,
    roundFigures: plain.map((p, i) => ({ plainRecordsPerSecond: figure(p, 'recordsPerSecond'), secureRecordsPerSecond: figure(secure[i]!, 'recordsPerSecond'), ratio: roundRatios[i]! })),
    plainRounds: plain.map((o) => o.metrics),
    secureRounds: secure.map((o) => o.metrics),
  };
  if (batchSecure !== null && batchPlain !== null) {
    const batchRatios = plain.map((p, i) => ratio(figure(secure[i]!, 'batchIteratorRecordsPerSecond'), figure(p, 'batchIteratorRecordsPerSecond'))).filter((r) => r !== null);
    metrics.batchIteratorRecordsPerSecond = Math.round(batchSecure);
    metrics.plainBatchIteratorRecordsPerSecond = Math.round(batchPlain);
    metrics.batchIteratorRatioToPlain = batchRatios.length === 0 ? null : Math.round(median(batchRatios) * 100) / 100;
  }
  const rounds = workload.rounds === 1 ? 'back to back' : `medians of ${workload.rounds} alternating rounds, per-round ratios ${knownRatios.map((r) => r.toFixed(2)).join(' ')}`;
  const cipher = negotiated === null ? '' : `; ${negotiated.protocol ?? '?'} ${negotiated.cipher}`;
  return {
    metrics,
    summary: `${workload.kind} ${security.label}: ${formatRate(secureRate)} records/s (${ratioToPlain?.toFixed(2) ?? '?'} of plain ${formatRate(plainRate)} records/s, ${rounds}${cipher})`,
  };
}
