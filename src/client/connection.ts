/**
 * One TCP connection to a broker: pipelined requests matched to replies by correlation id
 * (replies may arrive in any order), a timeout per request, and a typed error for everything
 * that fails. A connection that breaks rejects what it had in flight with CONNECTION_ERROR
 * (retriable); the next request opens a new socket.
 */
import net from 'node:net';
import { DecodeError, RillError } from '../lib/errors.js';
import { requestFrameBytesMax, requestHeaderBytes, responseFrameBytesMax, responseHeaderBytes } from '../lib/limits.js';
import { FrameDecoder, decodeResponseHeader } from '../wire/frame.js';
import { decodeErrorBody } from '../wire/control.js';
import { decodeMsgpack, encodeMsgpack } from '../wire/msgpack.js';

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
}

export interface ConnectionOptions {
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  clientId?: string;
}

export class BrokerConnection {
  private socket: net.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextCorrelationId = 1;
  private closed = false;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;

  constructor(readonly address: BrokerAddress, options: ConnectionOptions = {}) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  private connect(): Promise<net.Socket> {
    if (this.socket !== null) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<net.Socket>((resolve, reject) => {
      const { host, port } = this.address;
      const socket = net.connect({ host, port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        this.connecting = null;
        this.attach(socket);
        resolve(socket);
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        this.connecting = null;
        reject(new RillError('CONNECTION_ERROR', `cannot connect to ${host}:${port}: ${error.message}`, { cause: error }));
      });
    });
    return this.connecting;
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    const decoder = new FrameDecoder(responseFrameBytesMax, responseHeaderBytes);
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk, (frame) => this.onFrame(frame));
      } catch (error) {
        this.fail(socket, error instanceof DecodeError ? new RillError('MALFORMED_RESPONSE', error.message) : new RillError('CONNECTION_ERROR', String(error)));
      }
    });
    socket.on('error', (error) => this.fail(socket, new RillError('CONNECTION_ERROR', `connection to ${this.address.host}:${this.address.port} failed: ${error.message}`)));
    socket.on('close', () => this.fail(socket, new RillError('CONNECTION_ERROR', `connection to ${this.address.host}:${this.address.port} closed`)));
  }

  private onFrame(frame: Buffer): void {
    const { correlationId } = decodeResponseHeader(frame);
    const pending = this.pending.get(correlationId);
    if (pending === undefined) return; // timed out earlier; its late reply is dropped
    this.pending.delete(correlationId);
    if (pending.timer !== null) clearTimeout(pending.timer);
    pending.resolve(frame);
  }

  /** Drops the socket and rejects everything in flight on it. */
  private fail(socket: net.Socket, error: RillError): void {
    if (this.socket !== socket) return;
    this.socket = null;
    socket.destroy();
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      if (p.timer !== null) clearTimeout(p.timer);
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
    const correlationId = this.nextCorrelationId;
    this.nextCorrelationId = (this.nextCorrelationId + 1) >>> 0 || 1;
    const head = Buffer.allocUnsafe(4 + requestHeaderBytes);
    head.writeUInt32BE(requestHeaderBytes + bodyBytes, 0);
    head.writeUInt16BE(apiKey, 4);
    head.writeUInt16BE(apiVersion, 6);
    head.writeUInt32BE(correlationId, 8);
    const expectReply = options.expectReply ?? true;
    const reply = expectReply ? this.awaitReply(correlationId, options.timeoutMs ?? this.requestTimeoutMs) : null;
    socket.cork();
    socket.write(head);
    for (const chunk of body) socket.write(chunk);
    socket.uncork();
    return reply;
  }

  private awaitReply(correlationId: number, timeoutMs: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const timer = timeoutMs > 0 ? setTimeout(() => {
        this.pending.delete(correlationId);
        reject(new RillError('REQUEST_TIMED_OUT', `no reply from ${this.address.host}:${this.address.port} within ${timeoutMs} ms`));
      }, timeoutMs) : null;
      this.pending.set(correlationId, { resolve, reject, timer });
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
