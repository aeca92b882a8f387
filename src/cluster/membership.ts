/**
 * Membership by lease and the controller election, over etcd (through EtcdPort).
 *
 * A broker holds one etcd lease and keeps it alive; the lease is its heartbeat. Under it sit its
 * registration (/rill/<cluster>/brokers/<nodeId>) and, if it wins the election, the controller
 * key (/rill/<cluster>/controller). When the lease ends (the broker died, was paused past its
 * TTL, or lost etcd), etcd deletes both keys: the broker is dead to the cluster, and every live
 * broker, watching, tries to create the controller key; etcd lets exactly one create it. The
 * controller epoch is that key's create revision (records.ts), larger at every election.
 *
 * One loop does everything, one etcd operation at a time:
 *
 *   no lease ------ grant ------> leased ----- create registration if absent ----> registered
 *      ^                            |                                                  |
 *      |                            +-- held by an earlier run of this broker (same    |
 *      |                            |   host and data directory): revoke its lease,    |
 *      |                            |   create again                                   |
 *      |                            +-- held by another live broker: refused (at       |
 *      |                                start: the start fails; later: retried)        |
 *      +------------- keepalive answers TTL 0 (etcd dropped the lease) ----------------+
 *
 *   registered, no controller key  ---- create it under our lease if absent ----> controller
 *
 * Fencing. The lease is certainly alive until the send time of the last keepalive etcd
 * acknowledged plus the TTL (etcd restarted the countdown after we sent it, never before).
 * `registered` and `isController` compare that deadline with a monotonic clock every time they
 * are read, so a broker paused by SIGSTOP or cut off from etcd stops claiming either the moment
 * its lease may have ended, before any timer runs, and well before another broker can have taken
 * the controller key (etcd expires the lease only after that same deadline). Meanwhile the
 * broker keeps serving what it leads (docs/replication.md says why that is safe), and keeps trying etcd: if the lease is still
 * there it carries on, else it registers again under a new lease.
 *
 * While not registered, the broker vouches for nothing about the cluster: brokers() is empty and
 * controller() is null.
 */
import { EventEmitter } from 'node:events';
import type { Clock } from '../lib/clock.js';
import type { Log } from '../lib/log.js';
import type { EtcdPort, KeyValue } from './etcd-port.js';
import {
  ClusterStateError, InvalidRecordLog, clusterKeys, decodeControllerRecord, decodeRegistration, encodeRecord,
  type BrokerRegistration, type ClusterKeys,
} from './records.js';

/** What a broker is told to join: settings `cluster.*`. */
export interface ClusterConfig {
  /** etcd client URLs (http://HOST:PORT). */
  etcdEndpoints: string[];
  name: string;
  rack: string | null;
  /** Asked of etcd in whole seconds, rounded up, at least leaseTtlSecondsMin. */
  leaseTtlMs: number;
  /** A follower behind its leader this long leaves the ISR. */
  replicaLagMaxMs: number;
  /** Re-create the replicas of a broker dead this long (0: never). */
  autoReplaceDeadBrokersMs?: number;
  /** Bytes/s a leader sends a replica being added by a move (0: unlimited). */
  moveBytesPerSec?: number;
  /** The user replication authenticates as (password: RILL_INTER_BROKER_PASSWORD); null: none. */
  interBrokerUser?: string | null;
}

export const leaseTtlSecondsMin = 2;

export function leaseTtlSeconds(leaseTtlMs: number): number {
  return Math.max(leaseTtlSecondsMin, Math.ceil(leaseTtlMs / 1000));
}

/** How long one etcd request may take: a third of the TTL, within 1..5 s. */
export function etcdRequestTimeoutMs(leaseTtlMs: number): number {
  return Math.min(5000, Math.max(1000, Math.floor(leaseTtlMs / 3)));
}

export interface LiveBroker extends BrokerRegistration {
  leaseId: string;
}

export interface ControllerInfo {
  nodeId: number;
  /** The controller key's create revision: larger at every election. */
  epoch: number;
}

/** Why the first registration failed: the start of the broker fails with it. */
export class ClusterStartError extends Error {
  override name = 'ClusterStartError';
}

/** Another live broker holds this node id. */
export class NodeIdTakenError extends ClusterStartError {
  override name = 'NodeIdTakenError';
}

export interface MembershipOptions {
  port: EtcdPort;
  cluster: string;
  leaseTtlMs: number;
  /** This broker's registration (what others read). */
  self: BrokerRegistration;
  log: Log;
  /** Monotonic time for the lease deadline. */
  clock: Clock;
  /** etcd endpoints as the operator gave them, for messages. */
  endpoints?: readonly string[];
}

interface View {
  brokers: Map<number, LiveBroker>;
  controller: (ControllerInfo & { leaseId: string }) | null;
}

export interface MembershipEvents {
  brokers: [LiveBroker[]];
  controller: [ControllerInfo | null];
  registered: [boolean];
}

export class ClusterMembership extends EventEmitter<MembershipEvents> {
  readonly keys: ClusterKeys;
  private readonly port: EtcdPort;
  private readonly log: Log;
  private readonly clock: Clock;
  private readonly ttlSeconds: number;
  private readonly retryDelayMs: number;
  private leaseId: string | null = null;
  private leaseTtlMs = 0;
  /** Until when (clock ms) the lease is certainly alive. */
  private leaseValidUntilMs = 0;
  private keepAliveDueMs = 0;
  /** The lease our registration was created under, or null. */
  private registeredLease: string | null = null;
  private view: View = { brokers: new Map(), controller: null };
  private closed = false;
  private closing: Promise<void> | null = null;
  private loop: Promise<void> | null = null;
  /** Wakes the loop's sleep (a watch saw a change); `dirty` when it was not asleep. */
  private wake: (() => void) | null = null;
  private dirty = false;
  private fenceTimer: NodeJS.Timeout | null = null;
  private readonly watches: { close(): Promise<void> }[] = [];
  private start: { resolve: () => void; reject: (error: Error) => void } | null = null;
  private started = false;
  /** Last state published (events, log lines), to publish changes only. */
  private published = { registered: false, brokers: '', controller: '' };
  private lastBrokers = new Map<number, LiveBroker>();
  /** Repeated failures are logged once per kind until something succeeds. */
  private failure: { message: string; sinceMs: number } | null = null;
  private readonly invalid: InvalidRecordLog;
  /** register() logged this registration already (publish need not). */
  private announced = false;

  constructor(private readonly options: MembershipOptions) {
    super();
    this.invalid = new InvalidRecordLog(options.log);
    this.port = options.port;
    this.log = options.log;
    this.clock = options.clock;
    this.keys = clusterKeys(options.cluster);
    this.ttlSeconds = leaseTtlSeconds(options.leaseTtlMs);
    this.retryDelayMs = Math.min(500, Math.floor((this.ttlSeconds * 1000) / 6));
  }

  get nodeId(): number {
    return this.options.self.nodeId;
  }

  /** Registered under a lease that is certainly alive now. */
  get registered(): boolean {
    return this.leaseId !== null && this.registeredLease === this.leaseId && this.clock.nowMs() < this.leaseValidUntilMs;
  }

  /** The controller key is ours, under a lease that is certainly alive now. */
  get isController(): boolean {
    return this.registered && this.view.controller !== null && this.view.controller.leaseId === this.leaseId;
  }

  /** The live brokers, by node id; empty while this broker is not registered. */
  brokers(): LiveBroker[] {
    if (!this.registered) return [];
    return [...this.view.brokers.values()].sort((a, b) => a.nodeId - b.nodeId);
  }

  /**
   * The brokers as last read from etcd, registered or not: where replication and clients may try
   * to reach them while this broker cannot vouch for them (etcd away).
   */
  knownBrokers(): LiveBroker[] {
    return [...this.view.brokers.values()].sort((a, b) => a.nodeId - b.nodeId);
  }

  /** The current controller; null when there is none or this broker is not registered. */
  controller(): ControllerInfo | null {
    const controller = this.view.controller;
    return this.registered && controller !== null ? { nodeId: controller.nodeId, epoch: controller.epoch } : null;
  }

  /**
   * Registers (and takes part in the election) before it resolves. Rejects with NodeIdTakenError
   * when another live broker holds this node id, or ClusterStartError when etcd does not answer
   * within timeoutMs; call close() after either.
   */
  async join(timeoutMs: number): Promise<void> {
    const joined = new Promise<void>((resolve, reject) => {
      this.start = { resolve, reject };
    });
    const timer = setTimeout(() => {
      const cause = this.failure === null ? `${this.etcdName} did not answer` : this.failure.message;
      this.start?.reject(new ClusterStartError(`could not register in cluster ${this.options.cluster} within ${timeoutMs} ms (${cause}); is etcd running and reachable at the --etcd URLs?`));
    }, timeoutMs);
    this.loop = this.run();
    try {
      await joined;
    } finally {
      clearTimeout(timer);
      this.start = null;
    }
    this.started = true;
    await this.openWatches();
  }

  /** Leaves the cluster: revokes the lease, so every broker sees this one go at once. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    this.wake?.();
    if (this.fenceTimer !== null) clearTimeout(this.fenceTimer);
    await this.loop;
    await Promise.all(this.watches.map((watch) => watch.close().catch(() => undefined)));
    const leaseId = this.leaseId;
    this.leaseId = null;
    this.registeredLease = null;
    if (leaseId !== null) {
      try {
        await this.port.revokeLease(leaseId);
        if (this.started) this.log('info', `left cluster ${this.options.cluster}: lease revoked, broker ${this.nodeId} is gone from it at once`, { nodeId: this.nodeId });
      } catch (error) {
        // A start that failed registered nothing others could see: its lease just expires.
        if (this.started) this.log('warn', `could not revoke the etcd lease on leaving (${(error as Error).message}); the other brokers see this one gone when it expires (${this.ttlSeconds} s)`, { nodeId: this.nodeId });
      }
    }
    await this.port.close().catch(() => undefined);
    this.publish();
  }

  private async openWatches(): Promise<void> {
    const onChange = (): void => {
      this.dirty = true;
      this.wake?.();
    };
    for (const [key, isPrefix] of [[this.keys.brokersPrefix, true], [this.keys.controller, false]] as const) {
      try {
        this.watches.push(await this.port.watch(key, isPrefix, onChange));
      } catch (error) {
        // The loop re-reads everything every keepalive; a watch only makes changes seen sooner.
        this.log('warn', `cannot watch ${key} in etcd (${(error as Error).message}); changes are seen at the next keepalive instead`, { key });
      }
    }
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      let delayMs: number;
      try {
        await this.step();
        if (this.failure !== null) {
          this.log('info', `etcd answers again (after ${Math.round(this.clock.nowMs() - this.failure.sinceMs)} ms)`, { nodeId: this.nodeId });
          this.failure = null;
        }
        delayMs = Math.max(0, this.keepAliveDueMs - this.clock.nowMs());
      } catch (error) {
        if (error instanceof NodeIdTakenError && !this.started) {
          this.start?.reject(error);
          return;
        }
        this.onFailure(error as Error);
        delayMs = error instanceof NodeIdTakenError ? Math.max(this.retryDelayMs, (this.ttlSeconds * 1000) / 3) : this.retryDelayMs;
      }
      this.publish();
      if (this.registered && !this.started) this.start?.resolve();
      if (this.closed) return;
      await this.sleep(delayMs);
    }
  }

  /** One pass: keep the lease, be registered, read the cluster, fill an empty controller seat. */
  private async step(): Promise<void> {
    if (this.leaseId !== null && this.clock.nowMs() >= this.keepAliveDueMs) await this.keepAlive();
    if (this.closed) return;
    if (this.leaseId === null) await this.grant();
    if (this.closed) return;
    if (this.registeredLease !== this.leaseId) await this.register();
    if (this.closed) return;
    await this.refresh();
    if (this.closed) return;
    if (this.registered && this.view.controller === null) await this.campaign();
  }

  private async grant(): Promise<void> {
    const sentAtMs = this.clock.nowMs();
    const { leaseId, ttlSeconds } = await this.port.grantLease(this.ttlSeconds);
    if (this.closed) {
      await this.port.revokeLease(leaseId).catch(() => undefined);
      return;
    }
    this.leaseId = leaseId;
    this.leaseTtlMs = ttlSeconds * 1000;
    this.extendLease(sentAtMs, ttlSeconds);
  }

  private async keepAlive(): Promise<void> {
    const leaseId = this.leaseId!;
    const sentAtMs = this.clock.nowMs();
    const ttlSeconds = await this.port.keepAlive(leaseId);
    if (this.leaseId !== leaseId) return;
    if (ttlSeconds > 0) {
      this.extendLease(sentAtMs, ttlSeconds);
      return;
    }
    if (this.registeredLease === leaseId) {
      this.log('warn', `etcd no longer has this broker's lease (it expired): broker ${this.nodeId} is out of the cluster and registers again`, { nodeId: this.nodeId, leaseId });
    }
    this.leaseId = null;
    this.registeredLease = null;
  }

  private extendLease(sentAtMs: number, ttlSeconds: number): void {
    this.leaseValidUntilMs = Math.max(this.leaseValidUntilMs, sentAtMs + ttlSeconds * 1000);
    this.keepAliveDueMs = sentAtMs + (ttlSeconds * 1000) / 3;
    // Publishes the moment the lease may end, even while the loop waits on etcd.
    if (this.fenceTimer !== null) clearTimeout(this.fenceTimer);
    if (this.closed) return;
    this.fenceTimer = setTimeout(() => this.publish(), Math.max(0, this.leaseValidUntilMs - this.clock.nowMs()) + 1);
    this.fenceTimer.unref?.();
  }

  private async register(): Promise<void> {
    const leaseId = this.leaseId!;
    const self = this.options.self;
    const key = this.keys.broker(self.nodeId);
    // Twice at most: once more after taking over an earlier run's registration.
    for (let attempt = 0; attempt < 2; attempt++) {
      const result = await this.port.createIfAbsent(key, encodeRecord(self), leaseId);
      if (result.created || result.current.leaseId === leaseId) {
        this.registeredLease = leaseId;
        this.announced = true;
        const again = this.started ? ' again' : '';
        this.log('info', `registered${again} as broker ${self.nodeId} in cluster ${this.options.cluster} (etcd lease ${leaseId}, TTL ${this.leaseTtlMs / 1000} s)`, { nodeId: self.nodeId, cluster: this.options.cluster, leaseId });
        return;
      }
      const holder = this.holderOf(result.current);
      if (holder === null || holder.host !== self.host || holder.dataDir !== self.dataDir) throw this.nodeIdTaken(result.current, holder);
      // Same machine, same data directory: an earlier run of this broker, which the data
      // directory's lock proves is gone (killed before its lease expired).
      this.log('info', `taking over the registration of broker ${self.nodeId} left by an earlier run of this broker (pid ${holder.pid}, started ${new Date(holder.startedAtMs).toISOString()}): revoking its lease`, { nodeId: self.nodeId, stalePid: holder.pid });
      await this.port.revokeLease(result.current.leaseId);
    }
    throw new ClusterStartError(`node id ${self.nodeId}: the registration key keeps coming back after revoking it; is another broker with this node id restarting on this machine and data directory?`);
  }

  private holderOf(kv: KeyValue): BrokerRegistration | null {
    try {
      return decodeRegistration(kv.key, kv.value, this.keys);
    } catch (error) {
      if (error instanceof ClusterStateError) return null;
      throw error;
    }
  }

  private nodeIdTaken(kv: KeyValue, holder: BrokerRegistration | null): NodeIdTakenError {
    const id = this.options.self.nodeId;
    if (holder === null) {
      return new NodeIdTakenError(`node id ${id} is taken in cluster ${this.options.cluster}: etcd key ${kv.key} holds a value that is not a broker registration; remove it (etcdctl del ${kv.key}) or give this broker another --node-id`);
    }
    const address = holder.listeners[0] === undefined ? '?' : `${holder.listeners[0].host}:${holder.listeners[0].port}`;
    return new NodeIdTakenError(`node id ${id} is taken in cluster ${this.options.cluster} by a live broker at ${address} (host ${holder.host}, pid ${holder.pid}, data directory ${holder.dataDir}); give this broker another --node-id, or stop that one first`);
  }

  /** Reads every registration and the controller key (one revision), keeping the valid ones. */
  private async refresh(): Promise<void> {
    const snapshot = await this.port.snapshot(this.keys.brokersPrefix, this.keys.controller);
    const brokers = new Map<number, LiveBroker>();
    for (const kv of snapshot.prefixed) {
      try {
        const registration = decodeRegistration(kv.key, kv.value, this.keys);
        brokers.set(registration.nodeId, { ...registration, leaseId: kv.leaseId });
      } catch (error) {
        this.invalid.report(kv, error);
      }
    }
    let controller: View['controller'] = null;
    if (snapshot.single !== null) {
      try {
        const record = decodeControllerRecord(snapshot.single.key, snapshot.single.value);
        controller = { nodeId: record.nodeId, epoch: snapshot.single.createRevision, leaseId: snapshot.single.leaseId };
      } catch (error) {
        this.invalid.report(snapshot.single, error);
      }
    }
    this.view = { brokers, controller };
  }

  private async campaign(): Promise<void> {
    const leaseId = this.leaseId!;
    const value = encodeRecord({ nodeId: this.nodeId, electedAtMs: Date.now() });
    const result = await this.port.createIfAbsent(this.keys.controller, value, leaseId);
    if (result.created) {
      this.view.controller = { nodeId: this.nodeId, epoch: result.revision, leaseId };
      return;
    }
    // Someone else was faster: the next refresh (soon, the watch fires) reads who.
    this.dirty = true;
  }

  private get etcdName(): string {
    return `etcd at ${(this.options.endpoints ?? ['?']).join(',')}`;
  }

  private onFailure(error: Error): void {
    const message = error instanceof ClusterStartError ? error.message : `${this.etcdName}: ${error.message}`;
    if (this.failure === null) {
      this.failure = { message, sinceMs: this.clock.nowMs() };
      const level = error instanceof NodeIdTakenError ? 'error' : 'warn';
      const serving = this.started ? '; still serving the partitions it leads, retrying' : ', retrying';
      this.log(level, `cluster ${this.options.cluster}: ${message}${serving}`, { nodeId: this.nodeId });
    } else if (this.failure.message !== message) {
      this.failure.message = message;
      this.log('debug', `cluster ${this.options.cluster}: ${message}`, { nodeId: this.nodeId });
    }
  }

  private sleep(delayMs: number): Promise<void> {
    if (this.dirty || this.closed) {
      this.dirty = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = null;
        this.dirty = false;
        resolve();
      };
      const timer = setTimeout(done, delayMs);
      this.wake = done;
    });
  }

  /** Emits and logs what changed since the last call. */
  private publish(): void {
    const registered = this.registered;
    if (registered !== this.published.registered) {
      this.published.registered = registered;
      if (!registered && !this.closed && this.started) {
        this.log('warn', `broker ${this.nodeId} is fenced: its etcd lease was not renewed in time (etcd unreachable, or this process was paused), so it is no longer registered nor controller; still serving the partitions it leads, and registering again when etcd answers`, { nodeId: this.nodeId });
      }
      if (registered && this.started && !this.announced) this.log('info', `broker ${this.nodeId} is registered again: etcd renewed its lease ${this.leaseId}`, { nodeId: this.nodeId });
      this.announced = false;
      this.emit('registered', registered);
    }
    const brokers = this.brokers();
    const brokersKey = brokers.map((b) => `${b.nodeId}/${b.leaseId}/${JSON.stringify(b.listeners)}/${b.rack ?? ''}`).join(',');
    if (brokersKey !== this.published.brokers) {
      this.published.brokers = brokersKey;
      this.logMembershipChanges(brokers, registered);
      this.emit('brokers', brokers);
    }
    const controller = this.controller();
    const controllerKey = controller === null ? '' : `${controller.nodeId}@${controller.epoch}`;
    if (controllerKey !== this.published.controller) {
      this.published.controller = controllerKey;
      if (controller !== null) {
        const who = controller.nodeId === this.nodeId && this.isController ? 'this broker' : `broker ${controller.nodeId}`;
        this.log('info', `controller of cluster ${this.options.cluster}: ${who} (epoch ${controller.epoch})`, { controllerId: controller.nodeId, controllerEpoch: controller.epoch });
      }
      this.emit('controller', controller);
    }
  }

  private logMembershipChanges(brokers: LiveBroker[], registered: boolean): void {
    const now = new Map(brokers.map((b) => [b.nodeId, b]));
    if (registered) {
      for (const [id, broker] of now) {
        if (id !== this.nodeId && this.lastBrokers.get(id)?.leaseId !== broker.leaseId) this.log('info', `broker ${id} joined cluster ${this.options.cluster}`, { joinedId: id });
      }
      for (const id of this.lastBrokers.keys()) if (!now.has(id)) this.log('info', `broker ${id} left cluster ${this.options.cluster} (lease revoked or expired)`, { leftId: id });
    }
    this.lastBrokers = now;
  }
}
