/**
 * Certificates made with `openssl` for TLS tests, in a temp directory: a CA, a server
 * certificate for 127.0.0.1 and localhost (subjectAltName), and client certificates, each as PEM
 * files. Kept small (EC P-256) so generating them is quick.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from './broker-process.js';

export interface CertPair {
  cert: string;
  key: string;
}

export interface TestPki {
  dir: string;
  ca: CertPair;
  /** Issues a certificate signed by this CA; `server` adds the SANs 127.0.0.1 and localhost. */
  issue(name: string, subject: string, options?: { server?: boolean; serial?: number }): CertPair;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makePki(prefix = 'tls'): TestPki {
  const dir = tempDir(prefix);
  return makeCa(dir, 'ca', '/O=Rill Test/CN=Rill Test CA');
}

/** A CA in `dir` named `name` (files name.pem, name-key.pem). */
export function makeCa(dir: string, name: string, subject: string): TestPki {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.pem`, '-days', '2', '-subj', subject], dir);
  const ca = { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}-key.pem`) };
  return {
    dir,
    ca,
    issue(leaf, leafSubject, options = {}) {
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${leaf}-key.pem`, '-out', `${leaf}.csr`, '-subj', leafSubject], dir);
      const extensions = path.join(dir, `${leaf}.ext`);
      fs.writeFileSync(extensions, options.server === true
        ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
        : 'extendedKeyUsage=clientAuth\n');
      openssl(['x509', '-req', '-in', `${leaf}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(options.serial ?? 1000 + Math.floor(Math.random() * 1e6)), '-days', '2', '-out', `${leaf}.pem`, '-extfile', extensions], dir);
      return { cert: path.join(dir, `${leaf}.pem`), key: path.join(dir, `${leaf}-key.pem`) };
    },
  };
}
