// What the campaign's clients record, and the checker that reads it.
//
// Each operation a logical client (a Jepsen "process") performs on the kv
// sample is one Op: invoked at `invokeMs`, completed at `completeMs` with
// `status` 'ok' (the VM answered), 'fail' (refused with a code that
// guarantees it was not applied; workload.ts says which) or 'unknown' (no
// answer in time: it may have been applied at any moment after its invoke, so
// `completeMs` is null). A read's `value` is what it read (null: NOTFOUND),
// a write's what it wrote (unique per write), a delete's null.
//
// The checker, host/chaos/linearizability.ts, decides per key whether some
// order of the operations, each taking effect between its invoke and its
// completion, is a valid history of a register (Wing and Gong's search with
// P-compositionality, bounded in time: 'unknown' when the bound is reached).

import { FtvmError } from '../errors.ts';

/** One operation of the history (times in ms since the campaign's origin). */
export interface Op {
  process: number;
  key: string;
  f: 'write' | 'read' | 'delete';
  value: string | null;
  invokeMs: number;
  completeMs: number | null;
  status: 'ok' | 'fail' | 'unknown';
}

/** What the checker says of a history: the first key it found not linearizable (with the ops it names), or the keys it could not decide in time. */
export interface CheckResult {
  result: 'ok' | 'violation' | 'unknown';
  key?: string;
  ops?: Op[];
  unknownKeys?: string[];
  explored: number;
  ms: number;
}

/** The checker's signature (host/chaos/linearizability.ts, checkLinearizable). */
export type CheckLinearizable = (history: readonly Op[], opts?: { timeoutMs?: number; initial?: string | null }) => CheckResult;

/**
 * Loads the linearizability checker (host/chaos/linearizability.ts, or its
 * built form beside this module). It is loaded by URL, not imported, so this
 * module builds and type-checks on its own; FTVM_ERR_INTERNAL when it is missing.
 */
export async function loadChecker(): Promise<CheckLinearizable> {
  const url = new URL(import.meta.url.endsWith('.ts') ? './linearizability.ts' : './linearizability.js', import.meta.url);
  try {
    const mod = (await import(url.href)) as { checkLinearizable?: CheckLinearizable };
    if (typeof mod.checkLinearizable !== 'function') throw new Error('it exports no checkLinearizable');
    return mod.checkLinearizable;
  } catch (e) {
    throw new FtvmError('FTVM_ERR_INTERNAL', `the linearizability checker (${url.pathname}) cannot be loaded: ${(e as Error).message}`);
  }
}
