/**
 * Group membership of one consumer: finds the coordinator, heartbeats on its own timer (never
 * behind user code or a long-poll fetch: heartbeats have their own connection), and enforces
 * the client's half of "never two consumers hold one partition" (see src/coordinator/coordinator.ts):
 *
 *   1. No heartbeat has succeeded for sessionTimeoutMs, counted from when the last successful one
 *      was SENT (the coordinator counts from when it received it, later): drop every partition.
 *   2. A revocation is done only once a heartbeat whose ownedPartitions omits the revoked
 *      partitions has succeeded. If that has not happened within rebalanceTimeoutMs of the first
 *      heartbeat the coordinator may have answered with the revocation: drop every partition.
 *   3. FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID: drop every partition.
 *
 * "Drop every partition" = hooks.onLost(); the member then rejoins with epoch 0 and the same
 * memberId, owning nothing, and the coordinator hands its target back (from committed offsets).
 *
 * Heartbeat loop: one request in flight at a time; the next goes out heartbeatIntervalMs (from the
 * broker) after the previous was sent, or at once when asked (a released partition, a new
 * subscription, a rejoin). Failures retry with backoff (100 ms doubling, at most the interval);
 * a broken connection or COORDINATOR_NOT_AVAILABLE looks the coordinator up again.
 */
import { randomUUID } from 'node:crypto';
import { RillError, type ErrorName } from '../lib/errors.js';
import { ApiKey } from '../wire/apis.js';
import { decodeFindCoordinatorResponse, decodeHeartbeatResponse, flatten, groupByTopic, type TopicPartition } from '../wire/groups.js';
import type { Cluster } from './cluster.js';
import type { BrokerAddress, BrokerConnection } from './connection.js';
import { partitionKeyOf } from './consumer-partition.js';

export interface MembershipOptions {
  groupId: string;
  memberId: string;
  clientId: string;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
}

export interface MembershipHooks {
  /** Partitions the consumer owns now (reported in every heartbeat). */
  owned(): TopicPartition[];
  subscription(): string[];
  /** A successful heartbeat: the partitions the member may consume now. */
  onAssignment(assignment: TopicPartition[]): void;
  /** Everything must be dropped (no commit); the member rejoins by itself. */
  onLost(reason: string): void;
  /** A non-retriable error: the consumer cannot be a member. */
  onFatal(error: RillError): void;
  /** Something retriable went wrong; reported, then retried after `delayMs` (attempt counts failures in a row). */
  onWarning(error: Error, attempt: number, delayMs: number): void;
}

/** Errors after which only a rejoin (epoch 0, owning nothing) can help. */
const rejoinErrors: ReadonlySet<ErrorName> = new Set(['UNKNOWN_MEMBER_ID', 'FENCED_MEMBER_EPOCH']);
/** Errors after which the coordinator must be looked up again. */
const findAgainErrors: ReadonlySet<ErrorName> = new Set(['COORDINATOR_NOT_AVAILABLE', 'CONNECTION_ERROR', 'REQUEST_TIMED_OUT', 'BROKER_SHUTTING_DOWN']);

const retryBackoffMsMin = 100;
const leaveTimeoutMs = 2000;

interface PendingRevocation {
  keys: Set<string>;
  deadlineMs: number;
}

export class Membership {
  memberEpoch = 0;
  heartbeatIntervalMs = 1000;
  private coordinator: BrokerAddress | null = null;
  private stopped = false;
  private started = false;
  private inFlight: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private sessionTimer: NodeJS.Timeout | null = null;
  private revocationTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private lastSentMs = 0;
  /** Send time of the last heartbeat that succeeded. */
  private lastSuccessSentMs: number | null = null;
  /** Send time of the first heartbeat after the last success: the coordinator may have acted on it. */
  private firstSentSinceSuccessMs: number | null = null;
  /** Bumped on every drop: a response to a heartbeat sent before it is stale. */
  private incarnation = 0;
  private sentSubscription: string | null = null;
  private readonly revocations: PendingRevocation[] = [];
  private joinedOnce = false;
  private joinWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];

  constructor(
    private readonly cluster: Cluster,
    private readonly options: MembershipOptions,
    private readonly hooks: MembershipHooks,
  ) {}

  get memberId(): string {
    return this.options.memberId;
  }

  /** Starts heartbeating; resolves once the member has joined (first successful heartbeat). */
  start(): Promise<void> {
    const joined = this.joinedOnce ? Promise.resolve() : new Promise<void>((resolve, reject) => this.joinWaiters.push({ resolve, reject }));
    if (!this.started) {
      this.started = true;
      this.heartbeatNow();
    }
    return joined;
  }

  /** Sends a heartbeat as soon as the one in flight (if any) is answered. */
  heartbeatNow(): void {
    if (this.stopped || !this.started) return;
    if (this.inFlight !== null) {
      this.again = true;
      return;
    }
    this.clearTimer();
    this.inFlight = this.beat().finally(() => {
      this.inFlight = null;
      this.scheduleNext();
    });
  }

  /**
   * Rule 2: the caller revoked these partitions after an assignment arrived; they must be
   * reported released within rebalanceTimeoutMs of the earliest moment the coordinator may have
   * decided it.
   */
  trackRevocation(partitions: readonly TopicPartition[], decidedAtMs: number): void {
    if (partitions.length === 0) return;
    const deadlineMs = decidedAtMs + this.options.rebalanceTimeoutMs;
    this.revocations.push({ keys: new Set(partitions.map((tp) => partitionKeyOf(tp.topic, tp.partition))), deadlineMs });
    this.armRevocationTimer();
  }

  /** When the assignment now being handled may first have been decided by the coordinator. */
  get decisionTimeMs(): number {
    return this.firstSentSinceSuccessMs ?? this.lastSuccessSentMs ?? Date.now();
  }

  /** Rule 3 (and the end of rules 1 and 2): forget the epoch; the next heartbeat rejoins. */
  private lose(reason: string): void {
    this.incarnation++;
    this.memberEpoch = 0;
    this.revocations.length = 0;
    this.clearRevocationTimer();
    this.clearSessionTimer();
    this.hooks.onLost(reason);
    this.heartbeatNow();
  }

  private async beat(): Promise<void> {
    const incarnation = this.incarnation;
    const sentAtMs = Date.now();
    this.lastSentMs = sentAtMs;
    this.firstSentSinceSuccessMs ??= sentAtMs;
    const joining = this.memberEpoch === 0;
    const owned = joining ? [] : this.hooks.owned();
    const subscription = this.hooks.subscription();
    const subscriptionKey = subscription.join('\u0000');
    const request: Record<string, unknown> = {
      groupId: this.options.groupId,
      memberId: this.options.memberId,
      memberEpoch: this.memberEpoch,
      subscribedTopics: joining || subscriptionKey !== this.sentSubscription ? subscription : null,
      ownedPartitions: groupByTopic(owned),
    };
    if (joining) {
      request.clientId = this.options.clientId;
      request.sessionTimeoutMs = this.options.sessionTimeoutMs;
      request.rebalanceTimeoutMs = this.options.rebalanceTimeoutMs;
    }
    try {
      const connection = await this.connection('heartbeat');
      const response = await connection.call(ApiKey.ConsumerGroupHeartbeat, request, decodeHeartbeatResponse, { timeoutMs: this.heartbeatTimeoutMs() });
      if (this.stopped || incarnation !== this.incarnation) return; // answered after a drop: rejoin instead
      if (response.errorCode !== 0) {
        this.onError(RillError.fromCode(response.errorCode, response.errorMessage ?? undefined), joining);
        return;
      }
      this.failures = 0;
      this.lastSuccessSentMs = sentAtMs;
      this.armSessionTimer();
      this.sentSubscription = subscriptionKey;
      this.memberEpoch = response.memberEpoch;
      if (response.heartbeatIntervalMs > 0) this.heartbeatIntervalMs = response.heartbeatIntervalMs;
      this.confirmRevocations(owned);
      this.hooks.onAssignment(flatten(response.assignment));
      // The coordinator has acted on everything sent so far: later decisions start from here.
      this.firstSentSinceSuccessMs = null;
      if (joining) this.joined();
    } catch (error) {
      if (this.stopped) return;
      if (error instanceof RillError) {
        this.onError(error, joining);
      } else {
        this.failures++;
        this.hooks.onWarning(error as Error, this.failures, this.retryDelayMs());
      }
    }
  }

  private onError(error: RillError, joining: boolean): void {
    if (rejoinErrors.has(error.code)) {
      this.lose(error.code);
      return;
    }
    if (findAgainErrors.has(error.code)) this.coordinator = null;
    if (error.retriable || findAgainErrors.has(error.code)) {
      this.failures++;
      this.hooks.onWarning(error, this.failures, this.retryDelayMs());
      return;
    }
    // INVALID_SESSION_TIMEOUT, INVALID_GROUP_ID, GROUP_MAX_SIZE_REACHED, ...: retrying cannot help.
    if (joining && !this.joinedOnce) {
      for (const waiter of this.joinWaiters.splice(0)) waiter.reject(error);
    }
    this.hooks.onFatal(error);
  }

  private joined(): void {
    this.joinedOnce = true;
    for (const waiter of this.joinWaiters.splice(0)) waiter.resolve();
  }

  private confirmRevocations(reported: readonly TopicPartition[]): void {
    if (this.revocations.length === 0) return;
    const reportedKeys = new Set(reported.map((tp) => partitionKeyOf(tp.topic, tp.partition)));
    for (let i = this.revocations.length - 1; i >= 0; i--) {
      const revocation = this.revocations[i]!;
      if (![...revocation.keys].some((key) => reportedKeys.has(key))) this.revocations.splice(i, 1);
    }
    this.armRevocationTimer();
  }

  private armRevocationTimer(): void {
    this.clearRevocationTimer();
    if (this.revocations.length === 0 || this.stopped) return;
    const deadlineMs = Math.min(...this.revocations.map((r) => r.deadlineMs));
    this.revocationTimer = setTimeout(() => {
      this.revocationTimer = null;
      if (this.revocations.some((r) => r.deadlineMs <= Date.now())) this.lose('revocation not confirmed within rebalanceTimeoutMs');
      else this.armRevocationTimer();
    }, Math.max(0, deadlineMs - Date.now()));
  }

  private armSessionTimer(): void {
    this.clearSessionTimer();
    if (this.lastSuccessSentMs === null || this.stopped) return;
    const deadlineMs = this.lastSuccessSentMs + this.options.sessionTimeoutMs;
    this.sessionTimer = setTimeout(() => {
      this.sessionTimer = null;
      this.lose(`no successful heartbeat for ${this.options.sessionTimeoutMs} ms`);
    }, Math.max(0, deadlineMs - Date.now()));
  }

  private scheduleNext(): void {
    if (this.stopped) return;
    if (this.again) {
      this.again = false;
      this.heartbeatNow();
      return;
    }
    const delayMs = this.failures > 0 ? this.retryDelayMs() : Math.max(0, this.lastSentMs + this.heartbeatIntervalMs - Date.now());
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.heartbeatNow();
    }, delayMs);
  }

  /** Wait before the next heartbeat after `failures` failures in a row. */
  private retryDelayMs(): number {
    return Math.min(this.heartbeatIntervalMs, retryBackoffMsMin * 2 ** Math.min(this.failures - 1, 10));
  }

  /** A heartbeat that hangs longer than this is treated as failed (the session timer still rules). */
  private heartbeatTimeoutMs(): number {
    return Math.max(1000, Math.floor(this.options.sessionTimeoutMs / 2));
  }

  /** A connection to the group's coordinator; `purpose` keeps heartbeats apart from commits. */
  async connection(purpose: 'heartbeat' | 'group'): Promise<BrokerConnection> {
    if (this.coordinator === null) {
      const bootstrap = this.cluster.anyConnection();
      const found = await bootstrap.call(ApiKey.FindCoordinator, { key: this.options.groupId }, decodeFindCoordinatorResponse, { timeoutMs: this.heartbeatTimeoutMs() });
      // A broker listening on every interface may advertise 0.0.0.0: reach it where we reached it.
      const unroutable = found.host === '' || found.host === '0.0.0.0' || found.host === '::';
      this.coordinator = { host: unroutable ? bootstrap.address.host : found.host, port: found.port };
    }
    return this.cluster.connectionTo(this.coordinator, `group-${purpose}`);
  }

  /** The coordinator may have moved (or restarted): look it up again before the next request. */
  forgetCoordinator(): void {
    this.coordinator = null;
  }

  /**
   * Stops heartbeating and leaves the group (epoch -1) so it rebalances at once. Best effort:
   * if the coordinator cannot be reached, the session timeout removes the member instead.
   */
  async leave(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimer();
    this.clearSessionTimer();
    this.clearRevocationTimer();
    for (const waiter of this.joinWaiters.splice(0)) waiter.reject(new RillError('CONNECTION_ERROR', 'consumer closed before it joined its group'));
    if (this.inFlight !== null) await Promise.race([this.inFlight, sleep(leaveTimeoutMs)]);
    if (!this.started) return;
    try {
      const connection = await this.connection('heartbeat');
      const request = { groupId: this.options.groupId, memberId: this.options.memberId, memberEpoch: -1, subscribedTopics: null, ownedPartitions: [] };
      await connection.call(ApiKey.ConsumerGroupHeartbeat, request, decodeHeartbeatResponse, { timeoutMs: leaveTimeoutMs });
    } catch {
      // Unreachable coordinator: the session timeout will remove the member.
    }
    this.memberEpoch = -1;
  }

  /** Stops without leaving (the consumer failed fatally). */
  stop(): void {
    this.stopped = true;
    this.clearTimer();
    this.clearSessionTimer();
    this.clearRevocationTimer();
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private clearSessionTimer(): void {
    if (this.sessionTimer !== null) clearTimeout(this.sessionTimer);
    this.sessionTimer = null;
  }

  private clearRevocationTimer(): void {
    if (this.revocationTimer !== null) clearTimeout(this.revocationTimer);
    this.revocationTimer = null;
  }
}

export function newMemberId(): string {
  return randomUUID();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
