/**
 * Every bound Rill enforces, in one place. Names end with their unit. Untrusted lengths are
 * checked against these before anything is allocated or buffered.
 */

/** Largest request frame the broker accepts (length prefix excluded). */
export const requestFrameBytesMax = 16 * 1024 * 1024;
/** Largest response frame a client accepts (length prefix excluded). */
export const responseFrameBytesMax = 128 * 1024 * 1024;
/** Fixed request header after the length prefix: apiKey u16, apiVersion u16, correlationId u32. */
export const requestHeaderBytes = 8;
/** Fixed response header after the length prefix: correlationId u32, errorCode i16. */
export const responseHeaderBytes = 6;

/** Largest record batch (whole batch, header included) a producer may send; Kafka's default is 1 MiB + 12. */
export const batchBytesMax = 1024 * 1024 + 12;
/** Most records one batch may hold. */
export const batchRecordsMax = 1_000_000;
/** Most headers one record may carry. */
export const recordHeadersMax = 1024;

/** Topic names: [a-zA-Z0-9._-], 1..topicNameBytesMax, not "." or "..". */
export const topicNameBytesMax = 200;
/** Most partitions one topic may have. */
export const topicPartitionsMax = 4096;
/** Most topics one broker holds. */
export const topicsMax = 10_000;
/** Most topics/partitions named in one request. */
export const requestTopicsMax = 1000;
export const requestPartitionsMax = 10_000;
/** Most groups named in one DeleteGroups request. */
export const requestGroupsMax = 100;
/** Most users named in one DescribeUserScramCredentials or AlterUserScramCredentials request. */
export const requestUsersMax = 1000;

/** Requests a connection may have in progress before the broker stops reading from it. */
export const connectionInFlightRequestsMax = 64;
/** Bytes queued for a slow reader before the broker stops reading its requests. */
export const connectionWriteBufferBytesMax = 8 * 1024 * 1024;
/** Bytes of partly received request frames across all connections before the broker stops reading those connections. */
export const partialFramesBytesMax = 256 * 1024 * 1024;
/** A connection that started a frame and sends nothing more of it for this long is closed. */
export const partialFrameIdleMsMax = 30_000;
/** Connections the broker accepts at once. */
export const connectionsMax = 10_000;
/** Longest a quota holds back one reply (and mutes its connection); a request worth more of the rate has the rest forgiven. */
export const quotaThrottleMsMax = 10_000;
/** Principals and client addresses whose byte-rate quota state is kept, per quota; the least recently active is forgotten first. */
export const quotaKeysMax = 2 * connectionsMax;

/** Largest fetch response the broker builds, whatever the client asks. */
export const fetchResponseBytesMax = 64 * 1024 * 1024;
/** Longest a fetch may wait for data. */
export const fetchWaitMsMax = 30_000;
/** Longest a produce with acks=all may wait for its fsync before it times out. */
export const produceTimeoutMsMax = 300_000;

/** Offsets: 64-bit signed, non-negative. */
export const offsetMax = (1n << 63n) - 1n;

/** Sparse index: one entry at least every this many log bytes. */
export const indexIntervalBytes = 4096;
/** Segment size bounds a topic may configure. */
export const segmentBytesMin = 1024;
export const segmentBytesMax = 1024 * 1024 * 1024;

/** Topic config entries: most in one map, longest name and longest string value. */
export const configEntriesMax = 64;
export const configNameBytesMax = 255;
export const configValueBytesMax = 255;

/** Most entries in a MessagePack array or map in a control body. */
export const bodyArrayLengthMax = 100_000;
/** Longest string field in a control body (ids, names, messages). */
export const bodyStringBytesMax = 4096;

// ---------------------------------------------------------------------------------------------
// Consumer groups (src/coordinator, src/broker/group-store.ts)
// ---------------------------------------------------------------------------------------------

/** Group ids: 1..groupIdBytesMax UTF-8 bytes, no control characters. */
export const groupIdBytesMax = 255;
/** Member ids (client generated, e.g. a UUID): 1..memberIdBytesMax UTF-8 bytes. */
export const memberIdBytesMax = 255;
/** Live members one group may hold; a join past it gets GROUP_MAX_SIZE_REACHED. */
export const groupMembersMax = 1000;
/** Topics one member may subscribe to. */
export const groupSubscribedTopicsMax = 1000;
/** Bounds on the session timeout a member may request (broker defaults; configurable inside these). */
export const sessionTimeoutMsMin = 1000;
export const sessionTimeoutMsMax = 1_800_000;
/** Bounds on the rebalance timeout (how long a member may take to release revoked partitions). */
export const rebalanceTimeoutMsMin = 1000;
export const rebalanceTimeoutMsMax = 1_800_000;
/** Rebalance events kept per group (oldest dropped first). */
export const rebalanceHistoryMax = 50;
/** Partition moves kept per rebalance event; the rest are only counted. */
export const rebalanceMovesMax = 1000;
/** Longest metadata string stored with a committed offset. */
export const offsetMetadataBytesMax = 4096;
/** Largest record in the group log (one group's target assignment can be large). */
export const groupRecordBytesMax = 32 * 1024 * 1024;
/** The group log is compacted when it is larger than this and than groupLogCompactRatio x its last snapshot. */
export const groupLogCompactBytesMin = 1024 * 1024;
export const groupLogCompactRatio = 4;

// ---------------------------------------------------------------------------------------------
// Idempotent producer (src/broker/producer-state.ts, src/client/producer.ts)
// ---------------------------------------------------------------------------------------------

/** Batches remembered per producer and partition for duplicate detection (Kafka's 5); also the most requests an idempotent producer may have in flight. */
export const producerStateBatchesMax = 5;
/** Producers whose state one partition keeps; past it the least recently active one is forgotten. */
export const producersPerPartitionMax = 10_000;
/** A producer silent for this long on a partition is forgotten there (Kafka's producer.id.expiration.ms). */
export const producerIdExpirationMs = 24 * 3600 * 1000;
/** A partition writes a producer-state snapshot after this many appended bytes (bounds the rebuild scan after a crash). */
export const producerSnapshotIntervalBytes = 32 * 1024 * 1024;
/** Without a usable snapshot, the rebuild scans at most the segments holding the log's last this-many bytes. */
export const producerStateScanBytesMax = 256 * 1024 * 1024;
/** Largest producer-state snapshot file read back. */
export const producerSnapshotBytesMax = 64 * 1024 * 1024;
/** Producer ids are reserved durably in blocks of this many (one fsync per block). */
export const producerIdBlockSize = 1000;

// ---------------------------------------------------------------------------------------------
// Leader epochs (src/storage/leader-epoch-file.ts)
// ---------------------------------------------------------------------------------------------

/** Leader epochs one partition remembers (one per leadership that wrote records); past it the oldest is dropped. */
export const leaderEpochEntriesMax = 65_536;

// ---------------------------------------------------------------------------------------------
// Cluster (src/cluster/: what brokers keep in etcd, and what Metadata says of them)
// ---------------------------------------------------------------------------------------------

/** Longest cluster name (`--cluster`): it is part of every etcd key. */
export const clusterNameBytesMax = 64;
/** Longest rack (`--rack`), in etcd and in Metadata. */
export const rackBytesMax = 64;
/** Largest broker registration or controller record read back from etcd. */
export const clusterRecordBytesMax = 8 * 1024;
/** Most listeners one broker registration may name. */
export const brokerListenersMax = 16;
/** Most replicas one partition may have (a topic's replication factor); also bounds Metadata's replica and ISR lists. */
export const replicationFactorMax = 16;
