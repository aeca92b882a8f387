/**
 * Moving replicas (controller-logic.ts startMove / completeMove): examples, and a model run where
 * random moves, ISR changes and broker deaths interleave. The invariants: the state keeps the
 * controller's rules at every step; while a move runs every old replica stays a replica (the
 * replication factor never drops); a move completes only with every target in the ISR, so the
 * new replica set holds everything the ISR held; a leader change is a clean one (to an ISR member,
 * epoch + 1).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { completeMove, partitionStateProblem, reconcilePartition, startMove, type PartitionState } from '../../src/cluster/controller-logic.js';

const base: PartitionState = { replicas: [1, 2, 3], leader: 1, leaderEpoch: 4, partitionEpoch: 9, isr: [1, 2, 3], version: 77 };

describe('moving replicas', () => {
  it('starts a move: the new brokers join after the old ones, the target is kept, nothing else changes', () => {
    expect(startMove(base, [4, 2, 3])).toEqual({ ...base, replicas: [1, 2, 3, 4], partitionEpoch: 10, targetReplicas: [4, 2, 3] });
    expect(startMove(base, [1, 2, 3])).toBeUndefined();
    expect(startMove({ ...base, replicas: [1, 2, 3, 4], targetReplicas: [4, 2, 3] }, [5, 2, 3])).toBeUndefined();
  });

  it('completes only once every target is in the ISR; a leaving leader hands over to a target in the ISR (epoch + 1)', () => {
    const moving: PartitionState = { ...base, replicas: [1, 2, 3, 4], partitionEpoch: 10, targetReplicas: [4, 2, 3] };
    expect(completeMove(moving, new Set([1, 2, 3, 4]))).toBeUndefined();
    const caughtUp = { ...moving, isr: [1, 2, 3, 4] };
    expect(completeMove(caughtUp, new Set([1, 2, 3, 4]))).toEqual({ replicas: [4, 2, 3], leader: 4, leaderEpoch: 5, partitionEpoch: 11, isr: [4, 2, 3], version: 77 });
    // A leader that stays keeps its epoch.
    const staying = { ...caughtUp, leader: 2 };
    expect(completeMove(staying, new Set([1, 2, 3, 4]))).toMatchObject({ leader: 2, leaderEpoch: 4, replicas: [4, 2, 3] });
    // No live target in the ISR to lead: wait.
    expect(completeMove(caughtUp, new Set([1]))).toBeUndefined();
  });

  it('model: random moves, ISR changes and deaths keep the rules, never drop an old replica mid-move, and finish with the ISR holding the data', () => {
    const brokers = [1, 2, 3, 4, 5];
    type Step = { kind: 'move'; target: number[] } | { kind: 'join'; id: number } | { kind: 'die'; id: number } | { kind: 'return'; id: number } | { kind: 'complete' };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.shuffledSubarray(brokers, { minLength: 3, maxLength: 3 }).map((target) => ({ kind: 'move' as const, target })),
      fc.constantFrom(...brokers).map((id) => ({ kind: 'join' as const, id })),
      fc.constantFrom(...brokers).map((id) => ({ kind: 'die' as const, id })),
      fc.constantFrom(...brokers).map((id) => ({ kind: 'return' as const, id })),
      fc.constant({ kind: 'complete' as const }),
    );
    fc.assert(fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
      let state: PartitionState = base;
      const live = new Set(brokers);
      for (const s of steps) {
        const before = state;
        if (s.kind === 'move') state = startMove(state, s.target) ?? state;
        else if (s.kind === 'join') {
          // The leader adds a live replica that caught up (replica-tracker.ts decides when).
          if (state.leader !== -1 && live.has(s.id) && state.replicas.includes(s.id) && !state.isr.includes(s.id)) state = { ...state, isr: [...state.isr, s.id], partitionEpoch: state.partitionEpoch + 1 };
        } else if (s.kind === 'die' || s.kind === 'return') {
          if (s.kind === 'die') live.delete(s.id);
          else live.add(s.id);
          state = reconcilePartition(state, live, false)?.after ?? state;
        } else {
          const after = completeMove(state, live);
          if (after !== undefined) {
            // Everything the ISR held is on the new replica set: every target was an ISR member.
            expect(before.targetReplicas!.every((id) => before.isr.includes(id))).toBe(true);
            expect(after.replicas).toEqual(before.targetReplicas);
            expect(after.isr.every((id) => before.isr.includes(id))).toBe(true);
            if (after.leader !== before.leader) expect(after.leaderEpoch).toBe(before.leaderEpoch + 1);
            state = after;
          }
        }
        expect(partitionStateProblem(state)).toBeUndefined();
        // Mid-move, the old replicas are all still replicas: the factor never drops.
        if (before.targetReplicas !== undefined && state.targetReplicas !== undefined) expect(before.replicas.every((id) => state.replicas.includes(id))).toBe(true);
        if (state.leader !== -1) expect(state.isr).toContain(state.leader);
      }
    }), { numRuns: 300 });
  });
});
