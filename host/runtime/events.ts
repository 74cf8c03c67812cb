// The ftvm event ABI: asynchronous events reach a guest as interrupts,
// delivered at an exact count that the recording logs and the replay forces.
//
// Guest side (all optional):
//   import "ftvm_io" "timer_set" (func (param i64))              ;; period in ns, 0 stops the timer
//   import "ftvm_io" "nic_recv"  (func (param i32 i32 i32) (result i32))
//       ;; (conn_out, buf, len): the oldest queued message: its length (0: the peer
//       ;; closed), -1 none queued, -2 buffer too small (nothing taken), -3 bad pointer
//   import "ftvm_io" "nic_send"  (func (param i32 i32 i32) (result i32))
//       ;; (conn, buf, len): 0 sent, -2 empty or larger than 64 KiB, -3 bad pointer
//   import "ftvm_io" "nic_close" (func (param i32) (result i32))  ;; close a connection (the peer sees eof)
//   import "ftvm_io" "wait"      (func)                            ;; block until an interrupt was delivered
//   export "ftvm_interrupt" (func (param i32))                   ;; called with the interrupt's kind
// Interrupt kinds: 1 = timer tick, 2 = a message arrived on the virtual NIC
// (it is queued before the handler runs; see nic.ts).
//
// Where an interrupt is delivered:
//   'check' at a check point while the guest computes;
//   'wait'  inside a host call that blocks (ftvm_io.wait, poll_oneoff with
//           nothing ready, a blocking accept or recv); a poll_oneoff with a
//           clock is a timed wait: it ends when the interrupt comes or the
//           clock fires, whichever is first (live, the host really sleeps;
//           a replay knows from the log which it was and never sleeps);
//   'idle'  to a reactor (a guest exporting `_initialize` instead of `_start`)
//           between events, when no guest code is on the stack.
// The handler runs in every place, starting at the count of delivery.

import type { NicMessage, VirtualNic } from './nic.ts';

export const IO_MODULE = 'ftvm_io';
export const INTERRUPT_EXPORT = 'ftvm_interrupt';
export const INTERRUPT_TIMER = 1;
export const INTERRUPT_NIC = 2;

/** The functions of IO_MODULE a guest may import. */
export const IO_FUNCTIONS: ReadonlySet<string> = new Set(['timer_set', 'nic_recv', 'nic_send', 'nic_close', 'wait']);

export type Interrupt = { kind: typeof INTERRUPT_TIMER } | { kind: typeof INTERRUPT_NIC; msg: NicMessage };

export type Place = 'check' | 'wait' | 'idle';
export const PLACES: readonly Place[] = ['check', 'wait', 'idle'];

export const TIMER_TICK: Interrupt = { kind: INTERRUPT_TIMER };

/** Where live interrupts come from. Replay never asks. */
export interface InterruptSource {
  /** the guest programmed its timer (period 0: off) */
  timerSet(periodNs: bigint): void;
  /** whether anything can become due at a check point (so the host must keep visiting them) */
  armed(): boolean;
  /** the interrupts due now, in delivery order */
  poll(count: bigint): Interrupt[];
  /**
   * The guest waits: block until at least one interrupt is due and return
   * those. `timeoutNs` null: [] means none ever will. `timeoutNs` set (a timed
   * wait, poll_oneoff with a clock): block at most that many nanoseconds and
   * return [] if nothing came by then; a source may return [] earlier (the
   * caller sleeps the rest, see `sleepNs`).
   */
  wait(count: bigint, timeoutNs?: bigint | null): Interrupt[];
  /**
   * Called once, before the guest runs, with the VM's NIC, so that a live
   * source can see how much of each connection the guest has read (flow
   * control). A source must only read it.
   */
  attach?(nic: VirtualNic): void;
}

/** Sleeps the calling thread (a worker blocks here; the main thread only in tools and tests). */
export function sleepNs(ns: bigint): void {
  if (ns <= 0n) return;
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(ns) / 1e6);
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
  /** Nanoseconds until the next tick is due (0: due now), or null when the timer is off. */
  untilTickNs(): bigint | null {
    if (!this.period) return null;
    const left = this.next - this.now();
    return left > 0n ? left : 0n;
  }
  poll(): Interrupt[] {
    if (!this.period) return [];
    const now = this.now();
    if (now < this.next) return [];
    this.next = now + this.period;
    return [TIMER_TICK];
  }
  /** Sleeps until the next tick, or for `timeoutNs` when that comes first (then [], no tick). */
  wait(_count?: bigint, timeoutNs: bigint | null = null): Interrupt[] {
    if (!this.period) {
      if (timeoutNs !== null) sleepNs(timeoutNs);
      return [];
    }
    const untilTick = this.next - this.now();
    if (timeoutNs !== null && timeoutNs < untilTick) {
      sleepNs(timeoutNs);
      return [];
    }
    sleepNs(untilTick);
    this.next = this.now() + this.period;
    return [TIMER_TICK];
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
  poll(count: bigint): Interrupt[] {
    const due: Interrupt[] = [];
    while (this.on && this.at < this.counts.length && this.counts[this.at]! <= count) {
      due.push(TIMER_TICK);
      this.at++;
    }
    return due;
  }
  /** A waiting guest (timed or not) gets the next tick at once (scripted time does not pass while it waits). */
  wait(): Interrupt[] {
    if (!this.armed()) return [];
    this.at++;
    return [TIMER_TICK];
  }
}

/** Messages arriving on the NIC at given counts (the first check point at or past each), or when the guest waits for them. */
export class ScriptedMessages implements InterruptSource {
  private at = 0;
  constructor(private readonly script: readonly { count: bigint; msg: NicMessage }[]) {}
  timerSet(): void {}
  armed(): boolean {
    return this.at < this.script.length;
  }
  poll(count: bigint): Interrupt[] {
    const due: Interrupt[] = [];
    while (this.at < this.script.length && this.script[this.at]!.count <= count) {
      due.push({ kind: INTERRUPT_NIC, msg: this.script[this.at++]!.msg });
    }
    return due;
  }
  /** A waiting guest (timed or not) gets the next message at once, with every other scripted for the same count. */
  wait(): Interrupt[] {
    const next = this.script[this.at];
    return next ? this.poll(next.count) : [];
  }
}

/** Several sources as one: polled in order; a wait is served by the first that has something. */
export class MergedSources implements InterruptSource {
  private readonly sources: readonly InterruptSource[];
  constructor(...sources: InterruptSource[]) {
    this.sources = sources;
  }
  timerSet(periodNs: bigint): void {
    for (const s of this.sources) s.timerSet(periodNs);
  }
  armed(): boolean {
    return this.sources.some((s) => s.armed());
  }
  attach(nic: VirtualNic): void {
    for (const s of this.sources) s.attach?.(nic);
  }
  poll(count: bigint): Interrupt[] {
    return this.sources.flatMap((s) => s.poll(count));
  }
  /** A timed wait gives each source what is left of `timeoutNs` (measured on the host's monotonic clock), in order. */
  wait(count: bigint, timeoutNs: bigint | null = null): Interrupt[] {
    for (const s of this.sources) {
      const due = s.poll(count);
      if (due.length) return due;
    }
    const end = timeoutNs === null ? null : process.hrtime.bigint() + timeoutNs;
    for (const s of this.sources) {
      const left = end === null ? null : end - process.hrtime.bigint();
      const due = s.wait(count, left === null ? null : left > 0n ? left : 0n);
      if (due.length) return due;
    }
    return [];
  }
}
