// Where a live run (a recording, a live replica) logs state digests, and
// which ones it skips so that their cost stays bounded. Where digests fall is
// the live side's choice (a replay follows the log), so it may skip freely:
// hashing a large memory at every interval would dominate the run.

import { performance } from 'node:perf_hooks';
import type { GuestContext } from '../instance.ts';
import { stateDigest } from './core.ts';

/** What bounds a live run's digests. */
export interface DigestLimits {
  /** the largest share of the run's time digests may take (default 0.02): a digest is skipped while the last one took longer than this share of the time since it ended; Infinity digests at every interval */
  budget?: number;
  /**
   * a digest is skipped when hashing the memory would pause the guest longer
   * than this, in ms, estimated from the memory's size at the rate the last
   * digest hashed (1 GB/s before any; default Infinity: no such limit)
   */
  pauseMsMax?: number;
}

/**
 * The digest schedule of one live run: one digest is due at the first check
 * point at or past every multiple of `every` counts (the start entry's
 * `digestEvery`); `take` says whether this check point logs it.
 */
export class DigestSchedule {
  /** the count from which the next digest is due */
  next: bigint;
  private readonly budget: number;
  private readonly pauseMsMax: number;
  /** when the last digest ended, ms (performance.now), and what it cost */
  private lastEnd = performance.now();
  private lastCostMs = 0;
  /** the last digest's hashing time per byte of memory, ms (1 GB/s before any) */
  private msPerByte = 1e-6;

  /** `every`: counts between digests (> 0); `from`: the count the run starts at (the next digest is due at the first multiple past it). */
  constructor(
    readonly every: bigint,
    limits: DigestLimits = {},
    from = 0n,
  ) {
    this.budget = limits.budget ?? 0.02;
    this.pauseMsMax = limits.pauseMsMax ?? Infinity;
    this.next = this.after(from);
  }

  /** The run goes on (live) from `count`: the next digest is due at the first multiple past it. */
  restartAt(count: bigint): void {
    this.next = this.after(count);
  }

  /**
   * At a check point at `count`: the state digest to log there, or null (not
   * due yet, or skipped for its cost; the schedule moves on either way).
   */
  take(count: bigint, ctx: GuestContext): Uint8Array | null {
    if (count < this.next) return null;
    this.next = this.after(count);
    if (this.lastCostMs > 0 && this.lastCostMs > this.budget * (performance.now() - this.lastEnd)) return null;
    const bytes = ctx.memory.buffer.byteLength;
    if (bytes * this.msPerByte > this.pauseMsMax) return null;
    const t = performance.now();
    const d = stateDigest(ctx);
    this.lastEnd = performance.now();
    this.lastCostMs = this.lastEnd - t;
    if (bytes > 0) this.msPerByte = this.lastCostMs / bytes;
    return d;
  }

  private after(count: bigint): bigint {
    return (count / this.every + 1n) * this.every;
  }
}
