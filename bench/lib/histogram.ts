/**
 * A latency histogram in the spirit of HdrHistogram: log-linear buckets with 1024 sub-buckets per
 * power of two, so every recorded value is kept within 0.1% of its true value, from 1 µs up to
 * about 35 minutes, in a fixed ~23k-slot array (no allocation per recorded value).
 *
 * Values are recorded in microseconds (integers). Index layout:
 *   values 0 .. 2047            -> index = value (exact)
 *   values 2^b .. 2^(b+1)-1, b>=11 -> shift = b - 10; index = 2048 + (shift-1)*1024 + (value>>shift) - 1024
 */
const exactValuesMax = 2048;
const subBuckets = 1024;
const valueMaxMicros = 2 ** 31 - 1;
const slotCount = exactValuesMax + 21 * subBuckets;

function indexOf(valueMicros: number): number {
  if (valueMicros < exactValuesMax) return valueMicros;
  const bit = 31 - Math.clz32(valueMicros);
  const shift = bit - 10;
  return exactValuesMax + (shift - 1) * subBuckets + (valueMicros >>> shift) - subBuckets;
}

/** The highest value that maps to the slot: what a percentile reports (never under-reports). */
function highestValueOf(index: number): number {
  if (index < exactValuesMax) return index;
  const shift = Math.floor((index - exactValuesMax) / subBuckets) + 1;
  const mantissa = ((index - exactValuesMax) % subBuckets) + subBuckets;
  return ((mantissa + 1) * 2 ** shift) - 1;
}

export interface LatencySummary {
  count: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(slotCount);
  private total = 0;
  private sumMicros = 0;
  private minMicros = Infinity;
  private maxMicros = 0;

  /** Records one latency given in milliseconds (fractions welcome; negative clamps to 0). */
  recordMs(latencyMs: number): void {
    const micros = Math.min(valueMaxMicros, Math.max(0, Math.round(latencyMs * 1000)));
    this.counts[indexOf(micros)]! += 1;
    this.total++;
    this.sumMicros += micros;
    if (micros < this.minMicros) this.minMicros = micros;
    if (micros > this.maxMicros) this.maxMicros = micros;
  }

  get count(): number {
    return this.total;
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.sumMicros = 0;
    this.minMicros = Infinity;
    this.maxMicros = 0;
  }

  /** The value at or below which `percentile` percent of the recorded values lie, in ms. */
  percentileMs(percentile: number): number {
    if (this.total === 0) return NaN;
    const rank = Math.max(1, Math.ceil((percentile / 100) * this.total));
    let seen = 0;
    for (let index = 0; index < slotCount; index++) {
      seen += this.counts[index]!;
      if (seen >= rank) return Math.min(highestValueOf(index), this.maxMicros) / 1000;
    }
    return this.maxMicros / 1000;
  }

  summary(): LatencySummary {
    const empty = this.total === 0;
    return {
      count: this.total,
      minMs: empty ? NaN : this.minMicros / 1000,
      meanMs: empty ? NaN : this.sumMicros / this.total / 1000,
      p50Ms: this.percentileMs(50),
      p90Ms: this.percentileMs(90),
      p99Ms: this.percentileMs(99),
      p999Ms: this.percentileMs(99.9),
      maxMs: empty ? NaN : this.maxMicros / 1000,
    };
  }
}

/** A summary with its times rounded to the µs, for the results file. */
export function roundSummary(summary: LatencySummary): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(summary)) out[key] = key === 'count' ? value : Math.round(value * 1000) / 1000;
  return out;
}

/** p50, p99, p99.9 and max on one line. */
export function latencyLine(s: LatencySummary): string {
  return `p50 ${s.p50Ms.toFixed(2)} ms, p99 ${s.p99Ms.toFixed(2)} ms, p99.9 ${s.p999Ms.toFixed(2)} ms, max ${s.maxMs.toFixed(2)} ms`;
}
