/**
 * Authorization in the shape Kafka users know: an ACL names a principal (or `*`), a resource
 * (topic, group or the cluster) by literal name or by prefix, an operation, and allow or deny.
 * Pure: the ACLs and the question come in, a decision goes out.
 *
 * The rules (Kafka's, in order):
 *   1. a super user may do everything;
 *   2. an ACL matches when its principal is the asker or `*`, its resource type is the one asked
 *      about, its name equals the resource name (literal; the literal `*` matches every name) or
 *      is a prefix of it (prefix), and its operation is the one asked or `all`;
 *   3. any matching deny wins;
 *   4. otherwise any matching allow allows; asking to `describe` is also allowed by an allow of
 *      read, write, delete or alter (who may use a resource may see it);
 *   5. otherwise the answer is no: nothing is allowed unless an ACL allows it.
 */

import { resourceTypes, type Acl, type AclOperation, type ResourceType } from '../wire/acls.js';

// The ACL's shape is part of the protocol (wire/acls.ts); the rules are here.
export { aclProblem, aclOperations, clusterResourceName, resourceTypes, type Acl, type AclOperation, type PatternType, type Permission, type ResourceType } from '../wire/acls.js';

export interface AuthorizationRequest {
  principal: string;
  resourceType: ResourceType;
  name: string;
  operation: Exclude<AclOperation, 'all'>;
}

/** Operations whose allow also allows describe (rule 4). */
const impliesDescribe: ReadonlySet<AclOperation> = new Set(['read', 'write', 'delete', 'alter', 'all']);

function matchesResource(acl: Acl, request: AuthorizationRequest): boolean {
  if (acl.resourceType !== request.resourceType) return false;
  if (acl.patternType === 'prefix') return request.name.startsWith(acl.name);
  return acl.name === '*' || acl.name === request.name;
}

function matchesPrincipal(acl: Acl, principal: string): boolean {
  return acl.principal === '*' || acl.principal === principal;
}

/**
 * The ACLs, indexed by resource type so a request only looks at its own kind. Replaced whole on
 * every change (changes are rare; requests are many).
 */
export class Authorizer {
  private readonly byType: ReadonlyMap<ResourceType, readonly Acl[]>;
  private readonly superUsers: ReadonlySet<string>;

  constructor(acls: readonly Acl[], superUsers: Iterable<string> = []) {
    const byType = new Map<ResourceType, Acl[]>(resourceTypes.map((t) => [t, []]));
    for (const acl of acls) byType.get(acl.resourceType)!.push(acl);
    this.byType = byType;
    this.superUsers = new Set(superUsers);
  }

  isSuperUser(principal: string): boolean {
    return this.superUsers.has(principal);
  }

  authorize(request: AuthorizationRequest): boolean {
    if (this.superUsers.has(request.principal)) return true;
    let allowed = false;
    for (const acl of this.byType.get(request.resourceType)!) {
      if (!matchesPrincipal(acl, request.principal) || !matchesResource(acl, request)) continue;
      const operationMatches = acl.operation === 'all' || acl.operation === request.operation;
      if (acl.permission === 'deny') {
        if (operationMatches) return false;
        continue;
      }
      if (operationMatches || (request.operation === 'describe' && impliesDescribe.has(acl.operation))) allowed = true;
    }
    return allowed;
  }

  /**
   * Whether some ACL lets the principal do `operation` on at least one resource of the type that
   * no deny takes away (Kafka's rule for idempotent producers: write on any topic). An allow
   * counts unless a deny of the same operation covers every name it matches.
   */
  allowsSome(principal: string, resourceType: ResourceType, operation: Exclude<AclOperation, 'all'>): boolean {
    if (this.superUsers.has(principal)) return true;
    const acls = this.byType.get(resourceType)!.filter((acl) => matchesPrincipal(acl, principal));
    const denies = acls.filter((acl) => acl.permission === 'deny' && (acl.operation === 'all' || acl.operation === operation));
    return acls.some((acl) => acl.permission === 'allow'
      && (acl.operation === 'all' || acl.operation === operation || (operation === 'describe' && impliesDescribe.has(acl.operation)))
      && !denies.some((deny) => denyCovers(deny, acl)));
  }
}

/** Whether a deny (of the right operation) takes away every name the allow matches. */
function denyCovers(deny: Acl, allow: Acl): boolean {
  if (deny.patternType === 'literal' && deny.name === '*') return true;
  const allowsEveryName = allow.patternType === 'literal' && allow.name === '*';
  if (deny.patternType === 'literal') return !allowsEveryName && allow.patternType === 'literal' && deny.name === allow.name;
  return !allowsEveryName && allow.name.startsWith(deny.name);
}
