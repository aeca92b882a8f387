/**
 * Group commit: many flush() callers share one fsync round.
 *
 *   no round running      -> start one now; it covers every append made so far
 *   round running, and it already covers the caller's target offset -> wait for it
 *   round running, caller needs more -> wait for the single queued round, which starts when
 *                           the running one settles and covers every append made by then
 *
 * So at most one round runs and at most one waits, however many callers there are.
 *
 * Each settled round is reported to `onRound` with how many requests it answered (the batch size
 * of the group commit) and how long its syncs took, whether they succeeded or not.
 */

export interface FlushRound {
  /** The round makes everything below this offset durable. */
  targetOffset: number;
  /** Runs the syncs; rejects if any fails. */
  run(): Promise<void>;
}

/** Called once per settled round: requests it answered, seconds its syncs took. */
export type FlushRoundObserver = (requests: number, seconds: number) => void;

interface RunningRound {
  targetOffset: number;
  requests: number;
  done: Promise<void>;
  settled: Promise<void>;
}

const ignore = (): void => {};

export class GroupCommit {
  private running: RunningRound | null = null;
  private queued: Promise<void> | null = null;
  /** Requests waiting for the queued round. */
  private queuedRequests = 0;

  /** `beginRound` captures, synchronously, what the round must sync. */
  constructor(private readonly beginRound: () => FlushRound, private readonly onRound: FlushRoundObserver = ignore) {}

  get busy(): boolean {
    return this.running !== null;
  }

  /**
   * No round runs and none waits. Stronger than !busy: between a round settling and the queued
   * one starting, `running` is null while `queued` is not.
   */
  get idle(): boolean {
    return this.running === null && this.queued === null;
  }

  /** Resolves once everything below `targetOffset` is covered by a successful round. */
  request(targetOffset: number): Promise<void> {
    const running = this.running;
    if (running === null) return this.startRound(1);
    if (targetOffset <= running.targetOffset) {
      running.requests++;
      return running.done;
    }
    this.queuedRequests++;
    if (this.queued === null) {
      this.queued = running.settled.then(() => {
        this.queued = null;
        const requests = this.queuedRequests;
        this.queuedRequests = 0;
        return this.startRound(requests);
      });
    }
    return this.queued;
  }

  /** Resolves when no round is running (used to defer closing file descriptors). */
  whenIdle(): Promise<void> {
    const pending = this.queued ?? this.running?.settled;
    if (pending === undefined) return Promise.resolve();
    return pending.then(ignore, ignore).then(() => this.whenIdle());
  }

  private startRound(requests: number): Promise<void> {
    const startedMs = performance.now();
    const round = this.beginRound();
    const done = round.run();
    const running: RunningRound = { targetOffset: round.targetOffset, requests, done, settled: done.then(ignore, ignore) };
    this.running = running;
    // Registered before any queued round's continuation, so `running` is cleared first.
    void running.settled.then(() => {
      if (this.running === running) this.running = null;
      this.onRound(running.requests, (performance.now() - startedMs) / 1000);
    });
    return done;
  }
}
