/**
 * TLS on a listener: the files an operator names are read and checked here (before the data
 * directory is touched, so a bad file is a SettingsError that changes nothing), turned into a
 * secure context, and re-read on SIGHUP (server.setSecureContext: new handshakes use the new
 * certificate, open connections keep theirs).
 *
 * The principal of a connection (what the auth and ACL work authorises):
 *
 *     TLS with a client certificate that verifies against the listener's CA
 *         -> `User:` + the certificate's subject DN in RFC 2253 form, most specific RDN first,
 *            e.g. `User:CN=alice,O=Acme` (Kafka's default SSL principal builder)
 *     anything else (plaintext, TLS without a certificate, clientAuth none)
 *         -> `User:ANONYMOUS`
 */
import fs from 'node:fs';
import tls from 'node:tls';
import type net from 'node:net';
import { SettingsError, type TlsClientAuth } from './settings.js';

export const anonymousPrincipal = 'User:ANONYMOUS';

/** Oldest TLS version a listener accepts; 1.0 and 1.1 are refused (RFC 8996). */
export const tlsVersionMin = 'TLSv1.2';

/** A TLS handshake must complete within this; a peer that holds it open is cut off. */
export const tlsHandshakeTimeoutMsDefault = 10_000;

/** Certificate files are small; a bigger one is a wrong path (a disk image, a log). */
const tlsFileBytesMax = 1024 * 1024;

export interface ListenerTlsConfig {
  certFile: string;
  keyFile: string;
  caFile?: string | null | undefined;
  clientAuth?: TlsClientAuth | undefined;
}

/** The PEM contents of a listener's files, checked to make a secure context. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
}

function readPem(listener: string, what: string, file: string): Buffer {
  let bytes: Buffer;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > tlsFileBytesMax) throw new Error(`${stat.size} bytes; at most ${tlsFileBytesMax} are read`);
    bytes = fs.readFileSync(file);
  } catch (error) {
    throw new SettingsError(`listener ${listener}: cannot read TLS ${what} file ${file}: ${(error as Error).message}`);
  }
  if (!bytes.includes('-----BEGIN ')) throw new SettingsError(`listener ${listener}: TLS ${what} file ${file} is not PEM (no "-----BEGIN" line)`);
  return bytes;
}

/**
 * Reads and checks a listener's certificate, key and CA: each file on its own (so the error names
 * the file at fault), then the pair (the key must match the certificate).
 */
export function loadTlsMaterial(listener: string, config: ListenerTlsConfig): TlsMaterial {
  const cert = readPem(listener, 'certificate', config.certFile);
  const key = readPem(listener, 'key', config.keyFile);
  const ca = config.caFile ? readPem(listener, 'CA', config.caFile) : undefined;
  const check = (file: string, what: string, options: tls.SecureContextOptions): void => {
    try {
      tls.createSecureContext(options);
    } catch (error) {
      throw new SettingsError(`listener ${listener}: TLS ${what} file ${file} is not valid: ${(error as Error).message}`);
    }
  };
  check(config.certFile, 'certificate', { cert });
  check(config.keyFile, 'key', { key });
  if (ca !== undefined && config.caFile) check(config.caFile, 'CA', { ca });
  check(config.keyFile, 'key', { cert, key });
  return { cert, key, ca };
}

/** The options of tls.createServer / setSecureContext for a listener. */
export function secureContextOptions(material: TlsMaterial): tls.SecureContextOptions {
  return { cert: material.cert, key: material.key, ca: material.ca, minVersion: tlsVersionMin };
}

/** A TLS listener's server: emits 'secureConnection' once a handshake is done, 'tlsClientError' when one fails. */
export function createTlsServer(config: ListenerTlsConfig, material: TlsMaterial, handshakeTimeoutMs: number): tls.Server {
  return tls.createServer(tlsServerOptions(config, material, handshakeTimeoutMs));
}

/** tls.createServer options for a listener. */
export function tlsServerOptions(config: ListenerTlsConfig, material: TlsMaterial, handshakeTimeoutMs: number): tls.TlsOptions {
  const clientAuth = config.clientAuth ?? 'none';
  return {
    ...secureContextOptions(material),
    requestCert: clientAuth !== 'none',
    // 'requested': an unverified certificate is allowed in, as ANONYMOUS (see principalOf).
    rejectUnauthorized: clientAuth === 'required',
    handshakeTimeout: handshakeTimeoutMs,
  };
}

/**
 * `User:` + the subject DN in RFC 2253 order (last RDN of the certificate first). `subject` is
 * node's X509Certificate.subject: one `TYPE=value` per line, in certificate order, values
 * already escaped as RFC 2253 asks (`O=Acme\, Inc.`). Multi-valued RDNs are not told apart
 * (node does not mark them).
 */
export function principalFromSubject(subject: string): string {
  const rdns = subject.split('\n').filter((line) => line !== '');
  return `User:${rdns.reverse().join(',')}`;
}

/** The principal of an accepted socket (see the header). */
export function principalOf(socket: net.Socket): string {
  if (!(socket instanceof tls.TLSSocket) || !socket.authorized) return anonymousPrincipal;
  const certificate = socket.getPeerX509Certificate();
  if (certificate === undefined) return anonymousPrincipal;
  return principalFromSubject(certificate.subject);
}
