/**
 * Topic administration in a cluster: any broker writes the change to etcd (one transaction,
 * compare-and-swap on the topic key), the controller places or removes partition states, and
 * every broker mirrors the result (replica-manager.ts). A request is answered once this broker
 * has seen its change applied locally, so a client that creates a topic can use it at once.
 *
 * Producer ids are handed out in blocks reserved in etcd (`producer-ids`, CAS), so ids are unique
 * across the cluster and a new leader recognises the producers of the old one.
 */
import { RillError } from '../lib/errors.js';
import type { Log } from '../lib/log.js';
import { producerIdBlockSize } from '../lib/limits.js';
import type { PartitionManager } from './partition-manager.js';
import { partitionCountProblem, topicNameProblem } from './topic-registry.js';
import type { TopicConfig } from '../wire/control.js';
import { alterTopicConfig, type ConfigEntries } from '../wire/topic-config.js';
import type { ClusterMetadata, MetadataView } from '../cluster/cluster-metadata.js';
import type { EtcdPort } from '../cluster/etcd-port.js';
import type { ClusterMembership } from '../cluster/membership.js';
import { decodeProducerIds, encodeRecord, type ClusterKeys, type TopicRecord } from '../cluster/records.js';
import { effectiveReplicationFactor, replicationFactorProblem } from '../wire/control.js';
import { parsePartitionKey, partitionKey } from '../lib/topic-partition.js';

/** How long a request waits to see its change applied here before it answers REQUEST_TIMED_OUT. */
const applyTimeoutMs = 15_000;

export class ClusterTopics {
  private ids = { next: 0, end: 0 };
  private spare: { next: number; end: number } | null = null;
  private reserving: Promise<void> | null = null;

  constructor(
    private readonly port: EtcdPort,
    private readonly keys: ClusterKeys,
    private readonly membership: ClusterMembership,
    private readonly metadata: ClusterMetadata,
    private readonly partitions: PartitionManager,
    private readonly log: Log,
  ) {}

  private liveCount(): number {
    const live = this.membership.brokers().length;
    if (live === 0) throw new RillError('LEADER_NOT_AVAILABLE', 'this broker is not registered in its cluster now (etcd unreachable?); try another broker');
    return live;
  }

  async create(name: string, partitionCount: number, requestedFactor: number, config: TopicConfig): Promise<void> {
    const nameProblem = topicNameProblem(name);
    if (nameProblem !== null) throw new RillError('INVALID_TOPIC_NAME', nameProblem);
    const countProblem = partitionCountProblem(partitionCount);
    if (countProblem !== null) throw new RillError('INVALID_PARTITIONS', countProblem);
    const live = this.liveCount();
    const problem = replicationFactorProblem(requestedFactor, live);
    if (problem !== null) throw new RillError('INVALID_REPLICATION_FACTOR', problem);
    const factor = effectiveReplicationFactor(requestedFactor, live);
    const record: TopicRecord = { name, partitions: partitionCount, replicationFactor: factor, config, createdAtMs: Date.now() };
    const key = this.keys.topic(name);
    const { succeeded } = await this.port.txn([{ key, target: 'create', revision: 0 }], [{ key, value: encodeRecord(record) }]);
    if (!succeeded) throw new RillError('TOPIC_ALREADY_EXISTS', `topic "${name}" already exists`);
    this.log('info', `topic ${name} created in the cluster: ${partitionCount} partitions, replication factor ${factor}`, { topic: name });
    await this.awaitView(`topic ${name} to be placed`, (view) => {
      const topic = view.topics.get(name);
      if (topic === undefined) return true; // deleted meanwhile: nothing to wait for
      for (let i = 0; i < topic.partitions; i++) if (!view.partitions.has(partitionKey(name, i))) return false;
      return this.partitions.registry.get(name)?.createdAtMs === topic.createdAtMs;
    });
  }

  async delete(name: string): Promise<void> {
    const topic = this.metadata.view.topics.get(name);
    if (topic === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${name}" does not exist`);
    const key = this.keys.topic(name);
    const { succeeded } = await this.port.txn([{ key, target: 'mod', revision: topic.version }], [{ key, value: null }]);
    if (!succeeded) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${name}" changed while it was being deleted; try again`);
    this.log('info', `topic ${name} deleted in the cluster`, { topic: name });
    await this.awaitView(`topic ${name} to go`, () => this.partitions.registry.get(name) === undefined);
  }

  async addPartitions(name: string, total: number): Promise<void> {
    await this.changeTopic(name, (topic) => {
      const problem = partitionCountProblem(total);
      if (problem !== null) throw new RillError('INVALID_PARTITIONS', problem);
      if (total <= topic.partitions) throw new RillError('INVALID_PARTITIONS', `topic "${name}" has ${topic.partitions} partitions; the new count must be greater (partitions are never removed)`);
      return { ...topic, partitions: total };
    });
    await this.awaitView(`partitions of ${name}`, (view) => {
      for (let i = 0; i < total; i++) if (!view.partitions.has(partitionKey(name, i))) return view.topics.get(name) === undefined;
      return (this.partitions.registry.get(name)?.partitions ?? 0) >= total;
    });
  }

  async alterConfig(name: string, set: ConfigEntries, reset: readonly string[]): Promise<TopicConfig> {
    const changed = await this.changeTopic(name, (topic) => ({ ...topic, config: alterTopicConfig(topic.config, set, reset) }));
    await this.awaitView(`config of ${name}`, () => JSON.stringify(this.partitions.registry.get(name)?.config) === JSON.stringify(changed.config));
    return changed.config;
  }

  private async changeTopic(name: string, change: (topic: TopicRecord) => TopicRecord): Promise<TopicRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const topic = this.metadata.view.topics.get(name);
      if (topic === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${name}" does not exist`);
      const { version: _version, ...record } = topic;
      const next = change(record);
      const key = this.keys.topic(name);
      const { succeeded } = await this.port.txn([{ key, target: 'mod', revision: topic.version }], [{ key, value: encodeRecord(next) }]);
      if (succeeded) return next;
      await this.metadata.refresh();
    }
    throw new RillError('REQUEST_TIMED_OUT', `topic "${name}" kept changing while this change was being written; try again`);
  }

  /** Resolves once `done(view)` holds (checked after every view change), else REQUEST_TIMED_OUT. */
  private async awaitView(what: string, done: (view: MetadataView) => boolean): Promise<void> {
    await this.metadata.refresh();
    if (done(this.metadata.view)) return;
    await new Promise<void>((resolve, reject) => {
      const onChange = (view: MetadataView): void => {
        // After the replica manager (registered first) mirrored the view locally.
        setImmediate(() => {
          if (!done(view)) return;
          clearTimeout(timer);
          this.metadata.off('changed', onChange);
          resolve();
        });
      };
      const timer = setTimeout(() => {
        this.metadata.off('changed', onChange);
        reject(new RillError('REQUEST_TIMED_OUT', `the change is in etcd, but this broker did not see ${what} within ${applyTimeoutMs} ms (is a controller elected?); it completes when it can`));
      }, applyTimeoutMs);
      this.metadata.on('changed', onChange);
    });
  }

  /**
   * Rebalance or decommission (AlterPlacement): written as a request the controller takes up (it
   * alone changes placement); answered with the moves it started. The moves then run on their own:
   * new replicas catch up, join the ISR, and the controller switches each partition to its new
   * replicas (docs/replication.md, "Moving replicas").
   */
  async requestPlacement(action: 'rebalance' | 'decommission', brokerId: number): Promise<{ topic: string; partition: number; from: number[]; to: number[] }[]> {
    const view = this.metadata.view;
    const live = this.membership.brokers();
    if (live.length === 0) throw new RillError('LEADER_NOT_AVAILABLE', 'this broker is not registered in its cluster now (etcd unreachable?); try another broker');
    const excluded = new Set(view.decommissioned.brokers);
    if (action === 'decommission') {
      // A live broker, or a dead one that still holds replicas (decommissioning it re-creates them).
      const holdsReplicas = [...view.partitions.values()].some((state) => state.replicas.includes(brokerId));
      if (!holdsReplicas && !this.membership.knownBrokers().some((b) => b.nodeId === brokerId)) throw new RillError('INVALID_ARGUMENT', `broker ${brokerId} is not a broker of this cluster`);
      excluded.add(brokerId);
    }
    const left = live.filter((b) => !excluded.has(b.nodeId)).length;
    const needed = Math.max(0, ...[...view.topics.values()].map((t) => t.replicationFactor));
    if (left < needed) throw new RillError('INVALID_REPLICATION_FACTOR', `${left} live broker(s) would be left for replicas, and a topic has replication factor ${needed}`);
    const key = this.keys.placementRequest;
    const { succeeded } = await this.port.txn([{ key, target: 'create', revision: 0 }], [{ key, value: encodeRecord({ action, brokerId, requestedAtMs: Date.now() }) }]);
    if (!succeeded) throw new RillError('COORDINATOR_NOT_AVAILABLE', 'another rebalance or decommission request is waiting for the controller; try again');
    await this.awaitView('the controller to take up the request', (v) => v.placementRequest === null);
    const moves: { topic: string; partition: number; from: number[]; to: number[] }[] = [];
    for (const [key2, state] of this.metadata.view.partitions) {
      if (state.targetReplicas === undefined) continue;
      const { topic, partition } = parsePartitionKey(key2);
      const factor = this.metadata.view.topics.get(topic)?.replicationFactor ?? state.targetReplicas.length;
      moves.push({ topic, partition, from: state.replicas.slice(0, factor), to: [...state.targetReplicas] });
    }
    return moves;
  }

  /**
   * A producer id unique in the cluster, from a block reserved in etcd. A spare block is reserved
   * ahead (at start, and whenever the spare is taken), so producers keep getting ids while etcd is
   * briefly away; with no block left, COORDINATOR_NOT_AVAILABLE (retriable).
   */
  async allocateProducerId(): Promise<number> {
    if (this.ids.next >= this.ids.end) {
      if (this.spare !== null) {
        this.ids = this.spare;
        this.spare = null;
      } else {
        try {
          this.ids = await this.reserveOnce();
        } catch (error) {
          throw new RillError('COORDINATOR_NOT_AVAILABLE', `no producer ids left here and none could be reserved in etcd (${(error as Error).message}); retry`);
        }
      }
      this.reserveSpare();
    }
    return this.ids.next++;
  }

  /** Reserves a spare block in the background (at start, and after the spare was used). */
  reserveSpare(): void {
    if (this.spare !== null || this.reserving !== null) return;
    this.reserving = this.reserveOnce()
      .then((block) => {
        if (this.ids.next >= this.ids.end) this.ids = block;
        else this.spare = block;
      })
      .catch((error: unknown) => this.log('warn', `could not reserve producer ids in etcd ahead of need (${(error as Error).message}); retried when ids are needed`, {}))
      .finally(() => {
        this.reserving = null;
      });
  }

  /** One block of ids, by compare-and-swap on the cluster's counter. Rejects when etcd does. */
  private async reserveOnce(): Promise<{ next: number; end: number }> {
    const key = this.keys.producerIds;
    for (let attempt = 0; attempt < 10; attempt++) {
      const { kvs } = await this.port.list([key]);
      const current = (kvs[0] ?? []).find((kv) => kv.key === key);
      const next = current === undefined ? 0 : decodeProducerIds(key, current.value).next;
      const end = next + producerIdBlockSize;
      const compare = current === undefined ? { key, target: 'create' as const, revision: 0 } : { key, target: 'mod' as const, revision: current.modRevision };
      const { succeeded } = await this.port.txn([compare], [{ key, value: encodeRecord({ next: end }) }]);
      if (succeeded) return { next, end };
    }
    throw new Error('the producer-id counter kept changing (10 attempts)');
  }
}
