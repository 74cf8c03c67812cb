// The metering front door: validate a guest, instrument it, optimize it, and
// cache the result by content hash so a large guest is transformed once.

import binaryen from 'binaryen';
import { instrumentModule, type Strategy } from './instrument.ts';
import { cacheKey, lookup, resolve, store, validateModule, type MeterOptions, type MeteredModule, type Resolved } from './cache.ts';

export { MeterError } from './errors.ts';
export * from './instrument.ts';
export * from './cache.ts';

/** The imports Asyncify must be able to unwind through when limited to blocking ones. */
export const BLOCKING_IMPORTS = [
  'ftvm.check',
  'wasi_snapshot_preview1.fd_read',
  'wasi_snapshot_preview1.poll_oneoff',
  'wasi_snapshot_preview1.sock_recv',
  'wasi_snapshot_preview1.sock_accept',
];

/** Features an instrumented module may use once it is emitted. */
export const EMIT_FEATURES =
  binaryen.Features.MutableGlobals |
  binaryen.Features.NontrappingFPToInt |
  binaryen.Features.SIMD128 |
  binaryen.Features.BulkMemory |
  binaryen.Features.BulkMemoryOpt |
  binaryen.Features.SignExt |
  binaryen.Features.ReferenceTypes |
  binaryen.Features.Multivalue |
  binaryen.Features.ExtendedConst |
  binaryen.Features.CallIndirectOverlong;

/** Instrument (or, for 'plain', only round-trip) a module, using the cache. */
export function meter(bytes: Uint8Array, options: MeterOptions = {}): MeteredModule {
  const r = resolve(options);
  const key = cacheKey(bytes, r);
  const hit = lookup(key, options.cacheDir);
  if (hit) return { binary: hit, key, cached: true };
  const binary = transform(bytes, r);
  store(key, binary, options.cacheDir);
  return { binary, key, cached: false };
}

function transform(bytes: Uint8Array, r: Resolved): Uint8Array {
  validateModule(bytes);
  const module = (binaryen.readBinary as (b: Uint8Array, f?: number) => binaryen.Module)(bytes, binaryen.Features.All);
  try {
    if (r.variant !== 'plain') {
      const strategy: Strategy = r.variant;
      instrumentModule(module, {
        strategy,
        depthLimit: r.depthLimit,
        memoryLimitPages: r.memoryLimitPages,
        canonicalizeNaNs: r.canonicalizeNaNs,
      });
    }
    module.setFeatures(EMIT_FEATURES);
    if (r.optimize) {
      binaryen.setOptimizeLevel(2);
      binaryen.setShrinkLevel(0);
      module.optimize();
    }
    if (r.asyncify) {
      // Without a list, Asyncify assumes every import may unwind.
      binaryen.clearPassArguments();
      if (r.asyncify === 'blocking') binaryen.setPassArgument('asyncify-imports', BLOCKING_IMPORTS.join(','));
      module.runPasses(['asyncify']);
      binaryen.clearPassArguments();
      if (r.optimize) module.optimize();
    }
    const out = module.emitBinary();
    return out;
  } finally {
    module.dispose();
  }
}
