/**
 * The broker's quota bookkeeping (src/broker/quotas.ts) against a model: connections counted per
 * principal or address as they open, authenticate and close, refused exactly when their key is at
 * its limit; byte rates per principal with per-user overrides, on a manual clock. Connections are
 * stand-ins carrying what BrokerQuotas reads and calls (the real ones are in test/e2e/quotas.test.ts).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/lib/clock.js';
import type { RillError } from '../../src/lib/errors.js';
import type { Connection } from '../../src/broker/connection.js';
import { BrokerMetrics } from '../../src/broker/metrics.js';
import { BrokerQuotas, quotaKeyOf, type QuotaConfig } from '../../src/broker/quotas.js';

interface StandIn {
  remote: string;
  principal: string | null;
  quotas: unknown;
  throttledMs: number[];
  refusedWith: RillError | null;
  throttle(ms: number): void;
  refuse(error: RillError): void;
}

function standIn(remote: string, principal: string | null = null): StandIn & Connection {
  const connection: StandIn = {
    remote, principal, quotas: null, throttledMs: [], refusedWith: null,
    throttle(ms) { this.throttledMs.push(ms); },
    refuse(error) { this.refusedWith = error; },
  };
  return connection as StandIn & Connection;
}

function config(overrides: Partial<QuotaConfig> = {}): QuotaConfig {
  return { connectionsPerPrincipal: 0, produceBytesPerSecond: 0, fetchBytesPerSecond: 0, users: new Map(), ...overrides };
}

describe('BrokerQuotas', () => {
  it('counts connections per principal or address and refuses exactly at the limit (model)', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('open' as const), address: fc.integer({ min: 0, max: 2 }), certificate: fc.option(fc.constantFrom('alice', 'bob'), { nil: null }) }),
      fc.record({ kind: fc.constant('login' as const), index: fc.nat(), user: fc.constantFrom('alice', 'bob', 'carol') }),
      fc.record({ kind: fc.constant('close' as const), index: fc.nat() }),
    );
    fc.assert(fc.property(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 4 }), fc.array(op, { maxLength: 60 }), (defaultLimit, aliceLimit, ops) => {
      const metrics = new BrokerMetrics();
      const quotas = new BrokerQuotas(config({ connectionsPerPrincipal: defaultLimit, users: new Map([['alice', { connectionsPerPrincipal: aliceLimit }]]) }), metrics, () => {}, new ManualClock());
      const limitOf = (key: string): number => (key === 'User:alice' ? aliceLimit : defaultLimit);
      const model = new Map<string, number>();
      const open: { connection: StandIn & Connection; key: string }[] = [];
      let refusals = 0;
      const admit = (key: string): boolean => {
        const count = model.get(key) ?? 0;
        if (limitOf(key) !== 0 && count >= limitOf(key)) {
          refusals++;
          return false;
        }
        model.set(key, count + 1);
        return true;
      };
      const release = (key: string): void => void model.set(key, model.get(key)! - 1);
      for (const step of ops) {
        if (step.kind === 'open') {
          const connection = standIn(`10.0.0.${step.address}:${40000 + open.length}`, step.certificate === null ? null : `User:${step.certificate}`);
          quotas.accept(connection);
          const key = quotaKeyOf(connection);
          expect(connection.refusedWith === null).toBe(admit(key));
          if (connection.refusedWith === null) open.push({ connection, key });
          else expect(connection.refusedWith.code).toBe('TOO_MANY_CONNECTIONS');
        } else if (open.length > 0) {
          const at = step.index % open.length;
          const entry = open[at]!;
          if (step.kind === 'close') {
            quotas.release(entry.connection);
            release(entry.key);
            open.splice(at, 1);
          } else if (entry.connection.principal === null) {
            const principal = `User:${step.user}`;
            const refusal = quotas.authenticated(entry.connection, principal);
            expect(refusal === null).toBe(admit(principal));
            if (refusal === null) {
              release(entry.key);
              entry.connection.principal = principal;
              entry.key = principal;
            }
          }
        }
        for (const [key, count] of model) expect(quotas.connectionsOf(key)).toBe(count);
        expect(metrics.quotaConnectionsRefused).toBe(refusals);
      }
      for (const { connection } of open) quotas.release(connection);
      for (const key of model.keys()) expect(quotas.connectionsOf(key)).toBe(0);
    }));
  });

  it('throttles produce and fetch per principal, with per-user rates, and counts what it held back', () => {
    const clock = new ManualClock(1000);
    const metrics = new BrokerMetrics();
    const users = new Map([['bob', { produceBytesPerSecond: 0 }], ['carol', { fetchBytesPerSecond: 2000 }]]);
    const quotas = new BrokerQuotas(config({ produceBytesPerSecond: 1000, fetchBytesPerSecond: 1000, users }), metrics, () => {}, clock);
    const alice = standIn('10.0.0.1:1', 'User:alice');
    const bob = standIn('10.0.0.2:1', 'User:bob');
    const carol = standIn('10.0.0.3:1', 'User:carol');
    const anonymous = [standIn('10.0.0.9:1'), standIn('10.0.0.9:2')];
    for (const connection of [alice, bob, carol, ...anonymous]) {
      quotas.accept(connection);
      expect(connection.quotas).toBe(quotas);
    }
    // One second of the rate passes at once; the next 500 bytes wait half a second.
    expect(quotas.produce(alice, 1000)).toBe(0);
    expect(quotas.produce(alice, 500)).toBe(500);
    expect(alice.throttledMs).toEqual([500]);
    expect(quotas.produce(bob, 10_000_000)).toBe(0);
    // Anonymous connections from one address share its bucket.
    expect(quotas.produce(anonymous[0]!, 1000)).toBe(0);
    expect(quotas.produce(anonymous[1]!, 1000)).toBe(1000);
    // Fetch is its own bucket; carol's rate is her own, and a reply holds at most one burst.
    expect(quotas.fetchBytesMax(alice)).toBe(1000);
    expect(quotas.fetchBytesMax(carol)).toBe(2000);
    expect(quotas.fetchBytesMax(bob)).toBe(1000);
    expect(quotas.fetch(alice, 1000)).toBe(0);
    expect(quotas.fetch(carol, 3000)).toBe(500);
    clock.advance(500);
    expect(quotas.produce(alice, 0)).toBe(0);
    expect(metrics.produceThrottledRequests).toBe(2);
    expect(metrics.produceThrottleMs).toBe(1500);
    expect(metrics.fetchThrottledRequests).toBe(1);
    expect(metrics.fetchThrottleMs).toBe(500);
  });

  it('leaves connections without a byte rate alone (no ConnectionQuotas on them)', () => {
    const quotas = new BrokerQuotas(config({ connectionsPerPrincipal: 5 }), new BrokerMetrics(), () => {}, new ManualClock());
    const connection = standIn('10.0.0.1:1');
    quotas.accept(connection);
    expect(connection.quotas).toBeNull();
  });
});
