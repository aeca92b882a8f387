/**
 * DescribeUserScramCredentials (50) and AlterUserScramCredentials (51): user administration while
 * the broker runs. Both work on the CredentialStore that BrokerAuth logs users in with, so a
 * change counts at the next login: a new user can log in as soon as the answer arrives, and a
 * removed user, or an old password, cannot. Connections a user already opened stay open (as in
 * Kafka): authentication happens once per connection.
 *
 * broker.ts loads this module together with authentication, never in a broker no one logs in to.
 * Describe needs describe on the cluster, Alter needs alter on the cluster. Each user succeeds or
 * fails on its own; the accepted changes of one request are written with one durable replace of
 * users.json before the answer (a failed write fails them all, and nothing changes).
 */
import { RillError } from '../../lib/errors.js';
import type { Log } from '../../lib/log.js';
import { credentialsProblem, CredentialStoreError, userNameProblem, type CredentialChange, type CredentialStore } from '../../security/credentials.js';
import { writeError } from '../../storage/storage-errors.js';
import { scramMechanisms, type ScramCredential, type ScramMechanism } from '../../wire/scram.js';
import { decodeAlterUsersRequest, decodeDescribeUsersRequest, type ScramCredentialBody, type UserResult } from '../../wire/users.js';
import { clusterResource, type Access } from '../access.js';
import { msgpackReply, type Reply, type RequestContext } from '../connection.js';
import { body } from './admin.js';

function errorFields(error: RillError | null): { errorCode: number; errorMessage: string } {
  return error === null ? { errorCode: 0, errorMessage: '' } : { errorCode: error.errorCode, errorMessage: error.message };
}

/** A name as it may appear in a message or a log line (bounded: request names are up to 1 KiB). */
function shown(name: string): string {
  return JSON.stringify(name.length > 255 ? `${name.slice(0, 255)}…` : name);
}

function nameError(name: string): RillError | null {
  const problem = userNameProblem(name);
  return problem === null ? null : new RillError('INVALID_ARGUMENT', `user ${shown(name)}: ${problem}`);
}

export function handleDescribeUsers(context: RequestContext, store: CredentialStore, access: Access): Reply {
  const request = decodeDescribeUsersRequest(body(context));
  if (!access.allows(context.connection, 'cluster', clusterResource, 'describe')) {
    throw new RillError('CLUSTER_AUTHORIZATION_FAILED', 'DescribeUserScramCredentials needs describe on the cluster');
  }
  const users = (request.users ?? store.names()).map((name) => {
    const credentials = store.describe(name);
    const error = nameError(name) ?? (credentials === null ? new RillError('USER_NOT_FOUND', `no user ${shown(name)}`) : null);
    return { name, ...errorFields(error), credentials: error === null ? credentials : [] };
  });
  return msgpackReply({ users });
}

interface AlterItem {
  name: string;
  /** null: delete the user. */
  credentials: ScramCredentialBody[] | null;
  error: RillError | null;
}

function upsertionError(name: string, credentials: readonly ScramCredentialBody[]): RillError | null {
  const unknown = credentials.find((c) => !(scramMechanisms as readonly string[]).includes(c.mechanism));
  if (unknown !== undefined) {
    return new RillError('UNSUPPORTED_SASL_MECHANISM', `user ${shown(name)}: ${shown(unknown.mechanism)} is not a mechanism this broker stores (${scramMechanisms.join(', ')})`);
  }
  const problem = credentialsProblem(credentials as readonly ScramCredential[]);
  return problem === null ? null : new RillError('INVALID_ARGUMENT', `user ${shown(name)}: ${problem}`);
}

function itemError(item: AlterItem, store: CredentialStore, timesNamed: number): RillError | null {
  if (timesNamed > 1) return new RillError('INVALID_ARGUMENT', `user ${shown(item.name)} is named ${timesNamed} times in one request; name each user once`);
  const error = nameError(item.name);
  if (error !== null) return error;
  if (item.credentials === null) return store.has(item.name) ? null : new RillError('USER_NOT_FOUND', `no user ${shown(item.name)}`);
  return upsertionError(item.name, item.credentials);
}

export function handleAlterUsers(context: RequestContext, store: CredentialStore, access: Access, log: Log): Reply {
  const request = decodeAlterUsersRequest(body(context));
  if (!access.allows(context.connection, 'cluster', clusterResource, 'alter')) {
    throw new RillError('CLUSTER_AUTHORIZATION_FAILED', 'AlterUserScramCredentials needs alter on the cluster');
  }
  const items: AlterItem[] = [
    ...request.upsertions.map(({ name, credentials }) => ({ name, credentials, error: null })),
    ...request.deletions.map((name) => ({ name, credentials: null, error: null })),
  ];
  const timesNamed = new Map<string, number>();
  for (const { name } of items) timesNamed.set(name, (timesNamed.get(name) ?? 0) + 1);
  for (const item of items) item.error = itemError(item, store, timesNamed.get(item.name)!);

  const accepted = items.filter((item) => item.error === null);
  const existed = new Set(accepted.filter((item) => store.has(item.name)).map((item) => item.name));
  const changes: CredentialChange[] = accepted.map(({ name, credentials }) => ({
    user: name,
    credentials: credentials === null ? null : credentials.map((c) => ({ ...c, mechanism: c.mechanism as ScramMechanism })),
  }));
  if (changes.length > 0) {
    let failure: RillError | null = null;
    try {
      store.apply(changes);
    } catch (error) {
      // Checked above, so a CredentialStoreError here is the store's own bound (usersMax).
      failure = error instanceof CredentialStoreError ? new RillError('INVALID_ARGUMENT', error.message) : writeError(error, 'cannot write users.json');
      if (failure.retriable) log('warn', `user administration failed, nothing changed: ${failure.message}`, { code: failure.code });
    }
    if (failure === null) logChanges(log, context, accepted, existed);
    else for (const item of accepted) item.error = failure;
  }
  const results: UserResult[] = items.map(({ name, error }) => ({ name, ...errorFields(error) }));
  return msgpackReply({ results });
}

/** One line per changed user, with who changed it: an audit trail of user administration. */
function logChanges(log: Log, context: RequestContext, accepted: readonly AlterItem[], existed: ReadonlySet<string>): void {
  const { principal, remote } = context.connection;
  const by = principal === null ? `an unauthenticated connection from ${remote}` : `${principal} (${remote})`;
  for (const { name, credentials } of accepted) {
    const what = credentials === null ? 'removed' : existed.has(name) ? `credentials replaced (${credentials.map((c) => c.mechanism).join(', ')})` : `added (${credentials.map((c) => c.mechanism).join(', ')})`;
    log('info', `user ${shown(name)} ${what} by ${by}`, { user: name.slice(0, 255), change: credentials === null ? 'removed' : existed.has(name) ? 'replaced' : 'added', principal, remote });
  }
}
