// Compiling a guest without loading binaryen when the metered module is
// already cached (or handed over by the primary's host): what a host daemon
// uses, so that it starts, and makes backups, in milliseconds.

import { cacheKey, compileModule, lookup, resolve, type MeterOptions } from '../meter/cache.ts';
import { MeterError } from '../meter/errors.ts';
import { checkImports, GuestLoadError } from './instance.ts';

export interface Compiled {
  /** the metered module, as bytes (to hand to another host) and compiled */
  metered: Uint8Array;
  module: WebAssembly.Module;
}

/**
 * Checks that `bytes` is a module ftvm can run: valid (else
 * FTVM_ERR_INVALID_MODULE), and importing only what ftvm provides (else
 * FTVM_ERR_UNSUPPORTED_IMPORT), as GuestLoadError. It runs before any
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
}

/** Checks a guest and meters it, loading the pass only when the cache does not have it. */
export async function compileGuestAsync(bytes: Uint8Array, opts: MeterOptions = {}): Promise<Compiled> {
  checkGuest(bytes);
  const hit = lookup(cacheKey(bytes, resolve(opts)), opts.cacheDir);
  if (hit) return { metered: hit, module: compileModule(hit) };
  const { meter } = await import('../meter/index.ts');
  try {
    const { binary } = meter(bytes, opts);
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
