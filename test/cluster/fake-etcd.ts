/**
 * An in-memory etcd for model tests: one store with revisions, leases that expire on the (fake)
 * clock, watches; and per-broker clients (EtcdPort) whose link to the store a test can cut in
 * the ways a real network fails:
 *
 *   up         requests and replies go through (after `latencyMs` each way)
 *   refuse     requests fail at once (etcd down, connection refused)
 *   blackhole  requests never arrive; they fail after the client's deadline
 *   oneway     requests arrive and are applied; replies are lost (fail after the deadline)
 *   dead       the broker is gone (SIGKILL): its requests never settle
 *
 * Time is whatever Date.now() says: tests run under vi.useFakeTimers().
 */
import type { CreateResult, EtcdCompare, EtcdPort, EtcdSnapshot, EtcdWrite, KeyValue } from '../../src/cluster/etcd-port.js';

interface Stored {
  value: Buffer;
  createRevision: number;
  modRevision: number;
  leaseId: string;
}

interface Lease {
  ttlSeconds: number;
  expiresAtMs: number;
}

interface Watch {
  key: string;
  isPrefix: boolean;
  onChange: () => void;
  client: FakeEtcdClient;
}

export type LinkMode = 'up' | 'refuse' | 'blackhole' | 'oneway' | 'dead';

export class FakeEtcd {
  revision = 1;
  private readonly kvs = new Map<string, Stored>();
  private readonly leases = new Map<string, Lease>();
  private nextLeaseId = 1000;
  readonly watches = new Set<Watch>();
  private readonly expiry: NodeJS.Timeout;

  constructor(readonly latencyMs = 2) {
    // etcd checks for expired leases on its own; so does the fake, every 50 ms.
    this.expiry = setInterval(() => this.expireLeases(), 50);
  }

  client(requestTimeoutMs = 1000): FakeEtcdClient {
    return new FakeEtcdClient(this, requestTimeoutMs);
  }

  close(): void {
    clearInterval(this.expiry);
  }

  /** The key as stored (tests look at what etcd believes). */
  get(key: string): KeyValue | null {
    const stored = this.kvs.get(key);
    return stored === undefined ? null : { key, ...stored };
  }

  leaseAlive(leaseId: string): boolean {
    this.expireLeases();
    return this.leases.has(leaseId);
  }

  /** Writes a key outside of any lease (an operator with etcdctl). */
  putRaw(key: string, value: Buffer): void {
    this.put(key, value, '0');
  }

  expireLeases(): void {
    const now = Date.now();
    for (const [id, lease] of this.leases) if (lease.expiresAtMs <= now) this.revoke(id);
  }

  grant(ttlSeconds: number): { leaseId: string; ttlSeconds: number } {
    const leaseId = String(this.nextLeaseId++);
    this.leases.set(leaseId, { ttlSeconds, expiresAtMs: Date.now() + ttlSeconds * 1000 });
    return { leaseId, ttlSeconds };
  }

  keepAlive(leaseId: string): number {
    this.expireLeases();
    const lease = this.leases.get(leaseId);
    if (lease === undefined) return 0;
    lease.expiresAtMs = Date.now() + lease.ttlSeconds * 1000;
    return lease.ttlSeconds;
  }

  revoke(leaseId: string): void {
    if (!this.leases.delete(leaseId)) return;
    for (const [key, stored] of [...this.kvs]) {
      if (stored.leaseId === leaseId) {
        this.kvs.delete(key);
        this.revision++;
        this.notify(key);
      }
    }
  }

  createIfAbsent(key: string, value: Buffer, leaseId: string): CreateResult {
    this.expireLeases();
    const current = this.kvs.get(key);
    if (current !== undefined) return { created: false, current: { key, ...current } };
    if (!this.leases.has(leaseId)) throw new Error('etcdserver: requested lease not found');
    this.put(key, value, leaseId);
    return { created: true, revision: this.revision };
  }

  snapshot(prefix: string, single: string): EtcdSnapshot {
    this.expireLeases();
    const prefixed = [...this.kvs].filter(([key]) => key.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, stored]) => ({ key, ...stored }));
    const one = this.kvs.get(single);
    return { revision: this.revision, prefixed, single: one === undefined ? null : { key: single, ...one } };
  }

  txn(compares: readonly EtcdCompare[], writes: readonly EtcdWrite[]): { succeeded: boolean; revision: number } {
    this.expireLeases();
    const holds = compares.every((c) => {
      const stored = this.kvs.get(c.key);
      const actual = stored === undefined ? 0 : c.target === 'mod' ? stored.modRevision : stored.createRevision;
      return actual === c.revision;
    });
    if (!holds) return { succeeded: false, revision: this.revision };
    if (writes.length > 0) this.revision++;
    const revision = this.revision;
    for (const w of writes) {
      if (w.value === null) {
        if (this.kvs.delete(w.key)) this.notify(w.key);
        continue;
      }
      const createRevision = this.kvs.get(w.key)?.createRevision ?? revision;
      this.kvs.set(w.key, { value: Buffer.from(w.value), createRevision, modRevision: revision, leaseId: w.leaseId ?? '0' });
      this.notify(w.key);
    }
    return { succeeded: true, revision };
  }

  list(prefixes: readonly string[]): { revision: number; kvs: KeyValue[][] } {
    this.expireLeases();
    return {
      revision: this.revision,
      kvs: prefixes.map((prefix) => [...this.kvs].filter(([key]) => key.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, stored]) => ({ key, ...stored }))),
    };
  }

  private put(key: string, value: Buffer, leaseId: string): void {
    this.revision++;
    const createRevision = this.kvs.get(key)?.createRevision ?? this.revision;
    this.kvs.set(key, { value: Buffer.from(value), createRevision, modRevision: this.revision, leaseId });
    this.notify(key);
  }

  private notify(key: string): void {
    for (const watch of this.watches) {
      const hit = watch.isPrefix ? key.startsWith(watch.key) : key === watch.key;
      if (hit && watch.client.mode === 'up') setTimeout(() => watch.onChange(), this.latencyMs);
    }
  }
}

export class FakeEtcdClient implements EtcdPort {
  private linkMode: LinkMode = 'up';
  closed = false;
  /** Requests sent through this client, by operation (tests check the loop is not chatty). */
  readonly requests = new Map<string, number>();

  constructor(private readonly etcd: FakeEtcd, private readonly requestTimeoutMs: number) {}

  get mode(): LinkMode {
    return this.linkMode;
  }

  set mode(mode: LinkMode) {
    const healed = this.linkMode !== 'up' && mode === 'up';
    this.linkMode = mode;
    // A watch that reconnects says so (the real adapter calls onChange on 'connected').
    if (healed) for (const watch of this.etcd.watches) if (watch.client === this) setTimeout(() => watch.onChange(), this.etcd.latencyMs);
  }

  /** Runs `operation` on the store as the link allows. */
  private request<T>(name: string, operation: () => T): Promise<T> {
    this.requests.set(name, (this.requests.get(name) ?? 0) + 1);
    if (this.closed) return Promise.reject(new Error('client closed'));
    const latencyMs = this.etcd.latencyMs;
    return new Promise<T>((resolve, reject) => {
      const mode = this.linkMode;
      if (mode === 'dead') return;
      if (mode === 'refuse') {
        setTimeout(() => reject(new Error('14 UNAVAILABLE: connect ECONNREFUSED')), 1);
        return;
      }
      if (mode === 'blackhole') {
        setTimeout(() => reject(new Error('4 DEADLINE_EXCEEDED')), this.requestTimeoutMs);
        return;
      }
      setTimeout(() => {
        // The link may have failed while the request was on its way.
        if (this.linkMode === 'dead') return;
        if (this.linkMode === 'refuse' || this.linkMode === 'blackhole') {
          setTimeout(() => reject(new Error('4 DEADLINE_EXCEEDED')), this.requestTimeoutMs - latencyMs);
          return;
        }
        let result: T;
        try {
          result = operation();
        } catch (error) {
          setTimeout(() => reject(error), latencyMs);
          return;
        }
        if (mode === 'oneway' || this.linkMode === 'oneway') {
          setTimeout(() => reject(new Error('4 DEADLINE_EXCEEDED')), this.requestTimeoutMs - latencyMs);
          return;
        }
        setTimeout(() => {
          if (this.linkMode === 'up') resolve(result);
          else if (this.linkMode !== 'dead') reject(new Error('4 DEADLINE_EXCEEDED'));
        }, latencyMs);
      }, latencyMs);
    });
  }

  grantLease(ttlSeconds: number): Promise<{ leaseId: string; ttlSeconds: number }> {
    return this.request('grant', () => this.etcd.grant(ttlSeconds));
  }

  keepAlive(leaseId: string): Promise<number> {
    return this.request('keepAlive', () => this.etcd.keepAlive(leaseId));
  }

  revokeLease(leaseId: string): Promise<void> {
    return this.request('revoke', () => this.etcd.revoke(leaseId));
  }

  createIfAbsent(key: string, value: Buffer, leaseId: string): Promise<CreateResult> {
    return this.request('createIfAbsent', () => this.etcd.createIfAbsent(key, value, leaseId));
  }

  txn(compares: readonly EtcdCompare[], writes: readonly EtcdWrite[]): Promise<{ succeeded: boolean; revision: number }> {
    return this.request('txn', () => this.etcd.txn(compares, writes));
  }

  list(prefixes: readonly string[]): Promise<{ revision: number; kvs: KeyValue[][] }> {
    return this.request('list', () => this.etcd.list(prefixes));
  }

  snapshot(prefix: string, single: string): Promise<EtcdSnapshot> {
    return this.request('snapshot', () => this.etcd.snapshot(prefix, single));
  }

  async watch(key: string, isPrefix: boolean, onChange: () => void): Promise<{ close(): Promise<void> }> {
    const watch: Watch = { key, isPrefix, onChange, client: this };
    this.etcd.watches.add(watch);
    return { close: async () => void this.etcd.watches.delete(watch) };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const watch of [...this.etcd.watches]) if (watch.client === this) this.etcd.watches.delete(watch);
  }
}
