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
 *
 * TLS (`tls` option): the socket is usable once the handshake is done. What a wrong setup looks
 * like, and what the user is told (not retriable either: retrying cannot fix a certificate):
 *   plaintext client, TLS listener      the first reply is a TLS record -> NOT_A_RILL_BROKER,
 *                                       "the broker expects TLS"
 *   TLS client, plaintext listener      the broker answers with a protocol_version alert -> INVALID_CONFIG
 *                                       (a bare close during the handshake stays CONNECTION_ERROR:
 *                                       a broker restarting looks the same)
 *   broker certificate not trusted      -> INVALID_CONFIG naming the verification error (give `ca`)
 *   client certificate missing/refused  -> INVALID_CONFIG naming the alert (give `cert` and `key`)
 */
import net from 'node:net';
import tls from 'node:tls';
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

/**
 * TLS towards the broker; PEM strings or Buffers. With no `ca`, node's bundled public CAs are
 * trusted. TLS 1.2 or later.
 */
export interface ClientTlsOptions {
  /** CA certificate(s) that signed the broker's certificate. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Client certificate (mTLS) and its key. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name the broker's certificate must hold (and SNI); default the host connected to. */
  servername?: string;
}

export interface ConnectionOptions {
  tls?: ClientTlsOptions | undefined;
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
  private readonly tls: ClientTlsOptions | undefined;

  constructor(readonly address: BrokerAddress, options: ConnectionOptions = {}) {
    this.tls = options.tls;
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
      const socket = this.tls === undefined ? net.connect({ host, port }) : tls.connect({
        host, port, ...this.tls, minVersion: 'TLSv1.2',
        // SNI takes host names only; an IP address is still checked against the certificate's IP SANs.
        servername: this.tls.servername ?? (net.isIP(host) === 0 ? host : undefined),
      });
      socket.setNoDelay(true);
      const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
      socket.once(this.tls === undefined ? 'connect' : 'secureConnect', () => {
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
        reject(this.tlsFailure(error, true) ?? new RillError('CONNECTION_ERROR', `cannot connect to ${host}:${port}: ${error.message}`, { cause: error }));
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
    let first: Buffer | undefined;
    socket.on('data', (chunk: Buffer) => {
      first ??= chunk;
      try {
        decoder.push(chunk, onFrame);
      } catch (error) {
        if (!provenRill) this.fail(socket, this.notRill(first));
        else this.fail(socket, error instanceof DecodeError ? new RillError('MALFORMED_RESPONSE', error.message) : new RillError('CONNECTION_ERROR', String(error)));
      }
    });
    socket.on('error', (error) => this.fail(socket, this.tlsFailure(error, false) ?? new RillError('CONNECTION_ERROR', `connection to ${this.address.host}:${this.address.port} failed: ${error.message}`)));
    socket.on('close', () => this.fail(socket, new RillError('CONNECTION_ERROR', `connection to ${this.address.host}:${this.address.port} closed`)));
  }

  private notRill(first?: Buffer): RillError {
    // A TLS record (alert 0x15 or handshake 0x16, version 3.x) in answer to a plaintext request.
    if (this.tls === undefined && first !== undefined && first.length >= 2 && (first[0] === 0x15 || first[0] === 0x16) && first[1] === 0x03) {
      return new RillError('NOT_A_RILL_BROKER', `the broker expects TLS: ${this.name} answered with a TLS record; connect with TLS (client option tls: { ca }, CLI --tls-ca FILE)`);
    }
    return new RillError('NOT_A_RILL_BROKER', `this does not look like a Rill broker (${this.name} answered with bytes that are not a Rill reply)`);
  }

  /**
   * A TLS setup error, not retriable, with what to change; null when the error is not one.
   * `handshaking`: the socket failed before the handshake completed.
   */
  private tlsFailure(error: Error & { code?: string }, handshaking: boolean): RillError | null {
    if (this.tls === undefined) return null;
    const code = error.code ?? '';
    const cause = { cause: error };
    if (/CERT|SELF_SIGNED|UNABLE_TO_|ERR_TLS_CERT_ALTNAME/.test(code) && !code.startsWith('ERR_SSL_')) {
      return new RillError('INVALID_CONFIG', `TLS: the certificate of ${this.name} is not trusted (${code}: ${error.message}); give the CA that signed it (client option tls.ca, CLI --tls-ca FILE) or the name it holds (tls.servername)`, cause);
    }
    if (/CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN/.test(code)) {
      return new RillError('INVALID_CONFIG', `TLS: ${this.name} refused this client's certificate or wants one (${error.message.trim()}); give a client certificate its CA trusts (client options tls.cert and tls.key, CLI --tls-cert FILE --tls-key FILE)`, cause);
    }
    if (/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|WRONG_VERSION_NUMBER/.test(code)) {
      return new RillError('INVALID_CONFIG', `TLS: ${this.name} does not speak TLS 1.2 or later, or not TLS at all (${error.message.trim()}); is its listener plaintext? then drop the TLS options`, cause);
    }
    if (handshaking && (code === 'ECONNRESET' || /before secure TLS connection was established/.test(error.message))) {
      // Also what a broker restarting mid-handshake looks like: retriable, with a hint.
      return new RillError('CONNECTION_ERROR', `TLS: ${this.name} closed the connection during the TLS handshake (if its listener is plaintext, drop the TLS options)`, cause);
    }
    return null;
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

  /** Resolves once a socket is connected (and authenticated): nothing is sent. */
  async connected(): Promise<void> {
    if (this.closed) throw new RillError('CONNECTION_ERROR', 'connection is closed');
    await this.connect();
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
