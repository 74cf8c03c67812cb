import { DEPTH_LIMIT_SLOTS as DEFAULT_DEPTH_LIMIT, MEMORY_LIMIT_PAGES as DEFAULT_MEMORY_LIMIT_PAGES } from '../limits.ts';
export { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES };
// The names and numbers a metered module shares with the host that runs it.
// Kept apart from the pass itself so that code running guests (worker threads
// above all) never loads binaryen.

export const IMPORT_MODULE = 'ftvm';
export const IMPORT_CHECK = 'check';
export const IMPORT_DEPTH_EXCEEDED = 'depth_exceeded';
export const EXPORT_FUEL = 'ftvm_fuel';
export const EXPORT_DEPTH = 'ftvm_depth';
/**
 * The module's start function, exported instead of run at instantiation, so
 * that the host runs it metered: after it has bound the counters and set a
 * deadline (a start function can loop forever like any other code).
 */
export const EXPORT_START = 'ftvm_start';
/** exported by the `classic` strategy: remaining budget, counting down */
export const EXPORT_CLASSIC_REMAINING = 'ftvm_classic_remaining';

export const I64_MAX = (1n << 63n) - 1n;

/** Prefix of the exports through which the host reads the guest's own mutable globals (for state digests). */
export const EXPORT_GLOBAL_PREFIX = 'ftvm_global_';

