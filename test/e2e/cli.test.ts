/** The README walk-through, run as a newcomer would: the `rill` CLI against a broker process. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startBroker, type BrokerProcess } from '../helpers/broker-process.js';

describe('rill CLI end to end', () => {
  let broker: BrokerProcess;
  let b: string[];

  beforeAll(async () => {
    broker = await startBroker();
    b = ['--bootstrap', broker.bootstrap];
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('creates, lists and describes topics', async () => {
    const created = await runCli(['topics', 'create', 'greetings', '--partitions', '3', ...b]);
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('created topic greetings with 3 partitions');
    const again = await runCli(['topics', 'create', 'greetings', '--partitions', '3', ...b]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('TOPIC_ALREADY_EXISTS');
    const list = await runCli(['topics', 'list', '--json', ...b]);
    expect(JSON.parse(list.stdout)).toEqual(['greetings']);
    const describe = await runCli(['topics', 'describe', 'greetings', '--json', ...b]);
    const description = JSON.parse(describe.stdout);
    expect(description.partitions).toHaveLength(3);
    expect(description.partitions[0]).toMatchObject({ partition: 0, earliestOffset: 0, latestOffset: 0 });
  });

  it('produces stdin lines and reads them back with consume --from-beginning --exit-at-end', async () => {
    const lines = Array.from({ length: 500 }, (_, i) => `user-${i % 7}:hello ${i}`);
    const produced = await runCli(['produce', 'greetings', '--key-separator', ':', '--json', ...b], `${lines.join('\n')}\n`);
    expect(produced.code).toBe(0);
    const summary = JSON.parse(produced.stdout);
    expect(summary).toMatchObject({ topic: 'greetings', sent: 500, acknowledged: 500, failed: 0 });
    const consumed = await runCli(['consume', 'greetings', '--from-beginning', '--exit-at-end', '--json', ...b]);
    expect(consumed.code).toBe(0);
    const records = consumed.stdout.trim().split('\n').map((line) => JSON.parse(line));
    expect(records).toHaveLength(500);
    expect(new Set(records.map((r) => r.value))).toEqual(new Set(lines.map((l) => l.slice(l.indexOf(':') + 1))));
    // Same key, same partition; per partition, offsets dense and in the order produced.
    const partitionOf = new Map<string, number>();
    for (const r of records) {
      expect(partitionOf.get(r.key) ?? r.partition).toBe(r.partition);
      partitionOf.set(r.key, r.partition);
    }
    for (let p = 0; p < 3; p++) {
      const mine = records.filter((r) => r.partition === p);
      expect(mine.map((r) => r.offset)).toEqual(mine.map((_, i) => i));
      const order = mine.map((r) => Number(r.value.split(' ')[1]));
      expect(order).toEqual([...order].sort((x, y) => x - y));
    }
    const busiest = [0, 1, 2].sort((x, y) => records.filter((r) => r.partition === y).length - records.filter((r) => r.partition === x).length)[0]!;
    const plain = await runCli(['consume', 'greetings', '--partition', String(busiest), '--offset', '1', '--exit-at-end', ...b]);
    expect(plain.stdout.trim().split('\n')).toEqual(records.filter((r) => r.partition === busiest).slice(1).map((r) => r.value));
  });

  it('fails clearly on an unknown topic and on bad usage', async () => {
    const produced = await runCli(['produce', 'nope', ...b], 'x\n');
    expect(produced.code).toBe(1);
    expect(produced.stderr).toContain('UNKNOWN_TOPIC_OR_PARTITION');
    const usage = await runCli(['produce', 'greetings', '--acks', '2', ...b]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--acks must be 0, 1 or all');
  });
});
