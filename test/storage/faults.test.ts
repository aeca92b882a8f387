/** Fault injection: full disks, failing writes and fsyncs, and group commit, through the injectable file layer. */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { type Appended, appendBatch, makeBatch, openLog, readAll, removeTempDirs, segmentFiles, tempDir, testConfig, caughtRillError } from './helpers.js';

afterEach(removeTempDirs);

function totalLogBytes(dir: string): number {
  return segmentFiles(dir, '.log').reduce((sum, name) => sum + fs.statSync(path.join(dir, name)).size, 0);
}

describe('a full disk', () => {
  it('fails the append with DISK_FULL, leaves no partial batch, and appends again once space returns', () => {
    const dir = tempDir();
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(dir, testConfig({ segmentBytes: 4096 }), { recover: true, fileOps });
    const appended: Appended[] = [];
    for (let i = 0; i < 10; i++) appended.push(appendBatch(log, makeBatch(3, 200, 1000, i)));
    const bytesBefore = totalLogBytes(dir);
    const nextBefore = log.nextOffset;

    fileOps.fillDisk(100); // each write gets 100 bytes onto the disk, then ENOSPC
    for (let attempt = 0; attempt < 5; attempt++) {
      const error = caughtRillError(() => log.append(makeBatch(3, 200, 1000, 99), 3, 1002));
      expect(error.code).toBe('DISK_FULL');
      expect(error.retriable).toBe(true);
    }
    expect(log.nextOffset).toBe(nextBefore);
    expect(totalLogBytes(dir)).toBe(bytesBefore);
    expect(Buffer.concat(readAll(log)).equals(Buffer.concat(appended.map((entry) => entry.bytes)))).toBe(true);

    fileOps.clearFaults();
    for (let i = 0; i < 10; i++) appended.push(appendBatch(log, makeBatch(3, 200, 1000, 100 + i)));
    expect(appended[10]!.baseOffset).toBe(nextBefore);
    log.close();
    const reopened = openLog(dir, testConfig({ segmentBytes: 4096 }), { recover: true });
    expect(reopened.recovery.truncatedBytes).toBe(0);
    expect(Buffer.concat(readAll(reopened)).equals(Buffer.concat(appended.map((entry) => entry.bytes)))).toBe(true);
    reopened.close();
  });

  it('survives ENOSPC right after a roll (the new segment stays empty and is reused)', () => {
    const dir = tempDir();
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(dir, testConfig({ segmentBytes: 1024 }), { recover: true, fileOps });
    appendBatch(log, makeBatch(3, 250));
    appendBatch(log, makeBatch(3, 250));
    fileOps.inject('writev', 'ENOSPC', { partialBytes: 30 });
    expect(caughtRillError(() => log.append(makeBatch(3, 250), 3, 1002)).code).toBe('DISK_FULL');
    const after = appendBatch(log, makeBatch(3, 250));
    expect(after.baseOffset).toBe(6);
    log.close();
    const reopened = openLog(dir, testConfig({ segmentBytes: 1024 }), { recover: true });
    expect(reopened.nextOffset).toBe(9);
    expect(readAll(reopened).length).toBe(3);
    reopened.close();
  });

  it('reports other write errors as STORAGE_ERROR, and appendMany is all or nothing', () => {
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(tempDir(), testConfig(), { recover: true, fileOps });
    appendBatch(log, makeBatch(1, 10));
    fileOps.inject('writev', 'EIO', { partialBytes: 70 });
    const batches = [makeBatch(2, 50), makeBatch(2, 50)].map((batch) => ({ batch, recordsCount: 2, maxTimestampMs: 1001 }));
    expect(caughtRillError(() => log.appendMany(batches)).code).toBe('STORAGE_ERROR');
    expect(log.nextOffset).toBe(1);
    expect(log.appendMany(batches)).toBe(1);
    expect(readAll(log).length).toBe(3);
    log.close();
  });
});

describe('fsync failures', () => {
  it('reject flush with STORAGE_ERROR, never report the data as flushed, and fail the log until it is reopened', async () => {
    const dir = tempDir();
    const fileOps = new FaultInjectingFileOps();
    const logged: string[] = [];
    const log = openLog(dir, testConfig(), { recover: true, fileOps, log: (message) => logged.push(message) });
    appendBatch(log, makeBatch(2, 10));
    await log.flush();
    const flushedBefore = log.flushedOffset;
    appendBatch(log, makeBatch(2, 10));
    fileOps.inject('fdatasync', 'EIO');
    await expect(log.flush()).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    expect(log.flushedOffset).toBe(flushedBefore);
    await expect(log.flush()).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    expect(caughtRillError(() => log.append(makeBatch(1, 10), 1, 1000)).code).toBe('STORAGE_ERROR');
    expect(log.read(0, 1000).batches.length).toBe(2);
    expect(logged.some((message) => message.includes('refuses appends'))).toBe(true);
    expect(caughtRillError(() => log.close()).code).toBe('STORAGE_ERROR');

    const reopened = openLog(dir, testConfig(), { recover: true });
    expect(reopened.nextOffset).toBe(4);
    appendBatch(reopened, makeBatch(1, 10));
    expect(await reopened.flush()).toBe(5);
    reopened.close();
  });

  it('a failing directory fsync also fails the flush', async () => {
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(tempDir(), testConfig({ segmentBytes: 1024 }), { recover: true, fileOps });
    appendBatch(log, makeBatch(3, 300));
    appendBatch(log, makeBatch(3, 300)); // rolls: the directory must be synced
    fileOps.inject('fsyncDir', 'EIO');
    await expect(log.flush()).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    expect(log.flushedOffset).toBe(0);
  });
});

describe('group commit', () => {
  it('N concurrent flushes share far fewer than N fsyncs, and none resolves before its data is synced', async () => {
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(tempDir(), testConfig(), { recover: true, fileOps });
    await (appendBatch(log, makeBatch(1, 10)), log.flush());
    const syncsBefore = fileOps.calls.fdatasync + fileOps.calls.fsyncDir;
    const release = fileOps.holdFsyncs();
    const settled: number[] = [];
    const waiters: Array<Promise<number>> = [];
    const targets: number[] = [];
    for (let i = 0; i < 100; i++) {
      appendBatch(log, makeBatch(2, 50, 1000, i));
      targets.push(log.nextOffset);
      waiters.push(log.flush().then((flushed) => (settled.push(i), flushed)));
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(settled).toEqual([]);
    expect(log.flushedOffset).toBe(1);
    release();
    const results = await Promise.all(waiters);
    results.forEach((flushed, i) => expect(flushed).toBeGreaterThanOrEqual(targets[i]!));
    expect(log.flushedOffset).toBe(log.nextOffset);
    const syncs = fileOps.calls.fdatasync + fileOps.calls.fsyncDir - syncsBefore;
    expect(syncs).toBeLessThanOrEqual(2);
    log.close();
  });

  it('a caller arriving during a round waits for the next round, which covers its appends', async () => {
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(tempDir(), testConfig(), { recover: true, fileOps });
    appendBatch(log, makeBatch(1, 10));
    await log.flush();
    let release = fileOps.holdFsyncs();
    appendBatch(log, makeBatch(1, 10));
    const first = log.flush();
    appendBatch(log, makeBatch(1, 10));
    const second = log.flush();
    const third = log.flush();
    release();
    expect(await first).toBeGreaterThanOrEqual(2);
    expect(await second).toBe(3);
    expect(await third).toBe(3);
    // Nothing new appended: no fsync at all.
    const before = fileOps.calls.fdatasync;
    release = fileOps.holdFsyncs();
    expect(await log.flush()).toBe(3);
    release();
    expect(fileOps.calls.fdatasync).toBe(before);
    log.close();
  });

  it('syncs every segment holding unflushed bytes, not only the active one', async () => {
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(tempDir(), testConfig({ segmentBytes: 1024 }), { recover: true, fileOps });
    const before = fileOps.calls.fdatasync;
    for (let i = 0; i < 6; i++) appendBatch(log, makeBatch(3, 300, 1000, i));
    const segments = log.segmentCount;
    expect(segments).toBeGreaterThan(2);
    await log.flush();
    expect(fileOps.calls.fdatasync - before).toBe(segments);
    log.close();
  });

  it('close() while a round is running still leaves everything durable and the round resolves', async () => {
    const dir = tempDir();
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(dir, testConfig(), { recover: true, fileOps });
    appendBatch(log, makeBatch(3, 10));
    const release = fileOps.holdFsyncs();
    const pending = log.flush();
    log.close();
    release();
    expect(await pending).toBe(3);
    const reopened = openLog(dir, testConfig(), { recover: false });
    expect(reopened.nextOffset).toBe(3);
    reopened.close();
  });

  it('retention during a running round defers closing the deleted segments, and the round still succeeds', async () => {
    const fileOps = new FaultInjectingFileOps();
    const log = openLog(tempDir(), testConfig({ segmentBytes: 1024, retentionBytes: 0 }), { recover: true, fileOps });
    for (let i = 0; i < 8; i++) appendBatch(log, makeBatch(3, 300, 1000, i));
    const release = fileOps.holdFsyncs();
    const pending = log.flush();
    const result = log.applyRetention(0);
    expect(result.deletedSegments).toBeGreaterThan(0);
    release();
    expect(await pending).toBe(24);
    appendBatch(log, makeBatch(1, 10));
    expect(await log.flush()).toBe(25);
    log.close();
  });
});
