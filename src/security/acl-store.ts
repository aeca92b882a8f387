/**
 * The ACLs a broker enforces, kept in `<dataDir>/acls.json` and replaced whole and durably on
 * every change (storage/durable-file.ts): a crash leaves the old set or the new one, and a change
 * is acknowledged only once it is on disk.
 *
 * The file is read back strictly, like users.json: every ACL validated (acl.ts aclProblem), the
 * count and size bounded; a file that fails stops the broker's start with an error naming it (a
 * broker must not enforce a partial set of ACLs), never a partial load.
 */
import path from 'node:path';
import { readJsonFile, replaceFile } from '../storage/durable-file.js';
import { type FileOps, nodeFileOps } from '../storage/file-ops.js';
import { aclProblem, type Acl, type AclFilter } from '../wire/acls.js';

export type { AclFilter };

export const aclsFileName = 'acls.json';
/** ACLs one broker holds. */
export const aclsMax = 10_000;
const aclsFileBytesMax = 16 * 1024 * 1024;

export class AclStoreError extends Error {
  override name = 'AclStoreError';
}

const aclFields = ['principal', 'resourceType', 'name', 'patternType', 'operation', 'permission'] as const;

export function matchesFilter(acl: Acl, filter: AclFilter): boolean {
  return aclFields.every((field) => filter[field] === undefined || filter[field] === acl[field]);
}

function sameAcl(a: Acl, b: Acl): boolean {
  return aclFields.every((field) => a[field] === b[field]);
}

/** The ACL with exactly its six fields (nothing else from a request or a file is kept). */
function normalized(acl: Acl): Acl {
  const { principal, resourceType, name, patternType, operation, permission } = acl;
  return { principal, resourceType, name, patternType, operation, permission };
}

export class AclStore {
  private acls: Acl[] = [];
  private readonly file: string;

  private constructor(dataDir: string, private readonly fileOps: FileOps) {
    this.file = path.join(dataDir, aclsFileName);
  }

  /** Loads `<dataDir>/acls.json` (none: no ACLs yet). */
  static open(dataDir: string, fileOps: FileOps = nodeFileOps): AclStore {
    const store = new AclStore(dataDir, fileOps);
    store.load();
    return store;
  }

  list(filter: AclFilter = {}): Acl[] {
    return this.acls.filter((acl) => matchesFilter(acl, filter)).map(normalized);
  }

  get size(): number {
    return this.acls.length;
  }

  /**
   * Adds ACLs (one already held is not added twice); durable when it returns. Validates all
   * before changing anything: one invalid ACL rejects the whole call.
   */
  add(acls: readonly Acl[]): { added: number } {
    for (const acl of acls) {
      const problem = aclProblem(acl);
      if (problem !== null) throw new AclStoreError(problem);
    }
    const next = [...this.acls];
    for (const acl of acls) if (!next.some((held) => sameAcl(held, acl))) next.push(normalized(acl));
    if (next.length > aclsMax) throw new AclStoreError(`the broker would hold ${next.length} ACLs, at most ${aclsMax}`);
    const added = next.length - this.acls.length;
    if (added > 0) this.replace(next);
    return { added };
  }

  /** Removes every ACL matching any of the filters; returns them. Durable when it returns. */
  remove(filters: readonly AclFilter[]): Acl[] {
    const removed = new Set(this.acls.filter((acl) => filters.some((filter) => matchesFilter(acl, filter))));
    if (removed.size > 0) this.replace(this.acls.filter((acl) => !removed.has(acl)));
    return [...removed].map(normalized);
  }

  private replace(next: Acl[]): void {
    replaceFile(this.fileOps, this.file, Buffer.from(`${JSON.stringify({ version: 1, acls: next }, null, 2)}\n`), { durable: true });
    this.acls = next;
  }

  private load(): void {
    const fail = (reason: string): never => {
      throw new AclStoreError(`${this.file} is invalid (${reason}); restore it from a backup, or remove it and add the ACLs again`);
    };
    const read = readJsonFile(this.fileOps, this.file, aclsFileBytesMax, {
      unreadable: (message) => {
        throw new AclStoreError(`cannot read ${this.file}: ${message}`);
      },
      invalid: fail,
    });
    if (read === null) return;
    const root = read.value;
    const top = root as { version?: unknown; acls?: unknown };
    if (top === null || typeof top !== 'object' || top.version !== 1 || !Array.isArray(top.acls)) fail('expected {"version": 1, "acls": [...]}');
    const list = top.acls as unknown[];
    if (list.length > aclsMax) fail(`more than ${aclsMax} ACLs`);
    const acls: Acl[] = [];
    list.forEach((value, index) => {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(`ACL ${index}: expected an object`);
      const problem = aclProblem(value as Partial<Acl>);
      if (problem !== null) fail(`ACL ${index}: ${problem}`);
      acls.push(normalized(value as Acl));
    });
    this.acls = acls;
  }
}
