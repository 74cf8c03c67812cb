// The metering front door: validate a guest, instrument it, optimize it, and
// cache the result by content hash so a large guest is transformed once.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import binaryen from 'binaryen';
import { MeterError } from './errors.ts';
import { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES } from './abi.ts';
import { instrumentModule, type Strategy } from './instrument.ts';

export { MeterError } from './errors.ts';
export * from './instrument.ts';

/**
 * Identifies the pass's code: the cache key includes it, so a changed pass
 * never reuses modules instrumented by an older one.
 */
export const PASS_VERSION: string = (() => {
  const h = createHash('sha256');
  for (const f of ['index.ts', 'instrument.ts', 'walk.ts', 'abi.ts']) h.update(readFileSync(new URL(`./${f}`, import.meta.url)));
  return h.digest('hex').slice(0, 16);
})();

const BINARYEN_VERSION: string = (
  createRequire(import.meta.url)('binaryen/package.json') as { version: string }
).version;

export type Variant =
  /** no counter: the same read/optimize/write pipeline, the benchmarks' baseline */
  | 'plain'
  /** ftvm's metering */
  | 'ftvm'
  /** the classic per-block global counter, a benchmark peer */
  | 'classic';

export interface MeterOptions {
  variant?: Variant;
  /** depth budget in frame units; the default fits V8's smallest default stack with room to spare */
  depthLimit?: number;
  /** memory.grow fails beyond this many 64 KiB pages (default 16384 = 1 GiB) */
  memoryLimitPages?: number;
  /** canonicalize NaNs produced by scalar float arithmetic (see README) */
  canonicalizeNaNs?: boolean;
  /** run binaryen's optimizer after instrumenting (default true) */
  optimize?: boolean;
  /** binaryen Asyncify on top: 'blocking' limits it to the imports that can block */
  asyncify?: false | 'blocking' | 'full';
  /** where instrumented modules are cached on disk; null disables the disk cache */
  cacheDir?: string | null;
}


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

export interface MeteredModule {
  binary: Uint8Array;
  /** content hash of the input together with every option that shapes the output */
  key: string;
  /** whether this came from a cache */
  cached: boolean;
}

interface Resolved {
  variant: Variant;
  depthLimit: number;
  memoryLimitPages: number;
  canonicalizeNaNs: boolean;
  optimize: boolean;
  asyncify: false | 'blocking' | 'full';
}

function resolve(opts: MeterOptions): Resolved {
  return {
    variant: opts.variant ?? 'ftvm',
    depthLimit: opts.depthLimit ?? DEFAULT_DEPTH_LIMIT,
    memoryLimitPages: opts.memoryLimitPages ?? DEFAULT_MEMORY_LIMIT_PAGES,
    canonicalizeNaNs: opts.canonicalizeNaNs ?? false,
    optimize: opts.optimize ?? true,
    asyncify: opts.asyncify ?? false,
  };
}

const memoryCache = new Map<string, Uint8Array>();

/** Forgets what this process instrumented (the disk cache stays). */
export function clearMemoryCache(): void {
  memoryCache.clear();
}

function defaultCacheDir(): string {
  return process.env.FTVM_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ftvm', 'meter');
}

/**
 * Checks that `bytes` is a module V8 accepts, and throws a MeterError that
 * names the problem if not.
 */
export function validateModule(bytes: Uint8Array): void {
  try {
    compileModule(bytes);
  } catch (err) {
    throw new MeterError('FTVM_ERR_INVALID_MODULE', `not a valid WebAssembly module: ${(err as Error).message}`);
  }
}

/** WebAssembly.Module from bytes of any backing buffer. */
export function compileModule(bytes: Uint8Array): WebAssembly.Module {
  return new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
}

/** Instrument (or, for 'plain', only round-trip) a module, using the cache. */
export function meter(bytes: Uint8Array, options: MeterOptions = {}): MeteredModule {
  const r = resolve(options);
  const key = createHash('sha256')
    .update(bytes)
    .update(JSON.stringify({ ...r, PASS_VERSION, BINARYEN_VERSION }))
    .digest('hex');
  const hit = memoryCache.get(key);
  if (hit) return { binary: hit, key, cached: true };
  const dir = options.cacheDir === undefined ? defaultCacheDir() : options.cacheDir;
  const file = dir ? join(dir, `${key}.wasm`) : null;
  if (file) {
    try {
      const binary = new Uint8Array(readFileSync(file));
      if (WebAssembly.validate(binary as Uint8Array<ArrayBuffer>)) {
        memoryCache.set(key, binary);
        return { binary, key, cached: true };
      }
    } catch {
      // not cached yet
    }
  }
  const binary = transform(bytes, r);
  memoryCache.set(key, binary);
  if (file && dir) {
    try {
      mkdirSync(dir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, binary);
      renameSync(tmp, file);
    } catch {
      // A read-only or full disk only costs the next process a re-instrumentation.
    }
  }
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
