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
 * `keepGoing()` holds, respecting the window; then waits for every outstanding send, unless
 * `abandonAtEnd` (the caller stops measuring when sending stops).
 */
export async function pump(window: SendWindow, send: () => void, keepGoing: () => boolean, abandonAtEnd = false): Promise<void> {
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
  if (!abandonAtEnd) await window.drain();
}

export interface TimedProduceFigures {
  records: number;
  seconds: number;
  recordsPerSecond: number;
}

/**
 * The peers' produce loop: each window pumps `send(i, window)` (client i) for `durationMs`, with
 * progress every second; throws the first send error.
 */
export async function timedProduce(
  windows: readonly SendWindow[],
  durationMs: number,
  onProgress: (acked: number) => void,
  send: (client: number, window: SendWindow) => void,
): Promise<TimedProduceFigures> {
  const acked = (): number => windows.reduce((sum, w) => sum + w.acked, 0);
  const progress = setInterval(() => onProgress(acked()), 1000);
  const startMs = performance.now();
  const endMs = startMs + durationMs;
  let sent = 0;
  try {
    await Promise.all(windows.map((window, i) => pump(window, () => {
      sent++;
      send(i, window);
    }, () => (sent & 255) !== 0 || performance.now() < endMs)));
  } finally {
    clearInterval(progress);
  }
  const seconds = (performance.now() - startMs) / 1000;
  const failed = windows.find((w) => w.firstError !== null);
  if (failed !== undefined) throw failed.firstError!;
  return { records: acked(), seconds, recordsPerSecond: acked() / seconds };
}
