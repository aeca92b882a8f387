/**
 * What a secure workload (`"security": { "tls": true, "sasl": "scram-sha-512" }`) changes: the
 * bench broker gets a certificate (made here with openssl), a user added offline the way an
 * operator does it (`rill users add NAME --data-dir DIR`, password on stdin) before it starts,
 * and `--tls-cert --tls-key --auth required`; every bench client gets `tls: { ca }` and
 * `sasl: { mechanism, username, password }`. Nothing else about the load changes.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import type { ClientTlsOptions, SaslMechanismOption, SaslOptions } from '../../src/client/index.js';
import { makeBenchPki, type BenchPki } from './tls-certs.js';

/** The `security` field of a workload file. */
export interface SecuritySetting {
  tls: boolean;
  /** null: no authentication. */
  sasl: SaslMechanismOption | null;
}

/** The options a bench client adds to `{ bootstrap }` (both absent for a plain broker). */
export interface ClientSecurity {
  tls?: ClientTlsOptions;
  sasl?: SaslOptions;
}

/** What a TLS connection to the broker negotiated (the default ciphers of Node and OpenSSL). */
export interface TlsSessionInfo {
  protocol: string | null;
  cipher: string;
}

const benchUser = 'bench';
const usersAddTimeoutMs = 30_000;

export function securityLabel(setting: SecuritySetting): string {
  const parts = [setting.tls ? 'TLS' : null, setting.sasl === null ? null : setting.sasl.toUpperCase()].filter((p) => p !== null);
  return parts.length === 0 ? 'plaintext' : parts.join('+');
}

export class BrokerSecurity {
  private pki: BenchPki | null = null;
  /** Random per bench run; it never appears on a command line. */
  private readonly password = crypto.randomBytes(18).toString('base64url');
  /** Filled by the first TLS probe. */
  negotiated: TlsSessionInfo | null = null;

  constructor(readonly setting: SecuritySetting) {}

  get label(): string {
    return securityLabel(this.setting);
  }

  private certificates(): BenchPki {
    this.pki ??= makeBenchPki();
    return this.pki;
  }

  /** Flags for `rill broker`. */
  brokerArgs(): string[] {
    const args: string[] = [];
    if (this.setting.tls) {
      const pki = this.certificates();
      args.push('--tls-cert', pki.certFile, '--tls-key', pki.keyFile);
    }
    // The bench user creates its topics, so it is a super user; every request still goes through the ACL check.
    if (this.setting.sasl !== null) args.push('--auth', 'required', '--super-users', benchUser);
    return args;
  }

  /** Adds the bench user to a (stopped) broker's data directory through the CLI. */
  async prepareDataDir(cliPath: string, dataDir: string): Promise<void> {
    if (this.setting.sasl === null) return;
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [cliPath, 'users', 'add', benchUser, '--data-dir', dataDir], { stdio: ['pipe', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), usersAddTimeoutMs);
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new Error(`rill users add ${benchUser} --data-dir ${dataDir} failed (${code ?? signal}): ${output.trim()}`));
      });
      child.stdin.end(`${this.password}\n`);
    });
  }

  clientOptions(): ClientSecurity {
    const options: ClientSecurity = {};
    if (this.setting.tls) options.tls = { ca: fs.readFileSync(this.certificates().caFile) };
    if (this.setting.sasl !== null) options.sasl = { mechanism: this.setting.sasl, username: benchUser, password: this.password };
    return options;
  }

  /** One TLS handshake with the broker to record what it negotiates (once per run). */
  async probe(port: number): Promise<void> {
    if (!this.setting.tls || this.negotiated !== null) return;
    this.negotiated = await new Promise<TlsSessionInfo>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(this.certificates().caFile) }, () => {
        const info = { protocol: socket.getProtocol(), cipher: socket.getCipher().name };
        socket.destroy();
        resolve(info);
      });
      socket.once('error', reject);
    });
  }

  dispose(): void {
    if (this.pki !== null) fs.rmSync(this.pki.dir, { recursive: true, force: true });
    this.pki = null;
  }
}
