/** `rill brokers describe-config`: the configuration a running broker resolved, with sources. */
import type { Command } from 'commander';
import { addClientOptions, withAdmin, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';

export function registerBrokers(program: Command, run: Run): void {
  const brokers = program.command('brokers').description('look at running brokers').addHelpText('after', `
Example:
  rill brokers describe-config`);

  addClientOptions(brokers.command('describe-config'))
    .description('the broker\'s effective configuration: each key, its value, and where it came from')
    .option('--json', 'print JSON')
    .addHelpText('after', `
Sources: default, file (--config), env (RILL_*), flag. Secret values are masked.

Example:
  rill brokers describe-config -b 127.0.0.1:9092`)
    .action((flags: ClientFlags & { json?: boolean }) => run(() => withAdmin(flags, async (admin) => {
      const entries = await admin.describeBrokerConfig();
      if (flags.json === true) {
        printJson(entries);
        return 0;
      }
      const width = Math.max(...entries.map((e) => e.name.length), 3) + 2;
      process.stdout.write(`${'KEY'.padEnd(width)}${'SOURCE'.padEnd(9)}VALUE\n`);
      for (const e of entries) process.stdout.write(`${e.name.padEnd(width)}${e.source.padEnd(9)}${e.value === null ? '-' : String(e.value)}\n`);
      return 0;
    })));
}
