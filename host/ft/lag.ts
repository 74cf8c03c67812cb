// The backup's lag and the primary's throttle (VMware FT, Scales et al. 2010,
// section 2.5: the primary is slowed when its backup falls behind, so that a
// failover never has long to replay).
//
// The primary marks the count it reached at each log frame, with the time.
// When the backup acknowledges, it says the count its replay reached: the lag
// in time is how long ago the primary was there.

import { invariant } from '../assert.ts';
import { LAG_MARKS_MAX, THROTTLE_US_MAX } from '../limits.ts';
export { LAG_MARKS_MAX, THROTTLE_US_MAX };


/**
 * One primary's marks of (count, time) and its lag behind its backup. Counts
 * are guest counts (bigint), times milliseconds on one monotonic clock
 * (`performance.now()` by default; a test passes its own).
 */
export class LagMeter {
  private marks: { count: bigint; at: number }[] = [];
  /** the lag, in counts and in ms, as of the last acknowledgement */
  lagCounts = 0n;
  lagMs = 0;
  /** the count the primary reached at its last mark */
  primaryCount = 0n;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /**
   * The primary reached `count` (counts must not decrease from one mark to the
   * next: the lag is found by bisection over the marks, so a decrease would
   * corrupt every later lag and throttle; it stops the process, FTVM_ERR_INVARIANT).
   */
  mark(count: bigint): void {
    const tail = this.marks.at(-1);
    invariant(!tail || tail.count <= count, () => `lag meter: the primary's count went back from ${tail!.count} to ${count}`);
    this.primaryCount = count;
    this.marks.push({ count, at: this.now() });
    if (this.marks.length > LAG_MARKS_MAX) this.marks.splice(0, LAG_MARKS_MAX / 2);
  }

  /**
   * The backup's replay reached `replayCount`: the lag is how long ago the
   * primary was first at or past that count (0 when it is not behind).
   * Marks behind it are dropped once many have passed (the backup's count only grows).
   */
  acked(replayCount: bigint): void {
    this.lagCounts = this.primaryCount > replayCount ? this.primaryCount - replayCount : 0n;
    const now = this.now();
    // marks are in count order: the first at or past the backup's count, by bisection (an ack comes with every frame)
    let lo = 0;
    let hi = this.marks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.marks[mid]!.count >= replayCount) hi = mid;
      else lo = mid + 1;
    }
    const at = lo < this.marks.length ? this.marks[lo]!.at : now;
    if (lo >= 1024) this.marks.splice(0, lo);
    this.lagMs = this.lagCounts === 0n ? 0 : now - at;
  }

  /** Nothing is left to replay (the guest ended and the backup has it all). */
  clear(): void {
    this.lagMs = 0;
    this.lagCounts = 0n;
  }
}

/**
 * The throttle's next rest per poll, in µs, from the current one and the lag:
 * above `targetMs` it grows by half (at least 50 µs, at most
 * THROTTLE_US_MAX); under half the target it halves, and goes to 0 below
 * 20 µs; in between it stays.
 */
export function nextThrottleUs(currentUs: number, lagMs: number, targetMs: number): number {
  if (lagMs > targetMs) return Math.min(THROTTLE_US_MAX, Math.max(50, currentUs * 1.5));
  if (lagMs < targetMs / 2 && currentUs > 0) return currentUs < 20 ? 0 : currentUs / 2;
  return currentUs;
}
