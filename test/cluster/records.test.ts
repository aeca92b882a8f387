/** What Rill keeps in etcd: keys, and values read back as untrusted input. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ClusterStateError, clusterKeys, clusterNameProblem, decodeControllerRecord, decodeRegistration, encodeRecord, rackProblem,
  type BrokerRegistration,
} from '../../src/cluster/records.js';
import { clusterRecordBytesMax } from '../../src/lib/limits.js';

const keys = clusterKeys('prod');
const registration: BrokerRegistration = {
  nodeId: 3, listeners: [{ name: 'rill', host: 'rill-3.internal', port: 9092 }, { name: 'internal', host: '10.0.0.3', port: 9093 }],
  rack: 'eu-west-1a', version: '0.1.0', startedAtMs: 1_700_000_000_000, host: 'rill-3', pid: 4242, dataDir: '/var/lib/rill',
};

function reason(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ClusterStateError);
    expect((error as ClusterStateError).code).toBe('INVALID_CLUSTER_STATE');
    return (error as Error).message;
  }
  throw new Error('expected a ClusterStateError');
}

describe('cluster records', () => {
  it('lays keys out under /rill/<cluster>/', () => {
    expect(keys).toMatchObject({ brokersPrefix: '/rill/prod/brokers/', controller: '/rill/prod/controller' });
    expect(keys.broker(3)).toBe('/rill/prod/brokers/3');
  });

  it('reads back what it writes', () => {
    expect(decodeRegistration(keys.broker(3), encodeRecord(registration), keys)).toEqual(registration);
    expect(decodeRegistration(keys.broker(3), encodeRecord({ ...registration, rack: null }), keys).rack).toBeNull();
    expect(decodeControllerRecord(keys.controller, encodeRecord({ nodeId: 3, electedAtMs: 5 }))).toEqual({ nodeId: 3, electedAtMs: 5 });
  });

  it('refuses values that are not what Rill writes, saying which field', () => {
    const bad = (patch: Record<string, unknown>, key = keys.broker(3)): string => reason(() => decodeRegistration(key, Buffer.from(JSON.stringify({ ...registration, ...patch })), keys));
    expect(bad({}, keys.broker(4))).toMatch(/brokers\/4: holds node id 3, which is not the one its key names/);
    expect(bad({ nodeId: -1 })).toMatch(/nodeId must be an integer in 0\.\.2147483647/);
    expect(bad({ listeners: [] })).toMatch(/listeners must be an array of 1\.\.16 entries/);
    expect(bad({ listeners: [{ name: 'rill', host: 'h', port: 70000 }] })).toMatch(/listeners\[0\]\.port must be an integer in 1\.\.65535/);
    expect(bad({ listeners: ['x'] })).toMatch(/listeners\[0\] must be an object/);
    expect(bad({ rack: 'r'.repeat(65) })).toMatch(/rack must be a string of 1\.\.64 bytes/);
    expect(bad({ pid: 1.5 })).toMatch(/pid must be an integer/);
    expect(reason(() => decodeRegistration(keys.broker(3), Buffer.from('[1]'), keys))).toMatch(/not a JSON object/);
    expect(reason(() => decodeRegistration(keys.broker(3), Buffer.alloc(clusterRecordBytesMax + 1, 0x20), keys))).toMatch(/exceeds 8192/);
    expect(reason(() => decodeControllerRecord(keys.controller, Buffer.from('{"nodeId":1}')))).toMatch(/electedAtMs must be an integer/);
  });

  it('throws nothing but ClusterStateError for any bytes (property)', () => {
    const json = fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v)));
    const near = fc.record({
      nodeId: fc.oneof(fc.constant(3), fc.integer(), fc.string()), listeners: fc.oneof(fc.constant(registration.listeners), fc.array(fc.jsonValue(), { maxLength: 20 })),
      rack: fc.oneof(fc.constant(null), fc.string({ maxLength: 80 }), fc.integer()), version: fc.jsonValue(), startedAtMs: fc.oneof(fc.integer(), fc.double()), host: fc.string(), pid: fc.integer(), dataDir: fc.string(),
    }, { requiredKeys: [] }).map((v) => Buffer.from(JSON.stringify(v)));
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)), json, near), (bytes) => {
      for (const decode of [() => decodeRegistration(keys.broker(3), bytes, keys), () => decodeControllerRecord(keys.controller, bytes)]) {
        try {
          decode();
        } catch (error) {
          if (!(error instanceof ClusterStateError)) throw error;
        }
      }
    }), { numRuns: 2000 });
  });

  it('checks cluster names and racks as the settings take them', () => {
    expect(clusterNameProblem('prod-eu_1.a')).toBeNull();
    expect(clusterNameProblem('a/b')).toMatch(/only letters, digits/);
    expect(clusterNameProblem('x'.repeat(65))).toMatch(/1\.\.64 bytes/);
    expect(rackProblem('eu-west-1a')).toBeNull();
    expect(rackProblem('a\nb')).toMatch(/control characters/);
  });
});
