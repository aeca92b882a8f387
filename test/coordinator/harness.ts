import { expect } from 'vitest';
import { Coordinator, type CoordinatorOptions, type HeartbeatRequest, type HeartbeatResponse } from '../../src/coordinator/coordinator.js';
import type { GroupRecord } from '../../src/coordinator/records.js';
import type { TopicPartition, TopicsView } from '../../src/coordinator/types.js';

export class FakeTopics implements TopicsView {
  readonly counts = new Map<string, number>();
  constructor(initial: Record<string, number> = {}) {
    for (const [topic, count] of Object.entries(initial)) this.counts.set(topic, count);
  }
  partitionCount(topic: string): number | undefined {
    return this.counts.get(topic);
  }
}

export const tp = (topic: string, partition: number): TopicPartition => ({ topic, partition });
export const keys = (partitions: readonly TopicPartition[]): string[] => partitions.map((p) => `${p.topic}/${p.partition}`).sort();

/** A coordinator plus the log of every record it emitted, as the broker would persist it. */
export class Harness {
  readonly log: GroupRecord[] = [];
  readonly coordinator: Coordinator;
  nowMs = 1_000_000;

  constructor(
    readonly topics = new FakeTopics({ orders: 6 }),
    options: Partial<CoordinatorOptions> = {},
  ) {
    this.coordinator = new Coordinator({ topics, ...options });
  }

  heartbeat(request: Partial<HeartbeatRequest> & { memberId: string; memberEpoch: number }): HeartbeatResponse {
    const response = this.coordinator.heartbeat({ groupId: 'g', ...request }, this.nowMs);
    this.log.push(...response.records);
    this.expectSafe();
    return response;
  }

  join(memberId: string, extra: Partial<HeartbeatRequest> = {}): HeartbeatResponse {
    return this.heartbeat({ memberId, memberEpoch: 0, subscribedTopics: ['orders'], ownedPartitions: [], ...extra });
  }

  tick(): GroupRecord[] {
    const records = this.coordinator.tick(this.nowMs);
    this.log.push(...records);
    this.expectSafe();
    return records;
  }

  advance(ms: number): void {
    this.nowMs += ms;
  }

  /** The safety invariant: no partition is held (assigned or pending revocation) by two members. */
  expectSafe(groupId = 'g'): void {
    const groups = this.coordinator.listGroups().map((g) => g.groupId);
    if (!groups.includes(groupId)) return;
    const seen = new Map<string, string>();
    for (const member of this.coordinator.describeGroup(groupId).members) {
      for (const key of keys([...member.assigned, ...member.pendingRevocation])) {
        expect(seen.get(key), `${key} held by ${seen.get(key)} and ${member.memberId}`).toBeUndefined();
        seen.set(key, member.memberId);
      }
    }
  }

  member(memberId: string, groupId = 'g') {
    const member = this.coordinator.describeGroup(groupId).members.find((m) => m.memberId === memberId);
    expect(member, `member ${memberId}`).toBeDefined();
    return member!;
  }
}

/** A well-behaved client: reports what it owns, then adopts the assignment it is given. */
export class Client {
  memberEpoch = 0;
  owned: TopicPartition[] = [];
  constructor(
    readonly harness: Harness,
    readonly memberId: string,
    readonly subscribedTopics: string[] = ['orders'],
  ) {}

  join(extra: Partial<HeartbeatRequest> = {}): HeartbeatResponse {
    this.owned = [];
    const response = this.harness.join(this.memberId, { subscribedTopics: this.subscribedTopics, ...extra });
    this.adopt(response);
    return response;
  }

  beat(extra: Partial<HeartbeatRequest> = {}): HeartbeatResponse {
    const response = this.harness.heartbeat({ memberId: this.memberId, memberEpoch: this.memberEpoch, ownedPartitions: this.owned, ...extra });
    this.adopt(response);
    return response;
  }

  leave(): HeartbeatResponse {
    const response = this.harness.heartbeat({ memberId: this.memberId, memberEpoch: -1 });
    this.owned = [];
    return response;
  }

  private adopt(response: HeartbeatResponse): void {
    if (response.errorCode !== 0) return;
    this.memberEpoch = response.memberEpoch;
    this.owned = response.assignment;
  }
}

/** Heartbeats every client in turn until nothing changes (bounded). */
export function settle(clients: readonly Client[], rounds = 10): void {
  for (let round = 0; round < rounds; round += 1) for (const client of clients) client.beat();
}
