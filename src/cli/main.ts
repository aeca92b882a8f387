#!/usr/bin/env node
/** `rill`: the broker, topic administration, and console producer/consumer. */
import { parseArgs, UsageError } from './args.js';
import { brokerCommandFromArgs, consumeCommand, describeError, groupsCommand, produceCommand, topicsCommand } from './commands.js';

const usage = `usage: rill <command> [options]

  rill broker [--data-dir DIR] [--port N] [--host H]      run a broker (default ./rill-data, 127.0.0.1:9092)
  rill topics create NAME --partitions N [--config KEY=VALUE ...]
  rill topics list [--json]
  rill topics describe NAME [--json]
  rill topics delete NAME
  rill produce TOPIC [--key-separator SEP] [--acks 0|1|all] [--partition P] [--json]
                                                           one record per stdin line
  rill consume TOPIC [--partition P] [--from-beginning | --offset O] [--exit-at-end] [--json]
  rill consume TOPIC --group G [--from-beginning] [--json]
                                                           run as a group member until SIGINT/SIGTERM
  rill groups list [--json]
  rill groups describe GROUP [--json]
  rill groups reset-offsets GROUP --topic T --to-earliest|--to-latest|--to-offset O

Every client command takes --bootstrap HOST:PORT (default 127.0.0.1:9092).
`;

const valued = new Set(['http', 'listen', 'advertise', 'node-id', 'log-level', 'log-format', 'data-dir', 'port', 'host', 'bootstrap', 'partitions', 'key-separator', 'acks', 'partition', 'offset', 'group', 'topic', 'to-offset']);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // --config may repeat; collect its values before the generic parser keeps only the last.
  const configs: string[] = [];
  const filtered: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--config') configs.push(rest[++i] ?? '');
    else if (rest[i]!.startsWith('--config=')) configs.push(rest[i]!.slice('--config='.length));
    else filtered.push(rest[i]!);
  }
  const args = parseArgs(filtered, valued);
  switch (command) {
    case 'broker': return brokerCommandFromArgs(args, configs.at(-1));
    case 'topics': return topicsCommand(args, configs);
    case 'produce': return produceCommand(args);
    case 'consume': return consumeCommand(args);
    case 'groups': return groupsCommand(args);
    case undefined: case 'help': case '--help': case '-h':
      process.stdout.write(usage);
      return command === undefined ? 1 : 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) process.stderr.write(`rill: ${error.message}\n\n${usage}`);
    else process.stderr.write(`rill: ${describeError(error)}\n`);
    process.exitCode = error instanceof UsageError ? 2 : 1;
  },
);
