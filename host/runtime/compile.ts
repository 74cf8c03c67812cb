// Compiling a guest without loading binaryen when the metered module is
// already cached (or handed over by the primary's host): what a host daemon
// uses, so that it starts, and makes backups, in milliseconds.

import { cacheKey, compileModule, lookup, resolve, store, type MeterOptions } from '../meter/cache.ts';
import { MeterError } from '../meter/errors.ts';
import { checkExports, checkImports, GuestLoadError } from './instance.ts';

export interface Compiled {
  /** the metered module, as bytes (to hand to another host) and compiled */
  metered: Uint8Array;
  module: WebAssembly.Module;
}

/**
 * Checks that `bytes` is a module ftvm can run: valid (else
 * FTVM_ERR_INVALID_MODULE), importing only what ftvm provides (else
 * FTVM_ERR_UNSUPPORTED_IMPORT), and exporting an entry ftvm can start (else
 * FTVM_ERR_NO_ENTRY, see checkExports), as GuestLoadError. It runs before any
 * metering and never loads binaryen: one decode and one (lazy) compile, a
 * fraction of a second even for a 20 MB module.
 */
export function checkGuest(bytes: Uint8Array): void {
  let module: WebAssembly.Module;
  try {
    module = compileModule(bytes);
  } catch (err) {
    throw new GuestLoadError('FTVM_ERR_INVALID_MODULE', `not a valid WebAssembly module: ${(err as Error).message}`);
  }
  checkImports(module);
  checkExports(module);
}

/**
 * Checks a guest (as checkGuest) and meters it, loading the pass only when
 * the cache does not have it. The pass runs on a metering thread of its own
 * (see meter/thread.ts: a native stack deep enough for binaryen on modules
 * nested thousands deep), or, with `onThisThread`, here: for a caller that
 * already is such a thread (host/cluster/meter-worker.ts). Rejects with
 * GuestLoadError (FTVM_ERR_INVALID_MODULE, FTVM_ERR_UNSUPPORTED_IMPORT, or a
 * MeterError's code: the module is refused), or an Error when metering
 * itself failed.
 */
export async function compileGuestAsync(bytes: Uint8Array, opts: MeterOptions = {}, onThisThread = false): Promise<Compiled> {
  checkGuest(bytes);
  const key = cacheKey(bytes, resolve(opts));
  const hit = lookup(key, opts.cacheDir);
  if (hit) return { metered: hit, module: compileModule(hit) };
  try {
    let binary: Uint8Array;
    if (onThisThread) {
      const { meter } = await import('../meter/index.ts');
      binary = meter(bytes, opts).binary;
    } else {
      const { meterOnThread } = await import('../meter/thread.ts');
      binary = await meterOnThread(bytes, opts);
      // the thread stored it on disk (unless cacheDir is null); this thread remembers it too
      store(key, binary, null);
    }
    return { metered: binary, module: compileModule(binary) };
  } catch (err) {
    if (err instanceof MeterError) throw new GuestLoadError(err.code, err.message);
    throw err;
  }
}

/** A metered module received from another host of the cluster. */
export function compileMetered(metered: Uint8Array): Compiled {
  return { metered, module: compileModule(metered) };
}
