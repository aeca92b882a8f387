/** `rill cluster describe`: the brokers of the cluster and its controller, as a broker sees them. */
import type { Command } from 'commander';
import { addClientOptions, withAdmin, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';

export function registerCluster(program: Command, run: Run): void {
  const cluster = program.command('cluster').description('look at the cluster: its brokers and controller').addHelpText('after', `
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
}
