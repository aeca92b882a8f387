/** The partition log storage: what the broker imports. */
export { PartitionLog, checkpointIntervalMs } from './partition-log.js';
export type { PartitionLogOptions, AppendBatch, RetentionResult } from './partition-log.js';
export type { ReadResult } from './segment-reader.js';
export type { RecoveryReport } from './recovery.js';
export { nodeFileOps } from './file-ops.js';
export type { FileOps, OpenFlags } from './file-ops.js';
export { FaultInjectingFileOps } from './fault-file-ops.js';
export type { FaultOp } from './fault-file-ops.js';
