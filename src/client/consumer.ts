/**
 * Consumer: a member of a consumer group. The coordinator (in the broker) assigns partitions;
 * this client heartbeats, fetches, hands records to the application, and commits what the
 * application has FINISHED processing.
 *
 *   const consumer = new Consumer({ bootstrap: 'localhost:9092', groupId: 'billing' });
 *   consumer.subscribe(['orders']);
 *   await consumer.run({ eachMessage: async (message) => { ... } });   // or: for await (const m of consumer)
 *   ...
 *   await consumer.close();   // finishes handlers, commits, leaves: the group rebalances at once
 *
 * Defaults (chosen so that a dead member's partitions move within seconds and nothing else waits):
 *   sessionTimeoutMs      10 000  a member silent this long is removed by the coordinator
 *   heartbeat interval    from the broker: min(500, sessionTimeoutMs / 3)
 *   rebalanceTimeoutMs    60 000  time to finish in-flight work on a revoked partition
 *   autoCommit            true, every autoCommitIntervalMs = 1 000, and on revoke and close
 *   fromBeginning         false   no committed offset: start at the end ('latest'); true: 'earliest'
 *   maxWaitMs             500     long-poll wait of a fetch
 *   maxBytes / partitionMaxBytes  16 MiB / 1 MiB per fetch; at most ~partitionMaxBytes buffered
 *                                 per partition beyond what one fetch brings
 *
 * Guarantees (the pain points of other clients, impossible here by construction):
 *   - Heartbeats run on their own timer and connection. A handler may take longer than the
 *     session timeout without its member being evicted, as long as it awaits (a handler that
 *     blocks the event loop with synchronous work blocks every timer: use a worker thread).
 *   - Auto-commit commits `processedOffset`, which moves only when a handler has completed
 *     (eachMessage returned, eachBatch returned or called resolveOffset, the iterator asked for
 *     the next message). Fetched-but-unprocessed records are never committed.
 *   - Revocation drains before it releases: stop fetching the partition, wait for its handler,
 *     commit, emit 'revoked', then tell the coordinator, which only then gives the partition to
 *     its new owner. A graceful hand-over therefore has no duplicates.
 *   - Losing membership (session expiry, fencing, a revocation not confirmed in time) drops
 *     every partition at once with 'lost' and no commit, then rejoins with the same memberId.
 *
 * Processing model: records of one partition are processed strictly in order, one handler call
 * at a time; different partitions are processed concurrently (run mode), so one slow partition
 * delays only itself. A handler that throws is retried from the same record after a backoff
 * (100 ms doubling to 10 s); the error goes to 'error' listeners and the offset never moves past
 * an unprocessed record.
 *
 * Async iterator: `for await (const message of consumer)` yields records of all assigned
 * partitions. A message counts as processed when the NEXT one is requested. Leaving the loop
 * (break, return, throw) closes the consumer; the message in hand when the loop was left is not
 * counted as processed (the loop cannot tell a break after success from a throw) and is delivered
 * again to whoever consumes the partition next, unless you commit it yourself first:
 * `await consumer.commit([{ topic, partition, offset: message.offset + 1n }])`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { RillError } from '../lib/errors.js';
import { fetchWaitMsMax, rebalanceTimeoutMsMax, rebalanceTimeoutMsMin, sessionTimeoutMsMax, sessionTimeoutMsMin } from '../lib/limits.js';
import { ApiKey } from '../wire/apis.js';
import { decodeOffsetCommitResponse, decodeOffsetFetchResponse, groupByTopic, type TopicPartition } from '../wire/groups.js';
import { Cluster, isLeaderError, type ClientOptions } from './cluster.js';
import { byLeader, fetchFrom, listOffsets, type FetchedData } from './consumer-fetcher.js';
import { Membership, newMemberId } from './consumer-membership.js';
import { PartitionState, partitionKeyOf } from './consumer-partition.js';
import { brokerOf } from './instrumentation.js';
import type { Message } from './reader.js';

export type { TopicPartition } from '../wire/groups.js';

export interface ConsumerOptions extends ClientOptions {
  groupId: string;
  /** Stable for the consumer's lifetime; a restarted process may pass its old one. Default: a random UUID. */
  memberId?: string;
  /** Default 10 000 ms; the broker accepts 1 000..1 800 000. */
  sessionTimeoutMs?: number;
  /** Time a revoked partition's in-flight work may take before the member is fenced. Default 60 000 ms. */
  rebalanceTimeoutMs?: number;
  /** Commit processed offsets every autoCommitIntervalMs, and on revoke and close. Default true. */
  autoCommit?: boolean;
  /** Default 1 000 ms. */
  autoCommitIntervalMs?: number;
  /** Where to start a partition without a committed offset (and after OFFSET_OUT_OF_RANGE): earliest if true, latest if false (default). */
  fromBeginning?: boolean;
  /** Longest a fetch waits for new records. Default 500 ms. */
  maxWaitMs?: number;
  /** Bytes per fetch response. Default 16 MiB. */
  maxBytes?: number;
  /** Bytes per partition per fetch, and the buffered bytes above which a partition is not fetched. Default 1 MiB. */
  partitionMaxBytes?: number;
}

export interface EachBatchPayload {
  topic: string;
  partition: number;
  /** In offset order; at least one. */
  messages: Message[];
  /** End of the partition's log when these were fetched (-1n if unknown). */
  highWatermark: bigint;
  /** Marks messages up to and including `offset` processed (for progress inside a long batch). */
  resolveOffset(offset: bigint): void;
  /** True once the partition was revoked or lost, or the consumer is closing: stop early. */
  isStale(): boolean;
}

export interface RunOptions {
  eachMessage?: (message: Message) => Promise<void>;
  eachBatch?: (batch: EachBatchPayload) => Promise<void>;
}

/** Partitions of a topic; without `partitions`, all of them (also those assigned later). */
export interface TopicPartitionsSelector {
  topic: string;
  partitions?: number[];
}

export interface OffsetToCommit {
  topic: string;
  partition: number;
  /** The next offset to process (Kafka's convention): last processed offset + 1. */
  offset: bigint;
  metadata?: string;
}

export type RebalanceEventName = 'assigned' | 'revoked' | 'lost';
export type RebalanceListener = (partitions: TopicPartition[]) => void | Promise<void>;
export type ErrorListener = (error: Error) => void;

const handlerRetryMsMin = 100;
const handlerRetryMsMax = 10_000;
const fetchRetryMsMin = 100;
const fetchRetryMsMax = 2_000;
/** Records taken from one partition before the iterator moves to the next (fairness vs. cost). */
const iteratorRunMax = 64;

/** Marks code running inside a handler or listener of a consumer, so close() never waits on itself. */
const insideHandler = new AsyncLocalStorage<{ consumer: Consumer; state: PartitionState | null }>();

export class Consumer implements AsyncIterable<Message> {
  readonly groupId: string;
  private readonly cluster: Cluster;
  private readonly membership: Membership;
  private readonly sessionTimeoutMs: number;
  private readonly rebalanceTimeoutMs: number;
  private readonly autoCommit: boolean;
  private readonly autoCommitIntervalMs: number;
  private readonly resetTo: 'earliest' | 'latest';
  private readonly fetchLimits: { maxWaitMs: number; maxBytes: number; partitionMaxBytes: number };

  private subscription: string[] = [];
  private mode: 'run' | 'iterator' | null = null;
  private handlers: RunOptions = {};
  /** Owned partitions (status starting, active or revoking), by key. */
  private readonly states = new Map<string, PartitionState>();
  /** The latest state of every partition ever owned: a new ownership waits for the old handler. */
  private readonly lastStates = new Map<string, PartitionState>();
  private readonly announced = new WeakSet<PartitionState>();
  private readonly pendingSeeks = new Map<string, bigint>();
  private readonly pausedKeys = new Set<string>();
  private readonly pausedTopics = new Set<string>();
  private readonly listeners = { assigned: [] as RebalanceListener[], revoked: [] as RebalanceListener[], lost: [] as RebalanceListener[], error: [] as ErrorListener[] };

  /** Rebalance steps (assign, revoke, lost) run one after another, so listeners see them in order. */
  private rebalanceQueue: Promise<void> = Promise.resolve();
  private commitQueue: Promise<unknown> = Promise.resolve();
  private autoCommitTimer: NodeJS.Timeout | null = null;
  private autoCommitRunning = false;
  private pumpTimer: NodeJS.Timeout | null = null;
  private fetchFailures = 0;
  private started: Promise<void> | null = null;
  private closing = false;
  private closePromise: Promise<void> | null = null;
  private fatal: Error | null = null;

  // Iterator mode
  private current: { state: PartitionState; message: Message; generation: number } | null = null;
  private iteratorState: PartitionState | null = null;
  private iteratorRun = 0;
  private wakeWaiters: (() => void)[] = [];

  constructor(options: ConsumerOptions) {
    if (typeof options.groupId !== 'string' || options.groupId.length === 0) throw new RillError('INVALID_ARGUMENT', 'groupId must be a non-empty string');
    this.groupId = options.groupId;
    this.sessionTimeoutMs = intOption('sessionTimeoutMs', options.sessionTimeoutMs, 10_000, sessionTimeoutMsMin, sessionTimeoutMsMax);
    this.rebalanceTimeoutMs = intOption('rebalanceTimeoutMs', options.rebalanceTimeoutMs, 60_000, rebalanceTimeoutMsMin, rebalanceTimeoutMsMax);
    this.autoCommit = options.autoCommit ?? true;
    this.autoCommitIntervalMs = intOption('autoCommitIntervalMs', options.autoCommitIntervalMs, 1000, 1, 3_600_000);
    this.resetTo = options.fromBeginning === true ? 'earliest' : 'latest';
    this.fetchLimits = {
      maxWaitMs: intOption('maxWaitMs', options.maxWaitMs, 500, 0, fetchWaitMsMax),
      maxBytes: intOption('maxBytes', options.maxBytes, 16 * 1024 * 1024, 1024, 2 ** 31 - 1),
      partitionMaxBytes: intOption('partitionMaxBytes', options.partitionMaxBytes, 1024 * 1024, 1024, 2 ** 31 - 1),
    };
    const memberId = options.memberId ?? newMemberId();
    if (typeof memberId !== 'string' || memberId.length === 0 || Buffer.byteLength(memberId) > 255) throw new RillError('INVALID_ARGUMENT', 'memberId must be 1..255 bytes');
    this.cluster = new Cluster(options, 'consumer');
    this.membership = new Membership(
      this.cluster,
      { groupId: this.groupId, memberId, clientId: this.cluster.clientId, sessionTimeoutMs: this.sessionTimeoutMs, rebalanceTimeoutMs: this.rebalanceTimeoutMs },
      {
        owned: () => [...this.states.values()].map(toTopicPartition),
        subscription: () => this.subscription,
        onAssignment: (assignment) => this.reconcile(assignment),
        onLost: (reason) => this.dropAll(reason),
        onFatal: (error) => this.fail(error),
        onWarning: (error, attempt, delayMs) => {
          if (error instanceof RillError && error.retriable) this.cluster.instrumentation.retry('heartbeat', brokerOf(error), attempt, delayMs, error);
          this.report(error);
        },
      },
    );
  }

  get memberId(): string {
    return this.membership.memberId;
  }

  /** Partitions this consumer owns now (including those being started or revoked). */
  assignment(): TopicPartition[] {
    return [...this.states.values()].map(toTopicPartition).sort(compareTopicPartitions);
  }

  /** Sets the topics to consume (replaces the previous list); takes effect at the next heartbeat. */
  subscribe(topics: string[]): void {
    if (!Array.isArray(topics) || topics.length === 0 || topics.some((t) => typeof t !== 'string' || t.length === 0)) {
      throw new RillError('INVALID_ARGUMENT', 'subscribe takes a non-empty array of topic names');
    }
    this.subscription = [...new Set(topics)].sort();
    if (this.started !== null) this.membership.heartbeatNow();
  }

  /**
   * Joins the group and hands every record to `eachMessage` (one at a time per partition) or
   * `eachBatch`. Resolves once the member has joined; the consumer then runs until close().
   * Rejects if it cannot join (e.g. INVALID_SESSION_TIMEOUT, GROUP_MAX_SIZE_REACHED).
   */
  async run(handlers: RunOptions): Promise<void> {
    if ((handlers.eachMessage === undefined) === (handlers.eachBatch === undefined)) {
      throw new RillError('INVALID_ARGUMENT', 'run needs exactly one of eachMessage or eachBatch');
    }
    this.setMode('run');
    this.handlers = handlers;
    await this.start();
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    this.setMode('iterator');
    return {
      next: () => this.nextMessage(),
      return: async () => {
        this.finishCurrent(false);
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  on(event: RebalanceEventName, listener: RebalanceListener): this;
  on(event: 'error', listener: ErrorListener): this;
  on(event: RebalanceEventName | 'error', listener: RebalanceListener | ErrorListener): this {
    (this.listeners[event] as unknown[]).push(listener);
    return this;
  }

  off(event: RebalanceEventName | 'error', listener: RebalanceListener | ErrorListener): this {
    const list = this.listeners[event] as unknown[];
    const index = list.indexOf(listener);
    if (index >= 0) list.splice(index, 1);
    return this;
  }

  /**
   * Commits offsets. Without arguments: the processed offset of every owned partition that
   * changed since its last commit. With offsets: exactly those (each = next offset to process).
   * Rejects with the first partition's error (NOT_PARTITION_OWNER, FENCED_MEMBER_EPOCH, ...).
   */
  async commit(offsets?: OffsetToCommit[]): Promise<void> {
    if (offsets === undefined) {
      await this.commitStates([...this.states.values()]);
      return;
    }
    for (const entry of offsets) {
      if (typeof entry.offset !== 'bigint' || entry.offset < 0n) throw new RillError('INVALID_ARGUMENT', `offset for ${entry.topic}/${entry.partition} must be a non-negative bigint`);
      const state = this.states.get(partitionKeyOf(entry.topic, entry.partition));
      // What the application commits, it has processed: auto-commit must not go back behind it.
      if (state !== undefined && state.processedOffset !== null && entry.offset > state.processedOffset) state.processedOffset = entry.offset;
    }
    await this.sendCommit(offsets.map((entry) => ({ ...entry, state: this.states.get(partitionKeyOf(entry.topic, entry.partition)) ?? null })));
  }

  /**
   * Next record to process in a partition becomes `offset`. On a partition not owned (yet), it
   * applies when the partition is assigned to this consumer, instead of the committed offset.
   */
  seek(topic: string, partition: number, offset: bigint): void {
    if (typeof offset !== 'bigint' || offset < 0n) throw new RillError('INVALID_ARGUMENT', `seek offset must be a non-negative bigint, got ${String(offset)}`);
    const key = partitionKeyOf(topic, partition);
    const state = this.states.get(key);
    if (state === undefined) {
      this.pendingSeeks.set(key, offset);
      return;
    }
    if (state.processedOffset === null) {
      state.pendingSeek = offset;
      return;
    }
    state.position(offset);
    state.fetchBackoffUntilMs = 0;
    this.pump();
  }

  /** Stops fetching and handing out records of these partitions until resume(). Survives reassignment. */
  pause(selectors: TopicPartitionsSelector[]): void {
    for (const { topic, partitions } of selectors) {
      if (partitions === undefined) this.pausedTopics.add(topic);
      else for (const partition of partitions) this.pausedKeys.add(partitionKeyOf(topic, partition));
    }
  }

  resume(selectors: TopicPartitionsSelector[]): void {
    for (const { topic, partitions } of selectors) {
      if (partitions === undefined) {
        this.pausedTopics.delete(topic);
        for (const key of [...this.pausedKeys]) if (key.startsWith(`${topic}\u0000`)) this.pausedKeys.delete(key);
      } else {
        for (const partition of partitions) this.pausedKeys.delete(partitionKeyOf(topic, partition));
      }
    }
    for (const state of this.states.values()) this.dispatch(state);
    this.pump();
    this.wake();
  }

  /** Owned partitions that are paused now. */
  paused(): TopicPartition[] {
    return [...this.states.values()].filter((s) => this.isPaused(s)).map(toTopicPartition).sort(compareTopicPartitions);
  }

  /**
   * Stops fetching, waits for running handlers, commits processed offsets (with autoCommit),
   * emits 'revoked', and leaves the group so its partitions move at once. Idempotent.
   */
  close(): Promise<void> {
    this.closePromise ??= this.shutdown();
    return this.closePromise;
  }

  // ---------------------------------------------------------------------------------------------
  // Start, assignment, revocation, loss
  // ---------------------------------------------------------------------------------------------

  private setMode(mode: 'run' | 'iterator'): void {
    if (this.mode !== null) throw new RillError('INVALID_ARGUMENT', `the consumer is already consuming (${this.mode}); use one of run() or the iterator, once`);
    if (this.closing) throw new RillError('INVALID_ARGUMENT', 'the consumer is closed');
    this.mode = mode;
  }

  private start(): Promise<void> {
    if (this.subscription.length === 0) return Promise.reject(new RillError('INVALID_ARGUMENT', 'call subscribe(topics) before consuming'));
    if (this.started === null) {
      this.started = this.membership.start();
      this.started.catch(() => undefined);
      if (this.autoCommit) {
        this.autoCommitTimer = setInterval(() => this.autoCommitTick(), this.autoCommitIntervalMs);
      }
    }
    return this.started;
  }

  /** A heartbeat answered with `assignment`: revoke what is gone, start what is new. */
  private reconcile(assignment: TopicPartition[]): void {
    if (this.closing) return;
    const assignedKeys = new Set(assignment.map((tp) => partitionKeyOf(tp.topic, tp.partition)));
    const revoked = [...this.states.values()].filter((s) => s.status !== 'revoking' && !assignedKeys.has(s.key));
    if (revoked.length > 0) {
      this.membership.trackRevocation(revoked.map(toTopicPartition), this.membership.decisionTimeMs);
      for (const state of revoked) {
        state.status = 'revoking';
        state.clearBuffer();
      }
      this.enqueue(() => this.revoke(revoked));
    }
    const revokedList = revoked.map(toTopicPartition);
    const added: PartitionState[] = [];
    for (const tp of assignment) {
      const key = partitionKeyOf(tp.topic, tp.partition);
      if (this.states.has(key)) continue;
      const previous = this.lastStates.get(key);
      const state = new PartitionState(tp.topic, tp.partition, previous !== undefined && previous.busy ? previous : null);
      state.pendingSeek = this.pendingSeeks.get(key) ?? null;
      this.pendingSeeks.delete(key);
      this.states.set(key, state);
      this.lastStates.set(key, state);
      added.push(state);
    }
    if (added.length > 0) this.enqueue(() => this.assign(added));
    if (added.length > 0 || revokedList.length > 0) this.publishRebalance('assignment', added.map(toTopicPartition), revokedList, undefined);
  }

  private publishRebalance(reason: 'assignment' | 'lost', assigned: TopicPartition[], revoked: TopicPartition[], detail: string | undefined): void {
    this.cluster.instrumentation.rebalance({
      groupId: this.groupId, memberId: this.memberId, memberEpoch: this.membership.memberEpoch, reason,
      assigned: assigned.sort(compareTopicPartitions), revoked: revoked.sort(compareTopicPartitions), detail,
    });
  }

  /** Newly assigned: committed offset (or seek, or reset policy), 'assigned', then fetch. */
  private async assign(added: PartitionState[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const live = added.filter((s) => s.owned);
      if (live.length === 0 || this.closing) return;
      try {
        await this.startPositions(live);
        break;
      } catch (error) {
        const delayMs = Math.min(fetchRetryMsMax, fetchRetryMsMin * 2 ** attempt);
        if (error instanceof RillError && error.retriable) this.cluster.instrumentation.retry('offset-fetch', brokerOf(error), attempt + 1, delayMs, error);
        this.report(error as Error);
        await sleep(delayMs);
      }
    }
    const live = added.filter((s) => s.owned);
    if (live.length === 0 || this.closing) return;
    for (const state of live) this.announced.add(state);
    await this.emit('assigned', live);
    for (const state of live) void this.activate(state);
  }

  private async startPositions(states: PartitionState[]): Promise<void> {
    const topics = [...new Set(states.map((s) => s.topic))];
    await Promise.all(topics.map((topic) => this.cluster.topic(topic).catch(() => undefined)));
    const connection = await this.membership.connection('group');
    const request = { groupId: this.groupId, topics: groupByTopic(states.map(toTopicPartition)) };
    const fetched = await connection.call(ApiKey.OffsetFetch, request, decodeOffsetFetchResponse).catch((error: unknown) => {
      this.membership.forgetCoordinator();
      throw error;
    });
    const committed = new Map(fetched.map((o) => [partitionKeyOf(o.topic, o.partition), o.offset]));
    const needReset = states.filter((s) => s.pendingSeek === null && (committed.get(s.key) ?? -1n) < 0n);
    const resets = new Map<string, bigint>();
    for (const topic of new Set(needReset.map((s) => s.topic))) {
      const offsets = await listOffsets(this.cluster, topic, needReset.filter((s) => s.topic === topic).map((s) => s.partition), this.resetTo);
      for (const [partition, offset] of offsets) resets.set(partitionKeyOf(topic, partition), offset);
    }
    for (const state of states) {
      if (!state.owned) continue;
      const committedOffset = committed.get(state.key) ?? -1n;
      state.committedOffset = committedOffset >= 0n ? committedOffset : null;
      const start = state.pendingSeek ?? (committedOffset >= 0n ? committedOffset : resets.get(state.key)!);
      state.pendingSeek = null;
      state.position(start);
    }
  }

  /** Starts fetching and dispatching, once the previous owner in this process has finished. */
  private async activate(state: PartitionState): Promise<void> {
    if (state.previous !== null) await state.previous.whenIdle();
    state.previous = null;
    if (state.status !== 'starting' || this.closing) return;
    state.status = 'active';
    this.pump();
    this.wake();
  }

  /** Revoked: stop (done in reconcile), drain, commit, 'revoked', release, tell the coordinator. */
  private async revoke(revoked: PartitionState[]): Promise<void> {
    await Promise.all(revoked.map((s) => s.whenIdleOrGone()));
    const live = revoked.filter((s) => s.status === 'revoking');
    if (live.length === 0) return;
    if (this.autoCommit) await this.commitStates(live).catch((error: Error) => this.report(error));
    await this.emit('revoked', live.filter((s) => this.announced.has(s)));
    for (const state of live) {
      if (state.status !== 'revoking') continue;
      state.drop();
      this.states.delete(state.key);
    }
    this.membership.heartbeatNow();
  }

  /** Membership lost: drop every partition now, no commit; 'lost' in order with other events. */
  private dropAll(reason: string): void {
    const dropped = [...this.states.values()];
    for (const state of dropped) state.drop();
    this.states.clear();
    this.publishRebalance('lost', [], dropped.map(toTopicPartition), reason);
    if (dropped.length > 0) this.report(new RillError('UNKNOWN_MEMBER_ID', `group ${this.groupId}: dropped ${dropped.length} partitions (${reason}); rejoining`));
    this.enqueue(() => this.emit('lost', dropped.filter((s) => this.announced.has(s))));
  }

  private fail(error: RillError): void {
    this.fatal = error;
    this.report(error);
    this.membership.stop();
    this.dropAll(error.code);
    void this.close();
  }

  private enqueue(step: () => Promise<void>): void {
    this.rebalanceQueue = this.rebalanceQueue.then(step).catch((error: Error) => this.report(error));
  }

  private async emit(event: RebalanceEventName, states: PartitionState[]): Promise<void> {
    if (states.length === 0) return;
    const partitions = states.map(toTopicPartition).sort(compareTopicPartitions);
    for (const listener of [...this.listeners[event]]) {
      try {
        await insideHandler.run({ consumer: this, state: null }, () => listener(partitions));
      } catch (error) {
        this.report(error as Error);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Fetching
  // ---------------------------------------------------------------------------------------------

  private isPaused(state: PartitionState): boolean {
    return this.pausedTopics.has(state.topic) || this.pausedKeys.has(state.key);
  }

  /** Sends a fetch for every active partition that has room in its buffer and none in flight. */
  private pump(): void {
    if (this.closing || this.mode === null) return;
    const nowMs = Date.now();
    const ready: PartitionState[] = [];
    let retryAtMs = Infinity;
    for (const state of this.states.values()) {
      if (state.status !== 'active' || state.fetching || this.isPaused(state) || state.bufferedBytes >= this.fetchLimits.partitionMaxBytes) continue;
      if (state.fetchBackoffUntilMs > nowMs) {
        retryAtMs = Math.min(retryAtMs, state.fetchBackoffUntilMs);
        continue;
      }
      ready.push(state);
    }
    if (retryAtMs < Infinity && this.pumpTimer === null) {
      this.pumpTimer = setTimeout(() => {
        this.pumpTimer = null;
        this.pump();
      }, Math.max(1, retryAtMs - nowMs));
    }
    for (const [leader, states] of byLeader(this.cluster, ready)) {
      for (const state of states) state.fetching = true;
      fetchFrom(this.cluster, leader, states, this.fetchLimits).then(
        (results) => {
          this.fetchFailures = 0;
          for (const state of states) state.fetching = false;
          this.deliver(results);
          this.pump();
        },
        (error: Error) => {
          for (const state of states) state.fetching = false;
          this.fetchFailed(states, error);
          this.pump();
        },
      );
    }
  }

  private deliver(results: FetchedData[]): void {
    for (const result of results) {
      const state = result.state;
      if (result.generation !== state.generation || state.status !== 'active') continue;
      if (result.errorCode !== 0) {
        this.fetchError(state, RillError.fromCode(result.errorCode, `${state.topic}/${state.partition} at offset ${state.fetchOffset}`));
        continue;
      }
      state.highWatermark = result.highWatermark;
      state.fetchBackoffUntilMs = 0;
      if (result.messages.length > 0) state.push(result.messages);
      state.fetchOffset = result.nextFetchOffset;
      this.dispatch(state);
    }
    this.wake();
  }

  private fetchFailed(states: PartitionState[], error: Error): void {
    if (this.closing) return;
    this.fetchFailures++;
    if (this.fetchFailures === 1 || this.fetchFailures % 10 === 0) this.report(error);
    const delayMs = Math.min(fetchRetryMsMax, fetchRetryMsMin * 2 ** Math.min(this.fetchFailures - 1, 10));
    if (error instanceof RillError && error.retriable) this.cluster.instrumentation.retry('fetch', brokerOf(error), this.fetchFailures, delayMs, error);
    const untilMs = Date.now() + delayMs;
    for (const state of states) state.fetchBackoffUntilMs = untilMs;
    // A lost connection may mean a lost leader: the next fetch goes where fresh metadata says.
    for (const topic of new Set(states.map((s) => s.topic))) this.cluster.noteError(topic, error);
  }

  private fetchError(state: PartitionState, error: RillError): void {
    if (error.code === 'OFFSET_OUT_OF_RANGE') {
      state.fetchBackoffUntilMs = Infinity; // until the reset below is done
      void this.resetOutOfRange(state, error);
      return;
    }
    if (isLeaderError(error)) {
      // Leadership moved (or is moving): not worth an error event; fetch from the new leader soon.
      this.cluster.markStale(state.topic);
      this.cluster.instrumentation.retry('fetch', brokerOf(error), 1, fetchRetryMsMin, error);
      state.fetchBackoffUntilMs = Date.now() + fetchRetryMsMin;
      return;
    }
    this.report(error);
    if (error.code === 'UNKNOWN_TOPIC_OR_PARTITION') this.cluster.topic(state.topic, true).catch(() => undefined);
    state.fetchBackoffUntilMs = Date.now() + fetchRetryMsMax;
  }

  /** The fetch offset is outside the log (retention, a recreated topic): apply the reset policy. */
  private async resetOutOfRange(state: PartitionState, error: RillError): Promise<void> {
    const generation = state.generation;
    try {
      const offsets = await listOffsets(this.cluster, state.topic, [state.partition], this.resetTo);
      if (state.generation !== generation || !state.owned) return;
      this.report(new RillError('OFFSET_OUT_OF_RANGE', `${error.message.replace(/^OFFSET_OUT_OF_RANGE: /, '')}; reset to ${this.resetTo} offset ${offsets.get(state.partition)}`));
      state.position(offsets.get(state.partition)!);
      state.fetchBackoffUntilMs = 0;
    } catch (listError) {
      this.report(listError as Error);
      if (state.generation === generation) state.fetchBackoffUntilMs = Date.now() + fetchRetryMsMax;
    }
    this.pump();
  }

  // ---------------------------------------------------------------------------------------------
  // Processing: run mode
  // ---------------------------------------------------------------------------------------------

  /** Starts the handler on a partition's buffered records, if nothing else runs on it. */
  private dispatch(state: PartitionState): void {
    if (this.mode !== 'run' || this.closing || state.status !== 'active' || state.busy || state.retryTimer !== null || this.isPaused(state)) return;
    if (state.buffered === 0) return;
    const generation = state.generation;
    const messages = this.handlers.eachBatch !== undefined ? state.takeAll() : [state.takeOne()!];
    state.enter();
    void insideHandler.run({ consumer: this, state }, () => this.handle(state, messages, generation)).finally(() => {
      state.leave();
      this.dispatch(state);
      if (!state.fetching && state.bufferedBytes < this.fetchLimits.partitionMaxBytes) this.pump();
    });
  }

  private async handle(state: PartitionState, messages: Message[], generation: number): Promise<void> {
    try {
      if (this.handlers.eachBatch !== undefined) {
        await this.handlers.eachBatch({
          topic: state.topic,
          partition: state.partition,
          messages,
          highWatermark: BigInt(state.highWatermark),
          resolveOffset: (offset) => state.markProcessed(offset + 1n, generation),
          isStale: () => state.generation !== generation || state.status !== 'active' || this.closing,
        });
      } else {
        await this.handlers.eachMessage!(messages[0]!);
      }
      state.markProcessed(messages[messages.length - 1]!.offset + 1n, generation);
      state.failures = 0;
    } catch (error) {
      const failed = new RillError('UNKNOWN_SERVER_ERROR', `handler failed on ${state.topic}/${state.partition}; retrying from offset ${state.processedOffset}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
      this.report(failed);
      if (state.generation !== generation || state.status !== 'active') return;
      // Deliver the first unprocessed record again, after a backoff.
      state.position(state.processedOffset!);
      state.failures++;
      state.retryTimer = setTimeout(() => {
        state.retryTimer = null;
        this.pump();
        this.dispatch(state);
      }, Math.min(handlerRetryMsMax, handlerRetryMsMin * 2 ** Math.min(state.failures - 1, 10)));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Processing: iterator mode
  // ---------------------------------------------------------------------------------------------

  private async nextMessage(): Promise<IteratorResult<Message>> {
    this.finishCurrent(true);
    if (!this.closing) await this.start();
    for (;;) {
      if (this.fatal !== null) throw this.fatal;
      if (this.closing) return { done: true, value: undefined };
      const picked = this.pick();
      if (picked !== null) return { done: false, value: picked };
      await new Promise<void>((resolve) => this.wakeWaiters.push(resolve));
    }
  }

  /** The iterator's next record: keeps to one partition for a while, then moves on. */
  private pick(): Message | null {
    const ready = (s: PartitionState | null): s is PartitionState => s !== null && s.status === 'active' && s.buffered > 0 && !this.isPaused(s);
    let state = this.iteratorState !== null && this.iteratorRun < iteratorRunMax && ready(this.iteratorState) ? this.iteratorState : null;
    if (state === null) {
      const candidates = [...this.states.values()];
      const start = this.iteratorState === null ? -1 : candidates.indexOf(this.iteratorState);
      for (let i = 1; i <= candidates.length && state === null; i++) {
        const candidate = candidates[(start + i + candidates.length) % candidates.length]!;
        if (ready(candidate)) state = candidate;
      }
      if (state === null) return null;
      this.iteratorState = state;
      this.iteratorRun = 0;
    }
    this.iteratorRun++;
    const message = state.takeOne()!;
    state.enter();
    this.current = { state, message, generation: state.generation };
    if (!state.fetching && state.bufferedBytes < this.fetchLimits.partitionMaxBytes) this.pump();
    return message;
  }

  private finishCurrent(processed: boolean): void {
    const current = this.current;
    if (current === null) return;
    this.current = null;
    if (processed) current.state.markProcessed(current.message.offset + 1n, current.generation);
    current.state.leave();
  }

  private wake(): void {
    const waiters = this.wakeWaiters;
    this.wakeWaiters = [];
    for (const resolve of waiters) resolve();
  }

  // ---------------------------------------------------------------------------------------------
  // Commits
  // ---------------------------------------------------------------------------------------------

  private autoCommitTick(): void {
    if (this.closing || this.autoCommitRunning) return;
    this.autoCommitRunning = true;
    this.commitStates([...this.states.values()])
      .catch((error: Error) => this.report(error))
      .finally(() => (this.autoCommitRunning = false));
  }

  /** Commits the processed offset of each of these partitions that changed since its last commit. */
  private async commitStates(states: PartitionState[]): Promise<void> {
    const entries = states
      .filter((s) => (s.status === 'active' || s.status === 'revoking') && s.processedOffset !== null && s.processedOffset !== s.committedOffset)
      .map((s) => ({ topic: s.topic, partition: s.partition, offset: s.processedOffset!, state: s }));
    if (entries.length > 0) await this.sendCommit(entries);
  }

  /** One OffsetCommit, after the ones before it (so an older offset never lands after a newer one). */
  private sendCommit(entries: (OffsetToCommit & { state: PartitionState | null })[]): Promise<void> {
    const send = async (): Promise<void> => {
      const memberEpoch = this.membership.memberEpoch;
      if (memberEpoch <= 0) throw new RillError('UNKNOWN_MEMBER_ID', `not a member of group ${this.groupId} right now (joining or closed); nothing committed`);
      const byTopic = new Map<string, { partition: number; offset: bigint; metadata?: string }[]>();
      for (const entry of entries) {
        let list = byTopic.get(entry.topic);
        if (list === undefined) byTopic.set(entry.topic, (list = []));
        list.push(entry.metadata === undefined ? { partition: entry.partition, offset: entry.offset } : { partition: entry.partition, offset: entry.offset, metadata: entry.metadata });
      }
      const request = { groupId: this.groupId, memberId: this.memberId, memberEpoch, topics: [...byTopic].map(([name, partitions]) => ({ name, partitions })) };
      const connection = await this.membership.connection('group');
      const response = await connection.call(ApiKey.OffsetCommit, request, decodeOffsetCommitResponse).catch((error: unknown) => {
        if (error instanceof RillError && error.retriable) this.membership.forgetCoordinator();
        throw error;
      });
      const failures: RillError[] = [];
      for (const topic of response) {
        for (const result of topic.partitions) {
          const entry = entries.find((e) => e.topic === topic.name && e.partition === result.partition);
          if (entry === undefined) continue;
          if (result.errorCode === 0) {
            if (entry.state !== null && entry.state.owned) entry.state.committedOffset = entry.offset;
          } else {
            failures.push(RillError.fromCode(result.errorCode, `commit of ${topic.name}/${result.partition} at offset ${entry.offset} for member ${this.memberId} epoch ${memberEpoch}`));
          }
        }
      }
      if (failures.length === 0) return;
      // A fenced commit means our view of the group is stale: let a heartbeat sort it out now.
      if (failures.some((f) => f.code === 'FENCED_MEMBER_EPOCH' || f.code === 'UNKNOWN_MEMBER_ID' || f.code === 'NOT_PARTITION_OWNER')) this.membership.heartbeatNow();
      throw failures[0]!;
    };
    const result = this.commitQueue.then(send, send);
    this.commitQueue = result.catch(() => undefined);
    return result;
  }

  // ---------------------------------------------------------------------------------------------
  // Close
  // ---------------------------------------------------------------------------------------------

  private async shutdown(): Promise<void> {
    this.closing = true;
    const self = insideHandler.getStore();
    const fromInside = self?.consumer === this ? self : null;
    if (this.autoCommitTimer !== null) clearInterval(this.autoCommitTimer);
    if (this.pumpTimer !== null) clearTimeout(this.pumpTimer);
    // The iterator's message in hand is not waited for (close may be called from the loop body).
    this.finishCurrent(false);
    this.wake();
    // In-flight work gets as long as a revocation would (rebalanceTimeoutMs). A handler still
    // running after that is abandoned: its record is not committed, so its next owner gets it.
    let timer: NodeJS.Timeout | null = null;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.rebalanceTimeoutMs)));
    try {
      // A rebalance step in progress (e.g. an 'assigned' listener) finishes first, unless we are it.
      if (fromInside === null) await Promise.race([this.rebalanceQueue, deadline]);
      const owned = [...this.states.values()];
      await Promise.race([Promise.all(owned.filter((s) => s !== fromInside?.state).map((s) => s.whenIdleOrGone())), deadline]);
      // Committing is safe even for a partition whose handler is still running: processedOffset
      // never includes a record whose handler has not completed.
      if (this.autoCommit && this.fatal === null) await this.commitStates(owned).catch((error: Error) => this.report(error));
      await this.emit('revoked', owned.filter((s) => s.owned && this.announced.has(s)));
      for (const state of owned) state.drop();
      this.states.clear();
      if (this.fatal === null) await this.membership.leave();
    } finally {
      if (timer !== null) clearTimeout(timer);
      this.membership.stop();
      this.cluster.close();
      this.wake();
    }
  }

  private report(error: Error): void {
    if (this.listeners.error.length === 0) {
      process.emitWarning(error.message, { code: 'RILL_CONSUMER' });
      return;
    }
    for (const listener of this.listeners.error) {
      try {
        listener(error);
      } catch {
        // A failing error listener must not break the consumer.
      }
    }
  }
}

function intOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const n = value ?? fallback;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new RillError('INVALID_ARGUMENT', `${name} is ${value}; it must be an integer in [${min}, ${max}]`);
  return n;
}

function toTopicPartition(state: PartitionState): TopicPartition {
  return { topic: state.topic, partition: state.partition };
}

function compareTopicPartitions(a: TopicPartition, b: TopicPartition): number {
  return a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
