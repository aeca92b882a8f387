/**
 * Admin: create, delete, list and describe topics; list offsets; alter topic config, add
 * partitions, delete records and groups; describe the broker's configuration. Errors are
 * RillErrors carrying the broker's code.
 */
import { RillError } from '../lib/errors.js';
import { ApiKey, OffsetSpec } from '../wire/apis.js';
import { decodeListOffsetsResponse, decodeTopicResults, type TopicConfig } from '../wire/control.js';
import { Cluster, type ClientOptions } from './cluster.js';
import type { BrokerConnection } from './connection.js';
import { decodeCreateAclsResponse, decodeDeleteAclsResponse, decodeDescribeAclsResponse, type Acl, type AclFilter } from '../wire/acls.js';

export type { Acl, AclFilter };
import {
  decodeAlterConfigsResponse, decodeDeleteGroupsResponse, decodeDeleteRecordsResponse, decodeDescribeConfigsResponse, decodeAlterPlacementResponse, type AlterPlacementResponse } from '../wire/admin-ops.js';
import { decodeAlterUsersResponse, decodeDescribeUsersResponse, type UserMechanism } from '../wire/users.js';
import { scramCredential, type ScramMechanism } from '../wire/scram.js';
import {
  decodeDescribeGroupsResponse, decodeListGroupsResponse, decodeOffsetFetchResponse, decodeResetOffsetsResponse,
  type FetchedOffsetBody, type GroupDescriptionBody, type GroupListingBody, decodeFindCoordinatorResponse,
} from '../wire/groups.js';

export interface NewTopic {
  topic: string;
  partitions: number;
  /**
   * Copies of each partition, 1..replicationFactorMax (16); at most the live brokers, else
   * INVALID_REPLICATION_FACTOR. Default (or -1): the broker's, min(3, live brokers) in a cluster,
   * 1 on a single broker.
   */
  replicationFactor?: number;
  /** Rill keys (retentionMs) or Kafka's names (retention.ms); integers or decimal strings. */
  config?: Partial<TopicConfig> | Record<string, string | number>;
}

/** One line of DescribeConfigs for the broker; secret values are null. */
export interface BrokerConfigEntry {
  name: string;
  value: unknown;
  source: string;
  secret: boolean;
}

/** One partition of a topic: who holds it, and its offsets. */
export interface PartitionDescription {
  partition: number;
  /** nodeId of the leader; -1: none (offline, or an election is under way). */
  leader: number;
  /** The leader's epoch, +1 at every leader change; -1: not known. */
  leaderEpoch: number;
  /** Brokers holding a copy, preferred leader first. */
  replicas: number[];
  /** In-sync replicas; fewer than replicas: under-replicated. */
  isr: number[];
  /** -1n when the partition's leader could not say (no leader, or it did not answer). */
  earliestOffset: bigint;
  latestOffset: bigint;
}

export interface TopicDescription {
  name: string;
  /** Replicas per partition; 0: not known yet. */
  replicationFactor: number;
  partitions: PartitionDescription[];
  config: TopicConfig | null;
}

/** A user as the broker describes it: its SCRAM mechanisms and iteration counts, never a salt or key. */
export interface UserDescription {
  name: string;
  /** Mechanism names as SaslHandshake spells them (SCRAM-SHA-256, SCRAM-SHA-512). */
  mechanisms: UserMechanism[];
}

export interface UpsertUserOptions {
  /** PBKDF2 iterations, 4096..1000000; default 8192. More makes each login (and each guess) cost more. */
  iterations?: number;
  /** What the user may log in with; default both. Mechanisms left out are removed from the user. */
  mechanisms?: ('scram-sha-256' | 'scram-sha-512')[];
}

const scramMechanismOf: Record<string, ScramMechanism> = { 'scram-sha-256': 'SCRAM-SHA-256', 'scram-sha-512': 'SCRAM-SHA-512' };

export type OffsetQuery = 'earliest' | 'latest' | { timestampMs: number };

/** The brokers as the answering broker knows them (from Metadata). */
export interface ClusterDescription {
  /** The cluster's name; null: a single broker, in no cluster. */
  cluster: string | null;
  /** Who answered (the first bootstrap broker that did). */
  answeredBy: string;
  /** null: none right now (an election is under way, or the answering broker is not registered). */
  controller: { nodeId: number; epoch: number } | null;
  /** Live brokers by node id; alive is false only for the answering broker while it is not registered. */
  brokers: { nodeId: number; host: string; port: number; rack: string | null; alive: boolean }[];
}

/** The internal topic whose leader coordinates a cluster's groups (broker/replicated-group-store.ts). */
const groupsTopicName = '__groups';

export class Admin {
  private readonly cluster: Cluster;
  private readonly ownsCluster: boolean;

  constructor(options: ClientOptions = {}, cluster?: Cluster) {
    this.cluster = cluster ?? new Cluster(options);
    this.ownsCluster = cluster === undefined;
  }

  /** Creates topics; rejects with the first failure (TOPIC_ALREADY_EXISTS, INVALID_TOPIC_NAME, ...). */
  async createTopics(topics: NewTopic[]): Promise<void> {
    const request = {
      topics: topics.map((t) => {
        // Absent is the broker's default; a broker that predates replication then reads the same body.
        const replication = t.replicationFactor === undefined ? {} : { replicationFactor: t.replicationFactor };
        return { name: t.topic, partitions: t.partitions, ...replication, config: t.config ?? {} };
      }),
    };
    const results = await this.cluster.anyConnection().call(ApiKey.CreateTopics, request, decodeTopicResults);
    throwFirst(results);
  }

  async deleteTopics(names: string[]): Promise<void> {
    const results = await this.cluster.anyConnection().call(ApiKey.DeleteTopics, { topics: names }, decodeTopicResults);
    for (const name of names) this.cluster.forget(name);
    throwFirst(results);
  }

  async listTopics(): Promise<string[]> {
    const response = await this.cluster.metadata(null);
    return response.topics.filter((t) => t.errorCode === 0).map((t) => t.name).sort();
  }

  /**
   * A topic's partitions (leader, replicas, ISR, offsets) and config. A partition without a
   * leader, or whose leader does not answer, shows offsets -1n rather than failing the whole call.
   */
  async describeTopic(name: string): Promise<TopicDescription> {
    const topic = await this.cluster.topic(name, true);
    const led = topic.partitions.filter((p) => p.leader >= 0).map((p) => p.partition);
    const [earliest, latest] = await Promise.all([OffsetSpec.earliest, OffsetSpec.latest].map((spec) => this.offsetsIfAnswered(name, led, spec)));
    return {
      name,
      replicationFactor: topic.replicationFactor,
      partitions: topic.partitions.map(({ partition, leader, leaderEpoch, replicas, isr }) => ({
        partition, leader, leaderEpoch, replicas, isr, earliestOffset: earliest[partition] ?? -1n, latestOffset: latest[partition] ?? -1n,
      })),
      config: topic.config,
    };
  }

  /** ListOffsets for describeTopic: a partition in error, or whose leader did not answer, is left out. */
  private async offsetsIfAnswered(name: string, partitions: number[], timestamp: number): Promise<bigint[]> {
    const offsets: bigint[] = [];
    if (partitions.length === 0) return offsets;
    const responses = await this.cluster.perLeader(name, partitions, (connection, led) => {
      const request = { topics: [{ name, partitions: led.map((partition) => ({ partition, timestamp })) }] };
      return connection.call(ApiKey.ListOffsets, request, decodeListOffsetsResponse).catch((error: unknown) => {
        this.cluster.noteError(name, error);
        return [];
      });
    });
    for (const p of responses.flatMap((response) => response[0]?.partitions ?? [])) {
      if (p.errorCode === 0) offsets[p.partition] = p.offset;
      else this.cluster.noteError(name, RillError.fromCode(p.errorCode, `${name}/${p.partition}`));
    }
    return offsets;
  }

  /** Offsets of every partition of a topic, indexed by partition number (-1n when no record matches a timestamp). */
  async listOffsets(name: string, query: OffsetQuery): Promise<bigint[]> {
    const topic = await this.cluster.topic(name);
    const timestamp = query === 'earliest' ? OffsetSpec.earliest : query === 'latest' ? OffsetSpec.latest : query.timestampMs;
    const responses = await this.cluster.perLeader(name, topic.partitions.map((p) => p.partition), (connection, led) => {
      const request = { topics: [{ name, partitions: led.map((partition) => ({ partition, timestamp })) }] };
      return connection.call(ApiKey.ListOffsets, request, decodeListOffsetsResponse);
    });
    const offsets: bigint[] = [];
    for (const p of responses.flatMap((response) => response[0]?.partitions ?? [])) {
      if (p.errorCode !== 0) throw this.cluster.noteError(name, RillError.fromCode(p.errorCode, `${name}/${p.partition}`));
      offsets[p.partition] = p.offset;
    }
    return offsets;
  }

  async listGroups(): Promise<GroupListingBody[]> {
    return this.groupCall(null, ApiKey.ListGroups, {}, decodeListGroupsResponse);
  }

  /**
   * A group request sent to the group's coordinator: the broker itself alone; in a cluster the
   * leader of `__groups`, found with FindCoordinator (or, to list groups, from Metadata). Retried
   * while the coordinator moves (COORDINATOR_NOT_AVAILABLE), for about 10 s.
   */
  private async groupCall<T>(groupId: string | null, apiKey: number, request: unknown, decode: (value: unknown) => T): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        const first = this.cluster.anyConnection();
        let connection: Pick<BrokerConnection, 'call'> = first;
        if (groupId !== null) {
          const found = await first.call(ApiKey.FindCoordinator, { key: groupId }, decodeFindCoordinatorResponse);
          const unroutable = found.host === '' || found.host === '0.0.0.0' || found.host === '::';
          connection = this.cluster.connectionTo({ host: unroutable ? first.address.host : found.host, port: found.port });
        } else {
          const leader = (await this.cluster.topic(groupsTopicName).catch(() => null))?.partitions[0]?.leader ?? -1;
          if (leader >= 0) connection = this.cluster.connectionForNode(leader);
        }
        return await connection.call(apiKey, request, decode);
      } catch (error) {
        if (!(error instanceof RillError) || error.code !== 'COORDINATOR_NOT_AVAILABLE' || attempt >= 20) throw error;
        if (groupId === null) this.cluster.forget(groupsTopicName);
        await new Promise((resolve) => setTimeout(resolve, Math.min(500, 100 * attempt)));
      }
    }
  }

  /** Members, assignment, committed offsets, end offsets and lag, and recent rebalances. */
  async describeGroup(groupId: string): Promise<GroupDescriptionBody> {
    const [group] = await this.groupCall(groupId, ApiKey.DescribeGroups, { groupIds: [groupId] }, decodeDescribeGroupsResponse);
    if (group === undefined) throw new RillError('MALFORMED_RESPONSE', 'DescribeGroups answered no group');
    if (group.errorCode !== 0) throw RillError.fromCode(group.errorCode, `group "${groupId}"`);
    return group;
  }

  /** Committed offsets of a group (-1n where none). */
  async fetchGroupOffsets(groupId: string, topic?: string): Promise<FetchedOffsetBody[]> {
    let topics = null;
    if (topic !== undefined) {
      const metadata = await this.cluster.topic(topic);
      topics = [{ topic, partitions: metadata.partitions.map((p) => p.partition) }];
    }
    return this.groupCall(groupId, ApiKey.OffsetFetch, { groupId, topics }, decodeOffsetFetchResponse);
  }

  /** Moves a group's committed offsets for a topic; refused (NON_EMPTY_GROUP) while it has live members. */
  async resetGroupOffsets(groupId: string, topic: string, to: 'earliest' | 'latest' | bigint): Promise<{ partition: number; offset: bigint }[]> {
    const request = typeof to === 'bigint' ? { groupId, topic, to: 'offset', offset: to } : { groupId, topic, to };
    return this.groupCall(groupId, ApiKey.ResetGroupOffsets, request, decodeResetOffsetsResponse);
  }

  /**
   * Sets config keys of a topic (Rill or Kafka names; integers or decimal strings) and resets
   * others to their defaults; applied to the open partitions at once and persisted. Returns the
   * topic's new effective config. INVALID_CONFIG names the closest valid key for a typo.
   */
  async alterTopicConfig(topic: string, set: Record<string, string | number>, reset: string[] = []): Promise<TopicConfig> {
    const request = { resources: [{ type: 'topic', name: topic, set, reset }] };
    const [result] = await this.cluster.anyConnection().call(ApiKey.IncrementalAlterConfigs, request, decodeAlterConfigsResponse);
    if (result === undefined) throw new RillError('MALFORMED_RESPONSE', 'IncrementalAlterConfigs answered no resource');
    if (result.errorCode !== 0) throw RillError.fromCode(result.errorCode, stripCode(result.errorMessage) || `topic "${topic}"`);
    if (result.config === null) throw new RillError('MALFORMED_RESPONSE', 'IncrementalAlterConfigs answered no config');
    return result.config;
  }

  /**
   * Grows a topic to `totalCount` partitions (INVALID_PARTITIONS unless greater than now).
   * Keyed records map by the new count from then on; clients see the new partitions within
   * their metadataMaxAgeMs.
   */
  async createPartitions(topic: string, totalCount: number): Promise<void> {
    const results = await this.cluster.anyConnection().call(ApiKey.CreatePartitions, { topics: [{ name: topic, count: totalCount }] }, decodeTopicResults);
    this.cluster.forget(topic);
    throwFirst(results);
  }

  /** Deletes a group with its committed offsets; NON_EMPTY_GROUP while it has live members, GROUP_ID_NOT_FOUND if unknown. */
  async deleteGroup(groupId: string): Promise<void> {
    const [result] = await this.groupCall(groupId, ApiKey.DeleteGroups, { groupIds: [groupId] }, decodeDeleteGroupsResponse);
    if (result === undefined) throw new RillError('MALFORMED_RESPONSE', 'DeleteGroups answered no group');
    if (result.errorCode !== 0) throw RillError.fromCode(result.errorCode, stripCode(result.errorMessage) || `group "${groupId}"`);
  }

  /**
   * Deletes the records of one partition below `beforeOffset` (-1n: below the high watermark);
   * returns the partition's new log start offset. OFFSET_OUT_OF_RANGE above the high watermark.
   */
  async deleteRecords(topic: string, partition: number, beforeOffset: bigint): Promise<{ lowWatermark: bigint }> {
    const request = { topics: [{ name: topic, partitions: [{ partition, beforeOffset }] }] };
    const [response] = await this.cluster.perLeader(topic, [partition], (connection) => connection.call(ApiKey.DeleteRecords, request, decodeDeleteRecordsResponse));
    const result = response?.[0]?.partitions[0];
    if (result === undefined) throw new RillError('MALFORMED_RESPONSE', 'DeleteRecords answered no partition');
    if (result.errorCode !== 0) throw this.cluster.noteError(topic, RillError.fromCode(result.errorCode, stripCode(result.errorMessage) || `${topic}/${partition}`));
    return { lowWatermark: result.lowWatermark };
  }

  /**
   * Users and their SCRAM mechanisms (never a salt or key): every user, or the ones named
   * (USER_NOT_FOUND for one the broker does not know). Needs describe on the cluster.
   */
  async listUsers(names?: string[]): Promise<UserDescription[]> {
    const users = await this.cluster.anyConnection().call(ApiKey.DescribeUserScramCredentials, { users: names ?? null }, decodeDescribeUsersResponse);
    const failed = users.find((u) => u.errorCode !== 0);
    if (failed !== undefined) throw RillError.fromCode(failed.errorCode, stripCode(failed.errorMessage) || `user "${failed.name}"`);
    return users.map(({ name, credentials }) => ({ name, mechanisms: credentials }));
  }

  /**
   * Adds a user or replaces its password, on the running broker: the next login uses the new
   * password (connections already open stay open). The salted, iterated SCRAM credentials are
   * derived here; the password itself is never sent. Needs alter on the cluster. Send it over TLS:
   * what travels is what the broker stores, enough to try passwords against offline.
   */
  async upsertUser(name: string, password: string, options: UpsertUserOptions = {}): Promise<void> {
    if (typeof password !== 'string' || password.length === 0) throw new RillError('INVALID_ARGUMENT', 'the password must be a non-empty string');
    const mechanisms = (options.mechanisms ?? ['scram-sha-256', 'scram-sha-512']).map((option) => {
      const mechanism = scramMechanismOf[option];
      if (mechanism === undefined) throw new RillError('INVALID_ARGUMENT', `mechanisms must be scram-sha-256 and/or scram-sha-512, got ${JSON.stringify(option)}`);
      return mechanism;
    });
    const credentials = mechanisms.map((mechanism) => {
      try {
        return scramCredential(mechanism, password, options.iterations);
      } catch (error) {
        throw new RillError('INVALID_ARGUMENT', (error as Error).message);
      }
    });
    const upsertion = { name, credentials: credentials.map(({ mechanism, salt, iterations, storedKey, serverKey }) => ({ mechanism, salt, iterations, storedKey, serverKey })) };
    await this.alterUser(name, { upsertions: [upsertion] });
  }

  /** Removes a user: it can no longer log in (connections it has open stay open). USER_NOT_FOUND if unknown. */
  async removeUser(name: string): Promise<void> {
    await this.alterUser(name, { deletions: [name] });
  }

  private async alterUser(name: string, request: unknown): Promise<void> {
    const [result] = await this.cluster.anyConnection().call(ApiKey.AlterUserScramCredentials, request, decodeAlterUsersResponse);
    if (result === undefined) throw new RillError('MALFORMED_RESPONSE', 'AlterUserScramCredentials answered no user');
    if (result.errorCode !== 0) throw RillError.fromCode(result.errorCode, stripCode(result.errorMessage) || `user "${name}"`);
  }

  /**
   * Cluster only: asks the controller to move replicas. 'decommission' moves every replica off
   * `brokerId` (it gets none from then on); 'rebalance' spreads replicas over the live brokers
   * (a new broker takes its share). Resolves with the moves started; they finish on their own
   * (new replicas catch up and join the ISR, then the old ones leave): watch `describeTopic`.
   */
  async alterPlacement(action: 'rebalance' | 'decommission', brokerId = -1): Promise<AlterPlacementResponse['moves']> {
    const response = await this.cluster.anyConnection().call(ApiKey.AlterPlacement, { action, brokerId }, decodeAlterPlacementResponse, { timeoutMs: 30_000 });
    for (const move of response.moves) this.cluster.forget(move.topic);
    return response.moves;
  }

  /** The brokers of the cluster and its controller, as a broker of the bootstrap list sees them. */
  async describeCluster(): Promise<ClusterDescription> {
    const response = await this.cluster.metadata([]);
    return {
      cluster: response.cluster,
      answeredBy: this.cluster.currentBootstrap,
      controller: response.controllerId < 0 ? null : { nodeId: response.controllerId, epoch: response.controllerEpoch },
      brokers: response.brokers.map(({ nodeId, host, port, rack, alive }) => ({ nodeId, host, port, rack, alive })).sort((a, b) => a.nodeId - b.nodeId),
    };
  }

  /** The broker's effective configuration, with where each value came from; secret values are null. */
  async describeBrokerConfig(): Promise<BrokerConfigEntry[]> {
    const [result] = await this.cluster.anyConnection().call(ApiKey.DescribeConfigs, { resources: [{ type: 'broker', name: '' }] }, decodeDescribeConfigsResponse);
    if (result === undefined) throw new RillError('MALFORMED_RESPONSE', 'DescribeConfigs answered no resource');
    if (result.errorCode !== 0) throw RillError.fromCode(result.errorCode, stripCode(result.errorMessage) || 'broker config');
    return result.entries;
  }

  /**
   * The ACLs the broker enforces that match the filter (absent fields match anything). Needs
   * describe on the cluster; SECURITY_DISABLED on a broker that does not require authentication.
   */
  async describeAcls(filter: AclFilter = {}): Promise<Acl[]> {
    return this.cluster.anyConnection().call(ApiKey.DescribeAcls, { filter }, decodeDescribeAclsResponse);
  }

  /** Adds ACLs (an ACL already held is kept once); rejects with the first invalid one. Needs alter on the cluster. */
  async createAcls(acls: Acl[]): Promise<void> {
    const results = await this.cluster.anyConnection().call(ApiKey.CreateAcls, { acls }, decodeCreateAclsResponse);
    const failed = results.findIndex((r) => r.errorCode !== 0);
    if (failed >= 0) throw RillError.fromCode(results[failed]!.errorCode, `${stripCode(results[failed]!.errorMessage)} (ACL ${failed + 1} of ${acls.length}; the valid ones were added)`);
  }

  /** Removes every ACL matching any filter; returns them. Needs alter on the cluster. */
  async deleteAcls(filters: AclFilter[]): Promise<Acl[]> {
    const results = await this.cluster.anyConnection().call(ApiKey.DeleteAcls, { filters }, decodeDeleteAclsResponse);
    const failed = results.find((r) => r.errorCode !== 0);
    if (failed !== undefined) throw RillError.fromCode(failed.errorCode, stripCode(failed.errorMessage));
    // An ACL matched by two filters is listed under both: report it once.
    const removed = new Map<string, Acl>();
    for (const acl of results.flatMap((r) => r.removed)) {
      removed.set([acl.principal, acl.resourceType, acl.name, acl.patternType, acl.operation, acl.permission].join('\u0000'), acl);
    }
    return [...removed.values()];
  }

  close(): void {
    if (this.ownsCluster) this.cluster.close();
  }
}

function throwFirst(results: { name: string; errorCode: number; errorMessage: string }[]): void {
  const failed = results.find((r) => r.errorCode !== 0);
  if (failed !== undefined) throw RillError.fromCode(failed.errorCode, stripCode(failed.errorMessage) || failed.name);
}

/** The broker's messages start with the code name, which RillError adds again. */
function stripCode(message: string): string {
  return message.replace(/^[A-Z_]+: /, '');
}
