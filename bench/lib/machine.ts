/** What the numbers were measured on: recorded with every result. */
import os from 'node:os';
import fs from 'node:fs';
import { crc32cImplementation } from '../../src/wire/crc32c.js';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  platform: string;
  kernel: string;
  nodeVersion: string;
  v8Version: string;
  crc32cImplementation: string;
  loadAverageAtStart: number[];
  tmpdir: string;
  tmpFilesystem: string | null;
}

function filesystemOf(dir: string): string | null {
  try {
    const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((line) => line.split(' '));
    let best: string[] | null = null;
    for (const fields of mounts) {
      const mountPoint = fields[1];
      if (mountPoint === undefined || !dir.startsWith(mountPoint)) continue;
      if (best === null || mountPoint.length > best[1]!.length) best = fields;
    }
    return best === null ? null : `${best[0]} on ${best[1]} (${best[2]})`;
  } catch {
    return null;
  }
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryBytes: os.totalmem(),
    platform: `${os.platform()} ${os.arch()}`,
    kernel: os.release(),
    nodeVersion: process.version,
    v8Version: process.versions.v8,
    crc32cImplementation,
    loadAverageAtStart: os.loadavg(),
    tmpdir: os.tmpdir(),
    tmpFilesystem: filesystemOf(os.tmpdir()),
  };
}
