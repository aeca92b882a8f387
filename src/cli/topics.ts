/**
 * `rill topics create|list|describe|alter|add-partitions|delete`: one `topics.command(...)`
 * each, with an example in its help.
 */
import type { Command } from 'commander';
import type { TopicConfig } from '../wire/control.js';
import type { TopicDescription } from '../client/admin.js';
import { replicationFactorMax, topicPartitionsMax as partitionsMax } from '../lib/limits.js';
import { collect, integerIn, topicConfigEntries, UsageError } from './args.js';
import { addClientOptions, withAdmin, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';

export function registerTopics(program: Command, run: Run): void {
  const topics = program.command('topics').description('create, list, describe and delete topics').addHelpText('after', `
Examples:
  rill topics create orders -p 8 --replication-factor 3 --config minInSyncReplicas=2
  rill topics list
  rill topics describe orders --json
  rill topics alter orders --config retention.ms=3600000
  rill topics add-partitions orders --partitions 12`);

  addClientOptions(topics.command('create').argument('<name>', 'topic name'))
    .description('create a topic')
    .option('-p, --partitions <n>', `number of partitions (1..${partitionsMax})`, integerIn('--partitions', 1, partitionsMax), 1)
    .option(
      '--replication-factor <r>',
      `copies of each partition (1..${replicationFactorMax}, at most the live brokers; default: min(3, brokers) in a cluster, 1 on a single broker)`,
      integerIn('--replication-factor', 1, replicationFactorMax),
    )
    .option('--config <key=value>', 'topic setting, repeatable (e.g. retention.ms=86400000 or retentionMs=86400000)', collect)
    .addHelpText('after', `
acks all waits for minInSyncReplicas in-sync replicas (default 2, never more than the replication
factor: 1 on a single broker).

Examples:
  rill topics create orders --partitions 8
  rill topics create orders -p 6 --replication-factor 3 --config minInSyncReplicas=2
  rill topics create orders -p 3 --config retention.ms=86400000 --config segment.bytes=1048576`)
    .action((name: string, flags: ClientFlags & { partitions: number; replicationFactor?: number; config?: string[] }) => run(async () => {
      const config = topicConfigEntries(flags.config ?? []);
      return withAdmin(flags, async (admin) => {
        // Any key goes to the broker, which validates it and names the closest known key.
        const topic = { topic: name, partitions: flags.partitions, replicationFactor: flags.replicationFactor, config: config as Partial<TopicConfig> };
        await admin.createTopics([topic]);
        const replicated = flags.replicationFactor === undefined ? '' : `, replication factor ${flags.replicationFactor}`;
        process.stdout.write(`created topic ${name} with ${flags.partitions} partition${flags.partitions === 1 ? '' : 's'}${replicated}\n`);
        return 0;
      });
    }));

  addClientOptions(topics.command('list'))
    .description('list topic names')
    .option('--json', 'print a JSON array')
    .addHelpText('after', '\nExample:\n  rill topics list --json')
    .action((flags: ClientFlags & { json?: boolean }) => run(() => withAdmin(flags, async (admin) => {
      const names = await admin.listTopics();
      if (flags.json === true) printJson(names);
      else for (const topic of names) process.stdout.write(`${topic}\n`);
      return 0;
    })));

  addClientOptions(topics.command('describe').argument('<name>', 'topic name'))
    .description('partitions (leader, replicas, in-sync replicas, offsets) and config of a topic')
    .option('--json', 'print JSON: per partition partition, leader, leaderEpoch, replicas, isr, earliestOffset, latestOffset')
    .addHelpText('after', `
A partition is marked under-replicated when its ISR is smaller than its replica list, and offline
when it has no leader (-1). Offsets are -1 where the leader could not say.

Example:
  rill topics describe orders`)
    .action((name: string, flags: ClientFlags & { json?: boolean }) => run(() => withAdmin(flags, async (admin) => {
      const description = await admin.describeTopic(name);
      if (flags.json === true) printJson(description);
      else printDescription(description);
      return 0;
    })));

  addClientOptions(topics.command('alter').argument('<name>', 'topic name'))
    .description('change a topic\'s settings; the keys not named keep their values')
    .option('--config <key=value>', 'setting to change, repeatable (Kafka names such as retention.ms work too)', collect)
    .option('--reset <key>', 'setting to put back to its default, repeatable', collect)
    .option('--json', 'print the new config as JSON')
    .addHelpText('after', `
Takes effect at once on the open partitions (retention at the next housekeeping pass, segment
size at the next append) and survives restarts.

Examples:
  rill topics alter orders --config retention.ms=3600000 --config segment.bytes=67108864
  rill topics alter orders --reset retentionMs`)
    .action((name: string, flags: ClientFlags & { config?: string[]; reset?: string[]; json?: boolean }) => run(async () => {
      const set = topicConfigEntries(flags.config ?? []);
      const reset = flags.reset ?? [];
      if (Object.keys(set).length === 0 && reset.length === 0) throw new UsageError('give at least one --config KEY=VALUE or --reset KEY');
      return withAdmin(flags, async (admin) => {
        const config = await admin.alterTopicConfig(name, set, reset);
        if (flags.json === true) printJson(config);
        else process.stdout.write(`altered topic ${name}: ${Object.entries(config).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
        return 0;
      });
    }));

  addClientOptions(topics.command('add-partitions').argument('<name>', 'topic name'))
    .description('grow a topic to a new partition count (partitions are never removed)')
    .requiredOption('-p, --partitions <n>', `the new total number of partitions (more than now, at most ${partitionsMax})`, integerIn('--partitions', 1, partitionsMax))
    .addHelpText('after', `
Keyed records map to murmur2(key) % partitions: after this, a key may land on another partition
than its earlier records, so per-key order holds only from here on. Producers and readers notice
the new partitions within their metadata max age (30 s by default); group members are assigned
them at once.

Example:
  rill topics add-partitions orders --partitions 12`)
    .action((name: string, flags: ClientFlags & { partitions: number }) => run(() => withAdmin(flags, async (admin) => {
      await admin.createPartitions(name, flags.partitions);
      process.stdout.write(`topic ${name} now has ${flags.partitions} partitions\n`);
      return 0;
    })));

  addClientOptions(topics.command('delete').argument('<name>', 'topic name'))
    .description('delete a topic and its data')
    .addHelpText('after', '\nExample:\n  rill topics delete orders')
    .action((name: string, flags: ClientFlags) => run(() => withAdmin(flags, async (admin) => {
      await admin.deleteTopics([name]);
      process.stdout.write(`deleted topic ${name}\n`);
      return 0;
    })));
}

/** What is wrong with a partition, for the STATUS column: offline, under-replicated, or nothing. */
function partitionStatus(p: { leader: number; replicas: readonly number[]; isr: readonly number[] }): string {
  if (p.leader < 0) return 'offline';
  if (p.isr.length < p.replicas.length) return 'under-replicated';
  return '';
}

function printDescription(description: TopicDescription): void {
  const count = description.partitions.length;
  const factor = description.replicationFactor > 0 ? `, replication factor ${description.replicationFactor}` : '';
  process.stdout.write(`topic ${description.name}: ${count} partition${count === 1 ? '' : 's'}${factor}\n`);
  if (description.config !== null) process.stdout.write(`config ${Object.entries(description.config).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
  const ids = (list: readonly number[]): string => (list.length === 0 ? '-' : list.join(','));
  const rows = description.partitions.map((p) => [
    String(p.partition), String(p.leader), String(p.leaderEpoch), ids(p.replicas), ids(p.isr), String(p.earliestOffset), String(p.latestOffset), partitionStatus(p),
  ]);
  const header = ['PARTITION', 'LEADER', 'EPOCH', 'REPLICAS', 'ISR', 'EARLIEST', 'LATEST', 'STATUS'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)) + 2);
  for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('').trimEnd()}\n`);
}
