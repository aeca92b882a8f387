/**
 * Authorization on the broker's side: the ACL store (security/acl-store.ts) and the pure
 * authorizer (security/acl.ts) behind the Access interface the handlers ask, plus what needs the
 * broker: the super users, a per-connection cache of decisions, and counting and logging denials.
 *
 * Enforced when authentication is required (`--auth required`): then nothing is allowed unless an
 * ACL allows it, super users excepted. Loaded with authentication (broker.ts loadAuth), so a
 * broker without it carries none of this.
 *
 * A denial is counted in rill_authorization_denials_total{resource_type} and raised as the
 * operator condition authorization_denied, logged at most once per principal and resource per
 * alert interval (operator-alerts.ts): a client retrying a forbidden produce is one line per 10 s.
 */
import { Authorizer, type Acl, type ResourceType } from '../security/acl.js';
import { AclStore, type AclFilter } from '../security/acl-store.js';
import type { Access, Operation } from './access.js';
import type { Connection } from './connection.js';
import type { BrokerMetrics } from './metrics.js';

/** Decisions one connection remembers before its cache starts over. */
const connectionDecisionsMax = 1024;

interface Decisions {
  generation: number;
  byKey: Map<string, boolean>;
}

/** `--super-users alice,User:CN=ops`: a bare name is a SASL user (`User:NAME`). */
export function superUserPrincipal(name: string): string {
  return name.includes(':') ? name : `User:${name}`;
}

export class BrokerAuthorization implements Access {
  readonly enforced = true;
  private authorizer: Authorizer;
  /** Bumped on every ACL change: cached decisions of an older generation are dropped. */
  private generation = 0;
  private readonly decisions = new WeakMap<Connection, Decisions>();
  private readonly superUsers: string[];

  constructor(private readonly store: AclStore, superUsers: readonly string[], private readonly metrics: BrokerMetrics) {
    this.superUsers = superUsers.map(superUserPrincipal);
    this.authorizer = new Authorizer(store.list(), this.superUsers);
  }

  get aclCount(): number {
    return this.store.size;
  }

  get superUserPrincipals(): readonly string[] {
    return this.superUsers;
  }

  allows(connection: Connection, resourceType: ResourceType, name: string, operation: Operation): boolean {
    const principal = connection.principal;
    if (principal === null) return this.deny(connection, '(anonymous)', resourceType, name, operation);
    let cache = this.decisions.get(connection);
    if (cache === undefined || cache.generation !== this.generation || cache.byKey.size >= connectionDecisionsMax) {
      cache = { generation: this.generation, byKey: new Map() };
      this.decisions.set(connection, cache);
    }
    const key = `${resourceType}\u0000${operation}\u0000${name}`;
    let allowed = cache.byKey.get(key);
    if (allowed === undefined) {
      allowed = this.authorizer.authorize({ principal, resourceType, name, operation });
      cache.byKey.set(key, allowed);
    }
    return allowed || this.deny(connection, principal, resourceType, name, operation);
  }

  allowsQuietly(connection: Connection, resourceType: ResourceType, name: string, operation: Operation): boolean {
    const principal = connection.principal;
    return principal !== null && this.authorizer.authorize({ principal, resourceType, name, operation });
  }

  allowsSome(connection: Connection, resourceType: ResourceType, operation: Operation): boolean {
    const principal = connection.principal;
    if (principal !== null && this.authorizer.allowsSome(principal, resourceType, operation)) return true;
    return this.deny(connection, principal ?? '(anonymous)', resourceType, '(any)', operation);
  }

  list(filter: AclFilter): Acl[] {
    return this.store.list(filter);
  }

  /** Adds ACLs durably; they apply to the next request (cached decisions are dropped). */
  add(acls: readonly Acl[]): number {
    const { added } = this.store.add(acls);
    if (added > 0) this.rebuild();
    return added;
  }

  remove(filters: readonly AclFilter[]): Acl[] {
    const removed = this.store.remove(filters);
    if (removed.length > 0) this.rebuild();
    return removed;
  }

  private rebuild(): void {
    this.authorizer = new Authorizer(this.store.list(), this.superUsers);
    this.generation++;
  }

  private deny(connection: Connection, principal: string, resourceType: ResourceType, name: string, operation: Operation): false {
    const { authorizationDenials } = this.metrics;
    authorizationDenials.set(resourceType, (authorizationDenials.get(resourceType) ?? 0) + 1);
    const resource = `${resourceType}:${name}`;
    this.metrics.alerts.raise('authorization_denied', 'warn', `${principal} (${connection.remote}) may not ${operation} ${resourceType} "${name}": no ACL allows it, or one denies it`, {
      remote: connection.remote, principal, resourceType, resource: name, operation,
    }, `${principal}\u0000${resource}`);
    return false;
  }
}
