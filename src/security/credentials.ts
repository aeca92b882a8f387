/**
 * The users a broker knows: for each name and SCRAM mechanism, the salted, iterated credential
 * (wire/scram.ts), never the password. Kept in `<dataDir>/users.json`, replaced whole and durably
 * on every change (storage/durable-file.ts): a crash leaves the old set or the new one.
 *
 * The file is read back strictly: every field validated and bounded; a file that fails is an
 * error naming the file (the broker must not start with an unknown set of users), never a
 * partial load. Nothing here logs or returns a password, hash or salt.
 *
 * Changes come from a password (`upsert`, offline administration) or as credentials a client
 * derived itself (`apply`, the AlterUserScramCredentials API): either way the running broker's
 * store is the one changed, so a new password counts at the next login.
 */
import path from 'node:path';
import { readJsonFile, replaceFile } from '../storage/durable-file.js';
import { type FileOps, nodeFileOps } from '../storage/file-ops.js';
import { scramCredential, scramIterationsMax, scramIterationsMin, scramMechanisms, type ScramCredential, type ScramMechanism } from '../wire/scram.js';

export const usersFileName = 'users.json';
/** Users one broker holds. */
export const usersMax = 10_000;
const userNameBytesMax = 255;
const usersFileBytesMax = 16 * 1024 * 1024;
const keyBytesMax = 64;
/** Salt lengths accepted for new credentials (scramCredential draws 24 random bytes). */
const saltBytesMin = 16;
const saltBytesMax = 64;
const keyBytesOf: Record<ScramMechanism, number> = { 'SCRAM-SHA-256': 32, 'SCRAM-SHA-512': 64 };

export class CredentialStoreError extends Error {
  override name = 'CredentialStoreError';
}

/** The reason a user name is not acceptable, or null. */
export function userNameProblem(name: string): string | null {
  if (name.length === 0 || Buffer.byteLength(name) > userNameBytesMax) return `user name must be 1..${userNameBytesMax} bytes`;
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'user name must not hold control characters';
  return null;
}

/**
 * The reason one user's new credentials are not acceptable, or null: at least one, one per
 * mechanism, each with an iteration count in scramIterationsMin..Max, a salt of
 * saltBytesMin..saltBytesMax bytes and keys as long as the mechanism's hash.
 */
export function credentialsProblem(credentials: readonly ScramCredential[]): string | null {
  if (credentials.length === 0) return 'at least one credential is needed (a user without one cannot log in: remove it instead)';
  const seen = new Set<string>();
  for (const { mechanism, salt, iterations, storedKey, serverKey } of credentials) {
    if (!(scramMechanisms as readonly string[]).includes(mechanism)) return `unknown mechanism ${String(mechanism).slice(0, 64)} (known: ${scramMechanisms.join(', ')})`;
    if (seen.has(mechanism)) return `${mechanism} is given twice`;
    seen.add(mechanism);
    if (!Number.isInteger(iterations) || iterations < scramIterationsMin || iterations > scramIterationsMax) {
      return `${mechanism}: iterations must be in ${scramIterationsMin}..${scramIterationsMax}, got ${iterations}`;
    }
    if (salt.length < saltBytesMin || salt.length > saltBytesMax) return `${mechanism}: the salt must be ${saltBytesMin}..${saltBytesMax} bytes, got ${salt.length}`;
    const keyBytes = keyBytesOf[mechanism];
    if (storedKey.length !== keyBytes || serverKey.length !== keyBytes) return `${mechanism}: storedKey and serverKey must be ${keyBytes} bytes`;
  }
  return null;
}

/** One change of `CredentialStore.apply`: the user's credentials become exactly these, or (null) the user is removed. */
export interface CredentialChange {
  user: string;
  credentials: readonly ScramCredential[] | null;
}

interface StoredCredential {
  salt: string;
  iterations: number;
  storedKey: string;
  serverKey: string;
}

export class CredentialStore {
  private readonly users = new Map<string, Map<ScramMechanism, ScramCredential>>();
  private readonly file: string;

  private constructor(dataDir: string, private readonly fileOps: FileOps) {
    this.file = path.join(dataDir, usersFileName);
  }

  /** Loads `<dataDir>/users.json` (none: no users yet). */
  static open(dataDir: string, fileOps: FileOps = nodeFileOps): CredentialStore {
    const store = new CredentialStore(dataDir, fileOps);
    store.load();
    return store;
  }

  get size(): number {
    return this.users.size;
  }

  names(): string[] {
    return [...this.users.keys()].sort();
  }

  /** The credential for a SCRAM exchange, or null for an unknown user or mechanism. */
  credential(user: string, mechanism: ScramMechanism): ScramCredential | null {
    return this.users.get(user)?.get(mechanism) ?? null;
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  /** A user's mechanisms and iteration counts (never a salt or key), or null for an unknown user. */
  describe(user: string): { mechanism: ScramMechanism; iterations: number }[] | null {
    const byMechanism = this.users.get(user);
    if (byMechanism === undefined) return null;
    return scramMechanisms.filter((m) => byMechanism.has(m)).map((mechanism) => ({ mechanism, iterations: byMechanism.get(mechanism)!.iterations }));
  }

  /** Adds a user, or replaces its password, for every SCRAM mechanism; durable when it returns. */
  upsert(user: string, password: string, iterations?: number): void {
    if (password.length === 0) throw new CredentialStoreError('password must not be empty');
    this.apply([{ user, credentials: scramMechanisms.map((mechanism) => scramCredential(mechanism, password, iterations)) }]);
  }

  /** Removes a user; false if there was none. Durable when it returns. */
  remove(user: string): boolean {
    if (!this.users.has(user)) return false;
    this.apply([{ user, credentials: null }]);
    return true;
  }

  /**
   * Applies changes, all or none, with one durable write: when it returns they survive a crash;
   * when it throws (an invalid change, CredentialStoreError, checked before anything changes; or
   * the write failed) memory and disk are as they were.
   */
  apply(changes: readonly CredentialChange[]): void {
    const seen = new Set<string>();
    let size = this.users.size;
    for (const { user, credentials } of changes) {
      const problem = seen.has(user) ? 'changed twice in one update' : userNameProblem(user)
        ?? (credentials === null ? (this.users.has(user) ? null : 'no such user') : credentialsProblem(credentials));
      if (problem !== null) throw new CredentialStoreError(`user "${user.slice(0, 255)}": ${problem}`);
      seen.add(user);
      if (credentials === null) size--;
      else if (!this.users.has(user)) size++;
    }
    if (size > usersMax) throw new CredentialStoreError(`the broker already holds ${this.users.size} users, at most ${usersMax}`);
    const previous = changes.map(({ user }) => [user, this.users.get(user)] as const);
    for (const { user, credentials } of changes) {
      if (credentials === null) this.users.delete(user);
      else this.users.set(user, new Map(credentials.map((c) => [c.mechanism, { ...c }])));
    }
    try {
      this.persist();
    } catch (error) {
      for (const [user, before] of previous) {
        if (before === undefined) this.users.delete(user);
        else this.users.set(user, before);
      }
      throw error;
    }
  }

  private persist(): void {
    const users: Record<string, Record<string, StoredCredential>> = {};
    for (const [name, byMechanism] of [...this.users].sort(([a], [b]) => a.localeCompare(b))) {
      users[name] = Object.fromEntries([...byMechanism].map(([mechanism, c]) => [mechanism, {
        salt: c.salt.toString('base64'), iterations: c.iterations, storedKey: c.storedKey.toString('base64'), serverKey: c.serverKey.toString('base64'),
      }]));
    }
    replaceFile(this.fileOps, this.file, Buffer.from(`${JSON.stringify({ version: 1, users }, null, 2)}\n`), { durable: true });
  }

  private load(): void {
    const fail = (reason: string): never => {
      throw new CredentialStoreError(`${this.file} is invalid (${reason}); restore it from a backup or remove it and add the users again`);
    };
    const read = readJsonFile(this.fileOps, this.file, usersFileBytesMax, {
      unreadable: (message) => {
        throw new CredentialStoreError(`cannot read ${this.file}: ${message}`);
      },
      invalid: fail,
    });
    if (read === null) return;
    const root = read.value;
    const top = root as { version?: unknown; users?: unknown };
    if (top === null || typeof top !== 'object' || top.version !== 1 || top.users === null || typeof top.users !== 'object' || Array.isArray(top.users)) fail('expected {"version": 1, "users": {...}}');
    const entries = Object.entries(top.users as Record<string, unknown>);
    if (entries.length > usersMax) fail(`more than ${usersMax} users`);
    for (const [name, value] of entries) {
      const problem = userNameProblem(name);
      if (problem !== null) fail(`user "${name.slice(0, 40)}": ${problem}`);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(`user "${name}": expected an object of mechanisms`);
      const byMechanism = new Map<ScramMechanism, ScramCredential>();
      for (const [mechanism, stored] of Object.entries(value as Record<string, unknown>)) {
        if (!(scramMechanisms as readonly string[]).includes(mechanism)) fail(`user "${name}": unknown mechanism ${mechanism.slice(0, 40)}`);
        byMechanism.set(mechanism as ScramMechanism, parseCredential(mechanism as ScramMechanism, stored, (reason) => fail(`user "${name}", ${mechanism}: ${reason}`)));
      }
      this.users.set(name, byMechanism);
    }
  }
}

function parseCredential(mechanism: ScramMechanism, value: unknown, fail: (reason: string) => never): ScramCredential {
  const stored = value as Partial<StoredCredential> | null;
  if (stored === null || typeof stored !== 'object') return fail('expected an object');
  const iterations = stored.iterations;
  if (typeof iterations !== 'number' || !Number.isInteger(iterations) || iterations < scramIterationsMin || iterations > scramIterationsMax) return fail('bad iteration count');
  const bytes = (field: 'salt' | 'storedKey' | 'serverKey'): Buffer => {
    const text = stored[field];
    if (typeof text !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length > 4 * keyBytesMax) return fail(`bad ${field}`);
    return Buffer.from(text, 'base64');
  };
  const keyBytes = keyBytesOf[mechanism];
  const credential = { mechanism, salt: bytes('salt'), iterations, storedKey: bytes('storedKey'), serverKey: bytes('serverKey') };
  if (credential.storedKey.length !== keyBytes || credential.serverKey.length !== keyBytes) return fail(`keys must be ${keyBytes} bytes`);
  return credential;
}
