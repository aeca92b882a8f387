/**
 * One client connection: frames in, replies out, with bounds on both directions.
 *
 * - Requests are decoded and dispatched in arrival order; replies go out as they complete, so
 *   they may be out of order (a long-poll fetch never holds back a produce on the same socket).
 *   Clients match replies by correlation id.
 * - At most connectionInFlightRequestsMax requests per connection are in progress; past that, and
 *   while more than connectionWriteBufferBytesMax of replies wait for a slow reader, the broker
 *   stops reading the socket, so TCP pushes back on the client and broker memory stays bounded.
 *   It also stops dispatching: frames already read (one socket chunk can hold hundreds of
 *   pipelined requests) wait, undecoded, until the pressure is gone. Without that, a reader that
 *   pipelines fetches and then stops reading made the broker build a reply for every fetch in
 *   the chunk (each up to fetchResponseBytesMax): ~1 GiB of RSS for 32 fetches of 30 MiB. Now at
 *   most one reply is built past connectionWriteBufferBytesMax, so a stalled connection holds at
 *   most about connectionWriteBufferBytesMax + fetchResponseBytesMax of replies, plus the
 *   replies of requests already in progress (long-polls) when the stall began.
 * - Bytes that cannot be framed (length over the limit, shorter than a header) close the
 *   connection: the stream cannot be resynchronised. Everything else gets an error reply.
 * - A principal over a byte-rate quota gets its connection throttled (throttle(), KIP-219's
 *   muted channel): for that long nothing is read or dispatched, and replies that complete
 *   meanwhile are held and then written in the order they completed, so throttling delays
 *   replies without reordering them. Held replies are bounded by the requests in flight.
 */
import type net from 'node:net';
import { DecodeError, RillError } from '../lib/errors.js';
import { connectionInFlightRequestsMax, connectionWriteBufferBytesMax, partialFrameIdleMsMax, requestFrameBytesMax, requestHeaderBytes } from '../lib/limits.js';
import { FrameDecoder, decodeRequestHeader, encodeResponseHead, type RequestHeader } from '../wire/frame.js';
import { encodeMsgpack } from '../wire/msgpack.js';

/** A reply body as chunks written back to back (no copy of stored bytes). */
export interface Reply {
  errorCode: number;
  chunks: Buffer[];
  bytes: number;
}

export function replyOf(chunks: Buffer[], errorCode = 0): Reply {
  let bytes = 0;
  for (const chunk of chunks) bytes += chunk.length;
  return { errorCode, chunks, bytes };
}

export function msgpackReply(value: unknown): Reply {
  return replyOf([encodeMsgpack(value)]);
}

export function errorReply(error: RillError): Reply {
  return replyOf([encodeMsgpack({ message: error.message })], error.errorCode);
}

/** The address part of "host:port": quotas and failed logins count per client machine, not per connection. */
export function addressOf(remote: string): string {
  const at = remote.lastIndexOf(':');
  return at <= 0 ? remote : remote.slice(0, at);
}

/**
 * A connection's byte-rate quotas, as the produce and fetch handlers use them (broker/quotas.ts,
 * loaded only when quotas are configured: without them Connection.quotas is null).
 */
export interface ConnectionQuotas {
  /** Records a produce request's bytes; returns the throttle (ms, 0: none) and throttles the connection by it. */
  produce(connection: Connection, bytes: number): number;
  /** Most record bytes a fetch reply may hold now. */
  fetchBytesMax(connection: Connection): number;
  /** Records a fetch reply's record bytes; returns the throttle (ms, 0: none) and throttles the connection by it. */
  fetch(connection: Connection, bytes: number): number;
}

export interface RequestContext {
  header: RequestHeader;
  /** The frame after the length prefix; the body starts at requestHeaderBytes. */
  frame: Buffer;
  connection: Connection;
}

/** Handles one request; null means "no reply" (produce with acks 0). */
export type Dispatch = (context: RequestContext) => Reply | null | Promise<Reply | null>;

export interface ConnectionEvents {
  onProtocolError(connection: Connection, error: DecodeError): void;
  onRequestError(connection: Connection, error: RillError): void;
  onInternalError(connection: Connection, error: unknown): void;
  onClose(connection: Connection): void;
  /** A request finished (replied, or dropped for acks 0 / a closed connection), after `seconds`. */
  onRequestDone?(apiKey: number, seconds: number): void;
}

const emptyFrame = Buffer.alloc(0);
/** After the last reply and FIN, a peer that keeps the socket open is cut off after this long. */
const endGraceMs = 1000;
/** A refused connection (refuse()) that sends no request is closed after this long. */
const refusedIdleMs = 5000;

/**
 * Bytes of partly received request frames across all connections (the idea of Kafka's
 * queued.max.request.bytes). Each connection may buffer up to one frame (requestFrameBytesMax);
 * many connections each holding most of a large frame could otherwise exhaust memory. Past the
 * limit, a connection that holds a partial frame stops being read until the total falls to half
 * the limit; a peer that then goes silent is cut off by the partial-frame idle timeout.
 */
export class FrameMemoryBudget {
  private usedBytes = 0;
  private readonly waiting = new Set<Connection>();

  constructor(readonly limitBytes: number) {}

  get bufferedBytes(): number {
    return this.usedBytes;
  }

  get overLimit(): boolean {
    return this.usedBytes > this.limitBytes;
  }

  adjust(deltaBytes: number): void {
    this.usedBytes += deltaBytes;
    if (deltaBytes < 0 && this.waiting.size > 0 && this.usedBytes <= this.limitBytes / 2) {
      const resumed = [...this.waiting];
      this.waiting.clear();
      for (const connection of resumed) connection.budgetAvailable();
    }
  }

  wait(connection: Connection): void {
    this.waiting.add(connection);
  }

  forget(connection: Connection): void {
    this.waiting.delete(connection);
  }
}

export class Connection {
  private readonly decoder = new FrameDecoder(requestFrameBytesMax, requestHeaderBytes);
  private inFlight = 0;
  private paused = false;
  /** Frames read but not dispatched while the connection is overloaded, in arrival order. */
  private waiting: Buffer[] = [];
  private waitingHead = 0;
  private draining = false;
  private closed = false;
  /** decoder.buffered as last reported to the budget. */
  private budgetedBytes = 0;
  /** Reading stopped because the broker-wide frame budget is spent. */
  private waitingForBudget = false;
  readonly remote: string;
  /** No byte received yet: the first chunk is checked for a TLS handshake (a TLS client on a plaintext listener). */
  private firstChunk = true;
  /** Error replies in the current window (operator-alerts.ts: a client drowning in errors). */
  errorWindowStartMs = 0;
  errorsInWindow = 0;
  /**
   * Who this connection authenticated as, or null: `User:` + a verified TLS client certificate's
   * subject DN (set when accepted, tls.ts), or `User:NAME` after SASL (broker/auth.ts).
   */
  principal: string | null = null;
  /** A reply is the last: after it is written the socket is ended and nothing more is read or written. */
  private ending = false;
  /** Byte-rate quotas of the broker, or null when none are configured (the hot path's only cost). */
  quotas: ConnectionQuotas | null = null;
  /** While throttled (throttle()): ends the throttle. Nothing is read or dispatched until then. */
  private throttleTimer: NodeJS.Timeout | null = null;
  private throttledUntilMs = 0;
  /** Replies completed while throttled, in completion order. */
  private held: { correlationId: number; reply: Reply | null }[] = [];

  constructor(readonly socket: net.Socket, private dispatch: Dispatch, private readonly events: ConnectionEvents, private readonly budget: FrameMemoryBudget, readonly listenerName = 'rill') {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.updateFlow());
    socket.on('timeout', () => {
      if (this.decoder.buffered === 0) return;
      this.events.onProtocolError(this, new DecodeError('MALFORMED_REQUEST', `no byte of a started frame for ${partialFrameIdleMsMax} ms`));
      this.close();
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Requests in progress, and replies held back by a quota throttle. */
  get requestsInFlight(): number {
    return this.inFlight + this.held.length;
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.ending) return;
    try {
      if (this.firstChunk) {
        this.firstChunk = false;
        // A TLS record (0x16 handshake, version 3.x) as a Rill length is ~370 MB: say what it is.
        // (On a TLS listener the chunks are decrypted; such a frame would be refused anyway.)
        if (chunk.length >= 2 && chunk[0] === 0x16 && chunk[1] === 0x03) {
          // A fatal TLS alert (protocol_version) tells the client's TLS stack why, where a bare close looks like a restart.
          this.socket.write(Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]));
          throw new DecodeError('MALFORMED_REQUEST', `a TLS client on plaintext listener ${this.listenerName} (TLS is not configured on it)`);
        }
      }
      this.decoder.push(chunk, (frame) => this.accept(frame));
      const buffered = this.decoder.buffered;
      // A started frame must keep arriving: a peer trickling bytes (slowloris) is cut off.
      this.socket.setTimeout(buffered > 0 ? partialFrameIdleMsMax : 0);
      this.budget.adjust(buffered - this.budgetedBytes);
      this.budgetedBytes = buffered;
      if (buffered > 0 && this.budget.overLimit && !this.waitingForBudget) {
        this.waitingForBudget = true;
        this.budget.wait(this);
        this.updateFlow();
      }
    } catch (error) {
      if (error instanceof DecodeError) {
        this.events.onProtocolError(this, error);
        this.socket.destroy();
        this.close();
        return;
      }
      throw error;
    }
  }

  /** Dispatches now, or queues the frame behind earlier ones while the connection is overloaded. */
  private accept(frame: Buffer): void {
    if (this.ending) return;
    if (this.waitingHead < this.waiting.length || this.overloaded) {
      this.waiting.push(frame);
      this.updateFlow();
      return;
    }
    this.onFrame(frame);
  }

  private get overloaded(): boolean {
    return this.inFlight >= connectionInFlightRequestsMax || this.socket.writableLength > connectionWriteBufferBytesMax || this.throttleTimer !== null;
  }

  /** Dispatches queued frames while the pressure allows; re-entrant calls (from finish) are no-ops. */
  private drainWaiting(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.closed && this.waitingHead < this.waiting.length && !this.overloaded) {
        const frame = this.waiting[this.waitingHead]!;
        this.waiting[this.waitingHead++] = emptyFrame;
        this.onFrame(frame);
      }
      if (this.waitingHead === this.waiting.length) {
        this.waiting = [];
        this.waitingHead = 0;
      }
    } finally {
      this.draining = false;
    }
  }

  private onFrame(frame: Buffer): void {
    if (this.closed) return;
    const header = decodeRequestHeader(frame);
    const startedMs = performance.now();
    this.inFlight++;
    this.updateFlow();
    let result: Reply | null | Promise<Reply | null>;
    try {
      result = this.dispatch({ header, frame, connection: this });
    } catch (error) {
      this.finish(header, this.replyForError(error), startedMs);
      return;
    }
    if (result instanceof Promise) {
      result.then((reply) => this.finish(header, reply, startedMs), (error: unknown) => this.finish(header, this.replyForError(error), startedMs));
    } else {
      this.finish(header, result, startedMs);
    }
  }

  private replyForError(error: unknown): Reply {
    if (error instanceof RillError) {
      this.events.onRequestError(this, error);
      return errorReply(error);
    }
    this.events.onInternalError(this, error);
    return errorReply(new RillError('UNKNOWN_SERVER_ERROR', 'the broker hit an internal error; it has been logged'));
  }

  private finish(header: RequestHeader, reply: Reply | null, startedMs: number): void {
    this.inFlight--;
    this.events.onRequestDone?.(header.apiKey, (performance.now() - startedMs) / 1000);
    if (this.closed || this.endingWritten) return;
    if (this.throttleTimer !== null) {
      this.held.push({ correlationId: header.correlationId, reply });
      return;
    }
    if (this.deliver(header.correlationId, reply)) this.updateFlow();
  }

  /** Writes a reply; false when it was the connection's last (then the socket is ending). */
  private deliver(correlationId: number, reply: Reply | null): boolean {
    if (this.closed || this.endingWritten) return false;
    if (reply !== null) this.write(correlationId, reply);
    if (this.ending && correlationId === this.endingCorrelationId) {
      // The reply that ends the connection (a failed authentication) goes out, then FIN.
      this.endingWritten = true;
      this.socket.end();
      setTimeout(() => this.close(), endGraceMs).unref();
      return false;
    }
    return true;
  }

  /**
   * Quota throttling: for `ms` from now (or until an earlier throttle ends, if later) nothing is
   * read or dispatched, and replies that complete are held; then they are written in order.
   */
  throttle(ms: number): void {
    if (this.closed || !(ms > 0)) return;
    const untilMs = performance.now() + ms;
    if (this.throttleTimer !== null) {
      if (untilMs <= this.throttledUntilMs) return;
      clearTimeout(this.throttleTimer);
    }
    this.throttledUntilMs = untilMs;
    this.throttleTimer = setTimeout(() => this.endThrottle(), ms);
    this.updateFlow();
  }

  private endThrottle(): void {
    this.throttleTimer = null;
    const held = this.held;
    this.held = [];
    // All held replies first: a request dispatched by updateFlow must not overtake them.
    for (const { correlationId, reply } of held) {
      if (!this.deliver(correlationId, reply)) return;
    }
    this.updateFlow();
  }

  /**
   * Refuses the connection (over its principal's connection quota): its first request is answered
   * with `error` and the connection closed; one that sends nothing is closed after refusedIdleMs.
   */
  refuse(error: RillError): void {
    this.dispatch = (context) => {
      this.endAfterReply(context.header.correlationId);
      throw error;
    };
    const timer = setTimeout(() => this.close(), refusedIdleMs);
    timer.unref();
    this.socket.once('close', () => clearTimeout(timer));
  }

  private endingWritten = false;
  private endingCorrelationId = -1;

  /**
   * The reply to request `correlationId` is the connection's last: no more frames are
   * dispatched, and the socket is closed once that reply is written.
   */
  endAfterReply(correlationId: number): void {
    if (this.ending) return;
    this.ending = true;
    this.endingCorrelationId = correlationId;
    this.waiting = [];
    this.waitingHead = 0;
    this.socket.pause();
  }

  private write(correlationId: number, reply: Reply): void {
    const socket = this.socket;
    socket.cork();
    socket.write(encodeResponseHead(correlationId, reply.errorCode, reply.bytes));
    for (const chunk of reply.chunks) socket.write(chunk);
    socket.uncork();
  }

  /**
   * Stop reading while too much is in progress or queued for a slow reader, or while read frames
   * wait to be dispatched; dispatch them and resume reading once the pressure is gone.
   */
  private updateFlow(): void {
    if (this.closed) return;
    if (!this.overloaded) this.drainWaiting();
    if (this.closed) return;
    const overloaded = this.overloaded || this.waitingHead < this.waiting.length || this.waitingForBudget;
    if (overloaded && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!overloaded && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Called by the budget once enough frame memory is free again. */
  budgetAvailable(): void {
    this.waitingForBudget = false;
    this.updateFlow();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.waiting = [];
    this.waitingHead = 0;
    if (this.throttleTimer !== null) clearTimeout(this.throttleTimer);
    this.throttleTimer = null;
    this.held = [];
    this.budget.forget(this);
    this.budget.adjust(-this.budgetedBytes);
    this.budgetedBytes = 0;
    this.socket.destroy();
    this.events.onClose(this);
  }
}
