import { RillError } from '../lib/errors.js';

/** Buffered stdout that respects backpressure: thousands of lines per write, not one each. */
export class LineWriter {
  private buffer: string[] = [];
  private bufferedChars = 0;

  constructor(private readonly stream: NodeJS.WritableStream = process.stdout, private readonly flushChars = 64 * 1024) {}

  /** Adds a line; resolves at once unless the stream is full, then after it drains. */
  write(line: string): Promise<void> | undefined {
    this.buffer.push(line);
    this.bufferedChars += line.length + 1;
    if (this.bufferedChars < this.flushChars) return undefined;
    return this.flush();
  }

  flush(): Promise<void> | undefined {
    if (this.buffer.length === 0) return undefined;
    const text = this.buffer.join('\n') + '\n';
    this.buffer = [];
    this.bufferedChars = 0;
    if (this.stream.write(text)) return undefined;
    return new Promise((resolve) => this.stream.once('drain', () => resolve()));
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))}\n`);
}

/** An error as the one line the CLI prints after `rill: `. */
export function describeError(error: unknown): string {
  if (error instanceof RillError) return `${error.message}${error.retriable ? ' (retriable)' : ''}`;
  return (error as Error)?.message ?? String(error);
}
