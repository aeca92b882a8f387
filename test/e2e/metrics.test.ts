/**
 * The HTTP listener of a real broker process (`--http 127.0.0.1:0`): /metrics passes
 * `promtool check metrics` and its per-partition counters move by what was produced and fetched;
 * /healthz and /readyz answer; the listener refuses what it must (POST, bodies, oversized
 * headers) and keeps serving; /api/overview lists the topic.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer } from '../../src/client/index.js';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.js';

let broker: BrokerProcess;

beforeAll(async () => {
  broker = await startBroker({ http: '127.0.0.1:0' });
});

afterAll(async () => {
  await broker?.kill();
});

interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: broker.httpPort!, path, method: options.method ?? 'GET', headers: options.headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Sends raw bytes and returns whatever the server answers before closing. */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(broker.httpPort!, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString()));
    socket.on('error', reject);
    socket.end(bytes);
  });
}

function promtool(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}

/** The value of one sample (`name{labels} value`), 0 if absent. */
function sample(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('HTTP listener', () => {
  it('serves metrics that promtool accepts and that count what was produced and fetched', async () => {
    const topic = 'metrics-e2e';
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic, partitions: 2 }]);
    admin.close();
    const labels = `topic="${topic}",partition="1"`;
    const before = (await request('/metrics')).body;
    const producer = new Producer({ bootstrap: broker.bootstrap });
    const count = 250;
    const value = Buffer.alloc(100, 7);
    await Promise.all(Array.from({ length: count }, () => producer.send({ topic, partition: 1, value })));
    await producer.close();
    const reader = new PartitionReader({ bootstrap: broker.bootstrap, topic, partitions: [1], from: 'earliest', stopAtEnd: true });
    let read = 0;
    for await (const messages of reader.batches()) read += messages.length;
    reader.close();
    expect(read).toBe(count);

    const reply = await request('/metrics');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const check = await promtool(reply.body);
    expect(check.output).toBe('');
    expect(check.code).toBe(0);

    const after = reply.body;
    expect(sample(after, 'rill_partition_records_in_total', labels) - sample(before, 'rill_partition_records_in_total', labels)).toBe(count);
    const bytesIn = sample(after, 'rill_partition_bytes_in_total', labels) - sample(before, 'rill_partition_bytes_in_total', labels);
    expect(bytesIn).toBeGreaterThanOrEqual(count * value.length);
    expect(sample(after, 'rill_partition_log_size_bytes', labels)).toBe(bytesIn);
    expect(sample(after, 'rill_partition_log_end_offset', labels)).toBe(count);
    expect(sample(after, 'rill_partition_records_out_total', labels)).toBeGreaterThanOrEqual(count);
    expect(sample(after, 'rill_partition_records_in_total', `topic="${topic}",partition="0"`)).toBe(0);
    expect(sample(after, 'rill_requests_total', 'api="Produce"')).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'rill_request_duration_seconds_count', 'api="Produce"')).toBeGreaterThanOrEqual(1);
    expect(after).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect(after).toMatch(/^process_resident_memory_bytes /m);
    expect(after).toMatch(/^rill_broker_ready 1$/m);
  });

  it('reports consumer groups and their lag per partition', async () => {
    const admin = new Admin({ bootstrap: broker.bootstrap });
    try {
      // Offsets set without members: partition 0 is empty (lag 0), partition 1 ends at 250.
      await admin.resetGroupOffsets('lagging', 'metrics-e2e', 100n);
    } finally {
      admin.close();
    }
    const text = (await request('/metrics')).body;
    expect(sample(text, 'rill_consumer_group_lag', 'group="lagging",topic="metrics-e2e",partition="1"')).toBe(150);
    expect(sample(text, 'rill_consumer_group_lag', 'group="lagging",topic="metrics-e2e",partition="0"')).toBe(0);
    expect(sample(text, 'rill_consumer_group_members', 'group="lagging"')).toBe(0);
    expect(text).toMatch(/^rill_consumer_groups 1$/m);
    expect((await promtool(text)).code).toBe(0);
  });

  it('answers /healthz and /readyz', async () => {
    expect((await request('/healthz')).status).toBe(200);
    expect((await request('/readyz')).status).toBe(200);
    const head = await request('/readyz', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it('refuses other methods, bodies, long targets and oversized headers, and keeps serving', async () => {
    const post = await request('/metrics', { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers['allow']).toBe('GET, HEAD');
    expect((await request('/metrics', { method: 'DELETE' })).status).toBe(405);
    expect((await request('/metrics', { headers: { 'Content-Length': '5' }, body: 'hello' })).status).toBe(413);
    expect((await request(`/${'a'.repeat(3000)}`)).status).toBe(414);
    expect((await request('/healthz', { headers: { 'X-Big': 'a'.repeat(20_000) } })).status).toBe(431);
    expect((await request('/no-such-page')).status).toBe(404);
    expect(await raw('GARBAGE\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/);
    expect((await request('/healthz')).status).toBe(200);
  });

  it('lists the topic in /api/overview', async () => {
    const reply = await request('/api/overview');
    expect(reply.status).toBe(200);
    const overview = JSON.parse(reply.body) as { broker: { port: number; ready: boolean }; topics: { name: string; partitions: { partition: number; logEndOffset: number }[] }[] };
    expect(overview.broker.port).toBe(broker.port);
    expect(overview.broker.ready).toBe(true);
    const topic = overview.topics.find((t) => t.name === 'metrics-e2e');
    expect(topic?.partitions.map((p) => p.logEndOffset)).toEqual([0, 250]);
  });

  it('serves the console page', async () => {
    const page = await request('/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('/console.js');
    expect((await request('/console.js')).status).toBe(200);
  });
});
