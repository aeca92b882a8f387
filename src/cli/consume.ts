/**
 * `rill consume TOPIC`: prints records, one per line (the value, or JSON with --json).
 * Alone it reads partitions by offset; with --group it is a group member until SIGINT/SIGTERM.
 * Both fail within --timeout when no broker answers at start, and once running they ride through
 * broker restarts (retrying with backoff, saying so once on stderr) until stopped.
 */
import type { Command } from 'commander';
import type { Message, StartOffset } from '../client/reader.js';
import { startStatusReporter } from './status-loader.js';
import { RillError } from '../lib/errors.js';
import { topicPartitionsMax } from '../lib/limits.js';
import { integerIn, offsetValue, topicOf, UsageError } from './args.js';
import { addClientOptions, clientOptions, waitForBroker, type ClientFlags, type Run } from './client-options.js';
import { describeError, LineWriter } from './output.js';

interface ConsumeFlags extends ClientFlags {
  topic?: string;
  partition?: number;
  fromBeginning?: boolean;
  offset?: bigint;
  exitAtEnd?: boolean;
  json?: boolean;
  group?: string;
}

export function registerConsume(program: Command, run: Run): void {
  addClientOptions(program.command('consume').argument('[topic]', 'topic to read'))
    .description('print records of a topic, alone (by offset) or as a member of a consumer group')
    .option('-t, --topic <topic>', 'topic to read (instead of the argument)')
    .option('-p, --partition <n>', 'read only this partition (default: all)', integerIn('--partition', 0, topicPartitionsMax - 1))
    .option('--from-beginning', 'start at the earliest offset (default: only new records)')
    .option('--offset <offset>', 'start at this offset', offsetValue('--offset'))
    .option('--exit-at-end', 'exit once the end offsets at start are reached')
    .option('-g, --group <group>', 'consume as a member of this group until SIGINT/SIGTERM (commits what was printed)')
    .option('--json', 'one JSON object per record: topic, partition, offset, key, value, timestamp, headers')
    .addHelpText('after', `
Examples:
  rill consume greetings --from-beginning --exit-at-end
  rill consume greetings -p 0 --offset 42 --json
  rill consume greetings --group printers --from-beginning`)
    .action((topic: string | undefined, flags: ConsumeFlags) => run(() => {
      const name = topicOf(topic, flags.topic, 'consume');
      return flags.group === undefined ? consumeAlone(name, flags) : consumeInGroup(name, flags.group, flags);
    }));
}

function text(bytes: Buffer | null): string | null {
  return bytes === null ? null : bytes.toString('utf8');
}

function messageLine(topic: string, message: Message, json: boolean): string {
  if (!json) return text(message.value) ?? '';
  return JSON.stringify({
    topic, partition: message.partition, offset: Number(message.offset), key: text(message.key), value: text(message.value), timestamp: message.timestamp,
    headers: Object.fromEntries(message.headers.map((h) => [h.key, text(h.value)])),
  });
}

function startOf(flags: ConsumeFlags): StartOffset {
  if (flags.offset !== undefined && flags.fromBeginning === true) throw new UsageError('use either --from-beginning or --offset, not both');
  if (flags.offset !== undefined) return flags.offset;
  return flags.fromBeginning === true ? 'earliest' : 'latest';
}

async function consumeAlone(topic: string, flags: ConsumeFlags): Promise<number> {
  const from = startOf(flags);
  await waitForBroker(flags);
  const status = await startStatusReporter(flags.bootstrap);
  const { PartitionReader } = await import('../client/reader.js');
  const reader = new PartitionReader({
    ...clientOptions(flags), topic, partitions: flags.partition === undefined ? undefined : [flags.partition], from, stopAtEnd: flags.exitAtEnd === true,
  });
  const stop = (): void => reader.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const out = new LineWriter();
  const json = flags.json === true;
  let count = 0;
  try {
    // A fetch response at a time: its lines go out together, and at once (a live tail shows
    // records as they arrive, not when 64 KiB have piled up).
    for await (const messages of reader.batches()) {
      count += messages.length;
      for (const message of messages) {
        const wait = out.write(messageLine(topic, message, json));
        if (wait !== undefined) await wait;
      }
      await out.flush();
    }
  } finally {
    status.stop();
  }
  if (!json) process.stderr.write(`consumed ${count} records from ${topic}\n`);
  return 0;
}

/**
 * A group member until SIGINT/SIGTERM, then it finishes the record in hand, commits what it
 * printed, and leaves, so the group rebalances at once.
 */
async function consumeInGroup(topic: string, groupId: string, flags: ConsumeFlags): Promise<number> {
  if (flags.partition !== undefined || flags.offset !== undefined || flags.exitAtEnd === true) {
    throw new UsageError('--group cannot be combined with --partition, --offset or --exit-at-end (the group assigns partitions and tracks offsets)');
  }
  await waitForBroker(flags);
  const status = await startStatusReporter(flags.bootstrap);
  const json = flags.json === true;
  const { Consumer } = await import('../client/consumer.js');
  const consumer = new Consumer({ ...clientOptions(flags), groupId, fromBeginning: flags.fromBeginning === true });
  const describe = (list: { topic: string; partition: number }[]): string => list.map((p) => `${p.topic}/${p.partition}`).join(' ') || 'none';
  consumer.on('assigned', (list) => void process.stderr.write(`assigned: ${describe(list)}\n`));
  consumer.on('revoked', (list) => void process.stderr.write(`revoked: ${describe(list)}\n`));
  consumer.on('lost', (list) => void process.stderr.write(`lost: ${describe(list)}\n`));
  // Retriable errors are retried by the consumer and reported once by the status reporter.
  consumer.on('error', (error) => {
    if (!(error instanceof RillError && error.retriable)) process.stderr.write(`error: ${describeError(error)}\n`);
  });
  consumer.subscribe([topic]);
  let count = 0;
  // run() resolves once the member joined; the member then works until a signal closes it.
  const stopped = new Promise<void>((resolve) => {
    const stop = (): void => void consumer.close().then(resolve, resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  try {
    await consumer.run({
      // One write per batch; it returns once the lines are handed to stdout (synchronous for
      // pipes and files on Linux), so what is committed has been printed.
      eachBatch: async ({ messages }) => {
        const lines = messages.map((message) => messageLine(topic, message, json)).join('\n');
        if (!process.stdout.write(`${lines}\n`)) await new Promise((resolve) => process.stdout.once('drain', resolve));
        count += messages.length;
      },
    });
    await stopped;
  } finally {
    status.stop();
  }
  process.stderr.write(`consumed ${count} records from ${topic} as a member of ${groupId}\n`);
  return 0;
}
