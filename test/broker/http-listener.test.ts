/**
 * The HTTP listener's bounds, in process over real TCP: methods, bodies, URL and header sizes,
 * the connection limit, garbage bytes, a collector that throws, and readiness. The listener must
 * answer or close, and keep serving afterwards.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerMetrics } from '../../src/broker/metrics.js';
import { BrokerRegistry } from '../../src/broker/prometheus.js';
import { HttpListener } from '../../src/broker/http/server.js';
import type { OverviewSource } from '../../src/broker/http/overview.js';
import { httpConnectionsMax, httpHeaderBytesMax, httpUrlBytesMax } from '../../src/broker/http/limits.js';
import type { Partition } from '../../src/broker/partition.js';

let ready = false;
let failScrape = false;
const logged: string[] = [];
const source: OverviewSource = {
  metrics: new BrokerMetrics(),
  partitions: () => {
    if (failScrape) throw new Error('collector failed');
    return [] as Partition[];
  },
  requestsInFlight: () => 0,
  groups: () => [],
  get ready() {
    return ready;
  },
  info: () => ({ nodeId: 7, host: '127.0.0.1', port: 9092, httpPort: null, version: 'test', startedAtMs: 0 }),
};
let listener: HttpListener;

beforeAll(async () => {
  listener = await HttpListener.start('127.0.0.1', 0, source, new BrokerRegistry(source), (_level, message) => logged.push(message));
});

afterAll(async () => {
  await listener?.close();
});

function get(path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: listener.port, path, method: options.method ?? 'GET', headers: options.headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: response.headers }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(listener.port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  });
}

function rawExchange(bytes: Buffer | string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(listener.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.end(bytes);
  });
}

describe('HTTP listener bounds', () => {
  it('serves GET and HEAD and refuses every other method with 405 and Allow', async () => {
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/healthz', { method: 'HEAD' })).body).toBe('');
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const reply = await get('/metrics', { method });
      expect(reply.status, method).toBe(405);
      expect(reply.headers['allow']).toBe('GET, HEAD');
    }
  });

  it('refuses request bodies, long targets and oversized headers', async () => {
    expect((await get('/metrics', { headers: { 'Content-Length': '3' }, body: 'abc' })).status).toBe(413);
    expect((await get('/metrics', { headers: { 'Transfer-Encoding': 'chunked' }, body: 'abc' })).status).toBe(413);
    expect((await get(`/${'x'.repeat(httpUrlBytesMax)}`)).status).toBe(414);
    expect((await get('/healthz', { headers: { 'X-Padding': 'p'.repeat(httpHeaderBytesMax) } })).status).toBe(431);
  });

  it('answers garbage with 400 or closes, and keeps serving', async () => {
    for (const bytes of ['\u0000\u0001\u0002\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', Buffer.alloc(70_000, 0x41)]) {
      const answer = await rawExchange(bytes);
      expect(answer === '' || /^HTTP\/1\.1 (400|413|431|505)/.test(answer), JSON.stringify(answer.slice(0, 40))).toBe(true);
    }
    expect((await get('/healthz')).status).toBe(200);
  });

  it(`accepts at most ${httpConnectionsMax} connections at once`, async () => {
    const sockets = await Promise.all(Array.from({ length: httpConnectionsMax }, () => connect()));
    const extra = await connect();
    await new Promise<void>((resolve) => extra.once('close', () => resolve()));
    for (const socket of sockets) socket.destroy();
    // The slots free up as the server sees the closes.
    let status = 0;
    while (status !== 200) status = await get('/healthz').then((r) => r.status, () => 0);
    expect(status).toBe(200);
  });

  it('says not ready (503) until the broker is ready', async () => {
    ready = false;
    expect((await get('/readyz')).status).toBe(503);
    ready = true;
    expect((await get('/readyz')).status).toBe(200);
  });

  it('answers 500 when a collector throws, logs it, and keeps serving', async () => {
    failScrape = true;
    try {
      expect((await get('/metrics')).status).toBe(500);
      expect((await get('/api/overview')).status).toBe(500);
    } finally {
      failScrape = false;
    }
    expect(logged.some((line) => line.includes('collector failed'))).toBe(true);
    expect((await get('/metrics')).status).toBe(200);
  });

  it('sends the console with headers that forbid inline script', async () => {
    const page = await get('/');
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['x-content-type-options']).toBe('nosniff');
  });
});
