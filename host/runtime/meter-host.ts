// The host side of a metered instance's counters.
//
// The instrumented module carries `fuel = deadline - count` in registers and
// writes it to the exported global `ftvm_fuel` before host calls, indirect
// calls, explicit traps and returns to the host (see meter/instrument.ts). The
// host keeps the deadline. Two invariants make the count readable at any time
// the host has control:
//   - inside `ftvm.check(fuel)`, the count is exactly `deadline - fuel`;
//   - anywhere else (a host import, after a return, after a trap),
//     `deadline - ftvm_fuel` is the count at the last write-back.
// Moving the deadline moves the global by the same amount, so the second
// invariant survives deadline changes: a trap's count never depends on where
// the host chose to preempt.

import { EXPORT_DEPTH, EXPORT_FUEL, I64_MAX, IMPORT_CHECK, IMPORT_DEPTH_EXCEEDED } from '../meter/abi.ts';
import type { FtvmErrorCode } from '../errors.ts';

/** Thrown into the guest to stop it at a check point whose count reached the deadline. */
export class DeadlineReached extends Error {
  readonly code = 'FTVM_DEADLINE_REACHED';
  constructor(readonly count: bigint) {
    super(`deadline reached at count ${count}`);
    this.name = 'DeadlineReached';
  }
}

/** Thrown when the guest exceeds its deterministic call-depth budget. */
export class DepthExceeded extends Error {
  readonly code = 'FTVM_ERR_DEPTH_EXCEEDED' satisfies FtvmErrorCode;
  constructor(readonly count: bigint) {
    super(`call depth limit exceeded at count ${count}`);
    this.name = 'DepthExceeded';
  }
}

export type CheckHandler = (count: bigint, meter: MeterHost) => void;

export class MeterHost {
  private deadline: bigint = I64_MAX;
  private fuel: WebAssembly.Global | null = null;
  private depth: WebAssembly.Global | null = null;
  private checkCount: bigint | null = null;
  /** Called at a check point whose count reached the deadline. It may move the
   *  deadline (execution goes on) or throw; if it leaves the deadline where it
   *  is, the guest stops with DeadlineReached. */
  onCheck: CheckHandler | null = null;

  /** The `ftvm` import module for the instrumented guest. */
  readonly imports = {
    [IMPORT_CHECK]: (fuel: bigint): bigint => this.check(fuel),
    [IMPORT_DEPTH_EXCEEDED]: (): never => {
      throw new DepthExceeded(this.count);
    },
  };

  bind(instance: WebAssembly.Instance): void {
    const fuel = instance.exports[EXPORT_FUEL];
    const depth = instance.exports[EXPORT_DEPTH];
    if (!(fuel instanceof WebAssembly.Global) || !(depth instanceof WebAssembly.Global)) {
      throw new Error('the instance is not metered by ftvm (no ftvm_fuel/ftvm_depth exports)');
    }
    this.fuel = fuel;
    this.depth = depth;
  }

  private get fuelValue(): bigint {
    // Before bind (during the start function) the global still holds its initial value.
    return this.fuel ? (this.fuel.value as bigint) : I64_MAX;
  }

  /** The guest's count (see the invariants above). */
  get count(): bigint {
    return this.checkCount ?? this.deadline - this.fuelValue;
  }

  get currentDeadline(): bigint {
    return this.deadline;
  }

  /** Stop (call onCheck) at the first check point whose count is >= `count`. */
  setDeadline(count: bigint): void {
    if (count < 0n || count > I64_MAX) throw new RangeError(`deadline ${count} out of range`);
    const lastWriteBack = this.deadline - this.fuelValue;
    this.deadline = count;
    if (this.fuel) this.fuel.value = count - lastWriteBack;
  }

  /** Sets the count of a freshly bound instance (a VM restored from a snapshot). */
  resumeAt(count: bigint): void {
    if (!this.fuel) throw new Error('resumeAt needs a bound instance');
    this.fuel.value = this.deadline - count;
  }

  /** Prepares for a call from the host into the guest's exports. */
  enter(): void {
    if (this.depth) this.depth.value = 0;
  }

  /**
   * Runs guest code (an exported interrupt handler) from inside a check point:
   * it starts at the check point's count, and the guest resumes at the count
   * the handler ended at.
   */
  runFromCheck(fn: () => void): void {
    if (this.checkCount === null || !this.fuel) throw new Error('runFromCheck is only possible inside a check point');
    // The handler's wrapper takes the count from the instance; while it runs,
    // its host calls read their counts from its write-backs, not from this check point.
    this.fuel.value = this.deadline - this.checkCount;
    this.checkCount = null;
    try {
      fn();
    } finally {
      this.checkCount = this.deadline - (this.fuel.value as bigint);
    }
  }

  private check(fuel: bigint): bigint {
    this.checkCount = this.deadline - fuel;
    try {
      this.onCheck?.(this.checkCount, this);
      const count = this.checkCount;
      if (count >= this.deadline) throw new DeadlineReached(count);
      return this.deadline - count;
    } finally {
      this.checkCount = null;
    }
  }
}
