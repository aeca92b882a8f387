/**
 * The client's side of authentication: SaslHandshake then SaslAuthenticate, run by
 * BrokerConnection on every new socket before anything else is sent on it. SCRAM checks the
 * server's signature too (mutual authentication); PLAIN is only offered by brokers on TLS.
 * Every failure is a non-retriable RillError: retrying the same password cannot help.
 */
import { RillError } from '../lib/errors.js';
import { ApiKey } from '../wire/apis.js';
import { decodeSaslAuthenticateResponse, decodeSaslHandshakeResponse, encodePlain, type SaslMechanismName } from '../wire/sasl.js';
import { ScramClient, ScramError } from '../wire/scram.js';

export type SaslMechanismOption = 'scram-sha-256' | 'scram-sha-512' | 'plain';

export const saslMechanismOptions: readonly SaslMechanismOption[] = ['scram-sha-256', 'scram-sha-512', 'plain'];

export interface SaslOptions {
  /** Default 'scram-sha-512'. */
  mechanism?: SaslMechanismOption;
  username: string;
  password: string;
}

/** One control call on the socket being authenticated (MessagePack in, decoded reply out). */
export type SaslCall = <T>(apiKey: number, request: unknown, decode: (value: unknown) => T) => Promise<T>;

export function saslMechanismName(option: SaslMechanismOption): SaslMechanismName {
  switch (option) {
    case 'scram-sha-256': return 'SCRAM-SHA-256';
    case 'scram-sha-512': return 'SCRAM-SHA-512';
    case 'plain': return 'PLAIN';
    default: throw new RillError('INVALID_ARGUMENT', `sasl.mechanism must be one of ${saslMechanismOptions.join(', ')}, got ${JSON.stringify(option)}`);
  }
}

export function validateSaslOptions(sasl: SaslOptions): void {
  saslMechanismName(sasl.mechanism ?? 'scram-sha-512');
  if (typeof sasl.username !== 'string' || sasl.username.length === 0) throw new RillError('INVALID_ARGUMENT', 'sasl.username must be a non-empty string');
  if (typeof sasl.password !== 'string' || sasl.password.length === 0) throw new RillError('INVALID_ARGUMENT', 'sasl.password must be a non-empty string');
}

/** Runs the exchange; resolves once the broker accepted (and, for SCRAM, proved itself). */
export async function saslAuthenticate(call: SaslCall, sasl: SaslOptions, brokerName: string): Promise<void> {
  const mechanism = saslMechanismName(sasl.mechanism ?? 'scram-sha-512');
  await call(ApiKey.SaslHandshake, { mechanism }, decodeSaslHandshakeResponse);
  const step = async (authBytes: Buffer): Promise<string> => {
    const reply = await call(ApiKey.SaslAuthenticate, { authBytes }, decodeSaslAuthenticateResponse);
    return reply.authBytes.toString('utf8');
  };
  if (mechanism === 'PLAIN') {
    await step(encodePlain(sasl.username, sasl.password));
    return;
  }
  const scram = new ScramClient(mechanism, sasl.username, sasl.password);
  try {
    const serverFirst = await step(Buffer.from(scram.first(), 'utf8'));
    const serverFinal = await step(Buffer.from(scram.final(serverFirst), 'utf8'));
    scram.verify(serverFinal);
  } catch (error) {
    if (error instanceof ScramError) throw new RillError('SASL_AUTHENTICATION_FAILED', `${brokerName}: ${error.message}`);
    throw error;
  }
}
