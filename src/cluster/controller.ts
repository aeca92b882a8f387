/**
 * The controller at work: on the broker that holds the controller key, turns the cluster's view
 * (live brokers from membership.ts, topics and partition states from cluster-metadata.ts) into
 * etcd writes. The decisions are controller-logic.ts's and placement.ts's; this file only reads,
 * decides and writes, again whenever something changed:
 *
 *   a topic with partitions that have no state   place replicas over the live brokers (racks
 *                                                respected) and create the states
 *   partition states of a topic that is gone     delete them
 *   the live set changed                         reconcile(): elections, dead brokers out of ISRs
 *   an operator's placement request              start minimal moves (rebalance, decommission)
 *   a move whose targets are all in the ISR      finish it: replicas become the target
 *
 * Every write is one etcd transaction guarded twice: the controller key still has the create
 * revision this broker won it at (a deposed controller writes nothing, even if it does not know
 * yet), and each partition key still has the version the decision was made from (create: it is
 * still absent). A guard that fails means the view is old: read again, decide again.
 */
import type { Log } from '../lib/log.js';
import { parsePartitionKey, partitionKey, type PartitionKey } from '../lib/topic-partition.js';
import { completeMove, createPartitionStates, reconcile, startMove, type ElectionPolicy, type PartitionState } from './controller-logic.js';
import type { ClusterMetadata, MetadataView } from './cluster-metadata.js';
import type { EtcdCompare, EtcdPort, EtcdWrite } from './etcd-port.js';
import type { ClusterMembership, LiveBroker } from './membership.js';
import { placeReplicas } from './placement.js';
import { encodeRecord, partitionStateRecord, type ClusterKeys } from './records.js';

const retryMs = 500;

export class ClusterController {
  private running: Promise<void> | null = null;
  private dirty = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  /** Topics that could not be placed (too few live brokers), logged once each until placed. */
  private readonly unplaceable = new Set<string>();

  /** Since when (ms) each broker that holds replicas has been dead, for autoReplaceDeadBrokersMs. */
  private readonly deadSince = new Map<number, number>();
  private autoReplaceTimer: NodeJS.Timeout | null = null;

  /**
   * `autoReplaceDeadBrokersMs` > 0: replicas of a broker dead that long are re-created on live
   * brokers (the controller asks itself for a rebalance, which places them over the live ones);
   * 0: never (a dead broker's partitions stay under-replicated until it returns or an operator
   * moves them).
   */
  constructor(
    private readonly port: EtcdPort,
    private readonly keys: ClusterKeys,
    private readonly membership: ClusterMembership,
    private readonly metadata: ClusterMetadata,
    private readonly log: Log,
    private readonly autoReplaceDeadBrokersMs = 0,
  ) {}

  start(): void {
    const wake = (): void => this.schedule();
    this.membership.on('controller', wake);
    this.membership.on('brokers', wake);
    this.metadata.on('changed', wake);
    this.schedule();
  }

  schedule(): void {
    if (this.closed) return;
    if (this.running !== null) {
      this.dirty = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = null;
    });
  }

  private async loop(): Promise<void> {
    do {
      this.dirty = false;
      try {
        const wrote = await this.pass();
        // Read what was written (the watch would too, later) and look again.
        if (wrote) {
          await this.metadata.refresh();
          this.dirty = true;
        }
      } catch (error) {
        this.log('warn', `controller: ${(error as Error).message}; retrying in ${retryMs} ms`, {});
        if (this.retryTimer === null && !this.closed) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            this.schedule();
          }, retryMs);
        }
        return;
      }
    } while (this.dirty && !this.closed && this.membership.isController);
  }

  /** One look at the cluster; returns whether it wrote anything (or tried to). */
  private async pass(): Promise<boolean> {
    const controller = this.membership.controller();
    if (!this.membership.isController || controller === null || !this.metadata.loaded) return false;
    const guard: EtcdCompare = { key: this.keys.controller, target: 'create', revision: controller.epoch };
    const view = this.metadata.view;
    const live = this.membership.brokers();
    const excluded = new Set(view.decommissioned.brokers);
    // Decommissioned brokers get no new replicas.
    const placeable = live.filter((b) => !excluded.has(b.nodeId));
    let wrote = false;

    for (const topic of view.topics.values()) {
      const states: (PartitionState | undefined)[] = Array.from({ length: topic.partitions }, (_, i) => view.partitions.get(`${topic.name}\u0000${i}`));
      const missing = states.flatMap((state, index) => (state === undefined ? [index] : []));
      if (missing.length === 0) continue;
      if (placeable.length < topic.replicationFactor) {
        if (!this.unplaceable.has(topic.name)) this.log('warn', `controller: topic ${topic.name} needs ${topic.replicationFactor} live brokers for its replicas, ${placeable.length} are alive (and not decommissioned); placing it when enough are`, { topic: topic.name });
        this.unplaceable.add(topic.name);
        continue;
      }
      this.unplaceable.delete(topic.name);
      const firstMissing = missing[0]!;
      const current = states.slice(0, firstMissing).map((state) => state!.replicas);
      const lists = placeReplicas({
        brokers: placeable.map((b) => (b.rack === null ? { nodeId: b.nodeId } : { nodeId: b.nodeId, rack: b.rack })),
        topic: topic.name,
        partitions: topic.partitions,
        replicationFactor: topic.replicationFactor,
        current,
      });
      const created = createPartitionStates(topic.name, lists);
      const compares: EtcdCompare[] = [guard];
      const writes: EtcdWrite[] = [];
      for (const index of missing) {
        const key = this.keys.partition(topic.name, index);
        compares.push({ key, target: 'create', revision: 0 });
        writes.push({ key, value: encodeRecord(partitionStateRecord(created.get(`${topic.name}\u0000${index}`)!)) });
      }
      const { succeeded } = await this.port.txn(compares, writes);
      wrote = true;
      if (succeeded) this.log('info', `controller: placed ${missing.length} partitions of ${topic.name}: ${missing.map((i) => `${i}->[${lists[i]!.join(',')}]`).join(' ')}`, { topic: topic.name });
    }

    const orphans: PartitionKey[] = [...view.partitions.keys()].filter((key) => {
      const { topic, partition } = parsePartitionKey(key);
      const record = view.topics.get(topic);
      return record === undefined || partition >= record.partitions;
    });
    if (orphans.length > 0) {
      const writes = orphans.map((key) => {
        const { topic, partition } = parsePartitionKey(key);
        return { key: this.keys.partition(topic, partition), value: null };
      });
      await this.port.txn([guard], writes);
      wrote = true;
    }

    const liveIds = new Set(live.map((b) => b.nodeId));
    if (view.placementRequest !== null) wrote = (await this.startMoves(view, live, guard)) || wrote;
    else if (this.autoReplaceDeadBrokersMs > 0) wrote = (await this.replaceDeadBrokers(view, liveIds, guard)) || wrote;
    // Moves whose new replicas all joined the ISR: the partition takes its target replicas.
    for (const [key, state] of view.partitions) {
      if (state.targetReplicas === undefined) continue;
      const after = completeMove(state, liveIds);
      if (after === undefined) continue;
      const { topic, partition } = parsePartitionKey(key);
      const etcdKey = this.keys.partition(topic, partition);
      const { succeeded } = await this.port.txn([guard, { key: etcdKey, target: 'mod', revision: state.version }], [{ key: etcdKey, value: encodeRecord(partitionStateRecord(after)) }]);
      wrote = true;
      if (succeeded) this.log('info', `controller: ${topic}/${partition}: moved, replicas [${state.replicas.join(', ')}] -> [${after.replicas.join(', ')}], leader ${after.leader} (epoch ${after.leaderEpoch})`, { topic, partition });
    }
    const policy: ElectionPolicy = { uncleanLeaderElection: (topic) => view.topics.get(topic)?.config.uncleanLeaderElection === 1 };
    const tracked = new Map([...view.partitions].filter(([key]) => !orphans.includes(key)));
    for (const change of reconcile({ liveBrokers: liveIds, partitions: tracked }, policy)) {
      const key = this.keys.partition(change.topic, change.partition);
      const { succeeded } = await this.port.txn([guard, { key, target: 'mod', revision: change.before.version }], [{ key, value: encodeRecord(partitionStateRecord(change.after)) }]);
      wrote = true;
      if (!succeeded) continue;
      const { before, after } = change;
      const what = `${change.topic}/${change.partition}: ${change.reason}: leader ${before.leader} -> ${after.leader} (epoch ${after.leaderEpoch}), ISR [${before.isr.join(', ')}] -> [${after.isr.join(', ')}]`;
      if (change.mayLoseData) this.log('error', `controller: ${what}; unclean election: batches acknowledged by the old ISR may be missing`, { topic: change.topic, partition: change.partition, condition: 'unclean_election' });
      else this.log(after.leader === -1 ? 'error' : 'info', `controller: ${what}${after.leader === -1 ? '; offline until an ISR member comes back' : ''}`, { topic: change.topic, partition: change.partition });
    }
    return wrote;
  }

  /**
   * Takes up an operator's request: decommission N (N gets no replicas, now or later) or rebalance
   * (over the live brokers not decommissioned). Placement keeps what it can, so only the share of
   * the brokers that changed moves; each moving partition starts its move (startMove), and the
   * request is removed in the same guarded way. A topic with a move under way is left as it is.
   */
  private async startMoves(view: MetadataView, live: readonly LiveBroker[], guard: EtcdCompare): Promise<boolean> {
    const request = view.placementRequest!;
    const excluded = new Set(view.decommissioned.brokers);
    if (request.action === 'decommission') excluded.add(request.brokerId);
    const brokers = live.filter((b) => !excluded.has(b.nodeId)).map((b) => (b.rack === null ? { nodeId: b.nodeId } : { nodeId: b.nodeId, rack: b.rack }));
    let moves = 0;
    for (const topic of view.topics.values()) {
      const states = Array.from({ length: topic.partitions }, (_, i) => view.partitions.get(partitionKey(topic.name, i)));
      if (states.some((state) => state === undefined || state.targetReplicas !== undefined)) continue;
      if (brokers.length < topic.replicationFactor) {
        this.log('warn', `controller: cannot move ${topic.name}: it needs ${topic.replicationFactor} brokers, ${brokers.length} would be left`, { topic: topic.name });
        continue;
      }
      const lists = placeReplicas({ brokers, topic: topic.name, partitions: topic.partitions, replicationFactor: topic.replicationFactor, current: states.map((state) => state!.replicas) });
      for (const [index, state] of states.entries()) {
        const after = startMove(state!, lists[index]!);
        if (after === undefined) continue;
        const key = this.keys.partition(topic.name, index);
        const { succeeded } = await this.port.txn([guard, { key, target: 'mod', revision: state!.version }], [{ key, value: encodeRecord(partitionStateRecord(after)) }]);
        if (succeeded) {
          moves++;
          this.log('info', `controller: ${topic.name}/${index}: moving [${state!.replicas.join(', ')}] -> [${lists[index]!.join(', ')}] (${request.action})`, { topic: topic.name, partition: index });
        }
      }
    }
    const writes: EtcdWrite[] = [{ key: this.keys.placementRequest, value: null }];
    if (request.action === 'decommission') writes.push({ key: this.keys.decommissioned, value: encodeRecord({ brokers: [...excluded].sort((a, b) => a - b) }) });
    await this.port.txn([guard, { key: this.keys.placementRequest, target: 'mod', revision: request.version }], writes);
    this.log('info', `controller: ${request.action}${request.action === 'decommission' ? ` of broker ${request.brokerId}` : ''}: ${moves} partitions moving`, {});
    return true;
  }

  /** Asks for a rebalance once a broker holding replicas has been dead for autoReplaceDeadBrokersMs. */
  private async replaceDeadBrokers(view: MetadataView, liveIds: ReadonlySet<number>, guard: EtcdCompare): Promise<boolean> {
    const nowMs = Date.now();
    const holders = new Set<number>();
    for (const state of view.partitions.values()) for (const id of state.replicas) holders.add(id);
    for (const id of [...this.deadSince.keys()]) if (liveIds.has(id) || !holders.has(id)) this.deadSince.delete(id);
    for (const id of holders) if (!liveIds.has(id) && !this.deadSince.has(id)) this.deadSince.set(id, nowMs);
    if (this.deadSince.size === 0) return false;
    const due = [...this.deadSince].filter(([, sinceMs]) => nowMs - sinceMs >= this.autoReplaceDeadBrokersMs).map(([id]) => id);
    if (due.length === 0) {
      // Look again when the first one is due (nothing else may change meanwhile).
      const nextMs = Math.min(...this.deadSince.values()) + this.autoReplaceDeadBrokersMs - nowMs;
      if (this.autoReplaceTimer !== null) clearTimeout(this.autoReplaceTimer);
      this.autoReplaceTimer = setTimeout(() => this.schedule(), Math.max(10, nextMs));
      this.autoReplaceTimer.unref?.();
      return false;
    }
    const key = this.keys.placementRequest;
    const { succeeded } = await this.port.txn([guard, { key, target: 'create', revision: 0 }], [{ key, value: encodeRecord({ action: 'rebalance', brokerId: -1, requestedAtMs: nowMs }) }]);
    if (succeeded) {
      this.log('warn', `controller: broker(s) ${due.join(', ')} dead for over ${this.autoReplaceDeadBrokersMs} ms (autoReplaceDeadBrokersMs): re-creating their replicas on live brokers`, { brokers: due });
      for (const id of due) this.deadSince.delete(id);
    }
    return true;
  }

  close(): void {
    this.closed = true;
    if (this.autoReplaceTimer !== null) clearTimeout(this.autoReplaceTimer);
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
  }
}
