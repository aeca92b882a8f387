/**
 * The group-commit observer (PartitionLogOptions.observeFlushRound): one report per fsync round,
 * with the number of flush requests it answered, on a real log in a real directory.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { appendBatch, makeBatch, openLog, removeTempDirs, tempDir, testConfig } from './helpers.js';

afterAll(() => removeTempDirs());

describe('flush round observer', () => {
  it('reports each round with the requests it answered and a duration', async () => {
    const rounds: { requests: number; seconds: number }[] = [];
    const log = openLog(tempDir(), testConfig(), { recover: false, observeFlushRound: (requests, seconds) => rounds.push({ requests, seconds }) });
    try {
      appendBatch(log, makeBatch(3, 10));
      await log.flush();
      expect(rounds).toHaveLength(1);
      expect(rounds[0]!.requests).toBe(1);
      expect(rounds[0]!.seconds).toBeGreaterThanOrEqual(0);

      // Three flushes while one round runs: the first starts a round, the two later ones (which
      // need the later appends) share the one queued round.
      appendBatch(log, makeBatch(1, 10));
      const first = log.flush();
      appendBatch(log, makeBatch(1, 10));
      const second = log.flush();
      const third = log.flush();
      await Promise.all([first, second, third]);
      expect(rounds.slice(1).map((r) => r.requests)).toEqual([1, 2]);

      // Nothing to flush: no round.
      await log.flush();
      expect(rounds).toHaveLength(3);
    } finally {
      log.close();
    }
  });
});
