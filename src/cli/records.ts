/** `rill records delete`: move a partition's start past records no one should read again. */
import type { Command } from 'commander';
import { topicPartitionsMax } from '../lib/limits.js';
import { integerIn, offsetValue } from './args.js';
import { addClientOptions, withAdmin, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';

export function registerRecords(program: Command, run: Run): void {
  const records = program.command('records').description('delete records from the start of a partition').addHelpText('after', `
Example:
  rill records delete orders --partition 0 --before 1000`);

  addClientOptions(records.command('delete').argument('<topic>', 'topic name'))
    .description('delete every record of a partition below an offset (moves its log start)')
    .requiredOption('-p, --partition <n>', 'partition', integerIn('--partition', 0, topicPartitionsMax - 1))
    .requiredOption('--before <offset>', 'first offset to keep; -1 means the current end (delete everything)', offsetValue('--before', true))
    .option('--json', 'print JSON')
    .addHelpText('after', `
Readers asking for a deleted offset get OFFSET_OUT_OF_RANGE; whole segments below the new start
are removed from disk. The new start is fsynced before the command returns and survives crashes.

Examples:
  rill records delete orders --partition 0 --before 1000
  rill records delete orders -p 3 --before -1`)
    .action((topic: string, flags: ClientFlags & { partition: number; before: bigint; json?: boolean }) => run(() => withAdmin(flags, async (admin) => {
      const { lowWatermark } = await admin.deleteRecords(topic, flags.partition, flags.before);
      if (flags.json === true) printJson({ topic, partition: flags.partition, lowWatermark });
      else process.stdout.write(`${topic}/${flags.partition}: records before ${lowWatermark} deleted (log start is now ${lowWatermark})\n`);
      return 0;
    })));
}
