/**
 * The few etcd operations membership and the controller election need, as an interface: the
 * real adapter (etcd-client.ts, over the etcd3 package and gRPC) and the tests' in-memory fake
 * implement it, so the logic in membership.ts runs the same against both.
 *
 * Every operation may reject (etcd unreachable, a deadline passed); the caller retries. None of
 * them retries on its own, so the caller's view of time (the lease deadline) stays honest.
 */

/** A key as etcd returns it. Revisions are etcd's int64s, here as safe integers. */
export interface KeyValue {
  key: string;
  value: Buffer;
  createRevision: number;
  modRevision: number;
  /** The lease the key is attached to ('0': none). */
  leaseId: string;
}

export type CreateResult = { created: true; revision: number } | { created: false; current: KeyValue };

export interface EtcdSnapshot {
  /** The store's revision the reads were taken at. */
  revision: number;
  /** The keys under the prefix. */
  prefixed: KeyValue[];
  /** The single key, or null when absent. */
  single: KeyValue | null;
}

/** A condition of a transaction: the key's mod revision (or create revision; 0 = absent) equals `revision`. */
export interface EtcdCompare {
  key: string;
  target: 'mod' | 'create';
  revision: number;
}

/** A write of a transaction: put `value` (under `leaseId`, default none), or delete when value is null. */
export interface EtcdWrite {
  key: string;
  value: Buffer | null;
  leaseId?: string;
}

export interface EtcdPort {
  /** A new lease; resolves to its id and the TTL etcd granted (it may be longer than asked). */
  grantLease(ttlSeconds: number): Promise<{ leaseId: string; ttlSeconds: number }>;
  /** Renews the lease; resolves to its remaining TTL in seconds, 0 when etcd no longer has it. */
  keepAlive(leaseId: string): Promise<number>;
  /** Revokes the lease and deletes every key attached to it; an unknown lease is not an error. */
  revokeLease(leaseId: string): Promise<void>;
  /**
   * In one transaction: if `key` does not exist (create revision 0), put `value` under the lease
   * and resolve with the revision of that write; else resolve with the key as it is.
   */
  createIfAbsent(key: string, value: Buffer, leaseId: string): Promise<CreateResult>;
  /**
   * If every compare holds, applies every write, all in one transaction; resolves whether it did
   * and the store's revision after it (a put's keys then have that mod revision).
   */
  txn(compares: readonly EtcdCompare[], writes: readonly EtcdWrite[]): Promise<{ succeeded: boolean; revision: number }>;
  /** Every key under each prefix, read in one transaction (one revision). */
  list(prefixes: readonly string[]): Promise<{ revision: number; kvs: KeyValue[][] }>;
  /** Every key under `prefix` and the key `single`, read in one transaction (one revision). */
  snapshot(prefix: string, single: string): Promise<EtcdSnapshot>;
  /**
   * Calls `onChange` after any change to a key under `prefix` (or to `prefix` itself when
   * `isPrefix` is false), and whenever the watch reconnects (changes may have been missed).
   * The watch survives etcd restarts; its handle stops it.
   */
  watch(prefix: string, isPrefix: boolean, onChange: () => void): Promise<{ close(): Promise<void> }>;
  close(): Promise<void>;
}
