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


/**
 * The host calls at which a command guest's snapshot may be taken: the calls
 * that wait for input, where a server spends its idle time. A guest metered
 * with Asyncify limited to them ('input-calls') can unwind its wasm stack at
 * the entry of any of them (runtime/unwind.ts); no other function pays for
 * Asyncify. Each is "module.name".
 */
export const SNAPSHOT_POINT_IMPORTS: readonly string[] = [
  'ftvm_io.nic_recv',
  'ftvm_io.wait',
  'wasi_snapshot_preview1.fd_read',
  'wasi_snapshot_preview1.poll_oneoff',
  'wasi_snapshot_preview1.sock_accept',
  'wasi_snapshot_preview1.sock_recv',
];

/**
 * Exported by a command guest metered with Asyncify ('input-calls'): an
 * immutable i32, the most bytes Asyncify saves for one frame of any of its
 * functions (runtime/unwind.ts sizes its region with it).
 */
export const EXPORT_UNWIND_FRAME_BYTES = 'ftvm_unwind_frame_bytes';
