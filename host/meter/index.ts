// The metering front door: validate a guest, instrument it, optimize it, and
// cache the result by content hash so a large guest is transformed once.

import binaryen from 'binaryen';
import { instrumentModule, weighFrames, type Strategy } from './instrument.ts';
import { cacheKey, lookup, resolve, store, validateModule, type MeterOptions, type MeteredModule, type Resolved } from './cache.ts';
import type { MeterProgress } from './progress.ts';
import { MeterError } from './errors.ts';

export { MeterError } from './errors.ts';
export * from './instrument.ts';
export * from './cache.ts';
export * from './progress.ts';

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

/**
 * The largest function (in binaryen expression nodes) the optimizer may
 * inline into its only caller. binaryen's default has no bound; a large
 * function inlined into a recursive caller makes every level of the
 * recursion carry the callee's locals, so the guest would run out of depth
 * budget (or, with weights taken before inlining, of native stack) where an
 * engine running the original module would not.
 */
export const ONE_CALLER_INLINE_MAX_NODES = 200;

/**
 * The optimizer passes run on an instrumented module, in order. binaryen's
 * full -O2 pipeline took 16 CPU seconds per MB of code (228 s on esbuild's
 * 13.8 MB) and grows faster than linearly with nesting depth, while the
 * guests ran no faster for it than with this short list (measured with the
 * compute samples side by side; V8's optimizing tier does the rest): drop the
 * wrappers nothing uses, inline small functions, and fold the counter
 * arithmetic and the locals the instrumentation adds.
 */
export const OPTIMIZE_PASSES: readonly string[] = [
  'duplicate-function-elimination',
  'remove-unused-module-elements',
  'inlining',
  'simplify-locals-nostructure',
  'vacuum',
  'remove-unused-brs',
  'remove-unused-names',
  'merge-blocks',
  'optimize-instructions',
  'precompute',
  'simplify-locals',
  'vacuum',
  'coalesce-locals',
  'reorder-locals',
  'remove-unused-brs',
  'merge-blocks',
  'vacuum',
];

/** Instrument (or, for 'plain', only round-trip) a module, using the cache. */
export function meter(bytes: Uint8Array, options: MeterOptions = {}): MeteredModule {
  const r = resolve(options);
  const key = cacheKey(bytes, r);
  const hit = lookup(key, options.cacheDir);
  if (hit) return { binary: hit, key, cached: true };
  const { binary } = transform(bytes, r, options.onProgress);
  store(key, binary, options.cacheDir);
  return { binary, key, cached: false };
}

/** What a fresh (uncached) metering produced, for tests and diagnostics. */
export interface MeterReport {
  binary: Uint8Array;
  /** frame weight (8-byte slots) of each function of the emitted module that takes part in the depth budget, by name */
  weights: Map<string, number>;
  /** how many places in each such function add its weight (more than one where the optimizer inlined a non-leaf) */
  sites: Map<string, number>;
}

/** Meters `bytes` without any cache and reports the frame weights it chose. Errors as `meter`. */
export function meterWithReport(bytes: Uint8Array, options: MeterOptions = {}): MeterReport {
  return transform(bytes, resolve(options), options.onProgress);
}

function transform(bytes: Uint8Array, r: Resolved, onProgress: ((p: MeterProgress) => void) | undefined): MeterReport {
  try {
    return transformOnce(bytes, r, onProgress);
  } catch (err) {
    // binaryen's C++ recurses over expression trees (blocks excepted) and
    // runs on this thread's stack: a nesting thousands deep exhausts it.
    if (err instanceof RangeError && /call stack/i.test(err.message)) {
      throw new MeterError(
        'FTVM_ERR_MODULE_TOO_DEEP',
        'the module nests expressions (calls, ifs, loops or operators) deeper than binaryen can follow on this thread\'s stack',
      );
    }
    throw err;
  }
}

function transformOnce(bytes: Uint8Array, r: Resolved, onProgress: ((p: MeterProgress) => void) | undefined): MeterReport {
  const started = performance.now();
  const report = (p: Omit<MeterProgress, 'bytes' | 'elapsed_ms'>): void =>
    onProgress?.({ ...p, bytes: bytes.length, elapsed_ms: performance.now() - started });
  validateModule(bytes);
  report({ step: 'parse' });
  const module = (binaryen.readBinary as (b: Uint8Array, f?: number) => binaryen.Module)(bytes, binaryen.Features.All);
  try {
    let frames = { weights: new Map<string, number>(), sites: new Map<string, number>() };
    if (r.variant !== 'plain') {
      const strategy: Strategy = r.variant;
      report({ step: 'instrument', done: 0, total: 0 });
      instrumentModule(
        module,
        {
          strategy,
          depthLimit: r.depthLimit,
          memoryLimitPages: r.memoryLimitPages,
          canonicalizeNaNs: r.canonicalizeNaNs,
        },
        (done, total) => report({ step: 'instrument', done, total }),
      );
    }
    module.setFeatures(EMIT_FEATURES);
    const inline = binaryen.getOneCallerInlineMaxSize();
    binaryen.setOneCallerInlineMaxSize(ONE_CALLER_INLINE_MAX_NODES);
    try {
      binaryen.setOptimizeLevel(2);
      binaryen.setShrinkLevel(0);
      if (r.optimize) {
        report({ step: 'optimize' });
        module.runPasses([...OPTIMIZE_PASSES]);
      }
      if (r.asyncify) {
        // Without a list, Asyncify assumes every import may unwind.
        binaryen.clearPassArguments();
        if (r.asyncify === 'blocking') binaryen.setPassArgument('asyncify-imports', BLOCKING_IMPORTS.join(','));
        module.runPasses(['asyncify']);
        binaryen.clearPassArguments();
        if (r.optimize) module.runPasses([...OPTIMIZE_PASSES]);
      }
    } finally {
      binaryen.setOneCallerInlineMaxSize(inline);
    }
    // The frames are weighed last, as the engine will see them.
    if (r.variant === 'ftvm') {
      report({ step: 'weigh' });
      frames = weighFrames(module);
    }
    report({ step: 'emit' });
    const binary = module.emitBinary();
    report({ step: 'done' });
    return { binary, ...frames };
  } finally {
    module.dispose();
  }
}
