/**
 * The admin commands as an operator types them, against a broker process: create a topic with a
 * replication factor and describe its replicas, alter a topic's config (Kafka names too), add
 * partitions, delete a group (refused while it has members), delete records, and describe the
 * broker's configuration with the source of each value.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Consumer } from '../../src/client/consumer.js';
import { runCli, startBroker, type BrokerProcess } from '../helpers/broker-process.js';

describe('rill admin commands end to end', () => {
  let broker: BrokerProcess;
  let b: string[];

  beforeAll(async () => {
    broker = await startBroker({ env: { ...process.env, RILL_NODE_ID: '3' } });
    b = ['-b', broker.bootstrap];
  });

  afterAll(async () => {
    await broker?.kill();
  });

  it('creates with --replication-factor 1 (more than the one broker is INVALID_REPLICATION_FACTOR); describe shows leader, replicas and ISR', async () => {
    const created = await runCli(['topics', 'create', 'replicated', '-p', '2', '--replication-factor', '1', '--config', 'minInSyncReplicas=2', ...b]);
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('created topic replicated with 2 partitions, replication factor 1');

    const refused = await runCli(['topics', 'create', 'too-many', '-p', '2', '--replication-factor', '3', ...b]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe('rill: INVALID_REPLICATION_FACTOR: replication factor 3 is larger than the 1 live broker(s)\n');
    const outOfRange = await runCli(['topics', 'create', 'too-many', '--replication-factor', '17', ...b]);
    expect(outOfRange.code).toBe(2);
    expect(outOfRange.stderr).toContain('--replication-factor must be an integer in 1..16, got "17"');
    expect(JSON.parse((await runCli(['topics', 'list', '--json', ...b])).stdout)).not.toContain('too-many');

    const described = await runCli(['topics', 'describe', 'replicated', '--json', ...b]);
    expect(described.code).toBe(0);
    const description = JSON.parse(described.stdout);
    expect(description.replicationFactor).toBe(1);
    expect(description.partitions).toEqual([0, 1].map((partition) => ({
      partition, leader: 3, leaderEpoch: 0, replicas: [3], isr: [3], earliestOffset: 0, latestOffset: 0,
    })));
    // The setting is kept as given; a single broker acts on it as 1 (capped by the replication factor).
    expect(description.config).toMatchObject({ minInSyncReplicas: 2, uncleanLeaderElection: 0 });

    const text = await runCli(['topics', 'describe', 'replicated', ...b]);
    const lines = text.stdout.trim().split('\n');
    expect(lines[0]).toBe('topic replicated: 2 partitions, replication factor 1');
    expect(lines[1]).toContain('minInSyncReplicas=2');
    expect(lines[2]!.split(/\s+/)).toEqual(['PARTITION', 'LEADER', 'EPOCH', 'REPLICAS', 'ISR', 'EARLIEST', 'LATEST', 'STATUS']);
    expect(lines.slice(3).map((line) => line.split(/\s+/))).toEqual([['0', '3', '0', '3', '3', '0', '0'], ['1', '3', '0', '3', '3', '0', '0']]);

    const altered = await runCli(['topics', 'alter', 'replicated', '--config', 'unclean.leader.election.enable=true', '--config', 'min.insync.replicas=1', '--json', ...b]);
    expect(altered.code).toBe(0);
    expect(JSON.parse(altered.stdout)).toMatchObject({ minInSyncReplicas: 1, uncleanLeaderElection: 1 });
    const bad = await runCli(['topics', 'alter', 'replicated', '--config', 'minInSyncReplicas=0', ...b]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('INVALID_CONFIG: minInSyncReplicas: 0 is outside 1..16');
  });

  it('alters a topic config with Kafka names, resets a key, and names the closest key for a typo', async () => {
    expect((await runCli(['topics', 'create', 'conf', '-p', '1', ...b])).code).toBe(0);
    const altered = await runCli(['topics', 'alter', 'conf', '--config', 'retention.ms=1000', '--config', 'segment.bytes=1048576', '--json', ...b]);
    expect(altered.code).toBe(0);
    expect(JSON.parse(altered.stdout)).toMatchObject({ retentionMs: 1000, segmentBytes: 1048576 });
    const described = JSON.parse((await runCli(['topics', 'describe', 'conf', '--json', ...b])).stdout);
    expect(described.config).toMatchObject({ retentionMs: 1000, segmentBytes: 1048576 });
    const reset = await runCli(['topics', 'alter', 'conf', '--reset', 'retention.ms', '--json', ...b]);
    expect(reset.code).toBe(0);
    expect(JSON.parse(reset.stdout).retentionMs).toBe(7 * 24 * 3600 * 1000);
    const typo = await runCli(['topics', 'alter', 'conf', '--config', 'retention.msx=5', ...b]);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain('INVALID_CONFIG');
    expect(typo.stderr).toContain('did you mean "retention.ms"');
    const nothing = await runCli(['topics', 'alter', 'conf', ...b]);
    expect(nothing.code).toBe(2);
  });

  it('adds partitions, and refuses to shrink', async () => {
    expect((await runCli(['topics', 'create', 'grow', '-p', '2', ...b])).code).toBe(0);
    const grown = await runCli(['topics', 'add-partitions', 'grow', '--partitions', '5', ...b]);
    expect(grown.code).toBe(0);
    expect(JSON.parse((await runCli(['topics', 'describe', 'grow', '--json', ...b])).stdout).partitions).toHaveLength(5);
    const shrink = await runCli(['topics', 'add-partitions', 'grow', '-p', '3', ...b]);
    expect(shrink.code).toBe(1);
    expect(shrink.stderr).toContain('INVALID_PARTITIONS');
  });

  it('deletes records before an offset: consumers then start at the new log start', async () => {
    expect((await runCli(['topics', 'create', 'trim', '-p', '1', ...b])).code).toBe(0);
    const lines = Array.from({ length: 10 }, (_, i) => `line ${i}`).join('\n');
    expect((await runCli(['produce', 'trim', ...b], `${lines}\n`)).code).toBe(0);
    const deleted = await runCli(['records', 'delete', 'trim', '--partition', '0', '--before', '6', ...b]);
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toContain('log start is now 6');
    const consumed = await runCli(['consume', 'trim', '--from-beginning', '--exit-at-end', ...b]);
    expect(consumed.stdout.trim().split('\n')).toEqual(['line 6', 'line 7', 'line 8', 'line 9']);
    const past = await runCli(['records', 'delete', 'trim', '-p', '0', '--before', '99', ...b]);
    expect(past.code).toBe(1);
    expect(past.stderr).toContain('OFFSET_OUT_OF_RANGE');
  });

  it('deletes a group only once it has no live members', async () => {
    expect((await runCli(['topics', 'create', 'work', '-p', '2', ...b])).code).toBe(0);
    const member = new Consumer({ bootstrap: broker.bootstrap, groupId: 'workers' });
    member.subscribe(['work']);
    await member.run({ eachMessage: async () => undefined });
    try {
      const refused = await runCli(['groups', 'delete', 'workers', ...b]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('NON_EMPTY_GROUP');
    } finally {
      await member.close();
    }
    const deleted = await runCli(['groups', 'delete', 'workers', ...b]);
    expect(deleted.code).toBe(0);
    const list = JSON.parse((await runCli(['groups', 'list', '--json', ...b])).stdout) as { groupId: string }[];
    expect(list.map((g) => g.groupId)).not.toContain('workers');
    const again = await runCli(['groups', 'delete', 'workers', ...b]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('GROUP_ID_NOT_FOUND');
  });

  it('describes the broker configuration with the source of each value', async () => {
    const result = await runCli(['brokers', 'describe-config', '--json', ...b]);
    expect(result.code).toBe(0);
    const entries = JSON.parse(result.stdout) as { name: string; value: unknown; source: string }[];
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get('nodeId')).toMatchObject({ value: 3, source: 'env' });
    expect(byName.get('dataDir')).toMatchObject({ value: broker.dataDir, source: 'flag' });
    expect(byName.get('log.level')).toMatchObject({ value: 'info', source: 'default' });
  });
});
