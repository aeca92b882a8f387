/**
 * The byte-rate quota core (src/lib/quota.ts), driven by a fake clock: what a client that waits
 * its throttle gets through, that a client under the rate is never throttled, the bound on a
 * throttle, independence of keys and the bound on tracked keys.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteRateQuotas, type ByteRate } from '../../src/lib/quota.js';

const throttleMsMax = 10_000;

const rateArb: fc.Arbitrary<ByteRate> = fc.record({
  bytesPerSecond: fc.integer({ min: 1, max: 10_000_000 }),
  burstBytes: fc.integer({ min: 0, max: 10_000_000 }),
});

/** Floating-point slack on byte sums of up to ~1e10. */
const slackBytes = 1e-3;

describe('ByteRateQuotas', () => {
  it('throttles by the time the level needs to drain back to the burst', () => {
    const quotas = new ByteRateQuotas(throttleMsMax, 10);
    const rate = { bytesPerSecond: 1000, burstBytes: 1000 };
    expect(quotas.record('User:a', rate, 1000, 0)).toBe(0);
    expect(quotas.record('User:a', rate, 500, 0)).toBe(500);
    expect(quotas.record('User:a', rate, 500, 250)).toBe(750);
    // Waited its throttle: back at the burst, so an empty request is not throttled.
    expect(quotas.record('User:a', rate, 0, 1000)).toBe(0);
    // Half a second later, 500 bytes pass again without a throttle, 600 do not.
    expect(quotas.record('User:a', rate, 500, 1500)).toBe(0);
    expect(quotas.record('User:a', rate, 100, 1500)).toBe(100);
    // A request worth more than throttleMsMax of the rate: the excess is forgiven.
    expect(quotas.record('User:b', rate, 1_000_000, 0)).toBe(throttleMsMax);
    expect(quotas.record('User:b', rate, 0, throttleMsMax)).toBe(0);
  });

  it('a client that waits each throttle gets at most rate x interval + burst + its last request through, over every interval', () => {
    const requestsArb = fc.array(fc.record({ bytesFraction: fc.double({ min: 0, max: 1, noNaN: true }), extraWaitMs: fc.integer({ min: 0, max: 3000 }) }), { minLength: 1, maxLength: 60 });
    fc.assert(fc.property(rateArb, requestsArb, (rate, requests) => {
      const quotas = new ByteRateQuotas(throttleMsMax, 4);
      // At most throttleMsMax worth of the rate each: nothing is forgiven, the bound is exact.
      const requestBytesMax = Math.floor((rate.bytesPerSecond * throttleMsMax) / 1000);
      const sent: { atMs: number; bytes: number }[] = [];
      let nowMs = 0;
      for (const { bytesFraction, extraWaitMs } of requests) {
        nowMs += extraWaitMs;
        const bytes = Math.floor(bytesFraction * requestBytesMax);
        const throttleMs = quotas.record('User:p', rate, bytes, nowMs);
        sent.push({ atMs: nowMs, bytes });
        // Never throttled for more than its own request's worth.
        expect(throttleMs).toBeLessThanOrEqual(Math.ceil((bytes * 1000) / rate.bytesPerSecond));
        nowMs += throttleMs;
      }
      for (let i = 0; i < sent.length; i++) {
        let total = 0;
        for (let j = i; j < sent.length; j++) {
          total += sent[j]!.bytes;
          const bound = (rate.bytesPerSecond * (sent[j]!.atMs - sent[i]!.atMs)) / 1000 + rate.burstBytes + sent[j]!.bytes;
          expect(total).toBeLessThanOrEqual(bound + slackBytes * Math.max(1, bound));
        }
      }
    }));
  });

  it('a client under the rate (and within the burst) is never throttled', () => {
    fc.assert(fc.property(rateArb, fc.array(fc.record({ gapMs: fc.integer({ min: 0, max: 5000 }), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }), { maxLength: 80 }), (rate, requests) => {
      const quotas = new ByteRateQuotas(throttleMsMax, 4);
      let nowMs = 0;
      let first = true;
      for (const { gapMs, fraction } of requests) {
        nowMs += gapMs;
        // What drained since the last request, and no more than the burst at once.
        const allowed = first ? rate.burstBytes : Math.min(rate.burstBytes, Math.floor((rate.bytesPerSecond * gapMs) / 1000));
        first = false;
        expect(quotas.record('User:p', rate, Math.floor(fraction * allowed), nowMs)).toBe(0);
      }
    }));
  });

  it('no throttle is negative or longer than throttleMsMax, whatever the requests and the clock do', () => {
    fc.assert(fc.property(rateArb, fc.array(fc.record({ bytes: fc.integer({ min: 0, max: 2 ** 31 }), stepMs: fc.integer({ min: -1000, max: 20_000 }) }), { maxLength: 80 }), (rate, requests) => {
      const quotas = new ByteRateQuotas(throttleMsMax, 4);
      let nowMs = 1_000_000;
      for (const { bytes, stepMs } of requests) {
        nowMs += stepMs;
        const throttleMs = quotas.record('User:p', rate, bytes, nowMs);
        expect(Number.isInteger(throttleMs)).toBe(true);
        expect(throttleMs).toBeGreaterThanOrEqual(0);
        expect(throttleMs).toBeLessThanOrEqual(throttleMsMax);
      }
    }));
  });

  it('keys are independent: each throttles as if it were alone', () => {
    const keys = ['User:a', 'User:b', 'User:c', '10.0.0.7'];
    const requestsArb = fc.array(fc.record({ key: fc.constantFrom(...keys), bytes: fc.integer({ min: 0, max: 5_000_000 }), stepMs: fc.integer({ min: 0, max: 2000 }) }), { maxLength: 100 });
    fc.assert(fc.property(rateArb, requestsArb, (rate, requests) => {
      const shared = new ByteRateQuotas(throttleMsMax, keys.length);
      const alone = new Map(keys.map((key) => [key, new ByteRateQuotas(throttleMsMax, 1)]));
      let nowMs = 0;
      for (const { key, bytes, stepMs } of requests) {
        nowMs += stepMs;
        expect(shared.record(key, rate, bytes, nowMs)).toBe(alone.get(key)!.record(key, rate, bytes, nowMs));
      }
    }));
  });

  it('tracks at most keysMax keys, forgetting the one recorded longest ago (a model: an LRU map of levels)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 8 }), fc.array(fc.integer({ min: 0, max: 12 }), { maxLength: 200 }), (keysMax, keyIds) => {
      const quotas = new ByteRateQuotas(throttleMsMax, keysMax);
      // 1 B/s, no burst, the clock stopped: each byte recorded is 1 s of throttle, up to throttleMsMax.
      const rate = { bytesPerSecond: 1, burstBytes: 0 };
      const model = new Map<string, number>();
      for (const id of keyIds) {
        const key = `k${id}`;
        const level = Math.min((model.get(key) ?? 0) + 1, throttleMsMax / 1000);
        if (!model.delete(key) && model.size >= keysMax) model.delete(model.keys().next().value!);
        model.set(key, level);
        expect(quotas.record(key, rate, 1, 0)).toBe(level * 1000);
        expect(quotas.size).toBe(model.size);
        expect(quotas.size).toBeLessThanOrEqual(keysMax);
      }
    }));
  });
});
