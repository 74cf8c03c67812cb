// The moves a replica's state may make, and the ones it may not.
import { describe, expect, it } from 'vitest';
import { assertTransition, canTransition, ReplicaStateError, type ReplicaState } from '../host/ft/replica-state.ts';

const ALL: ReplicaState[] = ['following', 'going-live', 'live', 'going-alone', 'alone', 'recreating-backup', 'stopped'];
const ALLOWED = new Set([
  'following>going-live',
  'going-live>alone',
  'live>going-alone',
  'going-alone>alone',
  'alone>recreating-backup',
  'recreating-backup>live',
  'recreating-backup>alone',
  ...ALL.filter((s) => s !== 'stopped').map((s) => `${s}>stopped`),
]);

describe('replica states', () => {
  it('allows exactly the protocol moves', () => {
    for (const from of ALL) for (const to of ALL) expect(canTransition(from, to), `${from} > ${to}`).toBe(ALLOWED.has(`${from}>${to}`));
  });

  it('a backup goes live only through a claim, and nothing leaves stopped', () => {
    expect(() => assertTransition('v', 'following', 'alone')).toThrow(ReplicaStateError);
    expect(() => assertTransition('v', 'following', 'live')).toThrow(/v: a replica cannot go from following to live/);
    expect(() => assertTransition('v', 'stopped', 'following')).toThrow(ReplicaStateError);
    expect(() => assertTransition('v', 'live', 'recreating-backup')).toThrow(expect.objectContaining({ code: 'FTVM_ERR_STATE' }));
    expect(() => assertTransition('v', 'going-live', 'alone')).not.toThrow();
  });
});
