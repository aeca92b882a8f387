/**
 * `rill groups list|describe|reset-offsets|delete`: one `groups.command(...)` each, with an
 * example in its help.
 */
import type { Command } from 'commander';
import type { GroupDescriptionBody } from '../wire/groups.js';
import { offsetValue, UsageError } from './args.js';
import { addClientOptions, withAdmin, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';

function partitionsText(list: { topic: string; partitions: number[] }[]): string {
  return list.map((t) => `${t.topic}:${t.partitions.join(',')}`).join(' ') || '-';
}

function printGroup(group: GroupDescriptionBody): void {
  const out = (text: string): void => void process.stdout.write(text);
  out(`group ${group.groupId}: ${group.state}, epoch ${group.groupEpoch}, ${group.members.length} members\n\n`);
  out('MEMBER                                CLIENT          HOST             EPOCH  ASSIGNED\n');
  for (const m of group.members) {
    out(`${m.memberId.padEnd(38)}${m.clientId.slice(0, 15).padEnd(16)}${m.host.slice(0, 16).padEnd(17)}${String(m.memberEpoch).padEnd(7)}${partitionsText(m.assigned)}`);
    if (m.pendingRevocation.length > 0) out(`  revoking ${partitionsText(m.pendingRevocation)}`);
    if (m.pendingAssignment.length > 0) out(`  waiting for ${partitionsText(m.pendingAssignment)}`);
    out('\n');
  }
  out('\nTOPIC                PARTITION  COMMITTED  END        LAG        OWNER\n');
  for (const o of group.offsets) {
    const committed = o.committedOffset < 0n ? '-' : String(o.committedOffset);
    out(`${o.topic.slice(0, 20).padEnd(21)}${String(o.partition).padEnd(11)}${committed.padEnd(11)}${String(o.endOffset).padEnd(11)}${(o.lag < 0n ? '-' : String(o.lag)).padEnd(11)}${o.owner ?? '-'}\n`);
  }
  if (group.history.length === 0) return;
  out('\nRECENT REBALANCES\n');
  for (const h of group.history.slice(-10)) {
    const moved = h.moves.length + h.movesOmitted;
    const stable = h.stableAfterMs === null ? 'not stable yet' : `stable after ${h.stableAfterMs} ms`;
    out(`${new Date(h.atMs).toISOString()}  epoch ${h.groupEpoch}  ${h.reason}${h.memberId ? ` (${h.memberId})` : ''}: ${moved} partition${moved === 1 ? '' : 's'} moved, ${stable}\n`);
  }
}

export function registerGroups(program: Command, run: Run): void {
  const groups = program.command('groups').description('list and describe consumer groups, reset their offsets').addHelpText('after', `
Examples:
  rill groups list
  rill groups describe billing
  rill groups reset-offsets billing -t orders --to-earliest
  rill groups delete billing`);

  addClientOptions(groups.command('list'))
    .description('list consumer groups')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  rill groups list')
    .action((flags: ClientFlags & { json?: boolean }) => run(() => withAdmin(flags, async (admin) => {
      const list = await admin.listGroups();
      if (flags.json === true) printJson(list);
      else for (const g of list) process.stdout.write(`${g.groupId}\t${g.state}\t${g.memberCount} members\n`);
      return 0;
    })));

  addClientOptions(groups.command('describe').argument('<group>', 'group id'))
    .description('members, assignment, committed offsets, lag and recent rebalances of a group')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  rill groups describe billing')
    .action((groupId: string, flags: ClientFlags & { json?: boolean }) => run(() => withAdmin(flags, async (admin) => {
      const group = await admin.describeGroup(groupId);
      if (flags.json === true) printJson(group);
      else printGroup(group);
      return 0;
    })));

  addClientOptions(groups.command('reset-offsets').argument('<group>', 'group id'))
    .description('move a group\'s committed offsets for a topic (the group must have no live members)')
    .requiredOption('-t, --topic <topic>', 'topic whose offsets to move')
    .option('--to-earliest', 'to the start of each partition')
    .option('--to-latest', 'to the end of each partition')
    .option('--to-offset <offset>', 'to this offset in every partition', offsetValue('--to-offset'))
    .option('--json', 'print JSON')
    .addHelpText('after', `
Examples:
  rill groups reset-offsets billing --topic orders --to-earliest
  rill groups reset-offsets billing -t orders --to-offset 1000`)
    .action((groupId: string, flags: ClientFlags & { topic: string; toEarliest?: boolean; toLatest?: boolean; toOffset?: bigint; json?: boolean }) => run(async () => {
      const choices = [flags.toEarliest === true, flags.toLatest === true, flags.toOffset !== undefined].filter(Boolean).length;
      if (choices !== 1) throw new UsageError('give exactly one of --to-earliest, --to-latest, --to-offset O');
      const to = flags.toEarliest === true ? 'earliest' : flags.toLatest === true ? 'latest' : flags.toOffset!;
      return withAdmin(flags, async (admin) => {
        const result = await admin.resetGroupOffsets(groupId, flags.topic, to);
        if (flags.json === true) printJson(result);
        else for (const r of result) process.stdout.write(`${flags.topic}/${r.partition} -> ${r.offset}\n`);
        return 0;
      });
    }));

  addClientOptions(groups.command('delete').argument('<group>', 'group id'))
    .description('delete a group and its committed offsets (refused while it has live members)')
    .addHelpText('after', `
A group with live members answers NON_EMPTY_GROUP: stop its members first (or wait for their
session timeout).

Example:
  rill groups delete billing`)
    .action((groupId: string, flags: ClientFlags) => run(() => withAdmin(flags, async (admin) => {
      await admin.deleteGroup(groupId);
      process.stdout.write(`deleted group ${groupId}\n`);
      return 0;
    })));
}
