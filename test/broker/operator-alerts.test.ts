/**
 * Rate-limited operator alerts, driven by a ManualClock: one line per condition and partition (or
 * client address) per interval, the next line says how many were held back, and every
 * occurrence is counted.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/lib/clock.js';
import type { LogFields, LogLevel } from '../../src/lib/log.js';
import { RateLimiter } from '../../src/lib/rate-limit.js';
import { BrokerMetrics } from '../../src/broker/metrics.js';
import { OperatorAlerts, alertLogIntervalMs, clientErrorWindowMs, clientErrorsAlertThreshold, type ClientErrorWindow } from '../../src/broker/operator-alerts.js';

interface Line {
  level: LogLevel;
  message: string;
  fields: LogFields | undefined;
}

function capture(): { lines: Line[]; log: (level: LogLevel, message: string, fields?: LogFields) => void } {
  const lines: Line[] = [];
  return { lines, log: (level, message, fields) => lines.push({ level, message, fields }) };
}

describe('RateLimiter', () => {
  it('passes one event per key per interval and counts the rest', () => {
    const limiter = new RateLimiter(10_000, 100);
    expect(limiter.admit('a', 0)).toEqual({ pass: true, suppressed: 0 });
    expect(limiter.admit('a', 1)).toEqual({ pass: false, suppressed: 1 });
    expect(limiter.admit('a', 9_999)).toEqual({ pass: false, suppressed: 2 });
    expect(limiter.admit('b', 9_999).pass).toBe(true);
    expect(limiter.admit('a', 10_000)).toEqual({ pass: true, suppressed: 2 });
    expect(limiter.admit('a', 10_001)).toEqual({ pass: false, suppressed: 1 });
  });

  it('remembers at most keysMax keys, forgetting the one that passed longest ago', () => {
    const limiter = new RateLimiter(10_000, 3);
    for (const key of ['a', 'b', 'c', 'd']) expect(limiter.admit(key, 0).pass).toBe(true);
    expect(limiter.size).toBe(3);
    expect(limiter.admit('a', 1).pass).toBe(true); // forgotten, so it passes again
    expect(limiter.admit('d', 1).pass).toBe(false);
  });

  it('rejects nonsensical settings', () => {
    expect(() => new RateLimiter(0, 10)).toThrow(RangeError);
    expect(() => new RateLimiter(1000, 0)).toThrow(RangeError);
  });
});

describe('OperatorAlerts', () => {
  it('logs a full disk once per partition per interval, with fields and a suppressed count, and counts every occurrence', () => {
    const clock = new ManualClock(1_000_000);
    const out = capture();
    const metrics = new BrokerMetrics(new OperatorAlerts(out.log, clock));
    for (let i = 0; i < 500; i++) metrics.partitionError('orders', 3, { code: 'DISK_FULL', message: 'DISK_FULL: no space left on device' });
    metrics.partitionError('orders', 4, { code: 'DISK_FULL', message: 'DISK_FULL: no space left on device' });
    expect(out.lines).toHaveLength(2);
    expect(out.lines[0]).toMatchObject({ level: 'warn', fields: { topic: 'orders', partition: 3, condition: 'disk_full', suppressed: 0 } });
    expect(out.lines[1]!.fields).toMatchObject({ topic: 'orders', partition: 4 });
    clock.advance(alertLogIntervalMs);
    metrics.partitionError('orders', 3, { code: 'DISK_FULL', message: 'DISK_FULL: no space left on device' });
    expect(out.lines).toHaveLength(3);
    expect(out.lines[2]!.message).toContain('499 more like this');
    expect(out.lines[2]!.fields).toMatchObject({ suppressed: 499 });
    expect(metrics.alerts.counts.get('disk_full')).toBe(502);
    expect(metrics.errors.get('DISK_FULL')).toBe(502);
  });

  it('raises corrupt ranges at error level; errors that are not conditions are only counted', () => {
    const out = capture();
    const metrics = new BrokerMetrics(new OperatorAlerts(out.log, new ManualClock()));
    metrics.partitionError('t', 0, { code: 'CORRUPT_LOG', message: 'CORRUPT_LOG: bad crc at offset 7' });
    metrics.partitionError('t', 0, { code: 'UNKNOWN_TOPIC_OR_PARTITION', message: 'no such topic' });
    expect(out.lines).toEqual([expect.objectContaining({ level: 'error', fields: expect.objectContaining({ condition: 'corrupt_log', topic: 't', partition: 0 }) })]);
    expect(metrics.alerts.counts.get('corrupt_log')).toBe(1);
    expect(metrics.errors.get('UNKNOWN_TOPIC_OR_PARTITION')).toBe(1);
  });

  it('routes log lines tagged with a condition through the limiter and passes the others through', () => {
    const out = capture();
    const alerts = new OperatorAlerts(out.log, new ManualClock());
    for (let i = 0; i < 3; i++) alerts.log('error', 't/0: fsync failed', { topic: 't', partition: 0, condition: 'fsync_failed' });
    alerts.log('info', 't/0: log reopened', { topic: 't', partition: 0 });
    alerts.log('info', 't/0: log reopened', { topic: 't', partition: 0 });
    expect(out.lines.map((l) => l.message)).toEqual(['t/0: fsync failed', 't/0: log reopened', 't/0: log reopened']);
    expect(alerts.counts.get('fsync_failed')).toBe(3);
  });

  it('raises client_errors once per window in which one connection reaches the threshold, keyed by address', () => {
    const clock = new ManualClock(0);
    const out = capture();
    const alerts = new OperatorAlerts(out.log, clock);
    const connection: ClientErrorWindow = { remote: '10.0.0.7:51234', errorWindowStartMs: 0, errorsInWindow: 0 };
    for (let i = 0; i < clientErrorsAlertThreshold - 1; i++) alerts.clientError(connection, 'UNKNOWN_TOPIC_OR_PARTITION');
    expect(out.lines).toHaveLength(0);
    for (let i = 0; i < 1000; i++) alerts.clientError(connection, 'UNKNOWN_TOPIC_OR_PARTITION');
    expect(out.lines).toHaveLength(1);
    expect(out.lines[0]).toMatchObject({ level: 'warn', fields: { remote: '10.0.0.7:51234', condition: 'client_errors' } });
    // The same client on a new connection within the log interval: counted, not logged again.
    const reconnected: ClientErrorWindow = { remote: '10.0.0.7:51999', errorWindowStartMs: 0, errorsInWindow: 0 };
    clock.advance(1);
    for (let i = 0; i < clientErrorsAlertThreshold; i++) alerts.clientError(reconnected, 'UNKNOWN_TOPIC_OR_PARTITION');
    expect(out.lines).toHaveLength(1);
    expect(alerts.counts.get('client_errors')).toBe(2);
    // A new window: the count starts over.
    clock.advance(Math.max(clientErrorWindowMs, alertLogIntervalMs));
    for (let i = 0; i < clientErrorsAlertThreshold; i++) alerts.clientError(connection, 'UNKNOWN_TOPIC_OR_PARTITION');
    expect(out.lines).toHaveLength(2);
    expect(out.lines[1]!.fields).toMatchObject({ suppressed: 1 });
  });
});
