/**
 * `rill produce TOPIC`: one record per stdin line, optionally `KEY<sep>VALUE`. Fails within
 * --timeout when no broker answers at start; once running, it rides through broker restarts for
 * up to the producer's delivery timeout (120 s) and says so on stderr. A terminal gets a
 * progress line on stderr.
 */
import readline from 'node:readline';
import type { Command } from 'commander';
import type { AcksOption } from '../client/producer.js';
import { startStatusReporter } from './status-loader.js';
import { topicPartitionsMax } from '../lib/limits.js';
import { integerIn, topicOf, UsageError } from './args.js';
import { addClientOptions, clientOptions, waitForBroker, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';
import { Progress } from './progress.js';

interface ProduceFlags extends ClientFlags {
  topic?: string;
  keySeparator?: string;
  acks: AcksOption;
  partition?: number;
  json?: boolean;
}

function acksOf(value: string): AcksOption {
  if (value === 'all' || value === '-1') return 'all';
  if (value === '1') return 1;
  if (value === '0') return 0;
  throw new UsageError(`--acks must be 0, 1 or all, got "${value}"`);
}

export function registerProduce(program: Command, run: Run): void {
  addClientOptions(program.command('produce').argument('[topic]', 'topic to write to'))
    .description('write one record per stdin line')
    .option('-t, --topic <topic>', 'topic to write to (instead of the argument)')
    .option('--key-separator <sep>', 'split each line into KEY<sep>VALUE at the first <sep>')
    .option('--acks <acks>', '0 | 1 | all', acksOf, 'all' as AcksOption)
    .option('-p, --partition <n>', 'write every record to this partition', integerIn('--partition', 0, topicPartitionsMax - 1))
    .option('--json', 'print a JSON summary on stdout')
    .addHelpText('after', `
Examples:
  echo hello | rill produce greetings
  printf 'user-1:hi\\nuser-2:there\\n' | rill produce greetings --key-separator :
  seq 1000000 | rill produce numbers -p 0 --acks 1 --json`)
    .action((topic: string | undefined, flags: ProduceFlags) => run(() => produce(topicOf(topic, flags.topic, 'produce'), flags)));
}

async function produce(topic: string, flags: ProduceFlags): Promise<number> {
  await waitForBroker(flags);
  const status = await startStatusReporter(flags.bootstrap);
  const { Producer } = await import('../client/producer.js');
  const producer = new Producer({ ...clientOptions(flags), acks: flags.acks });
  const startedMs = performance.now();
  let sent = 0;
  let acked = 0;
  let bytes = 0;
  let failed = 0;
  let firstError: Error | null = null;
  const onAck = (): void => void acked++;
  const onFail = (error: Error): void => {
    failed++;
    firstError ??= error;
  };
  const progress = new Progress(() => ({ sent, acknowledged: acked, bytes })).start();
  const separator = flags.keySeparator;
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      let key: string | null = null;
      let value = line;
      if (separator !== undefined) {
        const at = line.indexOf(separator);
        if (at >= 0) {
          key = line.slice(0, at);
          value = line.slice(at + separator.length);
        }
      }
      producer.send({ topic, key, value, partition: flags.partition }).then(onAck, onFail);
      sent++;
      bytes += line.length + 1;
      // Keep memory flat on huge inputs: let the producer catch up now and then.
      if (sent % 100_000 === 0) await producer.flush();
      if (firstError !== null) break;
    }
    await producer.flush();
    await producer.close();
  } finally {
    progress.stop();
    status.stop();
  }
  const durationMs = performance.now() - startedMs;
  const recordsPerSecond = Math.round(acked / (durationMs / 1000));
  const error = firstError as Error | null;
  if (flags.json === true) {
    printJson({ topic, acks: String(flags.acks), sent, acknowledged: acked, failed, durationMs: Math.round(durationMs), recordsPerSecond, error: error === null ? null : error.message });
  } else {
    process.stderr.write(`produced ${acked} of ${sent} records to ${topic} in ${Math.round(durationMs)} ms (${recordsPerSecond} records/s, acks=${flags.acks})\n`);
    if (error !== null) process.stderr.write(`error: ${error.message}\n`);
  }
  return failed === 0 && acked === sent ? 0 : 1;
}
