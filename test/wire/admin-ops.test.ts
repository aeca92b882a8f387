/**
 * The admin-operation bodies (IncrementalAlterConfigs, DescribeConfigs, CreatePartitions,
 * DeleteGroups, DeleteRecords) and topic config normalization: round trips, bounds, and
 * mutations that may only ever fail with DecodeError of the right code.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  decodeAlterConfigsRequest, decodeAlterConfigsResponse, decodeCreatePartitionsRequest, decodeDeleteGroupsRequest, decodeDeleteGroupsResponse,
  decodeDeleteRecordsRequest, decodeDeleteRecordsResponse, decodeDescribeConfigsRequest, decodeDescribeConfigsResponse,
} from '../../src/wire/admin-ops.js';
import { decodeTopicResults, topicConfigAliases as aliasesFromControl } from '../../src/wire/control.js';
import {
  alterTopicConfig, defaultTopicConfig, minInSyncReplicasFor, normalizeTopicConfig, topicConfigAliases, topicConfigBounds, topicConfigKeys, type ConfigEntries, type TopicConfig,
} from '../../src/wire/topic-config.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { RillError } from '../../src/lib/errors.js';
import { configEntriesMax, configNameBytesMax, configValueBytesMax, groupIdBytesMax, offsetMax, requestGroupsMax, requestPartitionsMax } from '../../src/lib/limits.js';
import { checkArbitraryBodies, checkMutatedBodies, expectDecodeError, type BodySample } from './helpers.js';

const topicNameArb = fc.stringMatching(/^[a-zA-Z0-9._-]{1,40}$/).filter((n) => n !== '.' && n !== '..');
const i16Arb = fc.integer({ min: -0x8000, max: 0x7fff });
const messageArb = fc.string({ maxLength: 60 });
// msgpackr decodes a map key "__proto__" as "__proto_" (its guard against prototype pollution), so
// that one name cannot round-trip; the broker then answers it as an unknown config key.
const configNameArb = fc.oneof(fc.constantFrom(...topicConfigKeys, ...Object.keys(topicConfigAliases)), fc.string({ maxLength: 20 }).filter((name) => name !== '__proto__'));
const configValueArb = fc.oneof(fc.integer(), fc.string({ maxLength: 20 }), fc.integer({ min: -1, max: 2 ** 40 }).map(String));
const entriesArb = fc.dictionary(configNameArb, configValueArb, { maxKeys: 8 });
const fullConfigArb: fc.Arbitrary<TopicConfig> = fc.record(
  Object.fromEntries(topicConfigKeys.map((key) => [key, fc.integer({ min: topicConfigBounds[key][0], max: Math.min(topicConfigBounds[key][1], 2 ** 40) })])) as Record<keyof TopicConfig, fc.Arbitrary<number>>,
);

function roundTrip(value: unknown, code: 'MALFORMED_REQUEST' | 'MALFORMED_RESPONSE' = 'MALFORMED_REQUEST'): unknown {
  return decodeMsgpack(encodeMsgpack(value), code);
}

function invalidConfig(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(RillError);
    expect((error as RillError).code).toBe('INVALID_CONFIG');
    return (error as RillError).message;
  }
  throw new Error('expected INVALID_CONFIG');
}

describe('topic config: Kafka aliases, decimal strings, suggestions', () => {
  it('every Kafka dotted name maps to a Rill key, and the table is exported from the wire module', () => {
    expect(aliasesFromControl).toBe(topicConfigAliases);
    expect(topicConfigAliases).toEqual({
      'retention.ms': 'retentionMs', 'retention.bytes': 'retentionBytes', 'segment.bytes': 'segmentBytes', 'segment.ms': 'segmentMs',
      'flush.messages': 'flushMessages', 'flush.ms': 'flushMs', 'min.insync.replicas': 'minInSyncReplicas',
      'unclean.leader.election.enable': 'uncleanLeaderElection', 'cleanup.policy': 'cleanupPolicy',
    });
  });

  it('an integer or its decimal string under either name gives the same config', () => {
    fc.assert(fc.property(fullConfigArb, fc.array(fc.boolean(), { minLength: 2 * topicConfigKeys.length, maxLength: 2 * topicConfigKeys.length }), (config, choices) => {
      const entries: ConfigEntries = {};
      const byKey = Object.fromEntries(Object.entries(topicConfigAliases).map(([alias, key]) => [key, alias]));
      topicConfigKeys.forEach((key, i) => {
        const name = choices[2 * i] ? byKey[key]! : key;
        entries[name] = choices[2 * i + 1] ? String(config[key]) : config[key];
      });
      expect(normalizeTopicConfig(entries)).toEqual(config);
    }), { numRuns: 300 });
  });

  it('an unknown key is INVALID_CONFIG naming the closest valid key', () => {
    expect(invalidConfig(() => normalizeTopicConfig({ 'retention.mss': 5 }))).toContain('did you mean "retention.ms"');
    expect(invalidConfig(() => normalizeTopicConfig({ retentionMS: 5 }))).toContain('did you mean "retentionMs"');
    expect(invalidConfig(() => normalizeTopicConfig({ 'segment.byte': '1024' }))).toContain('did you mean "segment.bytes"');
    expect(invalidConfig(() => normalizeTopicConfig({ zzzzzzzzzzzz: 1 }))).not.toContain('did you mean');
  });

  it('values that are not decimal integers, or out of bounds, are INVALID_CONFIG', () => {
    for (const value of ['', ' 5', '5 ', '+5', '1e3', '0x10', '1.5', '--1', '007', 'ten', '99999999999999999999']) {
      invalidConfig(() => normalizeTopicConfig({ 'retention.ms': value }));
    }
    invalidConfig(() => normalizeTopicConfig({ segmentBytes: 1023 }));
    invalidConfig(() => normalizeTopicConfig({ 'segment.bytes': String(2 ** 31) }));
    invalidConfig(() => normalizeTopicConfig({ segmentMs: 0 }));
    invalidConfig(() => normalizeTopicConfig({ retentionMs: -2 }));
    expect(normalizeTopicConfig({ 'retention.ms': '-1', flushMs: '0' })).toEqual({ retentionMs: -1, flushMs: 0 });
  });

  it('cleanup.policy: delete is accepted (and not stored); compact is refused saying compaction is not supported', () => {
    expect(normalizeTopicConfig({ 'cleanup.policy': 'delete' })).toEqual({});
    expect(normalizeTopicConfig({ cleanupPolicy: 'delete' })).toEqual({});
    expect(invalidConfig(() => normalizeTopicConfig({ 'cleanup.policy': 'compact' }))).toMatch(/compaction is not supported/);
    expect(invalidConfig(() => normalizeTopicConfig({ 'cleanup.policy': 'delete,compact' }))).toMatch(/compaction is not supported/);
    invalidConfig(() => normalizeTopicConfig({ 'cleanup.policy': 'remove' }));
    invalidConfig(() => normalizeTopicConfig({ 'cleanup.policy': 1 }));
  });

  it('minInSyncReplicas is 1..replicationFactorMax (default 2); uncleanLeaderElection is a switch: 0/1 or "false"/"true" (default 0)', () => {
    expect(defaultTopicConfig).toMatchObject({ minInSyncReplicas: 2, uncleanLeaderElection: 0 });
    expect(normalizeTopicConfig({ 'min.insync.replicas': '3', 'unclean.leader.election.enable': 'true' })).toEqual({ minInSyncReplicas: 3, uncleanLeaderElection: 1 });
    expect(normalizeTopicConfig({ minInSyncReplicas: 16, uncleanLeaderElection: 'false' })).toEqual({ minInSyncReplicas: 16, uncleanLeaderElection: 0 });
    expect(normalizeTopicConfig({ uncleanLeaderElection: '1' })).toEqual({ uncleanLeaderElection: 1 });
    expect(invalidConfig(() => normalizeTopicConfig({ minInSyncReplicas: 0 }))).toContain('outside 1..16');
    expect(invalidConfig(() => normalizeTopicConfig({ 'min.insync.replicas': '17' }))).toContain('outside 1..16');
    expect(invalidConfig(() => normalizeTopicConfig({ minInSyncReplicas: 'true' }))).toContain('is not a decimal integer');
    for (const value of [2, -1, 'yes', 'TRUE', ' true']) {
      expect(invalidConfig(() => normalizeTopicConfig({ 'unclean.leader.election.enable': value })), String(value)).toContain('0, 1, true or false');
    }
  });

  it('minInSyncReplicasFor caps the setting by the replication factor', () => {
    expect(minInSyncReplicasFor(defaultTopicConfig, 1)).toBe(1);
    expect(minInSyncReplicasFor(defaultTopicConfig, 3)).toBe(2);
    expect(minInSyncReplicasFor({ ...defaultTopicConfig, minInSyncReplicas: 5 }, 3)).toBe(3);
  });

  it('one key under two names is INVALID_CONFIG', () => {
    invalidConfig(() => normalizeTopicConfig({ retentionMs: 1, 'retention.ms': 1 }));
  });

  it('alter: set keys change, reset keys return to defaults, the rest stay; set and reset of one key is refused', () => {
    fc.assert(fc.property(fullConfigArb, fullConfigArb, fc.subarray([...topicConfigKeys]), fc.subarray([...topicConfigKeys]), (current, wanted, setKeys, resetCandidates) => {
      const resetKeys = resetCandidates.filter((key) => !setKeys.includes(key));
      const set = Object.fromEntries(setKeys.map((key) => [key, wanted[key]]));
      const next = alterTopicConfig(current, set, resetKeys);
      for (const key of topicConfigKeys) {
        const expected = setKeys.includes(key) ? wanted[key] : resetKeys.includes(key) ? defaultTopicConfig[key] : current[key];
        expect(next[key], key).toBe(expected);
      }
    }), { numRuns: 300 });
    invalidConfig(() => alterTopicConfig(defaultTopicConfig, { retentionMs: 5 }, ['retention.ms']));
    invalidConfig(() => alterTopicConfig(defaultTopicConfig, {}, ['retention.msx']));
  });

  it('normalization fails only with INVALID_CONFIG, whatever the entries', () => {
    fc.assert(fc.property(entriesArb, (entries) => {
      try {
        normalizeTopicConfig(entries);
      } catch (error) {
        expect((error as RillError).code).toBe('INVALID_CONFIG');
      }
    }), { numRuns: 1000 });
  });
});

describe('admin request bodies', () => {
  it('IncrementalAlterConfigs: round trip; set values as ints or strings; reset names', () => {
    const resourceArb = fc.record({ type: fc.constantFrom('topic' as const, 'broker' as const), name: topicNameArb, set: entriesArb, reset: fc.array(configNameArb, { maxLength: 4 }) });
    fc.assert(fc.property(fc.array(resourceArb, { maxLength: 4 }), (resources) => {
      const decoded = decodeAlterConfigsRequest(roundTrip({ resources }));
      expect(decoded.resources.map((r) => ({ ...r, set: { ...r.set } }))).toEqual(resources);
    }), { numRuns: 200 });
    expect(decodeAlterConfigsRequest(roundTrip({ resources: [{ type: 'topic', name: 't' }] }))).toEqual({ resources: [{ type: 'topic', name: 't', set: {}, reset: [] }] });
  });

  it('IncrementalAlterConfigs: bad shapes and bounds are MALFORMED_REQUEST', () => {
    const one = (resource: Record<string, unknown>) => () => decodeAlterConfigsRequest(roundTrip({ resources: [{ type: 'topic', name: 't', ...resource }] }));
    expectDecodeError(one({ type: 'group' }), 'MALFORMED_REQUEST');
    expectDecodeError(one({ set: { retentionMs: 1.5 } }), 'MALFORMED_REQUEST');
    expectDecodeError(one({ set: { retentionMs: [1] } }), 'MALFORMED_REQUEST');
    expectDecodeError(one({ set: { retentionMs: 'x'.repeat(configValueBytesMax + 1) } }), 'MALFORMED_REQUEST');
    expectDecodeError(one({ set: { ['k'.repeat(configNameBytesMax + 1)]: 1 } }), 'MALFORMED_REQUEST');
    expectDecodeError(one({ set: Object.fromEntries(Array.from({ length: configEntriesMax + 1 }, (_, i) => [`k${i}`, 1])) }), 'MALFORMED_REQUEST');
    expectDecodeError(one({ reset: Array.from({ length: configEntriesMax + 1 }, () => 'retentionMs') }), 'MALFORMED_REQUEST');
    expectDecodeError(one({ reset: [5] }), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeAlterConfigsRequest(roundTrip({ resources: {} })), 'MALFORMED_REQUEST');
  });

  it('DescribeConfigs request', () => {
    fc.assert(fc.property(fc.array(fc.record({ type: fc.constantFrom('topic' as const, 'broker' as const), name: fc.oneof(topicNameArb, fc.constant('')) }), { maxLength: 5 }), (resources) => {
      expect(decodeDescribeConfigsRequest(roundTrip({ resources }))).toEqual({ resources });
    }));
    expect(decodeDescribeConfigsRequest(roundTrip({ resources: [{ type: 'broker' }] }))).toEqual({ resources: [{ type: 'broker', name: '' }] });
    expectDecodeError(() => decodeDescribeConfigsRequest(roundTrip({ resources: [{ type: 'cluster', name: '' }] })), 'MALFORMED_REQUEST');
  });

  it('CreatePartitions request: any i32 count (the broker judges it per topic)', () => {
    fc.assert(fc.property(fc.array(fc.record({ name: topicNameArb, count: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }), { maxLength: 5 }), (topics) => {
      expect(decodeCreatePartitionsRequest(roundTrip({ topics }))).toEqual({ topics });
    }));
    expectDecodeError(() => decodeCreatePartitionsRequest(roundTrip({ topics: [{ name: 't', count: 2 ** 31 }] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeCreatePartitionsRequest(roundTrip({ topics: [{ name: 't' }] })), 'MALFORMED_REQUEST');
  });

  it('DeleteGroups request: at most requestGroupsMax ids of at most groupIdBytesMax bytes', () => {
    fc.assert(fc.property(fc.array(fc.string({ minLength: 1, maxLength: 30 }), { maxLength: 10 }), (groupIds) => {
      expect(decodeDeleteGroupsRequest(roundTrip({ groupIds }))).toEqual({ groupIds });
    }));
    expectDecodeError(() => decodeDeleteGroupsRequest(roundTrip({ groupIds: Array.from({ length: requestGroupsMax + 1 }, () => 'g') })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeDeleteGroupsRequest(roundTrip({ groupIds: ['g'.repeat(groupIdBytesMax + 1)] })), 'MALFORMED_REQUEST');
  });

  it('DeleteRecords request: beforeOffset -1 … offsetMax, as any integer width', () => {
    const offsetArb = fc.oneof(fc.constant(-1n), fc.bigInt({ min: 0n, max: offsetMax }));
    fc.assert(fc.property(fc.array(fc.record({ name: topicNameArb, partitions: fc.array(fc.record({ partition: fc.integer({ min: 0, max: 4095 }), beforeOffset: offsetArb }), { maxLength: 4 }) }), { maxLength: 4 }), (topics) => {
      expect(decodeDeleteRecordsRequest(roundTrip({ topics }))).toEqual({ topics });
    }), { numRuns: 200 });
    expect(decodeDeleteRecordsRequest(roundTrip({ topics: [{ name: 't', partitions: [{ partition: 0, beforeOffset: 7 }] }] })).topics[0]!.partitions[0]!.beforeOffset).toBe(7n);
    expectDecodeError(() => decodeDeleteRecordsRequest(roundTrip({ topics: [{ name: 't', partitions: [{ partition: 0, beforeOffset: -2 }] }] })), 'MALFORMED_REQUEST');
    expectDecodeError(() => decodeDeleteRecordsRequest(roundTrip({ topics: [{ name: 't', partitions: [{ partition: 0 }] }] })), 'MALFORMED_REQUEST');
    const many = Array.from({ length: requestPartitionsMax + 1 }, (_, i) => ({ partition: i % 4096, beforeOffset: 0 }));
    expectDecodeError(() => decodeDeleteRecordsRequest(roundTrip({ topics: [{ name: 't', partitions: many.slice(0, 4096) }, { name: 'u', partitions: many.slice(4096, 8192) }, { name: 'v', partitions: many.slice(8192) }] })), 'MALFORMED_REQUEST');
  });
});

describe('admin response bodies', () => {
  it('IncrementalAlterConfigs response: the whole config, or nil on error', () => {
    fc.assert(fc.property(fc.array(fc.record({ type: fc.constantFrom('topic' as const, 'broker' as const), name: topicNameArb, errorCode: i16Arb, errorMessage: messageArb, config: fc.option(fullConfigArb, { nil: null }) }), { maxLength: 4 }), (resources) => {
      expect(decodeAlterConfigsResponse(roundTrip({ resources }, 'MALFORMED_RESPONSE'))).toEqual(resources);
    }), { numRuns: 200 });
  });

  it('DescribeConfigs response: scalar values, known sources, secret defaults to false', () => {
    const entryArb = fc.record({
      name: fc.string({ minLength: 1, maxLength: 30 }),
      value: fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.string({ maxLength: 30 })),
      source: fc.constantFrom('default', 'file', 'env', 'flag', 'topic'),
      secret: fc.boolean(),
    });
    fc.assert(fc.property(fc.array(fc.record({ type: fc.constantFrom('topic' as const, 'broker' as const), name: topicNameArb, errorCode: i16Arb, errorMessage: messageArb, entries: fc.array(entryArb, { maxLength: 6 }) }), { maxLength: 3 }), (resources) => {
      expect(decodeDescribeConfigsResponse(roundTrip({ resources }, 'MALFORMED_RESPONSE'))).toEqual(resources);
    }), { numRuns: 200 });
    const [result] = decodeDescribeConfigsResponse(roundTrip({ resources: [{ type: 'broker', name: '', errorCode: 0, entries: [{ name: 'port', value: 1, source: 'flag' }] }] }, 'MALFORMED_RESPONSE'));
    expect(result!.entries).toEqual([{ name: 'port', value: 1, source: 'flag', secret: false }]);
    expectDecodeError(() => decodeDescribeConfigsResponse(roundTrip({ resources: [{ type: 'broker', name: '', errorCode: 0, entries: [{ name: 'p', value: 1, source: 'moon' }] }] }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
    expectDecodeError(() => decodeDescribeConfigsResponse(roundTrip({ resources: [{ type: 'broker', name: '', errorCode: 0, entries: [{ name: 'p', value: [1], source: 'file' }] }] }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
  });

  it('DeleteGroups and DeleteRecords responses', () => {
    fc.assert(fc.property(fc.array(fc.record({ groupId: fc.string({ minLength: 1, maxLength: 30 }), errorCode: i16Arb, errorMessage: messageArb }), { maxLength: 5 }), (groups) => {
      expect(decodeDeleteGroupsResponse(roundTrip({ groups }, 'MALFORMED_RESPONSE'))).toEqual(groups);
    }));
    const partitionArb = fc.record({ partition: fc.integer({ min: 0, max: 4095 }), errorCode: i16Arb, errorMessage: messageArb, lowWatermark: fc.oneof(fc.constant(-1n), fc.bigInt({ min: 0n, max: offsetMax })) });
    fc.assert(fc.property(fc.array(fc.record({ name: topicNameArb, partitions: fc.array(partitionArb, { maxLength: 4 }) }), { maxLength: 3 }), (topics) => {
      expect(decodeDeleteRecordsResponse(roundTrip({ topics }, 'MALFORMED_RESPONSE'))).toEqual(topics);
    }), { numRuns: 200 });
    expectDecodeError(() => decodeDeleteRecordsResponse(roundTrip({ topics: [{ name: 't', partitions: [{ partition: 0, errorCode: 0, lowWatermark: -2 }] }] }, 'MALFORMED_RESPONSE')), 'MALFORMED_RESPONSE');
  });
});

describe('admin body mutations', () => {
  const samples: BodySample[] = [
    [{ resources: [{ type: 'topic', name: 'orders', set: { 'retention.ms': '86400000', segmentBytes: 1 << 20 }, reset: ['flush.ms'] }] }, decodeAlterConfigsRequest, 'MALFORMED_REQUEST'],
    [{ resources: [{ type: 'broker', name: '' }, { type: 'topic', name: 'orders' }] }, decodeDescribeConfigsRequest, 'MALFORMED_REQUEST'],
    [{ topics: [{ name: 'orders', count: 6 }] }, decodeCreatePartitionsRequest, 'MALFORMED_REQUEST'],
    [{ groupIds: ['billing', 'ghost'] }, decodeDeleteGroupsRequest, 'MALFORMED_REQUEST'],
    [{ topics: [{ name: 'orders', partitions: [{ partition: 0, beforeOffset: 500n }, { partition: 1, beforeOffset: -1n }] }] }, decodeDeleteRecordsRequest, 'MALFORMED_REQUEST'],
    [{ resources: [{ type: 'topic', name: 'orders', errorCode: 0, errorMessage: '', config: { ...defaultTopicConfig } }] }, decodeAlterConfigsResponse, 'MALFORMED_RESPONSE'],
    [{ resources: [{ type: 'broker', name: '', errorCode: 0, errorMessage: '', entries: [{ name: 'port', value: 9092, source: 'flag', secret: false }, { name: 'pw', value: null, source: 'env', secret: true }] }] }, decodeDescribeConfigsResponse, 'MALFORMED_RESPONSE'],
    [{ topics: [{ name: 'orders', errorCode: 9, errorMessage: 'no' }] }, decodeTopicResults, 'MALFORMED_RESPONSE'],
    [{ groups: [{ groupId: 'billing', errorCode: 0, errorMessage: '' }] }, decodeDeleteGroupsResponse, 'MALFORMED_RESPONSE'],
    [{ topics: [{ name: 'orders', partitions: [{ partition: 0, errorCode: 0, errorMessage: '', lowWatermark: 500n }] }] }, decodeDeleteRecordsResponse, 'MALFORMED_RESPONSE'],
  ];

  it('mutated bodies fail only with DecodeError of the body\'s code', () => {
    checkMutatedBodies(samples, 3000);
  });

  it('arbitrary MessagePack values fail only with DecodeError', () => {
    checkArbitraryBodies(samples, 1000);
  });
});
