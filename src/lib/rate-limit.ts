/**
 * At most one event per key per interval, counting what it held back: the shape of a log line
 * that a condition repeated thousands of times a second (a full disk, a client retrying a bad
 * request) must not turn into thousands of lines.
 *
 *   key first seen, or interval passed since it last passed -> pass, with the count suppressed since
 *   otherwise                                              -> suppressed (counted)
 *
 * Keys are bounded (keysMax): past it, the key that passed longest ago is forgotten (its
 * suppressed count is lost, which only shortens a later "N suppressed"). Time is passed in.
 */
export interface RateDecision {
  pass: boolean;
  /** Events suppressed for this key since it last passed (meaningful when pass). */
  suppressed: number;
}

interface KeyState {
  passedAtMs: number;
  suppressed: number;
}

export class RateLimiter {
  /** Insertion order = order of last pass (re-inserted on pass), so the first key is the oldest. */
  private readonly keys = new Map<string, KeyState>();

  constructor(readonly intervalMs: number, readonly keysMax: number) {
    if (!(intervalMs > 0) || !Number.isInteger(keysMax) || keysMax < 1) {
      throw new RangeError(`RateLimiter needs intervalMs > 0 and an integer keysMax >= 1, got ${intervalMs} and ${keysMax}`);
    }
  }

  get size(): number {
    return this.keys.size;
  }

  admit(key: string, nowMs: number): RateDecision {
    const state = this.keys.get(key);
    if (state !== undefined && nowMs - state.passedAtMs < this.intervalMs) {
      state.suppressed++;
      return { pass: false, suppressed: state.suppressed };
    }
    const suppressed = state?.suppressed ?? 0;
    this.keys.delete(key);
    if (this.keys.size >= this.keysMax) this.keys.delete(this.keys.keys().next().value!);
    this.keys.set(key, { passedAtMs: nowMs, suppressed: 0 });
    return { pass: true, suppressed };
  }
}
