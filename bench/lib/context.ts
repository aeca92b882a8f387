/** What a workload runner gets from run.ts, and what it hands back. */
import type { BrokerProcess, StartBrokerOptions } from './broker-process.js';
import type { BrokerSecurity } from './security.js';
import type { Workload } from './workload.js';

export interface RunContext {
  quick: boolean;
  /** --profile: brokers run under --cpu-prof and the bench profiles itself per workload. */
  profiling: boolean;
  /**
   * Starts a broker for this workload (profiled when --profile is on; TLS/SASL with `security`;
   * a cluster broker with `port`, `args` and `env`). `label` names its profile.
   */
  startBroker(options?: BrokerStartOptions): Promise<BrokerProcess>;
  /** Brackets the measured phase for the bench process's own CPU profile (no-op without --profile). */
  clientProfile: { start(): Promise<void>; stop(label?: string): Promise<void> };
}

export type BrokerStartOptions = Pick<StartBrokerOptions, 'dataDir' | 'port' | 'args' | 'env'> & { label?: string; security?: BrokerSecurity };

export type MetricValue = number | string | boolean | null | MetricValue[] | { [key: string]: MetricValue };

export interface TargetCheck {
  metric: string;
  label: string;
  value: number | null;
  met: boolean | null;
}

export interface WorkloadResult {
  name: string;
  kind: string;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  startedAt: string;
  elapsedSeconds: number;
  settings: Workload;
  /** Flat figures the targets and the table read (recordsPerSecond, p99Ms, ...). */
  metrics: Record<string, MetricValue>;
  /** One line for the final table. */
  summary: string;
  targets: TargetCheck[];
  peers: PeerResult[];
}

export interface PeerResult {
  peer: string;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  settings: Record<string, MetricValue>;
  metrics: Record<string, MetricValue>;
  summary: string;
  /** Rill's figure divided by the peer's (records/s), or the peer's p99 divided by Rill's (latency). */
  rillRatio: number | null;
  ratioMeaning: string;
}

export type Outcome = { metrics: Record<string, MetricValue>; summary: string };
