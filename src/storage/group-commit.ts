/**
 * Group commit: many flush() callers share one fsync round.
 *
 *   no round running      -> start one now; it covers every append made so far
 *   round running, and it already covers the caller's target offset -> wait for it
 *   round running, caller needs more -> wait for the single queued round, which starts when
 *                           the running one settles and covers every append made by then
 *
 * So at most one round runs and at most one waits, however many callers there are.
 */

export interface FlushRound {
  /** The round makes everything below this offset durable. */
  targetOffset: number;
  /** Runs the syncs; rejects if any fails. */
  run(): Promise<void>;
}

interface RunningRound {
  targetOffset: number;
  done: Promise<void>;
  settled: Promise<void>;
}

const ignore = (): void => {};

export class GroupCommit {
  private running: RunningRound | null = null;
  private queued: Promise<void> | null = null;

  /** `beginRound` captures, synchronously, what the round must sync. */
  constructor(private readonly beginRound: () => FlushRound) {}

  get busy(): boolean {
    return this.running !== null;
  }

  /** Resolves once everything below `targetOffset` is covered by a successful round. */
  request(targetOffset: number): Promise<void> {
    const running = this.running;
    if (running === null) return this.startRound();
    if (targetOffset <= running.targetOffset) return running.done;
    if (this.queued === null) {
      this.queued = running.settled.then(() => {
        this.queued = null;
        return this.startRound();
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

  private startRound(): Promise<void> {
    const round = this.beginRound();
    const done = round.run();
    const running: RunningRound = { targetOffset: round.targetOffset, done, settled: done.then(ignore, ignore) };
    this.running = running;
    // Registered before any queued round's continuation, so `running` is cleared first.
    void running.settled.then(() => {
      if (this.running === running) this.running = null;
    });
    return done;
  }
}
