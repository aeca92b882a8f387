/**
 * A FileOps that forwards to a real one, counts calls and injects faults: a full disk (writes
 * that write part of their bytes and then fail with ENOSPC), failing or held fsyncs, failing
 * reads. For the storage contract tests and for broker tests of DISK_FULL / STORAGE_ERROR paths.
 * Not used in production.
 */
import { type FileOps, type OpenFlags, nodeFileOps } from './file-ops.js';

export type FaultOp = 'writev' | 'fdatasync' | 'fsyncDir' | 'read' | 'open' | 'ftruncate' | 'writeFile' | 'rename';

interface FaultRule {
  op: FaultOp;
  errno: string;
  /** Matching calls to let through before the first failure. */
  skipLeft: number;
  /** Calls left to fail; Infinity until cleared. */
  timesLeft: number;
  /** For writev: bytes actually written before the error (a torn write). */
  partialBytes: number;
}

function systemError(errno: string, op: string): Error {
  return Object.assign(new Error(`${errno}: injected fault in ${op}`), { code: errno });
}

export class FaultInjectingFileOps implements FileOps {
  readonly calls = { writev: 0, fdatasync: 0, fsyncDir: 0, read: 0 };
  private rules: FaultRule[] = [];
  private fsyncGate: Promise<void> | null = null;
  private readonly openFds = new Set<number>();

  constructor(private readonly inner: FileOps = nodeFileOps) {}

  /**
   * Makes `times` calls of `op` fail with `errno` (Infinity: until clearFaults()), after letting
   * the next `skip` calls of it through (default 0: the very next call fails).
   */
  inject(op: FaultOp, errno: string, options: { times?: number; partialBytes?: number; skip?: number } = {}): void {
    this.rules.push({ op, errno, skipLeft: options.skip ?? 0, timesLeft: options.times ?? 1, partialBytes: options.partialBytes ?? 0 });
  }

  /** Whether an injected fault has not fired yet (e.g. the code under test never reached it). */
  get hasPendingFaults(): boolean {
    return this.rules.some((rule) => rule.timesLeft > 0 && rule.timesLeft !== Number.POSITIVE_INFINITY);
  }

  /** Every write fails with ENOSPC after writing `partialBytes`, until clearFaults(). */
  fillDisk(partialBytes = 0): void {
    this.inject('writev', 'ENOSPC', { times: Number.POSITIVE_INFINITY, partialBytes });
    this.inject('writeFile', 'ENOSPC', { times: Number.POSITIVE_INFINITY });
  }

  clearFaults(): void {
    this.rules = [];
  }

  /** Holds every async fsync until the returned function is called. */
  holdFsyncs(): () => void {
    let release = (): void => {};
    this.fsyncGate = new Promise((resolve) => (release = resolve));
    return () => {
      this.fsyncGate = null;
      release();
    };
  }

  private takeFault(op: FaultOp): FaultRule | undefined {
    const rule = this.rules.find((candidate) => candidate.op === op && candidate.timesLeft > 0);
    if (rule === undefined) return undefined;
    if (rule.skipLeft > 0) {
      rule.skipLeft--;
      return undefined;
    }
    rule.timesLeft--;
    return rule;
  }

  private throwIfFault(op: FaultOp): void {
    const rule = this.takeFault(op);
    if (rule !== undefined) throw systemError(rule.errno, op);
  }

  /**
   * Simulates the process dying: closes every descriptor opened through this layer, without
   * the log's own close() (no index files, no checkpoint, no fsync). Data written stays in the
   * page cache, as after a kill -9; tests damage the files afterwards to model a lost tail.
   */
  crash(): void {
    for (const fd of this.openFds) this.inner.close(fd);
    this.openFds.clear();
  }

  open(path: string, flags: OpenFlags): number {
    this.throwIfFault('open');
    const fd = this.inner.open(path, flags);
    this.openFds.add(fd);
    return fd;
  }

  close(fd: number): void {
    this.openFds.delete(fd);
    this.inner.close(fd);
  }

  writev(fd: number, buffers: readonly Uint8Array[], positionBytes: number): number {
    this.calls.writev++;
    const rule = this.takeFault('writev');
    if (rule === undefined) return this.inner.writev(fd, buffers, positionBytes);
    if (rule.partialBytes > 0) {
      const all = Buffer.concat(buffers as Uint8Array[]);
      this.inner.writev(fd, [all.subarray(0, Math.min(rule.partialBytes, all.length))], positionBytes);
    }
    throw systemError(rule.errno, 'writev');
  }

  read(fd: number, buf: Uint8Array, bufOffset: number, lengthBytes: number, positionBytes: number): number {
    this.calls.read++;
    this.throwIfFault('read');
    return this.inner.read(fd, buf, bufOffset, lengthBytes, positionBytes);
  }

  async fdatasync(fd: number): Promise<void> {
    this.calls.fdatasync++;
    if (this.fsyncGate !== null) await this.fsyncGate;
    this.throwIfFault('fdatasync');
    return this.inner.fdatasync(fd);
  }

  fdatasyncSync(fd: number): void {
    this.calls.fdatasync++;
    this.throwIfFault('fdatasync');
    this.inner.fdatasyncSync(fd);
  }

  ftruncate(fd: number, lengthBytes: number): void {
    this.throwIfFault('ftruncate');
    this.inner.ftruncate(fd, lengthBytes);
  }

  fileSizeBytes(fd: number): number {
    return this.inner.fileSizeBytes(fd);
  }

  async fsyncDir(path: string): Promise<void> {
    this.calls.fsyncDir++;
    if (this.fsyncGate !== null) await this.fsyncGate;
    this.throwIfFault('fsyncDir');
    return this.inner.fsyncDir(path);
  }

  fsyncDirSync(path: string): void {
    this.calls.fsyncDir++;
    this.throwIfFault('fsyncDir');
    this.inner.fsyncDirSync(path);
  }

  readFile(path: string): Buffer {
    return this.inner.readFile(path);
  }

  writeFile(path: string, data: Uint8Array): void {
    this.throwIfFault('writeFile');
    this.inner.writeFile(path, data);
  }

  rename(fromPath: string, toPath: string): void {
    this.throwIfFault('rename');
    this.inner.rename(fromPath, toPath);
  }

  unlink(path: string): void {
    this.inner.unlink(path);
  }

  readdir(path: string): string[] {
    return this.inner.readdir(path);
  }

  mkdirp(path: string): void {
    this.inner.mkdirp(path);
  }

  removeTree(path: string): void {
    this.inner.removeTree(path);
  }
}
