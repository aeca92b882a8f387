/**
 * Starting a broker the way operators do, with real processes: one broker per data directory
 * (a live holder refuses the second, a SIGKILLed one's lock is taken over), --advertise as a
 * client sees it, and configuration mistakes that exit 2 with one line and leave the data
 * directory as it was.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { Cluster } from '../../src/client/cluster.js';
import { Producer } from '../../src/client/producer.js';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';

/** Every file under dir with its size and modification time. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (at: string): void => {
    for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
      const full = path.join(at, entry.name);
      const stat = fs.statSync(full);
      out.push(`${path.relative(dir, full)} ${entry.isDirectory() ? 'dir' : stat.size} ${stat.mtimeMs}`);
      if (entry.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return out.sort();
}

const running: BrokerProcess[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((b) => b.kill()));
});

async function started(options: Parameters<typeof startBroker>[0] = {}): Promise<BrokerProcess> {
  const broker = await startBroker(options);
  running.push(broker);
  return broker;
}

async function produceSome(bootstrap: string, topic: string, count: number): Promise<void> {
  const admin = new Admin({ bootstrap });
  await admin.createTopics([{ topic, partitions: 2 }]);
  admin.close();
  const producer = new Producer({ bootstrap });
  await Promise.all(Array.from({ length: count }, (_, i) => producer.send({ topic, key: `k${i}`, value: `v${i}` })));
  await producer.close();
}

describe('one broker per data directory', () => {
  it('refuses a second broker on a directory a live broker holds, naming the holder, changing nothing', async () => {
    const first = await started();
    await produceSome(first.bootstrap, 'held', 50);
    const before = snapshot(first.dataDir);
    const second = await runCli(['broker', '--data-dir', first.dataDir, '--port', '0'], undefined, 30_000);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain(`is in use by another broker (pid ${first.child.pid} on `);
    expect(second.stderr.trim().split('\n')).toHaveLength(1);
    expect(second.stdout).not.toContain('ready');
    expect(snapshot(first.dataDir)).toEqual(before);
    // The first broker kept serving throughout.
    await produceSome(first.bootstrap, 'still-serving', 5);
  });

  it('takes over the lock a SIGKILLed broker left, and serves its data', async () => {
    const first = await started();
    await produceSome(first.bootstrap, 'orphaned', 40);
    await first.kill();
    expect(fs.existsSync(path.join(first.dataDir, '.lock'))).toBe(true);
    const second = await started({ dataDir: first.dataDir });
    expect(second.output()).toMatch(/took over the lock .* left by pid \d+/);
    const admin = new Admin({ bootstrap: second.bootstrap });
    try {
      const description = await admin.describeTopic('orphaned');
      expect(description.partitions.reduce((sum, p) => sum + Number(p.latestOffset), 0)).toBe(40);
    } finally {
      admin.close();
    }
    // A clean stop releases the lock.
    expect(await second.stop()).toBe(0);
    expect(fs.existsSync(path.join(first.dataDir, '.lock'))).toBe(false);
  });
});

describe('listeners', () => {
  it('tells clients the --advertise address in Metadata', async () => {
    const broker = await started({ args: ['--advertise', 'rill-1.example.internal:19092'] });
    const cluster = new Cluster({ bootstrap: broker.bootstrap });
    try {
      const metadata = await cluster.metadata(null);
      expect(metadata.brokers).toEqual([{ nodeId: 0, host: 'rill-1.example.internal', port: 19092, rack: null, alive: true }]);
    } finally {
      cluster.close();
    }
  });

  it('listening on every interface without --advertise, tells each client the address it reached', async () => {
    const broker = await started({ port: null, args: ['--listen', '0.0.0.0:0', '--allow-anonymous'] });
    const cluster = new Cluster({ bootstrap: broker.bootstrap });
    try {
      const metadata = await cluster.metadata(null);
      expect(metadata.brokers).toEqual([{ nodeId: 0, host: '127.0.0.1', port: broker.port, rack: null, alive: true }]);
    } finally {
      cluster.close();
    }
    expect(broker.output()).toContain('without an advertised address');
  });

  it('reads listeners and the data directory from a YAML config file, flags winning', async () => {
    const dir = tempDir('config-file');
    const file = path.join(dir, 'rill.yaml');
    fs.writeFileSync(file, `dataDir: ${path.join(dir, 'data')}\nnodeId: 5\nlisteners:\n  rill:\n    listen: 127.0.0.1:0\n    advertise: from-file:1234\n`);
    const broker = await started({ dataDir: path.join(dir, 'flag-data'), port: null, args: ['--config', file, '--node-id', '6'] });
    expect(fs.existsSync(path.join(dir, 'flag-data', '.lock'))).toBe(true);
    const cluster = new Cluster({ bootstrap: broker.bootstrap });
    try {
      const metadata = await cluster.metadata(null);
      expect(metadata.brokers).toEqual([{ nodeId: 6, host: 'from-file', port: 1234, rack: null, alive: true }]);
    } finally {
      cluster.close();
    }
  });
});

describe('the default HTTP address', () => {
  it('when taken (another broker on this machine), the broker warns and serves without HTTP', async () => {
    // Hold the default HTTP port (or find it already held: either way it is taken).
    const blocker = net.createServer();
    await new Promise<void>((resolve) => {
      blocker.once('error', () => resolve());
      blocker.listen(9644, '127.0.0.1', resolve);
    });
    const free = net.createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => free.close(() => resolve()));
    try {
      const broker = await started({ port });
      expect(broker.output()).toContain('HTTP listener not started: its default address 127.0.0.1:9644 is in use');
      await produceSome(broker.bootstrap, 'no-http', 3);
    } finally {
      blocker.close();
    }
  });
});

describe('configuration mistakes exit 2 with one line and change nothing', () => {
  it('an unknown key in the config file, naming the closest', async () => {
    const dir = tempDir('bad-config');
    const file = path.join(dir, 'rill.yaml');
    fs.writeFileSync(file, 'dataDri: /tmp/x\n');
    const data = path.join(dir, 'data');
    const result = await runCli(['broker', '--config', file, '--data-dir', data, '--port', '0'], undefined, 30_000);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file}: unknown key "dataDri" (did you mean "dataDir"?)`);
    expect(fs.existsSync(data)).toBe(false);
  });

  it('a malformed config file, naming file and line', async () => {
    const dir = tempDir('bad-yaml');
    const file = path.join(dir, 'rill.yaml');
    fs.writeFileSync(file, 'nodeId: 1\nlisteners: [oops\n');
    const result = await runCli(['broker', '--config', file, '--port', '0', '--data-dir', path.join(dir, 'data')], undefined, 30_000);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/rill\.yaml line \d+ column \d+ is not valid YAML/);
  });

  it('a port in use: the existing data directory is left exactly as it was', async () => {
    const first = await started();
    await produceSome(first.bootstrap, 'kept', 20);
    expect(await first.stop()).toBe(0);
    const before = snapshot(first.dataDir);
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const result = await runCli(['broker', '--data-dir', first.dataDir, '--port', String(port)], undefined, 30_000);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`127.0.0.1:${port} is already in use`);
      expect(snapshot(first.dataDir)).toEqual(before);
    } finally {
      blocker.close();
    }
  });

  it('an HTTP port in use that the operator chose', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const dataDir = tempDir('http-in-use');
      const result = await runCli(['broker', '--data-dir', dataDir, '--port', '0', '--http', `127.0.0.1:${port}`], undefined, 30_000);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`HTTP listener: 127.0.0.1:${port} is already in use`);
      expect(fs.readdirSync(dataDir)).toEqual([]);
    } finally {
      blocker.close();
    }
  });

  it('a data directory that cannot be created or written', async () => {
    const dir = tempDir('unwritable');
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, 'not a directory');
    const result = await runCli(['broker', '--data-dir', path.join(file, 'data'), '--port', '0'], undefined, 30_000);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/data directory .*a-file\/data cannot be created/);
    expect(fs.readFileSync(file, 'utf8')).toBe('not a directory');
  });

  it('a bad flag value', async () => {
    const result = await runCli(['broker', '--data-dir', tempDir('bad-flag'), '--listen', 'nowhere'], undefined, 30_000);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('flag --listen: expected HOST:PORT');
  });
});
