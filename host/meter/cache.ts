// The binaryen-free half of metering: option defaults, the cache key, the
// memory and disk caches, and module validation. A host that finds a guest in
// the cache never loads binaryen (importing it takes seconds).

import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { MeterError } from './errors.ts';
import { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES } from './abi.ts';
import type { MeterProgress } from './progress.ts';
import { makeDirs } from '../dirs.ts';

/**
 * Identifies the pass's code: the cache key includes it, so a changed pass
 * never reuses modules instrumented by an older one.
 */
export const PASS_VERSION: string = (() => {
  const h = createHash('sha256');
  for (const f of ['index.ts', 'instrument.ts', 'walk.ts', 'abi.ts', 'cache.ts', 'progress.ts']) h.update(readFileSync(new URL(`./${f}`, import.meta.url)));
  return h.digest('hex').slice(0, 16);
})();

export const BINARYEN_VERSION: string = (
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
  /**
   * binaryen Asyncify on top: 'blocking' limits it to the imports that can
   * block (ftvm.check among them), 'input-calls' to the calls that wait for
   * input (SNAPSHOT_POINT_IMPORTS), and only in a command guest (exporting
   * `_start`): what its snapshots use (runtime/unwind.ts; a reactor is
   * snapshotted between events and gets nothing), 'full' lets every import
   * unwind
   */
  asyncify?: false | AsyncifyMode;
  /** where instrumented modules are cached on disk; null disables the disk cache */
  cacheDir?: string | null;
  /**
   * Called at each step of metering a module that is not in the cache
   * (parse, instrument with functions done/total, optimize, weigh, emit,
   * done); `progressReporter` renders it. Not part of the cache key.
   */
  onProgress?: (p: MeterProgress) => void;
}


/** Where Asyncify may unwind (see MeterOptions.asyncify). */
export type AsyncifyMode = 'blocking' | 'input-calls' | 'full';

export interface MeteredModule {
  binary: Uint8Array;
  /** content hash of the input together with every option that shapes the output */
  key: string;
  /** whether this came from a cache */
  cached: boolean;
}

export interface Resolved {
  variant: Variant;
  depthLimit: number;
  memoryLimitPages: number;
  canonicalizeNaNs: boolean;
  optimize: boolean;
  asyncify: false | AsyncifyMode;
}

export function resolve(opts: MeterOptions): Resolved {
  return {
    variant: opts.variant ?? 'ftvm',
    depthLimit: opts.depthLimit ?? DEFAULT_DEPTH_LIMIT,
    memoryLimitPages: opts.memoryLimitPages ?? DEFAULT_MEMORY_LIMIT_PAGES,
    canonicalizeNaNs: opts.canonicalizeNaNs ?? false,
    optimize: opts.optimize ?? true,
    asyncify: opts.asyncify ?? false,
  };
}

export const memoryCache = new Map<string, Uint8Array>();

/** Forgets what this process instrumented (the disk cache stays). */
export function clearMemoryCache(): void {
  memoryCache.clear();
}

export function defaultCacheDir(): string {
  return process.env.FTVM_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ftvm', 'meter');
}

/**
 * Checks that `bytes` is a module V8 accepts, and throws a MeterError that
 * names the problem if not.
 */
export function validateModule(bytes: Uint8Array): void {
  // validate() decodes without compiling; only a refusal compiles, for the engine's reason.
  if (WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) return;
  try {
    compileModule(bytes);
    throw new Error('the engine refuses it');
  } catch (err) {
    throw new MeterError('FTVM_ERR_INVALID_MODULE', `not a valid WebAssembly module: ${(err as Error).message}`);
  }
}

/** WebAssembly.Module from bytes of any backing buffer. */
export function compileModule(bytes: Uint8Array): WebAssembly.Module {
  return new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
}

/** The cache key of a module metered with `r`. */
export function cacheKey(bytes: Uint8Array, r: Resolved): string {
  return createHash('sha256')
    .update(bytes)
    .update(JSON.stringify({ ...r, PASS_VERSION, BINARYEN_VERSION }))
    .digest('hex');
}

/** A metered module from the memory or disk cache, or null. */
export function lookup(key: string, cacheDir: string | null | undefined): Uint8Array | null {
  const hit = memoryCache.get(key);
  if (hit) return hit;
  const dir = cacheDir === undefined ? defaultCacheDir() : cacheDir;
  if (!dir) return null;
  try {
    const binary = new Uint8Array(readFileSync(join(dir, `${key}.wasm`)));
    if (WebAssembly.validate(binary as Uint8Array<ArrayBuffer>)) {
      memoryCache.set(key, binary);
      return binary;
    }
  } catch {
    // not cached yet
  }
  return null;
}

/** Keeps a metered module in memory and, unless disabled, on disk. */
export function store(key: string, binary: Uint8Array, cacheDir: string | null | undefined): void {
  memoryCache.set(key, binary);
  const dir = cacheDir === undefined ? defaultCacheDir() : cacheDir;
  if (!dir) return;
  try {
    makeDirs(dir);
    const file = join(dir, `${key}.wasm`);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, binary);
    renameSync(tmp, file);
  } catch {
    // A read-only or full disk only costs the next process a re-instrumentation.
  }
}
