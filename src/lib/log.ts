/**
 * The one logging shape every server-side module takes: a level, a message for people, and
 * fields for machines (`{ topic, partition }` on every line about a partition, `{ remote }` on
 * every line about a connection). The CLI backs it with pino; tests pass a closure.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LogFields = Record<string, unknown>;

export type Log = (level: LogLevel, message: string, fields?: LogFields) => void;

export const logLevels: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
