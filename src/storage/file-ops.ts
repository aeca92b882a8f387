/**
 * The file layer the partition log uses, behind an interface so tests (and the broker's own
 * fault tests) can inject ENOSPC, EIO or slow fsyncs. The default is node:fs: synchronous calls
 * for everything on the append/read path (an acks=1 append is in the OS when append() returns),
 * and asynchronous fdatasync so a group commit does not block the event loop.
 *
 * Positions and lengths are in bytes. Errors are thrown as Node system errors (with `code`);
 * the log turns them into RillErrors (see storage-errors.ts).
 */
import fs from 'node:fs';

export type OpenFlags = 'r' | 'r+' | 'wx+';

export interface FileOps {
  open(path: string, flags: OpenFlags): number;
  close(fd: number): void;
  /** Positioned write; returns bytes written (may be short: callers loop). */
  writev(fd: number, buffers: readonly Uint8Array[], positionBytes: number): number;
  /** Positioned read into buf[bufOffset..]; returns bytes read (0 at end of file). */
  read(fd: number, buf: Uint8Array, bufOffset: number, lengthBytes: number, positionBytes: number): number;
  fdatasync(fd: number): Promise<void>;
  fdatasyncSync(fd: number): void;
  ftruncate(fd: number, lengthBytes: number): void;
  fileSizeBytes(fd: number): number;
  /** fsync of a directory, so a newly created file's name survives a crash. */
  fsyncDir(path: string): Promise<void>;
  fsyncDirSync(path: string): void;
  readFile(path: string): Buffer;
  writeFile(path: string, data: Uint8Array): void;
  rename(fromPath: string, toPath: string): void;
  unlink(path: string): void;
  readdir(path: string): string[];
  mkdirp(path: string): void;
  /** Recursive delete; no error if the path is missing. */
  removeTree(path: string): void;
}

function fsyncDirSync(path: string): void {
  const fd = fs.openSync(path, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export const nodeFileOps: FileOps = {
  open: (path, flags) => fs.openSync(path, flags),
  close: (fd) => fs.closeSync(fd),
  writev: (fd, buffers, positionBytes) =>
    buffers.length === 1
      ? fs.writeSync(fd, buffers[0]!, 0, buffers[0]!.length, positionBytes)
      : fs.writevSync(fd, buffers as Uint8Array[], positionBytes),
  read: (fd, buf, bufOffset, lengthBytes, positionBytes) => fs.readSync(fd, buf, bufOffset, lengthBytes, positionBytes),
  fdatasync: (fd) => new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve()))),
  fdatasyncSync: (fd) => fs.fdatasyncSync(fd),
  ftruncate: (fd, lengthBytes) => fs.ftruncateSync(fd, lengthBytes),
  fileSizeBytes: (fd) => fs.fstatSync(fd).size,
  fsyncDir: async (path) => {
    const handle = await fs.promises.open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  fsyncDirSync,
  readFile: (path) => fs.readFileSync(path),
  writeFile: (path, data) => fs.writeFileSync(path, data),
  rename: (fromPath, toPath) => fs.renameSync(fromPath, toPath),
  unlink: (path) => fs.unlinkSync(path),
  readdir: (path) => fs.readdirSync(path),
  mkdirp: (path) => void fs.mkdirSync(path, { recursive: true }),
  removeTree: (path) => fs.rmSync(path, { recursive: true, force: true }),
};

/** Writes every byte of `buffers` at `positionBytes`, looping over short writes. */
export function writeAllSync(fileOps: FileOps, fd: number, buffers: readonly Uint8Array[], positionBytes: number, totalBytes: number): void {
  const firstBytes = fileOps.writev(fd, buffers, positionBytes);
  if (firstBytes === totalBytes) return;
  // Short write (rare for regular files; happens at the edge of ENOSPC): write the remainder.
  // The copy only happens on this slow path.
  const remaining = Buffer.concat(buffers as Uint8Array[]).subarray(firstBytes);
  let doneBytes = 0;
  while (doneBytes < remaining.length) {
    const n = fileOps.writev(fd, [remaining.subarray(doneBytes)], positionBytes + firstBytes + doneBytes);
    if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    doneBytes += n;
  }
}

/** Reads `lengthBytes` at `positionBytes` into buf[0..], fewer only if the file ends; returns bytes read. */
export function readAtSync(fileOps: FileOps, fd: number, buf: Uint8Array, lengthBytes: number, positionBytes: number): number {
  let doneBytes = 0;
  while (doneBytes < lengthBytes) {
    const n = fileOps.read(fd, buf, doneBytes, lengthBytes - doneBytes, positionBytes + doneBytes);
    if (n === 0) break;
    doneBytes += n;
  }
  return doneBytes;
}
