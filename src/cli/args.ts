/**
 * Usage errors and the value parsers the commands give commander. A parser names the option, the
 * accepted range and the bad value; main.ts prints the message on one line and exits 2.
 */

export class UsageError extends Error {
  override name = 'UsageError';
}

/** An integer option in min..max: `--partitions must be an integer in 1..1000000, got "x"`. */
export function integerIn(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be an integer in ${min}..${max}, got "${value}"`);
    return n;
  };
}

/** A 64-bit offset: a non-negative integer, as bigint. */
export function offsetValue(flag: string, allowEnd = false): (value: string) => bigint {
  return (value) => {
    if (allowEnd && value === '-1') return -1n;
    if (!/^\d+$/.test(value) || BigInt(value) > 2n ** 63n - 1n) throw new UsageError(`${flag} must be a non-negative integer${allowEnd ? ' or -1' : ''}, got "${value}"`);
    return BigInt(value);
  };
}

/** The topic of produce/consume: the argument or -t, --topic. */
export function topicOf(positional: string | undefined, flag: string | undefined, command: string): string {
  if (positional !== undefined && flag !== undefined && positional !== flag) throw new UsageError(`give the topic once: "${positional}" or --topic "${flag}"`);
  const topic = positional ?? flag;
  if (topic === undefined) throw new UsageError(`missing topic: rill ${command} TOPIC (or -t TOPIC)`);
  return topic;
}

/** Repeatable options (`--config a=1 --config b=2`) collect into a list. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * `--config KEY=VALUE` entries for a topic. Any key goes through (the broker knows which exist and
 * answers INVALID_CONFIG naming the closest); values that are numbers are sent as numbers.
 */
export function topicConfigEntries(entries: readonly string[]): Record<string, number | string> {
  const config: Record<string, number | string> = {};
  for (const entry of entries) {
    const at = entry.indexOf('=');
    if (at <= 0) throw new UsageError(`--config expects KEY=VALUE (e.g. retention.ms=86400000), got "${entry}"`);
    const key = entry.slice(0, at);
    const value = entry.slice(at + 1);
    config[key] = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  }
  return config;
}
