// Assertions that stop the process. A host whose state breaks an invariant of
// the protocol (a replica in a state it cannot reach, outputs held out of log
// order) must not go on: going on could release an output twice, lose one, or
// let two primaries speak (TigerBeetle's rule: a broken invariant stops the
// process rather than corrupting state). Refusals of bad input are not
// invariants: those get a clear error with a stable code and the host goes on.
//
// When an invariant does not hold, one line goes to stderr,
//   ftvm: FTVM_ERR_INVARIANT: <what does not hold>
// and the process exits with status INVARIANT_EXIT_STATUS at once (no
// handler runs, nothing more is sent). Called on a worker thread, it ends
// that thread only, with the same status.

import { writeSync } from 'node:fs';

/** The exit status of a process stopped by a broken invariant (EX_SOFTWARE of sysexits.h: an internal software error). */
export const INVARIANT_EXIT_STATUS = 70;

/**
 * Stops the process when `cond` is false (see the file's head):
 * writes `ftvm: FTVM_ERR_INVARIANT: <what>` on stderr and exits with
 * INVARIANT_EXIT_STATUS. `what` says what should have held; pass a function
 * when building the sentence costs something on a hot path (it is called
 * only when the invariant is broken). Never returns when `cond` is false.
 */
export function invariant(cond: unknown, what: string | (() => string)): asserts cond {
  if (cond) return;
  stopBroken(typeof what === 'function' ? what() : what);
}

function stopBroken(what: string): never {
  const line = `ftvm: FTVM_ERR_INVARIANT: ${what.replace(/\s+/g, ' ').trim()}\n`;
  try {
    // synchronous, so the line is out before the process ends
    writeSync(2, line);
  } catch {
    // stderr is gone: stop all the same
  }
  process.exit(INVARIANT_EXIT_STATUS);
}
