/** replaceFile and readFileBounded (src/storage/durable-file.ts) under every disk fault. */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectorySyncError, FileTooLargeError, readFileBounded, replaceFile } from '../../src/storage/durable-file.js';
import { FaultInjectingFileOps, type FaultOp } from '../../src/storage/fault-file-ops.js';
import { removeTempDirs, tempDir } from './helpers.js';

afterEach(removeTempDirs);

function fileWith(content: string): string {
  const dir = tempDir('rill-durable-file');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'state.json');
  fs.writeFileSync(file, content);
  return file;
}

describe('replaceFile', () => {
  it('replaces the file whole, durably: fdatasync of the new file, then fsync of its directory', () => {
    const file = fileWith('old');
    const fileOps = new FaultInjectingFileOps();
    replaceFile(fileOps, file, Buffer.from('new content'), { durable: true });
    expect(fs.readFileSync(file, 'utf8')).toBe('new content');
    expect(fileOps.calls.fdatasync).toBe(1);
    expect(fileOps.calls.fsyncDir).toBe(1);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['state.json']);
    replaceFile(fileOps, file, Buffer.from('cheap'), { durable: false });
    expect(fs.readFileSync(file, 'utf8')).toBe('cheap');
    expect(fileOps.calls.fdatasync + fileOps.calls.fsyncDir).toBe(2);
  });

  const beforeRename: { op: FaultOp; errno: string; durable: boolean }[] = [
    { op: 'writev', errno: 'ENOSPC', durable: true },
    { op: 'writev', errno: 'EIO', durable: true },
    { op: 'open', errno: 'EMFILE', durable: true },
    { op: 'fdatasync', errno: 'EIO', durable: true },
    { op: 'rename', errno: 'EIO', durable: true },
    { op: 'writeFile', errno: 'ENOSPC', durable: false },
    { op: 'rename', errno: 'EIO', durable: false },
  ];
  for (const { op, errno, durable } of beforeRename) {
    it(`a failure of ${op} (${errno}, durable ${durable}) throws it and leaves the old file, and no temporary file`, () => {
      const file = fileWith('old');
      const fileOps = new FaultInjectingFileOps();
      fileOps.inject(op, errno, { partialBytes: 2 });
      expect(() => replaceFile(fileOps, file, Buffer.from('new content'), { durable })).toThrow(expect.objectContaining({ code: errno }));
      expect(fs.readFileSync(file, 'utf8')).toBe('old');
      expect(fs.readdirSync(path.dirname(file))).toEqual(['state.json']);
      // The next replace works.
      replaceFile(fileOps, file, Buffer.from('newer'), { durable });
      expect(fs.readFileSync(file, 'utf8')).toBe('newer');
    });
  }

  it('a failed directory fsync is reported as DirectorySyncError, with the new content in place', () => {
    const file = fileWith('old');
    const fileOps = new FaultInjectingFileOps();
    fileOps.inject('fsyncDir', 'EIO');
    let error: unknown;
    try {
      replaceFile(fileOps, file, Buffer.from('new'), { durable: true });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(DirectorySyncError);
    expect(error).toMatchObject({ code: 'EIO', filePath: file });
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
  });

  it('removes a temporary file left by a crash before writing its own', () => {
    const file = fileWith('old');
    fs.writeFileSync(`${file}.tmp`, 'half of something');
    replaceFile(new FaultInjectingFileOps(), file, Buffer.from('new'), { durable: true });
    expect(fs.readdirSync(path.dirname(file))).toEqual(['state.json']);
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
  });
});

describe('readFileBounded', () => {
  it('reads a file, gives null for a missing one, and refuses one over its bound before reading it', () => {
    const file = fileWith('0123456789');
    const fileOps = new FaultInjectingFileOps();
    expect(readFileBounded(fileOps, file, 10)?.toString()).toBe('0123456789');
    expect(readFileBounded(fileOps, `${file}.missing`, 10)).toBeNull();
    const readsBefore = fileOps.calls.read;
    expect(() => readFileBounded(fileOps, file, 9)).toThrow(FileTooLargeError);
    expect(fileOps.calls.read).toBe(readsBefore);
  });

  it('throws the file layer error of a failed read', () => {
    const file = fileWith('content');
    const fileOps = new FaultInjectingFileOps();
    fileOps.inject('read', 'EIO');
    expect(() => readFileBounded(fileOps, file, 100)).toThrow(expect.objectContaining({ code: 'EIO' }));
  });
});
