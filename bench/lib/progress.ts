/** Progress lines while a workload runs: one line per interval, on stderr so stdout stays the report. */
export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return String(perSecond);
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)}M`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)}k`;
  return perSecond.toFixed(0);
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** Prints "label: N records (rate/s)" every intervalMs from a counter until stopped. */
export class RateTicker {
  private readonly timer: NodeJS.Timeout;
  private lastCount = 0;
  private lastMs = performance.now();

  constructor(label: string, count: () => number, bytesPerRecord: number, intervalMs = 1000) {
    this.timer = setInterval(() => {
      const now = performance.now();
      const current = count();
      const rate = ((current - this.lastCount) * 1000) / (now - this.lastMs);
      log(`  ${label}: ${current.toLocaleString('en-US')} records, ${formatRate(rate)} records/s, ${((rate * bytesPerRecord) / 1e6).toFixed(1)} MB/s`);
      this.lastCount = current;
      this.lastMs = now;
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
