/**
 * DescribeAcls (29), CreateAcls (30), DeleteAcls (31): the ACLs managed online. Describing needs
 * describe on the cluster, changing needs alter on it (super users always may). Every change is
 * durable (acls.json) before the reply, applies to the next request on every connection, and is
 * logged at info with who made it. Without `--auth required` nothing is enforced, and the broker
 * answers SECURITY_DISABLED (without loading this module) rather than keep ACLs that would
 * silently do nothing.
 */
import { RillError } from '../../lib/errors.js';
import type { Log } from '../../lib/log.js';
import { aclProblem, decodeCreateAclsRequest, decodeDeleteAclsRequest, decodeDescribeAclsRequest, type Acl } from '../../wire/acls.js';
import { AclStoreError, matchesFilter } from '../../security/acl-store.js';
import { msgpackReply, type Reply, type RequestContext } from '../connection.js';
import type { BrokerAuthorization } from '../authorization.js';
import { body, requireCluster } from './admin.js';

/** `allow User:alice read topic orders (prefix)`: how ACLs read in logs and the CLI. */
export function describeAcl(acl: Acl): string {
  return `${acl.permission} ${acl.principal} ${acl.operation} ${acl.resourceType} ${acl.name}${acl.patternType === 'prefix' ? ' (prefix)' : ''}`;
}

/** A store that cannot write its file is the broker's disk failing, not the client's request. */
function stored<T>(action: () => T): T {
  try {
    return action();
  } catch (error) {
    if (error instanceof AclStoreError) throw new RillError('INVALID_ARGUMENT', error.message);
    if (error instanceof RillError) throw error;
    throw new RillError('STORAGE_ERROR', `ACLs not changed: ${(error as Error).message}`, { cause: error });
  }
}

export function handleDescribeAcls(context: RequestContext, acls: BrokerAuthorization): Reply {
  const { filter } = decodeDescribeAclsRequest(body(context));
  requireCluster(acls, context.connection, 'describe');
  return msgpackReply({ acls: acls.list(filter) });
}

function invalid(problem: string): { errorCode: number; errorMessage: string } {
  const error = new RillError('INVALID_ARGUMENT', problem);
  return { errorCode: error.errorCode, errorMessage: error.message };
}

export function handleCreateAcls(context: RequestContext, acls: BrokerAuthorization, log: Log): Reply {
  const request = decodeCreateAclsRequest(body(context));
  requireCluster(acls, context.connection, 'alter');
  const problems = request.acls.map((acl) => aclProblem(acl));
  const valid = request.acls.filter((_, i) => problems[i] === null);
  const added = valid.length === 0 ? 0 : stored(() => acls.add(valid));
  if (valid.length > 0) {
    log('info', `${context.connection.principal ?? context.connection.remote} added ${added} ACLs: ${valid.map(describeAcl).join('; ')}`, { principal: context.connection.principal, remote: context.connection.remote, added });
  }
  const results = problems.map((problem) => (problem === null ? { errorCode: 0, errorMessage: '' } : invalid(problem)));
  return msgpackReply({ results });
}

export function handleDeleteAcls(context: RequestContext, acls: BrokerAuthorization, log: Log): Reply {
  const { filters } = decodeDeleteAclsRequest(body(context));
  requireCluster(acls, context.connection, 'alter');
  const removed = filters.length === 0 ? [] : stored(() => acls.remove(filters));
  if (removed.length > 0) {
    log('info', `${context.connection.principal ?? context.connection.remote} removed ${removed.length} ACLs: ${removed.map(describeAcl).join('; ')}`, { principal: context.connection.principal, remote: context.connection.remote, removed: removed.length });
  }
  return msgpackReply({ results: filters.map((filter) => ({ errorCode: 0, errorMessage: '', removed: removed.filter((acl) => matchesFilter(acl, filter)) })) });
}
