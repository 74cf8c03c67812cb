// The moves a replica's state may make, and the ones it may not.
import { describe, expect, it } from 'vitest';
import { assertTransition, canTransition, type ReplicaState } from '../host/ft/replica-state.ts';

const ALL: ReplicaState[] = ['following', 'going-live', 'live', 'going-alone', 'alone', 'recreating-backup', 'handing-over', 'stopped'];
const ALLOWED = new Set([
  'following>going-live',
  'going-live>alone',
  'live>going-alone',
  'going-alone>alone',
  // the silent partner heard again before the arbiter answered: the pair goes on
  'going-live>following',
  'going-alone>live',
  'alone>recreating-backup',
  'recreating-backup>live',
  'recreating-backup>alone',
  // a planned switch (live migration): called off, or its backup lost (or silent) while it paused
  'live>handing-over',
  'handing-over>live',
  'handing-over>going-alone',
  ...ALL.filter((s) => s !== 'stopped').map((s) => `${s}>stopped`),
]);

describe('replica states', () => {
  it('allows exactly the protocol moves', () => {
    for (const from of ALL) for (const to of ALL) expect(canTransition(from, to), `${from} > ${to}`).toBe(ALLOWED.has(`${from}>${to}`));
  });

  it('a backup goes live only through a claim, and nothing leaves stopped', () => {
    // (a forbidden move stops the process: test/ft.invariants.test.ts)
    expect(canTransition('following', 'alone')).toBe(false);
    expect(canTransition('following', 'live')).toBe(false);
    expect(canTransition('stopped', 'following')).toBe(false);
    expect(canTransition('live', 'recreating-backup')).toBe(false);
    // a paused primary never runs alone without a claim: its backup may be going live
    expect(canTransition('handing-over', 'alone')).toBe(false);
    expect(() => assertTransition('v', 'going-live', 'alone')).not.toThrow();
  });
});
