/**
 * What every client command shares: `-b, --bootstrap HOST:PORT` and `--timeout MS`, and the
 * start-up check that fails in a few seconds with one line when no broker answers (instead of the
 * producer's 120 s delivery timeout). Once a broker has answered, the clients ride through its
 * restarts (see status.ts for what the user is told meanwhile).
 */
import fs from 'node:fs';
import type { Command } from 'commander';
// The client is imported where a command runs, not here: `rill broker` does not load it (every module
// the broker process holds on to costs it CPU under load, docs/metrics.md, Measured cost).
import type { Admin } from '../client/admin.js';
import type { ClientOptions } from '../client/cluster.js';
import { RillError } from '../lib/errors.js';
import { ApiKey } from '../wire/apis.js';
import { decodeMetadataResponse } from '../wire/control.js';
import { integerIn, UsageError } from './args.js';

export const defaultBootstrap = '127.0.0.1:9092';
export const defaultTimeoutMs = 5000;

/** Runs a command's body and sets the process exit code from its result. */
export type Run = (action: () => Promise<number>) => Promise<void>;

export interface ClientFlags {
  bootstrap: string;
  timeout: number;
  /** Authentication: --user, --mechanism, --password-file (else RILL_PASSWORD). */
  user?: string | undefined;
  mechanism?: string | undefined;
  passwordFile?: string | undefined;
  // TLS (--tls-ca, --tls-cert, --tls-key): file paths as typed.
  tlsCa?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
}

const mechanisms = ['scram-sha-512', 'scram-sha-256', 'plain'] as const;
type Mechanism = (typeof mechanisms)[number];

function mechanismValue(value: string): Mechanism {
  if ((mechanisms as readonly string[]).includes(value)) return value as Mechanism;
  throw new UsageError(`--mechanism must be one of ${mechanisms.join(', ')}, got "${value}"`);
}

export function addClientOptions(command: Command): Command {
  return command
    .option('-b, --bootstrap <host:port>', 'broker to connect to; several, comma-separated, are tried in turn', defaultBootstrap)
    .option('--timeout <ms>', 'fail when no broker answers within this many ms at start', integerIn('--timeout', 1, 3_600_000), defaultTimeoutMs)
    // ---- authentication ----
    .option('--user <name>', 'authenticate as this user (password from RILL_PASSWORD or --password-file)')
    .option('--password-file <file>', 'read the password from the first line of this file (instead of RILL_PASSWORD)')
    .option('--mechanism <mechanism>', `SASL mechanism: ${mechanisms.join('|')} (plain on TLS only)`, mechanismValue, 'scram-sha-512')
    // ---- TLS: any of these turns it on ----
    .option('--tls-ca <file>', 'connect with TLS, trusting the broker certificates this PEM CA bundle signed')
    .option('--tls-cert <file>', 'connect with TLS, showing this PEM client certificate (mTLS; with --tls-key)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert');
}

/** The sasl client option from --user and the password source; none without --user. */
export function saslOptions(flags: ClientFlags, env: NodeJS.ProcessEnv = process.env): ClientOptions['sasl'] {
  if (flags.user === undefined) {
    if (flags.passwordFile !== undefined) throw new UsageError('--password-file needs --user NAME');
    return undefined;
  }
  if (flags.user.length === 0) throw new UsageError('--user must not be empty');
  let password: string;
  if (flags.passwordFile !== undefined) {
    try {
      password = fs.readFileSync(flags.passwordFile, 'utf8').split(/\r?\n/)[0] ?? '';
    } catch (error) {
      throw new UsageError(`--password-file ${flags.passwordFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    if (password.length === 0) throw new UsageError(`--password-file ${flags.passwordFile}: the first line is empty`);
  } else {
    password = env.RILL_PASSWORD ?? '';
    if (password.length === 0) throw new UsageError(`--user ${flags.user} needs a password: set RILL_PASSWORD or give --password-file FILE`);
  }
  return { mechanism: mechanismValue(flags.mechanism ?? 'scram-sha-512'), username: flags.user, password };
}

/** Client options for a command: connects and single requests give up after --timeout. */
export function clientOptions(flags: ClientFlags, extra: Partial<ClientOptions> = {}): ClientOptions {
  const sasl = saslOptions(flags);
  return { bootstrap: flags.bootstrap, clientId: 'rill-cli', connectTimeoutMs: flags.timeout, ...tlsOptions(flags), ...(sasl === undefined ? {} : { sasl }), ...extra };
}

/** `tls` from --tls-ca / --tls-cert / --tls-key (none given: plaintext); an unreadable file is INVALID_ARGUMENT naming it. */
function tlsOptions(flags: ClientFlags): Pick<ClientOptions, 'tls'> {
  if (flags.tlsCa === undefined && flags.tlsCert === undefined && flags.tlsKey === undefined) return {};
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) {
    throw new RillError('INVALID_ARGUMENT', `${flags.tlsCert === undefined ? '--tls-key' : '--tls-cert'} needs ${flags.tlsCert === undefined ? '--tls-cert' : '--tls-key'} too (a client certificate and its key)`);
  }
  const read = (flag: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return fs.readFileSync(file);
    } catch (error) {
      throw new RillError('INVALID_ARGUMENT', `${flag} ${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
  };
  const tls: NonNullable<ClientOptions['tls']> = {};
  const ca = read('--tls-ca', flags.tlsCa);
  const cert = read('--tls-cert', flags.tlsCert);
  const key = read('--tls-key', flags.tlsKey);
  if (ca !== undefined) tls.ca = ca;
  if (cert !== undefined) tls.cert = cert;
  if (key !== undefined) tls.key = key;
  return { tls };
}

const retryDelayMs = 200;

/**
 * Resolves once the bootstrap broker answers a Metadata request; retries refused connections
 * until --timeout, then throws one clear CONNECTION_ERROR. A peer that is not a Rill broker
 * fails at once (NOT_A_RILL_BROKER).
 */
export async function waitForBroker(flags: ClientFlags): Promise<void> {
  const { Cluster } = await import('../client/cluster.js');
  const cluster = new Cluster(clientOptions(flags));
  const deadlineMs = Date.now() + flags.timeout;
  let last: RillError | null = null;
  try {
    for (;;) {
      const remainingMs = deadlineMs - Date.now();
      if (remainingMs <= 0) break;
      try {
        await cluster.anyConnection().call(ApiKey.Metadata, { topics: [] }, decodeMetadataResponse, { timeoutMs: remainingMs });
        return;
      } catch (error) {
        if (!(error instanceof RillError) || !error.retriable) throw error;
        last = error;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(retryDelayMs, Math.max(0, deadlineMs - Date.now()))));
    }
  } finally {
    cluster.close();
  }
  if (last?.code === 'REQUEST_TIMED_OUT') {
    throw new NoBrokerError(`${flags.bootstrap} accepted the connection but sent no reply within ${flags.timeout} ms; is it a Rill broker? (-b HOST:PORT, --timeout MS)`);
  }
  const cause = last?.cause instanceof Error ? `${last.code}: ${last.cause.message}` : last?.message;
  throw new NoBrokerError(`no broker answered at ${flags.bootstrap} within ${flags.timeout} ms${cause === undefined ? '' : ` (${cause})`}; is it running? (-b HOST:PORT, --timeout MS)`);
}

/** No broker answered within --timeout: reported as one line, exit status 1. */
export class NoBrokerError extends Error {
  override name = 'NoBrokerError';
}

/** Waits for the broker, runs `action` with an Admin, closes it. */
export async function withAdmin(flags: ClientFlags, action: (admin: Admin) => Promise<number>): Promise<number> {
  await waitForBroker(flags);
  const { Admin } = await import('../client/admin.js');
  const admin = new Admin(clientOptions(flags, { requestTimeoutMs: Math.max(flags.timeout, 30_000) }));
  try {
    return await action(admin);
  } finally {
    admin.close();
  }
}
