/**
 * Bounds the sends a load generator has outstanding. The generator issues sends until `limit`
 * are unacknowledged, then waits until half of them came back: the broker is what is measured,
 * not the garbage collector chewing through millions of pending promises.
 */
export class SendWindow {
  outstanding = 0;
  acked = 0;
  failed = 0;
  firstError: Error | null = null;
  private roomWaiter: (() => void) | null = null;
  private drainWaiter: (() => void) | null = null;

  constructor(readonly limit: number) {}

  get full(): boolean {
    return this.outstanding >= this.limit;
  }

  issued(count = 1): void {
    this.outstanding += count;
  }

  done(count = 1): void {
    this.outstanding -= count;
    this.acked += count;
    this.wake();
  }

  fail(error: unknown, count = 1): void {
    this.outstanding -= count;
    this.failed += count;
    this.firstError ??= error instanceof Error ? error : new Error(String(error));
    this.wake();
  }

  /** Resolves once at most half the window is outstanding (at once if not full). */
  waitForRoom(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve) => (this.roomWaiter = resolve));
  }

  /** Resolves when nothing is outstanding. */
  drain(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => (this.drainWaiter = resolve));
  }

  private wake(): void {
    if (this.roomWaiter !== null && this.outstanding <= this.limit / 2) {
      const resolve = this.roomWaiter;
      this.roomWaiter = null;
      resolve();
    }
    if (this.drainWaiter !== null && this.outstanding === 0) {
      const resolve = this.drainWaiter;
      this.drainWaiter = null;
      resolve();
    }
  }
}

/**
 * Runs one generator: calls `send` (which must call window.done or window.fail later) while
 * `keepGoing()` holds, respecting the window; then waits for every outstanding send.
 */
export async function pump(window: SendWindow, send: () => void, keepGoing: () => boolean): Promise<void> {
  while (keepGoing()) {
    if (window.full) {
      await window.waitForRoom();
      continue;
    }
    window.issued();
    send();
    // Yield now and then even with room left, so acks and timers run.
    if ((window.outstanding & 1023) === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await window.drain();
}
