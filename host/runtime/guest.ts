// Compiling and running a guest: guest bytes are checked, metered (with the
// cache) and compiled here; the run itself is instance.ts.

import { compileModule, meter, type MeterOptions } from '../meter/index.ts';
import { runModule, type RunOptions, type RunResult } from './instance.ts';
import { checkGuest } from './compile.ts';

export * from './instance.ts';

/** Compiles a guest as ftvm will run it (imports checked, metered unless variant 'plain'). */
export function compileGuest(bytes: Uint8Array, meterOptions: MeterOptions = {}): WebAssembly.Module {
  checkGuest(bytes);
  const { binary } = meter(bytes, meterOptions);
  return compileModule(binary);
}

/** Runs a WASI command guest (bytes are compiled first) to its end on the current thread. */
export function runGuest(bytes: Uint8Array | WebAssembly.Module, opts: RunOptions = {}): RunResult {
  return runModule(bytes instanceof WebAssembly.Module ? bytes : compileGuest(bytes, opts.meter), opts);
}
