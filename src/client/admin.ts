/** Admin: create, delete, list and describe topics; list offsets. */
import { RillError } from '../lib/errors.js';
import { ApiKey, OffsetSpec } from '../wire/apis.js';
import { decodeListOffsetsResponse, decodeTopicResults, type TopicConfig } from '../wire/control.js';
import { Cluster, type ClientOptions } from './cluster.js';
import {
  decodeDescribeGroupsResponse, decodeListGroupsResponse, decodeOffsetFetchResponse, decodeResetOffsetsResponse,
  type FetchedOffsetBody, type GroupDescriptionBody, type GroupListingBody,
} from '../wire/groups.js';

export interface NewTopic {
  topic: string;
  partitions: number;
  config?: Partial<TopicConfig>;
}

export interface TopicDescription {
  name: string;
  partitions: { partition: number; leader: number; earliestOffset: bigint; latestOffset: bigint }[];
  config: TopicConfig | null;
}

export type OffsetQuery = 'earliest' | 'latest' | { timestampMs: number };

export class Admin {
  private readonly cluster: Cluster;
  private readonly ownsCluster: boolean;

  constructor(options: ClientOptions = {}, cluster?: Cluster) {
    this.cluster = cluster ?? new Cluster(options);
    this.ownsCluster = cluster === undefined;
  }

  /** Creates topics; rejects with the first failure (TOPIC_ALREADY_EXISTS, INVALID_TOPIC_NAME, ...). */
  async createTopics(topics: NewTopic[]): Promise<void> {
    const request = { topics: topics.map((t) => ({ name: t.topic, partitions: t.partitions, config: t.config ?? {} })) };
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

  async describeTopic(name: string): Promise<TopicDescription> {
    const topic = await this.cluster.topic(name, true);
    const [earliest, latest] = await Promise.all([this.listOffsets(name, 'earliest'), this.listOffsets(name, 'latest')]);
    return {
      name,
      config: topic.config,
      partitions: topic.partitions.map((p) => ({ partition: p.partition, leader: p.leader, earliestOffset: earliest[p.partition] ?? -1n, latestOffset: latest[p.partition] ?? -1n })),
    };
  }

  /** Offsets of every partition of a topic, indexed by partition number (-1n when no record matches a timestamp). */
  async listOffsets(name: string, query: OffsetQuery): Promise<bigint[]> {
    const topic = await this.cluster.topic(name);
    const timestamp = query === 'earliest' ? OffsetSpec.earliest : query === 'latest' ? OffsetSpec.latest : query.timestampMs;
    const request = { topics: [{ name, partitions: topic.partitions.map((p) => ({ partition: p.partition, timestamp })) }] };
    const response = await this.cluster.anyConnection().call(ApiKey.ListOffsets, request, decodeListOffsetsResponse);
    const offsets: bigint[] = [];
    for (const p of response[0]?.partitions ?? []) {
      if (p.errorCode !== 0) throw RillError.fromCode(p.errorCode, `${name}/${p.partition}`);
      offsets[p.partition] = p.offset;
    }
    return offsets;
  }

  async listGroups(): Promise<GroupListingBody[]> {
    return this.cluster.anyConnection().call(ApiKey.ListGroups, {}, decodeListGroupsResponse);
  }

  /** Members, assignment, committed offsets, end offsets and lag, and recent rebalances. */
  async describeGroup(groupId: string): Promise<GroupDescriptionBody> {
    const [group] = await this.cluster.anyConnection().call(ApiKey.DescribeGroups, { groupIds: [groupId] }, decodeDescribeGroupsResponse);
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
    return this.cluster.anyConnection().call(ApiKey.OffsetFetch, { groupId, topics }, decodeOffsetFetchResponse);
  }

  /** Moves a group's committed offsets for a topic; refused (NON_EMPTY_GROUP) while it has live members. */
  async resetGroupOffsets(groupId: string, topic: string, to: 'earliest' | 'latest' | bigint): Promise<{ partition: number; offset: bigint }[]> {
    const request = typeof to === 'bigint' ? { groupId, topic, to: 'offset', offset: to } : { groupId, topic, to };
    return this.cluster.anyConnection().call(ApiKey.ResetGroupOffsets, request, decodeResetOffsetsResponse);
  }

  close(): void {
    if (this.ownsCluster) this.cluster.close();
  }
}

function throwFirst(results: { name: string; errorCode: number; errorMessage: string }[]): void {
  const failed = results.find((r) => r.errorCode !== 0);
  if (failed !== undefined) throw RillError.fromCode(failed.errorCode, failed.errorMessage.replace(/^[A-Z_]+: /, '') || failed.name);
}
