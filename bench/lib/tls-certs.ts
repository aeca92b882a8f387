/**
 * A throwaway PKI for the secure workloads, made with the `openssl` command in a temporary
 * directory: a CA, and a server certificate for 127.0.0.1 and localhost signed by it. EC P-256
 * keys, what the README's "Securing Rill" setup makes, and quick to generate. (The tests have
 * their own helper; bench code does not import from test/.)
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface BenchPki {
  dir: string;
  /** PEM files. */
  caFile: string;
  certFile: string;
  keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`openssl ${args[0]} failed (the secure workloads need the openssl command): ${stderr || (error as Error).message}`);
  }
}

export function makeBenchPki(): BenchPki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rill-bench-pki-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/O=Rill Bench/CN=Rill Bench CA'], dir);
  openssl(['req', ...ec, '-keyout', 'broker-key.pem', '-out', 'broker.csr', '-subj', '/O=Rill Bench/CN=broker'], dir);
  fs.writeFileSync(path.join(dir, 'broker.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl(['x509', '-req', '-in', 'broker.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-set_serial', '1', '-days', '2', '-out', 'broker.pem', '-extfile', 'broker.ext'], dir);
  return { dir, caFile: path.join(dir, 'ca.pem'), certFile: path.join(dir, 'broker.pem'), keyFile: path.join(dir, 'broker-key.pem') };
}
