/**
 * What Rill keeps in etcd for membership and the controller election, and how it is read back.
 * Everything read from etcd is untrusted input (another version of Rill, an operator with
 * etcdctl, a bug): each value is bounded and typed here, and a bad one is a
 * ClusterStateError (code INVALID_CLUSTER_STATE) that the caller logs and skips, never a crash.
 *
 *   key                                value (JSON)                                  lease
 *   /rill/<cluster>/brokers/<nodeId>   BrokerRegistration                            the broker's
 *   /rill/<cluster>/controller         ControllerRecord                              the controller's
 *   /rill/<cluster>/topics/<name>      TopicRecord                                   none
 *   /rill/<cluster>/partitions/<name>/<index>  PartitionStateRecord (controller-logic.ts) none
 *   /rill/<cluster>/producer-ids       { next }: producer ids below it were handed out none
 *   /rill/<cluster>/placement-request  PlacementRequest: rebalance or decommission    none
 *   /rill/<cluster>/decommissioned     { brokers }: left out of placement            none
 *
 * A topic exists when its topic key does; the controller gives each of its partitions a state
 * key (placement, leader, ISR), and deletes the state keys of a topic whose key is gone.
 *
 * The controller epoch is the create revision of the controller key: etcd's revision grows with
 * every write to the store, so each election gets a larger epoch than every one before it, and
 * nothing has to be stored to remember the last one.
 */
import { RillError } from '../lib/errors.js';
import { brokerListenersMax, clusterNameBytesMax, clusterRecordBytesMax, rackBytesMax, replicationFactorMax, topicPartitionsMax } from '../lib/limits.js';
import { decodeFullConfig, defaultTopicConfig, type TopicConfig } from '../wire/control.js';
import { partitionStateProblem, type PartitionState } from './controller-logic.js';
import type { KeyValue } from './etcd-port.js';
import type { Log } from '../lib/log.js';


const hostBytesMax = 255;
const listenerNameBytesMax = 32;
const versionBytesMax = 64;
const dataDirBytesMax = 4096;
const nodeIdMax = 0x7fffffff;

const clusterNamePattern = /^[A-Za-z0-9._-]+$/;

/** A value read from etcd that is not what Rill writes there. */
export class ClusterStateError extends RillError {
  override name = 'ClusterStateError';
  constructor(readonly key: string, reason: string) {
    super('INVALID_CLUSTER_STATE', `${key}: ${reason}`);
  }
}

/**
 * Logs a value read from etcd that is not what Rill writes there (ClusterStateError), once per
 * key and revision (the reader re-reads often; bounded memory); anything else is rethrown.
 */
export class InvalidRecordLog {
  private readonly seen = new Set<string>();

  constructor(private readonly log: Log) {}

  report(kv: KeyValue, error: unknown): void {
    if (!(error instanceof ClusterStateError)) throw error;
    const seen = `${kv.key}@${kv.modRevision}`;
    if (this.seen.has(seen)) return;
    if (this.seen.size > 1000) this.seen.clear();
    this.seen.add(seen);
    this.log('warn', `ignoring ${error.message} (${error.code}); if nothing should be there: etcdctl del ${kv.key}`, { key: kv.key, code: error.code });
  }
}

/** Null when the name is fine, else why not (used by the settings). */
export function clusterNameProblem(name: string): string | null {
  if (name.length === 0 || Buffer.byteLength(name) > clusterNameBytesMax) return `must be 1..${clusterNameBytesMax} bytes`;
  if (!clusterNamePattern.test(name)) return 'may hold only letters, digits, ".", "_" and "-"';
  return null;
}

/** Null when the rack is fine, else why not. */
export function rackProblem(rack: string): string | null {
  if (rack.length === 0 || Buffer.byteLength(rack) > rackBytesMax) return `must be 1..${rackBytesMax} bytes`;
  if (/[\u0000-\u001f\u007f]/.test(rack)) return 'must not hold control characters';
  return null;
}

export interface ClusterKeys {
  /** Prefix of every broker registration. */
  brokersPrefix: string;
  controller: string;
  broker(nodeId: number): string;
  topicsPrefix: string;
  topic(name: string): string;
  partitionsPrefix: string;
  partition(topic: string, index: number): string;
  producerIds: string;
  placementRequest: string;
  decommissioned: string;
}

export function clusterKeys(cluster: string): ClusterKeys {
  const root = `/rill/${cluster}/`;
  return {
    brokersPrefix: `${root}brokers/`,
    controller: `${root}controller`,
    broker: (nodeId) => `${root}brokers/${nodeId}`,
    topicsPrefix: `${root}topics/`,
    topic: (name) => `${root}topics/${name}`,
    partitionsPrefix: `${root}partitions/`,
    partition: (topic, index) => `${root}partitions/${topic}/${index}`,
    producerIds: `${root}producer-ids`,
    placementRequest: `${root}placement-request`,
    decommissioned: `${root}decommissioned`,
  };
}

export interface BrokerListener {
  name: string;
  /** The advertised host: what a client of this listener connects to. */
  host: string;
  port: number;
}

/** A live broker as it registered itself. */
export interface BrokerRegistration {
  nodeId: number;
  listeners: BrokerListener[];
  rack: string | null;
  /** Rill's version on that broker. */
  version: string;
  startedAtMs: number;
  /**
   * Where the broker runs (os.hostname(), pid, absolute data directory). A registration with this
   * broker's host and data directory was written by an earlier run of it: the data directory's
   * lock proves that run is gone, so its registration may be taken over.
   */
  host: string;
  pid: number;
  dataDir: string;
}

export interface ControllerRecord {
  nodeId: number;
  electedAtMs: number;
}

/** A topic as the cluster knows it; its partitions' states are separate keys. */
export interface TopicRecord {
  name: string;
  partitions: number;
  replicationFactor: number;
  /** Every config key of the topic (the defaults filled in when it was created). */
  config: TopicConfig;
  createdAtMs: number;
}

/** A partition's state as stored (the version is the key's mod revision, not stored). */
export type PartitionStateRecord = Omit<PartitionState, 'version'>;

export interface ProducerIdsRecord {
  next: number;
}

/** Brokers decommissioned: placement leaves them out until they are recommissioned. */
export interface DecommissionedRecord {
  brokers: number[];
}

export function decodeDecommissioned(key: string, bytes: Buffer): DecommissionedRecord {
  const fields = parseJsonObject(key, bytes);
  const raw = fields.raw('brokers');
  if (Array.isArray(raw) && raw.length === 0) return { brokers: [] };
  return { brokers: fields.ints('brokers', 1024, 0, nodeIdMax) };
}

export function encodeRecord(record: BrokerRegistration | ControllerRecord | TopicRecord | PartitionStateRecord | ProducerIdsRecord | PlacementRequest | DecommissionedRecord): Buffer {
  const bytes = Buffer.from(JSON.stringify(record));
  if (bytes.length > clusterRecordBytesMax) throw new RillError('INVALID_CONFIG', `a cluster record of ${bytes.length} bytes exceeds ${clusterRecordBytesMax}`);
  return bytes;
}

/** Reads the fields of one untrusted JSON object, typed and bounded. */
class Fields {
  constructor(private readonly key: string, private readonly value: Record<string, unknown>, private readonly path = '') {}

  fail(reason: string): never {
    throw new ClusterStateError(this.key, reason);
  }

  has(name: string): boolean {
    return this.value[name] !== undefined && this.value[name] !== null;
  }

  int(name: string, min: number, max: number): number {
    const v = this.value[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) this.fail(`${this.path}${name} must be an integer in ${min}..${max}`);
    return v;
  }

  string(name: string, bytesMax: number): string {
    const v = this.value[name];
    if (typeof v !== 'string' || v.length === 0 || Buffer.byteLength(v) > bytesMax) this.fail(`${this.path}${name} must be a string of 1..${bytesMax} bytes`);
    return v;
  }

  /** An array of integers in min..max, 1..lengthMax long. */
  ints(name: string, lengthMax: number, min: number, max: number): number[] {
    const v = this.value[name];
    if (!Array.isArray(v) || v.length === 0 || v.length > lengthMax) this.fail(`${this.path}${name} must be an array of 1..${lengthMax} entries`);
    return v.map((entry: unknown, i: number) => {
      if (typeof entry !== 'number' || !Number.isSafeInteger(entry) || entry < min || entry > max) this.fail(`${this.path}${name}[${i}] must be an integer in ${min}..${max}`);
      return entry;
    });
  }

  raw(name: string): unknown {
    return this.value[name];
  }

  /** The objects of an array field, each as Fields. */
  objects(name: string, lengthMax: number): Fields[] {
    const v = this.value[name];
    if (!Array.isArray(v) || v.length === 0 || v.length > lengthMax) this.fail(`${this.path}${name} must be an array of 1..${lengthMax} entries`);
    return v.map((entry: unknown, i: number) => {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) this.fail(`${this.path}${name}[${i}] must be an object`);
      return new Fields(this.key, entry as Record<string, unknown>, `${this.path}${name}[${i}].`);
    });
  }
}

function parseJsonObject(key: string, bytes: Buffer): Fields {
  if (bytes.length > clusterRecordBytesMax) throw new ClusterStateError(key, `value of ${bytes.length} bytes exceeds ${clusterRecordBytesMax}`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ClusterStateError(key, 'value is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ClusterStateError(key, 'value is not a JSON object');
  return new Fields(key, value as Record<string, unknown>);
}

/** A broker registration read from `key`; the node id in the key and in the value must agree. */
export function decodeRegistration(key: string, bytes: Buffer, keys: ClusterKeys): BrokerRegistration {
  const fields = parseJsonObject(key, bytes);
  const nodeId = fields.int('nodeId', 0, nodeIdMax);
  if (keys.broker(nodeId) !== key) fields.fail(`holds node id ${nodeId}, which is not the one its key names`);
  const listeners = fields.objects('listeners', brokerListenersMax).map((listener) => ({
    name: listener.string('name', listenerNameBytesMax), host: listener.string('host', hostBytesMax), port: listener.int('port', 1, 65535),
  }));
  return {
    nodeId,
    listeners,
    rack: fields.has('rack') ? fields.string('rack', rackBytesMax) : null,
    version: fields.string('version', versionBytesMax),
    startedAtMs: fields.int('startedAtMs', 0, Number.MAX_SAFE_INTEGER),
    host: fields.string('host', hostBytesMax),
    pid: fields.int('pid', 1, 0x7fffffff),
    dataDir: fields.string('dataDir', dataDirBytesMax),
  };
}

export function decodeControllerRecord(key: string, bytes: Buffer): ControllerRecord {
  const fields = parseJsonObject(key, bytes);
  return { nodeId: fields.int('nodeId', 0, nodeIdMax), electedAtMs: fields.int('electedAtMs', 0, Number.MAX_SAFE_INTEGER) };
}

const topicKeyPattern = /^[A-Za-z0-9._-]+$/;

/** A topic record read from `key`; its name must be the one the key names. */
export function decodeTopicRecord(key: string, bytes: Buffer, keys: ClusterKeys): TopicRecord {
  const fields = parseJsonObject(key, bytes);
  const name = fields.string('name', 249);
  if (!topicKeyPattern.test(name) || keys.topic(name) !== key) fields.fail(`holds topic "${name}", which is not the one its key names`);
  let config: TopicConfig = defaultTopicConfig;
  try {
    config = decodeFullConfig(fields.raw('config'));
  } catch (error) {
    fields.fail(`config: ${(error as Error).message}`);
  }
  return {
    name,
    partitions: fields.int('partitions', 1, topicPartitionsMax),
    replicationFactor: fields.int('replicationFactor', 1, replicationFactorMax),
    config,
    createdAtMs: fields.int('createdAtMs', 0, Number.MAX_SAFE_INTEGER),
  };
}

/** Where a partition state key points: its topic and index, or null if it is not one. */
export function partitionOfKey(key: string, keys: ClusterKeys): { topic: string; partition: number } | null {
  if (!key.startsWith(keys.partitionsPrefix)) return null;
  const rest = key.slice(keys.partitionsPrefix.length);
  const slash = rest.lastIndexOf('/');
  if (slash <= 0) return null;
  const topic = rest.slice(0, slash);
  const index = rest.slice(slash + 1);
  if (!topicKeyPattern.test(topic) || !/^(0|[1-9][0-9]{0,5})$/.test(index) || Number(index) >= topicPartitionsMax) return null;
  return { topic, partition: Number(index) };
}

/** A partition state read from etcd, checked against controller-logic's rules. */
export function decodePartitionState(kv: KeyValue): PartitionState {
  const fields = parseJsonObject(kv.key, kv.value);
  const state: PartitionState = {
    // Up to twice the factor while replicas move (old and new together).
    replicas: fields.ints('replicas', replicationFactorMax * 2, 0, nodeIdMax),
    leader: fields.int('leader', -1, nodeIdMax),
    leaderEpoch: fields.int('leaderEpoch', 0, 0x7fffffff),
    partitionEpoch: fields.int('partitionEpoch', 0, Number.MAX_SAFE_INTEGER),
    isr: fields.ints('isr', replicationFactorMax * 2, 0, nodeIdMax),
    version: kv.modRevision,
    ...(fields.has('targetReplicas') ? { targetReplicas: fields.ints('targetReplicas', replicationFactorMax, 0, nodeIdMax) } : {}),
  };
  const problem = partitionStateProblem(state);
  if (problem !== undefined) fields.fail(problem);
  return state;
}

export function partitionStateRecord(state: PartitionState): PartitionStateRecord {
  const record: PartitionStateRecord = { replicas: [...state.replicas], leader: state.leader, leaderEpoch: state.leaderEpoch, partitionEpoch: state.partitionEpoch, isr: [...state.isr] };
  return state.targetReplicas === undefined ? record : { ...record, targetReplicas: [...state.targetReplicas] };
}

/** What an operator asked the controller to do with placement (one request at a time). */
export interface PlacementRequest {
  action: 'rebalance' | 'decommission';
  /** The broker to empty (decommission); -1 for rebalance. */
  brokerId: number;
  requestedAtMs: number;
}

export function decodePlacementRequest(key: string, bytes: Buffer): PlacementRequest {
  const fields = parseJsonObject(key, bytes);
  const action = fields.string('action', 32);
  if (action !== 'rebalance' && action !== 'decommission') fields.fail(`action must be rebalance or decommission, not ${action}`);
  return { action: action as PlacementRequest['action'], brokerId: fields.int('brokerId', -1, nodeIdMax), requestedAtMs: fields.int('requestedAtMs', 0, Number.MAX_SAFE_INTEGER) };
}

export function decodeProducerIds(key: string, bytes: Buffer): ProducerIdsRecord {
  return { next: parseJsonObject(key, bytes).int('next', 0, Number.MAX_SAFE_INTEGER) };
}
