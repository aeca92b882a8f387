/**
 * Operator conditions through a real in-process broker over the fault-injecting file layer: a
 * full disk and a failed fsync are logged with { topic, partition } and a `condition`, at most
 * once per partition per interval however many requests fail, and counted in
 * rill_operator_alerts_total.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { Admin } from '../../src/client/index.js';
import type { LogFields, LogLevel } from '../../src/lib/log.js';
import { FaultInjectingFileOps } from '../../src/storage/fault-file-ops.js';
import { tempDir } from '../helpers/broker-process.js';
import { connect, produceRaw } from './helpers.js';

interface Line {
  level: LogLevel;
  message: string;
  fields: LogFields | undefined;
}

const lines: Line[] = [];
const fileOps = new FaultInjectingFileOps();
const broker = new Broker({ dataDir: tempDir('alerts'), port: 0, fileOps, log: (level, message, fields) => lines.push({ level, message, fields }) });

afterAll(async () => {
  fileOps.clearFaults();
  await broker.stop();
});

function alertLines(condition: string): Line[] {
  return lines.filter((line) => line.fields?.['condition'] === condition);
}

async function alertsTotal(condition: string): Promise<number> {
  const match = new RegExp(`^rill_operator_alerts_total\\{condition="${condition}"\\} (\\d+)$`, 'm').exec(await broker.prometheus.text());
  return Number(match?.[1] ?? -1);
}

describe('operator alerts from storage faults', () => {
  it('logs a full disk once per partition with fields, and counts every failed append', async () => {
    await broker.start();
    const admin = new Admin({ bootstrap: `127.0.0.1:${broker.port}` });
    await admin.createTopics([{ topic: 'full', partitions: 1 }]);
    admin.close();
    const connection = connect(broker.port);
    try {
      fileOps.fillDisk(10);
      const failures = 20;
      for (let i = 0; i < failures; i++) {
        const outcome = await produceRaw(connection, 'full', 0, [`record ${i}`], 1);
        expect(outcome.errorCode).not.toBe(0);
      }
      fileOps.clearFaults();
      expect(alertLines('disk_full')).toEqual([expect.objectContaining({ level: 'warn', fields: expect.objectContaining({ topic: 'full', partition: 0 }) })]);
      expect(await alertsTotal('disk_full')).toBe(failures);
      expect((await produceRaw(connection, 'full', 0, ['after'], 1)).errorCode).toBe(0);
    } finally {
      connection.close();
    }
  });

  it('logs a failed fsync with fields and counts it', async () => {
    const admin = new Admin({ bootstrap: `127.0.0.1:${broker.port}` });
    await admin.createTopics([{ topic: 'fsync', partitions: 1 }]);
    admin.close();
    const connection = connect(broker.port);
    try {
      fileOps.inject('fdatasync', 'EIO', { times: 1 });
      const outcome = await produceRaw(connection, 'fsync', 0, ['lost?'], -1);
      expect(outcome.errorCode).not.toBe(0);
      expect(alertLines('fsync_failed')).toEqual([expect.objectContaining({ level: 'error', fields: expect.objectContaining({ topic: 'fsync', partition: 0 }) })]);
      expect(await alertsTotal('fsync_failed')).toBe(1);
    } finally {
      connection.close();
    }
  });
});
