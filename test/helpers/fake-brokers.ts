/**
 * Fake brokers for client routing tests: TCP servers that speak just enough of Rill's protocol
 * (Metadata, InitProducerId, Produce, ListOffsets, Fetch) over one shared, "replicated" log per
 * partition. Each partition has a leader; a broker answers NOT_LEADER for a partition it does not
 * lead, as a real cluster member will. Leadership changes when a test says so. Produce checks an
 * idempotent producer's sequences as the broker does (next sequence stored, a retry of a stored
 * batch answered with its original offset, anything else OUT_OF_ORDER_SEQUENCE), so a client that
 * reorders or duplicates a partition's batches is caught.
 */
import net from 'node:net';
import { errorCodeOf } from '../../src/lib/errors.js';
import { requestFrameBytesMax, requestHeaderBytes } from '../../src/lib/limits.js';
import { ApiKey, OffsetSpec } from '../../src/wire/apis.js';
import { decodeFetchRequest, encodeFetchResponse, type FetchPartitionResponse } from '../../src/wire/fetch.js';
import { FrameDecoder, decodeRequestHeader, encodeResponseHead } from '../../src/wire/frame.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { decodeProduceRequest, encodeProduceResponse, type ProducePartitionResponse } from '../../src/wire/produce.js';
import { BatchField, forEachRecord, readBatchSize, stampBaseOffset } from '../../src/wire/record-batch.js';

const ErrorCodes = {
  NOT_LEADER: errorCodeOf('NOT_LEADER'),
  OUT_OF_ORDER_SEQUENCE: errorCodeOf('OUT_OF_ORDER_SEQUENCE'),
  UNSUPPORTED_VERSION: errorCodeOf('UNSUPPORTED_VERSION'),
};

export interface FakePartition {
  /** Stored batches (base offset stamped) and the values of their records, in offset order. */
  batches: { baseOffset: number; bytes: Buffer }[];
  values: string[];
  /** Idempotence: the next expected sequence and the base offset of each stored sequence. */
  producerEpoch: number;
  nextSequence: number;
  offsetOfSequence: Map<number, number>;
}

export interface LoggedRequest {
  nodeId: number;
  apiKey: number;
  /** "topic/partition" of every partition the request named, in request order. */
  partitions: string[];
  /** Partitions this broker answered NOT_LEADER for. */
  notLeader: string[];
}

/** Before a produce is stored: return an error code to answer, and whether to store the batch anyway. */
export type ProduceHook = (nodeId: number, topic: string, partition: number) => { errorCode: number; store: boolean } | undefined;

export class FakeCluster {
  readonly brokers: FakeBroker[] = [];
  readonly leaders = new Map<string, number[]>();
  readonly partitions = new Map<string, FakePartition[]>();
  readonly requests: LoggedRequest[] = [];
  produceHook: ProduceHook | undefined;
  /** What a broker answers for a partition it does not lead (a broker that dropped the replica: UNKNOWN_TOPIC_OR_PARTITION). */
  notLeaderErrorCode = ErrorCodes.NOT_LEADER;

  static async start(nodeIds: number[], topics: Record<string, number[]>): Promise<FakeCluster> {
    const cluster = new FakeCluster();
    for (const [name, leaders] of Object.entries(topics)) {
      cluster.leaders.set(name, [...leaders]);
      cluster.partitions.set(name, leaders.map(() => ({ batches: [], values: [], producerEpoch: -1, nextSequence: 0, offsetOfSequence: new Map() })));
    }
    for (const nodeId of nodeIds) {
      const broker = new FakeBroker(nodeId, cluster);
      await broker.listen();
      cluster.brokers.push(broker);
    }
    return cluster;
  }

  get bootstrap(): string {
    return this.brokers.map((b) => `127.0.0.1:${b.port}`).join(',');
  }

  broker(nodeId: number): FakeBroker {
    return this.brokers.find((b) => b.nodeId === nodeId)!;
  }

  /** Requests of one API, optionally only those one broker got. */
  requestsOf(apiKey: number, nodeId?: number): LoggedRequest[] {
    return this.requests.filter((r) => r.apiKey === apiKey && (nodeId === undefined || r.nodeId === nodeId));
  }

  async close(): Promise<void> {
    await Promise.all(this.brokers.map((b) => b.close()));
  }
}

export class FakeBroker {
  port = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(readonly nodeId: number, private readonly cluster: FakeCluster) {
    this.server = net.createServer((socket) => this.accept(socket));
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => {
      this.port = (this.server.address() as net.AddressInfo).port;
      resolve();
    }));
  }

  /** Stops listening and cuts every connection (a broker that died). */
  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = new FrameDecoder(requestFrameBytesMax, requestHeaderBytes);
    socket.on('data', (chunk: Buffer) => decoder.push(chunk, (frame) => this.onRequest(socket, Buffer.from(frame))));
  }

  private onRequest(socket: net.Socket, frame: Buffer): void {
    const { apiKey, correlationId } = decodeRequestHeader(frame);
    const log: LoggedRequest = { nodeId: this.nodeId, apiKey, partitions: [], notLeader: [] };
    this.cluster.requests.push(log);
    const reply = (chunks: Buffer[]): void => {
      const bytes = chunks.reduce((sum, c) => sum + c.length, 0);
      if (!socket.destroyed) socket.write(Buffer.concat([encodeResponseHead(correlationId, 0, bytes), ...chunks]));
    };
    const body = frame.subarray(requestHeaderBytes);
    if (apiKey === ApiKey.Metadata) return reply([encodeMsgpack(this.metadata())]);
    if (apiKey === ApiKey.InitProducerId) return reply([encodeMsgpack({ producerId: 7, producerEpoch: 0 })]);
    if (apiKey === ApiKey.Produce) return reply([this.produce(frame, log)]);
    if (apiKey === ApiKey.ListOffsets) return reply([encodeMsgpack(this.listOffsets(decodeMsgpack(body), log))]);
    if (apiKey === ApiKey.Fetch) {
      const { chunks } = this.fetch(frame, log);
      // An empty answer waits a little, as a long poll would, so readers do not spin.
      const empty = chunks.length > 0 && log.partitions.length > 0 && chunks.every((c) => c.length < 64);
      if (empty) setTimeout(() => reply(chunks), 20);
      else reply(chunks);
      return;
    }
    if (!socket.destroyed) socket.write(encodeResponseHead(correlationId, ErrorCodes.UNSUPPORTED_VERSION, 0));
  }

  private metadata(): unknown {
    return {
      brokers: this.cluster.brokers.map((b) => ({ nodeId: b.nodeId, host: '127.0.0.1', port: b.port })),
      controllerId: -1,
      topics: [...this.cluster.leaders].map(([name, leaders]) => ({
        name, errorCode: 0, partitions: leaders.map((leader, partition) => ({ partition, leader, errorCode: 0 })), config: null,
      })),
    };
  }

  private leads(topic: string, partition: number, log: LoggedRequest): boolean {
    log.partitions.push(`${topic}/${partition}`);
    if (this.cluster.leaders.get(topic)?.[partition] === this.nodeId) return true;
    log.notLeader.push(`${topic}/${partition}`);
    return false;
  }

  private produce(frame: Buffer, log: LoggedRequest): Buffer {
    const request = decodeProduceRequest(frame, requestHeaderBytes);
    return encodeProduceResponse(request.topics.map((topic) => ({
      name: topic.name,
      partitions: topic.partitions.map((p): ProducePartitionResponse => {
        const answer = (errorCode: number, baseOffset = -1): ProducePartitionResponse => ({ partition: p.partition, errorCode, baseOffset, logStartOffset: 0, durability: 0, errorMessage: '' });
        if (!this.leads(topic.name, p.partition, log)) return answer(this.cluster.notLeaderErrorCode);
        const state = this.cluster.partitions.get(topic.name)![p.partition]!;
        const hooked = this.cluster.produceHook?.(this.nodeId, topic.name, p.partition);
        if (hooked !== undefined && !hooked.store) return answer(hooked.errorCode);
        const baseOffset = append(state, p.records);
        if (hooked !== undefined) return answer(hooked.errorCode);
        return baseOffset < 0 ? answer(ErrorCodes.OUT_OF_ORDER_SEQUENCE) : answer(0, baseOffset);
      }),
    })));
  }

  private listOffsets(request: unknown, log: LoggedRequest): unknown {
    const { topics } = request as { topics: { name: string; partitions: { partition: number; timestamp: number }[] }[] };
    return {
      topics: topics.map((topic) => ({
        name: topic.name,
        partitions: topic.partitions.map(({ partition, timestamp }) => {
          if (!this.leads(topic.name, partition, log)) return { partition, errorCode: ErrorCodes.NOT_LEADER, offset: -1, timestamp: -1 };
          const values = this.cluster.partitions.get(topic.name)![partition]!.values;
          return { partition, errorCode: 0, offset: timestamp === OffsetSpec.earliest ? 0 : values.length, timestamp: -1 };
        }),
      })),
    };
  }

  private fetch(frame: Buffer, log: LoggedRequest): { chunks: Buffer[] } {
    const request = decodeFetchRequest(frame, requestHeaderBytes);
    return encodeFetchResponse(request.topics.map((topic) => ({
      name: topic.name,
      partitions: topic.partitions.map((p): FetchPartitionResponse => {
        const state = this.cluster.partitions.get(topic.name)![p.partition]!;
        const base = { partition: p.partition, highWatermark: state.values.length, logStartOffset: 0 };
        if (!this.leads(topic.name, p.partition, log)) return { ...base, errorCode: ErrorCodes.NOT_LEADER, records: [] };
        const records = state.batches.filter((b) => b.baseOffset + recordsIn(b.bytes) > p.fetchOffset).map((b) => b.bytes);
        return { ...base, errorCode: 0, records };
      }),
    })));
  }
}

function recordsIn(batch: Buffer): number {
  return batch.readInt32BE(BatchField.recordsCount);
}

/** Stores the batches of one produce entry; returns the first base offset, or -1 for a sequence out of order. */
function append(state: FakePartition, records: Buffer): number {
  let first = -1;
  for (let pos = 0; pos < records.length;) {
    const size = readBatchSize(records, pos);
    const bytes = Buffer.from(records.subarray(pos, pos + size));
    pos += size;
    const producerId = bytes.readBigInt64BE(BatchField.producerId);
    const sequence = bytes.readInt32BE(BatchField.baseSequence);
    if (producerId >= 0n) {
      // A higher epoch starts the producer's sequences again from 0 (the producer reset the partition).
      const epoch = bytes.readInt16BE(BatchField.producerEpoch);
      if (epoch > state.producerEpoch) {
        state.producerEpoch = epoch;
        state.nextSequence = 0;
        state.offsetOfSequence.clear();
      }
      const stored = state.offsetOfSequence.get(sequence);
      if (stored !== undefined) {
        if (first < 0) first = stored;
        continue;
      }
      if (sequence !== state.nextSequence) return -1;
      state.nextSequence = sequence + recordsIn(bytes);
      state.offsetOfSequence.set(sequence, state.values.length);
    }
    const baseOffset = state.values.length;
    stampBaseOffset(bytes, 0, baseOffset);
    forEachRecord(bytes, 0, bytes.length, (_offset, _timestamp, _key, value) => state.values.push(value?.toString() ?? ''));
    state.batches.push({ baseOffset, bytes });
    if (first < 0) first = baseOffset;
  }
  return first;
}
