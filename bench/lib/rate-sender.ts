/**
 * Sends at a fixed rate: every millisecond tick it sends the records that are due since the start,
 * each stamped with the time it was handed to the client. If the client falls behind, the
 * catch-up burst is stamped when it is sent, so the schedule lag is reported separately
 * (`scheduleLagMaxMs`) instead of hiding in the latency.
 */
export interface RateSenderFigures {
  sent: number;
  seconds: number;
  achievedRate: number;
  scheduleLagMaxMs: number;
  /** True if sending stopped early because the client fell more than giveUpLagMs behind schedule. */
  gaveUp: boolean;
}

/** A sender this far behind its schedule cannot sustain the rate: stop instead of queueing minutes of records. */
const giveUpLagMs = 3000;

/**
 * `sendOne(stampMs)` sends one record stamped with stampMs. Resolves after durationMs, or at the
 * first tick at which `shouldStop()` holds (a stream whose length the caller decides).
 */
export function sendAtRate(ratePerSecond: number, durationMs: number, sendOne: (stampMs: number) => void, shouldStop: () => boolean = () => false): Promise<RateSenderFigures> {
  return new Promise((resolve) => {
    const startMs = performance.now();
    let sent = 0;
    let scheduleLagMaxMs = 0;
    const tick = (): void => {
      const nowMs = performance.now();
      const elapsedMs = Math.min(nowMs - startMs, durationMs);
      const due = Math.floor((elapsedMs * ratePerSecond) / 1000);
      if (due - sent > 0) {
        const lagMs = elapsedMs - (sent * 1000) / ratePerSecond;
        if (lagMs > scheduleLagMaxMs) scheduleLagMaxMs = lagMs;
      }
      // Send in slices of at most 10 ms of schedule, so a slow client notices it is falling behind.
      const sliceEnd = Math.min(due, sent + Math.max(1, Math.ceil(ratePerSecond / 100)));
      while (sent < sliceEnd) {
        sendOne(performance.now());
        sent++;
      }
      const gaveUp = scheduleLagMaxMs > giveUpLagMs;
      if (nowMs - startMs >= durationMs && sent >= due || gaveUp || shouldStop()) {
        const seconds = (performance.now() - startMs) / 1000;
        resolve({ sent, seconds, achievedRate: sent / seconds, scheduleLagMaxMs, gaveUp });
        return;
      }
      if (sent < due) setImmediate(tick);
      else setTimeout(tick, 1);
    };
    tick();
  });
}
