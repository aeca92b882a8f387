/**
 * `rill broker`: declares the broker's flags and hands them, as the strings the user typed
 * (undefined when absent, no defaults here), to brokerCommand, which resolves flags, RILL_*
 * environment, config file and defaults in one place and validates them.
 */
import type { Command } from 'commander';
import { brokerCommand, type BrokerFlags } from './broker-command.js';
import type { Run } from './client-options.js';

export function registerBroker(program: Command, run: Run): void {
  program
    .command('broker')
    .description('run a broker in the foreground until SIGTERM/SIGINT (default ./rill-data, 127.0.0.1:9092)')
    .option('--config <file>', 'configuration file (flags > RILL_* environment > file > defaults)')
    .option('--data-dir <dir>', 'where partitions, offsets and state are stored')
    .option('--port <n>', 'port to listen on (0: any free port)')
    .option('--host <host>', 'address to listen on')
    .option('--listen <host:port>', 'address and port to listen on')
    .option('--advertise <host:port>', 'address clients are told to connect to')
    .option('--http <host:port>', 'HTTP endpoint for health and metrics')
    .option('--node-id <n>', 'this broker\'s id')
    .option('--log-level <level>', 'debug|info|warn|error')
    .option('--log-format <format>', 'json|pretty')
    .addHelpText('after', `
Once listening it prints "rill broker ready on HOST:PORT" on stdout.

Examples:
  rill broker
  rill broker --data-dir /var/lib/rill --port 9092 --http 127.0.0.1:9644
  rill broker --config rill.yaml --log-level debug`)
    .action((flags: BrokerFlags) => run(() => brokerCommand(pickBrokerFlags(flags))));
}

/** Exactly the declared flags, as strings. */
function pickBrokerFlags(flags: BrokerFlags): BrokerFlags {
  const { config, dataDir, port, host, listen, advertise, http, nodeId, logLevel, logFormat } = flags;
  return { config, dataDir, port, host, listen, advertise, http, nodeId, logLevel, logFormat };
}
