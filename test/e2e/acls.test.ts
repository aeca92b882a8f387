/**
 * Authorization end to end: a broker process with `--auth required --super-users admin`, users
 * added offline, ACLs managed with `rill acls` as the admin, and each decision checked the way a
 * user meets it: the CLI's exit status and error code, the client's RillError, what Metadata and
 * list calls show, the denial counter in /metrics and the log lines.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { Admin } from '../../src/client/admin.js';
import { Producer } from '../../src/client/producer.js';
import { PartitionReader } from '../../src/client/reader.js';
import { Consumer } from '../../src/client/consumer.js';
import { RillError } from '../../src/lib/errors.js';

const password = 'correct horse battery staple';
const users = ['admin', 'producer', 'consumer', 'ops'];

async function scrape(broker: BrokerProcess, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`)).text();
  const match = new RegExp(`^${name}\\{${labels}\\} (\\d+)`, 'm').exec(text);
  return match === null ? 0 : Number(match[1]);
}

/** Reads the whole topic as `user`; resolves to the values, rejects with the broker's error. */
async function readAll(bootstrap: string, user: string, topic: string): Promise<string[]> {
  const reader = new PartitionReader({ bootstrap, sasl: { username: user, password }, topic, from: 'earliest', stopAtEnd: true });
  const values: string[] = [];
  try {
    for await (const batch of reader.batches()) for (const m of batch) values.push(m.value?.toString() ?? '');
  } finally {
    reader.close();
  }
  return values;
}

/** Consumes `count` records through a group as `user`; rejects with the broker's error when it cannot join. */
async function consumeAsMember(bootstrap: string, user: string, groupId: string, topic: string, count: number): Promise<string[]> {
  const consumer = new Consumer({ bootstrap, sasl: { username: user, password }, groupId, fromBeginning: true });
  consumer.subscribe([topic]);
  const values: string[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      consumer.run({
        eachMessage: async (m) => {
          values.push(m.value?.toString() ?? '');
          if (values.length >= count) resolve();
        },
      }).catch(reject);
    });
  } finally {
    await consumer.close();
  }
  return values;
}

async function refusal(action: Promise<unknown>): Promise<string> {
  try {
    await action;
  } catch (error) {
    if (error instanceof RillError) return error.code;
    throw error;
  }
  return 'allowed';
}

describe('ACLs (--auth required --super-users admin)', () => {
  let broker: BrokerProcess;
  let dataDir: string;
  const env = { ...process.env, RILL_PASSWORD: password };
  const as = (user: string): string[] => ['--bootstrap', broker.bootstrap, '--user', user];
  const cli = (user: string, args: string[], input?: string) => runCli([...args, ...as(user)], input, 60_000, env);
  const admin = (user: string): Admin => new Admin({ bootstrap: broker.bootstrap, sasl: { username: user, password } });
  const clients: { close(): void | Promise<void> }[] = [];
  const client = <T extends { close(): void | Promise<void> }>(c: T): T => {
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    dataDir = tempDir('acls');
    for (const user of users) expect((await runCli(['users', 'add', user, '--data-dir', dataDir], `${password}\n`)).code).toBe(0);
    broker = await startBroker({ dataDir, http: '127.0.0.1:0', args: ['--auth', 'required', '--super-users', 'admin'] });
    const admin = client(new Admin({ bootstrap: broker.bootstrap, sasl: { username: 'admin', password } }));
    await admin.createTopics([{ topic: 'orders', partitions: 1 }, { topic: 'secrets', partitions: 1 }, { topic: 'billing.invoices', partitions: 1 }]);
  });

  afterAll(async () => {
    for (const c of clients) await c.close();
    await broker?.kill();
  });

  it('allows nothing without an ACL: produce, read, metadata and ACL management are refused with their codes', async () => {
    const denied = await cli('producer', ['produce', 'orders'], 'one\n');
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/TOPIC_AUTHORIZATION_FAILED|CLUSTER_AUTHORIZATION_FAILED/);
    const listed = await cli('producer', ['topics', 'list']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout.trim()).toBe('');
    const manage = await cli('producer', ['acls', 'add', '--allow', 'producer', '--operation', 'write', '--topic', 'orders']);
    expect(manage.code).toBe(1);
    expect(manage.stderr).toContain('CLUSTER_AUTHORIZATION_FAILED');
    const listAcls = await cli('producer', ['acls', 'list']);
    expect(listAcls.code).toBe(1);
    expect(listAcls.stderr).toContain('CLUSTER_AUTHORIZATION_FAILED');
  });

  it('an ACL allows what it names; the super user manages ACLs with rill acls; they survive a restart', async () => {
    const added = await cli('admin', ['acls', 'add', '--allow', 'producer', '--operation', 'write', '--topic', 'orders']);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain('User:producer');
    const produced = await cli('producer', ['produce', 'orders'], 'one\ntwo\n');
    expect(produced.code, produced.stderr).toBe(0);
    // write implies describe: the producer sees the topic it may write, and only that one.
    expect((await cli('producer', ['topics', 'list'])).stdout.trim().split('\n')).toEqual(['orders']);
    // ...but not read.
    expect(await refusal(readAll(broker.bootstrap, 'producer', 'orders'))).toBe('TOPIC_AUTHORIZATION_FAILED');
    const listed = await cli('admin', ['acls', 'list', '--principal', 'producer']);
    expect(listed.stdout).toMatch(/allow\s+User:producer\s+write\s+topic\s+orders/);
    const stored = JSON.parse(fs.readFileSync(path.join(dataDir, 'acls.json'), 'utf8')) as { acls: unknown[] };
    expect(stored.acls).toEqual([{ principal: 'User:producer', resourceType: 'topic', name: 'orders', patternType: 'literal', operation: 'write', permission: 'allow' }]);
  });

  it('consuming through a group needs read on the topic and on the group', async () => {
    expect((await cli('admin', ['acls', 'add', '--allow', 'consumer', '--operation', 'read', '--topic', 'orders'])).code).toBe(0);
    expect(await readAll(broker.bootstrap, 'consumer', 'orders')).toEqual(['one', 'two']);
    expect(await refusal(consumeAsMember(broker.bootstrap, 'consumer', 'billing', 'orders', 2))).toBe('GROUP_AUTHORIZATION_FAILED');
    expect((await cli('admin', ['acls', 'add', '--allow', 'consumer', '--operation', 'read', '--group', 'billing'])).code).toBe(0);
    expect(await consumeAsMember(broker.bootstrap, 'consumer', 'billing', 'orders', 2)).toEqual(['one', 'two']);
    // The group's committed offsets are visible to whom may describe the group.
    const committed = await client(admin('consumer')).fetchGroupOffsets('billing');
    expect(committed.map((o) => o.offset)).toEqual([2n]);
    // Reading is not writing.
    const write = await cli('consumer', ['produce', 'orders'], 'x\n');
    expect(write.code).toBe(1);
    expect(write.stderr).toMatch(/TOPIC_AUTHORIZATION_FAILED|CLUSTER_AUTHORIZATION_FAILED/);
    // A group it may not read is refused whatever the topic allows.
    expect(await refusal(consumeAsMember(broker.bootstrap, 'consumer', 'other', 'orders', 1))).toBe('GROUP_AUTHORIZATION_FAILED');
    // A group it may read, subscribed to a topic it may not read.
    expect(await refusal(consumeAsMember(broker.bootstrap, 'consumer', 'billing', 'secrets', 1))).toBe('TOPIC_AUTHORIZATION_FAILED');
  });

  it('prefix ACLs cover every name starting with the prefix; deny wins over any allow', async () => {
    expect((await cli('admin', ['acls', 'add', '--allow', 'ops', '--operation', 'all', '--topic', 'billing.', '--prefix'])).code).toBe(0);
    const ops = client(admin('ops'));
    await ops.createTopics([{ topic: 'billing.refunds', partitions: 2 }]);
    expect(await refusal(ops.createTopics([{ topic: 'payroll', partitions: 1 }]))).toBe('TOPIC_AUTHORIZATION_FAILED');
    expect((await ops.listTopics()).sort()).toEqual(['billing.invoices', 'billing.refunds']);
    await ops.alterTopicConfig('billing.invoices', { 'retention.ms': 3_600_000 });

    expect((await cli('admin', ['acls', 'add', '--deny', 'ops', '--operation', 'delete', '--topic', 'billing.invoices'])).code).toBe(0);
    expect(await refusal(ops.deleteTopics(['billing.invoices']))).toBe('TOPIC_AUTHORIZATION_FAILED');
    await ops.deleteTopics(['billing.refunds']);
    const producer = client(new Producer({ bootstrap: broker.bootstrap, sasl: { username: 'ops', password } }));
    await producer.send({ topic: 'billing.invoices', value: 'allowed by the prefix' });
    // A deny for everyone (*) takes even the prefix allow away.
    expect((await cli('admin', ['acls', 'add', '--deny', '*', '--operation', 'write', '--topic', 'billing.invoices'])).code).toBe(0);
    expect(await refusal(producer.send({ topic: 'billing.invoices', value: 'denied' }))).toBe('TOPIC_AUTHORIZATION_FAILED');
    const removed = await cli('admin', ['acls', 'remove', '--deny', '*', '--operation', 'write', '--topic', 'billing.invoices']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toContain('removed');
    await producer.send({ topic: 'billing.invoices', value: 'allowed again' });
  });

  it('the super user bypasses ACLs; cluster operations need ACLs on the cluster', async () => {
    const root = client(admin('admin'));
    expect((await root.describeBrokerConfig()).length).toBeGreaterThan(0);
    await root.createTopics([{ topic: 'root-only', partitions: 1 }]);
    const ops = client(admin('ops'));
    expect(await refusal(ops.describeBrokerConfig())).toBe('CLUSTER_AUTHORIZATION_FAILED');
    await root.createAcls([{ principal: 'User:ops', resourceType: 'cluster', name: 'rill-cluster', patternType: 'literal', operation: 'describe', permission: 'allow' }]);
    expect((await ops.describeBrokerConfig()).length).toBeGreaterThan(0);
    expect(await refusal(ops.createAcls([{ principal: 'User:ops', resourceType: 'topic', name: '*', patternType: 'literal', operation: 'all', permission: 'allow' }]))).toBe('CLUSTER_AUTHORIZATION_FAILED');
    // Users are cluster resources too: managing them needs alter on the cluster.
    const addUser = await cli('ops', ['users', 'add', 'mallory'], 'pw-of-mallory\n');
    expect(addUser.code).toBe(1);
    expect(addUser.stderr).toContain('CLUSTER_AUTHORIZATION_FAILED');
    expect((await cli('admin', ['users', 'list'])).stdout).not.toContain('mallory');
    // A principal that may describe the cluster may list the ACLs.
    expect((await ops.describeAcls({ principal: 'User:ops' })).length).toBeGreaterThan(0);
  });

  it('denials are counted by resource type and logged once per principal and resource, not per request', async () => {
    const before = await scrape(broker, 'rill_authorization_denials_total', 'resource_type="topic"');
    for (let i = 0; i < 20; i++) expect(await refusal(readAll(broker.bootstrap, 'consumer', 'secrets'))).toBe('TOPIC_AUTHORIZATION_FAILED');
    expect(await scrape(broker, 'rill_authorization_denials_total', 'resource_type="topic"')).toBeGreaterThanOrEqual(before + 20);
    const lines = broker.output().split('\n').filter((line) => line.includes('authorization_denied') && line.includes('User:consumer') && line.includes('secrets'));
    expect(lines.length).toBe(1);
    // Listing topics hides what the principal may not describe without counting it as a denial.
    const beforeList = await scrape(broker, 'rill_authorization_denials_total', 'resource_type="topic"');
    expect((await client(admin('consumer')).listTopics()).sort()).toEqual(['orders']);
    expect(await scrape(broker, 'rill_authorization_denials_total', 'resource_type="topic"')).toBe(beforeList);
  });

  it('ACLs are kept across a restart', async () => {
    await broker.stop();
    broker = await startBroker({ dataDir, http: '127.0.0.1:0', args: ['--auth', 'required', '--super-users', 'admin'] });
    const produced = await cli('producer', ['produce', 'orders'], 'three\n');
    expect(produced.code, produced.stderr).toBe(0);
    const denied = await cli('producer', ['produce', 'secrets'], 'x\n');
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('TOPIC_AUTHORIZATION_FAILED');
  });
});

describe('ACL management on a broker without authentication', () => {
  it('answers SECURITY_DISABLED (nothing would enforce them)', async () => {
    const broker = await startBroker();
    try {
      const listed = await runCli(['acls', 'list', '--bootstrap', broker.bootstrap]);
      expect(listed.code).toBe(1);
      expect(listed.stderr).toContain('SECURITY_DISABLED');
    } finally {
      await broker.kill();
    }
  });
});

describe('protected mode', () => {
  it('a listener off loopback without authentication refuses to start, and says how to fix it', async () => {
    const dataDir = tempDir('protected');
    const refused = await runCli(['broker', '--data-dir', dataDir, '--listen', '0.0.0.0:0', '--http', 'off']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/not loopback.*--auth required.*--allow-anonymous/);
    expect(fs.readdirSync(dataDir)).toEqual([]);
  });

  it('--allow-anonymous starts it with a warning; --auth required starts it without one', async () => {
    const open = await startBroker({ port: null, args: ['--listen', '0.0.0.0:0', '--http', 'off', '--allow-anonymous'] });
    try {
      expect(open.output()).toMatch(/allow-anonymous.*not on loopback/);
    } finally {
      await open.kill();
    }
    const secured = await startBroker({ port: null, args: ['--listen', '0.0.0.0:0', '--http', 'off', '--auth', 'required'] });
    try {
      expect(secured.output()).not.toContain('allow-anonymous');
    } finally {
      await secured.kill();
    }
  });
});
