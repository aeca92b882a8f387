/**
 * The broker's HTTP listener: read-only views for operators and Prometheus.
 *
 *   GET /metrics        Prometheus text format (prometheus.ts)
 *   GET /healthz        200 while the process serves HTTP at all
 *   GET /readyz         200 once recovery is done and the TCP listener is up; 503 before and while stopping
 *   GET /api/overview   JSON the console polls
 *   GET /               the console (console/index.html), and its assets
 *
 * Bounded like the TCP listener (limits.ts): header size, URL length, connections, head/request/
 * keep-alive timeouts. GET and HEAD only (405 otherwise, with Allow); a request that carries a body
 * gets 413 and the connection is closed without reading it. Nothing here changes state. A handler
 * that throws answers 500 and is logged; bad input never reaches past this file.
 *
 * A plain net.Server binds the port at start (so a port in use fails the start as before) and
 * node:http is loaded on the first connection, which is then handed to an http.Server: a broker
 * nobody requests does not carry node:http (every module the broker process holds makes V8 start
 * old-generation collections sooner under produce load: docs/metrics.md, Measured cost).
 */
import type http from 'node:http';
import net from 'node:net';
import type { Log } from '../../lib/log.js';
import { prometheusContentType, type BrokerRegistry } from '../prometheus.js';
import { consoleAssets, type Asset } from './assets.js';
import {
  httpConnectionsMax, httpHeaderBytesMax, httpHeadersTimeoutMs, httpKeepAliveTimeoutMs, httpRequestTimeoutMs,
  httpRequestsPerSocketMax, httpUrlBytesMax,
} from './limits.js';
import { overview, type OverviewSource } from './overview.js';

const securityHeaders: Record<string, string> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'Cache-Control': 'no-store',
};

export class HttpListener {
  private readonly assets: ReadonlyMap<string, Asset>;
  private http: http.Server | null = null;
  private httpLoading: Promise<http.Server> | null = null;

  private constructor(private readonly server: net.Server, private readonly source: OverviewSource, private readonly registry: BrokerRegistry, private readonly log: Log) {
    this.assets = consoleAssets((message) => log('warn', message));
    server.on('connection', (socket: net.Socket) => this.accept(socket));
  }

  /** Listens on host:port (0: a free port); resolves once listening. */
  static async start(host: string, port: number, source: OverviewSource, registry: BrokerRegistry, log: Log): Promise<HttpListener> {
    // Paused: nothing is read until the http.Server has the socket.
    const server = net.createServer({ pauseOnConnect: true });
    server.maxConnections = httpConnectionsMax;
    const listener = new HttpListener(server, source, registry, log);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => log('error', `http server error: ${error.message}`));
    return listener;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Stops accepting and closes every connection (keep-alive ones included). */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.http?.closeAllConnections();
    this.http?.close();
    return closed;
  }

  private accept(socket: net.Socket): void {
    if (this.http !== null) return this.handOver(this.http, socket);
    this.httpLoading ??= this.loadHttp();
    this.httpLoading.then((server) => this.handOver(server, socket), (error: unknown) => {
      this.log('error', `http: cannot load node:http: ${(error as Error)?.stack ?? String(error)}`);
      socket.destroy();
    });
  }

  private handOver(server: http.Server, socket: net.Socket): void {
    if (socket.destroyed || !this.server.listening) {
      socket.destroy();
      return;
    }
    server.emit('connection', socket);
    socket.resume();
  }

  private async loadHttp(): Promise<http.Server> {
    const { default: nodeHttp } = await import('node:http');
    const server = nodeHttp.createServer({ maxHeaderSize: httpHeaderBytesMax, requestTimeout: httpRequestTimeoutMs, headersTimeout: httpHeadersTimeoutMs, keepAliveTimeout: httpKeepAliveTimeoutMs });
    server.maxRequestsPerSocket = httpRequestsPerSocketMax;
    server.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => this.serve(request, response));
    // This server never listens itself (the net.Server does and hands it each connection): 'listening'
    // starts its connection tracking, which enforces the head and request timeouts and lets
    // closeAllConnections find keep-alive connections.
    server.emit('listening');
    this.http = server;
    return server;
  }

  private serve(request: http.IncomingMessage, response: http.ServerResponse): void {
    try {
      this.route(request, response);
    } catch (error) {
      this.fail(response, error);
    }
  }

  private route(request: http.IncomingMessage, response: http.ServerResponse): void {
    const method = request.method ?? '';
    const head = method === 'HEAD';
    if (method !== 'GET' && !head) return this.refuse(response, 405, `method ${method.slice(0, 16)} is not allowed; this listener is read-only`, { Allow: 'GET, HEAD' });
    if (request.headers['content-length'] !== undefined && request.headers['content-length'] !== '0' || request.headers['transfer-encoding'] !== undefined) {
      return this.refuse(response, 413, 'requests to this listener carry no body');
    }
    const url = request.url ?? '/';
    if (url.length > httpUrlBytesMax) return this.refuse(response, 414, `request target longer than ${httpUrlBytesMax} bytes`);
    const queryAt = url.indexOf('?');
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    switch (path) {
      case '/healthz': return this.send(response, head, 200, 'text/plain; charset=utf-8', 'ok\n');
      case '/readyz': return this.source.ready ? this.send(response, head, 200, 'text/plain; charset=utf-8', 'ready\n') : this.send(response, head, 503, 'text/plain; charset=utf-8', 'not ready\n');
      case '/metrics': return this.metrics(response, head);
      case '/api/overview': return this.send(response, head, 200, 'application/json; charset=utf-8', JSON.stringify(overview(this.source, this.registry, Date.now())));
    }
    const asset = this.assets.get(path === '/' ? '/index.html' : path);
    if (asset !== undefined) return this.send(response, head, 200, asset.contentType, asset.body);
    this.refuse(response, 404, 'not found; try /metrics, /healthz, /readyz, /api/overview or /');
  }

  private metrics(response: http.ServerResponse, head: boolean): void {
    this.registry.text().then(
      (text) => this.send(response, head, 200, prometheusContentType, text),
      (error: unknown) => this.fail(response, error),
    );
  }

  private send(response: http.ServerResponse, head: boolean, status: number, contentType: string, body: string | Buffer): void {
    if (response.headersSent || response.destroyed) return;
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    response.writeHead(status, { ...securityHeaders, 'Content-Type': contentType, 'Content-Length': bytes.length });
    response.end(head ? undefined : bytes);
  }

  /** An error reply; the connection closes after it, so an unread body is never parsed as a request. */
  private refuse(response: http.ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
    if (response.headersSent || response.destroyed) return;
    const bytes = Buffer.from(`${message}\n`);
    response.writeHead(status, { ...securityHeaders, ...headers, Connection: 'close', 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': bytes.length });
    response.end(bytes);
  }

  private fail(response: http.ServerResponse, error: unknown): void {
    this.log('error', `http: internal error: ${(error as Error)?.stack ?? String(error)}`);
    this.refuse(response, 500, 'internal error; it has been logged');
  }
}
