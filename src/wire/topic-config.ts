/**
 * Topic configuration as it enters the broker (CreateTopics, IncrementalAlterConfigs): entries
 * named by Rill's camelCase keys or by Kafka's dotted names, valued by integers or by decimal
 * strings (what a CLI or a Kafka tool sends); a switch (0/1) also takes Kafka's "true"/"false".
 * Two steps, kept apart on purpose:
 *
 *   decodeConfigEntries   shape only (a map of bounded names to ints or bounded strings);
 *                         bad shape is MALFORMED_REQUEST for the whole request
 *   normalizeTopicConfig  meaning: known key, valid value, in bounds; a problem is
 *                         INVALID_CONFIG for that one topic, naming the closest valid key
 *
 * Pure: no I/O.
 */
import { RillError } from '../lib/errors.js';
import { didYouMean } from '../lib/closest.js';
import { configEntriesMax, configNameBytesMax, configValueBytesMax, replicationFactorMax, segmentBytesMax, segmentBytesMin } from '../lib/limits.js';
import type { Schema } from './schema.js';

/** Per-topic settings; -1 disables a limit. */
export interface TopicConfig {
  /** Delete whole segments whose newest record is older than this. */
  retentionMs: number;
  /** Delete the oldest whole segments while the partition holds more than this. */
  retentionBytes: number;
  /** Roll to a new segment at this size. */
  segmentBytes: number;
  /** Roll to a new segment when the active one is this old. */
  segmentMs: number;
  /** fsync data written with acks 0/1 after this many records (-1: never by count). */
  flushMessages: number;
  /** fsync data written with acks 0/1 at least this often (-1: leave it to the OS). */
  flushMs: number;
  /**
   * acks all needs this many in-sync replicas (else NOT_ENOUGH_REPLICAS), capped by the topic's
   * replication factor (minInSyncReplicasFor): a single broker behaves as 1.
   */
  minInSyncReplicas: number;
  /**
   * 1: when no in-sync replica is alive, a live replica outside the ISR may lead (the partition
   * comes back, and may lose acknowledged records); 0: it stays offline until one returns.
   */
  uncleanLeaderElection: number;
}

export const defaultTopicConfig: Readonly<TopicConfig> = Object.freeze({
  retentionMs: 7 * 24 * 3600 * 1000,
  retentionBytes: -1,
  segmentBytes: 256 * 1024 * 1024,
  segmentMs: 7 * 24 * 3600 * 1000,
  flushMessages: -1,
  flushMs: 1000,
  minInSyncReplicas: 2,
  uncleanLeaderElection: 0,
});

/** [min, max] of each numeric key. */
export const topicConfigBounds: Readonly<Record<keyof TopicConfig, readonly [number, number]>> = Object.freeze({
  retentionMs: [-1, Number.MAX_SAFE_INTEGER],
  retentionBytes: [-1, Number.MAX_SAFE_INTEGER],
  segmentBytes: [segmentBytesMin, segmentBytesMax],
  segmentMs: [1, Number.MAX_SAFE_INTEGER],
  flushMessages: [-1, Number.MAX_SAFE_INTEGER],
  flushMs: [-1, Number.MAX_SAFE_INTEGER],
  minInSyncReplicas: [1, replicationFactorMax],
  uncleanLeaderElection: [0, 1],
});

export const topicConfigKeys = Object.keys(topicConfigBounds) as (keyof TopicConfig)[];

/**
 * Accepted but not stored: only `delete` is supported (Rill has no log compaction), so the one
 * valid value is the behaviour every topic already has.
 */
export const cleanupPolicyKey = 'cleanupPolicy';

/** Kafka's dotted topic config names and the Rill key each one means. */
export const topicConfigAliases: Readonly<Record<string, keyof TopicConfig | typeof cleanupPolicyKey>> = Object.freeze({
  'retention.ms': 'retentionMs',
  'retention.bytes': 'retentionBytes',
  'segment.bytes': 'segmentBytes',
  'segment.ms': 'segmentMs',
  'flush.messages': 'flushMessages',
  'flush.ms': 'flushMs',
  'min.insync.replicas': 'minInSyncReplicas',
  'unclean.leader.election.enable': 'uncleanLeaderElection',
  'cleanup.policy': cleanupPolicyKey,
});

/** Every name a request may use for a topic config key. */
export const topicConfigNames: readonly string[] = Object.freeze([...topicConfigKeys, cleanupPolicyKey, ...Object.keys(topicConfigAliases)]);

/** Raw entries from a request: names and values as sent (shape checked, meaning not yet). */
export type ConfigEntries = Record<string, number | string>;

/**
 * Shape check of a config map from a request. Returns a null-prototype copy so that names such
 * as "toString" are plain keys (rejected later as unknown), never inherited functions.
 */
export function decodeConfigEntries(s: Schema, value: unknown, path: string): ConfigEntries {
  const entries: ConfigEntries = Object.create(null) as ConfigEntries;
  if (value === undefined || value === null) return entries;
  const obj = s.object(value, path);
  const names = Object.keys(obj);
  if (names.length > configEntriesMax) s.fail(path, `at most ${configEntriesMax} entries`, `${names.length} entries`);
  for (const name of names) {
    s.string(name, `${path} key`, configNameBytesMax);
    const raw = obj[name];
    entries[name] = typeof raw === 'string' ? s.string(raw, `${path}.${name}`, configValueBytesMax) : s.int(raw, `${path}.${name}`, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  }
  return entries;
}

/** A list of config names (the keys to reset), shape checked. */
export function decodeConfigNames(s: Schema, value: unknown, path: string): string[] {
  if (value === undefined || value === null) return [];
  return s.array(value, path, configEntriesMax).map((name, i) => s.string(name, `${path}[${i}]`, configNameBytesMax));
}

/** The Rill key a name stands for, or INVALID_CONFIG naming the closest valid name. */
export function topicConfigKeyOf(name: string): keyof TopicConfig | typeof cleanupPolicyKey {
  if (Object.hasOwn(topicConfigBounds, name) || name === cleanupPolicyKey) return name as keyof TopicConfig | typeof cleanupPolicyKey;
  if (Object.hasOwn(topicConfigAliases, name)) return topicConfigAliases[name]!;
  throw new RillError('INVALID_CONFIG', `unknown topic config key "${name}"${didYouMean(name, topicConfigNames)}; valid keys: ${topicConfigNames.join(', ')}`);
}

const decimalInteger = /^-?(0|[1-9][0-9]*)$/;

/** Keys that are switches (0 or 1): they also take "false" and "true", as Kafka's tools send them. */
const switchKeys: ReadonlySet<keyof TopicConfig> = new Set(['uncleanLeaderElection']);
const switchValues = '0, 1, true or false';

/** An integer from an int or a decimal string, within the key's bounds; INVALID_CONFIG otherwise. */
function configInteger(name: string, key: keyof TopicConfig, value: number | string): number {
  let n: number;
  if (typeof value === 'number') n = value;
  else if (switchKeys.has(key) && (value === 'true' || value === 'false')) n = value === 'true' ? 1 : 0;
  else if (decimalInteger.test(value) && value.length <= 17) n = Number(value);
  else throw new RillError('INVALID_CONFIG', `${name}: ${JSON.stringify(value.slice(0, 40))} is not ${switchKeys.has(key) ? switchValues : 'a decimal integer'}`);
  const [min, max] = topicConfigBounds[key];
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new RillError('INVALID_CONFIG', `${name}: ${n} is ${switchKeys.has(key) ? `not ${switchValues}` : `outside ${min}..${max}`}`);
  }
  return n;
}

/**
 * Validates raw entries into Rill keys and values. Throws RillError INVALID_CONFIG (unknown key
 * with a suggestion, bad value, a key given twice under two names, cleanup.policy other than
 * delete).
 */
export function normalizeTopicConfig(entries: ConfigEntries): Partial<TopicConfig> {
  const config: Partial<TopicConfig> = {};
  const seen = new Map<string, string>();
  for (const name of Object.keys(entries)) {
    const key = topicConfigKeyOf(name);
    const earlier = seen.get(key);
    if (earlier !== undefined) throw new RillError('INVALID_CONFIG', `"${name}" and "${earlier}" set the same key ${key}`);
    seen.set(key, name);
    const value = entries[name]!;
    if (key === cleanupPolicyKey) {
      checkCleanupPolicy(name, value);
      continue;
    }
    config[key] = configInteger(name, key, value);
  }
  return config;
}

function checkCleanupPolicy(name: string, value: number | string): void {
  if (value === 'delete') return;
  if (typeof value === 'string' && value.split(',').map((v) => v.trim()).includes('compact')) {
    throw new RillError('INVALID_CONFIG', `${name}: compaction is not supported by Rill; the only cleanup policy is "delete"`);
  }
  throw new RillError('INVALID_CONFIG', `${name}: ${JSON.stringify(String(value).slice(0, 40))} is not a cleanup policy; the only one supported is "delete"`);
}

/**
 * The config after an incremental alter: `set` applied, `reset` keys back to their defaults.
 * Throws INVALID_CONFIG for a bad entry or a key both set and reset.
 */
export function alterTopicConfig(current: Readonly<TopicConfig>, set: ConfigEntries, reset: readonly string[]): TopicConfig {
  const changes = normalizeTopicConfig(set);
  const setKeys = new Set(Object.keys(set).map(topicConfigKeyOf));
  const next: TopicConfig = { ...current };
  for (const name of reset) {
    const key = topicConfigKeyOf(name);
    if (setKeys.has(key)) throw new RillError('INVALID_CONFIG', `"${name}" is both set and reset`);
    if (key !== cleanupPolicyKey) next[key] = defaultTopicConfig[key];
  }
  return { ...next, ...changes };
}

/**
 * The in-sync replicas acks all needs on a topic with `replicationFactor` replicas: the topic's
 * minInSyncReplicas, capped by the replication factor (so the default 2 means 1 on one replica).
 */
export function minInSyncReplicasFor(config: Readonly<TopicConfig>, replicationFactor: number): number {
  return Math.max(1, Math.min(config.minInSyncReplicas, replicationFactor));
}
