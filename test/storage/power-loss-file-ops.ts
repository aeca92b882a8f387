/**
 * A FileOps that can simulate a power loss in one directory, for tests of what is durable.
 *
 * Pessimistic model: after powerLoss(), the directory holds exactly what was made durable, and
 * nothing else, which is one of the states a real disk may come back in:
 *   - a file's bytes are those of its last fdatasync (empty if it never had one); writes and
 *     ftruncates after that are lost;
 *   - the directory's names are those of its last fsync: files created or renamed in since are
 *     gone, files unlinked or renamed away since come back (with their durable bytes).
 * Files are tracked by identity, not by name (a rename moves the identity), and never by inode
 * number (the kernel reuses those). The directory must be used only through this FileOps.
 * Not used in production.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type FileOps, type OpenFlags, nodeFileOps } from '../../src/storage/file-ops.js';

export class PowerLossFileOps implements FileOps {
  private nextFileId = 1;
  /** The directory as the running process sees it: name -> file identity. */
  private liveNames = new Map<string, number>();
  /** The directory as of its last fsync. */
  private durableNames = new Map<string, number>();
  /** File identity -> its bytes as of its last fdatasync. */
  private durableBytes = new Map<number, Buffer>();
  private readonly fileIdByFd = new Map<number, number>();
  /** Power losses so far (tests check the simulation ran). */
  powerLosses = 0;

  constructor(readonly dir: string, private readonly inner: FileOps = nodeFileOps) {
    if (fs.existsSync(dir)) this.adoptDirectory();
  }

  /**
   * The machine loses power: descriptors are gone (as after a kill), and the directory is put
   * back to its durable state (see the file comment). Tracking starts again from that state.
   */
  powerLoss(): void {
    for (const fd of this.fileIdByFd.keys()) this.inner.close(fd);
    this.fileIdByFd.clear();
    for (const name of fs.readdirSync(this.dir)) fs.rmSync(path.join(this.dir, name));
    for (const [name, fileId] of this.durableNames) fs.writeFileSync(path.join(this.dir, name), this.durableBytes.get(fileId) ?? Buffer.alloc(0));
    this.powerLosses++;
    this.adoptDirectory();
  }

  /** A process crash without power loss: descriptors closed, files as they are. */
  crash(): void {
    for (const fd of this.fileIdByFd.keys()) this.inner.close(fd);
    this.fileIdByFd.clear();
  }

  /** Everything in the directory now counts as durable. */
  private adoptDirectory(): void {
    this.liveNames = new Map();
    this.durableNames = new Map();
    this.durableBytes = new Map();
    for (const name of fs.readdirSync(this.dir)) {
      const fileId = this.nextFileId++;
      this.liveNames.set(name, fileId);
      this.durableNames.set(name, fileId);
      this.durableBytes.set(fileId, fs.readFileSync(path.join(this.dir, name)));
    }
  }

  /** The name inside the tracked directory, or null for a path elsewhere. */
  private nameOf(filePath: string): string | null {
    return path.dirname(filePath) === this.dir ? path.basename(filePath) : null;
  }

  private captureDurableBytes(fd: number): void {
    const fileId = this.fileIdByFd.get(fd);
    if (fileId === undefined) return;
    const sizeBytes = this.inner.fileSizeBytes(fd);
    const bytes = Buffer.alloc(sizeBytes);
    let doneBytes = 0;
    while (doneBytes < sizeBytes) {
      const n = this.inner.read(fd, bytes, doneBytes, sizeBytes - doneBytes, doneBytes);
      if (n === 0) break;
      doneBytes += n;
    }
    this.durableBytes.set(fileId, bytes.subarray(0, doneBytes));
  }

  open(filePath: string, flags: OpenFlags): number {
    const fd = this.inner.open(filePath, flags);
    const name = this.nameOf(filePath);
    if (name === null) return fd;
    let fileId = flags === 'wx+' ? undefined : this.liveNames.get(name);
    if (fileId === undefined) {
      fileId = this.nextFileId++;
      this.liveNames.set(name, fileId);
    }
    this.fileIdByFd.set(fd, fileId);
    return fd;
  }

  close(fd: number): void {
    this.fileIdByFd.delete(fd);
    this.inner.close(fd);
  }

  writev(fd: number, buffers: readonly Uint8Array[], positionBytes: number): number {
    return this.inner.writev(fd, buffers, positionBytes);
  }

  read(fd: number, buf: Uint8Array, bufOffset: number, lengthBytes: number, positionBytes: number): number {
    return this.inner.read(fd, buf, bufOffset, lengthBytes, positionBytes);
  }

  /** The bytes are captured when the call is made (the tests never lose power during one). */
  async fdatasync(fd: number): Promise<void> {
    this.captureDurableBytes(fd);
    await this.inner.fdatasync(fd);
  }

  fdatasyncSync(fd: number): void {
    this.captureDurableBytes(fd);
    this.inner.fdatasyncSync(fd);
  }

  ftruncate(fd: number, lengthBytes: number): void {
    this.inner.ftruncate(fd, lengthBytes);
  }

  fileSizeBytes(fd: number): number {
    return this.inner.fileSizeBytes(fd);
  }

  async fsyncDir(dirPath: string): Promise<void> {
    if (dirPath === this.dir) this.durableNames = new Map(this.liveNames);
    await this.inner.fsyncDir(dirPath);
  }

  fsyncDirSync(dirPath: string): void {
    if (dirPath === this.dir) this.durableNames = new Map(this.liveNames);
    this.inner.fsyncDirSync(dirPath);
  }

  readFile(filePath: string): Buffer {
    return this.inner.readFile(filePath);
  }

  /** Replaces the content of an existing file in place (same identity), or creates one. */
  writeFile(filePath: string, data: Uint8Array): void {
    this.inner.writeFile(filePath, data);
    const name = this.nameOf(filePath);
    if (name !== null && !this.liveNames.has(name)) this.liveNames.set(name, this.nextFileId++);
  }

  rename(fromPath: string, toPath: string): void {
    this.inner.rename(fromPath, toPath);
    const fromName = this.nameOf(fromPath);
    const toName = this.nameOf(toPath);
    const fileId = fromName === null ? undefined : this.liveNames.get(fromName);
    if (fromName !== null) this.liveNames.delete(fromName);
    if (toName !== null) this.liveNames.set(toName, fileId ?? this.nextFileId++);
  }

  unlink(filePath: string): void {
    this.inner.unlink(filePath);
    const name = this.nameOf(filePath);
    if (name !== null) this.liveNames.delete(name);
  }

  readdir(dirPath: string): string[] {
    return this.inner.readdir(dirPath);
  }

  /** The tracked directory itself is taken as durable once created. */
  mkdirp(dirPath: string): void {
    this.inner.mkdirp(dirPath);
  }

  removeTree(treePath: string): void {
    this.inner.removeTree(treePath);
    if (treePath === this.dir) {
      this.liveNames.clear();
      this.durableNames.clear();
    }
  }
}
