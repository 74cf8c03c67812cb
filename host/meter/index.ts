// The metering front door: validate a guest, instrument it, optimize it, and
// cache the result by content hash so a large guest is transformed once.

import binaryen from 'binaryen';
import { instrumentModule, weighFrames, type Strategy } from './instrument.ts';
import { bodyShape } from './walk.ts';
import { cacheKey, lookup, resolve, store, validateModule, type MeterOptions, type MeteredModule, type Resolved } from './cache.ts';
import type { MeterProgress } from './progress.ts';
import { MeterError } from './errors.ts';
import { EXPORT_UNWIND_FRAME_BYTES, SNAPSHOT_POINT_IMPORTS } from './abi.ts';

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

/**
 * The imported functions of `module` Asyncify may unwind from in the
 * 'input-calls' mode, as "module.name" for binaryen's asyncify-imports: those
 * of SNAPSHOT_POINT_IMPORTS the module imports. Never ftvm.check: it is
 * reached from every loop, so letting it unwind would make every function on
 * a loop's call path pay for Asyncify (1.8x, measured by `ftvm bench meter`).
 * An empty list would let every import unwind, so a module with none of them
 * gets one name no module has: Asyncify then instruments nothing.
 */
export function snapshotPointImports(module: binaryen.Module): string[] {
  const out: string[] = [];
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const f = binaryen.getFunctionInfo(module.getFunctionByIndex(i));
    const name = `${f.module}.${f.base}`;
    if (f.module && SNAPSHOT_POINT_IMPORTS.includes(name)) out.push(name);
  }
  return out.length ? out.sort() : [NO_IMPORT];
}

/** Whether a module is a WASI command: it exports a `_start` function (checkExports decides the same way). */
function isCommand(module: binaryen.Module): boolean {
  for (let i = 0; i < module.getNumExports(); i++) {
    const e = binaryen.getExportInfo(module.getExportByIndex(i));
    if (e.name === '_start' && e.kind === binaryen.ExternalFunction) return true;
  }
  return false;
}

/** The global behind EXPORT_UNWIND_FRAME_BYTES. */
const G_UNWIND_FRAME = 'ftvm$unwind_frame_bytes';

/**
 * The most bytes Asyncify saves for one frame of any function of `module`
 * (as emitted: call it after the last pass): its params' and locals' values
 * (4, 8 or 16 bytes each) and its resume index (4). The unwinder adds it to
 * the depth count for the innermost frame, which the depth count leaves out
 * when it calls no guest function (runtime/unwind.ts).
 */
function largestSavedFrame(module: binaryen.Module): number {
  const bytesOf = (t: binaryen.Type): number => (t === binaryen.v128 ? 16 : t === binaryen.i64 || t === binaryen.f64 ? 8 : 4);
  let most = 0;
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const f = module.getFunctionByIndex(i);
    const info = binaryen.getFunctionInfo(f);
    if (!info.body) continue; // an import
    let bytes = 4;
    for (const t of binaryen.expandType(info.params)) bytes += bytesOf(t);
    for (const t of info.vars) bytes += bytesOf(t);
    if (bytes > most) most = bytes;
  }
  return most;
}

/** An import name no module has (see snapshotPointImports). */
const NO_IMPORT = 'ftvm.no_import';

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
 * arithmetic and the locals the instrumentation adds. MODULE_PASSES run on
 * the whole module, then FUNCTION_PASSES on each function within the budget
 * (OPTIMIZE_NODES_MAX, OPTIMIZE_DEPTH_MAX; see `optimize`).
 */
export const MODULE_PASSES: readonly string[] = ['duplicate-function-elimination', 'remove-unused-module-elements', 'inlining'];

/** The function-level passes of the optimizer (see MODULE_PASSES). */
export const FUNCTION_PASSES: readonly string[] = [
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

/** The whole list, for tools that time each pass. */
export const OPTIMIZE_PASSES: readonly string[] = [...MODULE_PASSES, ...FUNCTION_PASSES];

/**
 * The optimizer's budget per function. binaryen's local passes take time
 * that grows with the square of a function's length or nesting: sinking
 * each local.set into the next statement turns a long chain of dependent
 * statements into one expression as deep as the chain was long
 * (simplify-locals, then optimize-instructions over it); simplify-locals
 * also revisits every enclosing if. Measured on one function: 3,000
 * dependent statements (18,000 nodes) 3.8 s, 10,000 (60,000 nodes) 39 s;
 * ifs nested 1,000 deep 5.5 s, 2,000 deep 21 s. A function with more nodes
 * than OPTIMIZE_NODES_MAX gets LIGHT_PASSES only; one with more non-block
 * expressions on one path than OPTIMIZE_DEPTH_MAX is left as the
 * instrumentation wrote it (even the light passes recurse over its nesting,
 * and some took over 300 s on calls nested 20,000 deep). Both bounds are
 * structural, so the metered module is the same on every machine. esbuild
 * (Go, 20 MB) has four functions beyond OPTIMIZE_NODES_MAX once instrumented
 * (104,000 to 149,000 nodes) and none beyond OPTIMIZE_DEPTH_MAX.
 */
export const OPTIMIZE_NODES_MAX = 100_000;
/** See OPTIMIZE_NODES_MAX. */
export const OPTIMIZE_DEPTH_MAX = 600;

/**
 * The passes a function beyond the budget gets: none sinks a local.set, so
 * none builds the deep expressions that make the others slow, and
 * coalesce-locals still merges the locals the instrumentation added (a
 * function left with thousands of locals costs V8's optimizing tier
 * gigabytes when it compiles it: measured on esbuild, 2.7 GB against 0.27 GB).
 */
export const LIGHT_PASSES: readonly string[] = ['vacuum', 'remove-unused-brs', 'merge-blocks', 'coalesce-locals', 'reorder-locals', 'vacuum'];

/**
 * The largest function (bytes of its binary encoding) that inlining may make:
 * binaryen's default (400 KiB) lets thousands of single-caller functions be
 * inlined one after another into one caller, whose local passes then take
 * minutes (5,000 such functions: over 300 s; 2 s with this bound).
 */
export const INLINE_COMBINED_BYTES_MAX = 16 * 1024;

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
    // binaryen's C++ recurses over expression trees (blocks excepted) on
    // this thread's native stack (RangeError when it runs out) and on its own
    // stack in its linear memory (an abort or a trap when that runs out).
    if (err instanceof RangeError && /call stack/i.test(err.message)) {
      throw new MeterError(
        'FTVM_ERR_MODULE_TOO_DEEP',
        'the module nests expressions (calls, ifs, loops or operators) deeper than binaryen can follow on this thread\'s stack',
      );
    }
    if (err instanceof WebAssembly.RuntimeError) {
      throw new MeterError(
        'FTVM_ERR_MODULE_TOO_DEEP',
        `binaryen stopped on this module (${err.message.split('.')[0]}), as it does when expressions (calls, ifs, loops or operators) nest deeper than its own stack allows`,
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
      if (r.optimize) optimize(module, report);
      if (r.asyncify) {
        // Without a list, Asyncify assumes every import may unwind.
        binaryen.clearPassArguments();
        if (r.asyncify === 'blocking') binaryen.setPassArgument('asyncify-imports', BLOCKING_IMPORTS.join(','));
        if (r.asyncify === 'input-calls') binaryen.setPassArgument('asyncify-imports', snapshotPointImports(module).join(','));
        // A reactor is snapshotted between events, with nothing on its stack: it needs no unwinding.
        const unwinds = r.asyncify !== 'input-calls' || isCommand(module);
        if (unwinds) module.runPasses(['asyncify']);
        binaryen.clearPassArguments();
        if (r.optimize) optimize(module, report);
        if (unwinds && r.asyncify === 'input-calls') {
          module.addGlobal(G_UNWIND_FRAME, binaryen.i32, false, module.i32.const(largestSavedFrame(module)));
          module.addGlobalExport(G_UNWIND_FRAME, EXPORT_UNWIND_FRAME_BYTES);
        }
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

/**
 * Runs MODULE_PASSES (inlining within INLINE_COMBINED_BYTES_MAX), then
 * FUNCTION_PASSES on each function of `module` within the budget
 * (OPTIMIZE_NODES_MAX, OPTIMIZE_DEPTH_MAX), LIGHT_PASSES on the longer ones
 * and none on the deeper ones, reporting functions done. The caller sets
 * the other inlining sizes.
 */
function optimize(module: binaryen.Module, report: (p: Omit<MeterProgress, 'bytes' | 'elapsed_ms'>) => void): void {
  report({ step: 'optimize', done: 0, total: 0 });
  const lib = binaryen as unknown as { _BinaryenGetMaxCombinedBinarySize(): number; _BinaryenSetMaxCombinedBinarySize(n: number): void };
  const combined = lib._BinaryenGetMaxCombinedBinarySize();
  lib._BinaryenSetMaxCombinedBinarySize(INLINE_COMBINED_BYTES_MAX);
  try {
    module.runPasses([...MODULE_PASSES]);
  } finally {
    lib._BinaryenSetMaxCombinedBinarySize(combined);
  }
  const bodies: binaryen.FunctionRef[] = [];
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const f = module.getFunctionByIndex(i);
    if (binaryen.getFunctionInfo(f).body) bodies.push(f); // not an import
  }
  bodies.forEach((f, i) => {
    const shape = bodyShape(binaryen.getFunctionInfo(f).body);
    if (shape.depth <= OPTIMIZE_DEPTH_MAX) module.runPassesOnFunction(f, shape.nodes <= OPTIMIZE_NODES_MAX ? [...FUNCTION_PASSES] : [...LIGHT_PASSES]);
    if (i % 64 === 0) report({ step: 'optimize', done: i, total: bodies.length });
  });
  report({ step: 'optimize', done: bodies.length, total: bodies.length });
}
