/** Time source, injectable so state machines can be driven by tests without sleeping. */
export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private currentMs = 0) {}
  nowMs(): number {
    return this.currentMs;
  }
  advance(ms: number): void {
    this.currentMs += ms;
  }
  set(ms: number): void {
    this.currentMs = ms;
  }
}

/** Time that never jumps (NTP, an operator setting the date): for deadlines such as an etcd lease. */
export const monotonicClock: Clock = { nowMs: () => performance.now() };
