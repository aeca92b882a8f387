/**
 * The topic definitions, persisted in `<dataDir>/topics.json` (written to a temporary file,
 * fsynced, renamed over the old one, directory fsynced: a crash leaves the old or the new file,
 * never half of one: storage/durable-file.ts, through the broker's FileOps). A change is applied
 * in memory only after it is on disk, so a failed write (DISK_FULL / STORAGE_ERROR) leaves the
 * file and the registry as they were. If the file is missing or unreadable while topic
 * directories exist, the definitions are rebuilt from the directories with the default config,
 * and a warning is logged: data is never dropped because its metadata was lost.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RillError } from '../lib/errors.js';
import { readFileBounded, replaceFile } from '../storage/durable-file.js';
import { type FileOps, nodeFileOps } from '../storage/file-ops.js';
import { writeError } from '../storage/storage-errors.js';
import { topicNameBytesMax, topicPartitionsMax, topicsMax } from '../lib/limits.js';
import { defaultTopicConfig, topicConfigKeys, type TopicConfig } from '../wire/control.js';

export interface TopicDefinition {
  name: string;
  partitions: number;
  config: TopicConfig;
  createdAtMs: number;
}

const topicNamePattern = /^[a-zA-Z0-9._-]+$/;
const registryFileBytesMax = 64 * 1024 * 1024;

/** Returns the reason a topic name is invalid, or null if it is fine. */
export function topicNameProblem(name: string): string | null {
  if (name.length === 0) return 'topic name is empty';
  if (Buffer.byteLength(name) > topicNameBytesMax) return `topic name is longer than ${topicNameBytesMax} bytes`;
  if (name === '.' || name === '..') return `topic name cannot be "${name}"`;
  if (!topicNamePattern.test(name)) return `topic name "${name}" may contain only ASCII letters, digits, '.', '_' and '-'`;
  return null;
}

export function partitionCountProblem(partitions: number): string | null {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > topicPartitionsMax) return `partition count ${partitions} is outside 1..${topicPartitionsMax}`;
  return null;
}

export function topicsDir(dataDir: string): string {
  return path.join(dataDir, 'topics');
}

export function partitionDir(dataDir: string, topic: string, partition: number): string {
  return path.join(topicsDir(dataDir), topic, String(partition));
}

export class TopicRegistry {
  private readonly topics = new Map<string, TopicDefinition>();
  private readonly file: string;

  constructor(private readonly dataDir: string, private readonly warn: (message: string) => void, private readonly fileOps: FileOps = nodeFileOps) {
    this.file = path.join(dataDir, 'topics.json');
  }

  load(): void {
    this.fileOps.mkdirp(topicsDir(this.dataDir));
    const loaded = this.readFile();
    for (const topic of loaded) this.topics.set(topic.name, topic);
    this.adoptOrphanDirectories();
  }

  get(name: string): TopicDefinition | undefined {
    return this.topics.get(name);
  }

  list(): TopicDefinition[] {
    return [...this.topics.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get size(): number {
    return this.topics.size;
  }

  /** Adds a topic and persists it; DISK_FULL / STORAGE_ERROR with nothing changed. */
  add(definition: TopicDefinition): void {
    if (this.topics.size >= topicsMax) throw new RillError('INVALID_PARTITIONS', `the broker already holds ${topicsMax} topics`);
    this.persistWith((next) => next.set(definition.name, definition));
  }

  /** Replaces a known topic's definition (new config or partition count) and persists it. */
  update(definition: TopicDefinition): void {
    if (!this.topics.has(definition.name)) throw new RillError('UNKNOWN_TOPIC_OR_PARTITION', `topic "${definition.name}" does not exist`);
    this.persistWith((next) => next.set(definition.name, definition));
  }

  remove(name: string): void {
    this.persistWith((next) => next.delete(name));
  }

  /** Writes the registry as `change` makes it, then applies the change in memory. */
  private persistWith(change: (next: Map<string, TopicDefinition>) => void): void {
    const next = new Map(this.topics);
    change(next);
    try {
      this.write(next);
    } catch (error) {
      throw writeError(error, 'topics.json could not be written');
    }
    change(this.topics);
  }

  private write(topics: ReadonlyMap<string, TopicDefinition>): void {
    const list = [...topics.values()].sort((a, b) => a.name.localeCompare(b.name));
    const body = JSON.stringify({ version: 1, topics: list }, null, 2);
    replaceFile(this.fileOps, this.file, Buffer.from(body), { durable: true });
  }

  private readFile(): TopicDefinition[] {
    let text: string;
    try {
      const bytes = readFileBounded(this.fileOps, this.file, registryFileBytesMax);
      if (bytes === null) return [];
      text = bytes.toString('utf8');
    } catch (error) {
      this.warn(`topics.json unreadable (${(error as Error).message}); rebuilding topics from directories`);
      return [];
    }
    try {
      return parseRegistry(JSON.parse(text));
    } catch (error) {
      this.warn(`topics.json is invalid (${(error as Error).message}); rebuilding topics from directories`);
      return [];
    }
  }

  /** A topic directory without a definition keeps its data: adopt it with the default config. */
  private adoptOrphanDirectories(): void {
    let changed = false;
    for (const entry of fs.readdirSync(topicsDir(this.dataDir), { withFileTypes: true })) {
      if (!entry.isDirectory() || topicNameProblem(entry.name) !== null || entry.name.startsWith('.')) continue;
      const partitions = fs.readdirSync(path.join(topicsDir(this.dataDir), entry.name)).filter((p) => /^\d+$/.test(p)).map(Number);
      const known = this.topics.get(entry.name);
      const count = partitions.length === 0 ? 0 : Math.max(...partitions) + 1;
      if (known !== undefined && known.partitions >= count) continue;
      if (count === 0 || count > topicPartitionsMax) continue;
      this.warn(`adopting topic directory "${entry.name}" with ${count} partitions (no definition in topics.json)`);
      this.topics.set(entry.name, { name: entry.name, partitions: count, config: known?.config ?? { ...defaultTopicConfig }, createdAtMs: known?.createdAtMs ?? Date.now() });
      changed = true;
    }
    // At start, before anything is served: a failure here stops the start.
    if (changed) this.write(this.topics);
  }
}

function parseRegistry(value: unknown): TopicDefinition[] {
  const root = value as { version?: unknown; topics?: unknown };
  if (root === null || typeof root !== 'object' || root.version !== 1 || !Array.isArray(root.topics)) throw new Error('expected {version: 1, topics: [...]}');
  return root.topics.map((entry: unknown) => {
    const topic = entry as Partial<TopicDefinition>;
    if (typeof topic.name !== 'string' || topicNameProblem(topic.name) !== null) throw new Error(`bad topic name ${String(topic.name)}`);
    if (typeof topic.partitions !== 'number' || partitionCountProblem(topic.partitions) !== null) throw new Error(`bad partition count for ${topic.name}`);
    const config = { ...defaultTopicConfig };
    for (const key of topicConfigKeys) {
      const v = (topic.config as Record<string, unknown> | undefined)?.[key];
      if (typeof v === 'number' && Number.isInteger(v)) config[key] = v;
    }
    return { name: topic.name, partitions: topic.partitions, config, createdAtMs: typeof topic.createdAtMs === 'number' ? topic.createdAtMs : 0 };
  });
}
