// Compiling and running a guest: guest bytes are checked, metered (with the
// cache) and compiled here; the run itself is instance.ts.
//
// compileGuest is synchronous, so on a cache miss it needs the metering pass
// (binaryen, seconds to import) already loaded. Importing this module loads it,
// as a static import would, unless the process said beforehand that it
// compiles through compileGuestAsync (compile.ts) or calls loadMeteringPass
// first: the command line does (host/cli/ftvm.mjs), so that `ftvm run` of a
// guest already in the cache never loads binaryen.

import { cacheKey, compileModule, lookup, resolve, type MeterOptions } from '../meter/cache.ts';
import { GuestLoadError, runModule, type RunOptions, type RunResult } from './instance.ts';
import { checkGuest } from './compile.ts';

export * from './instance.ts';

/** The global symbol that, set to true before this module is imported, defers loading the metering pass. */
export const DEFER_METERING_PASS = Symbol.for('ftvm.deferMeteringPass');

let pass: typeof import('../meter/index.ts') | null = null;

/** Loads the metering pass (binaryen; seconds of CPU the first time, nothing after) so compileGuest can meter. */
export async function loadMeteringPass(): Promise<void> {
  pass ??= await import('../meter/index.ts');
}

if ((globalThis as Record<symbol, unknown>)[DEFER_METERING_PASS] !== true) await loadMeteringPass();

/**
 * Compiles a guest as ftvm will run it (imports checked, metered unless
 * variant 'plain'). Throws GuestLoadError (the codes of checkGuest), MeterError
 * from the pass, or GuestLoadError FTVM_ERR_PASS_NOT_LOADED when the pass was
 * deferred (see above), not loaded since, and the guest is not in the cache.
 */
export function compileGuest(bytes: Uint8Array, meterOptions: MeterOptions = {}): WebAssembly.Module {
  checkGuest(bytes);
  if (!pass) {
    const hit = lookup(cacheKey(bytes, resolve(meterOptions)), meterOptions.cacheDir);
    if (hit) return compileModule(hit);
    throw new GuestLoadError(
      'FTVM_ERR_PASS_NOT_LOADED',
      'the guest is not in the metering cache and the metering pass is not loaded (use compileGuestAsync, or await loadMeteringPass() first)',
    );
  }
  const { binary } = pass.meter(bytes, meterOptions);
  return pass.compileModule(binary);
}

/** Runs a WASI command guest (bytes are compiled first, see compileGuest) to its end on the current thread. */
export function runGuest(bytes: Uint8Array | WebAssembly.Module, opts: RunOptions = {}): RunResult {
  return runModule(bytes instanceof WebAssembly.Module ? bytes : compileGuest(bytes, opts.meter), opts);
}
