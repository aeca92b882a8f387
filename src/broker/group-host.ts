/**
 * Hosts the consumer-group coordinator inside the broker: feeds it requests and time, persists
 * every record it returns (fsynced, group-committed) before answering, replays the store at
 * start, and compacts the store so restart time does not grow with the number of commits.
 *
 * The coordinator is pure (src/coordinator); this file owns its I/O and its clock.
 */
import { RillError, errorCodeOf } from '../lib/errors.js';
import { requestHeaderBytes } from '../lib/limits.js';
import { Coordinator, type CoordinatorOptions, type GroupDescription } from '../coordinator/coordinator.js';
import type { GroupRecord } from '../coordinator/records.js';
import { decodeMsgpack } from '../wire/msgpack.js';
import { decodeDeleteGroupsRequest } from '../wire/admin-ops.js';
import { clusterResource, type Access, type Operation } from './access.js';
import type { Connection } from './connection.js';
import {
  decodeDescribeGroupsRequest, decodeFindCoordinatorRequest, decodeHeartbeatRequest, decodeOffsetCommitRequest,
  decodeOffsetFetchRequest, decodeResetOffsetsRequest, flatten, groupByTopic,
} from '../wire/groups.js';
import { msgpackReply, type Reply, type RequestContext } from './connection.js';
import type { FileOps } from '../storage/file-ops.js';
import { GroupStore, type DroppedTail } from './group-store.js';

/** Where the coordinator's records live: the group store file, or (in a cluster) a replicated partition. */
export interface GroupRecordStore {
  /** Resolves once the records are durable (fsynced; in a cluster, on every in-sync replica). */
  append(records: readonly GroupRecord[]): Promise<void>;
  shouldCompact(): boolean;
  compact(snapshot: readonly GroupRecord[]): Promise<void>;
  close(): Promise<void>;
}

/** Opens a store and returns what it holds, to replay. */
export type GroupStoreOpener = () => Promise<{ store: GroupRecordStore; records: GroupRecord[]; dropped: DroppedTail | null }>;
import type { PartitionManager } from './partition-manager.js';

/** How often silent members are looked for. Removal is this punctual. */
export const groupTickIntervalMs = 100;

import type { Log } from '../lib/log.js';

/** One group with its members, per-partition lag (-1 where nothing is committed) and rebalance history. */
export interface GroupView {
  groupId: string;
  state: string;
  /** Bumped by every rebalance (persisted, so it only grows). */
  groupEpoch: number;
  assignmentEpoch: number;
  members: {
    memberId: string; clientId: string; host: string; memberEpoch: number; state: string; sessionTimeoutMs: number;
    subscribedTopics: readonly string[];
    assigned: ReturnType<typeof groupByTopic>; pendingRevocation: ReturnType<typeof groupByTopic>; pendingAssignment: ReturnType<typeof groupByTopic>;
  }[];
  offsets: { topic: string; partition: number; committedOffset: bigint; endOffset: bigint; lag: bigint; owner: string | null }[];
  history: GroupDescription['history'];
}

function body(context: RequestContext): unknown {
  return decodeMsgpack(context.frame.subarray(requestHeaderBytes));
}

export class GroupHost {
  private coordinator: Coordinator;
  private ticker: NodeJS.Timeout | null = null;
  /** Set while the store is being reopened after a write failure; requests get COORDINATOR_NOT_AVAILABLE. */
  private reloading: Promise<void> | null = null;

  private constructor(
    private store: GroupRecordStore,
    private readonly partitions: PartitionManager,
    private readonly options: Omit<CoordinatorOptions, 'topics'>,
    private readonly openStore: GroupStoreOpener,
    private readonly log: Log,
  ) {
    this.coordinator = this.newCoordinator();
  }

  private newCoordinator(): Coordinator {
    return new Coordinator({ ...this.options, topics: { partitionCount: (topic) => this.partitions.registry.get(topic)?.partitions } });
  }

  /**
   * Opens the store and replays it; topics must already be loaded (offsets of unknown topics are
   * dropped). `openStore`: where the records live; default the data directory's group store.
   */
  static async open(dataDir: string, partitions: PartitionManager, log: Log, options: Omit<CoordinatorOptions, 'topics'> = {}, fileOps?: FileOps, openStore?: GroupStoreOpener): Promise<GroupHost> {
    const opener: GroupStoreOpener = openStore ?? (() => GroupStore.open(dataDir, fileOps));
    const { store, records, dropped } = await opener();
    const host = new GroupHost(store, partitions, options, opener, log);
    host.replay(records, dropped);
    await host.persist(host.coordinator.onTopicsChanged(Date.now()));
    return host;
  }

  private replay(records: readonly GroupRecord[], dropped: { bytes: number; reason: string } | null): void {
    for (const record of records) this.coordinator.replay(record);
    if (dropped !== null) this.log('warn', `group store: dropped a damaged tail of ${dropped.bytes} bytes (${dropped.reason})`);
    const groups = this.coordinator.listGroups();
    this.log('info', `group store: ${records.length} records replayed, ${groups.length} groups`);
  }

  start(): void {
    this.ticker = setInterval(() => {
      if (this.reloading !== null) return;
      const records = this.coordinator.tick(Date.now());
      if (records.length > 0) this.persist(records).catch(() => undefined);
    }, groupTickIntervalMs);
    this.ticker.unref();
  }

  /** Durably appends records; on failure the in-memory state is ahead of disk, so rebuild it from disk. */
  private async persist(records: readonly GroupRecord[]): Promise<void> {
    if (records.length === 0) return;
    try {
      await this.store.append(records);
    } catch (error) {
      this.log('error', `group store write failed: ${(error as Error).message}; reloading groups from disk`);
      this.reloading ??= this.reload()
        .catch((reloadError: unknown) => this.log('error', `group store could not be reloaded: ${(reloadError as Error).message}; the next write failure tries again`))
        .finally(() => (this.reloading = null));
      throw new RillError('COORDINATOR_NOT_AVAILABLE', 'group state could not be persisted; retry shortly');
    }
    if (this.store.shouldCompact()) {
      const snapshot = this.coordinator.snapshot();
      this.store.compact(snapshot).catch((error: unknown) => this.log('warn', `group store compaction failed: ${(error as Error).message}`));
    }
  }

  private async reload(): Promise<void> {
    await this.store.close().catch(() => undefined);
    const { store, records, dropped } = await this.openStore();
    this.store = store;
    this.coordinator = this.newCoordinator();
    this.replay(records, dropped);
  }

  private available(): void {
    if (this.reloading !== null) throw new RillError('COORDINATOR_NOT_AVAILABLE', 'group state is being reloaded; retry shortly');
  }

  onTopicsChanged(): void {
    if (this.reloading !== null) return;
    this.persist(this.coordinator.onTopicsChanged(Date.now())).catch(() => undefined);
  }

  handleFindCoordinator(context: RequestContext, self: { nodeId: number; host: string; port: number }, access: Access): Reply {
    const { key } = decodeFindCoordinatorRequest(body(context));
    requireGroup(access, context.connection, key, 'describe');
    return msgpackReply(self);
  }

  /** Joining and staying: read on the group and on every subscribed topic. */
  async handleHeartbeat(context: RequestContext, access: Access): Promise<Reply> {
    this.available();
    const request = decodeHeartbeatRequest(body(context));
    requireGroup(access, context.connection, request.groupId, 'read');
    if (access.enforced && request.subscribedTopics !== null) {
      const denied = request.subscribedTopics.filter((topic) => !access.allows(context.connection, 'topic', topic, 'read'));
      if (denied.length > 0) throw new RillError('TOPIC_AUTHORIZATION_FAILED', `${context.connection.principal ?? 'this connection'} may not read topics ${denied.map((t) => `"${t}"`).join(', ')} it subscribes to`);
    }
    const response = this.coordinator.heartbeat({
      groupId: request.groupId,
      memberId: request.memberId,
      memberEpoch: request.memberEpoch,
      clientId: request.clientId,
      host: context.connection.socket.remoteAddress ?? '',
      sessionTimeoutMs: request.sessionTimeoutMs,
      rebalanceTimeoutMs: request.rebalanceTimeoutMs,
      subscribedTopics: request.subscribedTopics,
      ownedPartitions: request.ownedPartitions === null ? null : flatten(request.ownedPartitions),
    }, Date.now());
    await this.persist(response.records);
    return msgpackReply({
      errorCode: response.errorCode,
      errorMessage: response.errorMessage,
      memberId: response.memberId,
      memberEpoch: response.memberEpoch,
      heartbeatIntervalMs: response.heartbeatIntervalMs,
      assignment: groupByTopic(response.assignment),
    });
  }

  /** Read on the group; a topic the principal may not read answers TOPIC_AUTHORIZATION_FAILED and is not committed. */
  async handleOffsetCommit(context: RequestContext, access: Access): Promise<Reply> {
    this.available();
    const request = decodeOffsetCommitRequest(body(context));
    requireGroup(access, context.connection, request.groupId, 'read');
    const deniedTopics = request.topics.filter((t) => access.enforced && !access.allows(context.connection, 'topic', t.name, 'read'));
    const offsets = request.topics.filter((t) => !deniedTopics.includes(t))
      .flatMap((t) => t.partitions.map((p) => ({ topic: t.name, partition: p.partition, offset: p.offset, metadata: p.metadata })));
    const { results, records } = this.coordinator.commitOffsets({ groupId: request.groupId, memberId: request.memberId, memberEpoch: request.memberEpoch, offsets }, Date.now());
    await this.persist(records);
    const topics = new Map<string, { partition: number; errorCode: number }[]>();
    const refused = errorCodeOf('TOPIC_AUTHORIZATION_FAILED');
    for (const t of deniedTopics) topics.set(t.name, t.partitions.map((p) => ({ partition: p.partition, errorCode: refused })));
    for (const r of results) {
      let list = topics.get(r.topic);
      if (list === undefined) topics.set(r.topic, (list = []));
      list.push({ partition: r.partition, errorCode: r.errorCode });
    }
    return msgpackReply({ topics: [...topics].map(([name, partitions]) => ({ name, partitions })) });
  }

  /** Describe on the group; offsets of topics the principal may not describe are left out. */
  handleOffsetFetch(context: RequestContext, access: Access): Reply {
    this.available();
    const request = decodeOffsetFetchRequest(body(context));
    requireGroup(access, context.connection, request.groupId, 'describe');
    let offsets = this.coordinator.fetchOffsets(request.groupId, request.topics === null ? undefined : flatten(request.topics));
    // Listing the group's offsets leaves out hidden topics quietly; naming a topic is asking for it.
    if (access.enforced) {
      const listing = request.topics === null;
      offsets = offsets.filter((o) => (listing
        ? access.allowsQuietly(context.connection, 'topic', o.topic, 'describe')
        : access.allows(context.connection, 'topic', o.topic, 'describe')));
    }
    return msgpackReply({ offsets });
  }

  /** Every group to a principal that may describe the cluster, else the groups it may describe. */
  handleListGroups(context: RequestContext, access: Access): Reply {
    this.available();
    let groups = this.coordinator.listGroups();
    if (access.enforced && !access.allowsQuietly(context.connection, 'cluster', clusterResource, 'describe')) {
      groups = groups.filter((g) => access.allowsQuietly(context.connection, 'group', g.groupId, 'describe'));
    }
    return msgpackReply({ groups });
  }

  handleDescribeGroups(context: RequestContext, access: Access): Reply {
    this.available();
    const request = decodeDescribeGroupsRequest(body(context));
    return msgpackReply({
      groups: request.groupIds.map((groupId) => {
        if (!access.enforced) return this.describe(groupId);
        if (!access.allows(context.connection, 'group', groupId, 'describe')) return { groupId, errorCode: errorCodeOf('GROUP_AUTHORIZATION_FAILED') };
        // Offsets and lag of topics the principal may not describe are left out, as Metadata leaves out the topics.
        const described = this.describe(groupId);
        const offsets = described['offsets'] as { topic: string }[] | undefined;
        return offsets === undefined ? described : { ...described, offsets: offsets.filter((o) => access.allowsQuietly(context.connection, 'topic', o.topic, 'describe')) };
      }),
    });
  }

  private describe(groupId: string): Record<string, unknown> {
    try {
      return { errorCode: 0, ...this.view(groupId) };
    } catch (error) {
      if (error instanceof RillError) return { groupId, errorCode: error.errorCode };
      throw error;
    }
  }

  /** Every group as DescribeGroups shows it (metrics and the console read this at scrape time). */
  views(): GroupView[] {
    if (this.reloading !== null) return [];
    return this.coordinator.listGroups().map((listing) => this.view(listing.groupId));
  }

  /** Throws RillError GROUP_ID_NOT_FOUND. */
  private view(groupId: string): GroupView {
    const description = this.coordinator.describeGroup(groupId);
    const committed = new Map(description.offsets.map((o) => [`${o.topic}\u0000${o.partition}`, o.committedOffset]));
    // Every partition of every subscribed topic, with its end offset and lag.
    const topics = new Set(description.members.flatMap((m) => m.subscribedTopics));
    for (const o of description.offsets) topics.add(o.topic);
    const offsets = [...topics].sort().flatMap((topic) => (this.partitions.topicPartitions(topic) ?? []).map((partition) => {
      const committedOffset = committed.get(`${topic}\u0000${partition.index}`) ?? -1n;
      const endOffset = BigInt(partition.highWatermark);
      return {
        topic, partition: partition.index, committedOffset, endOffset,
        lag: committedOffset < 0n ? -1n : endOffset > committedOffset ? endOffset - committedOffset : 0n,
        owner: this.coordinator.ownerOf(groupId, topic, partition.index) ?? null,
      };
    }));
    const members = description.members.map((m) => ({
      memberId: m.memberId, clientId: m.clientId, host: m.host, memberEpoch: m.memberEpoch, state: m.state,
      sessionTimeoutMs: m.sessionTimeoutMs, subscribedTopics: m.subscribedTopics,
      assigned: groupByTopic(m.assigned), pendingRevocation: groupByTopic(m.pendingRevocation), pendingAssignment: groupByTopic(m.pendingAssignment),
    }));
    return {
      groupId, state: description.state, groupEpoch: description.groupEpoch, assignmentEpoch: description.assignmentEpoch,
      members, offsets, history: description.history,
    };
  }

  /** As committing offsets: read on the group and on the topic. */
  async handleResetOffsets(context: RequestContext, access: Access): Promise<Reply> {
    this.available();
    const request = decodeResetOffsetsRequest(body(context));
    requireGroup(access, context.connection, request.groupId, 'read');
    if (access.enforced && !access.allows(context.connection, 'topic', request.topic, 'read')) {
      throw new RillError('TOPIC_AUTHORIZATION_FAILED', `${context.connection.principal ?? 'this connection'} may not read topic "${request.topic}"`);
    }
    const partitions = this.partitions.topicPartitions(request.topic);
    if (partitions === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${request.topic}" does not exist`);
    const offsets = partitions.map((p) => {
      const spec = request.spec;
      let offset = spec.to === 'earliest' ? BigInt(p.log.logStartOffset) : spec.to === 'latest' ? BigInt(p.highWatermark) : spec.offset;
      // Clamp into the log so the group never starts outside it.
      if (offset < BigInt(p.log.logStartOffset)) offset = BigInt(p.log.logStartOffset);
      if (offset > BigInt(p.highWatermark)) offset = BigInt(p.highWatermark);
      return { topic: request.topic, partition: p.index, offset };
    });
    await this.persist(this.coordinator.resetOffsets(request.groupId, offsets, Date.now()));
    return msgpackReply({ partitions: offsets.map((o) => ({ partition: o.partition, offset: o.offset })) });
  }

  /**
   * DeleteGroups: each group is deleted only while it has no live members (NON_EMPTY_GROUP), and
   * only once its tombstone is fsynced in the group log; replay and compaction drop it and its
   * committed offsets. GROUP_ID_NOT_FOUND for a group the coordinator does not know.
   */
  async handleDeleteGroups(context: RequestContext, access: Access): Promise<Reply> {
    this.available();
    const request = decodeDeleteGroupsRequest(body(context));
    const groups = [];
    for (const groupId of request.groupIds) {
      try {
        requireGroup(access, context.connection, groupId, 'delete');
        await this.persist(this.coordinator.deleteGroup(groupId));
        groups.push({ groupId, errorCode: 0, errorMessage: '' });
      } catch (error) {
        if (!(error instanceof RillError)) throw error;
        groups.push({ groupId, errorCode: error.errorCode, errorMessage: error.message });
      }
    }
    return msgpackReply({ groups });
  }

  async close(): Promise<void> {
    if (this.ticker !== null) clearInterval(this.ticker);
    await this.store.close();
  }
}

/** Throws GROUP_AUTHORIZATION_FAILED unless the connection's principal may do `operation` on the group. */
function requireGroup(access: Access, connection: Connection, groupId: string, operation: Operation): void {
  if (access.enforced && !access.allows(connection, 'group', groupId, operation)) {
    throw new RillError('GROUP_AUTHORIZATION_FAILED', `${connection.principal ?? 'this connection'} may not ${operation} group "${groupId}"`);
  }
}
