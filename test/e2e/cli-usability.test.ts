/**
 * The CLI a newcomer does not trip over (issue 8): help, version, short options, suggestions,
 * exit statuses, failing fast without a broker or at the wrong port, `| head`, and consumers
 * that ride through a broker restart. Real child processes throughout.
 */
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { closedPort, spawnCli } from '../helpers/cli-process.js';

describe('rill CLI usability', () => {
  let broker: BrokerProcess;
  let b: string[];

  beforeAll(async () => {
    broker = await startBroker();
    b = ['-b', broker.bootstrap];
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('prints the version from package.json', async () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(version);
  });

  it('has help per command, with examples, exiting 0', async () => {
    const result = await runCli(['produce', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Examples:');
    expect(result.stdout).toMatch(/\| rill produce \w+/);
    expect(result.stdout).toContain('--key-separator');
  });

  it('declares the broker flags', async () => {
    const result = await runCli(['broker', '--help']);
    expect(result.code).toBe(0);
    for (const flag of ['--config <file>', '--data-dir', '--port', '--host', '--listen', '--advertise', '--http', '--node-id', '--log-level', '--log-format']) {
      expect(result.stdout).toContain(flag);
    }
  });

  it('takes --config KEY=VALUE repeatedly on topics create, numbers as numbers', async () => {
    const created = await runCli(['topics', 'create', 'configured', '--config', 'retentionMs=60000', '--config', 'segmentBytes=1048576', ...b]);
    expect(created.code).toBe(0);
    const described = JSON.parse((await runCli(['topics', 'describe', 'configured', '--json', ...b])).stdout);
    expect(described.config).toMatchObject({ retentionMs: 60000, segmentBytes: 1048576 });
    const malformed = await runCli(['topics', 'create', 'configured2', '--config', 'retentionMs', ...b]);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('--config expects KEY=VALUE');
  });

  it('creates as many partitions as -p says', async () => {
    const created = await runCli(['topics', 'create', 'three', '-p', '3', ...b]);
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('created topic three with 3 partitions');
    const described = await runCli(['topics', 'describe', 'three', '--json', ...b]);
    expect(JSON.parse(described.stdout).partitions).toHaveLength(3);
  });

  it('names the closest option for a typo, on one line, with exit status 2', async () => {
    const result = await runCli(['topics', 'create', 'typo', '--partitons', '3', ...b]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown option '--partitons'");
    expect(result.stderr).toContain('--partitions');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    const command = await runCli(['topcs', 'list']);
    expect(command.code).toBe(2);
    expect(command.stderr).toContain('topics');
  });

  it('refuses a bad number naming the accepted range, with exit status 2', async () => {
    const result = await runCli(['topics', 'create', 'bad', '-p', 'lots', ...b]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe('rill: --partitions must be an integer in 1..4096, got "lots"');
    const zero = await runCli(['consume', 'three', '--partition', '-1', ...b]);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toMatch(/--partition must be an integer in 0\.\.\d+, got "-1"/);
  });

  it('fails within --timeout with one clear line when no broker answers', async () => {
    const port = await closedPort();
    // runCli rejects if the command takes longer than 15 s; the producer alone would wait 120 s.
    const result = await runCli(['produce', 'foo', '-b', `127.0.0.1:${port}`, '--timeout', '1000'], 'hi\n', 15_000);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain(`no broker answered at 127.0.0.1:${port} within 1000 ms`);
    expect(result.stderr).toContain('ECONNREFUSED');
    const admin = await runCli(['topics', 'list', '-b', `127.0.0.1:${port}`, '--timeout', '1000'], undefined, 15_000);
    expect(admin.code).toBe(1);
    expect(admin.stderr).toContain('no broker answered');
  });

  it('says an HTTP server is not a Rill broker, at once', async () => {
    const server = http.createServer((_request, response) => response.end('hello'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    try {
      const produced = await runCli(['produce', 'foo', '-b', address], 'hi\n', 15_000);
      expect(produced.code).toBe(1);
      expect(produced.stderr).toContain(`this does not look like a Rill broker (${address} answered with bytes that are not a Rill reply)`);
      expect(produced.stderr).not.toContain('FRAME_TOO_LARGE');
      const listed = await runCli(['topics', 'list', '-b', address], undefined, 15_000);
      expect(listed.code).toBe(1);
      expect(listed.stderr).toContain('does not look like a Rill broker');
    } finally {
      server.close();
    }
  });

  it('ends quietly with status 0 when the reader of its stdout goes away (| head)', async () => {
    expect((await runCli(['topics', 'create', 'piped', ...b])).code).toBe(0);
    expect((await runCli(['produce', 'piped', ...b], 'first\nsecond\nthird\n')).code).toBe(0);
    const consumer = spawnCli(['consume', 'piped', '--from-beginning', ...b]);
    try {
      await consumer.waitFor('stdout', /third/);
      consumer.child.stdout.destroy(); // as head does after its lines
      // The next records it prints hit the closed pipe.
      expect((await runCli(['produce', 'piped', ...b], 'fourth\nfifth\n')).code).toBe(0);
      expect(await consumer.exited).toBe(0);
      expect(consumer.stderr()).not.toMatch(/EPIPE|Error|at /);
    } finally {
      consumer.child.kill('SIGKILL');
    }
  });
});

describe('rill consume rides through a broker restart', () => {
  for (const mode of ['alone', 'group'] as const) {
    it(`keeps printing after the broker restarts (${mode})`, async () => {
      const dataDir = tempDir('cli-restart');
      let broker = await startBroker({ dataDir });
      const b = ['-b', broker.bootstrap];
      expect((await runCli(['topics', 'create', 'events', '-p', '2', ...b])).code).toBe(0);
      expect((await runCli(['produce', 'events', ...b], 'before-1\nbefore-2\n')).code).toBe(0);
      const args = ['consume', 'events', '--from-beginning', ...b, ...(mode === 'group' ? ['-g', 'printers'] : [])];
      const consumer = spawnCli(args);
      try {
        await consumer.waitFor('stdout', /before-1[\s\S]*before-2|before-2[\s\S]*before-1/);
        expect(await broker.stop()).toBe(0);
        await consumer.waitFor('stderr', new RegExp(`broker ${broker.bootstrap.replace(/\./g, '\\.')} (unreachable|answered) \\(.*\\), retrying`));
        broker = await startBroker({ dataDir, port: broker.port });
        await consumer.waitFor('stderr', /is back/);
        expect((await runCli(['produce', 'events', ...b], 'after-1\nafter-2\n')).code).toBe(0);
        await consumer.waitFor('stdout', /after-1[\s\S]*after-2|after-2[\s\S]*after-1/);
        expect(consumer.child.exitCode).toBeNull();
        // Said once per outage, not once per retry.
        expect(consumer.stderr().match(/retrying/g)).toHaveLength(1);
        consumer.child.kill('SIGTERM');
        expect(await consumer.exited).toBe(0);
        expect(consumer.stdout().split('\n').filter((line) => line.startsWith('before-'))).toHaveLength(2);
      } finally {
        consumer.child.kill('SIGKILL');
        await broker.kill();
      }
    });
  }
});

describe('rill produce rides through a broker restart', () => {
  it('says the broker is away, retries, says it is back, and delivers every line', async () => {
    const dataDir = tempDir('cli-produce-restart');
    let broker = await startBroker({ dataDir });
    const b = ['-b', broker.bootstrap];
    try {
      expect((await runCli(['topics', 'create', 'lines', ...b])).code).toBe(0);
      const producer = spawnCli(['produce', 'lines', ...b]);
      producer.child.stdin.write('one\n');
      // Delivered once a consumer sees it; then the broker goes away while the producer runs.
      const first = spawnCli(['consume', 'lines', '--from-beginning', ...b]);
      await first.waitFor('stdout', /one/);
      first.child.kill('SIGTERM');
      await first.exited;
      expect(await broker.stop()).toBe(0);
      producer.child.stdin.write('two\n');
      await producer.waitFor('stderr', /unreachable \(.*\), retrying/);
      broker = await startBroker({ dataDir, port: broker.port });
      await producer.waitFor('stderr', /is back/);
      producer.child.stdin.end('three\n');
      expect(await producer.exited).toBe(0);
      expect(producer.stderr()).toContain('produced 3 of 3 records');
      const all = await runCli(['consume', 'lines', '--from-beginning', '--exit-at-end', ...b]);
      expect(all.stdout.trim().split('\n')).toEqual(['one', 'two', 'three']);
    } finally {
      await broker.kill();
    }
  });
});
