/**
 * Offline user administration (`rill users add|remove|list --data-dir DIR`): changes
 * `<dataDir>/users.json` of a broker that is not running, which is how the first user of a
 * broker that requires authentication is made. It takes the data directory's lock for the time
 * of the change, so it refuses (naming the holder) while a live broker holds it: the running
 * broker keeps its users in memory and writes the file itself, and two writers must never race
 * on it. A running broker's users are changed through it (AlterUserScramCredentials, `rill users
 * add NAME --bootstrap HOST:PORT`). `list` only reads, and works while the broker runs.
 */
import fs from 'node:fs';
import { CredentialStore, CredentialStoreError, usersFileName } from '../security/credentials.js';
import { DataDirLock, DataDirLockError } from './data-dir-lock.js';
import { SettingsError } from './settings.js';

/** A user administration request that cannot be carried out; one line, exit status 1. */
export class UserAdminError extends SettingsError {
  override name = 'UserAdminError';
}

function withStore<T>(dataDir: string, create: boolean, action: (store: CredentialStore) => T): T {
  if (!create && !fs.existsSync(dataDir)) throw new UserAdminError(`data directory ${dataDir} does not exist`);
  let lock: DataDirLock;
  try {
    lock = DataDirLock.acquire(dataDir);
  } catch (error) {
    if (error instanceof DataDirLockError && /in use by another broker|another machine|taking over/.test(error.message)) {
      throw new UserAdminError(`${error.message}. A running broker owns ${usersFileName}: change its users through it (the same command with --bootstrap HOST:PORT instead of --data-dir), or stop the broker first`);
    }
    throw error;
  }
  try {
    return action(CredentialStore.open(dataDir));
  } catch (error) {
    if (error instanceof CredentialStoreError) throw new UserAdminError(error.message);
    throw error;
  } finally {
    lock.release();
  }
}

/** Adds a user or replaces its password; returns whether it existed before. */
export function addUser(dataDir: string, name: string, password: string): { replaced: boolean } {
  return withStore(dataDir, true, (store) => {
    const replaced = store.names().includes(name);
    store.upsert(name, password);
    return { replaced };
  });
}

export function removeUser(dataDir: string, name: string): boolean {
  return withStore(dataDir, false, (store) => store.remove(name));
}

/**
 * Users with their mechanisms and iteration counts (never a salt or key). Reads without the lock:
 * users.json is replaced whole (rename), so a running broker's file reads consistently.
 */
export function listUsers(dataDir: string): { name: string; mechanisms: { mechanism: string; iterations: number }[] }[] {
  if (!fs.existsSync(dataDir)) throw new UserAdminError(`data directory ${dataDir} does not exist`);
  try {
    const store = CredentialStore.open(dataDir);
    return store.names().map((name) => ({ name, mechanisms: store.describe(name) ?? [] }));
  } catch (error) {
    if (error instanceof CredentialStoreError) throw new UserAdminError(error.message);
    throw error;
  }
}
