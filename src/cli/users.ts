/**
 * `rill users add|remove|list`: the users brokers authenticate, changed two ways.
 *
 *   online   (default)         through a running broker (-b HOST:PORT and the client options,
 *                              --user for an administrator): AlterUserScramCredentials and
 *                              DescribeUserScramCredentials; the change counts at the next login.
 *   offline  --data-dir DIR    in a stopped broker's users.json (broker/user-admin.ts): how the
 *                              first user of a broker that requires authentication is made.
 *
 * The password of `add` is the first line of stdin, so it never appears in the process list or
 * the shell history. Online, the client derives the SCRAM credentials and sends those, never the
 * password.
 */
import type { Command } from 'commander';
import { RillError } from '../lib/errors.js';
import { UsageError } from './args.js';
import { addClientOptions, withAdmin, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';

interface UsersFlags extends ClientFlags {
  dataDir?: string;
  json?: boolean;
}

interface UserListing {
  name: string;
  mechanisms: { mechanism: string; iterations: number }[];
}

/** The options that only make sense against a running broker (commander's attribute names). */
const onlineOptions: Record<string, string> = {
  bootstrap: '--bootstrap', timeout: '--timeout', user: '--user', passwordFile: '--password-file', mechanism: '--mechanism',
  tlsCa: '--tls-ca', tlsCert: '--tls-cert', tlsKey: '--tls-key',
};

/** Offline with --data-dir, online otherwise; both at once is a usage error. */
function offlineDataDir(flags: UsersFlags, command: Command): string | null {
  const given = Object.keys(onlineOptions).filter((key) => command.getOptionValueSource(key) === 'cli').map((key) => onlineOptions[key]!);
  if (flags.dataDir === undefined) return null;
  if (given.length > 0) {
    throw new UsageError(`--data-dir changes a stopped broker's users offline; ${given.join(', ')} ${given.length === 1 ? 'is' : 'are'} for a running broker: give one or the other`);
  }
  return flags.dataDir;
}

/** The first line of stdin, without its line ending. */
async function readFirstLine(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += (chunk as Buffer).toString('utf8');
    if (text.includes('\n') || text.length > 64 * 1024) break;
  }
  return text.split(/\r?\n/)[0] ?? '';
}

/** A subcommand with both ways: --data-dir for offline, the client options for online. */
function usersCommand(users: Command, name: string): Command {
  return addClientOptions(users.command(name).option('--data-dir <dir>', 'work offline on this stopped broker\'s data directory instead of through a running broker'));
}

function printListing(users: UserListing[], json: boolean): void {
  if (json) {
    printJson(users);
    return;
  }
  for (const { name } of users) process.stdout.write(`${name}\n`);
}

export function registerUsers(program: Command, run: Run): void {
  const users = program.command('users')
    .description('add, remove and list the users brokers authenticate: through a running broker, or offline in a stopped broker\'s data directory (--data-dir)')
    .addHelpText('after', `
Online (the default) the command talks to a running broker (-b HOST:PORT) as any client does; when
the broker requires authentication, give an administrator with --user NAME and RILL_PASSWORD (or
--password-file FILE). A change counts at the next login: a new user can log in at once, and a
removed user, or an old password, no longer can; connections already open stay open.

Offline (--data-dir DIR) the command changes the data directory of a stopped broker: this is how
the first user of a broker started with --auth required is made.

Examples:
  printf '%s\\n' "$PASSWORD" | rill users add admin --data-dir ./rill-data      # broker stopped
  printf '%s\\n' "$PASSWORD" | RILL_PASSWORD="$ADMIN_PASSWORD" rill users add alice --user admin
  RILL_PASSWORD="$ADMIN_PASSWORD" rill users list --user admin --json
  RILL_PASSWORD="$ADMIN_PASSWORD" rill users remove alice --user admin`);

  usersCommand(users, 'add').argument('<name>', 'user name (1..255 bytes, no control characters)')
    .description('add a user, or change its password (SCRAM-SHA-256 and SCRAM-SHA-512); the password is read from the first line of stdin')
    .addHelpText('after', `
Online, the salted, iterated SCRAM credentials are derived here and sent to the broker; the password
itself never leaves this process. Use TLS (--tls-ca) when the network is not trusted: what travels
is what the broker stores, enough to guess passwords against offline.

Examples:
  printf '%s\\n' "$PASSWORD" | rill users add alice -b broker:9092 --user admin   # admin's password in RILL_PASSWORD
  printf '%s\\n' "$PASSWORD" | rill users add alice --data-dir ./rill-data         # broker stopped`)
    .action((name: string, flags: UsersFlags, command: Command) => run(async () => {
      const dataDir = offlineDataDir(flags, command);
      const password = await readFirstLine();
      const where = dataDir === null ? '' : ' --data-dir DIR';
      if (password.length === 0) throw new UsageError(`rill users add: give the password on the first line of stdin (e.g. printf '%s\\n' "$PASSWORD" | rill users add NAME${where})`);
      // Whether the user existed, for the message; null: unknown (online, by a user not allowed to describe).
      let replaced: boolean | null = null;
      if (dataDir !== null) {
        const { addUser } = await import('../broker/user-admin.js');
        replaced = addUser(dataDir, name, password).replaced;
      } else {
        await withAdmin(flags, async (admin) => {
          replaced = await admin.listUsers([name]).then(() => true, (error: unknown) => (error instanceof RillError && error.code === 'USER_NOT_FOUND' ? false : null));
          await admin.upsertUser(name, password);
          return 0;
        });
      }
      process.stdout.write(`${replaced === null ? 'set the password of' : replaced ? 'changed the password of' : 'added'} user ${name}\n`);
      return 0;
    }));

  usersCommand(users, 'remove').argument('<name>', 'user name')
    .description('remove a user: it can no longer log in (connections it has open stay open)')
    .addHelpText('after', `
Examples:
  rill users remove alice -b broker:9092 --user admin   # admin's password in RILL_PASSWORD
  rill users remove alice --data-dir ./rill-data        # broker stopped`)
    .action((name: string, flags: UsersFlags, command: Command) => run(async () => {
      const dataDir = offlineDataDir(flags, command);
      if (dataDir === null) {
        return withAdmin(flags, async (admin) => {
          await admin.removeUser(name);
          process.stdout.write(`removed user ${name}\n`);
          return 0;
        });
      }
      const { removeUser } = await import('../broker/user-admin.js');
      if (!removeUser(dataDir, name)) {
        process.stderr.write(`rill: no user ${name} in ${dataDir}\n`);
        return 1;
      }
      process.stdout.write(`removed user ${name}\n`);
      return 0;
    }));

  usersCommand(users, 'list')
    .description('list the user names, one a line (never a password or credential); --data-dir works while the broker runs')
    .option('--json', 'print JSON: each user with its mechanisms and iteration counts')
    .addHelpText('after', `
Examples:
  rill users list -b broker:9092 --user admin --json
  rill users list --data-dir ./rill-data`)
    .action((flags: UsersFlags, command: Command) => run(async () => {
      const dataDir = offlineDataDir(flags, command);
      if (dataDir === null) {
        return withAdmin(flags, async (admin) => {
          printListing(await admin.listUsers(), flags.json === true);
          return 0;
        });
      }
      const { listUsers } = await import('../broker/user-admin.js');
      printListing(listUsers(dataDir), flags.json === true);
      return 0;
    }));
}
