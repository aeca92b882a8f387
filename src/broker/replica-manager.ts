/**
 * Replication on one broker: what each of its partitions is (leader, follower, or neither), as
 * the partition states in etcd say (cluster-metadata.ts), and the work of each role. The rules
 * are in docs/replication.md; the decisions are pure and tested apart (replica-tracker.ts,
 * controller-logic.ts). This file wires them to the logs, the network and etcd.
 *
 * Topics: every broker keeps a local copy of every topic of the cluster (the same registry and
 * directories as a single broker), created, grown and deleted as etcd says. A topic that etcd no
 * longer names is deleted here only when this broker saw it go (it was in an earlier view), so a
 * broker pointed at an empty or wrong etcd never deletes its data; a topic whose createdAtMs
 * differs from the local one was deleted and created again: the local copy is replaced.
 *
 * Roles, per partition, from its state (replicas, leader, leaderEpoch, isr):
 *   leader == this broker     LeaderRole: records the epoch (leader-epoch file) at its log end,
 *                             stamps it in every batch, tracks followers (ReplicaTracker), moves
 *                             the high watermark, answers acks 'all' once it passes a batch,
 *                             changes the ISR in etcd (compare-and-swap on the state's version).
 *   in replicas, not leader   FollowerRole: fetched by the leader's ReplicaFetcher; clients get
 *                             NOT_LEADER (or LEADER_NOT_AVAILABLE while there is no leader).
 *   not a replica / no state  clients get NOT_LEADER / LEADER_NOT_AVAILABLE.
 * Role changes and truncations of one partition run one at a time (Slot.serial), so a follower
 * never truncates a log this broker has started to lead.
 *
 * Fencing: a leader stops acknowledging when a newer state names another leader or epoch (the
 * watch delivers it), and cannot acknowledge an acks 'all' batch its replacement lacks in any
 * case: the high watermark waits for every member of the ISR it knows, and a member elected
 * leader stops fetching from it (docs/replication.md, "Why a zombie cannot acknowledge"). So a
 * broker that lost etcd keeps serving what it leads (reads, acks 1, and acks 'all' while its ISR
 * keeps fetching), which is what lets a cluster ride out an etcd restart.
 */
import { RillError, errorCodeOf } from '../lib/errors.js';
import type { Log } from '../lib/log.js';
import { monotonicClock } from '../lib/clock.js';
import { ByteRateQuotas, type ByteRate } from '../lib/quota.js';
import { partitionKey, type PartitionKey } from '../lib/topic-partition.js';
import { requestHeaderBytes } from '../lib/limits.js';
import type { PartitionManager } from './partition-manager.js';
import type { Partition, PartitionReplication } from './partition.js';
import type { ProducerStates } from './producer-state.js';
import { replyOf, type Reply, type RequestContext } from './connection.js';
import { BrokerConnection, checkReply, type ConnectionOptions } from '../client/connection.js';
import { ApiKey } from '../wire/apis.js';
import { minInSyncReplicasFor } from '../wire/topic-config.js';
import { newBatchInfo, readBaseOffset, readPartitionLeaderEpoch, stampPartitionLeaderEpoch, validateBatch, BatchField } from '../wire/record-batch.js';
import {
  decodeReplicaFetchRequest, decodeReplicaFetchResponse, encodeReplicaFetchRequest, encodeReplicaFetchResponse,
  type ReplicaFetchedPartition, type ReplicaFetchPartitionRequest, type ReplicaFetchPartitionResponse,
} from '../wire/replica-fetch.js';
import type { AppendBatch } from '../storage/partition-log.js';
import { changeIsr, noLeader, type PartitionState } from '../cluster/controller-logic.js';
import type { ClusterMetadata, MetadataView, TopicView } from '../cluster/cluster-metadata.js';
import type { EtcdPort } from '../cluster/etcd-port.js';
import type { ClusterMembership, LiveBroker } from '../cluster/membership.js';
import { encodeRecord, partitionStateRecord, type ClusterKeys } from '../cluster/records.js';
import { ReplicaTracker } from '../cluster/replica-tracker.js';

export interface ReplicaManagerOptions {
  nodeId: number;
  port: EtcdPort;
  keys: ClusterKeys;
  membership: ClusterMembership;
  metadata: ClusterMetadata;
  partitions: PartitionManager;
  producers: ProducerStates;
  log: Log;
  replicaLagMaxMs: number;
  /** How this broker connects to the others (TLS, SASL) for replication. */
  connection: ConnectionOptions;
  /** The listener name whose advertised address replication connects to. */
  listenerName: string;
  /** Bytes/s this leader sends each replica being added by a move; 0: unlimited. */
  moveBytesPerSec: number;
  /** Topics were created, grown or deleted locally. */
  onTopicsChanged: () => void;
  /** This broker started (true) or stopped (false) leading a partition. */
  onLeadership?: (partition: Partition, leading: boolean) => void;
}

/** Bytes a follower asks for per partition and per fetch. */
const fetchPartitionBytesMax = 4 * 1024 * 1024;
const fetchBytesMax = 16 * 1024 * 1024;
const fetchWaitMs = 500;
/** Pause after an error, per partition or per leader connection. */
const retryBackoffMs = 200;
/** ISR changes that failed (etcd unreachable) are tried again at most this often. */
const isrRetryMs = 500;

class Slot {
  role: Role;
  /** Role changes and truncations, one at a time. */
  serial: Promise<void> = Promise.resolve();
  /** Follower: no fetch for this partition before (monotonic ms). */
  retryAtMs = 0;
  constructor(readonly key: PartitionKey, readonly topic: string, readonly index: number, readonly partition: Partition) {
    this.role = new NoRole(new RillError('LEADER_NOT_AVAILABLE', `${topic}/${index} has no partition state yet`));
  }

  enqueue(task: () => Promise<void> | void): Promise<void> {
    const next = this.serial.then(task);
    this.serial = next.catch(() => undefined);
    return next;
  }
}

class NoRole implements PartitionReplication {
  readonly kind = 'none';
  constructor(private readonly error: RillError) {}
  get highWatermark(): number {
    return 0;
  }
  clientError(): RillError {
    return this.error;
  }
  checkClientAppend(): void {
    throw this.error;
  }
  stamp(): void {}
  awaitAcks(): Promise<void> {
    return Promise.reject(this.error);
  }
  appended(): void {}
  fsynced(): void {}
}

class FollowerRole implements PartitionReplication {
  readonly kind = 'follower';
  /** The leader's high watermark as its last fetch response gave it, capped by this log's end. */
  highWatermark = 0;
  constructor(readonly leader: number, readonly leaderEpoch: number) {}
  clientError(): RillError {
    return this.leader === noLeader
      ? new RillError('LEADER_NOT_AVAILABLE', 'the partition has no leader now (no in-sync replica is alive)')
      : new RillError('NOT_LEADER', `broker ${this.leader} leads this partition (epoch ${this.leaderEpoch})`);
  }
  checkClientAppend(): void {
    throw this.clientError();
  }
  stamp(): void {}
  awaitAcks(): Promise<void> {
    return Promise.reject(this.clientError());
  }
  appended(): void {}
  fsynced(): void {}
}

interface Waiter {
  endOffset: bigint;
  resolve: () => void;
  reject: (error: RillError) => void;
  timer: NodeJS.Timeout;
}

export class LeaderRole implements PartitionReplication {
  readonly kind = 'leader';
  readonly tracker: ReplicaTracker;
  private waiters: Waiter[] = [];
  private readonly watchers = new Set<() => void>();
  private flushScheduled = false;
  private fsyncedOffset: number;
  private logEndOffset: number;
  /** No ISR write before this (monotonic ms): the last one failed. */
  isrRetryAtMs = 0;

  constructor(private readonly manager: ReplicaManager, readonly slot: Slot, state: PartitionState, highWatermark: number, minInSyncReplicas: number) {
    const log = slot.partition.log;
    this.fsyncedOffset = log.flushedOffset;
    this.logEndOffset = log.nextOffset;
    this.tracker = new ReplicaTracker({
      clock: monotonicClock,
      leaderId: manager.nodeId,
      state,
      logEndOffset: BigInt(log.nextOffset),
      fsyncedOffset: BigInt(log.flushedOffset),
      highWatermark: BigInt(Math.min(highWatermark, log.flushedOffset)),
      minInSyncReplicas,
      replicaLagMaxMs: manager.replicaLagMaxMs,
      eligible: (id) => manager.isLive(id),
    });
  }

  get leaderEpoch(): number {
    return this.tracker.leaderEpoch;
  }

  get highWatermark(): number {
    return Number(this.tracker.highWatermark);
  }

  clientError(): RillError | null {
    return this.tracker.fenced ?? null;
  }

  /** Before a client's append: NOT_LEADER when fenced; acks 'all' also NOT_ENOUGH_REPLICAS. */
  checkClientAppend(acksAll: boolean): void {
    if (this.tracker.fenced !== undefined) throw this.tracker.fenced;
    if (acksAll) this.tracker.checkAcksAllAppend();
  }

  /** Stamps this leader's epoch on each batch of a client's append (outside the CRC). */
  stamp(batches: readonly AppendBatch[]): void {
    for (const { batch } of batches) stampPartitionLeaderEpoch(batch, 0, this.tracker.leaderEpoch);
  }

  appended(logEndOffset: number): void {
    if (this.tracker.fenced !== undefined) return;
    if (logEndOffset < this.logEndOffset) {
      // The log was reopened after a storage failure and lost its unflushed tail: what this
      // leadership promised about those offsets no longer holds. Stop leading; the partition
      // answers NOT_LEADER until etcd names a leader again.
      this.manager.log('error', `${this.slot.topic}/${this.slot.index}: the log end went back from ${this.logEndOffset} to ${logEndOffset} (storage failure): no longer acting as leader`, { topic: this.slot.topic, partition: this.slot.index, condition: 'storage_error' });
      this.fence(new RillError('NOT_LEADER', 'the leader lost part of its log to a storage failure'));
      return;
    }
    this.logEndOffset = logEndOffset;
    this.tracker.leaderAppended(BigInt(logEndOffset));
    // Every append is fsynced soon (group commit): the high watermark counts fsynced offsets.
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.slot.partition.flush().catch((error: unknown) => this.manager.log('warn', `${this.slot.topic}/${this.slot.index}: flush failed: ${(error as Error).message}`, { topic: this.slot.topic, partition: this.slot.index, condition: 'storage_error' }));
      });
    }
    for (const watcher of this.watchers) watcher();
  }

  fsynced(flushedOffset: number): void {
    if (flushedOffset <= this.fsyncedOffset || flushedOffset > this.logEndOffset || this.tracker.fenced !== undefined) return;
    this.fsyncedOffset = flushedOffset;
    this.tracker.leaderFsynced(BigInt(flushedOffset));
    this.advance();
  }

  /** The high watermark or the tracker's state may have moved: show it, answer who waits. */
  advance(): void {
    this.slot.partition.publish();
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const waiter of this.waiters) {
      const status = this.tracker.acksAllStatus(waiter.endOffset);
      if (status.status === 'wait') {
        still.push(waiter);
        continue;
      }
      clearTimeout(waiter.timer);
      if (status.status === 'acknowledge') waiter.resolve();
      else waiter.reject(status.error);
    }
    this.waiters = still;
  }

  /** Resolves once an acks 'all' batch ending at `endOffset` may be acknowledged. */
  awaitAcks(endOffset: number, timeoutMs: number): Promise<void> {
    const end = BigInt(endOffset);
    const status = this.tracker.acksAllStatus(end);
    if (status.status === 'acknowledge') return Promise.resolve();
    if (status.status === 'fail') return Promise.reject(status.error);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        endOffset: end,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new RillError('REQUEST_TIMED_OUT', `the in-sync replicas [${this.tracker.isr.join(', ')}] did not all fsync the batch within ${timeoutMs} ms; it is in the leader's log and may yet be committed (an idempotent producer's retry is recognised)`));
        }, Math.max(1, timeoutMs)),
      };
      this.waiters.push(waiter);
    });
  }

  /** A follower's fetch, with what it holds; throws the per-partition error (OFFSET_OUT_OF_RANGE, ...). */
  followerFetched(brokerId: number, logEndOffset: number, fsyncedOffset: number): void {
    this.tracker.followerFetched(brokerId, { logEndOffset: BigInt(logEndOffset), fsyncedOffset: BigInt(fsyncedOffset) });
    this.advance();
  }

  watch(listener: () => void): () => void {
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  applyState(state: PartitionState): void {
    this.tracker.applyState(state);
    this.settleIfFenced();
    this.advance();
  }

  fence(error: RillError): void {
    this.tracker.fence(error);
    this.settleIfFenced();
  }

  private settleIfFenced(): void {
    const error = this.tracker.fenced;
    if (error === undefined) return;
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.waiters = [];
    for (const watcher of this.watchers) watcher();
  }
}

type Role = NoRole | FollowerRole | LeaderRole;

export class ReplicaManager {
  readonly nodeId: number;
  readonly replicaLagMaxMs: number;
  readonly log: Log;
  private readonly slots = new Map<PartitionKey, Slot>();
  private readonly fetchers = new Map<number, ReplicaFetcher>();
  /** Topics in the last view applied (a topic is deleted locally only once seen to go). */
  private knownTopics = new Set<string>();
  private live = new Set<number>();
  private closed = false;
  /** Per follower: what moves sent it (cluster.moveBytesPerSec). */
  private readonly moveQuota = new ByteRateQuotas(1000, 1024);
  private isrTimer: NodeJS.Timeout | null = null;

  constructor(readonly options: ReplicaManagerOptions) {
    this.nodeId = options.nodeId;
    this.replicaLagMaxMs = options.replicaLagMaxMs;
    this.log = options.log;
  }

  start(): void {
    const { membership, metadata } = this.options;
    // Nothing is served before etcd says what this broker is for each partition.
    for (const partition of this.options.partitions.all()) {
      partition.replication = new NoRole(new RillError('LEADER_NOT_AVAILABLE', `${partition.topic}/${partition.index}: this broker has not read the partition's state from etcd yet`));
      partition.publish();
    }
    this.live = new Set(membership.brokers().map((b) => b.nodeId));
    membership.on('brokers', (brokers: LiveBroker[]) => {
      // While this broker is not registered it knows nothing new: keep the last live set.
      if (brokers.length > 0) this.live = new Set(brokers.map((b) => b.nodeId));
    });
    metadata.on('changed', (view) => this.apply(view));
    this.apply(metadata.view);
    // Laggards leave the ISR even when nobody fetches (a dead follower sends nothing).
    this.isrTimer = setInterval(() => {
      for (const slot of this.slots.values()) if (slot.role instanceof LeaderRole) this.maybeChangeIsr(slot.role);
    }, Math.max(100, Math.floor(this.replicaLagMaxMs / 2)));
    this.isrTimer.unref?.();
  }

  isLive(brokerId: number): boolean {
    return this.live.has(brokerId);
  }

  /** What Metadata says about replication. */
  assignment(topic: string, partition: number): PartitionState | undefined {
    return this.options.metadata.view.partitions.get(partitionKey(topic, partition));
  }

  replicationFactor(topic: string): number | undefined {
    return this.options.metadata.view.topics.get(topic)?.replicationFactor;
  }

  /** Under-replicated (ISR smaller than replicas) and offline (no leader) partitions this broker leads or, for offline, knows. */
  health(): { underReplicated: number; offline: number; leaders: number } {
    let underReplicated = 0;
    let offline = 0;
    let leaders = 0;
    for (const slot of this.slots.values()) {
      const state = this.assignment(slot.topic, slot.index);
      if (state === undefined) continue;
      if (state.leader === noLeader && state.replicas[0] === this.nodeId) offline++;
      if (slot.role instanceof LeaderRole) {
        leaders++;
        if (state.isr.length < state.replicas.length) underReplicated++;
      }
    }
    return { underReplicated, offline, leaders };
  }

  // ---- Topics and roles from the view ------------------------------------------------------

  private apply(view: MetadataView): void {
    if (this.closed || view.revision === 0) return;
    this.mirrorTopics(view);
    for (const topic of view.topics.values()) {
      const partitions = this.options.partitions.topicPartitions(topic.name) ?? [];
      for (const partition of partitions) {
        const key = partitionKey(topic.name, partition.index);
        let slot = this.slots.get(key);
        if (slot === undefined || slot.partition !== partition) {
          if (slot !== undefined) this.retire(slot, `${topic.name} was created again`);
          slot = new Slot(key, topic.name, partition.index, partition);
          this.slots.set(key, slot);
          partition.replication = slot.role;
          partition.publish();
        }
        const target = slot;
        target.enqueue(() => this.settleRole(target, topic)).catch((error: unknown) => {
          this.log('error', `${target.topic}/${target.index}: cannot take the role etcd gives this broker: ${(error as Error).message}; retried at the next change`, { topic: target.topic, partition: target.index, condition: 'storage_error' });
        });
      }
    }
    for (const [key, slot] of this.slots) {
      if (!view.topics.has(slot.topic) || this.options.partitions.get(slot.topic, slot.index) !== slot.partition) {
        this.retire(slot, `${slot.topic} was deleted`);
        this.slots.delete(key);
      }
    }
    this.syncFetchers();
  }

  /** A slot whose partition is gone or replaced: its leader stops, its fetcher skips it. */
  private retire(slot: Slot, why: string): void {
    if (slot.role instanceof LeaderRole) {
      slot.role.fence(new RillError('NOT_LEADER', why));
      this.options.onLeadership?.(slot.partition, false);
    }
    const gone = new NoRole(new RillError('UNKNOWN_TOPIC_OR_PARTITION', `${slot.topic}/${slot.index}: ${why}`));
    slot.role = gone;
    slot.partition.replication = gone;
  }

  private mirrorTopics(view: MetadataView): void {
    const partitions = this.options.partitions;
    let changed = false;
    for (const topic of view.topics.values()) {
      const local = partitions.registry.get(topic.name);
      try {
        if (local !== undefined && local.createdAtMs !== topic.createdAtMs) {
          this.log('info', `topic ${topic.name} was deleted and created again in the cluster: replacing the local copy`, { topic: topic.name });
          partitions.delete(topic.name);
          changed = true;
        }
        if (partitions.registry.get(topic.name) === undefined) {
          partitions.create(topic.name, topic.partitions, topic.config, topic.createdAtMs);
          changed = true;
        } else if (local!.partitions < topic.partitions) {
          partitions.addPartitions(topic.name, topic.partitions);
          changed = true;
        } else if (JSON.stringify(local!.config) !== JSON.stringify(topic.config)) {
          partitions.replaceConfig(topic.name, topic.config);
        }
      } catch (error) {
        this.log('error', `cannot mirror topic ${topic.name} locally: ${(error as Error).message}; retried at the next change`, { topic: topic.name, condition: 'storage_error' });
      }
    }
    for (const name of this.knownTopics) {
      if (view.topics.has(name) || partitions.registry.get(name) === undefined) continue;
      try {
        partitions.delete(name);
        changed = true;
        this.log('info', `topic ${name} was deleted in the cluster: local copy deleted`, { topic: name });
      } catch (error) {
        this.log('error', `cannot delete topic ${name} locally: ${(error as Error).message}`, { topic: name });
      }
    }
    this.knownTopics = new Set(view.topics.keys());
    if (changed) this.options.onTopicsChanged();
  }

  private settleRole(slot: Slot, topic: TopicView): void {
    if (this.closed || this.slots.get(slot.key) !== slot) return;
    // The newest state, whatever view queued this: a role never goes back to an older one.
    const current = this.options.metadata.view.partitions.get(slot.key);
    const role = slot.role;
    if (current === undefined) {
      if (role instanceof LeaderRole) role.fence(new RillError('NOT_LEADER', 'the partition has no state in etcd'));
      if (!(role instanceof NoRole)) this.setRole(slot, new NoRole(new RillError('LEADER_NOT_AVAILABLE', `${slot.topic}/${slot.index} has no partition state yet`)));
      return;
    }
    if (current.leader === this.nodeId) {
      if (role instanceof LeaderRole && role.leaderEpoch === current.leaderEpoch && role.tracker.fenced === undefined) {
        role.applyState(current);
        return;
      }
      if (role instanceof LeaderRole && role.leaderEpoch > current.leaderEpoch) return; // an older state
      this.becomeLeader(slot, topic, current, role);
      return;
    }
    if (role instanceof LeaderRole) {
      role.fence(new RillError('NOT_LEADER', `broker ${current.leader} leads ${slot.topic}/${slot.index} at epoch ${current.leaderEpoch}`));
    }
    if (current.replicas.includes(this.nodeId)) {
      if (role instanceof FollowerRole && role.leader === current.leader && role.leaderEpoch === current.leaderEpoch) return;
      const follower = new FollowerRole(current.leader, current.leaderEpoch);
      if (role instanceof FollowerRole || role instanceof LeaderRole) follower.highWatermark = Math.min(role.highWatermark, slot.partition.log.nextOffset);
      this.setRole(slot, follower);
      // The producer state goes with the log (followers keep it current as they append).
      this.options.producers.stateOf(slot.partition);
      if (current.leader !== noLeader) this.log('info', `${slot.topic}/${slot.index}: following broker ${current.leader} (leader epoch ${current.leaderEpoch})`, { topic: slot.topic, partition: slot.index });
      this.syncFetchers();
      return;
    }
    if (!(role instanceof NoRole)) this.setRole(slot, new NoRole(new RillError('NOT_LEADER', `this broker holds no replica of ${slot.topic}/${slot.index}; broker ${current.leader} leads it`)));
  }

  private becomeLeader(slot: Slot, topic: TopicView, state: PartitionState, previous: Role): void {
    const log = slot.partition.log;
    // This epoch starts at the log end: every later batch carries it (leader-epoch-file.ts).
    log.leaderEpochs.assign(state.leaderEpoch, log.nextOffset);
    this.options.producers.stateOf(slot.partition);
    const knownHighWatermark = previous instanceof FollowerRole || previous instanceof LeaderRole ? previous.highWatermark : 0;
    const minInSync = minInSyncReplicasFor(topic.config, state.replicas.length);
    const role = new LeaderRole(this, slot, state, knownHighWatermark, minInSync);
    this.setRole(slot, role);
    this.log('info', `${slot.topic}/${slot.index}: leading at epoch ${state.leaderEpoch} from offset ${log.nextOffset} (ISR [${state.isr.join(', ')}], high watermark ${role.highWatermark})`, { topic: slot.topic, partition: slot.index, leaderEpoch: state.leaderEpoch });
    // What the previous run or leadership left unflushed counts once fsynced.
    slot.partition.flush().catch(() => undefined);
    this.syncFetchers();
  }

  private setRole(slot: Slot, role: Role): void {
    const wasLeader = slot.role instanceof LeaderRole;
    slot.role = role;
    slot.partition.replication = role;
    slot.partition.publish();
    const isLeader = role instanceof LeaderRole;
    if (wasLeader || isLeader) this.options.onLeadership?.(slot.partition, isLeader);
  }

  /** The leader role of a partition, for the ReplicaFetch handler. */
  slot(topic: string, partition: number): Slot | undefined {
    return this.slots.get(partitionKey(topic, partition));
  }

  // ---- ISR changes (the leader's) ------------------------------------------------------------

  maybeChangeIsr(role: LeaderRole): void {
    if (this.closed || monotonicClock.nowMs() < role.isrRetryAtMs) return;
    const proposal = role.tracker.proposeIsrChange((id) => this.live.has(id));
    if (proposal === undefined) return;
    const slot = role.slot;
    const current = this.options.metadata.view.partitions.get(slot.key);
    const settle = (state: PartitionState | undefined, failed: boolean): void => {
      if (failed) role.isrRetryAtMs = monotonicClock.nowMs() + isrRetryMs;
      if (state === undefined) role.fence(new RillError('NOT_LEADER', 'the partition has no state in etcd'));
      else role.tracker.isrChangeSettled(state);
      role.advance();
    };
    if (current === undefined || current.version !== proposal.version) {
      settle(current, false);
      return;
    }
    let after: PartitionState | undefined;
    try {
      after = changeIsr(current, { leaderId: this.nodeId, leaderEpoch: proposal.leaderEpoch, isr: proposal.isr }, this.live);
    } catch (error) {
      settle(current, true);
      if (error instanceof RillError && error.code !== 'UNKNOWN_LEADER_EPOCH') role.fence(error);
      return;
    }
    if (after === undefined) {
      settle(current, false);
      return;
    }
    const key = this.options.keys.partition(slot.topic, slot.index);
    const change = `ISR [${current.isr.join(', ')}] -> [${after.isr.join(', ')}]`;
    this.options.port.txn([{ key, target: 'mod', revision: current.version }], [{ key, value: encodeRecord(partitionStateRecord(after)) }])
      .then(async ({ succeeded }) => {
        if (succeeded) this.log('info', `${slot.topic}/${slot.index}: ${change} (removed [${proposal.removed.join(', ')}], added [${proposal.added.join(', ')}])`, { topic: slot.topic, partition: slot.index });
        await this.options.metadata.refresh();
        settle(this.options.metadata.view.partitions.get(slot.key), !succeeded);
      })
      .catch((error: unknown) => {
        this.log('warn', `${slot.topic}/${slot.index}: could not write ${change} to etcd (${(error as Error).message}); retrying`, { topic: slot.topic, partition: slot.index });
        settle(current, true);
      });
  }

  // ---- Leader side of ReplicaFetch ----------------------------------------------------------

  /** ReplicaFetch from a follower (broker/replica-manager.ts). */
  handleReplicaFetch(context: RequestContext): Reply | Promise<Reply> {
    const request = decodeReplicaFetchRequest(context.frame, requestHeaderBytes);
    const follower = request.replicaId;
    const watched: LeaderRole[] = [];
    const entries = request.topics.map((topic) => ({
      name: topic.name,
      partitions: topic.partitions.map((p) => {
        const outcome = this.recordFetch(follower, topic.name, p);
        if (outcome.role !== null) watched.push(outcome.role);
        return { request: p, error: outcome.error, diverging: outcome.diverging, role: outcome.role };
      }),
    }));
    const build = (): { reply: Reply; bytes: number } => {
      let budget = Math.min(request.maxBytes, fetchBytesMax);
      let bytes = 0;
      const topics = entries.map((topic) => ({
        name: topic.name,
        partitions: topic.partitions.map((entry): ReplicaFetchPartitionResponse => {
          const { request: p, role } = entry;
          const base = { partition: p.partition, leaderEpoch: role?.leaderEpoch ?? -1, highWatermark: -1, logStartOffset: -1, divergingEpoch: null, records: [] as Buffer[] };
          if (entry.error !== null || role === null) return { ...base, errorCode: entry.error?.errorCode ?? errorCodeOf('NOT_LEADER') };
          const partition = role.slot.partition;
          const fenced = role.tracker.fenced;
          if (fenced !== undefined) return { ...base, errorCode: fenced.errorCode };
          const withOffsets = { ...base, highWatermark: role.highWatermark, logStartOffset: partition.log.logStartOffset };
          if (entry.diverging !== null) return { ...withOffsets, errorCode: 0, divergingEpoch: entry.diverging };
          if (budget <= 0 || p.fetchOffset >= partition.log.nextOffset) return { ...withOffsets, errorCode: 0 };
          // A replica a move adds catches up at moveBytesPerSec: nothing this round while over it.
          const moving = this.isMoving(role, follower);
          if (moving !== null && this.moveQuota.record(String(follower), moving, 0, monotonicClock.nowMs()) > 0) return { ...withOffsets, errorCode: 0 };
          try {
            const { batches } = partition.log.read(p.fetchOffset, Math.min(p.partitionMaxBytes, budget));
            let read = 0;
            for (const batch of batches) read += batch.length;
            if (moving !== null) this.moveQuota.record(String(follower), moving, read, monotonicClock.nowMs());
            budget -= read;
            bytes += read;
            return { ...withOffsets, errorCode: 0, records: batches };
          } catch (error) {
            if (!(error instanceof RillError)) throw error;
            return { ...base, errorCode: error.errorCode };
          }
        }),
      }));
      return { reply: replyOf(encodeReplicaFetchResponse(topics).chunks), bytes };
    };
    const first = build();
    const anyNews = entries.some((t) => t.partitions.some((e) => e.error !== null || e.diverging !== null));
    const waitMs = Math.min(request.maxWaitMs, 5000);
    if (first.bytes >= Math.max(1, request.minBytes) || anyNews || waitMs === 0 || watched.length === 0) return first.reply;
    return new Promise<Reply>((resolve) => {
      let done = false;
      const unwatch: (() => void)[] = [];
      const finish = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        for (const stop of unwatch) stop();
        resolve(build().reply);
      };
      const timer = setTimeout(finish, waitMs);
      // An append (or a fence) on any of them answers at once, with what is there.
      for (const role of watched) unwatch.push(role.watch(() => setImmediate(finish)));
    });
  }

  /** The rate for `follower` when a move is adding it to this partition (a target not yet in the ISR), else null. */
  private isMoving(role: LeaderRole, follower: number): ByteRate | null {
    const rate = this.options.moveBytesPerSec;
    if (rate <= 0) return null;
    const target = this.options.metadata.view.partitions.get(role.slot.key)?.targetReplicas;
    if (target === undefined || !target.includes(follower) || role.tracker.isr.includes(follower)) return null;
    return { bytesPerSecond: rate, burstBytes: Math.min(rate, fetchPartitionBytesMax) };
  }

  /** Fences, checks divergence and records the follower's offsets for one partition. */
  private recordFetch(follower: number, topic: string, p: ReplicaFetchPartitionRequest): { role: LeaderRole | null; error: RillError | null; diverging: { epoch: number; endOffset: number } | null } {
    const slot = this.slots.get(partitionKey(topic, p.partition));
    if (slot === undefined) return { role: null, error: new RillError('UNKNOWN_TOPIC_OR_PARTITION', `${topic}/${p.partition} is not known here`), diverging: null };
    const role = slot.role;
    if (!(role instanceof LeaderRole)) {
      const epoch = role instanceof FollowerRole ? role.leaderEpoch : -1;
      if (epoch > p.currentLeaderEpoch) return { role: null, error: new RillError('FENCED_LEADER_EPOCH', `epoch ${p.currentLeaderEpoch} is older than ${epoch}`), diverging: null };
      return { role: null, error: new RillError('NOT_LEADER', `this broker does not lead ${topic}/${p.partition}`), diverging: null };
    }
    if (p.currentLeaderEpoch < role.leaderEpoch) return { role, error: new RillError('FENCED_LEADER_EPOCH', `epoch ${p.currentLeaderEpoch} is older than the leader's ${role.leaderEpoch}`), diverging: null };
    if (p.currentLeaderEpoch > role.leaderEpoch) return { role, error: new RillError('UNKNOWN_LEADER_EPOCH', `epoch ${p.currentLeaderEpoch} is newer than the leader's ${role.leaderEpoch}`), diverging: null };
    const log = slot.partition.log;
    if (p.lastFetchedEpoch >= 0 && log.leaderEpochs.entries.length > 0) {
      const end = log.leaderEpochs.endOffsetFor(p.lastFetchedEpoch, log.nextOffset);
      if (end.epoch < 0) return { role, error: new RillError('UNKNOWN_LEADER_EPOCH', `the leader has no epoch at or below ${p.lastFetchedEpoch}`), diverging: null };
      if (end.epoch !== p.lastFetchedEpoch || end.endOffset < p.fetchOffset) return { role, error: null, diverging: { epoch: end.epoch, endOffset: end.endOffset } };
    }
    // A replica a move just added, before this leader applied the state naming it: retry shortly.
    if (!role.tracker.hasFollower(follower)) return { role, error: new RillError('UNKNOWN_LEADER_EPOCH', `broker ${follower} is not a replica of ${topic}/${p.partition} in the leader's view yet`), diverging: null };
    if (p.fetchOffset < log.logStartOffset) return { role, error: new RillError('OFFSET_OUT_OF_RANGE', `offset ${p.fetchOffset} is below the log start ${log.logStartOffset}`), diverging: null };
    try {
      role.followerFetched(follower, p.fetchOffset, p.fsyncedOffset);
    } catch (error) {
      if (!(error instanceof RillError)) throw error;
      return { role, error, diverging: null };
    }
    this.maybeChangeIsr(role);
    return { role, error: null, diverging: null };
  }

  // ---- Followers ----------------------------------------------------------------------------

  /** One fetcher per leader this broker follows partitions of. */
  private syncFetchers(): void {
    if (this.closed) return;
    const leaders = new Set<number>();
    for (const slot of this.slots.values()) {
      if (slot.role instanceof FollowerRole && slot.role.leader !== noLeader) leaders.add(slot.role.leader);
    }
    for (const leader of leaders) {
      if (!this.fetchers.has(leader)) {
        const fetcher = new ReplicaFetcher(this, leader);
        this.fetchers.set(leader, fetcher);
        void fetcher.run().finally(() => {
          if (this.fetchers.get(leader) === fetcher) this.fetchers.delete(leader);
          // Partitions may have come back to this leader while the fetcher stopped.
          if (!this.closed && [...this.slots.values()].some((s) => s.role instanceof FollowerRole && s.role.leader === leader)) this.syncFetchers();
        });
      }
    }
  }

  /** The partitions following `leader` now. */
  followedOn(leader: number): Slot[] {
    return [...this.slots.values()].filter((slot) => slot.role instanceof FollowerRole && slot.role.leader === leader);
  }

  /** Where replication reaches broker `id`, or null while it is not known to be alive. */
  addressOf(id: number): { host: string; port: number } | null {
    const broker = this.options.membership.knownBrokers().find((b) => b.nodeId === id);
    if (broker === undefined) return null;
    const listener = broker.listeners.find((l) => l.name === this.options.listenerName) ?? broker.listeners[0];
    return listener === undefined ? null : { host: listener.host, port: listener.port };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Appends a leader's batches to a follower's log, byte for byte (see docs/replication.md). */
  appendFromLeader(slot: Slot, role: FollowerRole, fetched: ReplicaFetchedPartition): boolean {
    const records = fetched.records;
    const partition = slot.partition;
    const log = partition.log;
    const producers = this.options.producers.stateOf(partition);
    const info = newBatchInfo();
    const groups: { epoch: number; batches: AppendBatch[] }[] = [];
    let expected = log.nextOffset;
    for (let pos = 0; pos < records.length; pos += info.sizeBytes) {
      validateBatch(records, pos, records.length, info);
      const baseOffset = readBaseOffset(records, pos);
      if (baseOffset !== expected) throw new RillError('CORRUPT_BATCH', `${slot.topic}/${slot.index}: the leader sent a batch at offset ${baseOffset}, expected ${expected}`);
      expected = baseOffset + info.recordsCount;
      const epoch = readPartitionLeaderEpoch(records, pos);
      const batch = records.subarray(pos, pos + info.sizeBytes);
      const entry: AppendBatch = { batch, recordsCount: info.recordsCount, maxTimestampMs: info.maxTimestamp };
      const last = groups[groups.length - 1];
      if (last !== undefined && last.epoch === epoch) last.batches.push(entry);
      else groups.push({ epoch, batches: [entry] });
    }
    if (groups.length === 0) return false;
    for (const group of groups) {
      if (slot.role !== role) return false;
      const start = log.nextOffset;
      if (group.epoch >= 0 && group.epoch > log.leaderEpochs.latestEpoch) log.leaderEpochs.assign(group.epoch, start);
      partition.append(group.batches, false);
      for (const { batch } of group.batches) {
        const producerId = batch.readInt32BE(BatchField.producerId) * 0x1_0000_0000 + batch.readUInt32BE(BatchField.producerId + 4);
        if (producerId < 0) continue;
        const recordsCount = batch.readInt32BE(BatchField.recordsCount);
        const maxTimestampMs = batch.readInt32BE(BatchField.maxTimestamp) * 0x1_0000_0000 + batch.readUInt32BE(BatchField.maxTimestamp + 4);
        producers.record(producerId, batch.readInt16BE(BatchField.producerEpoch), batch.readInt32BE(BatchField.baseSequence), recordsCount, readBaseOffset(batch, 0), maxTimestampMs);
      }
      this.options.producers.afterAppend(partition, group.batches.reduce((n, b) => n + b.batch.length, 0));
    }
    return true;
  }

  /** A follower truncates what diverged from its leader (KIP-101/279), one partition at a time. */
  truncate(slot: Slot, role: FollowerRole, diverging: { epoch: number; endOffset: number }): Promise<void> {
    return slot.enqueue(async () => {
      if (slot.role !== role) return;
      const log = slot.partition.log;
      const own = log.leaderEpochs.endOffsetFor(diverging.epoch, log.nextOffset);
      const target = own.epoch < 0 ? log.logStartOffset : own.epoch === diverging.epoch ? Math.min(diverging.endOffset, own.endOffset) : own.endOffset;
      await slot.partition.flush();
      if (slot.role !== role || target >= log.nextOffset) return;
      const before = log.nextOffset;
      const end = await slot.partition.truncateTo(Math.max(target, log.logStartOffset));
      this.options.producers.forget(slot.partition);
      role.highWatermark = Math.min(role.highWatermark, end);
      this.log('info', `${slot.topic}/${slot.index}: truncated from ${before} to ${end}: those offsets diverged from the leader's log (epoch ${diverging.epoch} ends at ${diverging.endOffset} there)`, { topic: slot.topic, partition: slot.index });
    });
  }

  /** A follower below its leader's log start starts over there. */
  resetTo(slot: Slot, role: FollowerRole, startOffset: number): Promise<void> {
    return slot.enqueue(async () => {
      if (slot.role !== role) return;
      await slot.partition.resetTo(startOffset);
      this.options.producers.forget(slot.partition);
      role.highWatermark = startOffset;
      this.log('info', `${slot.topic}/${slot.index}: log reset to start at ${startOffset}, the leader's log start`, { topic: slot.topic, partition: slot.index });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.isrTimer !== null) clearInterval(this.isrTimer);
    for (const slot of this.slots.values()) {
      if (slot.role instanceof LeaderRole) slot.role.fence(new RillError('BROKER_SHUTTING_DOWN'));
    }
    await Promise.all([...this.fetchers.values()].map((fetcher) => fetcher.stop()));
  }
}

/** Fetches, for every partition this broker follows on one leader, in one request at a time. */
class ReplicaFetcher {
  private connection: BrokerConnection | null = null;
  private address = '';
  private stopped = false;
  private failing: string | null = null;
  private sleeping: { timer: NodeJS.Timeout; resolve: () => void } | null = null;

  constructor(private readonly manager: ReplicaManager, readonly leader: number) {}

  async run(): Promise<void> {
    while (!this.stopped && !this.manager.isClosed) {
      const followed = this.manager.followedOn(this.leader);
      if (followed.length === 0) break;
      const address = this.manager.addressOf(this.leader);
      if (address === null) {
        await this.sleep(retryBackoffMs);
        continue;
      }
      try {
        await this.fetchOnce(followed, address);
        if (this.failing !== null) this.manager.log('info', `replication from broker ${this.leader} works again`, { leader: this.leader });
        this.failing = null;
      } catch (error) {
        const message = (error as Error).message;
        if (this.failing !== message) this.manager.log('warn', `replication from broker ${this.leader} at ${address.host}:${address.port} failed: ${message}; retrying`, { leader: this.leader });
        this.failing = message;
        await this.sleep(retryBackoffMs);
      }
    }
    this.connection?.close();
  }

  private async fetchOnce(followed: Slot[], address: { host: string; port: number }): Promise<void> {
    const name = `${address.host}:${address.port}`;
    if (this.connection === null || this.address !== name) {
      this.connection?.close();
      this.connection = new BrokerConnection(address, { ...this.manager.options.connection, purpose: 'replication', requestTimeoutMs: fetchWaitMs + 10_000 });
      this.address = name;
    }
    const nowMs = monotonicClock.nowMs();
    const asked: { slot: Slot; role: FollowerRole; request: ReplicaFetchPartitionRequest }[] = [];
    for (const slot of followed) {
      if (slot.retryAtMs > nowMs || !(slot.role instanceof FollowerRole)) continue;
      const log = slot.partition.log;
      asked.push({
        slot,
        role: slot.role,
        request: {
          partition: slot.index, currentLeaderEpoch: slot.role.leaderEpoch, fetchOffset: log.nextOffset, fsyncedOffset: log.flushedOffset,
          lastFetchedEpoch: log.leaderEpochs.latestEpoch, partitionMaxBytes: fetchPartitionBytesMax,
        },
      });
    }
    if (asked.length === 0) {
      await this.sleep(retryBackoffMs);
      return;
    }
    const byTopic = new Map<string, ReplicaFetchPartitionRequest[]>();
    const askedByKey = new Map<PartitionKey, (typeof asked)[number]>();
    for (const entry of asked) {
      let list = byTopic.get(entry.slot.topic);
      if (list === undefined) byTopic.set(entry.slot.topic, (list = []));
      list.push(entry.request);
      askedByKey.set(entry.slot.key, entry);
    }
    const request = encodeReplicaFetchRequest({
      replicaId: this.manager.nodeId, maxWaitMs: fetchWaitMs, minBytes: 1, maxBytes: fetchBytesMax,
      topics: [...byTopic].map(([topicName, partitions]) => ({ name: topicName, partitions })),
    });
    const frame = await this.connection.send(ApiKey.ReplicaFetch, 0, [request]);
    const response = decodeReplicaFetchResponse(checkReply(frame!), 0, fetchBytesMax);
    const flushes: Promise<unknown>[] = [];
    for (const topic of response.topics) {
      for (const fetched of topic.partitions) {
        const entry = askedByKey.get(partitionKey(topic.name, fetched.partition));
        if (entry === undefined) continue;
        const { slot, role } = entry;
        if (slot.role !== role) continue;
        try {
          await this.handle(slot, role, fetched, flushes);
        } catch (error) {
          slot.retryAtMs = monotonicClock.nowMs() + retryBackoffMs;
          this.manager.log('warn', `${slot.topic}/${slot.index}: replicating from broker ${this.leader} failed: ${(error as Error).message}`, { topic: slot.topic, partition: slot.index, condition: error instanceof RillError && error.code === 'STORAGE_ERROR' ? 'storage_error' : undefined });
        }
      }
    }
    // One fsync round for what this response appended, before the next fetch reports it.
    await Promise.all(flushes);
  }

  private async handle(slot: Slot, role: FollowerRole, fetched: ReplicaFetchedPartition, flushes: Promise<unknown>[]): Promise<void> {
    if (fetched.errorCode !== 0) {
      const error = RillError.fromCode(fetched.errorCode);
      slot.retryAtMs = monotonicClock.nowMs() + retryBackoffMs;
      if (error.code === 'OFFSET_OUT_OF_RANGE' && fetched.logStartOffset > slot.partition.log.nextOffset) {
        await this.manager.resetTo(slot, role, fetched.logStartOffset);
        slot.retryAtMs = 0;
        return;
      }
      if (error.code === 'NOT_LEADER' || error.code === 'FENCED_LEADER_EPOCH') void this.manager.options.metadata.refresh();
      if (error.code !== 'NOT_LEADER' && error.code !== 'FENCED_LEADER_EPOCH' && error.code !== 'UNKNOWN_LEADER_EPOCH') {
        this.manager.log('warn', `${slot.topic}/${slot.index}: broker ${this.leader} answered ${error.code}`, { topic: slot.topic, partition: slot.index });
      }
      return;
    }
    if (fetched.divergingEpoch !== null) {
      await this.manager.truncate(slot, role, fetched.divergingEpoch);
      return;
    }
    if (fetched.records.length > 0 && this.manager.appendFromLeader(slot, role, fetched)) {
      flushes.push(slot.partition.flush().catch((error: unknown) => {
        slot.retryAtMs = monotonicClock.nowMs() + retryBackoffMs;
        this.manager.log('warn', `${slot.topic}/${slot.index}: follower fsync failed: ${(error as Error).message}`, { topic: slot.topic, partition: slot.index, condition: 'storage_error' });
      }));
    }
    if (slot.role === role) {
      role.highWatermark = Math.max(role.highWatermark, Math.min(fetched.highWatermark, slot.partition.log.nextOffset));
      // The follower's view of the high watermark (lag figures, and where it starts if elected).
      slot.partition.publish();
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeping = null;
        resolve();
      }, ms);
      this.sleeping = { timer, resolve };
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sleeping !== null) {
      clearTimeout(this.sleeping.timer);
      this.sleeping.resolve();
    }
    this.connection?.close();
  }
}
