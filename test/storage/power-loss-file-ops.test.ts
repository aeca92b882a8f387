/**
 * The power-loss simulator the truncation tests rely on: after powerLoss() the directory holds
 * what was fsynced and nothing else (see power-loss-file-ops.ts). If it kept too much, the
 * durability tests that use it would pass without the fsyncs they check for.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { replaceFile } from '../../src/storage/durable-file.js';
import { writeAllSync } from '../../src/storage/file-ops.js';
import { removeTempDirs, tempDir } from './helpers.js';
import { PowerLossFileOps } from './power-loss-file-ops.js';

afterEach(removeTempDirs);

function setUp(): { dir: string; fileOps: PowerLossFileOps } {
  const dir = tempDir('rill-power-loss');
  fs.mkdirSync(dir, { recursive: true });
  return { dir, fileOps: new PowerLossFileOps(dir) };
}

const bytes = (text: string): Buffer => Buffer.from(text);

describe('PowerLossFileOps', () => {
  it('keeps a file\'s bytes as of its last fdatasync: later writes and ftruncates are lost', () => {
    const { dir, fileOps } = setUp();
    const fd = fileOps.open(path.join(dir, 'a'), 'wx+');
    writeAllSync(fileOps, fd, [bytes('hello')], 0, 5);
    fileOps.fdatasyncSync(fd);
    fileOps.fsyncDirSync(dir);
    writeAllSync(fileOps, fd, [bytes(' world')], 5, 6);
    fileOps.powerLoss();
    expect(fs.readFileSync(path.join(dir, 'a'), 'utf8')).toBe('hello');

    const again = fileOps.open(path.join(dir, 'a'), 'r+');
    fileOps.ftruncate(again, 2);
    fileOps.powerLoss();
    expect(fs.readFileSync(path.join(dir, 'a'), 'utf8')).toBe('hello');

    const third = fileOps.open(path.join(dir, 'a'), 'r+');
    fileOps.ftruncate(third, 2);
    fileOps.fdatasyncSync(third);
    fileOps.powerLoss();
    expect(fs.readFileSync(path.join(dir, 'a'), 'utf8')).toBe('he');
  });

  it('keeps the names as of the directory\'s last fsync: new files go, unlinked ones come back', () => {
    const { dir, fileOps } = setUp();
    const fd = fileOps.open(path.join(dir, 'kept'), 'wx+');
    writeAllSync(fileOps, fd, [bytes('k')], 0, 1);
    fileOps.fdatasyncSync(fd);
    fileOps.close(fd);
    fileOps.fsyncDirSync(dir);
    fileOps.unlink(path.join(dir, 'kept'));
    const created = fileOps.open(path.join(dir, 'new'), 'wx+');
    fileOps.fdatasyncSync(created);
    fileOps.powerLoss();
    expect(fs.readdirSync(dir)).toEqual(['kept']);
    expect(fs.readFileSync(path.join(dir, 'kept'), 'utf8')).toBe('k');
  });

  it('a file whose name is durable but whose bytes never were comes back empty; renames follow the file', () => {
    const { dir, fileOps } = setUp();
    fileOps.writeFile(path.join(dir, 'x.tmp'), bytes('unsynced'));
    fileOps.rename(path.join(dir, 'x.tmp'), path.join(dir, 'x'));
    fileOps.fsyncDirSync(dir);
    replaceFile(fileOps, path.join(dir, 'y'), bytes('durable'), { durable: true });
    replaceFile(fileOps, path.join(dir, 'y'), bytes('not yet'), { durable: false });
    fileOps.powerLoss();
    expect(fs.readdirSync(dir).sort()).toEqual(['x', 'y']);
    expect(fs.readFileSync(path.join(dir, 'x'), 'utf8')).toBe('');
    expect(fs.readFileSync(path.join(dir, 'y'), 'utf8')).toBe('durable');
  });
});
