/**
 * A one-line progress display for long runs, on stderr and only when stderr is a terminal (a
 * pipe or a file gets nothing extra). Redrawn at most every refreshMs.
 */
export interface ProgressCounts {
  /** Records handed to the client. */
  sent: number;
  /** Records the broker acknowledged. */
  acknowledged: number;
  /** Input bytes read so far. */
  bytes: number;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function formatProgress(counts: ProgressCounts, elapsedMs: number): string {
  const seconds = Math.max(elapsedMs, 1) / 1000;
  return `${counts.acknowledged} of ${counts.sent} records acknowledged, ${Math.round(counts.acknowledged / seconds)} records/s, ${formatBytes(counts.bytes)} read (${formatBytes(counts.bytes / seconds)}/s)`;
}

export class Progress {
  private timer: NodeJS.Timeout | null = null;
  private readonly startedMs = performance.now();

  constructor(
    private readonly counts: () => ProgressCounts,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly refreshMs = 250,
  ) {}

  start(): this {
    if (this.stream.isTTY !== true) return this;
    this.timer = setInterval(() => this.draw(), this.refreshMs);
    this.timer.unref();
    return this;
  }

  private draw(): void {
    this.stream.write(`\r\x1b[K${formatProgress(this.counts(), performance.now() - this.startedMs)}`);
  }

  /** Clears the line, so the summary that follows starts clean. */
  stop(): void {
    if (this.timer === null) return;
    clearInterval(this.timer);
    this.timer = null;
    this.stream.write('\r\x1b[K');
  }
}
