/**
 * MessagePack bodies of user administration (protocol/apis/describe-user-scram-credentials.md and
 * alter-user-scram-credentials.md). DescribeUserScramCredentials (50) answers users with their
 * mechanisms and iteration counts, never a salt or a key. AlterUserScramCredentials (51) sets
 * users' SCRAM credentials, which the client derives from the password (wire/scram.ts
 * scramCredential), so the password never travels, and deletes users.
 *
 * Decoders bound every field and check shapes; whether a name, a mechanism, an iteration count or
 * a key length is acceptable is the broker's to answer, per user, so one bad user does not fail
 * the others.
 */
import { DecodeError } from '../lib/errors.js';
import { requestUsersMax } from '../lib/limits.js';
import { saslMechanismBytesMax } from './sasl.js';
import { requestSchema as rq, responseSchema as rs, type Obj } from './schema.js';

/** Request decoders accept names up to this, so an invalid name gets a per-user error. */
const itemNameBytesMax = 1024;
/** Most credentials named for one user: one per mechanism (two are known today). */
export const userCredentialsMax = 8;
/** Longest salt, StoredKey or ServerKey accepted (SCRAM-SHA-512's keys are 64 bytes). */
export const scramCredentialBytesMax = 64;
const iterationsMax = 0x7fffffff;

// ---- DescribeUserScramCredentials -------------------------------------------------------------

export interface DescribeUsersRequest {
  /** The users to describe; null: every user. */
  users: string[] | null;
}

export interface UserMechanism {
  /** As SaslHandshake spells it: SCRAM-SHA-256, SCRAM-SHA-512. */
  mechanism: string;
  iterations: number;
}

export interface UserDescription {
  name: string;
  errorCode: number;
  errorMessage: string;
  /** Empty on error. */
  credentials: UserMechanism[];
}

export function decodeDescribeUsersRequest(value: unknown): DescribeUsersRequest {
  const obj = rq.object(value, 'body');
  if (obj.users === null || obj.users === undefined) return { users: null };
  return { users: rq.array(obj.users, 'users', requestUsersMax).map((u, i) => rq.string(u, `users[${i}]`, itemNameBytesMax)) };
}

function errorFields(e: Obj, path: string): { errorCode: number; errorMessage: string } {
  return { errorCode: rs.int(e.errorCode, `${path}.errorCode`, -32768, 32767), errorMessage: rs.string(e.errorMessage ?? '', `${path}.errorMessage`) };
}

/** Every user when all were asked for: bounded by bodyArrayLengthMax, above the broker's usersMax. */
export function decodeDescribeUsersResponse(value: unknown): UserDescription[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.users, 'users').map((u, i) => {
    const path = `users[${i}]`;
    const e = rs.object(u, path);
    return {
      name: rs.string(e.name, `${path}.name`, itemNameBytesMax),
      ...errorFields(e, path),
      credentials: rs.array(e.credentials ?? [], `${path}.credentials`, userCredentialsMax).map((c, j) => {
        const cpath = `${path}.credentials[${j}]`;
        const ce = rs.object(c, cpath);
        return { mechanism: rs.string(ce.mechanism, `${cpath}.mechanism`, saslMechanismBytesMax), iterations: rs.int(ce.iterations, `${cpath}.iterations`, 0, iterationsMax) };
      }),
    };
  });
}

// ---- AlterUserScramCredentials ----------------------------------------------------------------

/** One mechanism's credential as the client derived it: what the broker stores, nothing else. */
export interface ScramCredentialBody {
  mechanism: string;
  salt: Buffer;
  iterations: number;
  /** H(HMAC(SaltedPassword, "Client Key")) */
  storedKey: Buffer;
  /** HMAC(SaltedPassword, "Server Key") */
  serverKey: Buffer;
}

export interface UserUpsertion {
  name: string;
  /** The user's credentials after the change: mechanisms not named are removed. */
  credentials: ScramCredentialBody[];
}

export interface AlterUsersRequest {
  upsertions: UserUpsertion[];
  /** Names of users to delete. */
  deletions: string[];
}

export interface UserResult {
  name: string;
  errorCode: number;
  errorMessage: string;
}

function bytes(value: unknown, path: string): Buffer {
  if (!(value instanceof Uint8Array)) return rq.fail(path, 'bin', value);
  if (value.length > scramCredentialBytesMax) throw new DecodeError('MALFORMED_REQUEST', `${path}: ${value.length} bytes, at most ${scramCredentialBytesMax}`);
  // A copy: the broker keeps it, and a view would keep the whole request frame alive.
  return Buffer.from(value);
}

function credential(value: unknown, path: string): ScramCredentialBody {
  const e = rq.object(value, path);
  return {
    mechanism: rq.string(e.mechanism, `${path}.mechanism`, saslMechanismBytesMax),
    salt: bytes(e.salt, `${path}.salt`),
    // Any non-negative i32: the broker answers a count outside its bounds per user.
    iterations: rq.int(e.iterations, `${path}.iterations`, 0, iterationsMax),
    storedKey: bytes(e.storedKey, `${path}.storedKey`),
    serverKey: bytes(e.serverKey, `${path}.serverKey`),
  };
}

export function decodeAlterUsersRequest(value: unknown): AlterUsersRequest {
  const obj = rq.object(value, 'body');
  const upsertions = rq.array(obj.upsertions ?? [], 'upsertions', requestUsersMax).map((u, i) => {
    const path = `upsertions[${i}]`;
    const e = rq.object(u, path);
    return {
      name: rq.string(e.name, `${path}.name`, itemNameBytesMax),
      credentials: rq.array(e.credentials, `${path}.credentials`, userCredentialsMax).map((c, j) => credential(c, `${path}.credentials[${j}]`)),
    };
  });
  const deletions = rq.array(obj.deletions ?? [], 'deletions', requestUsersMax).map((d, i) => rq.string(d, `deletions[${i}]`, itemNameBytesMax));
  const users = upsertions.length + deletions.length;
  if (users > requestUsersMax) throw new DecodeError('MALFORMED_REQUEST', `upsertions and deletions name ${users} users, at most ${requestUsersMax}`);
  return { upsertions, deletions };
}

/** One result per upsertion, then one per deletion, in request order. */
export function decodeAlterUsersResponse(value: unknown): UserResult[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.results, 'results', requestUsersMax).map((r, i) => {
    const e = rs.object(r, `results[${i}]`);
    return { name: rs.string(e.name, `results[${i}].name`, itemNameBytesMax), ...errorFields(e, `results[${i}]`) };
  });
}
