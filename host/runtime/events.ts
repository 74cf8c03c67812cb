// The ftvm event ABI: asynchronous events reach a guest as interrupts,
// delivered only at check points, at an exact count that the recording logs
// and the replay forces.
//
// Guest side:
//   import "ftvm_io" "timer_set" (func (param i64))   ;; period in ns, 0 stops the timer
//   export "ftvm_interrupt" (func (param i32))        ;; called with the interrupt's kind
// Interrupt kinds: 1 = timer tick.

export const IO_MODULE = 'ftvm_io';
export const INTERRUPT_EXPORT = 'ftvm_interrupt';
export const INTERRUPT_TIMER = 1;

/** The functions of IO_MODULE a guest may import. */
export const IO_FUNCTIONS: ReadonlySet<string> = new Set(['timer_set']);

/** Where live interrupts come from, asked at check points while the guest runs. Replay never asks. */
export interface InterruptSource {
  /** the guest programmed its timer (period 0: off) */
  timerSet(periodNs: bigint): void;
  /** whether anything can become due (so the host must keep visiting check points) */
  armed(): boolean;
  /** the kinds of interrupt due now, in delivery order */
  poll(count: bigint): number[];
}

/** A timer on the host's monotonic clock: a tick is due once its period has passed; missed ticks coalesce. */
export class LiveTimer implements InterruptSource {
  private period = 0n;
  private next = 0n;
  constructor(private readonly now: () => bigint = () => process.hrtime.bigint()) {}
  timerSet(periodNs: bigint): void {
    this.period = periodNs > 0n ? periodNs : 0n;
    this.next = this.now() + this.period;
  }
  armed(): boolean {
    return this.period > 0n;
  }
  poll(): number[] {
    if (!this.period) return [];
    const now = this.now();
    if (now < this.next) return [];
    this.next = now + this.period;
    return [INTERRUPT_TIMER];
  }
}

/** Ticks at given counts (the first check point at or past each), for tests and simulations. */
export class ScriptedTicks implements InterruptSource {
  private at = 0;
  private on = false;
  constructor(private readonly counts: readonly bigint[]) {}
  timerSet(periodNs: bigint): void {
    this.on = periodNs > 0n;
  }
  armed(): boolean {
    return this.on && this.at < this.counts.length;
  }
  poll(count: bigint): number[] {
    const due: number[] = [];
    while (this.on && this.at < this.counts.length && this.counts[this.at]! <= count) {
      due.push(INTERRUPT_TIMER);
      this.at++;
    }
    return due;
  }
}
