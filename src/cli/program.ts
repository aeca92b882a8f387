/**
 * The `rill` command tree (commander). One file per command group registers its subcommands:
 * broker.ts, topics.ts, produce.ts, consume.ts, groups.ts. Usage errors are thrown, not printed:
 * main.ts turns them into one line on stderr and exit status 2.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { registerBroker } from './broker.js';
import type { Run } from './client-options.js';
import { registerConsume } from './consume.js';
import { registerGroups } from './groups.js';
import { registerProduce } from './produce.js';
import { registerRecords } from './records.js';
import { registerBrokers } from './brokers.js';
import { registerCluster } from './cluster.js';
import { registerDevCluster } from './dev-cluster.js';
import { registerTopics } from './topics.js';
import { registerUsers } from './users.js';
import { registerAcls } from './acls.js';

/** The version in package.json, found by walking up from this file (src/cli or dist/src/cli). */
export function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (fs.existsSync(candidate)) {
      const json = JSON.parse(fs.readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
      if (json.name === 'rill' && typeof json.version === 'string') return json.version;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

/** Which command reported the last usage error, so the message can point at its --help. */
export interface ErrorContext {
  command: Command | null;
}

export function createProgram(context: ErrorContext): Command {
  const program = new Command('rill')
    .description('Rill: a Kafka-style partitioned log broker, its administration, and a console producer and consumer')
    .version(packageVersion(), '-V, --version', 'print the version')
    .exitOverride()
    .showSuggestionAfterError(true)
    .addHelpText('after', `
Every client command takes -b, --bootstrap HOST:PORT[,HOST:PORT...] (default 127.0.0.1:9092; several
are tried in turn) and --timeout MS
(default 5000: how long to wait for a broker to answer before failing), and, for a broker that
requires authentication, --user NAME with the password in RILL_PASSWORD (or --password-file FILE)
and --mechanism scram-sha-512|scram-sha-256|plain (default scram-sha-512; plain on TLS only).
-p means --partitions on "topics create" and --partition on produce and consume.

Examples:
  rill broker --data-dir ./rill-data
  rill topics create orders -p 3
  echo hello | rill produce orders
  rill consume orders --from-beginning
Run "rill COMMAND --help" for a command's options and examples.`);
  const run: Run = async (action) => {
    process.exitCode = await action();
  };
  registerBroker(program, run);
  registerTopics(program, run);
  registerProduce(program, run);
  registerConsume(program, run);
  registerGroups(program, run);
  registerRecords(program, run);
  registerBrokers(program, run);
  registerCluster(program, run);
  registerDevCluster(program, run);
  registerUsers(program, run);
  registerAcls(program, run);
  configureErrors(program, context);
  return program;
}

/** Every command: errors are not printed by commander but remembered for main.ts. */
function configureErrors(command: Command, context: ErrorContext): void {
  command.exitOverride().configureOutput({
    outputError: () => {
      context.command = command;
    },
  });
  for (const sub of command.commands) configureErrors(sub, context);
}

/** "rill topics create" for a command. */
export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}
