/**
 * A consumer-group member as a child process, for end-to-end tests that kill it. Configured by
 * one JSON argument (MemberConfig); prints one JSON object per line on stdout, each with `t`
 * (Date.now() when it happened):
 *
 *   {"e":"joined"}                                  run() resolved
 *   {"e":"assigned"|"revoked"|"lost","tps":[[topic,partition],...]}
 *   {"e":"rec","p":partition,"o":offset,"k":key}    a record whose handler COMPLETED
 *   {"e":"blocked","p":partition,"o":offset}        the handler entered the record it blocks on
 *   {"e":"error","m":message}
 *   {"e":"closed"}                                  after close() on SIGTERM; then exit 0
 *
 * stdout is a pipe, and pipe writes are synchronous on Linux: a printed record was processed
 * even if the process is SIGKILLed right after.
 *
 * Compiled for child processes by test/helpers/compile-helper.ts (imports resolve against dist/).
 */
import { Consumer, type Message } from '../../src/client/index.js';

export interface MemberConfig {
  bootstrap: string;
  groupId: string;
  topics: string[];
  memberId?: string;
  sessionTimeoutMs?: number;
  autoCommitIntervalMs?: number;
  fromBeginning?: boolean;
  /** Time each record's handler takes. */
  handlerDelayMs?: number;
  /** The handler of this record never returns. */
  blockAt?: { partition: number; offset: number };
}

const config = JSON.parse(process.argv[2] ?? '{}') as MemberConfig;

function print(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ...event, t: Date.now() })}\n`);
}

const consumer = new Consumer({
  bootstrap: config.bootstrap,
  groupId: config.groupId,
  clientId: 'group-member',
  memberId: config.memberId,
  sessionTimeoutMs: config.sessionTimeoutMs,
  autoCommitIntervalMs: config.autoCommitIntervalMs,
  fromBeginning: config.fromBeginning,
  maxWaitMs: 200,
});

for (const event of ['assigned', 'revoked', 'lost'] as const) {
  consumer.on(event, (tps) => print({ e: event, tps: tps.map((tp) => [tp.topic, tp.partition]) }));
}
consumer.on('error', (error) => print({ e: 'error', m: error.message }));

const delayMs = config.handlerDelayMs ?? 0;

async function handle(message: Message): Promise<void> {
  const offset = Number(message.offset);
  if (config.blockAt !== undefined && message.partition === config.blockAt.partition && offset === config.blockAt.offset) {
    print({ e: 'blocked', p: message.partition, o: offset });
    await new Promise(() => undefined);
  }
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  print({ e: 'rec', p: message.partition, o: offset, k: message.key?.toString() ?? null });
}

let closing = false;
process.on('SIGTERM', () => {
  if (closing) return;
  closing = true;
  void consumer.close().then(
    () => {
      print({ e: 'closed' });
      process.exit(0);
    },
    (error: Error) => {
      print({ e: 'error', m: `close failed: ${error.message}` });
      process.exit(1);
    },
  );
});

consumer.subscribe(config.topics);
consumer.run({ eachMessage: handle }).then(
  () => print({ e: 'joined' }),
  (error: Error) => {
    print({ e: 'error', m: `run failed: ${error.message}` });
    process.exit(1);
  },
);
