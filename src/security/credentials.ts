/**
 * The users a broker knows: for each name and SCRAM mechanism, the salted, iterated credential
 * (wire/scram.ts), never the password. Kept in `<dataDir>/users.json`, replaced whole and durably
 * on every change (storage/durable-file.ts): a crash leaves the old set or the new one.
 *
 * The file is read back strictly: every field validated and bounded; a file that fails is an
 * error naming the file (the broker must not start with an unknown set of users), never a
 * partial load. Nothing here logs or returns a password, hash or salt.
 */
import path from 'node:path';
import { replaceFile } from '../storage/durable-file.js';
import { type FileOps, nodeFileOps } from '../storage/file-ops.js';
import { scramCredential, scramIterationsMax, scramIterationsMin, scramMechanisms, type ScramCredential, type ScramMechanism } from '../wire/scram.js';

export const usersFileName = 'users.json';
/** Users one broker holds. */
export const usersMax = 10_000;
const userNameBytesMax = 255;
const usersFileBytesMax = 16 * 1024 * 1024;
const keyBytesMax = 64;

export class CredentialStoreError extends Error {
  override name = 'CredentialStoreError';
}

/** The reason a user name is not acceptable, or null. */
export function userNameProblem(name: string): string | null {
  if (name.length === 0 || Buffer.byteLength(name) > userNameBytesMax) return `user name must be 1..${userNameBytesMax} bytes`;
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'user name must not hold control characters';
  return null;
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

  /** Adds a user, or replaces its password, for every SCRAM mechanism; durable when it returns. */
  upsert(user: string, password: string, iterations?: number): void {
    const problem = userNameProblem(user);
    if (problem !== null) throw new CredentialStoreError(problem);
    if (password.length === 0) throw new CredentialStoreError('password must not be empty');
    if (!this.users.has(user) && this.users.size >= usersMax) throw new CredentialStoreError(`the broker already holds ${usersMax} users`);
    const credentials = new Map(scramMechanisms.map((mechanism) => [mechanism, scramCredential(mechanism, password, iterations)]));
    const previous = this.users.get(user);
    this.users.set(user, credentials);
    try {
      this.persist();
    } catch (error) {
      if (previous === undefined) this.users.delete(user);
      else this.users.set(user, previous);
      throw error;
    }
  }

  /** Removes a user; false if there was none. Durable when it returns. */
  remove(user: string): boolean {
    const previous = this.users.get(user);
    if (previous === undefined) return false;
    this.users.delete(user);
    try {
      this.persist();
    } catch (error) {
      this.users.set(user, previous);
      throw error;
    }
    return true;
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
    let bytes: Buffer;
    try {
      bytes = this.fileOps.readFile(this.file);
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return;
      throw new CredentialStoreError(`cannot read ${this.file}: ${(error as Error).message}`);
    }
    const fail = (reason: string): never => {
      throw new CredentialStoreError(`${this.file} is invalid (${reason}); restore it from a backup or remove it and add the users again`);
    };
    if (bytes.length > usersFileBytesMax) fail(`${bytes.length} bytes, at most ${usersFileBytesMax}`);
    let root: unknown;
    try {
      root = JSON.parse(bytes.toString('utf8'));
    } catch {
      return fail('not JSON');
    }
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
  const keyBytes = mechanism === 'SCRAM-SHA-256' ? 32 : 64;
  const credential = { mechanism, salt: bytes('salt'), iterations, storedKey: bytes('storedKey'), serverKey: bytes('serverKey') };
  if (credential.storedKey.length !== keyBytes || credential.serverKey.length !== keyBytes) return fail(`keys must be ${keyBytes} bytes`);
  return credential;
}
