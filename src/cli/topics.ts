/**
 * `rill topics create|list|describe|delete`. New topic subcommands (alter, add-partitions) go
 * here: one `topics.command(...)` each, with an example in its help.
 */
import type { Command } from 'commander';
import type { TopicConfig } from '../wire/control.js';
import { topicPartitionsMax as partitionsMax } from '../lib/limits.js';
import { collect, integerIn, topicConfigEntries } from './args.js';
import { addClientOptions, withAdmin, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';

export function registerTopics(program: Command, run: Run): void {
  const topics = program.command('topics').description('create, list, describe and delete topics').addHelpText('after', `
Examples:
  rill topics create orders -p 8 --config retention.ms=86400000
  rill topics list
  rill topics describe orders --json`);

  addClientOptions(topics.command('create').argument('<name>', 'topic name'))
    .description('create a topic')
    .option('-p, --partitions <n>', `number of partitions (1..${partitionsMax})`, integerIn('--partitions', 1, partitionsMax), 1)
    .option('--config <key=value>', 'topic setting, repeatable (e.g. retention.ms=86400000 or retentionMs=86400000)', collect)
    .addHelpText('after', `
Examples:
  rill topics create orders --partitions 8
  rill topics create orders -p 3 --config retention.ms=86400000 --config segment.bytes=1048576`)
    .action((name: string, flags: ClientFlags & { partitions: number; config?: string[] }) => run(async () => {
      const config = topicConfigEntries(flags.config ?? []);
      return withAdmin(flags, async (admin) => {
        // Any key goes to the broker, which validates it and names the closest known key.
        await admin.createTopics([{ topic: name, partitions: flags.partitions, config: config as Partial<TopicConfig> }]);
        process.stdout.write(`created topic ${name} with ${flags.partitions} partition${flags.partitions === 1 ? '' : 's'}\n`);
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
    .description('partitions, leaders, offsets and config of a topic')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  rill topics describe orders')
    .action((name: string, flags: ClientFlags & { json?: boolean }) => run(() => withAdmin(flags, async (admin) => {
      const description = await admin.describeTopic(name);
      if (flags.json === true) {
        printJson(description);
        return 0;
      }
      process.stdout.write(`topic ${description.name}: ${description.partitions.length} partitions\n`);
      if (description.config !== null) process.stdout.write(`config ${Object.entries(description.config).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
      process.stdout.write('PARTITION  LEADER  EARLIEST  LATEST\n');
      for (const p of description.partitions) {
        process.stdout.write(`${String(p.partition).padEnd(11)}${String(p.leader).padEnd(8)}${String(p.earliestOffset).padEnd(10)}${p.latestOffset}\n`);
      }
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
