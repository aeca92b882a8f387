/** The produce progress line: what it says, and that a pipe or file gets none of it. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatBytes, formatProgress, Progress } from '../../src/cli/progress.js';

describe('progress line', () => {
  it('says records, rate and bytes', () => {
    expect(formatProgress({ sent: 3000, acknowledged: 2000, bytes: 3 * 1024 * 1024 }, 2000)).toBe('2000 of 3000 records acknowledged, 1000 records/s, 3.0 MiB read (1.5 MiB/s)');
    expect(formatBytes(512.4)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
  });

  it('writes nothing when the stream is not a terminal', () => {
    const stream = new PassThrough() as unknown as NodeJS.WriteStream;
    const written: string[] = [];
    (stream as unknown as PassThrough).on('data', (chunk: Buffer) => written.push(chunk.toString()));
    const progress = new Progress(() => ({ sent: 1, acknowledged: 1, bytes: 1 }), stream, 1).start();
    progress.stop();
    expect(written).toEqual([]);
  });
});
