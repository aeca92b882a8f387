/**
 * Topics and their partitions at run time: creates, opens, deletes, and looks up partitions.
 * Opening a data directory decides recovery: a clean-shutdown marker means every log was closed
 * properly and is trusted; without it, each log is CRC-scanned from its recovery point.
 */
import type { Log } from '../lib/log.js';
import fs from 'node:fs';
import path from 'node:path';
import { RillError } from '../lib/errors.js';
import { defaultTopicConfig, type TopicConfig } from '../wire/control.js';
import { alterTopicConfig, type ConfigEntries } from '../wire/topic-config.js';
import { PartitionLog } from '../storage/partition-log.js';
import { removeFileIfPresent, replaceFile } from '../storage/durable-file.js';
import { type FileOps, nodeFileOps } from '../storage/file-ops.js';
import { tempSuffix } from '../storage/segment-files.js';
import { storageError } from '../storage/storage-errors.js';
import type { FlushRoundObserver } from '../storage/group-commit.js';
import { Partition } from './partition.js';
import { TopicRegistry, partitionCountProblem, partitionDir, topicNameProblem, topicsDir, type TopicDefinition } from './topic-registry.js';

export const cleanShutdownMarker = '.clean-shutdown';

export class PartitionManager {
  readonly registry: TopicRegistry;
  private readonly partitions = new Map<string, Partition[]>();

  /** `fileOps`: the file layer under every log and every file written here (tests inject faults). */
  constructor(private readonly dataDir: string, private readonly log: Log, private readonly fileOps: FileOps = nodeFileOps, private readonly observeFlushRound?: FlushRoundObserver) {
    this.registry = new TopicRegistry(dataDir, (message) => log('warn', message), fileOps);
  }

  /** Loads topics and opens every partition; returns whether recovery scans were needed. */
  open(): { clean: boolean } {
    this.fileOps.mkdirp(this.dataDir);
    const marker = path.join(this.dataDir, cleanShutdownMarker);
    const clean = fs.existsSync(marker);
    removeFileIfPresent(this.fileOps, marker + tempSuffix);
    this.registry.load();
    this.removeDeletedLeftovers();
    for (const topic of this.registry.list()) this.openTopic(topic, !clean);
    // From here on a crash is unclean: remove the marker before serving anything.
    if (clean) {
      this.fileOps.unlink(marker);
      this.fileOps.fsyncDirSync(this.dataDir);
    }
    return { clean };
  }

  private openTopic(topic: TopicDefinition, recover: boolean): void {
    const partitions: Partition[] = [];
    for (let index = 0; index < topic.partitions; index++) partitions.push(this.openPartition(topic.name, index, topic.config, recover));
    this.partitions.set(topic.name, partitions);
  }

  private openPartition(topic: string, index: number, config: TopicConfig, recover: boolean): Partition {
    const dir = partitionDir(this.dataDir, topic, index);
    this.fileOps.mkdirp(dir);
    const log = this.openLog(topic, index, config, recover);
    // After an fsync failure the partition reopens its log with recovery (see partition.ts),
    // with the topic's config as it is then.
    const reopen = (): PartitionLog => this.openLog(topic, index, this.registry.get(topic)?.config ?? config, true);
    return new Partition(topic, index, log, reopen, this.log);
  }

  private openLog(topic: string, index: number, config: TopicConfig, recover: boolean): PartitionLog {
    const dir = partitionDir(this.dataDir, topic, index);
    const log = PartitionLog.open(dir, config, { recover, fileOps: this.fileOps, observeFlushRound: this.observeFlushRound, log: (message: string) => this.log('warn', `${topic}/${index}: ${message}`, { topic, partition: index }) });
    const report = log.recovery;
    if (report.droppedFromOffset !== null) {
      this.log('warn', `${topic}/${index}: recovery truncated ${report.truncatedBytes} bytes from offset ${report.droppedFromOffset} (${report.reason}); ${report.segmentsDeleted} later segments deleted`, { topic, partition: index });
    }
    return log;
  }

  get(topic: string, partition: number): Partition | undefined {
    return this.partitions.get(topic)?.[partition];
  }

  topicPartitions(topic: string): Partition[] | undefined {
    return this.partitions.get(topic);
  }

  all(): Partition[] {
    return [...this.partitions.values()].flat();
  }

  /** `createdAtMs`: when the topic was created (a cluster passes etcd's, so every copy agrees). */
  create(name: string, partitionCount: number, config: Partial<TopicConfig>, createdAtMs = Date.now()): TopicDefinition {
    const nameProblem = topicNameProblem(name);
    if (nameProblem !== null) throw new RillError('INVALID_TOPIC_NAME', nameProblem);
    const countProblem = partitionCountProblem(partitionCount);
    if (countProblem !== null) throw new RillError('INVALID_PARTITIONS', countProblem);
    if (this.registry.get(name) !== undefined) throw new RillError('TOPIC_ALREADY_EXISTS', `topic "${name}" already exists`);
    const definition: TopicDefinition = { name, partitions: partitionCount, config: { ...defaultTopicConfig, ...config }, createdAtMs };
    // Directories first, then the registry: a crash in between leaves directories the next start
    // adopts. A failure removes them again, so the topic does not come back at the next start.
    const partitions: Partition[] = [];
    try {
      for (let index = 0; index < partitionCount; index++) partitions.push(this.openPartition(name, index, definition.config, false));
      this.fileOps.fsyncDirSync(topicsDir(this.dataDir));
      this.registry.add(definition);
    } catch (error) {
      this.discardPartitions(name, partitions);
      try {
        this.fileOps.removeTree(path.join(topicsDir(this.dataDir), name));
      } catch {
        // Reporting the first failure; the next start adopts what is left.
      }
      throw error instanceof RillError ? error : storageError(error, `creating topic "${name}"`);
    }
    this.partitions.set(name, partitions);
    return definition;
  }

  /** Closes partitions that never became visible (a create or addPartitions that failed). */
  private discardPartitions(topic: string, partitions: readonly Partition[]): void {
    for (const partition of partitions) {
      try {
        partition.close();
      } catch (error) {
        this.log('warn', `${topic}/${partition.index}: close after a failed change: ${(error as Error).message}`, { topic, partition: partition.index });
      }
    }
  }

  /**
   * IncrementalAlterConfigs: sets `set`, resets `reset` to defaults, persists the registry, then
   * hands the new config to every open log (rolls, retention and the flush policy use it from
   * their next decision). Returns the new config. INVALID_CONFIG, UNKNOWN_TOPIC_OR_PARTITION.
   */
  alterConfig(name: string, set: ConfigEntries, reset: readonly string[]): TopicConfig {
    const definition = this.registry.get(name);
    if (definition === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${name}" does not exist`);
    const config = alterTopicConfig(definition.config, set, reset);
    this.registry.update({ ...definition, config });
    for (const partition of this.partitions.get(name) ?? []) {
      // An offline partition reopens with the registry's config, which is already the new one.
      if (!partition.isOffline) partition.log.updateConfig(config);
    }
    return config;
  }

  /** A cluster's topic config, as etcd holds it, replaces the local one (registry and open logs). */
  replaceConfig(name: string, config: TopicConfig): void {
    const definition = this.registry.get(name);
    if (definition === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${name}" does not exist`);
    this.registry.update({ ...definition, config });
    for (const partition of this.partitions.get(name) ?? []) if (!partition.isOffline) partition.log.updateConfig(config);
  }

  /**
   * CreatePartitions: grows the topic to `totalCount` partitions (never shrinks). The new
   * partitions are created and opened before the registry names them (as create() does).
   * Keyed records map by the new count from then on. INVALID_PARTITIONS, UNKNOWN_TOPIC_OR_PARTITION.
   */
  addPartitions(name: string, totalCount: number): TopicDefinition {
    const definition = this.registry.get(name);
    const partitions = this.partitions.get(name);
    if (definition === undefined || partitions === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${name}" does not exist`);
    const countProblem = partitionCountProblem(totalCount);
    if (countProblem !== null) throw new RillError('INVALID_PARTITIONS', countProblem);
    if (totalCount <= definition.partitions) {
      throw new RillError('INVALID_PARTITIONS', `topic "${name}" has ${definition.partitions} partitions; the new count must be greater (partitions are never removed)`);
    }
    const added: Partition[] = [];
    try {
      for (let index = definition.partitions; index < totalCount; index++) added.push(this.openPartition(name, index, definition.config, true));
      this.fileOps.fsyncDirSync(path.join(topicsDir(this.dataDir), name));
      const grown = { ...definition, partitions: totalCount };
      this.registry.update(grown);
      partitions.push(...added);
      return grown;
    } catch (error) {
      // The new partitions are empty: remove them, or the next start would adopt their directories.
      this.discardPartitions(name, added);
      for (const partition of added) {
        try {
          this.fileOps.removeTree(partitionDir(this.dataDir, name, partition.index));
        } catch {
          // Reporting the first failure.
        }
      }
      throw error instanceof RillError ? error : new RillError('STORAGE_ERROR', `adding partitions to "${name}": ${(error as Error).message}`, { cause: error });
    }
  }

  /** Removes the topic at once; its files are renamed aside and deleted in the background. */
  delete(name: string): void {
    const partitions = this.partitions.get(name);
    if (partitions === undefined) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${name}" does not exist`);
    this.registry.remove(name);
    this.partitions.delete(name);
    for (const partition of partitions) {
      try {
        partition.close();
      } catch (error) {
        // The files are deleted below anyway.
        this.log('warn', `${name}/${partition.index}: close before delete failed: ${(error as Error).message}`, { topic: name, partition: partition.index });
      }
    }
    const from = path.join(topicsDir(this.dataDir), name);
    const aside = path.join(topicsDir(this.dataDir), `.deleted-${name}-${Date.now()}`);
    this.fileOps.rename(from, aside);
    fs.promises.rm(aside, { recursive: true, force: true }).catch((error: unknown) => this.log('warn', `could not remove ${aside}: ${(error as Error).message}`));
  }

  private removeDeletedLeftovers(): void {
    for (const entry of this.fileOps.readdir(topicsDir(this.dataDir))) {
      if (entry.startsWith('.deleted-')) this.fileOps.removeTree(path.join(topicsDir(this.dataDir), entry));
    }
  }

  /**
   * Flushes and closes every log, then writes the clean-shutdown marker — only if every log
   * closed durably; otherwise the next start recovers.
   */
  closeClean(): void {
    let failures = 0;
    for (const partition of this.all()) {
      try {
        partition.close();
      } catch (error) {
        failures++;
        this.log('error', `${partition.topic}/${partition.index}: close failed: ${(error as Error).message}`, { topic: partition.topic, partition: partition.index });
      }
    }
    this.partitions.clear();
    if (failures > 0) {
      this.log('error', `${failures} logs did not close durably; the next start will recover them`);
      return;
    }
    try {
      replaceFile(this.fileOps, path.join(this.dataDir, cleanShutdownMarker), Buffer.from(`${new Date().toISOString()}\n`), { durable: true });
    } catch (error) {
      this.log('error', `the clean-shutdown marker could not be written (${(error as Error).message}); the next start will recover`);
    }
  }
}
