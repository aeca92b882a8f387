/**
 * A comma-separated bootstrap list: clients and every CLI command go to the first broker of the
 * list that accepts a connection, so a list that starts with a broker that is down still works.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { RillError } from '../../src/lib/errors.js';
import { runCli, startBroker, type BrokerProcess } from '../helpers/broker-process.js';
import { closedPort } from '../helpers/cli-process.js';

let broker: BrokerProcess;
let down: string;

beforeAll(async () => {
  broker = await startBroker();
  down = `127.0.0.1:${await closedPort()}`;
});

afterAll(async () => {
  await broker?.kill();
});

describe('a bootstrap list', () => {
  it('the client tries each address in turn, and keeps using the one that answered', async () => {
    const admin = new Admin({ bootstrap: `${down}, ${broker.bootstrap}` });
    try {
      await admin.createTopics([{ topic: 'listed', partitions: 2 }]);
      expect(await admin.listTopics()).toContain('listed');
      expect((await admin.describeCluster()).answeredBy).toBe(broker.bootstrap);
      expect((await admin.describeTopic('listed')).partitions).toHaveLength(2);
    } finally {
      admin.close();
    }
  });

  it('names every address when none accepts a connection', async () => {
    const other = `127.0.0.1:${await closedPort()}`;
    const admin = new Admin({ bootstrap: [down, other], connectTimeoutMs: 2000 });
    try {
      const error = await admin.listTopics().then(() => null, (e: unknown) => e);
      expect(error).toBeInstanceOf(RillError);
      expect((error as RillError).code).toBe('CONNECTION_ERROR');
      expect((error as RillError).message).toContain(`no bootstrap broker accepted a connection (${down}: `);
      expect((error as RillError).message).toContain(`; ${other}: `);
    } finally {
      admin.close();
    }
  });

  it('every CLI command takes the list: --bootstrap DOWN,UP works', async () => {
    const list = `${down},${broker.bootstrap}`;
    const created = await runCli(['topics', 'create', 'via-list', '-p', '1', '--bootstrap', list], undefined, 30_000);
    expect(created.code, created.stderr).toBe(0);
    const produced = await runCli(['produce', 'via-list', '-b', list], 'one\ntwo\n', 30_000);
    expect(produced.code, produced.stderr).toBe(0);
    const consumed = await runCli(['consume', 'via-list', '--from-beginning', '--exit-at-end', '-b', list], undefined, 30_000);
    expect(consumed.stdout).toBe('one\ntwo\n');
    const described = await runCli(['cluster', 'describe', '-b', list], undefined, 30_000);
    expect(described.stdout).toMatch(/^a single broker \(not in a cluster\), controller 0 \(epoch 0\)/);
  });
});
