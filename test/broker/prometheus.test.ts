/**
 * The Prometheus registry: docs/metrics.md lists exactly the rill_ metrics the registry has (name
 * and type), a broker in process exposes per-partition counters that move with produce, and the
 * fixed histogram renders cumulative buckets.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { FixedHistogram } from '../../src/broker/prometheus.js';
import { Producer } from '../../src/client/index.js';
import { Admin } from '../../src/client/admin.js';
import { repoRoot, tempDir } from '../helpers/broker-process.js';

const brokers: Broker[] = [];

afterAll(async () => {
  for (const broker of brokers) await broker.stop();
});

async function startBroker(): Promise<Broker> {
  const broker = new Broker({ dataDir: tempDir('prometheus'), port: 0, log: () => {} });
  brokers.push(broker);
  await broker.start();
  return broker;
}

function documented(): Map<string, string> {
  const text = fs.readFileSync(path.join(repoRoot, 'docs/metrics.md'), 'utf8');
  const rows = [...text.matchAll(/^\| `(rill_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)];
  return new Map(rows.map((row) => [row[1]!, row[2]!]));
}

describe('Prometheus registry', () => {
  it('has exactly the metrics docs/metrics.md lists, with their types', async () => {
    const broker = await startBroker();
    const registered = new Map<string, string>();
    for (const metric of (await broker.prometheus.registry()).getMetricsAsArray()) {
      const { name, type } = await (metric as unknown as { get(): Promise<{ name: string; type: string }> | { name: string; type: string } }).get();
      if (name.startsWith('rill_')) registered.set(name, type);
    }
    expect(Object.fromEntries([...registered].sort())).toEqual(Object.fromEntries([...documented()].sort()));
  });

  it('keeps one registry per broker: two brokers in one process count separately', async () => {
    const [a, b] = [await startBroker(), await startBroker()];
    const admin = new Admin({ bootstrap: `127.0.0.1:${a.port}` });
    await admin.createTopics([{ topic: 'in-process', partitions: 1 }]);
    admin.close();
    const producer = new Producer({ bootstrap: `127.0.0.1:${a.port}` });
    await Promise.all(Array.from({ length: 10 }, (_, i) => producer.send({ topic: 'in-process', value: `v${i}` })));
    await producer.close();
    expect(await a.prometheus.text()).toMatch(/^rill_partition_records_in_total\{topic="in-process",partition="0"\} 10$/m);
    expect(await b.prometheus.text()).not.toContain('in-process');
    expect(await a.prometheus.registry()).not.toBe(await b.prometheus.registry());
  });

  it('renders cumulative buckets, sum and count', () => {
    const histogram = new FixedHistogram([1, 5]);
    for (const value of [0.5, 1, 3, 7]) histogram.observe(value);
    const samples = histogram.samples('x', { api: 'Produce' });
    expect(samples.map((s) => [s.metricName, s.labels['le'] ?? null, s.value])).toEqual([
      ['x_bucket', 1, 2], ['x_bucket', 5, 3], ['x_bucket', '+Inf', 4], ['x_sum', null, 11.5], ['x_count', null, 4],
    ]);
  });
});
