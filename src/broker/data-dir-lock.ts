/**
 * One broker per data directory. Two brokers on one directory would be two writers on one log
 * (and the second would run recovery on files the first is appending to), so the broker takes
 * `<dataDir>/.lock` before it reads or writes anything else there.
 *
 * The lock file names its holder: pid, host, start time, and the holder's start time in clock
 * ticks from /proc/<pid>/stat (so a pid reused by an unrelated process is not mistaken for the
 * holder). It is created with link(2), which fails atomically if the file exists. A lock whose
 * holder is gone (SIGKILL, power loss) is stale and is taken over; the takeover itself runs under
 * a short-lived `.lock.takeover` directory (mkdir is atomic) so two brokers that both find the
 * same stale lock cannot both take it.
 *
 *   no lock ---------------------------- link ---------------------------> held by us
 *   lock, holder alive (same host) ------------------------------------> refused (names holder)
 *   lock, holder on another host -------------------------------------> refused (cannot check)
 *   lock, holder dead --- mkdir .lock.takeover, re-read, rename ours over it ---> held by us
 *
 * This is the one file the broker writes without FileOps (storage/file-ops.ts): it needs
 * link(2), copy and mkdir-as-a-mutex, which FileOps does not offer, and it is taken before the
 * file layer of the data directory is in use. It holds no data: losing it to a crash is the
 * stale-lock case above.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SettingsError } from './settings.js';

export const lockFileName = '.lock';
const takeoverDirName = '.lock.takeover';
/** A takeover directory older than this was left by a broker that died mid-takeover. */
const takeoverStaleMs = 10_000;
const lockFileBytesMax = 4096;

export interface LockHolder {
  pid: number;
  host: string;
  startedAt: string;
  /** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); null off Linux. */
  processStartTicks: string | null;
}

/** Raised when the directory is locked by a live broker or cannot be locked at all. */
export class DataDirLockError extends SettingsError {
  override name = 'DataDirLockError';
}

function processStartTicks(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields after it follow the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return 'dead';
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

/** Whether the holder named in a lock file is still running. */
function holderAlive(holder: LockHolder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const ticks = processStartTicks(holder.pid);
  if (ticks === 'dead') return false;
  // A pid that now belongs to a process started at another time is not our holder.
  if (ticks !== null && holder.processStartTicks !== null && ticks !== holder.processStartTicks) return false;
  return true;
}

function readHolder(file: string): LockHolder | null {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buffer = Buffer.alloc(lockFileBytesMax);
      const bytes = fs.readSync(fd, buffer, 0, lockFileBytesMax, 0);
      const value = JSON.parse(buffer.subarray(0, bytes).toString('utf8')) as Partial<LockHolder>;
      if (typeof value.pid !== 'number' || !Number.isInteger(value.pid) || value.pid <= 0 || typeof value.host !== 'string') return null;
      return { pid: value.pid, host: value.host, startedAt: String(value.startedAt ?? '?'), processStartTicks: typeof value.processStartTicks === 'string' ? value.processStartTicks : null };
    } finally {
      fs.closeSync(fd);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw error;
    // Unreadable or half-written (a crash between create and write): nobody can be holding it
    // through this file's content, treat as stale.
    return null;
  }
}

function describeHolder(holder: LockHolder): string {
  return `pid ${holder.pid} on ${holder.host}, started ${holder.startedAt}`;
}

export class DataDirLock {
  private released = false;

  private constructor(readonly file: string, readonly holder: LockHolder, readonly tookOverFrom: LockHolder | null) {}

  /**
   * Takes the lock, creating the data directory if it does not exist yet. Throws
   * DataDirLockError if a live broker holds it or the directory cannot be written.
   */
  static acquire(dataDir: string): DataDirLock {
    try {
      fs.mkdirSync(dataDir, { recursive: true });
    } catch (error) {
      throw new DataDirLockError(`data directory ${dataDir} cannot be created: ${(error as Error).message}; choose another with --data-dir or fix its permissions`);
    }
    const file = path.join(dataDir, lockFileName);
    const holder: LockHolder = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString(), processStartTicks: processStartTicks(process.pid) };
    const temporary = path.join(dataDir, `${lockFileName}.${process.pid}.${Math.random().toString(36).slice(2)}`);
    try {
      fs.writeFileSync(temporary, `${JSON.stringify(holder)}\n`, { flag: 'wx' });
    } catch (error) {
      throw new DataDirLockError(`data directory ${dataDir} is not writable (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); choose another with --data-dir or fix its permissions`);
    }
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          fs.linkSync(temporary, file);
          return new DataDirLock(file, holder, null);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new DataDirLockError(`cannot create ${file}: ${(error as Error).message}`);
        }
        let current: LockHolder | null;
        try {
          current = readHolder(file);
        } catch {
          continue; // removed between link and read: try again
        }
        if (current !== null) refuseIfHeld(file, current);
        const taken = takeOver(dataDir, file, temporary, current);
        if (taken) return new DataDirLock(file, holder, current);
      }
      throw new DataDirLockError(`could not take ${file}: it keeps changing; is another broker starting on ${dataDir}?`);
    } finally {
      fs.rmSync(temporary, { force: true });
    }
  }

  /** Removes the lock if it is still ours (a clean stop). */
  release(): void {
    if (this.released) return;
    this.released = true;
    try {
      const current = readHolder(this.file);
      if (current !== null && current.pid === this.holder.pid && current.startedAt === this.holder.startedAt) fs.unlinkSync(this.file);
    } catch {
      // Already gone: nothing to release.
    }
  }
}

function refuseIfHeld(file: string, holder: LockHolder): void {
  if (holder.host !== os.hostname()) {
    throw new DataDirLockError(`${file} is held by ${describeHolder(holder)}, another machine; a directory shared between machines cannot be checked. If that broker is gone for good, delete the file and start again`);
  }
  if (holder.pid === process.pid || holderAlive(holder)) {
    throw new DataDirLockError(`data directory ${path.dirname(file)} is in use by another broker (${describeHolder(holder)}); stop it first, or give this broker its own --data-dir`);
  }
}

/** Replaces a stale lock under the takeover directory; false if the lock changed meanwhile. */
function takeOver(dataDir: string, file: string, ours: string, stale: LockHolder | null): boolean {
  const guard = path.join(dataDir, takeoverDirName);
  try {
    fs.mkdirSync(guard);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new DataDirLockError(`cannot create ${guard}: ${(error as Error).message}`);
    const ageMs = Date.now() - (fs.statSync(guard, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (ageMs > takeoverStaleMs) fs.rmSync(guard, { recursive: true, force: true });
    else throw new DataDirLockError(`another broker is taking over the lock of ${dataDir} right now; start only one broker per data directory`);
    return false;
  }
  try {
    let current: LockHolder | null;
    try {
      current = readHolder(file);
    } catch {
      return false; // gone meanwhile: link again
    }
    if (current !== null) refuseIfHeld(file, current);
    if (JSON.stringify(current) !== JSON.stringify(stale)) return false;
    // Copy, not rename: the caller removes `ours` whatever happens.
    fs.copyFileSync(ours, `${ours}.takeover`);
    fs.renameSync(`${ours}.takeover`, file);
    return true;
  } finally {
    fs.rmSync(guard, { recursive: true, force: true });
  }
}
