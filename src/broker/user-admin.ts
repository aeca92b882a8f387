/**
 * Offline user administration (`rill users add|remove|list --data-dir DIR`): changes
 * `<dataDir>/users.json` of a broker that is not running. It takes the data directory's lock for
 * the time of the change, so it refuses (naming the holder) while a live broker holds it: a
 * broker reads its users at start, and two writers must never race on the file (`list` only
 * reads, and works while the broker runs). Online
 * administration through an admin API is not built yet.
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
      throw new UserAdminError(`${error.message}. Users are changed offline only (the broker reads ${usersFileName} at start): stop the broker, change the users, start it again`);
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

/** Reads without the lock: users.json is replaced whole (rename), so a running broker's file reads consistently. */
export function listUsers(dataDir: string): string[] {
  if (!fs.existsSync(dataDir)) throw new UserAdminError(`data directory ${dataDir} does not exist`);
  try {
    return CredentialStore.open(dataDir).names();
  } catch (error) {
    if (error instanceof CredentialStoreError) throw new UserAdminError(error.message);
    throw error;
  }
}
