/**
 * SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as pure functions over the messages: the
 * client's and the server's side of one exchange, and the salted, iterated credential a server
 * stores instead of a password. No sockets, no files, no clock; randomness (nonces, salts) is
 * passed in or drawn from node:crypto.
 *
 *   client                                           server
 *   client-first  "n,,n=USER,r=CNONCE"          ->
 *                                               <-   server-first  "r=CNONCE+SNONCE,s=SALT,i=ITER"
 *   client-final  "c=biws,r=NONCE,p=PROOF"      ->   (checks the proof against the stored key)
 *                                               <-   server-final  "v=SIGNATURE" or "e=ERROR"
 *
 * The server keeps only StoredKey = H(HMAC(SaltedPassword, "Client Key")) and ServerKey =
 * HMAC(SaltedPassword, "Server Key"): knowing them does not let anyone log in as the user, and the
 * password never crosses the wire. Every untrusted message is bounded (scramMessageBytesMax) and
 * parsed strictly; a bad one is a ScramError with a reason, never a crash. Proofs are compared in
 * constant time. Channel binding is not supported (gs2 header "n,,").
 */
import crypto from 'node:crypto';

export type ScramMechanism = 'SCRAM-SHA-256' | 'SCRAM-SHA-512';

export const scramMechanisms: readonly ScramMechanism[] = ['SCRAM-SHA-256', 'SCRAM-SHA-512'];

/** Longest SCRAM message accepted from the other side. */
export const scramMessageBytesMax = 4096;
/** Iteration bounds: RFC 7677 asks for at least 4096; the upper bound caps the cost of a login. */
export const scramIterationsMin = 4096;
export const scramIterationsMax = 1_000_000;
/** Iterations new credentials get (Kafka's default for SCRAM is 4096; stronger costs little here). */
export const scramIterationsDefault = 8192;
const saltBytes = 24;
const nonceBytes = 24;
const userNameBytesMax = 255;

/** A SCRAM message that cannot be accepted; `reason` is safe to log (it never holds secrets). */
export class ScramError extends Error {
  override name = 'ScramError';
}

const hashOf: Record<ScramMechanism, { algorithm: 'sha256' | 'sha512'; bytes: number }> = {
  'SCRAM-SHA-256': { algorithm: 'sha256', bytes: 32 },
  'SCRAM-SHA-512': { algorithm: 'sha512', bytes: 64 },
};

/** What a server stores for one user and mechanism. */
export interface ScramCredential {
  mechanism: ScramMechanism;
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

function hmac(mechanism: ScramMechanism, key: Buffer, data: string | Buffer): Buffer {
  return crypto.createHmac(hashOf[mechanism].algorithm, key).update(data).digest();
}

function hash(mechanism: ScramMechanism, data: Buffer): Buffer {
  return crypto.createHash(hashOf[mechanism].algorithm).update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Hi() of RFC 5802: PBKDF2 with HMAC-H, the password normalized (NFKC, close to SASLprep). */
function saltedPassword(mechanism: ScramMechanism, password: string, salt: Buffer, iterations: number): Buffer {
  const { algorithm, bytes } = hashOf[mechanism];
  return crypto.pbkdf2Sync(Buffer.from(password.normalize('NFKC'), 'utf8'), salt, iterations, bytes, algorithm);
}

function checkIterations(iterations: number): void {
  if (!Number.isInteger(iterations) || iterations < scramIterationsMin || iterations > scramIterationsMax) {
    throw new RangeError(`iterations must be an integer in ${scramIterationsMin}..${scramIterationsMax}, got ${iterations}`);
  }
}

function credentialOf(mechanism: ScramMechanism, salted: Buffer, salt: Buffer, iterations: number): ScramCredential {
  return {
    mechanism,
    salt,
    iterations,
    storedKey: hash(mechanism, hmac(mechanism, salted, 'Client Key')),
    serverKey: hmac(mechanism, salted, 'Server Key'),
  };
}

/** Derives the stored credential from a password (with a fresh random salt unless one is given). */
export function scramCredential(mechanism: ScramMechanism, password: string, iterations = scramIterationsDefault, salt: Buffer = crypto.randomBytes(saltBytes)): ScramCredential {
  checkIterations(iterations);
  return credentialOf(mechanism, saltedPassword(mechanism, password, salt, iterations), salt, iterations);
}

/**
 * As scramCredential, with the PBKDF2 run on libuv's thread pool: a broker checking a PLAIN
 * password (thousands of iterations, ~10 ms) keeps serving everyone else meanwhile.
 */
export function scramCredentialAsync(mechanism: ScramMechanism, password: string, iterations: number, salt: Buffer): Promise<ScramCredential> {
  checkIterations(iterations);
  const { algorithm, bytes } = hashOf[mechanism];
  return new Promise((resolve, reject) => {
    crypto.pbkdf2(Buffer.from(password.normalize('NFKC'), 'utf8'), salt, iterations, bytes, algorithm, (error, salted) => {
      if (error !== null) reject(error);
      else resolve(credentialOf(mechanism, salted, salt, iterations));
    });
  });
}

export function randomNonce(): string {
  return crypto.randomBytes(nonceBytes).toString('base64');
}

/** saslname of RFC 5802: ',' and '=' escaped. */
function encodeName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

function decodeName(text: string): string {
  if (/=(?!2C|3D)/.test(text)) throw new ScramError('user name has a bad escape (only =2C and =3D are allowed)');
  return text.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

/** Splits "k=v,k=v" into attributes, in order; rejects anything malformed. */
function attributes(message: string, what: string): [string, string][] {
  if (message.length === 0) throw new ScramError(`${what} is empty`);
  return message.split(',').map((part) => {
    if (!/^[a-zA-Z]=/.test(part)) throw new ScramError(`${what} has a malformed attribute`);
    return [part[0]!, part.slice(2)];
  });
}

function checkLength(message: string, what: string): void {
  if (Buffer.byteLength(message) > scramMessageBytesMax) throw new ScramError(`${what} is longer than ${scramMessageBytesMax} bytes`);
  // Printable ASCII plus UTF-8 user names; no control characters anywhere.
  if (/[\u0000-\u001f\u007f]/.test(message)) throw new ScramError(`${what} holds control characters`);
}

const printableNonce = /^[\u0021-\u002b\u002d-\u007e]+$/;
const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function base64(value: string, what: string): Buffer {
  if (!base64Pattern.test(value)) throw new ScramError(`${what} is not base64`);
  return Buffer.from(value, 'base64');
}

// ---- client side ---------------------------------------------------------------------------

/** One client exchange: first() -> send, then final(serverFirst) -> send, then verify(serverFinal). */
export class ScramClient {
  private readonly clientNonce: string;
  private readonly firstBare: string;
  private expectedServerSignature: Buffer | null = null;

  constructor(readonly mechanism: ScramMechanism, readonly user: string, private readonly password: string, clientNonce: string = randomNonce()) {
    if (!printableNonce.test(clientNonce)) throw new RangeError('client nonce must be printable ASCII without commas');
    this.clientNonce = clientNonce;
    this.firstBare = `n=${encodeName(user)},r=${clientNonce}`;
  }

  first(): string {
    return `n,,${this.firstBare}`;
  }

  final(serverFirst: string): string {
    checkLength(serverFirst, 'server-first message');
    const attrs = attributes(serverFirst, 'server-first message');
    if (attrs.length < 3 || attrs[0]![0] !== 'r' || attrs[1]![0] !== 's' || attrs[2]![0] !== 'i') throw new ScramError('server-first message must be r=...,s=...,i=...');
    const nonce = attrs[0]![1];
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length || !printableNonce.test(nonce)) throw new ScramError('server nonce does not extend the client nonce');
    const salt = base64(attrs[1]![1], 'salt');
    const iterations = /^\d{1,7}$/.test(attrs[2]![1]) ? Number(attrs[2]![1]) : Number.NaN;
    if (!(iterations >= scramIterationsMin && iterations <= scramIterationsMax)) throw new ScramError(`iteration count must be in ${scramIterationsMin}..${scramIterationsMax}`);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.firstBare},${serverFirst},${withoutProof}`;
    const salted = saltedPassword(this.mechanism, this.password, salt, iterations);
    const clientKey = hmac(this.mechanism, salted, 'Client Key');
    const storedKey = hash(this.mechanism, clientKey);
    const proof = xor(clientKey, hmac(this.mechanism, storedKey, authMessage));
    this.expectedServerSignature = hmac(this.mechanism, hmac(this.mechanism, salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Throws unless the server proved it knows the credential (mutual authentication). */
  verify(serverFinal: string): void {
    checkLength(serverFinal, 'server-final message');
    if (this.expectedServerSignature === null) throw new ScramError('server-final message before server-first');
    const [attr] = attributes(serverFinal, 'server-final message');
    if (attr![0] === 'e') throw new ScramError(`server refused: ${attr![1].slice(0, 200)}`);
    if (attr![0] !== 'v') throw new ScramError('server-final message must be v=... or e=...');
    const signature = base64(attr![1], 'server signature');
    if (signature.length !== this.expectedServerSignature.length || !crypto.timingSafeEqual(signature, this.expectedServerSignature)) {
      throw new ScramError('server signature does not match: the server does not hold this user\'s credential');
    }
  }
}

// ---- server side ---------------------------------------------------------------------------

/**
 * One server exchange. `lookup` returns the user's credential for this mechanism, or null: an
 * unknown user gets a plausible salt and iteration count (derived from a server secret, so they
 * are stable per name) and fails only at the proof, like a wrong password, so the exchange does
 * not tell which user names exist.
 */
export class ScramServer {
  private state: 'first' | 'final' | 'done' = 'first';
  private user = '';
  private credential: ScramCredential | null = null;
  private nonce = '';
  private firstBare = '';
  private serverFirst = '';

  constructor(
    readonly mechanism: ScramMechanism,
    private readonly lookup: (user: string) => ScramCredential | null,
    private readonly unknownUserSecret: Buffer,
    private readonly serverNonce: string = randomNonce(),
  ) {}

  /** Answers the client-first message with the server-first message. */
  first(clientFirst: string): string {
    if (this.state !== 'first') throw new ScramError('client-first message out of order');
    this.state = 'done';
    checkLength(clientFirst, 'client-first message');
    if (!clientFirst.startsWith('n,,')) {
      throw new ScramError(clientFirst.startsWith('p=') || clientFirst.startsWith('y,') ? 'channel binding is not supported' : 'client-first message must start with the gs2 header "n,,"');
    }
    const bare = clientFirst.slice(3);
    const attrs = attributes(bare, 'client-first message');
    if (attrs[0]![0] === 'm') throw new ScramError('mandatory extensions are not supported');
    if (attrs.length < 2 || attrs[0]![0] !== 'n' || attrs[1]![0] !== 'r') throw new ScramError('client-first message must be n=USER,r=NONCE');
    const user = decodeName(attrs[0]![1]);
    if (user.length === 0 || Buffer.byteLength(user) > userNameBytesMax) throw new ScramError(`user name must be 1..${userNameBytesMax} bytes`);
    const clientNonce = attrs[1]![1];
    if (!printableNonce.test(clientNonce) || clientNonce.length < 8) throw new ScramError('client nonce must be at least 8 printable characters');
    this.user = user;
    this.credential = this.lookup(user);
    const credential = this.credential ?? this.decoy(user);
    this.nonce = `${clientNonce}${this.serverNonce}`;
    this.firstBare = bare;
    this.serverFirst = `r=${this.nonce},s=${credential.salt.toString('base64')},i=${credential.iterations}`;
    this.state = 'final';
    return this.serverFirst;
  }

  /**
   * Checks the client-final message. Resolves to the authenticated user and the server-final
   * message to send; a wrong proof (or unknown user) is a ScramError('authentication failed').
   */
  final(clientFinal: string): { user: string; serverFinal: string } {
    if (this.state !== 'final') throw new ScramError('client-final message out of order');
    this.state = 'done';
    checkLength(clientFinal, 'client-final message');
    const attrs = attributes(clientFinal, 'client-final message');
    const proofAttr = attrs[attrs.length - 1]!;
    if (attrs.length < 3 || attrs[0]![0] !== 'c' || attrs[1]![0] !== 'r' || proofAttr[0] !== 'p') throw new ScramError('client-final message must be c=...,r=...,p=...');
    if (attrs[0]![1] !== 'biws') throw new ScramError('channel binding data must be "biws" (no channel binding)');
    if (attrs[1]![1] !== this.nonce) throw new ScramError('nonce does not match this exchange');
    const proof = base64(proofAttr[1], 'client proof');
    const withoutProof = clientFinal.slice(0, clientFinal.length - proofAttr[1].length - 3);
    const authMessage = `${this.firstBare},${this.serverFirst},${withoutProof}`;
    const credential = this.credential;
    const expectedBytes = hashOf[this.mechanism].bytes;
    let valid = false;
    if (credential !== null && proof.length === expectedBytes) {
      const clientKey = xor(proof, hmac(this.mechanism, credential.storedKey, authMessage));
      valid = crypto.timingSafeEqual(hash(this.mechanism, clientKey), credential.storedKey);
    }
    if (!valid || credential === null) throw new ScramError('authentication failed');
    return { user: this.user, serverFinal: `v=${hmac(this.mechanism, credential.serverKey, authMessage).toString('base64')}` };
  }

  private decoy(user: string): ScramCredential {
    const salt = hmac(this.mechanism, this.unknownUserSecret, `salt:${user}`).subarray(0, saltBytes);
    return { mechanism: this.mechanism, salt, iterations: scramIterationsDefault, storedKey: Buffer.alloc(0), serverKey: Buffer.alloc(0) };
  }
}
