/**
 * Bad input gets a clear answer and the broker keeps serving: each hostile request below gets
 * its typed error (or, for unframeable bytes, a closed connection) while a second client keeps
 * producing on its own connection, and nothing already stored changes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, PartitionReader, Producer, RillError } from '../../src/client/index.js';
import { errorTable } from '../../src/lib/errors.js';
import { requestFrameBytesMax } from '../../src/lib/limits.js';
import { ApiKey } from '../../src/wire/apis.js';
import { encodeProduceRequest, decodeProduceResponse } from '../../src/wire/produce.js';
import { encodeBatch, BatchField } from '../../src/wire/record-batch.js';
import { startBroker, type BrokerProcess } from '../helpers/broker-process.js';
import { RawClient } from '../helpers/raw-client.js';

const topic = 'hostile';

function producePartitionError(body: Buffer): { errorCode: number; errorMessage: string } {
  const result = decodeProduceResponse(body, 0).topics[0]!.partitions[0]!;
  return { errorCode: result.errorCode, errorMessage: result.errorMessage };
}

function produceFrameBody(topicName: string, partition: number, batch: Buffer, acks = 1): Buffer {
  return Buffer.concat(encodeProduceRequest(acks, 5000, [{ name: topicName, partitions: [{ partition, batches: [batch] }] }]));
}

describe('bad input end to end', () => {
  let broker: BrokerProcess;
  let producer: Producer;
  let background: Promise<number>;
  let stopBackground = false;

  beforeAll(async () => {
    broker = await startBroker();
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic, partitions: 2 }, { topic: 'steady', partitions: 1 }]);
    admin.close();
    producer = new Producer({ bootstrap: broker.bootstrap, acks: 1 });
    // A well-behaved client producing throughout the hostile tests.
    background = (async () => {
      let acked = 0;
      while (!stopBackground) {
        await producer.send({ topic: 'steady', value: `steady-${acked}` });
        acked++;
        await new Promise((r) => setTimeout(r, 2));
      }
      return acked;
    })();
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('seeds data that must survive everything below', async () => {
    const meta = await producer.send({ topic, partition: 0, key: 'seed', value: 'precious' });
    expect(meta.offset).toBe(0n);
  });

  it('closes the connection on a frame longer than the limit, without buffering it', async () => {
    const raw = await RawClient.connect(broker.port);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(requestFrameBytesMax + 1);
    raw.write(header);
    expect(await raw.waitClosed()).toBe(true);
  });

  it('closes the connection on a frame shorter than a request header', async () => {
    const raw = await RawClient.connect(broker.port);
    raw.write(Buffer.from([0, 0, 0, 3, 1, 2, 3]));
    expect(await raw.waitClosed()).toBe(true);
  });

  it('answers an unknown api key and an unknown version with UNSUPPORTED_VERSION', async () => {
    const raw = await RawClient.connect(broker.port);
    raw.request(4242, 0, 1, Buffer.alloc(0));
    raw.request(ApiKey.Metadata, 99, 2, Buffer.alloc(0));
    for (const id of [1, 2]) {
      const reply = await raw.reply(id);
      expect(reply.errorCode).toBe(errorTable.UNSUPPORTED_VERSION.code);
      expect(raw.message(reply)).toMatch(/not supported/);
    }
    raw.close();
  });

  it('answers truncated and garbage bodies with MALFORMED_REQUEST and keeps the connection', async () => {
    const raw = await RawClient.connect(broker.port);
    raw.request(ApiKey.Produce, 0, 1, Buffer.from([1, 0, 0]));
    raw.request(ApiKey.Metadata, 0, 2, Buffer.from([0xc1, 0xff, 0x00]));
    raw.request(ApiKey.Fetch, 0, 3, Buffer.from('garbage garbage garbage'));
    raw.msgpackRequest(ApiKey.CreateTopics, 4, { topics: 'not-an-array' });
    for (const id of [1, 2, 3, 4]) expect((await raw.reply(id)).errorCode).toBe(errorTable.MALFORMED_REQUEST.code);
    raw.msgpackRequest(ApiKey.ApiVersions, 5, {});
    expect((await raw.reply(5)).errorCode).toBe(0);
    raw.close();
  });

  it('rejects a batch with a wrong CRC with CORRUPT_BATCH and stores nothing of it', async () => {
    const raw = await RawClient.connect(broker.port);
    const batch = encodeBatch([{ value: 'tampered' }], Date.now());
    batch[batch.length - 1]! ^= 0xff;
    raw.request(ApiKey.Produce, 0, 1, produceFrameBody(topic, 1, batch));
    const reply = await raw.reply(1);
    expect(reply.errorCode).toBe(0);
    const result = producePartitionError(reply.body);
    expect(result.errorCode).toBe(errorTable.CORRUPT_BATCH.code);
    expect(result.errorMessage).toMatch(/CRC/);
    raw.close();
    const admin = new Admin({ bootstrap: broker.bootstrap });
    expect((await admin.listOffsets(topic, 'latest'))[1]).toBe(0n);
    admin.close();
  });

  it('rejects a batch with a valid CRC but broken records with INVALID_BATCH', async () => {
    const raw = await RawClient.connect(broker.port);
    // A batch whose record count lies, re-signed so that its CRC is valid.
    const fixed = encodeBatch([{ value: 'x' }], Date.now());
    fixed.writeInt32BE(2, BatchField.recordsCount);
    fixed.writeInt32BE(1, BatchField.lastOffsetDelta);
    const { crc32c } = await import('../../src/wire/crc32c.js');
    fixed.writeUInt32BE(crc32c(fixed.subarray(BatchField.attributes)), BatchField.crc);
    raw.request(ApiKey.Produce, 0, 1, produceFrameBody(topic, 1, fixed));
    const result = producePartitionError((await raw.reply(1)).body);
    expect(result.errorCode).toBe(errorTable.INVALID_BATCH.code);
    raw.close();
  });

  it('rejects unknown topics and partitions, and invalid topic names', async () => {
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await expect(admin.createTopics([{ topic: 'bad/name', partitions: 1 }])).rejects.toMatchObject({ code: 'INVALID_TOPIC_NAME' });
    await expect(admin.createTopics([{ topic: 'x'.repeat(300), partitions: 1 }])).rejects.toMatchObject({ code: 'INVALID_TOPIC_NAME' });
    await expect(admin.createTopics([{ topic: 'zero', partitions: 0 }])).rejects.toMatchObject({ code: 'INVALID_PARTITIONS' });
    await expect(admin.createTopics([{ topic, partitions: 1 }])).rejects.toMatchObject({ code: 'TOPIC_ALREADY_EXISTS' });
    admin.close();
    const raw = await RawClient.connect(broker.port);
    raw.request(ApiKey.Produce, 0, 1, produceFrameBody('no-such-topic', 0, encodeBatch([{ value: 'v' }], Date.now())));
    raw.request(ApiKey.Produce, 0, 2, produceFrameBody(topic, 7, encodeBatch([{ value: 'v' }], Date.now())));
    for (const id of [1, 2]) expect(producePartitionError((await raw.reply(id)).body).errorCode).toBe(errorTable.UNKNOWN_TOPIC_OR_PARTITION.code);
    raw.close();
    const strict = new Producer({ bootstrap: broker.bootstrap });
    await expect(strict.send({ topic: 'no-such-topic', value: 'v' })).rejects.toBeInstanceOf(RillError);
    await strict.close();
  });

  it('rejects a record over the batch size limit with BATCH_TOO_LARGE', async () => {
    const raw = await RawClient.connect(broker.port);
    const batch = encodeBatch([{ value: Buffer.alloc(2 * 1024 * 1024, 7) }], Date.now());
    raw.request(ApiKey.Produce, 0, 1, produceFrameBody(topic, 0, batch));
    expect(producePartitionError((await raw.reply(1)).body).errorCode).toBe(errorTable.BATCH_TOO_LARGE.code);
    raw.close();
    await expect(producer.send({ topic, value: Buffer.alloc(2 * 1024 * 1024) })).rejects.toMatchObject({ code: 'BATCH_TOO_LARGE' });
  });

  it('kept serving the well-behaved client and left stored data untouched', async () => {
    stopBackground = true;
    const acked = await background;
    expect(acked).toBeGreaterThan(0);
    await producer.close();
    const reader = new PartitionReader({ bootstrap: broker.bootstrap, topic, partitions: [0], from: 'earliest', stopAtEnd: true });
    const values: string[] = [];
    for await (const m of reader) values.push(m.value!.toString());
    expect(values).toEqual(['precious']);
    const steady = new PartitionReader({ bootstrap: broker.bootstrap, topic: 'steady', from: 'earliest', stopAtEnd: true });
    let count = 0;
    for await (const m of steady) expect(m.value!.toString()).toBe(`steady-${count++}`);
    expect(count).toBe(acked);
    expect(broker.child.exitCode).toBeNull();
  });
});
