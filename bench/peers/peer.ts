/**
 * Peers: the brokers a user would pick instead, driven through their usual Node clients with the
 * same record sizes, producer counts and rates as Rill's workloads. A peer whose server is not
 * reachable is skipped with a line saying how to start one.
 */
import net from 'node:net';
import { LatencyHistogram, type LatencySummary } from '../lib/histogram.js';
import { log } from '../lib/progress.js';
import { sendAtRate } from '../lib/rate-sender.js';

export interface PeerProduceResult {
  records: number;
  seconds: number;
  recordsPerSecond: number;
}

export interface PeerConsumeResult {
  records: number;
  seconds: number;
  recordsPerSecond: number;
}

export interface PeerLatencyResult {
  achievedRate: number;
  sent: number;
  received: number;
  scheduleLagMaxMs: number;
  gaveUp: boolean;
  latency: LatencySummary;
}

/** One session with a peer server: a fresh stream/topic per session, removed at close. */
export interface PeerSession {
  /** Produces as fast as the window allows for durationMs; records stay for consume(). */
  produce(options: { messageSize: number; producers: number; partitions: number; windowRecords: number; durationMs: number; onProgress: (acked: number) => void }): Promise<PeerProduceResult>;
  /** Reads everything produce() wrote with one consumer. */
  consume(options: { expectedRecords: number; onProgress: (read: number) => void }): Promise<PeerConsumeResult>;
  /** Sends stamped records at a fixed rate while one consumer reads them. */
  latency(options: { messageSize: number; partitions: number; rate: number; durationMs: number; warmupMs: number }): Promise<PeerLatencyResult>;
  close(): Promise<void>;
}

export interface Peer {
  name: string;
  host: string;
  port: number;
  /** The command that starts a local server. */
  startHint: string;
  /** How the peer is driven and at which durability, for the results. */
  settings: Record<string, string | number>;
  /** Why a reachable server still cannot be used (e.g. too old for the client), or null. */
  unusable?(): Promise<string | null>;
  open(): Promise<PeerSession>;
}

export function reachable(host: string, port: number, timeoutMs = 700): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Shared shape of a latency run: consumer started by the caller, then stamped sends at a rate. */
export async function measureLatency(options: { rate: number; durationMs: number; warmupMs: number }, send: (stampMs: number) => void, received: () => number, histogramRef: { histogram: LatencyHistogram; recordFromMs: number }, label: string): Promise<PeerLatencyResult> {
  histogramRef.recordFromMs = performance.now() + options.warmupMs;
  const figures = await sendAtRate(options.rate, options.durationMs + options.warmupMs, send);
  const deadline = performance.now() + 10_000;
  while (received() < figures.sent && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const latency = histogramRef.histogram.summary();
  log(`  ${label}: ${received().toLocaleString('en-US')}/${figures.sent.toLocaleString('en-US')} received at ${Math.round(figures.achievedRate)}/s, p99 ${latency.p99Ms.toFixed(2)} ms`);
  return { achievedRate: figures.achievedRate, sent: figures.sent, received: received(), scheduleLagMaxMs: figures.scheduleLagMaxMs, gaveUp: figures.gaveUp, latency };
}
