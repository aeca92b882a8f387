/** Rill's TypeScript client. */
export { Producer, type ProducerOptions, type ProducerRecord, type RecordMetadata, type AcksOption } from './producer.js';
export { PartitionReader, type ReaderOptions, type Message, type StartOffset } from './reader.js';
export {
  Admin, type NewTopic, type TopicDescription, type PartitionDescription, type OffsetQuery, type Acl, type AclFilter, type ClusterDescription,
} from './admin.js';
export { Cluster, type ClientOptions } from './cluster.js';
export { type SaslOptions, type SaslMechanismOption } from './sasl.js';
export type { ClientTlsOptions } from './connection.js';
export {
  clientChannelNames,
  type ClientLogger,
  type ClientKind,
  type RequestEvent,
  type RetryEvent,
  type ReconnectEvent,
  type RebalanceEvent,
  type ThrottleEvent,
} from './instrumentation.js';
export { partitionForKey, murmur2 } from './partitioner.js';
export { RillError, DecodeError, errorTable, type ErrorName } from '../lib/errors.js';
export { defaultTopicConfig, type TopicConfig } from '../wire/control.js';
export type { RecordHeader, RecordInput } from '../wire/record-batch.js';
export {
  Consumer,
  type ConsumerOptions,
  type RunOptions,
  type EachBatchPayload,
  type TopicPartition,
  type TopicPartitionsSelector,
  type OffsetToCommit,
  type RebalanceEventName,
  type RebalanceListener,
  type ErrorListener,
} from './consumer.js';
