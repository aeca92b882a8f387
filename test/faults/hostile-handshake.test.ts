/**
 * Hostile input during authentication, against a live broker process with `--auth required`, a
 * plaintext and a TLS listener, and debug logging; driven by fast-check. This extends
 * hostile.test.ts (hostile frames) to the handshake. What other tests cover is not repeated:
 * the messages a plaintext client on a TLS listener and a TLS client on a plaintext one get
 * (e2e/tls.test.ts), one garbage message and one replay (e2e/auth.test.ts), the per-address
 * limit and the authentication timeout in process (faults/auth-limits.test.ts), a handshake held
 * open against an in-process broker with a short timeout (broker/tls.test.ts).
 *
 * For every hostile connection: each reply is a typed error (never an internal one), a failed
 * authentication closes the connection, and a connection still open after its garbage is still
 * unauthenticated (Metadata gets SASL_AUTHENTICATION_REQUIRED). After each property: the broker
 * is alive; a new SCRAM client produces a record and another, over TLS, reads it back;
 * rill_auth_failures_total went up by exactly the failures the hostile clients were told of
 * (and rill_errors_total by the other refusals); and the broker's output holds neither the
 * password (as is, base64, hex) nor any salt or key from users.json. A producer and a reader that
 * authenticated at the start keep working throughout (checked at the end).
 *
 * The hostile connections come from their own loopback addresses (127.1.x.y): the broker refuses
 * an address at once after 10 failures a minute, so from one address the fuzz would reach the
 * SCRAM parser only 10 times. The limit itself is tested from one address (127.3.0.1).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authFailuresMax } from '../../src/broker/auth.js';
import { tlsHandshakeTimeoutMsDefault } from '../../src/broker/tls.js';
import { Admin, PartitionReader, Producer, type SaslOptions } from '../../src/client/index.js';
import { errorCodeOf, errorNameOf, type ErrorName } from '../../src/lib/errors.js';
import { ApiKey } from '../../src/wire/apis.js';
import { encodeRequestFrame } from '../../src/wire/frame.js';
import { decodeMsgpack, encodeMsgpack } from '../../src/wire/msgpack.js';
import { encodePlain } from '../../src/wire/sasl.js';
import { ScramClient, type ScramMechanism } from '../../src/wire/scram.js';
import { runCli, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';
import { RawClient, type RawReply } from '../helpers/raw-client.js';
import { makePki } from '../helpers/tls-certs.js';
import { sleep, waitFor } from './helpers.js';

/** Distinctive, so that any echo of it in the broker's output is found. */
const password = `pw-${crypto.randomBytes(12).toString('base64url')}`;
const sasl: SaslOptions = { mechanism: 'scram-sha-512', username: 'alice', password };
const mechanisms: ScramMechanism[] = ['SCRAM-SHA-256', 'SCRAM-SHA-512'];
/** Codes a hostile handshake may be answered with (0: a step that is fine on its own). */
const saslCodes: ErrorName[] = ['SASL_AUTHENTICATION_FAILED', 'ILLEGAL_SASL_STATE', 'UNSUPPORTED_SASL_MECHANISM', 'SASL_AUTHENTICATION_REQUIRED', 'MALFORMED_REQUEST'];
const allowedCodes = new Set([0, ...saslCodes.map(errorCodeOf)]);
const failed = errorCodeOf('SASL_AUTHENTICATION_FAILED');
const connectionsPerRun = 12;
/** Each property runs for about this long (each run takes at least the broker's 1 s failure delay). */
const propertyBudgetMs = 4000;

let broker: BrokerProcess;
let tlsPort: number;
let caPem: Buffer;
/** Removed at the end: the data directory and the certificates. */
const dirs: string[] = [];
/** The password and every form of the stored credential that must never be logged. */
const secrets: string[] = [];

function alive(): boolean {
  return broker.child.exitCode === null && broker.child.signalCode === null;
}

/**
 * Runs `property` on `connectionsPerRun` generated cases at a time until the time budget is spent.
 * The budget is checked before a run starts, never during one (fast-check's own time limit
 * abandons the run in progress, whose connections would then go on unseen by the tally).
 */
async function forAWhile<T>(caseArb: fc.Arbitrary<T>, property: (value: T) => Promise<void>): Promise<void> {
  const deadlineMs = Date.now() + propertyBudgetMs;
  await fc.assert(fc.asyncProperty(fc.array(caseArb, { minLength: connectionsPerRun, maxLength: connectionsPerRun }), async (cases) => {
    if (Date.now() > deadlineMs) return true;
    await Promise.all(cases.map(property));
    return alive();
  }), { numRuns: 40, endOnFailure: true });
}

let addressesUsed = 0;
/** A loopback address no earlier hostile connection used. */
function freshAddress(): string {
  const n = addressesUsed++;
  return `127.1.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
}

function secretForms(dataDir: string): string[] {
  const forms = [password, Buffer.from(password).toString('base64'), Buffer.from(password).toString('hex')];
  const users = JSON.parse(fs.readFileSync(path.join(dataDir, 'users.json'), 'utf8')) as { users: Record<string, Record<string, Record<string, unknown>>> };
  for (const credential of Object.values(users.users['alice']!)) {
    for (const field of ['salt', 'storedKey', 'serverKey']) {
      const text = credential[field] as string;
      const bytes = Buffer.from(text, 'base64');
      // As stored, in hex, and as a logger would print a Buffer (its bytes as a JSON array).
      forms.push(text, bytes.toString('hex'), bytes.toString('base64url'), JSON.stringify([...bytes]).slice(1, -1));
    }
  }
  return forms;
}

function expectNoSecretsLogged(): void {
  const output = broker.output();
  for (const secret of secrets) expect(output.includes(secret), `the broker's output holds a secret (${secret.slice(0, 6)}...)`).toBe(false);
}

async function scrape(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

const authFailures = (m: Map<string, number>): number => m.get('rill_auth_failures_total') ?? 0;
const errorsOf = (m: Map<string, number>, code: string): number => m.get(`rill_errors_total{code="${code}"}`) ?? 0;

/** What the hostile clients of one property were answered. */
class Tally {
  private readonly codes = new Map<string, number>();
  connections = 0;

  add(reply: RawReply): void {
    const name = reply.errorCode === 0 ? 'NONE' : errorNameOf(reply.errorCode);
    this.codes.set(name, (this.codes.get(name) ?? 0) + 1);
  }

  count(name: string): number {
    return this.codes.get(name) ?? 0;
  }
}

interface Step {
  apiKey: number;
  body: Buffer;
}

const handshake = (mechanism: string): Step => ({ apiKey: ApiKey.SaslHandshake, body: encodeMsgpack({ mechanism }) });
const authenticate = (authBytes: Buffer | string): Step => ({ apiKey: ApiKey.SaslAuthenticate, body: encodeMsgpack({ authBytes: Buffer.from(authBytes) }) });

function message(reply: RawReply): string {
  return (decodeMsgpack(reply.body, 'MALFORMED_RESPONSE') as { message?: string }).message ?? '';
}

function authBytesOf(reply: RawReply): string {
  return (decodeMsgpack(reply.body, 'MALFORMED_RESPONSE') as { authBytes: Buffer }).authBytes.toString('utf8');
}

async function connectHostile(overTls: boolean, localAddress = freshAddress()): Promise<RawClient> {
  return RawClient.connect(overTls ? tlsPort : broker.port, { localAddress, ...(overTls ? { tls: { ca: caPem } } : {}) });
}

/**
 * Checks what must hold after a hostile exchange on `raw` and closes it: every reply typed; a
 * failed authentication closed the connection; one still open is not authenticated.
 */
async function settle(raw: RawClient, tally: Tally): Promise<void> {
  try {
    for (const reply of raw.replies) {
      expect(allowedCodes.has(reply.errorCode), `reply code ${reply.errorCode} (${errorNameOf(reply.errorCode)})`).toBe(true);
      tally.add(reply);
    }
    if (raw.replies.some((r) => r.errorCode === failed)) expect(await raw.waitClosed(10_000)).toBe(true);
    if (!raw.closed) {
      raw.msgpackRequest(ApiKey.Metadata, 999, { topics: null });
      const probe = await raw.reply(999).catch(() => null);
      if (probe !== null) {
        tally.add(probe);
        expect(errorNameOf(probe.errorCode)).toBe('SASL_AUTHENTICATION_REQUIRED');
      } else {
        expect(raw.closed).toBe(true);
      }
    }
  } finally {
    tally.connections++;
    raw.close();
  }
}

/**
 * Sends `steps` one at a time (each after the previous reply) or all at once, until a failed
 * authentication or a close. A request must get a reply or see the connection closed.
 */
async function play(raw: RawClient, steps: Step[], pipelined: boolean): Promise<void> {
  const replyOrClose = async (correlationId: number): Promise<RawReply | null> => {
    const reply = await raw.reply(correlationId).catch(() => null);
    if (reply === null) expect(raw.closed, `request ${correlationId}: neither a reply nor a close`).toBe(true);
    return reply;
  };
  if (pipelined) raw.write(Buffer.concat(steps.map((s, i) => encodeRequestFrame(s.apiKey, 0, i + 1, s.body))));
  for (let i = 0; i < steps.length; i++) {
    if (!pipelined) raw.request(steps[i]!.apiKey, 0, i + 1, steps[i]!.body);
    const reply = await replyOrClose(i + 1);
    if (reply === null || reply.errorCode === failed) return;
  }
}

// ---- SCRAM from the attacker's side: proofs over any message, with the password known --------

const saltedCache = new Map<string, Buffer>();
const hashOf = (m: ScramMechanism): { algorithm: 'sha256' | 'sha512'; bytes: number } => (m === 'SCRAM-SHA-256' ? { algorithm: 'sha256', bytes: 32 } : { algorithm: 'sha512', bytes: 64 });

/** The client proof RFC 5802 defines for `authMessage`, from the password and the server's salt. */
function proofFor(mechanism: ScramMechanism, secret: string, salt: string, iterations: number, authMessage: string): string {
  const { algorithm, bytes } = hashOf(mechanism);
  const key = `${mechanism}:${secret}:${salt}:${iterations}`;
  let salted = saltedCache.get(key);
  if (salted === undefined) {
    salted = crypto.pbkdf2Sync(Buffer.from(secret.normalize('NFKC')), Buffer.from(salt, 'base64'), iterations, bytes, algorithm);
    saltedCache.set(key, salted);
  }
  const clientKey = crypto.createHmac(algorithm, salted).update('Client Key').digest();
  const storedKey = crypto.createHash(algorithm).update(clientKey).digest();
  const signature = crypto.createHmac(algorithm, storedKey).update(authMessage).digest();
  return Buffer.from(clientKey.map((b, i) => b ^ signature[i]!)).toString('base64');
}

function parseServerFirst(serverFirst: string): { nonce: string; salt: string; iterations: number } {
  const match = /^r=([^,]+),s=([^,]+),i=(\d+)$/.exec(serverFirst);
  if (match === null) throw new Error(`unexpected server-first ${serverFirst}`);
  return { nonce: match[1]!, salt: match[2]!, iterations: Number(match[3]) };
}

// ---- the well-behaved clients ----------------------------------------------------------------

const steady = { acked: [] as string[], consumed: [] as string[], stop: false, producing: null as Promise<void> | null, consuming: null as Promise<void> | null, reader: null as PartitionReader | null, producer: null as Producer | null };
let checkpoints = 0;

/** A new SCRAM producer on the plaintext listener writes a record; a new SCRAM reader on the TLS listener reads it back. */
async function legitimateRoundTrip(): Promise<void> {
  const value = `checkpoint-${++checkpoints}`;
  const producer = new Producer({ bootstrap: broker.bootstrap, sasl, acks: 'all', connectTimeoutMs: 10_000 });
  let offset: bigint;
  try {
    offset = (await producer.send({ topic: 'checkpoint', partition: 0, value })).offset;
  } finally {
    await producer.close();
  }
  const reader = new PartitionReader({ bootstrap: `127.0.0.1:${tlsPort}`, tls: { ca: caPem }, sasl, topic: 'checkpoint', partitions: [0], from: offset, stopAtEnd: true });
  const values: string[] = [];
  for await (const message of reader) values.push(message.value!.toString());
  expect(values).toEqual([value]);
}

/** What must hold after each property (see the header). */
async function checkpoint(before: Map<string, number>, tally: Tally): Promise<void> {
  expect(alive()).toBe(true);
  await legitimateRoundTrip();
  const after = await scrape();
  expect(authFailures(after) - authFailures(before)).toBe(tally.count('SASL_AUTHENTICATION_FAILED'));
  for (const code of saslCodes) expect(errorsOf(after, code) - errorsOf(before, code), code).toBe(tally.count(code));
  expect(errorsOf(after, 'UNKNOWN_SERVER_ERROR')).toBe(0);
  expectNoSecretsLogged();
}

beforeAll(async () => {
  const pki = makePki('hostile-handshake');
  const server = pki.issue('server', '/O=Rill Test/CN=broker', { server: true });
  caPem = fs.readFileSync(pki.ca.cert);
  const dataDir = tempDir('hostile-handshake');
  dirs.push(dataDir, pki.dir);
  const added = await runCli(['users', 'add', 'alice', '--data-dir', dataDir], `${password}\n`);
  expect(added.code, added.stderr).toBe(0);
  secrets.push(...secretForms(dataDir));
  const config = path.join(pki.dir, 'rill.yaml');
  fs.writeFileSync(config, [
    'listeners:',
    '  rill:',
    '    listen: 127.0.0.1:0',
    '  secure:',
    '    listen: 127.0.0.1:0',
    '    tls:',
    `      cert: ${server.cert}`,
    `      key: ${server.key}`,
    '',
  ].join('\n'));
  broker = await startBroker({ dataDir, port: null, http: '127.0.0.1:0', args: ['--config', config, '--auth', 'required', '--super-users', 'alice', '--log-level', 'debug'] });
  tlsPort = Number(/listening on 127\.0\.0\.1:(\d+) \(listener secure, TLS/.exec(broker.output())![1]);
  const admin = new Admin({ bootstrap: broker.bootstrap, sasl });
  await admin.createTopics([{ topic: 'steady', partitions: 1 }, { topic: 'checkpoint', partitions: 1 }]);
  admin.close();

  // Authenticated before the hostile clients start, and kept busy until the end.
  steady.producer = new Producer({ bootstrap: broker.bootstrap, sasl, acks: 'all' });
  steady.producing = (async () => {
    for (let i = 0; !steady.stop; i++) {
      const values = Array.from({ length: 10 }, (_, j) => `steady-${i}-${j}`);
      await Promise.all(values.map((value) => steady.producer!.send({ topic: 'steady', partition: 0, value })));
      steady.acked.push(...values);
      await sleep(10);
    }
  })();
  steady.reader = new PartitionReader({ bootstrap: `127.0.0.1:${tlsPort}`, tls: { ca: caPem }, sasl, topic: 'steady', partitions: [0], from: 'earliest', maxWaitMs: 200 });
  steady.consuming = (async () => {
    try {
      for await (const message of steady.reader!) steady.consumed.push(message.value!.toString());
    } catch (error) {
      if (!steady.stop) throw error;
    }
  })();
});

afterAll(async () => {
  steady.stop = true;
  await broker?.kill();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('hostile authentication against a live broker (--auth required)', () => {
  it('arbitrary bytes and values as SaslHandshake and SaslAuthenticate bodies', async () => {
    const before = await scrape();
    const tally = new Tally();
    const safeMsgpack = (value: unknown): Buffer => {
      try {
        return encodeMsgpack(value);
      } catch {
        return Buffer.from(JSON.stringify(value));
      }
    };
    const mechanismArb = fc.oneof(
      fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-512', 'PLAIN', 'scram-sha-512', 'SCRAM-SHA-1', 'GSSAPI', 'OAUTHBEARER', '', 'x'.repeat(65)),
      fc.string({ maxLength: 80 }),
      fc.constant(password),
    );
    const authBytesArb = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      fc.uint8Array({ minLength: 4097, maxLength: 6000 }).map((a) => Buffer.from(a)),
      fc.string({ maxLength: 200 }),
      fc.constantFrom(password, encodePlain('alice', password), `n,,n=alice,r=${password}`, `c=biws,r=x,p=${Buffer.from(password).toString('base64')}`),
      fc.integer(),
      fc.constant(null),
    );
    const bodyArb: fc.Arbitrary<Buffer> = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      fc.jsonValue({ maxDepth: 3 }).map(safeMsgpack),
      mechanismArb.map((mechanism) => encodeMsgpack({ mechanism })),
      authBytesArb.map((authBytes) => encodeMsgpack({ authBytes })),
      fc.tuple(mechanismArb, authBytesArb).map(([mechanism, authBytes]) => encodeMsgpack({ mechanism, authBytes })),
    );
    const connectionArb = fc.record({
      handshakeFirst: fc.option(fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-512'), { nil: null }),
      steps: fc.array(fc.record({ apiKey: fc.constantFrom(ApiKey.SaslHandshake, ApiKey.SaslAuthenticate), body: bodyArb }), { minLength: 1, maxLength: 4 }),
      pipelined: fc.boolean(),
      overTls: fc.boolean(),
    });
    await forAWhile(connectionArb, async (c) => {
      const raw = await connectHostile(c.overTls);
      await play(raw, [...(c.handshakeFirst === null ? [] : [handshake(c.handshakeFirst)]), ...c.steps], c.pipelined);
      await settle(raw, tally);
    });
    expect(tally.connections).toBeGreaterThanOrEqual(connectionsPerRun);
    expect(tally.count('SASL_AUTHENTICATION_FAILED')).toBeGreaterThan(0);
    await checkpoint(before, tally);
  });

  it('well-framed but wrong SCRAM messages: bad client-first, wrong nonce (with a proof right for it), wrong proof, channel binding, out of order', async () => {
    const before = await scrape();
    const tally = new Tally();
    const badFirsts = (nonce: string): string[] => [
      `y,,n=alice,r=${nonce}`, `p=tls-unique,,n=alice,r=${nonce}`, `n,,m=ext,n=alice,r=${nonce}`, `n,,n=al=2Xice,r=${nonce}`,
      `n,,n=,r=${nonce}`, `n,,r=${nonce},n=alice`, 'n,,n=alice,r=short', `n,,n=alice,r=${nonce}\u0001`, `n,a=alice,n=alice,r=${nonce}`,
      `n,,n=alice,r=${nonce.replace(/.$/, ',')}`, 'n,,', '', `n,,n=alice,r=${'x'.repeat(5000)}`,
    ];
    const firstArb = fc.oneof(
      { weight: 4, arbitrary: fc.constant({ kind: 'alice' as const, index: 0 }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'unknown-user' as const, index: 0 }) },
      { weight: 2, arbitrary: fc.nat(12).map((index) => ({ kind: 'bad' as const, index })) },
    );
    const finalKinds = ['wrong-nonce-short', 'wrong-nonce-long', 'wrong-nonce-client-only', 'wrong-nonce-changed', 'wrong-proof-bit', 'wrong-password', 'channel-binding',
      'no-proof', 'nonce-first', 'proof-not-base64', 'empty', 'client-first-again', 'garbage'] as const;
    const caseArb = fc.record({ mechanism: fc.constantFrom(...mechanisms), first: firstArb, final: fc.constantFrom(...finalKinds), bit: fc.nat(511), overTls: fc.boolean() });
    let wrongNonces = 0;
    await forAWhile(caseArb, async (c) => {
      const raw = await connectHostile(c.overTls);
      const clientNonce = crypto.randomBytes(18).toString('base64');
      const first = c.first.kind === 'alice' ? `n,,n=alice,r=${clientNonce}` : c.first.kind === 'unknown-user' ? `n,,n=mallory-${clientNonce.slice(0, 6)},r=${clientNonce}` : badFirsts(clientNonce)[c.first.index]!;
      await play(raw, [handshake(c.mechanism), authenticate(first)], false);
      const serverFirstReply = raw.replies.find((r) => r.correlationId === 2);
      if (serverFirstReply !== undefined && serverFirstReply.errorCode === 0) {
        expect(c.first.kind).not.toBe('bad');
        const serverFirst = authBytesOf(serverFirstReply);
        const { nonce, salt, iterations } = parseServerFirst(serverFirst);
        const firstBare = first.slice(3);
        /** A client-final with `proof` computed right for exactly this message (knowing the password). */
        const signed = (withoutProof: string, secret = password): string => `${withoutProof},p=${proofFor(c.mechanism, secret, salt, iterations, `${firstBare},${serverFirst},${withoutProof}`)}`;
        const changed = nonce.slice(0, -1) + (nonce.endsWith('A') ? 'B' : 'A');
        const goodProof = Buffer.from(proofFor(c.mechanism, password, salt, iterations, `${firstBare},${serverFirst},c=biws,r=${nonce}`), 'base64');
        goodProof[Math.floor(c.bit / 8) % goodProof.length]! ^= 1 << (c.bit % 8);
        const final = {
          'wrong-nonce-short': () => signed(`c=biws,r=${nonce.slice(0, -1)}`),
          'wrong-nonce-long': () => signed(`c=biws,r=${nonce}x`),
          'wrong-nonce-client-only': () => signed(`c=biws,r=${clientNonce}`),
          'wrong-nonce-changed': () => signed(`c=biws,r=${changed}`),
          'wrong-proof-bit': () => `c=biws,r=${nonce},p=${goodProof.toString('base64')}`,
          'wrong-password': () => signed(`c=biws,r=${nonce}`, `${password}!`),
          'channel-binding': () => signed(`c=eSws,r=${nonce}`),
          'no-proof': () => `c=biws,r=${nonce}`,
          'nonce-first': () => `r=${nonce},c=biws,p=${goodProof.toString('base64')}`,
          'proof-not-base64': () => `c=biws,r=${nonce},p=${password}`,
          'empty': () => '',
          'client-first-again': () => first,
          'garbage': () => crypto.randomBytes(64).toString('latin1'),
        }[c.final]();
        raw.request(ApiKey.SaslAuthenticate, 0, 3, encodeMsgpack({ authBytes: Buffer.from(final) }));
        const reply = await raw.reply(3);
        // With alice and the right password only the flaw this case put in is wrong.
        expect(reply.errorCode).toBe(failed);
        if (c.final.startsWith('wrong-nonce')) {
          expect(message(reply)).toContain('nonce does not match');
          wrongNonces++;
        }
      } else {
        expect(serverFirstReply?.errorCode ?? failed).toBe(failed);
      }
      await settle(raw, tally);
    });
    expect(wrongNonces).toBeGreaterThan(0);
    await checkpoint(before, tally);
  });

  it('replayed SCRAM messages from earlier successful exchanges never authenticate', async () => {
    // Record complete, successful exchanges (each proves itself by a Metadata call).
    const recorded: { mechanism: ScramMechanism; first: string; final: string }[] = [];
    for (const mechanism of [...mechanisms, ...mechanisms]) {
      const raw = await RawClient.connect(broker.port);
      const scram = new ScramClient(mechanism, 'alice', password);
      await play(raw, [handshake(mechanism), authenticate(scram.first())], false);
      const serverFirst = authBytesOf(raw.replies[1]!);
      const final = scram.final(serverFirst);
      raw.request(ApiKey.SaslAuthenticate, 0, 3, encodeMsgpack({ authBytes: Buffer.from(final) }));
      scram.verify(authBytesOf(await raw.reply(3)));
      raw.msgpackRequest(ApiKey.Metadata, 4, { topics: null });
      expect((await raw.reply(4)).errorCode).toBe(0);
      raw.close();
      recorded.push({ mechanism, first: scram.first(), final });
    }
    const before = await scrape();
    const tally = new Tally();
    const strategies = ['replay-both', 'fresh-first', 'final-first', 'pipelined-both', 'first-twice', 'other-mechanism'] as const;
    await forAWhile(fc.record({ exchange: fc.nat(recorded.length - 1), strategy: fc.constantFrom(...strategies), overTls: fc.boolean() }), async (c) => {
      const { mechanism, first, final } = recorded[c.exchange]!;
      const raw = await connectHostile(c.overTls);
      const steps: Record<typeof c.strategy, Step[]> = {
        'replay-both': [handshake(mechanism), authenticate(first), authenticate(final)],
        'fresh-first': [handshake(mechanism), authenticate(new ScramClient(mechanism, 'alice', password).first()), authenticate(final)],
        'final-first': [handshake(mechanism), authenticate(final)],
        'pipelined-both': [handshake(mechanism), authenticate(first), authenticate(final)],
        'first-twice': [handshake(mechanism), authenticate(first), authenticate(first)],
        'other-mechanism': [handshake(mechanism === 'SCRAM-SHA-256' ? 'SCRAM-SHA-512' : 'SCRAM-SHA-256'), authenticate(first), authenticate(final)],
      };
      await play(raw, steps[c.strategy], c.strategy === 'pipelined-both');
      const last = raw.replies.at(-1)!;
      expect(last.errorCode).toBe(failed);
      if (c.strategy === 'replay-both' || c.strategy === 'fresh-first' || c.strategy === 'pipelined-both') expect(message(last)).toContain('nonce does not match');
      await settle(raw, tally);
    });
    await checkpoint(before, tally);
  });

  it('PLAIN: refused on the plaintext listener even with the right password; wrong or malformed PLAIN over TLS fails', async () => {
    const before = await scrape();
    const tally = new Tally();
    const plainCase = fc.constantFrom('plain-then-bytes', 'plain-only', 'plain-then-scram-then-plain-bytes');
    const credentialArb = fc.oneof(
      fc.tuple(fc.constantFrom('alice', 'bob', 'ALICE'), fc.oneof(fc.constant(`${password}!`), fc.constant(password.slice(0, -1)), fc.constant(password.toUpperCase()), fc.constant(password), fc.string({ minLength: 1, maxLength: 40 })))
        .filter(([user, secret]) => !(user === 'alice' && secret === password))
        .map(([user, secret]) => encodePlain(user, secret)),
      fc.constantFrom(
        Buffer.from(`alice\u0000${password}`), Buffer.from(`bob\u0000alice\u0000${password}`), Buffer.from(`\u0000alice\u0000${password}\u0000`),
        Buffer.from(`\u0000\u0000${password}`), Buffer.from('\u0000alice\u0000'), Buffer.alloc(0), Buffer.from(password),
      ),
      fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)),
    );
    await forAWhile(fc.record({ overTls: fc.boolean(), onPlaintext: plainCase, credential: credentialArb }), async (c) => {
      const raw = await connectHostile(c.overTls);
      if (!c.overTls) {
        await play(raw, [handshake('PLAIN')], false);
        expect(raw.replies[0]!.errorCode).toBe(errorCodeOf('UNSUPPORTED_SASL_MECHANISM'));
        expect(message(raw.replies[0]!)).toContain('only on TLS');
        // The right password, on a connection that was not allowed to use PLAIN.
        const right = encodePlain('alice', password);
        if (c.onPlaintext === 'plain-then-bytes') {
          raw.request(ApiKey.SaslAuthenticate, 0, 2, encodeMsgpack({ authBytes: right }));
          expect((await raw.reply(2)).errorCode).toBe(errorCodeOf('ILLEGAL_SASL_STATE'));
          expect(await raw.waitClosed(10_000)).toBe(true);
        } else if (c.onPlaintext === 'plain-then-scram-then-plain-bytes') {
          raw.request(ApiKey.SaslHandshake, 0, 2, encodeMsgpack({ mechanism: 'SCRAM-SHA-512' }));
          expect((await raw.reply(2)).errorCode).toBe(0);
          raw.request(ApiKey.SaslAuthenticate, 0, 3, encodeMsgpack({ authBytes: right }));
          expect((await raw.reply(3)).errorCode).toBe(failed);
        }
      } else {
        await play(raw, [handshake('PLAIN'), { apiKey: ApiKey.SaslAuthenticate, body: encodeMsgpack({ authBytes: c.credential }) }], false);
        expect(raw.replies[0]!.errorCode).toBe(0);
        expect(raw.replies[1]!.errorCode).toBe(failed);
      }
      await settle(raw, tally);
    });
    expect(tally.count('UNSUPPORTED_SASL_MECHANISM')).toBeGreaterThan(0);
    await checkpoint(before, tally);
  });
});

/** The first flight of a real TLS client (its ClientHello), as a TLS listener would receive it. */
function clientHello(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => socket.once('data', (chunk: Buffer) => {
      resolve(chunk);
      socket.destroy();
      server.close();
    }));
    server.listen(0, '127.0.0.1', () => {
      const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, rejectUnauthorized: false });
      client.on('error', () => undefined);
    });
    server.on('error', reject);
  });
}

interface Held {
  /** Set when the broker closed the connection. */
  closedAfterMs: number | null;
  closed: Promise<void>;
}

/** Connects from a fresh address, writes `bytes`, and waits for the broker to close; never closes itself. */
function hold(port: number, bytes: Buffer): Held {
  const startedMs = Date.now();
  let markClosed: () => void = () => undefined;
  const held: Held = { closedAfterMs: null, closed: new Promise((resolve) => (markClosed = resolve)) };
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: freshAddress() }, () => {
    if (bytes.length > 0) socket.write(bytes);
  });
  socket.on('data', () => undefined);
  socket.on('error', () => undefined);
  socket.once('close', () => {
    held.closedAfterMs = Date.now() - startedMs;
    markClosed();
  });
  return held;
}

describe('bad input at the TLS layer', () => {
  it('handshakes held open are closed after the handshake timeout while others are served; garbage and plaintext on the TLS listener and TLS on the plaintext one are closed and counted', async () => {
    const before = await scrape();
    const hello = await clientHello();
    expect(hello[0]).toBe(0x16);
    // Held open: nothing sent, part of a ClientHello, or a whole ClientHello and then silence.
    const held = [
      ...Array.from({ length: 6 }, () => hold(tlsPort, Buffer.alloc(0))),
      ...Array.from({ length: 6 }, (_, i) => hold(tlsPort, hello.subarray(0, 5 + i * 7))),
      ...Array.from({ length: 6 }, () => hold(tlsPort, hello)),
    ];
    // Meanwhile: authenticated clients on both listeners are served, and done before any timeout.
    await legitimateRoundTrip();
    const producer = new Producer({ bootstrap: `127.0.0.1:${tlsPort}`, tls: { ca: caPem }, sasl });
    await Promise.all(Array.from({ length: 100 }, (_, i) => producer.send({ topic: 'checkpoint', partition: 0, value: `meanwhile-${i}` })));
    await producer.close();
    expect(held.filter((h) => h.closedAfterMs !== null)).toEqual([]);

    // Garbage and plaintext Rill frames on the TLS listener: each closed (at once, or when its
    // handshake times out), each counted as a failed TLS handshake.
    const plaintextFrames = [
      encodeRequestFrame(ApiKey.ApiVersions, 0, 1, encodeMsgpack({})),
      encodeRequestFrame(ApiKey.SaslHandshake, 0, 1, encodeMsgpack({ mechanism: 'SCRAM-SHA-512' })),
      encodeRequestFrame(ApiKey.SaslAuthenticate, 0, 1, encodeMsgpack({ authBytes: encodePlain('alice', password) })),
    ];
    const garbage: Held[] = plaintextFrames.map((frame) => hold(tlsPort, frame));
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 600 }), fc.boolean(), (bytes, asRecord) => {
      // Half of them look like a TLS handshake record with a garbage body.
      const payload = asRecord ? Buffer.concat([Buffer.from([0x16, 0x03, 0x01, bytes.length >> 8, bytes.length & 0xff]), bytes]) : Buffer.from(bytes);
      garbage.push(hold(tlsPort, payload));
    }), { numRuns: 60 });
    // TLS on the plaintext listener: a raw ClientHello and a real TLS client; each closed and counted.
    const tlsOnPlain = hold(broker.port, hello);
    const tlsClientError = await new Promise<string>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: broker.port, ca: caPem }, () => resolve('connected'));
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    expect(tlsClientError).not.toBe('connected');

    await Promise.all([...held, ...garbage, tlsOnPlain].map((h) => h.closed));
    for (const h of held) expect(h.closedAfterMs!).toBeGreaterThanOrEqual(tlsHandshakeTimeoutMsDefault - 500);
    expect(alive()).toBe(true);
    const after = await scrape();
    expect(errorsOf(after, 'TLS_HANDSHAKE_FAILED') - errorsOf(before, 'TLS_HANDSHAKE_FAILED')).toBe(held.length + garbage.length);
    expect(errorsOf(after, 'MALFORMED_REQUEST') - errorsOf(before, 'MALFORMED_REQUEST')).toBe(2);
    expect(broker.output()).toContain('a TLS client on plaintext listener rill');
    await legitimateRoundTrip();
    expectNoSecretsLogged();
  });
});

describe('password guessing from one address', () => {
  it('thousands of guesses: each refused and counted; at most the limit reach a password check, even on connections opened before it; other addresses are served', async () => {
    const attacker = '127.3.0.1';
    const before = await scrape();
    // 40 connections get as far as the proof first, then all send a guess at once: the limit must
    // hold for exchanges that started before it was reached.
    const parallel = await Promise.all(Array.from({ length: 40 }, async () => {
      const raw = await connectHostile(false, attacker);
      const clientNonce = crypto.randomBytes(18).toString('base64');
      await play(raw, [handshake('SCRAM-SHA-512'), authenticate(`n,,n=alice,r=${clientNonce}`)], false);
      expect(raw.replies.map((r) => r.errorCode)).toEqual([0, 0]);
      return { raw, nonce: parseServerFirst(authBytesOf(raw.replies[1]!)).nonce };
    }));
    for (const { raw, nonce } of parallel) raw.request(ApiKey.SaslAuthenticate, 0, 3, encodeMsgpack({ authBytes: Buffer.from(`c=biws,r=${nonce},p=${crypto.randomBytes(64).toString('base64')}`) }));
    const parallelReplies = await Promise.all(parallel.map(({ raw }) => raw.reply(3)));
    for (const { raw } of parallel) expect(await raw.waitClosed(10_000)).toBe(true);
    expect(parallelReplies.every((r) => r.errorCode === failed)).toBe(true);
    const passwordChecks = parallelReplies.filter((r) => message(r).includes('wrong password')).length;
    expect(passwordChecks).toBeLessThanOrEqual(authFailuresMax);

    // Then 2,000 more attempts, 100 at a time: refused at the handshake, each counted and closed.
    const guesses = 2000;
    let refused = 0;
    for (let wave = 0; wave < guesses / 100; wave++) {
      await Promise.all(Array.from({ length: 100 }, async () => {
        const raw = await connectHostile(false, attacker);
        await play(raw, [handshake('SCRAM-SHA-512')], false);
        const reply = raw.replies[0]!;
        expect(reply.errorCode).toBe(failed);
        expect(message(reply)).toMatch(/too many failed authentications from 127\.3\.0\.1; try again in \d+ s/);
        expect(await raw.waitClosed(10_000)).toBe(true);
        refused++;
      }));
    }
    expect(refused).toBe(guesses);
    // Another address (the test's own, 127.0.0.1) logs in and is served as before.
    await legitimateRoundTrip();
    const after = await scrape();
    expect(authFailures(after) - authFailures(before)).toBe(parallel.length + guesses);
    expectNoSecretsLogged();
  });
});

describe('the clients that authenticated at the start', () => {
  it('were served throughout: every acknowledged record read back, in order', async () => {
    steady.stop = true;
    await steady.producing;
    await steady.producer!.close();
    expect(await waitFor(() => steady.consumed.length >= steady.acked.length, 20_000)).toBe(true);
    steady.reader!.close();
    await steady.consuming;
    expect(steady.acked.length).toBeGreaterThan(100);
    expect(steady.consumed.slice(0, steady.acked.length)).toEqual(steady.acked);
    expect(alive()).toBe(true);
    expectNoSecretsLogged();
  });
});
