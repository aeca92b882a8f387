/**
 * The harness of the replication tests (replication.test.ts), on what works today, so that a
 * failure there is about replication and not about the harness:
 * - TcpProxy forwards (also connections that arrived before it knew its target), refuses and
 *   blackholes when cut, forwards again when healed, and refuses one process's connections
 *   while another's get through;
 * - ClusterProcesses runs etcd and three brokers behind proxies; membership follows its faults:
 *   SIGSTOP past the lease and SIGCONT, SIGKILL and a restart on the same port, isolate() and
 *   heal(), etcd SIGKILLed and restarted;
 * - the final checks find lost, duplicated, reordered and misplaced records, a record a reader
 *   was given and that is gone, and replicas that differ.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { stampBaseOffset, stampPartitionLeaderEpoch, encodeBatch } from '../../src/wire/record-batch.js';
import { ClusterProcesses, until } from '../helpers/cluster-processes.js';
import { NumberedWorkload } from '../helpers/numbered-workload.js';
import { compareReplicas, type ReplicaCopy } from '../helpers/replica-files.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async (context) => {
  const failed = context.task.result?.state === 'fail';
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  if (failed) console.log(`${context.task.name} failed`);
});

async function echoServer(): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => resolve());
  }));
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
    cleanups.push(() => void socket.destroy());
  });
}

function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
}

/** Writes `text` and resolves with the first `text.length` bytes that come back. */
function roundTrip(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    const onData = (chunk: Buffer): void => {
      received += chunk.toString();
      if (received.length >= text.length) {
        socket.off('data', onData);
        resolve(received);
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`closed before the echo of ${text}`)));
    socket.write(text);
  });
}

/**
 * A node process that connects to `port` each time it reads a line on stdin, writes "ping" and
 * prints what happens: `echo:ping`, then `closed` when the connection ends.
 */
function connectingChild(port: number): { child: ChildProcessWithoutNullStreams; next: () => Promise<string>; go: () => void } {
  const script = `
    const net = require('node:net');
    require('node:readline').createInterface({ input: process.stdin }).on('line', () => {
      const socket = net.connect({ host: '127.0.0.1', port: ${port} });
      socket.on('connect', () => socket.write('ping'));
      socket.on('data', (d) => console.log('echo:' + d));
      socket.on('error', () => undefined);
      socket.on('close', () => console.log('closed'));
    });`;
  const child = spawn(process.execPath, ['-e', script]);
  cleanups.push(() => void child.kill('SIGKILL'));
  const lines: string[] = [];
  const waiters: ((line: string) => void)[] = [];
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      const waiter = waiters.shift();
      if (waiter !== undefined) waiter(line);
      else lines.push(line);
    }
  });
  return {
    child,
    go: () => child.stdin.write('go\n'),
    next: () => (lines.length > 0 ? Promise.resolve(lines.shift()!) : new Promise((resolve) => waiters.push(resolve))),
  };
}

describe.sequential('the failover harness', () => {
  it('TcpProxy forwards, refuses and blackholes when cut, forwards again when healed, and refuses one process but not another', async () => {
    const echo = await echoServer();
    const proxy = await TcpProxy.start({ name: 'echo' });
    cleanups.push(() => proxy.close());

    // A connection made before the proxy knows its target waits for it.
    const early = await connect(proxy.port);
    const earlyEcho = roundTrip(early, 'early');
    proxy.setTarget({ host: '127.0.0.1', port: echo.port });
    expect(await earlyEcho).toBe('early');

    proxy.cut('refuse');
    await closed(early);
    await expect(connect(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await proxy.heal();
    const afterRefuse = await connect(proxy.port);
    expect(await roundTrip(afterRefuse, 'again')).toBe('again');

    const acceptedBefore = echo.accepted();
    proxy.cut('blackhole');
    await closed(afterRefuse);
    const held = await connect(proxy.port);
    held.write('into the void');
    await until('the blackholed connection held', async () => (proxy.heldCount === 1 ? true : undefined), 5000, 10);
    expect(echo.accepted()).toBe(acceptedBefore);
    await proxy.heal();
    await closed(held);
    expect(proxy.heldCount).toBe(0);

    // refuseFrom: the child's connections are cut and refused; the test process's are not.
    const other = connectingChild(proxy.port);
    other.go();
    expect(await other.next()).toBe('echo:ping');
    const mine = await connect(proxy.port);
    expect(await roundTrip(mine, 'mine')).toBe('mine');
    proxy.refuseFrom(other.child.pid!);
    expect(await other.next()).toBe('closed');
    other.go();
    expect(await other.next()).toBe('closed');
    expect(await roundTrip(mine, 'still')).toBe('still');
    expect(await roundTrip(await connect(proxy.port), 'fresh')).toBe('fresh');
    proxy.allowFrom(other.child.pid!);
    other.go();
    expect(await other.next()).toBe('echo:ping');
  });

  it('ClusterProcesses: three brokers behind proxies; membership follows SIGSTOP/SIGCONT, SIGKILL and restart on the same port, isolate/heal, and etcd SIGKILLed and restarted', async () => {
    const c = await ClusterProcesses.start({ name: 'harness', leaseTtlMs: 3000, proxies: true });
    let failed = true;
    cleanups.push(async () => {
      if (failed) console.log(c.outputTail());
      await c.close(!failed);
    });
    // Everyone is told the proxies' addresses.
    const described = await c.describeCluster(1);
    expect(described.brokers.map((b) => `${b.host}:${b.port}`)).toEqual(c.nodes.map((n) => n.address));
    expect(new Set(c.nodes.map((n) => n.address)).size).toBe(3);

    c.node(2).pause();
    try {
      await c.waitForMembers([1, 3]);
    } finally {
      c.node(2).resume();
    }
    await c.waitForMembers([1, 2, 3]);
    expect(c.node(2).output()).toMatch(/is fenced/);

    const port = c.node(3).port;
    await c.node(3).kill();
    expect(c.node(3).running).toBe(false);
    await c.waitForMembers([1, 2]);
    await c.node(3).restart();
    expect(c.node(3).output()).toMatch(new RegExp(`ready on 127\\.0\\.0\\.1:${port}\\n[\\s\\S]*restarted[\\s\\S]*ready on 127\\.0\\.0\\.1:${port}\\n`));
    await c.waitForMembers([1, 2, 3]);

    c.node(1).isolate();
    expect(c.healthyIds()).toEqual([2, 3]);
    try {
      await c.waitForMembers([2, 3]);
      // A client with every broker in its bootstrap is refused by the cut one and asks the next.
      const viaAll = await c.admin(c.bootstrap, (admin) => admin.describeCluster());
      expect(viaAll.brokers.filter((b) => b.alive).map((b) => b.nodeId)).toEqual([2, 3]);
    } finally {
      await c.node(1).heal();
    }
    await c.waitForMembers([1, 2, 3]);
    expect(c.node(1).output()).toMatch(/is fenced: its etcd lease was not renewed in time/);

    await c.killEtcd();
    for (const id of [1, 2, 3]) {
      await until(`broker ${id} fenced while etcd is down`, async () => {
        const d = await c.describeCluster(id);
        // Not alive itself and no controller; the others still listed as last known.
        const self = d.brokers.find((b) => b.nodeId === id);
        return self !== undefined && !self.alive && d.controller === null ? d : undefined;
      }, c.leaseTtlMs * 5 + 10_000);
    }
    await c.restartEtcd();
    await c.waitForMembers([1, 2, 3]);

    expect([...(await c.stopAll()).values()]).toEqual([0, 0, 0]);
    failed = false;
  }, 120_000);

  it('the final checks find lost, duplicated, reordered and misplaced records, a record a reader was given that is gone, and replicas that differ', () => {
    const w = new NumberedWorkload({ bootstrap: '127.0.0.1:1', topic: 't', partitions: 2 });
    const record = (value: string, offset: bigint) => ({ partition: 0, offset, value, sentAtMs: 0, ackedAtMs: 0 });
    w.acked.set('p0-0', record('p0-0', 0n));
    w.acked.set('p0-1', record('p0-1', 1n));
    w.acked.set('q0-0', record('q0-0', 2n));
    w.seen[0]!.set(0n, 'p0-0');
    const good = [{ offset: 0n, value: 'p0-0' }, { offset: 1n, value: 'p0-1' }, { offset: 2n, value: 'q0-0' }, { offset: 3n, value: 'p0-2' }];
    expect(w.checkLog(0, good)).toEqual([]);
    expect(w.checkLog(0, good.filter((r) => r.value !== 'p0-1'))).toEqual([expect.stringMatching(/acknowledged p0-1 .* is not in the log/)]);
    expect(w.checkLog(0, [...good, { offset: 4n, value: 'p0-2' }])).toEqual([expect.stringMatching(/p0-2 is stored twice, at 3 and 4/)]);
    expect(w.checkLog(0, [good[0]!, { offset: 1n, value: 'p0-2' }, good[2]!, { offset: 3n, value: 'p0-1' }])).toEqual([
      'offset 3: p0-1 after number 2: out of send order',
      expect.stringMatching(/acknowledged p0-1 at offset 1 is stored at 3/),
    ]);
    expect(w.checkLog(0, [...good, { offset: 4n, value: 'p1-7' }])).toEqual([expect.stringMatching(/does not belong in partition 0/)]);
    expect(w.checkLog(0, [{ offset: 0n, value: 'p0-1' }, { offset: 1n, value: 'p0-2' }, { offset: 2n, value: 'q0-0' }])).toEqual(expect.arrayContaining([
      expect.stringMatching(/a reader was given p0-0 at offset 0; the log has p0-1 there/),
      expect.stringMatching(/acknowledged p0-1 at offset 1 is stored at 0/),
    ]));

    const batch = (baseOffset: number, epoch: number): Buffer => {
      const bytes = encodeBatch([{ value: `v${baseOffset}` }, { value: `w${baseOffset}` }], 1_700_000_000_000);
      stampBaseOffset(bytes, 0, baseOffset);
      stampPartitionLeaderEpoch(bytes, 0, epoch);
      return bytes;
    };
    const copy = (nodeId: number, batches: Buffer[]): ReplicaCopy => ({ nodeId, logStartOffset: 0, logEndOffset: 4, batches, readUpTo: 2 * batches.length, recoveryLog: [] });
    expect(compareReplicas([copy(1, [batch(0, 0), batch(2, 1)]), copy(2, [batch(0, 0), batch(2, 1)])], 4)).toEqual([]);
    const size = batch(2, 1).length;
    // The leader epoch lies outside the CRC: only a byte comparison sees it differ.
    expect(compareReplicas([copy(1, [batch(0, 0), batch(2, 1)]), copy(2, [batch(0, 0), batch(2, 2)])], 4)).toEqual([`batch 1 differs: broker 1 [2..3] epoch 1, ${size} bytes, broker 2 [2..3] epoch 2, ${size} bytes`]);
    expect(compareReplicas([copy(1, [batch(0, 0), batch(2, 1)]), copy(2, [batch(0, 0)])], 4)).toEqual([
      'broker 2: batches end at 2, the high watermark is 4 (log end 4)',
      `batch 1 differs: broker 1 [2..3] epoch 1, ${size} bytes, broker 2 has none`,
    ]);
  });
});
