import { readFileSync } from 'node:fs';
// What this proves: the rules of a VM's own clocks (host/runtime/vm-clock.ts),
// on host clocks the test moves by hand. The monotonic clock starts at 0, goes
// on across go-lives on hosts whose monotonic clocks differ by any offset,
// advances by the realtime that passed between its last reading and the
// go-live (never less than 0), and never goes back; realtime never reads below
// its last reading; the CPU clocks count only the replica's thread from where
// the log left them. A replica that replays a log (observe) ends in the state
// of the one that wrote it (read), so a snapshot taken on either continues the
// same; a snapshot's clock state from a peer is checked; the realtime of a
// monotonic reading rides the log and is checked there.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { threadCpuNs, VM_CLOCK_BOOT, VmClock, vmClockResolutionNs, vmClockStateOf, VmClockError, type HostClocks } from '../host/runtime/vm-clock.ts';
import { decodeFrame, encodeFrame, EntryChecker, LogFormatError, type LogEntry } from '../host/log/format.ts';
import { CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME, CLOCK_REALTIME, CLOCK_THREAD_CPUTIME } from '../host/runtime/wasi/abi.ts';

const S = 1_000_000_000n;

/** A host's clocks as numbers the test sets: monotonic offset by `monoOffset` (a time namespace), a shared realtime. */
class Moved implements HostClocks {
  mono = 0n;
  cpu = 0n;
  constructor(
    readonly world: { wall: bigint },
    readonly monoOffset = 0n,
  ) {}
  monoNs = (): bigint => this.mono + this.monoOffset;
  wallNs = (): bigint => this.world.wall;
  cpuNs = (): bigint => this.cpu;
  /** time passes: realtime and this host's monotonic clock move by `ns`; the thread computed `cpuNs` of it */
  pass(ns: bigint, cpuNs = 0n): void {
    this.world.wall += ns;
    this.mono += ns;
    this.cpu += cpuNs;
  }
}

/** A world of hosts sharing one realtime; passing time moves every host's clocks. */
function world(offsets: bigint[]) {
  const w = { wall: 1_800_000_000n * S };
  const hosts = offsets.map((o) => new Moved(w, o));
  const pass = (ns: bigint, cpuOn?: Moved, cpuNs = 0n): void => {
    w.wall += ns;
    for (const h of hosts) {
      h.mono += ns;
      if (h === cpuOn) h.cpu += cpuNs;
    }
  };
  return { w, hosts, pass };
}

describe('a VM clock', () => {
  it('starts at 0 at boot and counts the host monotonic time the replica is live', () => {
    const { hosts, pass } = world([5000n * S]);
    const c = new VmClock(hosts[0]!);
    c.goLive();
    expect(c.read(CLOCK_MONOTONIC).ns).toBe(0n);
    pass(3n * S);
    const r = c.read(CLOCK_MONOTONIC);
    expect(r.ns).toBe(3n * S);
    // the reading is logged with the realtime it was taken at
    expect(r.wall).toBe(hosts[0]!.world.wall);
    expect(c.read(CLOCK_REALTIME)).toEqual({ ns: hosts[0]!.world.wall });
  });

  it('goes on across a go-live on a host 1500 s behind, and back: forward by the realtime that passed', () => {
    const { hosts, pass } = world([0n, -1500n * S]);
    const [a, b] = hosts as [Moved, Moved];
    const p = new VmClock(a);
    p.goLive();
    pass(10n * S);
    const before = p.read(CLOCK_MONOTONIC);
    expect(before.ns).toBe(10n * S);
    // the backup replays the log: it saw the reading and its realtime
    const q = new VmClock(b);
    q.observe(CLOCK_MONOTONIC, before.ns, before.wall);
    // the primary dies; 2 s later the backup goes live
    pass(2n * S);
    q.goLive();
    expect(q.read(CLOCK_MONOTONIC).ns).toBe(12n * S);
    pass(1n * S);
    const onB = q.read(CLOCK_MONOTONIC);
    expect(onB.ns).toBe(13n * S);
    // and back to a (its host's clock 1500 s ahead), through a snapshot of q's state
    const r = new VmClock(a, q.state());
    pass(500_000_000n);
    r.goLive();
    expect(r.read(CLOCK_MONOTONIC).ns).toBe(13n * S + 500_000_000n);
  });

  it('a go-live long after the last reading counts the time between (an idle VM)', () => {
    const { hosts, pass } = world([0n, 777n * S]);
    const p = new VmClock(hosts[0]!);
    p.goLive();
    pass(1n * S);
    const last = p.read(CLOCK_MONOTONIC);
    const q = new VmClock(hosts[1]!);
    q.observe(CLOCK_MONOTONIC, last.ns, last.wall);
    pass(600n * S);
    q.goLive();
    expect(q.read(CLOCK_MONOTONIC).ns).toBe(601n * S);
  });

  it('a monotonic reading logged without its realtime (an older log) counts from when the replay took it', () => {
    const { hosts, pass } = world([0n]);
    const q = new VmClock(hosts[0]!);
    q.observe(CLOCK_MONOTONIC, 50n * S);
    expect(q.state().monoWallNs).toBe(hosts[0]!.world.wall);
    pass(2n * S);
    q.goLive();
    expect(q.read(CLOCK_MONOTONIC).ns).toBe(52n * S);
  });

  it('never goes back when the new host’s realtime is behind the reading’s (skew): it stands still, then moves', () => {
    const w1 = { wall: 1000n * S };
    const w2 = { wall: 990n * S }; // 10 s behind
    const a = new Moved(w1);
    const b = new Moved(w2, -1500n * S);
    const p = new VmClock(a);
    p.goLive();
    a.pass(5n * S);
    const last = p.read(CLOCK_MONOTONIC);
    const q = new VmClock(b);
    q.observe(CLOCK_MONOTONIC, last.ns, last.wall);
    q.goLive();
    expect(q.read(CLOCK_MONOTONIC).ns).toBe(last.ns);
    b.pass(1n);
    expect(q.read(CLOCK_MONOTONIC).ns).toBe(last.ns + 1n);
  });

  it('realtime never reads below its last reading, on any host', () => {
    const a = new Moved({ wall: 2000n * S });
    const p = new VmClock(a);
    p.goLive();
    expect(p.read(CLOCK_REALTIME).ns).toBe(2000n * S);
    // a step back of the host's clock (an NTP step, or a host behind): the VM's realtime waits for it
    a.world.wall -= 3n * S;
    expect(p.read(CLOCK_REALTIME).ns).toBe(2000n * S);
    a.world.wall += 4n * S;
    expect(p.read(CLOCK_REALTIME).ns).toBe(2001n * S);
    const b = new Moved({ wall: 1990n * S });
    const q = new VmClock(b, p.state());
    q.goLive();
    expect(q.read(CLOCK_REALTIME).ns).toBe(2001n * S);
  });

  it('the CPU clocks are one: the thread’s CPU time since go-live added to the last reading', () => {
    const { hosts, pass } = world([0n, 0n]);
    const [a, b] = hosts as [Moved, Moved];
    a.cpu = 9_000n * S; // the host process ran for hours: none of it is the VM's
    b.cpu = 123n * S;
    const p = new VmClock(a);
    p.goLive();
    expect(p.read(CLOCK_PROCESS_CPUTIME).ns).toBe(0n);
    pass(4n * S, a, 2n * S);
    expect(p.read(CLOCK_THREAD_CPUTIME).ns).toBe(2n * S);
    pass(1n * S, a, 1n * S);
    const last = p.read(CLOCK_PROCESS_CPUTIME);
    expect(last.ns).toBe(3n * S);
    expect(last.wall).toBeUndefined();
    const q = new VmClock(b);
    q.observe(CLOCK_PROCESS_CPUTIME, last.ns);
    pass(1n * S, b, 1n * S); // the backup's replay is not the VM's time after its last reading
    q.goLive();
    expect(q.read(CLOCK_THREAD_CPUTIME).ns).toBe(3n * S);
    pass(1n * S, b, 500_000_000n);
    expect(q.read(CLOCK_PROCESS_CPUTIME).ns).toBe(3n * S + 500_000_000n);
  });

  it('a replay of the readings ends in the state of the replica that made them, whatever they were', () => {
    const step = fc.record({ clock: fc.integer({ min: 0, max: 3 }), dt: fc.bigInt({ min: 0n, max: 10n * S }), cpu: fc.bigInt({ min: 0n, max: S }) });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 50 }), fc.bigInt({ min: -(1n << 40n), max: 1n << 40n }), (steps, offset) => {
        const { hosts, pass } = world([offset, 0n]);
        const [a, b] = hosts as [Moved, Moved];
        const p = new VmClock(a);
        p.goLive();
        const q = new VmClock(b);
        const seen = new Map<number, bigint>();
        for (const s of steps) {
          pass(s.dt, a, s.cpu);
          const r = p.read(s.clock);
          q.observe(s.clock, r.ns, r.wall);
          // each clock read never goes back
          const k = s.clock === CLOCK_THREAD_CPUTIME ? CLOCK_PROCESS_CPUTIME : s.clock;
          expect(r.ns).toBeGreaterThanOrEqual(seen.get(k) ?? 0n);
          seen.set(k, r.ns);
        }
        expect(q.state()).toEqual(p.state());
      }),
      { seed: 12, numRuns: 200 },
    );
  });

  it('reads only once live, once; unknown clock ids are RangeErrors', () => {
    const c = new VmClock(new Moved({ wall: 0n }));
    expect(() => c.read(CLOCK_MONOTONIC)).toThrow(/before goLive/);
    c.goLive();
    expect(() => c.goLive()).toThrow(/twice/);
    expect(() => c.read(4)).toThrow(RangeError);
    expect(() => c.observe(9, 0n)).toThrow(RangeError);
    expect(() => vmClockResolutionNs(4)).toThrow(RangeError);
    expect(vmClockResolutionNs(CLOCK_MONOTONIC)).toBe(1n);
    expect(vmClockResolutionNs(CLOCK_REALTIME)).toBe(1_000_000n);
    expect(vmClockResolutionNs(CLOCK_THREAD_CPUTIME)).toBe(4_000_000n);
  });

  it('a snapshot’s clock state is checked: absent is boot, a bad field is FTVM_ERR_SNAPSHOT', () => {
    expect(vmClockStateOf(undefined)).toEqual(VM_CLOCK_BOOT);
    const ok = { monoNs: 5n, monoWallNs: 6n, realNs: null, cpuNs: 7n };
    expect(vmClockStateOf(ok)).toEqual(ok);
    for (const bad of [7, { ...ok, monoNs: -1n }, { ...ok, cpuNs: 1 }, { ...ok, monoWallNs: null }, { ...ok, realNs: 1n << 64n }]) {
      let err: unknown = null;
      try {
        vmClockStateOf(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(VmClockError);
      expect((err as VmClockError).code).toBe('FTVM_ERR_SNAPSHOT');
    }
  });

  it('the thread CPU source counts this thread’s work, and not time it sleeps', () => {
    // Linux's own count of this thread's CPU time in clock ticks (utime + stime of
    // /proc/thread-self/stat, 10 ms at USER_HZ 100): computing until it moved by 7 ticks
    // takes as long as the machine makes it take, and the source must see about as much
    const ticks = (): number => {
      const f = readFileSync('/proc/thread-self/stat', 'latin1');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return Number(rest[11]) + Number(rest[12]);
    };
    const k0 = ticks();
    const t0 = threadCpuNs();
    const giveUp = performance.now() + 60_000;
    let x = 0;
    while (ticks() - k0 < 7 && performance.now() < giveUp) for (let i = 0; i < 10_000; i++) x += Math.sqrt(x + 1);
    const t1 = threadCpuNs();
    expect(ticks() - k0).toBeGreaterThanOrEqual(7);
    // at least 60 ms of the thread’s computing shows (a tick is counted whole or not at all)
    expect(t1 - t0).toBeGreaterThan(50_000_000n);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    // 100 ms asleep adds next to nothing
    expect(threadCpuNs() - t1).toBeLessThan(20_000_000n);
    expect(x).toBeGreaterThan(0);
  });
});

describe("a monotonic reading's realtime in the log", () => {
  it('rides a clock entry and comes back; a wall that is not a bigint is refused (FTVM_ERR_LOG_ENTRY)', () => {
    const entries = [
      { seq: 0, count: 5n, kind: 'clock', payload: { clock: 1, ns: 42n, wall: 1_800_000_000_123_000_000n } },
      { seq: 1, count: 6n, kind: 'clock', payload: { clock: 0, ns: 7n } },
    ] as LogEntry[];
    expect(decodeFrame(encodeFrame(entries), new EntryChecker())).toEqual(entries);
    const bad = [{ seq: 0, count: 5n, kind: 'clock', payload: { clock: 1, ns: 42n, wall: 'noon' } }] as unknown as LogEntry[];
    let err: unknown = null;
    try {
      decodeFrame(encodeFrame(bad), new EntryChecker());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LogFormatError);
    expect((err as LogFormatError).code).toBe('FTVM_ERR_LOG_ENTRY');
  });
});
