// Record and replay of a WASI command guest given as bytes: the guest is
// compiled (metered, through the cache) here, then replay/recorder.ts runs it
// on the engine.
// What the log holds and how a replay checks it is described there.

import { compileGuest } from './guest.ts';
import type { LogEntry } from '../log/format.ts';
import type { LogWriter } from '../log/writer.ts';
import { meterOptions } from './replay/core.ts';
import { recordModule, recordStart, replayModule, startOf, type RecordedRun, type RecordOptions, type ReplayedRun, type ReplayOptions } from './replay/recorder.ts';

export { CHUNK_BYTES, chunksOf, DivergenceError, interruptOf, LogIncompleteError, interruptPayload, meterOptions, moduleHash, stateDigest } from './replay/core.ts';
export { DEFAULT_DIGEST_EVERY, recordModule, recordStart, replayModule, startOf } from './replay/recorder.ts';
export type { RecordedRun, RecordOptions, ReplayedRun, ReplayOptions } from './replay/recorder.ts';

/**
 * Compiles `bytes` with the meter options `opts` gives (loading binaryen on
 * a metering-cache miss) and records it (see recordModule).
 */
export function recordGuest(bytes: Uint8Array, log: LogWriter, opts: RecordOptions): RecordedRun {
  const module = compileGuest(bytes, { ...meterOptions(recordStart(bytes, opts)), cacheDir: opts.meter?.cacheDir });
  return recordModule(bytes, module, log, opts);
}

/**
 * Compiles `bytes` with the meter options of the log's start entry and
 * replays the log (see replayModule); FTVM_ERR_DIVERGENCE on a mismatch.
 */
export function replayGuest(bytes: Uint8Array, logged: readonly LogEntry[], opts: ReplayOptions = {}): ReplayedRun {
  const start = startOf(logged.filter((e) => e.kind !== 'progress'));
  const module = compileGuest(bytes, { ...meterOptions(start), cacheDir: opts.cacheDir });
  return replayModule(bytes, module, logged, opts);
}
