// The backup's lag and the primary's throttle, on a clock the test moves.
import { describe, expect, it } from 'vitest';
import { LAG_MARKS_MAX, LagMeter, nextThrottleUs, THROTTLE_US_MAX } from '../host/ft/lag.ts';

describe('the lag', () => {
  it('is how long ago the primary was first where the backup is now', () => {
    let now = 0;
    const lag = new LagMeter(() => now);
    for (const [t, count] of [[0, 100n], [10, 200n], [20, 300n], [30, 400n]] as const) {
      now = t;
      lag.mark(count);
    }
    now = 35;
    lag.acked(150n);
    // the primary passed 150 at its mark of 200, at 10 ms
    expect(lag.lagMs).toBe(25);
    expect(lag.lagCounts).toBe(250n);
    lag.acked(400n);
    expect(lag.lagMs).toBe(0);
    expect(lag.lagCounts).toBe(0n);
    lag.acked(300n);
    expect(lag.lagMs).toBe(15);
    lag.clear();
    expect([lag.lagMs, lag.lagCounts]).toEqual([0, 0n]);
  });

  it('keeps its marks bounded', () => {
    let now = 0;
    const lag = new LagMeter(() => now);
    for (let i = 0; i < LAG_MARKS_MAX * 3; i++) {
      now = i;
      lag.mark(BigInt(i));
    }
    // the oldest marks are gone: a backup that far behind reads as behind the oldest mark kept, never as not behind
    lag.acked(0n);
    expect(lag.lagMs).toBeGreaterThan(0);
    expect(lag.lagMs).toBeLessThanOrEqual(LAG_MARKS_MAX);
  });
});

describe('the throttle', () => {
  it('grows by half above the target, halves under half of it, and holds in between', () => {
    expect(nextThrottleUs(0, 150, 100)).toBe(50);
    expect(nextThrottleUs(100, 150, 100)).toBe(150);
    expect(nextThrottleUs(THROTTLE_US_MAX, 500, 100)).toBe(THROTTLE_US_MAX);
    expect(nextThrottleUs(100, 70, 100)).toBe(100);
    expect(nextThrottleUs(100, 40, 100)).toBe(50);
    expect(nextThrottleUs(19, 0, 100)).toBe(0);
    expect(nextThrottleUs(0, 0, 100)).toBe(0);
  });
});
