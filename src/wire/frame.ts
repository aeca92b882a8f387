/**
 * Framing. Every frame is a u32 big-endian length followed by that many bytes.
 *   request:  length, apiKey u16, apiVersion u16, correlationId u32, body
 *   response: length, correlationId u32, errorCode i16, body
 *
 * FrameDecoder is incremental: feed it socket chunks and it hands out whole frames. It checks the
 * length against the limit before buffering anything of that frame, and hands out views into
 * the chunk when a frame lies within one chunk (the common case: no copy).
 */
import { DecodeError } from '../lib/errors.js';
import { requestHeaderBytes, responseHeaderBytes } from '../lib/limits.js';

export class FrameDecoder {
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  /** Length of the frame being assembled, or -1 while its length prefix is incomplete. */
  private pendingLength = -1;

  constructor(private readonly frameBytesMax: number, private readonly frameBytesMin = 0) {}

  /** Bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.bufferedBytes;
  }

  /**
   * Consumes `chunk` and calls `onFrame` for each complete frame (the body after the length
   * prefix). Throws DecodeError('FRAME_TOO_LARGE' | 'MALFORMED_REQUEST') on a length that is out
   * of bounds; the caller must then drop the connection, as the stream cannot be resynchronised.
   */
  push(chunk: Buffer, onFrame: (frame: Buffer) => void): void {
    if (this.bufferedBytes === 0) {
      chunk = this.drainChunk(chunk, onFrame);
      if (chunk.length === 0) return;
    } else if (this.pendingLength < 0 && this.bufferedBytes + chunk.length >= 4) {
      // The length prefix completes with this chunk: check it before keeping any of the frame.
      const prefix = Buffer.concat([...this.chunks, chunk.subarray(0, 4 - this.bufferedBytes)], 4);
      this.pendingLength = this.checkLength(prefix.readUInt32BE(0));
    }
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    for (;;) {
      if (this.pendingLength < 0) {
        if (this.bufferedBytes < 4) return;
        this.pendingLength = this.checkLength(this.peekUint32());
      }
      if (this.bufferedBytes < 4 + this.pendingLength) return;
      const joined = Buffer.concat(this.chunks, this.bufferedBytes);
      this.chunks = [];
      this.bufferedBytes = 0;
      this.pendingLength = -1;
      const rest = this.drainChunk(joined, onFrame);
      if (rest.length === 0) return;
      this.chunks.push(rest);
      this.bufferedBytes = rest.length;
      if (rest.length >= 4) this.pendingLength = this.checkLength(rest.readUInt32BE(0));
      return;
    }
  }

  /** Emits every whole frame at the start of `chunk`; returns the incomplete remainder. */
  private drainChunk(chunk: Buffer, onFrame: (frame: Buffer) => void): Buffer {
    let pos = 0;
    while (chunk.length - pos >= 4) {
      const length = this.checkLength(chunk.readUInt32BE(pos));
      if (chunk.length - pos - 4 < length) break;
      onFrame(chunk.subarray(pos + 4, pos + 4 + length));
      pos += 4 + length;
    }
    return pos === 0 ? chunk : chunk.subarray(pos);
  }

  private peekUint32(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    return Buffer.concat(this.chunks, 4).readUInt32BE(0);
  }

  private checkLength(length: number): number {
    if (length > this.frameBytesMax) throw new DecodeError('FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the limit of ${this.frameBytesMax}`);
    if (length < this.frameBytesMin) throw new DecodeError('MALFORMED_REQUEST', `frame of ${length} bytes is shorter than its ${this.frameBytesMin}-byte header`);
    return length;
  }
}

export interface RequestHeader {
  apiKey: number;
  apiVersion: number;
  correlationId: number;
}

export function decodeRequestHeader(frame: Buffer): RequestHeader {
  if (frame.length < requestHeaderBytes) throw new DecodeError('MALFORMED_REQUEST', `request frame of ${frame.length} bytes has no room for its header`);
  return { apiKey: frame.readUInt16BE(0), apiVersion: frame.readUInt16BE(2), correlationId: frame.readUInt32BE(4) };
}

/** A whole request frame (length prefix included) around `body`. */
export function encodeRequestFrame(apiKey: number, apiVersion: number, correlationId: number, body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(4 + requestHeaderBytes + body.length);
  frame.writeUInt32BE(requestHeaderBytes + body.length, 0);
  frame.writeUInt16BE(apiKey, 4);
  frame.writeUInt16BE(apiVersion, 6);
  frame.writeUInt32BE(correlationId >>> 0, 8);
  frame.set(body, 12);
  return frame;
}

/** Length prefix + response header for a body of `bodyBytes`; the body is written after it. */
export function encodeResponseHead(correlationId: number, errorCode: number, bodyBytes: number): Buffer {
  const head = Buffer.allocUnsafe(4 + responseHeaderBytes);
  head.writeUInt32BE(responseHeaderBytes + bodyBytes, 0);
  head.writeUInt32BE(correlationId >>> 0, 4);
  head.writeInt16BE(errorCode, 8);
  return head;
}

export interface ResponseHeader {
  correlationId: number;
  errorCode: number;
}

export function decodeResponseHeader(frame: Buffer): ResponseHeader {
  if (frame.length < responseHeaderBytes) throw new DecodeError('MALFORMED_RESPONSE', `response frame of ${frame.length} bytes has no room for its header`);
  return { correlationId: frame.readUInt32BE(0), errorCode: frame.readInt16BE(4) };
}
