/** The `rill` subcommands. Each returns the process exit code. */
import readline from 'node:readline';
import { brokerCommand } from './broker-command.js';
import { Admin } from '../client/admin.js';
import { Producer, type AcksOption } from '../client/producer.js';
import { PartitionReader, type Message, type StartOffset } from '../client/reader.js';
import { Consumer } from '../client/consumer.js';
import { RillError } from '../lib/errors.js';
import { topicConfigKeys, type TopicConfig } from '../wire/control.js';
import { checkKnown, flag, intOption, stringOption, UsageError, type ParsedArgs } from './args.js';
import { LineWriter, printJson } from './output.js';

const bootstrapOf = (args: ParsedArgs): string => stringOption(args, 'bootstrap') ?? '127.0.0.1:9092';

export async function brokerCommandFromArgs(args: ParsedArgs, configFile: string | undefined): Promise<number> {
  checkKnown(args, ['data-dir', 'port', 'host', 'http', 'listen', 'advertise', 'node-id', 'log-level', 'log-format']);
  const s = (name: string): string | undefined => stringOption(args, name);
  return brokerCommand({ config: configFile, dataDir: s('data-dir'), port: s('port'), host: s('host'), http: s('http'), listen: s('listen'), advertise: s('advertise'), nodeId: s('node-id'), logLevel: s('log-level'), logFormat: s('log-format') });
}

function parseConfigs(values: string[]): Partial<TopicConfig> {
  const config: Partial<TopicConfig> = {};
  for (const entry of values) {
    const [key, value] = entry.split('=', 2);
    if (!topicConfigKeys.includes(key as keyof TopicConfig) || value === undefined || !/^-?\d+$/.test(value)) {
      throw new UsageError(`--config expects KEY=INTEGER with KEY one of ${topicConfigKeys.join(', ')}, got "${entry}"`);
    }
    config[key as keyof TopicConfig] = Number(value);
  }
  return config;
}

export async function topicsCommand(args: ParsedArgs, configs: string[]): Promise<number> {
  const [action, name] = args.positionals;
  const admin = new Admin({ bootstrap: bootstrapOf(args) });
  try {
    switch (action) {
      case 'create': {
        checkKnown(args, ['bootstrap', 'partitions', 'config']);
        if (name === undefined) throw new UsageError('usage: rill topics create NAME --partitions N');
        const partitions = intOption(args, 'partitions', 1, 1_000_000) ?? 1;
        await admin.createTopics([{ topic: name, partitions, config: parseConfigs(configs) }]);
        process.stdout.write(`created topic ${name} with ${partitions} partition${partitions === 1 ? '' : 's'}\n`);
        return 0;
      }
      case 'list': {
        checkKnown(args, ['bootstrap', 'json']);
        const topics = await admin.listTopics();
        if (flag(args, 'json')) printJson(topics);
        else for (const topic of topics) process.stdout.write(`${topic}\n`);
        return 0;
      }
      case 'describe': {
        checkKnown(args, ['bootstrap', 'json']);
        if (name === undefined) throw new UsageError('usage: rill topics describe NAME [--json]');
        const description = await admin.describeTopic(name);
        if (flag(args, 'json')) printJson(description);
        else {
          process.stdout.write(`topic ${description.name}: ${description.partitions.length} partitions\n`);
          if (description.config !== null) process.stdout.write(`config ${Object.entries(description.config).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
          process.stdout.write('PARTITION  LEADER  EARLIEST  LATEST\n');
          for (const p of description.partitions) process.stdout.write(`${String(p.partition).padEnd(11)}${String(p.leader).padEnd(8)}${String(p.earliestOffset).padEnd(10)}${p.latestOffset}\n`);
        }
        return 0;
      }
      case 'delete': {
        checkKnown(args, ['bootstrap']);
        if (name === undefined) throw new UsageError('usage: rill topics delete NAME');
        await admin.deleteTopics([name]);
        process.stdout.write(`deleted topic ${name}\n`);
        return 0;
      }
      default:
        throw new UsageError('usage: rill topics create|list|describe|delete ...');
    }
  } finally {
    admin.close();
  }
}

function acksOf(value: string | undefined): AcksOption {
  if (value === undefined || value === 'all' || value === '-1') return 'all';
  if (value === '1') return 1;
  if (value === '0') return 0;
  throw new UsageError(`--acks must be 0, 1 or all, got "${value}"`);
}

export async function produceCommand(args: ParsedArgs): Promise<number> {
  checkKnown(args, ['bootstrap', 'key-separator', 'acks', 'json', 'partition']);
  const [topic] = args.positionals;
  if (topic === undefined) throw new UsageError('usage: rill produce TOPIC [--key-separator SEP] [--acks 0|1|all] [--json]');
  const separator = stringOption(args, 'key-separator');
  const partition = intOption(args, 'partition', 0, 1_000_000);
  const acks = acksOf(stringOption(args, 'acks'));
  const producer = new Producer({ bootstrap: bootstrapOf(args), acks });
  const startedMs = performance.now();
  let sent = 0;
  let acked = 0;
  let failed = 0;
  let firstError: Error | null = null;
  const onAck = (): void => {
    acked++;
  };
  const onFail = (error: Error): void => {
    failed++;
    firstError ??= error;
  };
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
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
    producer.send({ topic, key, value, partition }).then(onAck, onFail);
    sent++;
    // Keep memory flat on huge inputs: let the producer catch up now and then.
    if (sent % 100_000 === 0) await producer.flush();
    if (firstError !== null) break;
  }
  await producer.flush();
  await producer.close();
  const durationMs = performance.now() - startedMs;
  const recordsPerSecond = Math.round(acked / (durationMs / 1000));
  if (flag(args, 'json')) printJson({ topic, acks: String(acks), sent, acknowledged: acked, failed, durationMs: Math.round(durationMs), recordsPerSecond, error: firstError === null ? null : String((firstError as Error).message) });
  else {
    process.stderr.write(`produced ${acked} of ${sent} records to ${topic} in ${Math.round(durationMs)} ms (${recordsPerSecond} records/s, acks=${acks})\n`);
    if (firstError !== null) process.stderr.write(`error: ${(firstError as Error).message}\n`);
  }
  return failed === 0 && acked === sent ? 0 : 1;
}

function startOf(args: ParsedArgs): StartOffset {
  const offset = stringOption(args, 'offset');
  if (offset !== undefined && flag(args, 'from-beginning')) throw new UsageError('use either --from-beginning or --offset, not both');
  if (offset !== undefined) {
    if (!/^\d+$/.test(offset)) throw new UsageError(`--offset must be a non-negative integer, got "${offset}"`);
    return BigInt(offset);
  }
  return flag(args, 'from-beginning') ? 'earliest' : 'latest';
}

function text(bytes: Buffer | null): string | null {
  return bytes === null ? null : bytes.toString('utf8');
}

function messageLine(topic: string, message: Message, json: boolean): string {
  if (!json) return text(message.value) ?? '';
  return JSON.stringify({ topic, partition: message.partition, offset: Number(message.offset), key: text(message.key), value: text(message.value), timestamp: message.timestamp, headers: Object.fromEntries(message.headers.map((h) => [h.key, text(h.value)])) });
}

/**
 * `rill consume TOPIC --group G`: a group member until SIGINT/SIGTERM, then it finishes the
 * record in hand, commits what it printed, and leaves, so the group rebalances at once.
 */
async function consumeInGroup(args: ParsedArgs, topic: string, groupId: string): Promise<number> {
  if (args.options.has('partition') || args.options.has('offset') || args.options.has('exit-at-end')) {
    throw new UsageError('--group cannot be combined with --partition, --offset or --exit-at-end (the group assigns partitions and tracks offsets)');
  }
  const json = flag(args, 'json');
  const consumer = new Consumer({ bootstrap: bootstrapOf(args), groupId, clientId: 'rill-cli', fromBeginning: flag(args, 'from-beginning') });
  const describe = (list: { topic: string; partition: number }[]): string => list.map((p) => `${p.topic}/${p.partition}`).join(' ') || 'none';
  consumer.on('assigned', (list) => void process.stderr.write(`assigned: ${describe(list)}\n`));
  consumer.on('revoked', (list) => void process.stderr.write(`revoked: ${describe(list)}\n`));
  consumer.on('lost', (list) => void process.stderr.write(`lost: ${describe(list)}\n`));
  consumer.on('error', (error) => void process.stderr.write(`error: ${describeError(error)}\n`));
  consumer.subscribe([topic]);
  let count = 0;
  // run() resolves once the member joined; the member then works until a signal closes it.
  const stopped = new Promise<void>((resolve) => {
    const stop = (): void => void consumer.close().then(resolve, resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await consumer.run({
    // One write per batch; it returns once the lines are handed to stdout (synchronous for pipes
    // and files on Linux), so what is committed has been printed.
    eachBatch: async ({ messages }) => {
      const lines = messages.map((message) => messageLine(topic, message, json)).join('\n');
      if (!process.stdout.write(`${lines}\n`)) await new Promise((resolve) => process.stdout.once('drain', resolve));
      count += messages.length;
    },
  });
  await stopped;
  process.stderr.write(`consumed ${count} records from ${topic} as a member of ${groupId}\n`);
  return 0;
}

export async function consumeCommand(args: ParsedArgs): Promise<number> {
  checkKnown(args, ['bootstrap', 'partition', 'from-beginning', 'offset', 'exit-at-end', 'json', 'group']);
  const group = stringOption(args, 'group');
  if (group !== undefined && args.positionals[0] !== undefined) return consumeInGroup(args, args.positionals[0], group);
  const [topic] = args.positionals;
  if (topic === undefined) throw new UsageError('usage: rill consume TOPIC [--partition P] [--from-beginning | --offset O] [--exit-at-end] [--json]');
  const partition = intOption(args, 'partition', 0, 1_000_000);
  const json = flag(args, 'json');
  const reader = new PartitionReader({
    bootstrap: bootstrapOf(args), topic, partitions: partition === undefined ? undefined : [partition], from: startOf(args), stopAtEnd: flag(args, 'exit-at-end'),
  });
  const stop = (): void => reader.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const out = new LineWriter();
  let count = 0;
  for await (const message of reader) {
    count++;
    const wait = out.write(messageLine(topic, message, json));
    if (wait !== undefined) await wait;
  }
  await out.flush();
  if (!json) process.stderr.write(`consumed ${count} records from ${topic}\n`);
  return 0;
}

function partitionsText(list: { topic: string; partitions: number[] }[]): string {
  return list.map((t) => `${t.topic}:${t.partitions.join(',')}`).join(' ') || '-';
}

export async function groupsCommand(args: ParsedArgs): Promise<number> {
  const [action, groupId] = args.positionals;
  const admin = new Admin({ bootstrap: bootstrapOf(args) });
  try {
    switch (action) {
      case 'list': {
        checkKnown(args, ['bootstrap', 'json']);
        const groups = await admin.listGroups();
        if (flag(args, 'json')) printJson(groups);
        else for (const g of groups) process.stdout.write(`${g.groupId}\t${g.state}\t${g.memberCount} members\n`);
        return 0;
      }
      case 'describe': {
        checkKnown(args, ['bootstrap', 'json']);
        if (groupId === undefined) throw new UsageError('usage: rill groups describe GROUP [--json]');
        const group = await admin.describeGroup(groupId);
        if (flag(args, 'json')) {
          printJson(group);
          return 0;
        }
        process.stdout.write(`group ${group.groupId}: ${group.state}, epoch ${group.groupEpoch}, ${group.members.length} members\n\n`);
        process.stdout.write('MEMBER                                CLIENT          HOST             EPOCH  ASSIGNED\n');
        for (const m of group.members) {
          process.stdout.write(`${m.memberId.padEnd(38)}${m.clientId.slice(0, 15).padEnd(16)}${m.host.slice(0, 16).padEnd(17)}${String(m.memberEpoch).padEnd(7)}${partitionsText(m.assigned)}`);
          if (m.pendingRevocation.length > 0) process.stdout.write(`  revoking ${partitionsText(m.pendingRevocation)}`);
          if (m.pendingAssignment.length > 0) process.stdout.write(`  waiting for ${partitionsText(m.pendingAssignment)}`);
          process.stdout.write('\n');
        }
        process.stdout.write('\nTOPIC                PARTITION  COMMITTED  END        LAG        OWNER\n');
        for (const o of group.offsets) {
          process.stdout.write(`${o.topic.slice(0, 20).padEnd(21)}${String(o.partition).padEnd(11)}${(o.committedOffset < 0n ? '-' : String(o.committedOffset)).padEnd(11)}${String(o.endOffset).padEnd(11)}${(o.lag < 0n ? '-' : String(o.lag)).padEnd(11)}${o.owner ?? '-'}\n`);
        }
        if (group.history.length > 0) {
          process.stdout.write('\nRECENT REBALANCES\n');
          for (const h of group.history.slice(-10)) {
            const moved = h.moves.length + h.movesOmitted;
            process.stdout.write(`${new Date(h.atMs).toISOString()}  epoch ${h.groupEpoch}  ${h.reason}${h.memberId ? ` (${h.memberId})` : ''}: ${moved} partition${moved === 1 ? '' : 's'} moved, ${h.stableAfterMs === null ? 'not stable yet' : `stable after ${h.stableAfterMs} ms`}\n`);
          }
        }
        return 0;
      }
      case 'reset-offsets': {
        checkKnown(args, ['bootstrap', 'topic', 'to-earliest', 'to-latest', 'to-offset', 'json']);
        const topic = stringOption(args, 'topic');
        if (groupId === undefined || topic === undefined) throw new UsageError('usage: rill groups reset-offsets GROUP --topic T --to-earliest|--to-latest|--to-offset O');
        const offset = stringOption(args, 'to-offset');
        const choices = [flag(args, 'to-earliest'), flag(args, 'to-latest'), offset !== undefined].filter(Boolean).length;
        if (choices !== 1) throw new UsageError('give exactly one of --to-earliest, --to-latest, --to-offset O');
        if (offset !== undefined && !/^\d+$/.test(offset)) throw new UsageError(`--to-offset must be a non-negative integer, got "${offset}"`);
        const to = flag(args, 'to-earliest') ? 'earliest' : flag(args, 'to-latest') ? 'latest' : BigInt(offset!);
        const result = await admin.resetGroupOffsets(groupId, topic, to);
        if (flag(args, 'json')) printJson(result);
        else for (const r of result) process.stdout.write(`${topic}/${r.partition} -> ${r.offset}\n`);
        return 0;
      }
      default:
        throw new UsageError('usage: rill groups list|describe|reset-offsets ...');
    }
  } finally {
    admin.close();
  }
}

export function describeError(error: unknown): string {
  if (error instanceof RillError) return `${error.message}${error.retriable ? ' (retriable)' : ''}`;
  return (error as Error)?.message ?? String(error);
}
