/**
 * ACLs as the protocol carries them, and the MessagePack bodies of DescribeAcls (29), CreateAcls
 * (30) and DeleteAcls (31); protocol/apis/ describes them field by field. The authorizer's rules
 * live in security/acl.ts; here is only the shape of an ACL and what makes one valid.
 *
 * Request decoders bound every field but leave meaning to the broker: an ACL that is well formed
 * but invalid (an unknown operation, a cluster ACL with another name) fails alone, with its own
 * error in the reply, not the whole request.
 */
import { requestSchema as rq, responseSchema as rs, type Obj, type Schema } from './schema.js';

export const resourceTypes = ['topic', 'group', 'cluster'] as const;
export type ResourceType = (typeof resourceTypes)[number];

export const aclOperations = ['read', 'write', 'create', 'delete', 'alter', 'describe', 'all'] as const;
export type AclOperation = (typeof aclOperations)[number];

export const patternTypes = ['literal', 'prefix'] as const;
export type PatternType = (typeof patternTypes)[number];
export const permissions = ['allow', 'deny'] as const;
export type Permission = (typeof permissions)[number];

/** The name the cluster resource goes by (there is one). */
export const clusterResourceName = 'rill-cluster';

/** ACLs one request may create, or filters one request may carry. */
export const requestAclsMax = 1000;
/** Principal and resource names: at most this many characters. */
export const aclNameCharsMax = 255;

export interface Acl {
  /** `User:NAME` (or whatever the authenticator calls principals), or `*` for everyone. */
  principal: string;
  resourceType: ResourceType;
  name: string;
  patternType: PatternType;
  operation: AclOperation;
  permission: Permission;
}

/** Which ACLs a describe or delete means: every field given must match; an absent one matches all. */
export type AclFilter = Partial<Acl>;

/** The reason an ACL from a request or a file is invalid, or null. */
export function aclProblem(acl: Partial<Acl>): string | null {
  if (typeof acl.principal !== 'string' || acl.principal.length === 0 || acl.principal.length > aclNameCharsMax) return `principal must be 1..${aclNameCharsMax} characters (or *)`;
  if (!resourceTypes.includes(acl.resourceType as ResourceType)) return `resource type must be one of ${resourceTypes.join(', ')}`;
  if (typeof acl.name !== 'string' || acl.name.length === 0 || acl.name.length > aclNameCharsMax) return `resource name must be 1..${aclNameCharsMax} characters`;
  if (!patternTypes.includes(acl.patternType as PatternType)) return 'pattern type must be literal or prefix';
  if (acl.resourceType === 'cluster' && (acl.name !== clusterResourceName || acl.patternType !== 'literal')) return `the cluster resource is the literal name ${clusterResourceName}`;
  if (!aclOperations.includes(acl.operation as AclOperation)) return `operation must be one of ${aclOperations.join(', ')}`;
  if (!permissions.includes(acl.permission as Permission)) return 'permission must be allow or deny';
  return null;
}

const fieldBytesMax = 4 * aclNameCharsMax;

/** An ACL's six fields as strings (meaning is checked by aclProblem where it is used). */
function aclFields(s: Schema, value: unknown, path: string): Acl {
  const e = s.object(value, path);
  return {
    principal: s.string(e.principal, `${path}.principal`, fieldBytesMax),
    resourceType: s.string(e.resourceType, `${path}.resourceType`, 16) as ResourceType,
    name: s.string(e.name, `${path}.name`, fieldBytesMax),
    patternType: s.string(e.patternType, `${path}.patternType`, 16) as PatternType,
    operation: s.string(e.operation, `${path}.operation`, 16) as AclOperation,
    permission: s.string(e.permission, `${path}.permission`, 16) as Permission,
  };
}

/** A filter: each field absent (nil) or a string. */
function filterFields(s: Schema, value: unknown, path: string): AclFilter {
  const e = s.object(value, path);
  const filter: AclFilter = {};
  const text = (field: keyof Acl, maxBytes: number): void => {
    const v = s.optionalString(e[field], `${path}.${field}`, maxBytes);
    if (v !== undefined) (filter as Record<string, string>)[field] = v;
  };
  text('principal', fieldBytesMax);
  text('resourceType', 16);
  text('name', fieldBytesMax);
  text('patternType', 16);
  text('operation', 16);
  text('permission', 16);
  return filter;
}

function errorFields(e: Obj, path: string): { errorCode: number; errorMessage: string } {
  return { errorCode: rs.int(e.errorCode, `${path}.errorCode`, -32768, 32767), errorMessage: rs.string(e.errorMessage ?? '', `${path}.errorMessage`) };
}

// ---- DescribeAcls -----------------------------------------------------------------------------

export function decodeDescribeAclsRequest(value: unknown): { filter: AclFilter } {
  const obj = rq.object(value, 'body');
  return { filter: obj.filter === undefined || obj.filter === null ? {} : filterFields(rq, obj.filter, 'filter') };
}

/** Bounded by what a broker holds (security/acl-store.ts aclsMax). */
const responseAclsMax = 100_000;

export function decodeDescribeAclsResponse(value: unknown): Acl[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.acls, 'acls', responseAclsMax).map((acl, i) => aclFields(rs, acl, `acls[${i}]`));
}

// ---- CreateAcls -------------------------------------------------------------------------------

export function decodeCreateAclsRequest(value: unknown): { acls: Acl[] } {
  const obj = rq.object(value, 'body');
  return { acls: rq.array(obj.acls, 'acls', requestAclsMax).map((acl, i) => aclFields(rq, acl, `acls[${i}]`)) };
}

/** One result per ACL of the request, in its order. */
export function decodeCreateAclsResponse(value: unknown): { errorCode: number; errorMessage: string }[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.results, 'results', requestAclsMax).map((r, i) => errorFields(rs.object(r, `results[${i}]`), `results[${i}]`));
}

// ---- DeleteAcls -------------------------------------------------------------------------------

export function decodeDeleteAclsRequest(value: unknown): { filters: AclFilter[] } {
  const obj = rq.object(value, 'body');
  return { filters: rq.array(obj.filters, 'filters', requestAclsMax).map((f, i) => filterFields(rq, f, `filters[${i}]`)) };
}

/** Per filter of the request, in its order: its error, and the ACLs it removed. */
export function decodeDeleteAclsResponse(value: unknown): { errorCode: number; errorMessage: string; removed: Acl[] }[] {
  const obj = rs.object(value, 'body');
  return rs.array(obj.results, 'results', requestAclsMax).map((r, i) => {
    const path = `results[${i}]`;
    const e = rs.object(r, path);
    return { ...errorFields(e, path), removed: rs.array(e.removed, `${path}.removed`, responseAclsMax).map((acl, j) => aclFields(rs, acl, `${path}.removed[${j}]`)) };
  });
}
