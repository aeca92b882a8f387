/**
 * MessagePack bodies of the authentication APIs (protocol/apis/sasl-handshake.md and
 * sasl-authenticate.md): SaslHandshake (17) names the mechanism, SaslAuthenticate (36) carries
 * the mechanism's opaque bytes (a SCRAM message, or PLAIN's "\0user\0password"). Decoders bound
 * every field before anything else looks at it.
 */
import { DecodeError } from '../lib/errors.js';
import { requestSchema as rq, responseSchema as rs, type Schema } from './schema.js';
import { scramMessageBytesMax } from './scram.js';

/** Mechanism names as they travel (Kafka's spelling). */
export const saslMechanismNames = ['SCRAM-SHA-256', 'SCRAM-SHA-512', 'PLAIN'] as const;
export type SaslMechanismName = (typeof saslMechanismNames)[number];

/** Longest mechanism name accepted in a request (the known ones are far shorter). */
export const saslMechanismBytesMax = 64;
/** Longest authBytes in either direction: a SCRAM message, or PLAIN's user and password. */
export const saslAuthBytesMax = scramMessageBytesMax;
const mechanismsMax = 16;

export interface SaslHandshakeRequest {
  mechanism: string;
}

export interface SaslHandshakeResponse {
  /** Every mechanism the listener offers (what a client may try instead). */
  mechanisms: string[];
}

export interface SaslAuthenticateRequest {
  authBytes: Buffer;
}

export interface SaslAuthenticateResponse {
  authBytes: Buffer;
}

function bytes(schema: Schema, value: unknown, path: string, code: 'MALFORMED_REQUEST' | 'MALFORMED_RESPONSE'): Buffer {
  if (!(value instanceof Uint8Array)) schema.fail(path, 'bin', value);
  if (value.length > saslAuthBytesMax) throw new DecodeError(code, `${path}: ${value.length} bytes, at most ${saslAuthBytesMax}`);
  return Buffer.from(value.buffer, value.byteOffset, value.length);
}

export function decodeSaslHandshakeRequest(value: unknown): SaslHandshakeRequest {
  const obj = rq.object(value, 'body');
  return { mechanism: rq.string(obj.mechanism, 'mechanism', saslMechanismBytesMax) };
}

export function decodeSaslHandshakeResponse(value: unknown): SaslHandshakeResponse {
  const obj = rs.object(value, 'body');
  return { mechanisms: rs.array(obj.mechanisms, 'mechanisms', mechanismsMax).map((m, i) => rs.string(m, `mechanisms[${i}]`, saslMechanismBytesMax)) };
}

export function decodeSaslAuthenticateRequest(value: unknown): SaslAuthenticateRequest {
  const obj = rq.object(value, 'body');
  return { authBytes: bytes(rq, obj.authBytes, 'authBytes', 'MALFORMED_REQUEST') };
}

export function decodeSaslAuthenticateResponse(value: unknown): SaslAuthenticateResponse {
  const obj = rs.object(value, 'body');
  return { authBytes: bytes(rs, obj.authBytes, 'authBytes', 'MALFORMED_RESPONSE') };
}

/** PLAIN (RFC 4616): "authzid \0 authcid \0 passwd"; authzid must be empty or equal authcid. */
export function encodePlain(user: string, password: string): Buffer {
  return Buffer.from(`\u0000${user}\u0000${password}`, 'utf8');
}

export function decodePlain(message: Buffer): { user: string; password: string } {
  const text = message.toString('utf8');
  const parts = text.split('\u0000');
  if (parts.length !== 3) throw new DecodeError('MALFORMED_REQUEST', 'PLAIN message must be authzid NUL user NUL password');
  const [authzid, user, password] = parts as [string, string, string];
  if (user.length === 0 || password.length === 0) throw new DecodeError('MALFORMED_REQUEST', 'PLAIN message has an empty user or password');
  if (authzid !== '' && authzid !== user) throw new DecodeError('MALFORMED_REQUEST', 'PLAIN authorization identity must be empty or the user');
  return { user, password };
}
