/**
 * The cluster's topics and partition states as last read from etcd: every broker keeps this
 * view; the controller decides from it, the replica manager acts on it, Metadata answers from it.
 *
 * Reading: a watch on the topic and partition prefixes marks the view dirty; one read of both
 * prefixes (one revision, so a topic and its partitions are seen together) replaces the view.
 * Reads never overlap; a change during a read causes one more. A failed read is retried every
 * retryMs until etcd answers (meanwhile the last view stays: brokers keep serving what they
 * lead while etcd is away). Full re-reads keep this simple and always consistent; their cost is
 * one range over the cluster's partition keys per change (each key is ~100 bytes).
 *
 * Every value is untrusted (records.ts): a bad key is logged once per revision and left out,
 * as if absent.
 */
import { EventEmitter } from 'node:events';
import type { Log } from '../lib/log.js';
import { partitionKey, type PartitionKey } from '../lib/topic-partition.js';
import type { PartitionState } from './controller-logic.js';
import type { EtcdPort } from './etcd-port.js';
import {
  ClusterStateError, InvalidRecordLog, decodeDecommissioned, decodePartitionState, decodePlacementRequest, decodeTopicRecord, partitionOfKey, type ClusterKeys, type PlacementRequest, type TopicRecord,
} from './records.js';

export interface TopicView extends TopicRecord {
  /** The topic key's mod revision (a change compares it). */
  version: number;
}

export interface MetadataView {
  /** The etcd revision the view was read at; 0 before the first read. */
  revision: number;
  topics: ReadonlyMap<string, TopicView>;
  partitions: ReadonlyMap<PartitionKey, PartitionState>;
  /** An operator's rebalance or decommission the controller has not taken up yet (version: its mod revision). */
  placementRequest: (PlacementRequest & { version: number }) | null;
  /** Brokers placement leaves out, and the key's version (0: absent). */
  decommissioned: { brokers: readonly number[]; version: number };
}

const retryMs = 500;

export class ClusterMetadata extends EventEmitter<{ changed: [MetadataView] }> {
  private current: MetadataView = { revision: 0, topics: new Map(), partitions: new Map(), placementRequest: null, decommissioned: { brokers: [], version: 0 } };
  private reading: Promise<void> | null = null;
  private dirty = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly watches: { close(): Promise<void> }[] = [];
  private readonly invalid: InvalidRecordLog;
  private failing = false;

  constructor(private readonly port: EtcdPort, private readonly keys: ClusterKeys, private readonly log: Log) {
    super();
    this.invalid = new InvalidRecordLog(log);
  }

  get view(): MetadataView {
    return this.current;
  }

  /** Whether a read succeeded yet. */
  get loaded(): boolean {
    return this.current.revision > 0;
  }

  /** Watches and reads; resolves after the first read attempt (successful or not). */
  async start(): Promise<void> {
    for (const prefix of [this.keys.topicsPrefix, this.keys.partitionsPrefix, this.keys.placementRequest, this.keys.decommissioned]) {
      try {
        this.watches.push(await this.port.watch(prefix, true, () => this.refresh()));
      } catch (error) {
        this.log('warn', `cannot watch ${prefix} in etcd (${(error as Error).message}); topic changes are seen at the next read`, { prefix });
      }
    }
    await this.refresh();
  }

  /** Reads again (now, or right after the read under way); resolves when a read at least as new as the call is done. */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.reading !== null) {
      // The loop under way reads once more before it ends.
      this.dirty = true;
      return this.reading;
    }
    this.reading = this.readLoop().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private async readLoop(): Promise<void> {
    do {
      this.dirty = false;
      try {
        await this.read();
        if (this.failing) this.log('info', 'cluster metadata read from etcd again', {});
        this.failing = false;
      } catch (error) {
        if (!this.failing) this.log('warn', `cannot read the cluster's topics from etcd (${(error as Error).message}); serving from the last view, retrying every ${retryMs} ms`, {});
        this.failing = true;
        if (!this.closed && this.retryTimer === null) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            void this.refresh();
          }, retryMs);
        }
        return;
      }
    } while (this.dirty && !this.closed);
  }

  private async read(): Promise<void> {
    const { revision, kvs } = await this.port.list([this.keys.topicsPrefix, this.keys.partitionsPrefix, this.keys.placementRequest, this.keys.decommissioned]);
    if (revision <= this.current.revision || this.closed) return;
    const topics = new Map<string, TopicView>();
    for (const kv of kvs[0] ?? []) {
      try {
        const record = decodeTopicRecord(kv.key, kv.value, this.keys);
        topics.set(record.name, { ...record, version: kv.modRevision });
      } catch (error) {
        this.invalid.report(kv, error);
      }
    }
    const partitions = new Map<PartitionKey, PartitionState>();
    for (const kv of kvs[1] ?? []) {
      const where = partitionOfKey(kv.key, this.keys);
      try {
        if (where === null) throw new ClusterStateError(kv.key, 'is not a partition key (/partitions/<topic>/<index>)');
        partitions.set(partitionKey(where.topic, where.partition), decodePartitionState(kv));
      } catch (error) {
        this.invalid.report(kv, error);
      }
    }
    let placementRequest: MetadataView['placementRequest'] = null;
    for (const kv of (kvs[2] ?? []).filter((k) => k.key === this.keys.placementRequest)) {
      try {
        placementRequest = { ...decodePlacementRequest(kv.key, kv.value), version: kv.modRevision };
      } catch (error) {
        this.invalid.report(kv, error);
      }
    }
    let decommissioned: MetadataView['decommissioned'] = { brokers: [], version: 0 };
    for (const kv of (kvs[3] ?? []).filter((k) => k.key === this.keys.decommissioned)) {
      try {
        decommissioned = { brokers: decodeDecommissioned(kv.key, kv.value).brokers, version: kv.modRevision };
      } catch (error) {
        this.invalid.report(kv, error);
      }
    }
    this.current = { revision, topics, partitions, placementRequest, decommissioned };
    this.emit('changed', this.current);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    await Promise.all(this.watches.map((watch) => watch.close().catch(() => undefined)));
  }
}
