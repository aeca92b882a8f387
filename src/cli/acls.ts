/**
 * `rill acls add|remove|list`: the ACLs a broker with `--auth required` enforces, changed online
 * through DescribeAcls/CreateAcls/DeleteAcls (which need describe or alter on the cluster: run them
 * as a super user, `--super-users`, or a user an ACL lets alter the cluster).
 *
 *   rill acls add --allow alice --operation write --topic orders
 *   rill acls add --deny '*' --operation all --topic billing. --prefix
 *   rill acls remove --allow alice --operation write --topic orders
 *   rill acls list [--principal alice] [--topic orders | --group g | --cluster]
 *
 * A principal without a type is a user: `alice` means `User:alice`; `*` is everyone.
 */
import type { Command } from 'commander';
import type { Acl, AclFilter } from '../wire/acls.js';
import { aclOperations, clusterResourceName } from '../wire/acls.js';
import { collect, UsageError } from './args.js';
import { addClientOptions, withAdmin, type ClientFlags, type Run } from './client-options.js';
import { printJson } from './output.js';

interface ResourceFlags {
  topic?: string;
  group?: string;
  cluster?: boolean;
  prefix?: boolean;
}

interface AclFlags extends ClientFlags, ResourceFlags {
  allow?: string;
  deny?: string;
  operation?: string[];
}

export function principalOf(name: string): string {
  return name === '*' || name.includes(':') ? name : `User:${name}`;
}

function resourceOf(flags: ResourceFlags, required: boolean): Pick<Acl, 'resourceType' | 'name' | 'patternType'> | null {
  const given = [flags.topic !== undefined, flags.group !== undefined, flags.cluster === true].filter(Boolean).length;
  if (given > 1) throw new UsageError('give one resource: --topic NAME, --group NAME or --cluster');
  const patternType = flags.prefix === true ? 'prefix' : 'literal';
  if (flags.topic !== undefined) return { resourceType: 'topic', name: flags.topic, patternType };
  if (flags.group !== undefined) return { resourceType: 'group', name: flags.group, patternType };
  if (flags.cluster === true) {
    if (flags.prefix === true) throw new UsageError('--prefix applies to --topic and --group, not --cluster');
    return { resourceType: 'cluster', name: clusterResourceName, patternType: 'literal' };
  }
  if (required) throw new UsageError('missing resource: --topic NAME, --group NAME or --cluster');
  if (flags.prefix === true) throw new UsageError('--prefix needs --topic or --group');
  return null;
}

/** The ACLs `add` and `remove` mean: one per --operation. */
function aclsOf(flags: AclFlags, command: string): Acl[] {
  if ((flags.allow === undefined) === (flags.deny === undefined)) throw new UsageError(`rill acls ${command}: give --allow PRINCIPAL or --deny PRINCIPAL (one of them)`);
  const permission = flags.allow !== undefined ? 'allow' : 'deny';
  const principal = principalOf((flags.allow ?? flags.deny)!);
  // Kafka's tools spell operations Read, Write, ...: any case is accepted.
  const operations = (flags.operation ?? []).map((operation) => operation.toLowerCase());
  if (operations.length === 0) throw new UsageError(`rill acls ${command}: give --operation ${aclOperations.join('|')} (repeatable)`);
  for (const operation of operations) {
    if (!(aclOperations as readonly string[]).includes(operation)) throw new UsageError(`--operation must be one of ${aclOperations.join(', ')}, got "${operation}"`);
  }
  const resource = resourceOf(flags, true)!;
  return operations.map((operation) => ({ principal, ...resource, operation: operation as Acl['operation'], permission }));
}

export function aclLine(acl: Acl): string {
  return `${acl.permission.padEnd(6)}${acl.principal.padEnd(24)}${acl.operation.padEnd(10)}${acl.resourceType.padEnd(8)}${acl.name}${acl.patternType === 'prefix' ? '*  (prefix)' : ''}`;
}

function addAclOptions(command: Command): Command {
  return addClientOptions(command)
    .option('--allow <principal>', 'allow this principal (a user name, User:NAME, or * for everyone)')
    .option('--deny <principal>', 'deny this principal (deny wins over any allow)')
    .option('--operation <op>', `${aclOperations.join('|')} (repeatable)`, collect)
    .option('--topic <name>', 'the topic (with --prefix: every topic whose name starts with it)')
    .option('--group <name>', 'the consumer group (with --prefix: every group whose id starts with it)')
    .option('--cluster', 'the cluster (create topics, describe or alter the broker, manage users and ACLs)')
    .option('--prefix', 'match names starting with --topic or --group instead of that name only');
}

export function registerAcls(program: Command, run: Run): void {
  const acls = program.command('acls').description('add, remove and list ACLs (a broker with --auth required enforces them)').addHelpText('after', `
Nothing is allowed unless an ACL allows it; a deny wins over every allow; super users
(--super-users on the broker) bypass ACLs. read, write, delete and alter imply describe.

Examples:
  rill acls add --allow producer --operation write --topic orders
  rill acls add --allow consumer --operation read --topic orders
  rill acls add --allow consumer --operation read --group billing
  rill acls add --allow ops --operation all --topic billing. --prefix
  rill acls add --deny '*' --operation delete --topic orders
  rill acls list
  rill acls remove --allow producer --operation write --topic orders`);

  addAclOptions(acls.command('add'))
    .description('add ACLs: one per --operation on the resource')
    .action((flags: AclFlags) => run(() => withAdmin(flags, async (admin) => {
      const list = aclsOf(flags, 'add');
      await admin.createAcls(list);
      for (const acl of list) process.stdout.write(`added ${aclLine(acl)}\n`);
      return 0;
    })));

  addAclOptions(acls.command('remove'))
    .description('remove the ACLs given exactly as they were added')
    .action((flags: AclFlags) => run(() => withAdmin(flags, async (admin) => {
      const removed = await admin.deleteAcls(aclsOf(flags, 'remove'));
      if (removed.length === 0) {
        process.stderr.write('rill: no such ACL (rill acls list shows them)\n');
        return 1;
      }
      for (const acl of removed) process.stdout.write(`removed ${aclLine(acl)}\n`);
      return 0;
    })));

  addClientOptions(acls.command('list'))
    .description('list ACLs, optionally only those of a principal or resource')
    .option('--principal <principal>', 'only this principal\'s ACLs (a user name, User:NAME, or *)')
    .option('--topic <name>', 'only ACLs on this topic name (literal or prefix ACLs named exactly so)')
    .option('--group <name>', 'only ACLs on this group name')
    .option('--cluster', 'only ACLs on the cluster')
    .option('--prefix', 'with --topic or --group: only prefix ACLs')
    .option('--json', 'print JSON')
    .action((flags: ClientFlags & ResourceFlags & { principal?: string; json?: boolean }) => run(() => withAdmin(flags, async (admin) => {
      const filter: AclFilter = {};
      if (flags.principal !== undefined) filter.principal = principalOf(flags.principal);
      const resource = resourceOf(flags, false);
      if (resource !== null) {
        filter.resourceType = resource.resourceType;
        filter.name = resource.name;
        if (flags.prefix === true) filter.patternType = 'prefix';
      }
      const list = await admin.describeAcls(filter);
      if (flags.json === true) printJson(list);
      else {
        process.stdout.write(`${'ACL'.padEnd(6)}${'PRINCIPAL'.padEnd(24)}${'OPERATION'.padEnd(10)}${'TYPE'.padEnd(8)}NAME\n`);
        for (const acl of list) process.stdout.write(`${aclLine(acl)}\n`);
      }
      return 0;
    })));
}
