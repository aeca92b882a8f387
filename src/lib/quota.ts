/**
 * Byte-rate quotas as a leaky bucket per key (a principal, or a client address): the core of the
 * broker's produce and fetch quotas (broker/quotas.ts), with time passed in.
 *
 *   level       bytes recorded and not yet drained; drains at bytesPerSecond, never below 0
 *   burst       the level may reach burstBytes without a throttle
 *   record(key, limit, bytes, nowMs):
 *     level  = max(0, level - bytesPerSecond x elapsed) + bytes
 *     level  = min(level, burstBytes + bytesPerSecond x throttleMsMax)   (debt forgiven past it)
 *     return   level > burstBytes ? ceil((level - burstBytes) / bytesPerSecond) ms : 0
 *
 * The throttle is how long until the level is back at the burst. A client that waits it before
 * its next request (the broker makes it: it does not read the connection meanwhile) finds the
 * level at or below the burst again, so over any interval it gets at most
 * bytesPerSecond x interval + burstBytes + its last request through; a client that stays under the
 * rate is never throttled; and no throttle exceeds throttleMsMax (a single request larger than
 * bytesPerSecond x throttleMsMax has the excess forgiven rather than a throttle longer than a
 * client's request timeout).
 *
 * Keys are bounded (keysMax): the key recorded longest ago is forgotten first. A key idle for
 * burst/rate + throttleMsMax has drained to 0, so forgetting it loses nothing; a forgotten key
 * with a level starts again from 0.
 */
export interface ByteRate {
  bytesPerSecond: number;
  burstBytes: number;
}

interface Bucket {
  levelBytes: number;
  atMs: number;
}

export class ByteRateQuotas {
  /** Insertion order = order of last record (re-inserted on each), so the first key is the oldest. */
  private readonly buckets = new Map<string, Bucket>();

  constructor(readonly throttleMsMax: number, readonly keysMax: number) {
    if (!(throttleMsMax > 0) || !Number.isInteger(keysMax) || keysMax < 1) {
      throw new RangeError(`ByteRateQuotas needs throttleMsMax > 0 and an integer keysMax >= 1, got ${throttleMsMax} and ${keysMax}`);
    }
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Records `bytes` for `key` at `nowMs`; returns how long the key's client must wait (ms, 0: not at all). */
  record(key: string, rate: ByteRate, bytes: number, nowMs: number): number {
    const bucket = this.buckets.get(key);
    let levelBytes = bucket === undefined ? 0 : drained(bucket, rate, nowMs);
    levelBytes = Math.min(levelBytes + bytes, rate.burstBytes + (rate.bytesPerSecond * this.throttleMsMax) / 1000);
    if (bucket !== undefined) {
      this.buckets.delete(key);
      bucket.levelBytes = levelBytes;
      bucket.atMs = Math.max(bucket.atMs, nowMs);
      this.buckets.set(key, bucket);
    } else {
      if (this.buckets.size >= this.keysMax) this.buckets.delete(this.buckets.keys().next().value!);
      this.buckets.set(key, { levelBytes, atMs: nowMs });
    }
    return Math.min(this.throttleMsMax, throttleMsOf(levelBytes, rate));
  }
}

/** The level at nowMs (a clock that steps back drains nothing). */
function drained(bucket: Bucket, rate: ByteRate, nowMs: number): number {
  const elapsedMs = Math.max(0, nowMs - bucket.atMs);
  return Math.max(0, bucket.levelBytes - (rate.bytesPerSecond * elapsedMs) / 1000);
}

function throttleMsOf(levelBytes: number, rate: ByteRate): number {
  if (levelBytes <= rate.burstBytes) return 0;
  return Math.ceil(((levelBytes - rate.burstBytes) * 1000) / rate.bytesPerSecond);
}
