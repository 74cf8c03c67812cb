// The metering pass on a thread of its own. binaryen's reader, optimizer and
// writer recurse in C++ over nested expressions, on the native stack of the
// thread that calls them (as wasm frames) and on binaryen's own stack in its
// linear memory. The main thread's native stack is V8's default (about
// 1 MB): a module whose ifs, calls or operators nest a few thousand deep
// exhausts it. A worker thread's native stack is what its creator asks for;
// METER_STACK_MB takes binaryen past 20,000 levels of every shape in
// test/meter.shapes.test.ts, where its own linear-memory stack becomes the
// limit. The host daemon's metering workers (host/cluster/meter-pool.ts) use
// the same size; `ftvm run`, `record` and `replay` meter through here.

import { Worker } from 'node:worker_threads';
import type { MeterOptions } from './cache.ts';
import { MeterError, type MeterErrorCode } from './errors.ts';
import type { MeterProgress } from './progress.ts';

/**
 * Native stack of a metering thread, in MiB. Reserved, not committed: the
 * pages are touched only as deep as binaryen recurses.
 */
export const METER_STACK_MB = 64;

/** The calling thread to a metering thread (as workerData): meter `bytes` with `opts`. */
export interface MeterThreadJob {
  bytes: Uint8Array;
  /** MeterOptions without onProgress (a function cannot cross threads) */
  opts: Omit<MeterOptions, 'onProgress'>;
}

/** A metering thread's messages: progress steps, then the metered module or why not. */
export type MeterThreadReply =
  | { t: 'progress'; p: MeterProgress }
  | { t: 'done'; binary: Uint8Array }
  | { t: 'error'; /** a MeterError's code, or null for any other failure */ code: MeterErrorCode | null; message: string };

/**
 * Meters `bytes` with `opts` (see `meter` in index.ts: same result, same
 * cache) on a fresh worker thread with a METER_STACK_MB native stack, which
 * ends with the job, so the memory binaryen took is given back at once.
 * `opts.onProgress` is called on this thread as the steps arrive.
 * Resolves to the metered binary. Rejects with MeterError (the module is
 * refused: FTVM_ERR_INVALID_MODULE, FTVM_ERR_UNSUPPORTED_FEATURE,
 * FTVM_ERR_MEMORY_LIMIT, FTVM_ERR_NAME_CLASH, FTVM_ERR_MODULE_TOO_DEEP), or
 * with an Error when the thread itself failed (out of memory, a bug).
 */
export function meterOnThread(bytes: Uint8Array, opts: MeterOptions = {}): Promise<Uint8Array> {
  const { onProgress, ...rest } = opts;
  const job: MeterThreadJob = { bytes, opts: rest };
  const worker = new Worker(new URL('./thread-entry.mjs', import.meta.url), {
    workerData: job,
    resourceLimits: { stackSizeMb: METER_STACK_MB },
  });
  return new Promise<Uint8Array>((resolve, reject) => {
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      f();
      void worker.terminate();
    };
    worker.on('message', (m: MeterThreadReply) => {
      if (m.t === 'progress') onProgress?.(m.p);
      else if (m.t === 'done') settle(() => resolve(m.binary));
      else settle(() => reject(m.code ? new MeterError(m.code, m.message) : new Error(`the metering thread failed: ${m.message}`)));
    });
    worker.on('error', (e) => settle(() => reject(new Error(`the metering thread failed: ${e.message}`))));
    worker.on('exit', (code) => settle(() => reject(new Error(`the metering thread ended (${code}) without an answer`))));
  });
}
