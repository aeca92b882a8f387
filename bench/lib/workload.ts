/**
 * Workload files (bench/workloads/*.json), in the spirit of OpenMessaging Benchmark workload
 * files: what to run (kind), its shape (topics, partitions, message size, producers, consumers,
 * rate, duration or message count, acks) and the target it is checked against. A `quick` object
 * overrides fields for `--quick`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from './broker-process.js';
import type { SecuritySetting } from './security.js';

export type WorkloadKind = 'produce' | 'consume' | 'e2e-latency' | 'send-latency' | 'group' | 'recovery' | 'cluster-produce' | 'cluster-failover';
export type Acks = 'all' | 1 | 0;

/** A target from issue 5: `metric` of the result compared with `min` or `max`. */
export interface Target {
  metric: string;
  min?: number;
  max?: number;
  /** As the issue states it, e.g. ">= 1,000,000 records/s". */
  label: string;
}

export interface Workload {
  name: string;
  /** The file's name without `.json` (`03-produce-100b-acksall`); --workload accepts it too. */
  file: string;
  kind: WorkloadKind;
  description: string;
  topics: number;
  partitions: number;
  messageSize: number;
  /** Producer instances, each with its own connection (produce, consume backlog fill). */
  producers: number;
  consumers: number;
  acks: Acks;
  /** Records per second across all producers; 0 = as fast as possible. */
  producerRate: number;
  durationSeconds: number;
  /** Backlog size (consume) or number of records (send-latency cap); 0 = none. */
  messages: number;
  /** Bytes to write before the SIGKILL (recovery). */
  bytesBeforeKill: number;
  /** Most sends outstanding per producer before the load generator waits for acks. */
  windowRecords: number;
  producerOptions: { lingerMs?: number; batchBytes?: number; maxInFlightRequests?: number };
  /** Seconds of warm-up whose figures are not counted. */
  warmupSeconds: number;
  /** Group workload: members and the session timeout they ask for. */
  members: number;
  sessionTimeoutMs: number;
  /**
   * Cluster workloads, and a group workload with brokers > 1: brokers started (with one etcd), the
   * topic's replication and the etcd lease TTL.
   */
  brokers: number;
  replicationFactor: number;
  minInSyncReplicas: number;
  leaseTtlMs: number;
  /** Failover workload: leaders SIGKILLed, one after the other. */
  failovers: number;
  /** Run the same workload against the peers with --peers. */
  peers: boolean;
  /**
   * TLS and/or SASL on the broker and every client, e.g. `{ "tls": true, "sasl": "scram-sha-512" }`;
   * the workload is then run plain and secure, back to back, `rounds` times each (rill/secure.ts).
   */
  security: SecuritySetting | null;
  rounds: number;
  targets: Target[];
  quick?: Partial<Omit<Workload, 'quick' | 'name' | 'file' | 'kind'>>;
}

const defaults: Omit<Workload, 'name' | 'file' | 'kind' | 'description'> = {
  topics: 1,
  partitions: 8,
  messageSize: 100,
  producers: 1,
  consumers: 0,
  acks: 1,
  producerRate: 0,
  durationSeconds: 10,
  messages: 0,
  bytesBeforeKill: 0,
  windowRecords: 16_384,
  producerOptions: {},
  warmupSeconds: 0,
  members: 3,
  sessionTimeoutMs: 10_000,
  brokers: 1,
  replicationFactor: 1,
  minInSyncReplicas: 1,
  leaseTtlMs: 6000,
  failovers: 3,
  peers: false,
  security: null,
  rounds: 1,
  targets: [],
};

export const workloadDir = path.join(repoRoot, 'bench/workloads');

const kinds: WorkloadKind[] = ['produce', 'consume', 'e2e-latency', 'send-latency', 'group', 'recovery', 'cluster-produce', 'cluster-failover'];

/** The broker refuses a shorter RILL_LEASE_TTL_MS. */
const leaseTtlMinMs = 2000;

function validate(file: string, workload: Workload): Workload {
  const fail = (why: string): never => {
    throw new Error(`${file}: ${why}`);
  };
  if (!kinds.includes(workload.kind)) fail(`kind must be one of ${kinds.join(', ')}, got ${String(workload.kind)}`);
  if (!(workload.acks === 'all' || workload.acks === 1 || workload.acks === 0)) fail(`acks must be "all", 1 or 0, got ${String(workload.acks)}`);
  for (const key of ['partitions', 'messageSize', 'producers', 'windowRecords'] as const) {
    if (!Number.isInteger(workload[key]) || workload[key] < 1) fail(`${key} must be an integer >= 1, got ${String(workload[key])}`);
  }
  for (const key of ['brokers', 'replicationFactor', 'minInSyncReplicas', 'failovers'] as const) {
    if (!Number.isInteger(workload[key]) || workload[key] < 1) fail(`${key} must be an integer >= 1, got ${String(workload[key])}`);
  }
  if (workload.replicationFactor > workload.brokers) fail(`replicationFactor ${workload.replicationFactor} needs at least as many brokers, got ${workload.brokers}`);
  if (workload.minInSyncReplicas > workload.replicationFactor) fail(`minInSyncReplicas ${workload.minInSyncReplicas} must be <= replicationFactor ${workload.replicationFactor}`);
  if (!Number.isInteger(workload.leaseTtlMs) || workload.leaseTtlMs < leaseTtlMinMs) fail(`leaseTtlMs must be an integer >= ${leaseTtlMinMs}, got ${String(workload.leaseTtlMs)}`);
  if (workload.kind === 'cluster-failover' && workload.producerRate <= 0) fail('a cluster-failover workload needs producerRate > 0 (records/s of the steady stream)');
  if (!Number.isInteger(workload.rounds) || workload.rounds < 1) fail(`rounds must be an integer >= 1, got ${String(workload.rounds)}`);
  if (workload.security !== null) {
    const { tls, sasl } = workload.security;
    if (typeof tls !== 'boolean') fail(`security.tls must be true or false, got ${String(tls)}`);
    if (!(sasl === null || sasl === 'scram-sha-256' || sasl === 'scram-sha-512' || sasl === 'plain')) fail(`security.sasl must be null, "scram-sha-256", "scram-sha-512" or "plain", got ${String(sasl)}`);
    if (sasl === 'plain' && !tls) fail('security.sasl "plain" needs security.tls true (brokers offer PLAIN on TLS only)');
    if (!tls && sasl === null) fail('security needs tls or sasl');
    if (workload.kind !== 'produce' && workload.kind !== 'consume') fail(`security is supported for produce and consume workloads, not ${workload.kind}`);
  }
  if (workload.messageSize < 16) fail('messageSize must be >= 16 (latency workloads stamp a timestamp into the value)');
  return workload;
}

/** Loads every workload file, sorted by the order field then name; applies `quick` overrides. */
export function loadWorkloads(quick: boolean): Workload[] {
  const files = fs.readdirSync(workloadDir).filter((f) => f.endsWith('.json')).sort();
  return files.map((file) => {
    const raw = JSON.parse(fs.readFileSync(path.join(workloadDir, file), 'utf8')) as Workload;
    const merged: Workload = { ...defaults, ...raw, file: file.replace(/\.json$/, ''), producerOptions: { ...defaults.producerOptions, ...raw.producerOptions } };
    if (raw.security != null) merged.security = { tls: raw.security.tls ?? false, sasl: raw.security.sasl ?? null };
    if (quick && raw.quick !== undefined) Object.assign(merged, raw.quick);
    return validate(file, merged);
  });
}

/** Milliseconds to microsecond-free display: 12.3456 -> "12.35". */
export function roundTo(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
