// A primary replica's log, as the tests of replicas on worker threads wire it by hand.
import { decodeFrame, EntryChecker, type LogEntry } from '../host/log/format.ts';
import type { ReplicaHandle } from '../host/cluster/replica-handle.ts';
import type { Output } from '../host/runtime/replay/engine.ts';

/**
 * Decodes a primary's frames in order (from entry `startSeq`) and forwards
 * them to `to()` when it gives a replica; returns every entry and output
 * seen so far (arrays that grow as frames come).
 */
export function stream(from: { h: ReplicaHandle }, to: () => ReplicaHandle | null, startSeq = 0): { entries: LogEntry[]; outputs: Output[] } {
  const check = new EntryChecker(startSeq);
  const entries: LogEntry[] = [];
  const outputs: Output[] = [];
  from.h.on('message', (m) => {
    if (m.t !== 'log') return;
    const got = decodeFrame(m.frame, check);
    entries.push(...got);
    outputs.push(...m.outputs);
    to()?.send({ t: 'entries', entries: got });
  });
  return { entries, outputs };
}
