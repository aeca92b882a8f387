/**
 * The error registry. Numbers never change and are never reused; protocol/errors.json is the
 * language-neutral copy and a test keeps the two identical.
 *
 * `retriable` tells a client whether sending the same request again later can succeed.
 */
export const errorTable = {
  NONE: { code: 0, retriable: false, message: 'no error' },
  UNKNOWN_SERVER_ERROR: { code: 1, retriable: false, message: 'the broker hit an unexpected error' },
  CORRUPT_BATCH: { code: 2, retriable: false, message: 'record batch failed its CRC-32C check' },
  INVALID_BATCH: { code: 3, retriable: false, message: 'record batch is malformed' },
  UNKNOWN_TOPIC_OR_PARTITION: { code: 4, retriable: false, message: 'no such topic or partition' },
  OFFSET_OUT_OF_RANGE: { code: 5, retriable: false, message: 'offset is outside the log' },
  BATCH_TOO_LARGE: { code: 6, retriable: false, message: 'record batch exceeds the size limit' },
  INVALID_TOPIC_NAME: { code: 7, retriable: false, message: 'topic name is invalid' },
  TOPIC_ALREADY_EXISTS: { code: 8, retriable: false, message: 'topic already exists' },
  INVALID_PARTITIONS: { code: 9, retriable: false, message: 'partition count is invalid' },
  UNSUPPORTED_VERSION: { code: 10, retriable: false, message: 'api key or version is not supported' },
  MALFORMED_REQUEST: { code: 11, retriable: false, message: 'request body could not be decoded' },
  REQUEST_TIMED_OUT: { code: 12, retriable: true, message: 'request timed out' },
  STORAGE_ERROR: { code: 13, retriable: true, message: 'the broker could not read or write its disk' },
  DISK_FULL: { code: 14, retriable: true, message: 'the broker disk is full' },
  BROKER_SHUTTING_DOWN: { code: 15, retriable: true, message: 'the broker is shutting down' },
  UNSUPPORTED_COMPRESSION: { code: 16, retriable: false, message: 'compression codec is not supported' },
  INVALID_CONFIG: { code: 17, retriable: false, message: 'configuration value is invalid' },
  FRAME_TOO_LARGE: { code: 18, retriable: false, message: 'frame exceeds the size limit' },
  CONNECTION_ERROR: { code: 19, retriable: true, message: 'connection to the broker failed' },
  INVALID_REQUIRED_ACKS: { code: 20, retriable: false, message: 'acks must be 0, 1 or -1 (all)' },
  MALFORMED_RESPONSE: { code: 21, retriable: false, message: 'response could not be decoded' },
  TOPIC_DELETION_IN_PROGRESS: { code: 22, retriable: true, message: 'topic is being deleted' },
  INVALID_ARGUMENT: { code: 23, retriable: false, message: 'argument is invalid' },
  CORRUPT_LOG: { code: 24, retriable: false, message: 'stored data failed validation and is not served' },
  NOT_A_RILL_BROKER: { code: 25, retriable: false, message: 'the server answered with bytes that are not a Rill reply' },
  USER_NOT_FOUND: { code: 26, retriable: false, message: 'no such user' },
  // Consumer groups: 30..49
  COORDINATOR_NOT_AVAILABLE: { code: 30, retriable: true, message: 'group coordinator is not available' },
  INVALID_GROUP_ID: { code: 31, retriable: false, message: 'group id is invalid' },
  UNKNOWN_MEMBER_ID: { code: 32, retriable: false, message: 'member is not in the group (it may have been removed after its session timed out)' },
  FENCED_MEMBER_EPOCH: { code: 33, retriable: false, message: 'member epoch is stale; the member must rejoin' },
  INVALID_SESSION_TIMEOUT: { code: 34, retriable: false, message: 'session timeout is outside the broker bounds' },
  NOT_PARTITION_OWNER: { code: 35, retriable: false, message: 'member does not own this partition at the current assignment' },
  NON_EMPTY_GROUP: { code: 36, retriable: false, message: 'group still has live members' },
  GROUP_ID_NOT_FOUND: { code: 37, retriable: false, message: 'no such group' },
  GROUP_MAX_SIZE_REACHED: { code: 38, retriable: false, message: 'group has the maximum number of members' },
  // Idempotent producer: 50..59
  OUT_OF_ORDER_SEQUENCE: { code: 50, retriable: false, message: 'batch sequence number is out of order' },
  INVALID_PRODUCER_EPOCH: { code: 51, retriable: false, message: 'producer epoch is stale' },
  UNKNOWN_PRODUCER_ID: { code: 52, retriable: false, message: 'producer id is unknown' },
  // Authentication: 60..69
  UNSUPPORTED_SASL_MECHANISM: { code: 60, retriable: false, message: 'the broker does not offer this SASL mechanism on this listener' },
  ILLEGAL_SASL_STATE: { code: 61, retriable: false, message: 'SASL request out of order on this connection' },
  SASL_AUTHENTICATION_FAILED: { code: 62, retriable: false, message: 'authentication failed: unknown user, wrong password or a bad SASL message' },
  SASL_AUTHENTICATION_REQUIRED: { code: 63, retriable: false, message: 'this listener requires authentication (SaslHandshake, SaslAuthenticate) before any request but ApiVersions' },
  // Authorization: 70..79
  TOPIC_AUTHORIZATION_FAILED: { code: 70, retriable: false, message: 'not authorized to access this topic' },
  GROUP_AUTHORIZATION_FAILED: { code: 71, retriable: false, message: 'not authorized to access this group' },
  CLUSTER_AUTHORIZATION_FAILED: { code: 72, retriable: false, message: 'not authorized to perform this cluster operation' },
  SECURITY_DISABLED: { code: 73, retriable: false, message: 'ACLs are enforced only when the broker requires authentication (--auth required)' },
  // Quotas: 80..89
  TOO_MANY_CONNECTIONS: { code: 80, retriable: true, message: 'the principal (or, unauthenticated, the client address) has as many connections open as its quota allows' },
  // Cluster and replication: 90..99
  INVALID_CLUSTER_STATE: { code: 90, retriable: false, message: 'a record read from etcd is not what Rill writes there; it is ignored' },
  INVALID_REPLICATION_FACTOR: { code: 91, retriable: false, message: 'replication factor must be at least 1 and at most the number of live brokers' },
  NOT_LEADER: { code: 92, retriable: true, message: 'this broker is not the leader of the partition (leadership moved); refresh metadata and send to the new leader' },
  LEADER_NOT_AVAILABLE: { code: 93, retriable: true, message: 'the partition has no leader now (an election is under way, or no in-sync replica is alive)' },
  NOT_ENOUGH_REPLICAS: { code: 94, retriable: true, message: 'fewer in-sync replicas than the topic\'s minInSyncReplicas: the batch was not written' },
  NOT_ENOUGH_REPLICAS_AFTER_APPEND: { code: 95, retriable: true, message: 'the batch was written by the leader, but the in-sync replicas fell below minInSyncReplicas before it was replicated; a retry may write it twice unless the producer is idempotent' },
  FENCED_LEADER_EPOCH: { code: 96, retriable: true, message: 'the request carries a leader epoch older than the partition\'s; refresh metadata' },
  UNKNOWN_LEADER_EPOCH: { code: 97, retriable: true, message: 'the request carries a leader epoch newer than this broker knows; retry once it has caught up' },
} as const;

export type ErrorName = keyof typeof errorTable;

const nameByCode = new Map<number, ErrorName>();
for (const name of Object.keys(errorTable) as ErrorName[]) nameByCode.set(errorTable[name].code, name);

export function errorNameOf(code: number): ErrorName {
  return nameByCode.get(code) ?? 'UNKNOWN_SERVER_ERROR';
}

export function errorCodeOf(name: ErrorName): number {
  return errorTable[name].code;
}

/**
 * Every error Rill reports to a user: a stable string `code`, its number `errorCode`, and
 * whether retrying can help.
 */
export class RillError extends Error {
  override name = 'RillError';
  readonly code: ErrorName;
  readonly errorCode: number;
  readonly retriable: boolean;

  constructor(code: ErrorName, detail?: string, options?: { cause?: unknown }) {
    const entry = errorTable[code];
    super(detail ? `${code}: ${detail}` : `${code}: ${entry.message}`, options);
    this.code = code;
    this.errorCode = entry.code;
    this.retriable = entry.retriable;
  }

  static fromCode(errorCode: number, detail?: string): RillError {
    const name = nameByCode.get(errorCode);
    if (name === undefined) return new RillError('UNKNOWN_SERVER_ERROR', `unknown error code ${errorCode}${detail ? `: ${detail}` : ''}`);
    return new RillError(name, detail);
  }
}

/** Raised by every decoder of untrusted bytes (network or disk); never anything else. */
export class DecodeError extends RillError {
  override name = 'DecodeError';
  constructor(code: ErrorName, reason: string) {
    super(code, reason);
  }
}
