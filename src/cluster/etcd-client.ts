/**
 * EtcdPort over etcd's v3 API with the `etcd3` package (gRPC through @grpc/grpc-js). The broker
 * loads this module, and so etcd3 and gRPC, only when it is started with --etcd: a single broker
 * carries neither (test/e2e/broker-footprint.test.ts).
 *
 * etcd3's own retries and circuit breaker are turned off: membership.ts retries on its own
 * schedule, and a library retrying behind its back would make the lease deadline it computes
 * optimistic. Every unary call has a deadline (requestTimeoutMs); a keepalive is one request on a
 * fresh stream with the same deadline. Watches reconnect on their own, quickly (at most 1 s apart).
 */
import { Etcd3, type IKeyValue } from 'etcd3';
import { ExponentialBackoff, noop, type IBackoff } from 'cockatiel';
import type { CreateResult, EtcdPort, EtcdSnapshot, KeyValue } from './etcd-port.js';

/** The end of the range that holds every key starting with `prefix` (etcd's prefix convention). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** gRPC's messages end in an empty "Resolution note: "; the rest is what a person needs. */
function tidy(error: unknown): never {
  if (error instanceof Error) error.message = error.message.replace(/\.?\s*Resolution note:\s*$/, '');
  throw error;
}

function revision(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`etcd answered a ${what} that is not a safe integer: ${value}`);
  return n;
}

function keyValue(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString('utf8'),
    value: kv.value,
    createRevision: revision(kv.create_revision, 'create revision'),
    modRevision: revision(kv.mod_revision, 'mod revision'),
    leaseId: String(kv.lease ?? '0'),
  };
}

export interface EtcdClientOptions {
  /** Deadline of each request. */
  requestTimeoutMs: number;
}

/** A client for the etcd cluster at `endpoints` (http://HOST:PORT). Connects lazily. */
export function openEtcd(endpoints: readonly string[], options: EtcdClientOptions): EtcdPort {
  const timeoutMs = options.requestTimeoutMs;
  // etcd3's types name cockatiel's IBackoff, but its watch manager calls next() on the value first,
  // as on a backoff factory (its own default is `new ExponentialBackoff()`, as here).
  const watchBackoff = new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) as unknown as IBackoff<unknown>;
  const client = new Etcd3({
    hosts: [...endpoints],
    dialTimeout: timeoutMs,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeoutMs }),
    faultHandling: { host: () => noop, global: noop, watchBackoff },
    grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000 },
  });

  return {
    async grantLease(ttlSeconds) {
      const response = await client.leaseClient.leaseGrant({ TTL: ttlSeconds }).catch(tidy);
      if (response.error) throw new Error(`etcd refused a lease: ${response.error}`);
      return { leaseId: String(response.ID), ttlSeconds: Number(response.TTL) };
    },

    async keepAlive(leaseId) {
      const stream = await client.leaseClient.leaseKeepAlive().catch(tidy);
      return new Promise<number>((resolve, reject) => {
        const finish = (action: () => void): void => {
          clearTimeout(timer);
          try {
            stream.cancel();
          } catch {
            // Already ended.
          }
          action();
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`etcd did not answer a lease keepalive within ${timeoutMs} ms`))), timeoutMs);
        stream.on('data', (response) => finish(() => resolve(Number(response.TTL))));
        stream.on('error', (error) => finish(() => {
          try {
            tidy(error);
          } catch (tidied) {
            reject(tidied);
          }
        }));
        stream.write({ ID: leaseId });
      });
    },

    async revokeLease(leaseId) {
      try {
        await client.leaseClient.leaseRevoke({ ID: leaseId }).catch(tidy);
      } catch (error) {
        // Gone already (expired, or revoked by someone else): what we wanted.
        if ((error as Error).name !== 'EtcdLeaseInvalidError' && !/requested lease not found/.test((error as Error).message)) throw error;
      }
    },

    async createIfAbsent(key, value, leaseId): Promise<CreateResult> {
      const keyBytes = Buffer.from(key);
      const response = await client.kv.txn({
        compare: [{ key: keyBytes, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key: keyBytes, value, lease: leaseId } }],
        failure: [{ request_range: { key: keyBytes } }],
      }).catch(tidy);
      if (response.succeeded) return { created: true, revision: revision(response.header.revision, 'revision') };
      const current = response.responses[0]?.response_range?.kvs[0];
      // Deleted between the compare and the read cannot happen (one transaction); be safe anyway.
      if (current === undefined) throw new Error(`etcd: ${key} neither absent nor present`);
      return { created: false, current: keyValue(current) };
    },

    async txn(compares, writes) {
      const response = await client.kv.txn({
        compare: compares.map((c) => (c.target === 'mod'
          ? { key: Buffer.from(c.key), target: 'Mod' as const, result: 'Equal' as const, mod_revision: c.revision }
          : { key: Buffer.from(c.key), target: 'Create' as const, result: 'Equal' as const, create_revision: c.revision })),
        success: writes.map((w) => (w.value === null
          ? { request_delete_range: { key: Buffer.from(w.key) } }
          : { request_put: { key: Buffer.from(w.key), value: w.value, lease: w.leaseId ?? '0' } })),
        failure: [],
      }).catch(tidy);
      return { succeeded: response.succeeded, revision: revision(response.header.revision, 'revision') };
    },

    async list(prefixes) {
      const response = await client.kv.txn({
        compare: [],
        success: prefixes.map((prefix) => ({ request_range: { key: Buffer.from(prefix), range_end: prefixEnd(Buffer.from(prefix)) } })),
        failure: [],
      }).catch(tidy);
      return {
        revision: revision(response.header.revision, 'revision'),
        kvs: prefixes.map((_, i) => (response.responses[i]?.response_range?.kvs ?? []).map(keyValue)),
      };
    },

    async snapshot(prefix, single): Promise<EtcdSnapshot> {
      const prefixBytes = Buffer.from(prefix);
      const response = await client.kv.txn({
        compare: [],
        success: [{ request_range: { key: prefixBytes, range_end: prefixEnd(prefixBytes) } }, { request_range: { key: Buffer.from(single) } }],
        failure: [],
      }).catch(tidy);
      const [many, one] = response.responses;
      return {
        revision: revision(response.header.revision, 'revision'),
        prefixed: (many?.response_range?.kvs ?? []).map(keyValue),
        single: one?.response_range?.kvs[0] === undefined ? null : keyValue(one.response_range.kvs[0]),
      };
    },

    async watch(key, isPrefix, onChange) {
      const builder = client.watch();
      // watcher(), not create(): it connects in the background (and reconnects after etcd
      // restarts); its 'connected' event makes the caller read again what it may have missed.
      const watcher = (isPrefix ? builder.prefix(key) : builder.key(key)).watcher();
      watcher.on('data', () => onChange());
      watcher.on('connected', () => onChange());
      // An EventEmitter without an 'error' listener throws: a watch failing must not crash the broker.
      watcher.on('error', () => onChange());
      return { close: () => watcher.cancel() };
    },

    async close() {
      client.close();
    },
  };
}
