// A VM replica's place in the FT protocol, and the moves between places the
// protocol allows. A host asserts every move: a replica in a state the
// protocol cannot reach is a bug, and going on from it could release an
// output twice or lose one, so a forbidden move stops the host
// (FTVM_ERR_INVARIANT, host/assert.ts).
//
//   following ──(its primary is dead)──> going-live ──(won gen+1)──> alone
//   live ──(its backup is dead)──> going-alone ──(won gen+1)──> alone
//   going-live ──(its primary heard again, the arbiter not reached yet)──> following
//   going-alone ──(its backup heard again, the arbiter not reached yet)──> live
//   alone ──(snapshot asked for)──> recreating-backup ──(shipped)──> live
//   recreating-backup ──(shipping failed)──> alone
//   live ──(planned switch asked for)──> handing-over ──(switch called off)──> live
//   handing-over ──(its backup is dead, or the switch is not seen through)──> going-alone
//   any ──> stopped (lost the arbiter, test failover, deleted, replaced, failed)
//
// `handing-over` is a primary paused for a planned switch (live migration):
// its backup gets the whole log, then goes live; the paused primary takes no
// input and is stopped once the next generation runs.
// `live` is a primary with a backup (being made from boot, or following);
// `alone` a primary with none. A primary starts live, or alone when no other
// host is up; a backup starts following.

import { invariant } from '../assert.ts';

/** The states; see the file's head. */
export type ReplicaState = 'following' | 'going-live' | 'live' | 'going-alone' | 'alone' | 'recreating-backup' | 'handing-over' | 'stopped';

const NEXT: Record<ReplicaState, readonly ReplicaState[]> = {
  following: ['going-live', 'stopped'],
  'going-live': ['alone', 'following', 'stopped'],
  live: ['going-alone', 'handing-over', 'stopped'],
  'going-alone': ['alone', 'live', 'stopped'],
  alone: ['recreating-backup', 'stopped'],
  'recreating-backup': ['live', 'alone', 'stopped'],
  'handing-over': ['live', 'going-alone', 'stopped'],
  stopped: [],
};

/** Whether a replica may move from `from` to `to`. */
export function canTransition(from: ReplicaState, to: ReplicaState): boolean {
  return NEXT[from].includes(to);
}

/**
 * Asserts that VM `vm`'s replica may move from `from` to `to`; when it may
 * not, the process stops with FTVM_ERR_INVARIANT (host/assert.ts) naming the
 * VM and the move. Returns only when the move is allowed.
 */
export function assertTransition(vm: string, from: ReplicaState, to: ReplicaState): void {
  invariant(canTransition(from, to), () => `${vm}: a replica cannot go from ${from} to ${to}`);
}
