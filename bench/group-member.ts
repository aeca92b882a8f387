/**
 * One consumer-group member for the group workload, as its own process (so it can be SIGKILLed).
 *   node dist/bench/group-member.js BOOTSTRAP TOPIC GROUP MEMBER_NAME SESSION_TIMEOUT_MS
 * It prints JSON lines on stdout: {"type":"ready"} once subscribed, then
 * {"type":"consumed","partition":P,"atMs":EPOCH_MS} the first time it sees a partition and again
 * whenever it sees it after 200 ms without (cheap enough at the workload's low rate),
 * {"type":"revoked"|"lost","partitions":[P...],"atMs":EPOCH_MS} when the consumer emits those
 * events (a client without `on` emits none), and {"type":"missing"} (exit 3) if the client has no
 * Consumer yet. SIGTERM closes it gracefully.
 *
 * The Consumer API is written against issue 3 (subscribe, async iterator or run({eachMessage}),
 * close); the shapes tried below cover the reasonable spellings of it.
 */
type AnyConsumer = {
  subscribe?: (arg: unknown) => unknown;
  run?: (arg: unknown) => unknown;
  close?: () => Promise<void>;
  on?: (event: 'revoked' | 'lost', listener: (partitions: { partition: number }[]) => void) => unknown;
  [Symbol.asyncIterator]?: () => AsyncIterator<{ partition: number }>;
};

const [bootstrap, topic, groupId, memberName, sessionTimeoutText] = process.argv.slice(2);
const emit = (event: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(event)}\n`);
};

async function subscribe(consumer: AnyConsumer): Promise<void> {
  if (typeof consumer.subscribe !== 'function') return; // topics given in the constructor
  for (const arg of [[topic], { topics: [topic] }, topic]) {
    try {
      await consumer.subscribe(arg);
      return;
    } catch (error) {
      if (arg === topic) throw error;
    }
  }
}

async function main(): Promise<void> {
  // RILL_BENCH_CONSUMER_MODULE (a path relative to this file) tries a Consumer not exported from the index yet.
  const client = (await import(process.env.RILL_BENCH_CONSUMER_MODULE ?? '../src/client/index.js')) as Record<string, unknown>;
  const Consumer = client.Consumer as (new (options: Record<string, unknown>) => AnyConsumer) | undefined;
  if (typeof Consumer !== 'function') {
    emit({ type: 'missing' });
    process.exit(3);
  }
  const sessionTimeoutMs = Number(sessionTimeoutText);
  const consumer = new Consumer({ bootstrap, groupId, group: groupId, clientId: memberName, sessionTimeoutMs, topics: [topic], fromBeginning: false });
  let closing = false;
  process.on('SIGTERM', () => {
    if (closing) return;
    closing = true;
    emit({ type: 'closing', atMs: Date.now() });
    void (consumer.close?.() ?? Promise.resolve()).then(() => process.exit(0), () => process.exit(1));
  });
  for (const type of ['revoked', 'lost'] as const) {
    consumer.on?.(type, (partitions) => emit({ type, partitions: partitions.map((p) => p.partition), atMs: Date.now() }));
  }
  await subscribe(consumer);
  emit({ type: 'ready', atMs: Date.now() });
  const lastSeenMs = new Map<number, number>();
  const seen = (partition: number): void => {
    if (closing) return;
    const nowMs = Date.now();
    const last = lastSeenMs.get(partition);
    lastSeenMs.set(partition, nowMs);
    if (last === undefined || nowMs - last > 200) emit({ type: 'consumed', partition, atMs: nowMs });
  };
  const iterate = consumer[Symbol.asyncIterator];
  if (typeof iterate === 'function') {
    const iterator = iterate.call(consumer);
    for (;;) {
      const next = await iterator.next();
      if (next.done === true) break;
      seen(next.value.partition);
    }
  } else if (typeof consumer.run === 'function') {
    await consumer.run({
      eachMessage: async (payload: { partition?: number; message?: { partition?: number } }) => {
        seen(payload.partition ?? payload.message?.partition ?? -1);
      },
    });
    await new Promise(() => undefined);
  } else {
    throw new Error('Consumer has neither an async iterator nor run()');
  }
}

main().catch((error: unknown) => {
  emit({ type: 'error', message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
