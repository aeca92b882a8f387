/** A bare TCP (or TLS) client for hostile-input tests: send any bytes, collect reply frames. */
import net from 'node:net';
import tls from 'node:tls';
import { FrameDecoder, decodeResponseHeader, encodeRequestFrame } from '../../src/wire/frame.js';
import { responseFrameBytesMax, responseHeaderBytes } from '../../src/lib/limits.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';

export interface RawReply {
  correlationId: number;
  errorCode: number;
  body: Buffer;
}

export interface RawConnectOptions {
  /**
   * Source address of the connection. Any 127.x.y.z reaches a broker on 127.0.0.1 (Linux), so a
   * test can be many clients, e.g. to stay below or probe the broker's per-address limits.
   */
  localAddress?: string;
  /** Speak TLS (tls.connect options; host is 127.0.0.1): connected once the handshake is done. */
  tls?: tls.ConnectionOptions;
}

export class RawClient {
  readonly replies: RawReply[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  private readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    const decoder = new FrameDecoder(responseFrameBytesMax, responseHeaderBytes);
    socket.on('data', (chunk: Buffer) => decoder.push(chunk, (frame) => {
      const { correlationId, errorCode } = decodeResponseHeader(frame);
      this.replies.push({ correlationId, errorCode, body: Buffer.from(frame.subarray(responseHeaderBytes)) });
      for (const w of this.waiters.splice(0)) w();
    }));
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) => socket.once('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
      resolve();
    }));
  }

  static connect(port: number, options: RawConnectOptions = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const target = { host: '127.0.0.1', port, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) };
      const socket: net.Socket = options.tls === undefined
        ? net.connect(target, () => resolve(new RawClient(socket)))
        : tls.connect({ ...options.tls, ...target }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  request(apiKey: number, apiVersion: number, correlationId: number, body: Buffer): void {
    this.write(encodeRequestFrame(apiKey, apiVersion, correlationId, body));
  }

  msgpackRequest(apiKey: number, correlationId: number, body: unknown): void {
    this.request(apiKey, 0, correlationId, encodeMsgpack(body));
  }

  async reply(correlationId: number, timeoutMs = 10_000): Promise<RawReply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.replies.find((r) => r.correlationId === correlationId);
      if (found) return found;
      if (this.closed) throw new Error(`connection closed before reply ${correlationId}`);
      if (Date.now() > deadline) throw new Error(`no reply ${correlationId} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  async waitClosed(timeoutMs = 10_000): Promise<boolean> {
    await Promise.race([this.closedPromise, new Promise((r) => setTimeout(r, timeoutMs))]);
    return this.closed;
  }

  message(reply: RawReply): string {
    return (decodeMsgpack(reply.body, 'MALFORMED_RESPONSE') as { message: string }).message;
  }

  close(): void {
    this.socket.destroy();
  }
}
