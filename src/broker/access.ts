/**
 * What a request may touch. Handlers ask `allows` before they act on a topic, a group or the
 * cluster; the broker hands them the authorizer when authentication is required (authorization.ts,
 * loaded with it) and `openAccess` otherwise, where every answer is yes and costs a call.
 */
import type { AclOperation, ResourceType } from '../security/acl.js';
import type { Connection } from './connection.js';

export type Operation = Exclude<AclOperation, 'all'>;

export interface Access {
  /** False when every request is allowed (no authorizer): handlers may skip per-item work. */
  readonly enforced: boolean;
  /** Whether the connection's principal may do `operation` on the resource; a denial is counted and logged. */
  allows(connection: Connection, resourceType: ResourceType, name: string, operation: Operation): boolean;
  /** As allows, but a denial is neither counted nor logged (a question asked before a narrower one). */
  allowsQuietly(connection: Connection, resourceType: ResourceType, name: string, operation: Operation): boolean;
  /** Whether the principal may do `operation` on at least one resource of the type (Kafka's idempotent-write rule). */
  allowsSome(connection: Connection, resourceType: ResourceType, operation: Operation): boolean;
}

export const openAccess: Access = {
  enforced: false,
  allows: () => true,
  allowsQuietly: () => true,
  allowsSome: () => true,
};

/** The single cluster resource's name (security/acl.ts clusterResourceName, without loading it). */
export const clusterResource = 'rill-cluster';
