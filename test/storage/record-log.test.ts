/**
 * The CRC-framed record log (src/storage/record-log.ts): what it reads back after a crash or
 * damage (exactly the intact prefix of frames), group commit, and every disk fault.
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { DecodeError, RillError } from '../../src/lib/errors.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { RecordLog, encodeRecordFrame, recordFrameHeaderBytes } from '../../src/storage/record-log.js';
import { removeTempDirs, tempDir } from './helpers.js';

afterEach(removeTempDirs);

const payloadBytesMax = 4096;
/** The payloads as they were appended; parse copies (the payload view is only valid during the call). */
const copy = (payload: Buffer): Buffer => Buffer.from(payload);

function logPath(): string {
  return path.join(tempDir('rill-record-log'), 'state', 'records.log');
}

function open(file: string, fileOps = new FaultInjectingFileOps()) {
  return RecordLog.open(file, { fileOps, payloadBytesMax, parse: copy });
}

/** Writes `payloads` as frames straight to `file` (no RecordLog) and returns each frame's end position. */
function writeFrames(file: string, payloads: readonly Uint8Array[]): number[] {
  const frames = payloads.map((payload) => encodeRecordFrame(payload, payloadBytesMax));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.concat(frames));
  const ends: number[] = [];
  let end = 0;
  for (const frame of frames) ends.push((end += frame.length));
  return ends;
}

const payloadArb = fc.uint8Array({ minLength: 1, maxLength: 300 });
const payloadsArb = fc.array(payloadArb, { minLength: 1, maxLength: 20 });

function asBuffers(payloads: readonly Uint8Array[]): Buffer[] {
  return payloads.map((payload) => Buffer.from(payload));
}

describe('RecordLog: reading back', () => {
  it('returns what was appended, in order, after a reopen; creates its directory', async () => {
    const file = logPath();
    const first = open(file);
    expect(first.records).toEqual([]);
    expect(first.dropped).toBeNull();
    await first.log.append([Buffer.from('a'), Buffer.from('bb')]);
    await first.log.append([Buffer.from('ccc')]);
    expect(first.log.sizeBytes).toBe(3 * recordFrameHeaderBytes + 6);
    await first.log.close();
    const second = open(file);
    expect(second.records.map(String)).toEqual(['a', 'bb', 'ccc']);
    expect(second.dropped).toBeNull();
    await second.log.close();
  });

  it('property: a file cut at any length reads back exactly the frames wholly before the cut, and is cut there', async () => {
    await fc.assert(
      fc.asyncProperty(payloadsArb, fc.double({ min: 0, max: 1, noNaN: true }), async (payloads, where) => {
        const file = logPath();
        const ends = writeFrames(file, payloads);
        const total = ends[ends.length - 1]!;
        const cutBytes = Math.floor(where * total);
        fs.truncateSync(file, cutBytes);
        const whole = ends.filter((end) => end <= cutBytes).length;
        const { log, records, dropped } = open(file);
        expect(records).toEqual(asBuffers(payloads.slice(0, whole)));
        const validBytes = whole === 0 ? 0 : ends[whole - 1]!;
        expect(dropped === null ? 0 : dropped.bytes).toBe(cutBytes - validBytes);
        expect(fs.statSync(file).size).toBe(validBytes);
        // Appending continues right after the intact prefix.
        await log.append([Buffer.from('after')]);
        await log.close();
        const again = open(file);
        expect(again.records).toEqual([...asBuffers(payloads.slice(0, whole)), Buffer.from('after')]);
        expect(again.dropped).toBeNull();
        await again.log.close();
      }),
      { numRuns: 150 },
    );
  });

  it('property: a damaged byte anywhere reads back exactly the frames before the damaged one', async () => {
    await fc.assert(
      fc.asyncProperty(payloadsArb, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.integer({ min: 1, max: 255 }), async (payloads, where, xor) => {
        const file = logPath();
        const ends = writeFrames(file, payloads);
        const bytes = fs.readFileSync(file);
        const position = Math.floor(where * bytes.length);
        bytes[position]! ^= xor;
        fs.writeFileSync(file, bytes);
        const damagedFrame = ends.findIndex((end) => position < end);
        const { log, records, dropped } = open(file);
        expect(records).toEqual(asBuffers(payloads.slice(0, damagedFrame)));
        expect(dropped?.bytes).toBe(bytes.length - (damagedFrame === 0 ? 0 : ends[damagedFrame - 1]!));
        await log.close();
      }),
      { numRuns: 200 },
    );
  });

  it('never throws on garbage after valid frames, and drops at most the garbage', async () => {
    await fc.assert(
      fc.asyncProperty(payloadsArb, fc.uint8Array({ maxLength: 400 }), async (payloads, garbage) => {
        const file = logPath();
        writeFrames(file, payloads);
        fs.appendFileSync(file, garbage);
        const { log, records, dropped } = open(file);
        expect(records.slice(0, payloads.length)).toEqual(asBuffers(payloads));
        if (dropped !== null) expect(dropped.bytes).toBeLessThanOrEqual(garbage.length);
        await log.close();
      }),
      { numRuns: 100 },
    );
  });

  it('treats a zero-filled tail (what a crash can leave) and an over-long length as the end', async () => {
    const file = logPath();
    writeFrames(file, [Buffer.from('kept')]);
    fs.appendFileSync(file, Buffer.alloc(4096));
    const zeros = open(file);
    expect(zeros.records.map(String)).toEqual(['kept']);
    expect(zeros.dropped).toEqual({ bytes: 4096, reason: expect.stringContaining('outside 1..4096') });
    await zeros.log.close();
    const huge = Buffer.alloc(recordFrameHeaderBytes);
    huge.writeUInt32BE(0xffff_fff0, 0);
    fs.appendFileSync(file, huge);
    const claimed = open(file);
    expect(claimed.records.map(String)).toEqual(['kept']);
    expect(claimed.dropped?.reason).toMatch(/frame length 4294967280 .* is outside 1\.\.4096/);
    await claimed.log.close();
  });

  it('ends the log at a frame whose payload parse() rejects with a DecodeError', async () => {
    const file = logPath();
    writeFrames(file, [Buffer.from('good'), Buffer.from('bad'), Buffer.from('good again')]);
    const parse = (payload: Buffer): string => {
      if (payload.toString() === 'bad') throw new DecodeError('CORRUPT_LOG', 'not a record');
      return payload.toString();
    };
    const { log, records, dropped } = RecordLog.open(file, { payloadBytesMax, parse });
    expect(records).toEqual(['good']);
    expect(dropped?.reason).toContain('not a record');
    await log.close();
  });

  it('deletes a temporary file left by a compaction that crashed', async () => {
    const file = logPath();
    writeFrames(file, [Buffer.from('x')]);
    fs.writeFileSync(`${file}.tmp`, 'half a snapshot');
    const { log, records } = open(file);
    expect(records.map(String)).toEqual(['x']);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['records.log']);
    await log.close();
  });
});

describe('RecordLog: group commit', () => {
  it('appends of one tick share one fdatasync; those made while it runs share the next', async () => {
    const fileOps = new FaultInjectingFileOps();
    const { log } = open(logPath(), fileOps);
    const before = fileOps.calls.fdatasync;
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.append([Buffer.from(`r${i}`)])));
    expect(fileOps.calls.fdatasync - before).toBe(1);
    expect(log.syncCount).toBe(1);

    const release = fileOps.holdFsyncs();
    const inFlight = log.append([Buffer.from('first')]);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const followers = Array.from({ length: 20 }, (_, i) => log.append([Buffer.from(`f${i}`)]));
    release();
    await Promise.all([inFlight, ...followers]);
    expect(log.syncCount).toBe(3);
    await log.close();
  });

  it('resolves an append only after its fdatasync', async () => {
    const fileOps = new FaultInjectingFileOps();
    const { log } = open(logPath(), fileOps);
    const release = fileOps.holdFsyncs();
    let settled = false;
    const pending = log.append([Buffer.from('x')]).finally(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(settled).toBe(false);
    release();
    await pending;
    await log.close();
  });
});

describe('RecordLog: disk faults', () => {
  it('a full disk fails the append with DISK_FULL, cuts the partial frame back, and the log goes on', async () => {
    const file = logPath();
    const fileOps = new FaultInjectingFileOps();
    const { log } = open(file, fileOps);
    await log.append([Buffer.from('one')]);
    const sizeBefore = log.sizeBytes;
    fileOps.fillDisk(5); // 5 bytes of the frame reach the file, then ENOSPC
    const failed = log.append([Buffer.from('two')]);
    await expect(failed).rejects.toMatchObject({ code: 'DISK_FULL', retriable: true });
    expect(fs.statSync(file).size).toBe(sizeBefore);
    expect(log.sizeBytes).toBe(sizeBefore);
    fileOps.clearFaults();
    await log.append([Buffer.from('three')]);
    await log.close();
    const reopened = open(file);
    expect(reopened.records.map(String)).toEqual(['one', 'three']);
    expect(reopened.dropped).toBeNull();
    await reopened.log.close();
  });

  it('if the partial frame cannot be cut back, refuses appends until reopened, which drops it', async () => {
    const file = logPath();
    const fileOps = new FaultInjectingFileOps();
    const { log } = open(file, fileOps);
    await log.append([Buffer.from('one')]);
    fileOps.inject('writev', 'EIO', { partialBytes: 6 });
    fileOps.inject('ftruncate', 'EIO');
    await expect(log.append([Buffer.from('two')])).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    await expect(log.append([Buffer.from('three')])).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    await log.close();
    const reopened = open(file);
    expect(reopened.records.map(String)).toEqual(['one']);
    expect(reopened.dropped?.reason).toContain('torn frame');
    await reopened.log.close();
  });

  it('a failed fdatasync rejects its appends and those queued behind it, then every later one', async () => {
    const file = logPath();
    const fileOps = new FaultInjectingFileOps();
    const { log } = open(file, fileOps);
    await log.append([Buffer.from('durable')]);
    const release = fileOps.holdFsyncs();
    const first = log.append([Buffer.from('a')]);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const queued = log.append([Buffer.from('b')]);
    fileOps.inject('fdatasync', 'EIO');
    release();
    await expect(first).rejects.toMatchObject({ code: 'STORAGE_ERROR', message: expect.stringContaining('EIO') });
    await expect(queued).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    await expect(log.append([Buffer.from('c')])).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    expect(() => log.compact([Buffer.from('snapshot')])).toThrow(RillError);
    await log.close();
    // The bytes reached the OS whole: a reopen (which the owner does) keeps them.
    const reopened = open(file);
    expect(reopened.records.map(String)).toEqual(['durable', 'a', 'b']);
    await reopened.log.close();
  });

  it('a failed open reports STORAGE_ERROR', () => {
    const fileOps = new FaultInjectingFileOps();
    fileOps.inject('open', 'EACCES', { times: 2 });
    expect(() => open(logPath(), fileOps)).toThrow(/STORAGE_ERROR: cannot open .*EACCES/);
  });
});

describe('RecordLog: compaction', () => {
  it('replaces the log with the snapshot; appends before it stay covered, later ones follow it', async () => {
    const file = logPath();
    const fileOps = new FaultInjectingFileOps();
    const { log } = open(file, fileOps);
    for (let i = 0; i < 100; i++) await log.append([Buffer.from(`change-${i}`)]);
    const pending = log.append([Buffer.from('change-100')]);
    log.compact([Buffer.from('snapshot-through-100')]);
    await pending;
    await log.append([Buffer.from('change-101')]);
    expect(log.sizeBytes).toBe(2 * recordFrameHeaderBytes + 'snapshot-through-100'.length + 'change-101'.length);
    await log.close();
    const reopened = open(file);
    expect(reopened.records.map(String)).toEqual(['snapshot-through-100', 'change-101']);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['records.log']);
    await reopened.log.close();
  });

  it('a compaction that fails before its rename leaves the old log whole and in use', async () => {
    for (const fault of [{ op: 'writev', errno: 'ENOSPC', code: 'DISK_FULL' }, { op: 'fdatasync', errno: 'EIO', code: 'STORAGE_ERROR' }, { op: 'rename', errno: 'EIO', code: 'STORAGE_ERROR' }] as const) {
      const file = logPath();
      const fileOps = new FaultInjectingFileOps();
      const { log } = open(file, fileOps);
      await log.append([Buffer.from('a'), Buffer.from('b')]);
      fileOps.inject(fault.op, fault.errno, { partialBytes: 3 });
      expect(() => log.compact([Buffer.from('snapshot')])).toThrow(expect.objectContaining({ code: fault.code }));
      await log.append([Buffer.from('c')]);
      await log.close();
      const reopened = open(file);
      expect(reopened.records.map(String), fault.op).toEqual(['a', 'b', 'c']);
      expect(fs.readdirSync(path.dirname(file)), fault.op).toEqual(['records.log']);
      await reopened.log.close();
    }
  });

  it('a failed directory fsync after the rename fails the log; a reopen reads the snapshot', async () => {
    const file = logPath();
    const fileOps = new FaultInjectingFileOps();
    const { log } = open(file, fileOps);
    await log.append([Buffer.from('a')]);
    fileOps.inject('fsyncDir', 'EIO');
    expect(() => log.compact([Buffer.from('snapshot')])).toThrow(/STORAGE_ERROR: .*fsync of its directory failed.*EIO/);
    await expect(log.append([Buffer.from('lost?')])).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
    await log.close();
    const reopened = open(file);
    expect(reopened.records.map(String)).toEqual(['snapshot']);
    await reopened.log.close();
  });
});
