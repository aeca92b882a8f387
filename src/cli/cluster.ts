/** `rill cluster describe`: the brokers of the cluster and its controller, as a broker sees them. */
import { InvalidArgumentError, type Command } from 'commander';
import type { Admin } from '../client/admin.js';
import { addClientOptions, withAdmin, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';

export function registerCluster(program: Command, run: Run): void {
  const cluster = program.command('cluster').description('look at the cluster (brokers, controller) and move replicas (rebalance, decommission)').addHelpText('after', `
Example:
  rill cluster describe -b 127.0.0.1:9092,127.0.0.1:9093`);

  addClientOptions(cluster.command('describe'))
    .description('live brokers (id, address, rack) and the controller (id, epoch)')
    .option('--json', 'print JSON')
    .addHelpText('after', `
Brokers of a cluster (started with --etcd) are the ones whose etcd lease is alive; a broker that
stopped or died is gone from the list once its lease is revoked (a clean stop) or has expired.
A broker that lost its lease (etcd unreachable) answers with itself alone, not alive, and no
controller. A broker started without --etcd is a cluster of one.

Example:
  rill cluster describe -b 127.0.0.1:9092,127.0.0.1:9093 --json`)
    .action((flags: ClientFlags & { json?: boolean }) => run(() => withAdmin(flags, async (admin) => {
      const description = await admin.describeCluster();
      if (flags.json === true) {
        printJson(description);
        return 0;
      }
      const name = description.cluster === null ? 'a single broker (not in a cluster)' : `cluster ${description.cluster}`;
      const controller = description.controller === null ? 'no controller' : `controller ${description.controller.nodeId} (epoch ${description.controller.epoch})`;
      process.stdout.write(`${name}, ${controller}, as broker ${description.answeredBy} sees it\n`);
      const rows = description.brokers.map((b) => [String(b.nodeId), `${b.host}:${b.port}`, b.rack ?? '-', b.alive ? 'yes' : 'no', description.controller?.nodeId === b.nodeId ? 'controller' : '']);
      const header = ['ID', 'ADDRESS', 'RACK', 'ALIVE', ''];
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)) + 2);
      for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('').trimEnd()}\n`);
      return 0;
    })));

  const placement = (action: 'rebalance' | 'decommission', description: string, help: string) => addClientOptions(cluster.command(action === 'rebalance' ? 'rebalance' : 'decommission <nodeId>'))
    .description(description)
    .option('--no-wait', 'return once the moves started, without waiting for them to finish')
    .option('--wait-ms <ms>', 'how long to wait for the moves to finish (default 600000)', (v) => positiveMs(v), 600_000)
    .option('--json', 'print the moves as JSON')
    .addHelpText('after', help);

  placement('decommission', 'move every replica off a broker (it gets none from then on), then it may be stopped', `
New replicas are placed on the other live brokers (only the partitions the broker held move),
catch up with their leaders, join the ISR, and only then is the broker's replica removed: the
replication factor never drops. Waits until the broker holds no replica (--no-wait: returns once
the moves started). The broker stays out of placement after it (also of new topics).

Example:
  rill cluster decommission 3 -b 127.0.0.1:9092,127.0.0.1:9093`)
    .action((nodeId: string, flags: PlacementFlags) => run(() => withAdmin(flags, async (admin) => {
      const id = Number(nodeId);
      if (!Number.isInteger(id) || id < 0) throw new InvalidArgumentError(`node id must be a non-negative integer, got "${nodeId}"`);
      return reportMoves(admin, flags, await admin.alterPlacement('decommission', id), `broker ${id} decommissioned`, (partitions) => partitions.every((p) => !p.replicas.includes(id)));
    })));

  placement('rebalance', 'spread replicas over the live brokers (a new broker takes its share; only that share moves)', `
Placement (consistent hashing with bounded loads) keeps every replica it can: adding one broker to
N moves about 1/(N+1) of the replicas, to it. Each moving partition's new replica catches up and
joins the ISR before the old one leaves. Waits until every move finished (--no-wait: returns once
they started).

Example:
  rill cluster rebalance -b 127.0.0.1:9092`)
    .action((flags: PlacementFlags) => run(() => withAdmin(flags, async (admin) => (
      reportMoves(admin, flags, await admin.alterPlacement('rebalance'), 'rebalanced', () => true)
    ))));
}

type PlacementFlags = ClientFlags & { wait: boolean; waitMs: number; json?: boolean };

function positiveMs(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number of milliseconds, got "${value}"`);
  return n;
}

/** Prints the moves, then (unless --no-wait) waits until every moved partition has only its new replicas. */
async function reportMoves(admin: Admin, flags: PlacementFlags, moves: { topic: string; partition: number; from: number[]; to: number[] }[], done: string, extra: (partitions: { replicas: readonly number[] }[]) => boolean): Promise<number> {
  if (flags.json === true) printJson({ moves });
  else {
    process.stdout.write(`${moves.length} partition(s) moving\n`);
    for (const m of moves) process.stdout.write(`  ${m.topic}/${m.partition}: [${m.from.join(',')}] -> [${m.to.join(',')}]\n`);
  }
  if (!flags.wait) return 0;
  const deadlineMs = Date.now() + flags.waitMs;
  const topics = [...new Set(moves.map((m) => m.topic))];
  for (;;) {
    let finished = true;
    for (const topic of topics) {
      const description = await admin.describeTopic(topic).catch(() => null);
      const target = new Map(moves.filter((m) => m.topic === topic).map((m) => [m.partition, m.to]));
      const ok = description !== null && description.partitions.every((p) => {
        const to = target.get(p.partition);
        return to === undefined || (p.replicas.length === to.length && to.every((id) => p.replicas.includes(id)));
      }) && extra(description.partitions);
      if (!ok) finished = false;
    }
    if (finished) {
      if (flags.json !== true) process.stdout.write(`${done}: every move finished\n`);
      return 0;
    }
    if (Date.now() > deadlineMs) {
      process.stderr.write(`rill: the moves did not finish within ${flags.waitMs} ms; they go on (rill topics describe shows them)\n`);
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
