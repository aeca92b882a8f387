/**
 * `rill users add|remove|list --data-dir DIR`: the users a broker authenticates, changed offline
 * (the broker must be stopped; see broker/user-admin.ts). The password of `add` is the first
 * line of stdin, so it never appears in the process list or the shell history.
 */
import type { Command } from 'commander';
import { UsageError } from './args.js';
import type { Run } from './client-options.js';

interface UsersFlags {
  dataDir: string;
}

const dataDirHelp = 'data directory of the (stopped) broker';

/** The first line of stdin, without its line ending. */
async function readFirstLine(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += (chunk as Buffer).toString('utf8');
    if (text.includes('\n') || text.length > 64 * 1024) break;
  }
  return text.split(/\r?\n/)[0] ?? '';
}

export function registerUsers(program: Command, run: Run): void {
  const users = program.command('users').description('add, remove and list the users brokers authenticate (offline: the broker must be stopped)');
  users.command('add').argument('<name>', 'user name').requiredOption('--data-dir <dir>', dataDirHelp)
    .description('add a user, or change its password; the password is read from the first line of stdin')
    .addHelpText('after', `
Example:
  printf '%s\\n' "$PASSWORD" | rill users add alice --data-dir ./rill-data`)
    .action((name: string, flags: UsersFlags) => run(async () => {
      const password = await readFirstLine();
      if (password.length === 0) throw new UsageError('rill users add: give the password on the first line of stdin (e.g. printf \'%s\\n\' "$PASSWORD" | rill users add NAME --data-dir DIR)');
      const { addUser } = await import('../broker/user-admin.js');
      const { replaced } = addUser(flags.dataDir, name, password);
      process.stdout.write(`${replaced ? 'changed the password of' : 'added'} user ${name}\n`);
      return 0;
    }));
  users.command('remove').argument('<name>', 'user name').requiredOption('--data-dir <dir>', dataDirHelp)
    .description('remove a user')
    .action((name: string, flags: UsersFlags) => run(async () => {
      const { removeUser } = await import('../broker/user-admin.js');
      if (!removeUser(flags.dataDir, name)) {
        process.stderr.write(`rill: no user ${name} in ${flags.dataDir}\n`);
        return 1;
      }
      process.stdout.write(`removed user ${name}\n`);
      return 0;
    }));
  users.command('list').requiredOption('--data-dir <dir>', dataDirHelp)
    .description('list the user names (never a password or credential); works while the broker runs')
    .action((flags: UsersFlags) => run(async () => {
      const { listUsers } = await import('../broker/user-admin.js');
      for (const name of listUsers(flags.dataDir)) process.stdout.write(`${name}\n`);
      return 0;
    }));
}
