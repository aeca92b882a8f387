/**
 * One TCP connection to a broker: pipelined requests matched to replies by correlation id
 * (replies may arrive in any order), a timeout per request, and a typed error for everything
 * that fails. A connection that breaks rejects what it had in flight with CONNECTION_ERROR
 * (retriable); the next request opens a new socket.
 *
 * Wrong port: until a socket has delivered one valid reply, bytes that are not a Rill response
 * frame (a length over the response limit, a frame shorter than its header, a correlation id we
 * never sent) mean the peer is something else, e.g. an HTTP server whose "HTTP" reads as a length
 * of 1213486160. That is NOT_A_RILL_BROKER, not retriable: retrying cannot make it one.
 */
import net from 'node:net';
import { DecodeError, RillError } from '../lib/errors.js';
import { requestFrameBytesMax, requestHeaderBytes, responseFrameBytesMax, responseHeaderBytes } from '../lib/limits.js';
import { FrameDecoder, decodeResponseHeader } from '../wire/frame.js';
import { decodeErrorBody } from '../wire/control.js';
import { decodeMsgpack, encodeMsgpack } from '../wire/msgpack.js';
import { Instrumentation } from './instrumentation.js';
import { saslAuthenticate, type SaslOptions } from './sasl.js';

export interface BrokerAddress {
  host: string;
  port: number;
}

export function parseAddress(value: string): BrokerAddress {
  const match = /^(.*):(\d{1,5})$/.exec(value.trim());
  if (match === null || Number(match[2]) > 65535) throw new RillError('INVALID_ARGUMENT', `broker address "${value}" is not HOST:PORT`);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1', port: Number(match[2]) };
}

interface Pending {
  resolve: (frame: Buffer) => void;
  reject: (error: RillError) => void;
  timer: NodeJS.Timeout | null;
  apiKey: number;
  /** performance.now() at send, when request events are wanted; 0 otherwise. */
  sentAtMs: number;
}

export interface ConnectionOptions {
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  clientId?: string;
  /** What the connection is for ('default', 'fetch', ...): named in reconnect events. */
  purpose?: string;
  instrumentation?: Instrumentation;
  /** Authenticate every new socket before sending anything else on it (client/sasl.ts). */
  sasl?: SaslOptions | undefined;
}

export class BrokerConnection {
  private socket: net.Socket | null = null;
  /** The socket requests may use: connected and, with sasl, authenticated. */
  private ready: net.Socket | null = null;
  private readonly sasl: SaslOptions | undefined;
  private connecting: Promise<net.Socket> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextCorrelationId = 1;
  private closed = false;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly purpose: string;
  private readonly instrumentation: Instrumentation;
  /** Since when the broker has been unreachable (refused connect or broken socket), or null. */
  private downSinceMs: number | null = null;
  private failedConnects = 0;

  constructor(readonly address: BrokerAddress, options: ConnectionOptions = {}) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.purpose = options.purpose ?? 'default';
    this.sasl = options.sasl;
    this.instrumentation = options.instrumentation ?? new Instrumentation('admin', options.clientId ?? 'rill-client', undefined);
  }

  /** HOST:PORT, as errors and events name the broker. */
  get name(): string {
    return `${this.address.host}:${this.address.port}`;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  private connect(): Promise<net.Socket> {
    if (this.ready !== null) return Promise.resolve(this.ready);
    this.connecting ??= new Promise<net.Socket>((resolve, reject) => {
      const { host, port } = this.address;
      const socket = net.connect({ host, port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        this.attach(socket);
        this.authenticate(socket).then(() => {
          this.connecting = null;
          this.ready = socket;
          if (this.downSinceMs !== null) {
            this.instrumentation.reconnect(this.name, this.purpose, Date.now() - this.downSinceMs, this.failedConnects);
            this.downSinceMs = null;
            this.failedConnects = 0;
          }
          resolve(socket);
        }, (error: unknown) => {
          this.connecting = null;
          const failure = error instanceof RillError ? error : new RillError('CONNECTION_ERROR', String(error));
          this.fail(socket, failure);
          reject(failure);
        });
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        this.connecting = null;
        this.downSinceMs ??= Date.now();
        this.failedConnects++;
        reject(new RillError('CONNECTION_ERROR', `cannot connect to ${host}:${port}: ${error.message}`, { cause: error }));
      });
    });
    return this.connecting;
  }

  /** With sasl: the handshake on a fresh socket, before any queued request is sent. */
  private async authenticate(socket: net.Socket): Promise<void> {
    if (this.sasl === undefined) return;
    await saslAuthenticate(async (apiKey, request, decode) => {
      const frame = (await this.sendOn(socket, apiKey, 0, [encodeMsgpack(request)], true, this.requestTimeoutMs))!;
      return decode(decodeMsgpack(checkReply(frame), 'MALFORMED_RESPONSE'));
    }, this.sasl, this.name);
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    const decoder = new FrameDecoder(responseFrameBytesMax, responseHeaderBytes);
    let provenRill = false;
    const onFrame = (frame: Buffer): void => {
      if (this.onFrame(frame, provenRill)) provenRill = true;
    };
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk, onFrame);
      } catch (error) {
        if (!provenRill) this.fail(socket, this.notRill());
        else this.fail(socket, error instanceof DecodeError ? new RillError('MALFORMED_RESPONSE', error.message) : new RillError('CONNECTION_ERROR', String(error)));
      }
    });
    socket.on('error', (error) => this.fail(socket, new RillError('CONNECTION_ERROR', `connection to ${this.address.host}:${this.address.port} failed: ${error.message}`)));
    socket.on('close', () => this.fail(socket, new RillError('CONNECTION_ERROR', `connection to ${this.address.host}:${this.address.port} closed`)));
  }

  private notRill(): RillError {
    return new RillError('NOT_A_RILL_BROKER', `this does not look like a Rill broker (${this.name} answered with bytes that are not a Rill reply)`);
  }

  /** Hands a reply to its request; returns whether the frame was a valid Rill reply. */
  private onFrame(frame: Buffer, provenRill: boolean): boolean {
    // The decoder guarantees at least the header's bytes; a first reply for an id never sent is not ours.
    if (frame.length < responseHeaderBytes) throw new DecodeError('MALFORMED_RESPONSE', `reply of ${frame.length} bytes is shorter than its header`);
    const { correlationId } = decodeResponseHeader(frame);
    const pending = this.pending.get(correlationId);
    if (pending === undefined) {
      // Timed out earlier; its late reply is dropped. Never sent on this socket: not a Rill broker.
      if (!provenRill && (correlationId === 0 || correlationId >= this.nextCorrelationId)) throw new DecodeError('MALFORMED_RESPONSE', 'reply to a request never sent');
      return true;
    }
    this.pending.delete(correlationId);
    if (pending.timer !== null) clearTimeout(pending.timer);
    if (pending.sentAtMs > 0) this.instrumentation.request(this.name, pending.apiKey, correlationId, performance.now() - pending.sentAtMs, undefined);
    pending.resolve(frame);
    return true;
  }

  /** Drops the socket and rejects everything in flight on it. */
  private fail(socket: net.Socket, error: RillError): void {
    if (this.socket !== socket) return;
    this.socket = null;
    this.ready = null;
    socket.destroy();
    if (!this.closed) this.downSinceMs ??= Date.now();
    const pending = [...this.pending.entries()];
    this.pending.clear();
    for (const [correlationId, p] of pending) {
      if (p.timer !== null) clearTimeout(p.timer);
      if (p.sentAtMs > 0) this.instrumentation.request(this.name, p.apiKey, correlationId, performance.now() - p.sentAtMs, error);
      p.reject(error);
    }
  }

  /**
   * Sends a request and resolves with the reply frame (after the length prefix). With
   * `expectReply: false` (produce acks 0) it resolves once the bytes are handed to the socket.
   */
  async send(apiKey: number, apiVersion: number, body: Buffer[], options: { expectReply?: boolean; timeoutMs?: number } = {}): Promise<Buffer | null> {
    if (this.closed) throw new RillError('CONNECTION_ERROR', 'connection is closed');
    let bodyBytes = 0;
    for (const chunk of body) bodyBytes += chunk.length;
    if (requestHeaderBytes + bodyBytes > requestFrameBytesMax) {
      throw new RillError('FRAME_TOO_LARGE', `request of ${requestHeaderBytes + bodyBytes} bytes exceeds the ${requestFrameBytesMax}-byte frame limit`);
    }
    const socket = await this.connect();
    return this.sendOn(socket, apiKey, apiVersion, body, options.expectReply ?? true, options.timeoutMs ?? this.requestTimeoutMs);
  }

  private sendOn(socket: net.Socket, apiKey: number, apiVersion: number, body: Buffer[], expectReply: boolean, timeoutMs: number): Promise<Buffer | null> {
    let bodyBytes = 0;
    for (const chunk of body) bodyBytes += chunk.length;
    const correlationId = this.nextCorrelationId;
    this.nextCorrelationId = (this.nextCorrelationId + 1) >>> 0 || 1;
    const head = Buffer.allocUnsafe(4 + requestHeaderBytes);
    head.writeUInt32BE(requestHeaderBytes + bodyBytes, 0);
    head.writeUInt16BE(apiKey, 4);
    head.writeUInt16BE(apiVersion, 6);
    head.writeUInt32BE(correlationId, 8);
    const reply = expectReply ? this.awaitReply(apiKey, correlationId, timeoutMs) : Promise.resolve(null);
    socket.cork();
    socket.write(head);
    for (const chunk of body) socket.write(chunk);
    socket.uncork();
    return reply;
  }

  private awaitReply(apiKey: number, correlationId: number, timeoutMs: number): Promise<Buffer> {
    const sentAtMs = this.instrumentation.wantsRequests ? performance.now() : 0;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = timeoutMs > 0 ? setTimeout(() => {
        this.pending.delete(correlationId);
        const error = new RillError('REQUEST_TIMED_OUT', `no reply from ${this.address.host}:${this.address.port} within ${timeoutMs} ms`);
        if (sentAtMs > 0) this.instrumentation.request(this.name, apiKey, correlationId, performance.now() - sentAtMs, error);
        reject(error);
      }, timeoutMs) : null;
      this.pending.set(correlationId, { resolve, reject, timer, apiKey, sentAtMs });
    });
  }

  /** A control API call: MessagePack body in, validated MessagePack body out. */
  async call<T>(apiKey: number, request: unknown, decode: (value: unknown) => T, options: { timeoutMs?: number } = {}): Promise<T> {
    const frame = (await this.send(apiKey, 0, [encodeMsgpack(request)], options))!;
    const body = checkReply(frame);
    return decode(decodeMsgpack(body, 'MALFORMED_RESPONSE'));
  }

  close(): void {
    this.closed = true;
    const socket = this.socket;
    if (socket !== null) this.fail(socket, new RillError('CONNECTION_ERROR', 'connection closed by the client'));
  }
}

/** Throws the broker's top-level error if there is one; returns the body otherwise. */
export function checkReply(frame: Buffer): Buffer {
  const { errorCode } = decodeResponseHeader(frame);
  const body = frame.subarray(responseHeaderBytes);
  if (errorCode !== 0) {
    let message = '';
    try {
      message = decodeErrorBody(decodeMsgpack(body, 'MALFORMED_RESPONSE')).message;
    } catch {
      // The error code alone still says what happened.
    }
    const error = RillError.fromCode(errorCode);
    throw RillError.fromCode(errorCode, message.replace(`${error.code}: `, '') || undefined);
  }
  return body;
}
