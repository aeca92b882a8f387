/**
 * Assertions are for programmer errors only: an assertion that fails means a bug in Rill,
 * never bad input. Untrusted bytes are validated with typed errors (see errors.ts).
 */
export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function unreachable(value: never, message = 'unreachable'): never {
  throw new AssertionError(`${message}: ${String(value)}`);
}
