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

export const resourceTypes = ['topic', 'group', 'cluster'] as const;
export type ResourceType = (typeof resourceTypes)[number];

export const aclOperations = ['read', 'write', 'create', 'delete', 'alter', 'describe', 'all'] as const;
export type AclOperation = (typeof aclOperations)[number];

export type PatternType = 'literal' | 'prefix';
export type Permission = 'allow' | 'deny';

/** The name the cluster resource goes by (there is one). */
export const clusterResourceName = 'rill-cluster';

export interface Acl {
  /** `User:NAME` (or whatever the authenticator calls principals), or `*` for everyone. */
  principal: string;
  resourceType: ResourceType;
  name: string;
  patternType: PatternType;
  operation: AclOperation;
  permission: Permission;
}

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
}

/** The reason an ACL from a request or a file is invalid, or null. */
export function aclProblem(acl: Partial<Acl>): string | null {
  if (typeof acl.principal !== 'string' || acl.principal.length === 0 || acl.principal.length > 255) return 'principal must be 1..255 characters (or *)';
  if (!resourceTypes.includes(acl.resourceType as ResourceType)) return `resource type must be one of ${resourceTypes.join(', ')}`;
  if (typeof acl.name !== 'string' || acl.name.length === 0 || acl.name.length > 255) return 'resource name must be 1..255 characters';
  if (acl.patternType !== 'literal' && acl.patternType !== 'prefix') return 'pattern type must be literal or prefix';
  if (acl.resourceType === 'cluster' && acl.name !== clusterResourceName) return `the cluster resource is named ${clusterResourceName}`;
  if (!aclOperations.includes(acl.operation as AclOperation)) return `operation must be one of ${aclOperations.join(', ')}`;
  if (acl.permission !== 'allow' && acl.permission !== 'deny') return 'permission must be allow or deny';
  return null;
}
