/**
 * A cluster of real processes: one etcd (Debian's etcd-server, started by the test on free ports)
 * and brokers started with --etcd. Membership by lease, the controller election and what
 * `rill cluster describe` shows, through the faults that matter: a second broker with a taken
 * node id, SIGKILL of the controller, a graceful stop, and etcd itself SIGKILLed and restarted.
 * Every wait polls with a generous deadline; nothing sleeps a fixed time. Each test uses its own
 * cluster name, so the tests share one etcd without seeing each other.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer, type ClusterDescription } from '../../src/client/index.js';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { closedPort } from '../helpers/cli-process.js';
import { startEtcd, type EtcdProcess } from '../helpers/etcd-process.js';

const leaseTtlMs = 4000;
const env = { ...process.env, RILL_LEASE_TTL_MS: String(leaseTtlMs) };

let etcd: EtcdProcess;
const running: BrokerProcess[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  await etcd?.stop();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((b) => b.kill()));
});

async function startMember(cluster: string, nodeId: number, extra: string[] = []): Promise<BrokerProcess> {
  const broker = await startBroker({ args: ['--node-id', String(nodeId), '--etcd', etcd.url, '--cluster', cluster, ...extra], env, timeoutMs: 30_000 });
  running.push(broker);
  return broker;
}

async function startCluster(cluster: string): Promise<BrokerProcess[]> {
  return Promise.all([1, 2, 3].map((id) => startMember(cluster, id, ['--rack', `rack-${id}`])));
}

async function describeVia(bootstrap: string): Promise<ClusterDescription> {
  const admin = new Admin({ bootstrap, connectTimeoutMs: 2000, requestTimeoutMs: 5000 });
  try {
    return await admin.describeCluster();
  } finally {
    admin.close();
  }
}

/** Polls `describe` through `bootstrap` until `condition` holds; returns the elapsed ms. */
async function until(bootstrap: string, condition: (d: ClusterDescription) => boolean, limitMs: number, what: string): Promise<{ elapsedMs: number; description: ClusterDescription }> {
  const startedMs = Date.now();
  let last: ClusterDescription | string = 'no answer yet';
  for (;;) {
    try {
      const description = await describeVia(bootstrap);
      if (condition(description)) return { elapsedMs: Date.now() - startedMs, description };
      last = description;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() - startedMs > limitMs) throw new Error(`not within ${limitMs} ms: ${what}; last: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const ids = (d: ClusterDescription): number[] => d.brokers.filter((b) => b.alive).map((b) => b.nodeId);

describe('a cluster on etcd (real processes)', () => {
  it('registers three brokers: describe --json lists them alive with one controller; a fourth with a taken node id exits 2 and leaves its data directory alone; so does one whose etcd does not answer', async () => {
    // Meanwhile (it takes clusterJoinTimeoutMs): a broker whose etcd does not answer gives up with one line.
    const noEtcd = runCli(['broker', '--node-id', '9', '--etcd', `http://127.0.0.1:${await closedPort()}`, '--data-dir', tempDir('no-etcd'), '--port', '0', '--log-level', 'error'], undefined, 60_000, env);
    const brokers = await startCluster('c-register');
    const bootstrap = brokers.map((b) => b.bootstrap).join(',');
    // Registration happens before "ready": every broker already sees itself; the others, at once.
    await until(brokers[0]!.bootstrap, (d) => d.brokers.length === 3 && d.controller !== null, 10_000, 'three brokers and a controller');

    const cli = await runCli(['cluster', 'describe', '--json', '--bootstrap', bootstrap], undefined, 30_000);
    expect(cli.code, cli.stderr).toBe(0);
    const description = JSON.parse(cli.stdout) as ClusterDescription;
    expect(description.cluster).toBe('c-register');
    expect(description.brokers).toEqual(brokers.map((b, i) => ({ nodeId: i + 1, host: '127.0.0.1', port: b.port, rack: `rack-${i + 1}`, alive: true })));
    expect([1, 2, 3]).toContain(description.controller!.nodeId);
    expect(description.controller!.epoch).toBeGreaterThan(0);
    // Every broker names the same controller.
    for (const b of brokers) expect((await describeVia(b.bootstrap)).controller).toEqual(description.controller);
    const text = await runCli(['cluster', 'describe', '-b', brokers[1]!.bootstrap], undefined, 30_000);
    expect(text.stdout).toMatch(new RegExp(`^cluster c-register, controller ${description.controller!.nodeId} \\(epoch ${description.controller!.epoch}\\)`));
    expect(text.stdout).toMatch(new RegExp(`\\n2 +127\\.0\\.0\\.1:${brokers[1]!.port} +rack-2 +yes`));

    const dataDir = tempDir('duplicate');
    fs.writeFileSync(path.join(dataDir, 'sentinel'), 'untouched');
    const duplicate = await runCli(['broker', '--node-id', '1', '--etcd', etcd.url, '--cluster', 'c-register', '--data-dir', dataDir, '--port', '0', '--log-level', 'warn'], undefined, 30_000, env);
    expect(duplicate.code).toBe(2);
    expect(duplicate.stderr.trim()).toBe(`rill broker: node id 1 is taken in cluster c-register by a live broker at 127.0.0.1:${brokers[0]!.port} (host ${os.hostname()}, pid ${brokers[0]!.child.pid}, data directory ${brokers[0]!.dataDir}); give this broker another --node-id, or stop that one first`);
    expect(duplicate.stdout).not.toContain('ready');
    expect(fs.readdirSync(dataDir)).toEqual(['sentinel']);
    expect(fs.readFileSync(path.join(dataDir, 'sentinel'), 'utf8')).toBe('untouched');
    // The refused broker took no seat: the cluster is as it was.
    expect((await describeVia(brokers[0]!.bootstrap)).brokers.map((b) => b.port)).toEqual(brokers.map((b) => b.port));

    const unreachable = await noEtcd;
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr.trim()).toMatch(/^rill broker: could not register in cluster rill within 15000 ms \(etcd at http:\/\/127\.0\.0\.1:\d+: .*\); is etcd running and reachable at the --etcd URLs\?$/);
  });

  it('SIGKILL of the controller: another broker takes over within the lease TTL and the dead one is gone; SIGTERM removes a broker at once', async () => {
    const brokers = await startCluster('c-failover');
    const { description } = await until(brokers[0]!.bootstrap, (d) => d.brokers.length === 3 && d.controller !== null, 10_000, 'settled');
    const oldController = description.controller!;
    const victim = brokers[oldController.nodeId - 1]!;
    const survivors = brokers.filter((b) => b !== victim);
    await victim.kill();
    const failover = await until(survivors[0]!.bootstrap, (d) => d.controller !== null && d.controller.nodeId !== oldController.nodeId && ids(d).length === 2, leaseTtlMs + 10_000, 'a new controller');
    expect(failover.description.controller!.epoch).toBeGreaterThan(oldController.epoch);
    expect(ids(failover.description)).not.toContain(oldController.nodeId);
    // The kill was noticed through the lease: no sooner than the TTL allows, and about when it ran out.
    console.log(`controller ${oldController.nodeId} SIGKILLed: broker ${failover.description.controller!.nodeId} controller after ${failover.elapsedMs} ms (lease TTL ${leaseTtlMs} ms)`);
    expect(failover.elapsedMs).toBeGreaterThan(leaseTtlMs - 1500);
    const other = await describeVia(survivors[1]!.bootstrap);
    expect(other.controller).toEqual(failover.description.controller);

    // A graceful stop of the new controller: its lease is revoked, so the last broker sees it gone
    // and takes the seat at once, not after a TTL.
    const leavingId = failover.description.controller!.nodeId;
    const leaving = brokers[leavingId - 1]!;
    const staying = survivors.find((b) => b !== leaving)!;
    const stayingId = brokers.indexOf(staying) + 1;
    expect(await leaving.stop()).toBe(0);
    expect(leaving.output()).toMatch(/left cluster c-failover: lease revoked/);
    const gone = await until(staying.bootstrap, (d) => ids(d).join() === String(stayingId) && d.controller?.nodeId === stayingId, leaseTtlMs + 10_000, 'the stopped broker gone');
    console.log(`broker ${leavingId} stopped: gone, and broker ${stayingId} controller, after ${gone.elapsedMs} ms`);
    expect(gone.elapsedMs).toBeLessThan(leaseTtlMs);
  });

  it('SIGSTOP of the controller past its lease: another takes over; after SIGCONT the paused one knows it is fenced and rejoins as a follower', async () => {
    const brokers = await startCluster('c-paused');
    const { description } = await until(brokers[0]!.bootstrap, (d) => d.brokers.length === 3 && d.controller !== null, 10_000, 'settled');
    const oldController = description.controller!;
    const paused = brokers[oldController.nodeId - 1]!;
    const other = brokers.find((b) => b !== paused)!;
    paused.child.kill('SIGSTOP');
    try {
      await until(other.bootstrap, (d) => d.controller !== null && d.controller.nodeId !== oldController.nodeId && !ids(d).includes(oldController.nodeId), leaseTtlMs + 10_000, 'a new controller while paused');
    } finally {
      paused.child.kill('SIGCONT');
    }
    const rejoined = await until(paused.bootstrap, (d) => ids(d).length === 3 && d.controller !== null, leaseTtlMs + 10_000, 'the paused broker back in');
    expect(rejoined.description.controller!.nodeId).not.toBe(oldController.nodeId);
    expect(rejoined.description.controller!.epoch).toBeGreaterThan(oldController.epoch);
    expect(paused.output()).toMatch(/is fenced: its etcd lease was not renewed in time/);
    expect(paused.output()).toMatch(/registered again as broker/);
  });

  it('Metadata gives each broker\'s address on the listener the client came in on (its rill listener if it has none of that name), advertised addresses included', async () => {
    const config = (advertise: string | null): string => {
      const file = path.join(tempDir('cluster-config'), 'rill.yaml');
      const rill = advertise === null ? '    listen: 127.0.0.1:0\n' : `    listen: 127.0.0.1:0\n    advertise: ${advertise}\n`;
      fs.writeFileSync(file, `listeners:\n  rill:\n${rill}  internal:\n    listen: 127.0.0.1:0\n`);
      return file;
    };
    const startWith = async (nodeId: number, file: string | null): Promise<BrokerProcess> => {
      const args = ['--node-id', String(nodeId), '--etcd', etcd.url, '--cluster', 'c-listeners', ...(file === null ? ['--port', '0'] : ['--config', file])];
      const broker = await startBroker({ port: null, args, env, timeoutMs: 30_000 });
      running.push(broker);
      return broker;
    };
    const internalPort = (b: BrokerProcess): number => Number(/listening on 127\.0\.0\.1:(\d+) \(listener internal\)/.exec(b.output())![1]);
    const [one, two, three] = await Promise.all([startWith(1, config('rill-1.example.internal:19092')), startWith(2, config(null)), startWith(3, null)]);
    const viaRill = await until(two!.bootstrap, (d) => d.brokers.length === 3, 10_000, 'three brokers');
    expect(viaRill.description.brokers.map((b) => `${b.nodeId}=${b.host}:${b.port}`)).toEqual(['1=rill-1.example.internal:19092', `2=127.0.0.1:${two!.port}`, `3=127.0.0.1:${three!.port}`]);
    const viaInternal = await until(`127.0.0.1:${internalPort(two!)}`, (d) => d.brokers.length === 3, 10_000, 'three brokers');
    expect(viaInternal.description.brokers.map((b) => `${b.nodeId}=${b.host}:${b.port}`)).toEqual([`1=127.0.0.1:${internalPort(one!)}`, `2=127.0.0.1:${internalPort(two!)}`, `3=127.0.0.1:${three!.port}`]);
  });

  it('etcd SIGKILLed: brokers keep serving the partitions they lead, refuse topic changes, say they are not registered, and register again once etcd is back', async () => {
    const brokers = await startCluster('c-etcd-down');
    const all = brokers.map((b) => b.bootstrap).join(',');
    await until(brokers[0]!.bootstrap, (d) => d.brokers.length === 3 && d.controller !== null, 10_000, 'settled');
    const admin = new Admin({ bootstrap: all, requestTimeoutMs: 20_000 });
    try {
      await admin.createTopics([{ topic: 'before-outage', partitions: 3, replicationFactor: 3 }]);
      await etcd.kill();
      // Each broker notices when its lease may have run out: not alive itself, no controller; it
      // still names the others as last known, so clients reach every leader.
      for (const b of brokers) {
        const { description } = await until(b.bootstrap, (d) => d.controller === null && d.brokers.some((x) => !x.alive), leaseTtlMs + 10_000, 'fenced');
        expect(description.brokers.map((x) => x.nodeId).sort()).toEqual([1, 2, 3]);
      }
      const producer = new Producer({ bootstrap: all, acks: 'all' });
      await Promise.all(Array.from({ length: 30 }, (_, n) => producer.send({ topic: 'before-outage', key: `k${n}`, value: `v${n}` })));
      await producer.close();
      const values: string[] = [];
      for await (const message of new PartitionReader({ bootstrap: all, topic: 'before-outage', from: 'earliest', stopAtEnd: true })) values.push(Buffer.from(message.value!).toString());
      expect(values.sort()).toEqual(Array.from({ length: 30 }, (_, n) => `v${n}`).sort());
      // A topic change needs etcd: refused with a retriable error, not half done.
      await expect(admin.createTopics([{ topic: 'during-outage', partitions: 1 }])).rejects.toThrow(/LEADER_NOT_AVAILABLE|not registered/);
      for (const b of brokers) expect(b.child.exitCode).toBeNull();

      await etcd.restart();
      const back = await until(brokers[2]!.bootstrap, (d) => ids(d).length === 3 && d.controller !== null, 20_000, 'all registered again with a controller');
      console.log(`etcd restarted: all three registered again after ${back.elapsedMs} ms`);
      for (const b of brokers) expect((await describeVia(b.bootstrap)).controller).toEqual(back.description.controller);
      expect(brokers[0]!.output()).toMatch(/is fenced/);
      await admin.createTopics([{ topic: 'after-outage', partitions: 1 }]);
    } finally {
      admin.close();
    }
  });
});
