// Interrupts: delivered only at check points, at an exact count that the
// recording logs and the replay forces. Replays end in the same state for any
// arrival pattern, and a tick moved by one count in the log is caught.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LogWriter } from '../host/log/writer.ts';
import { encodeFrame, encodeHeader, readLog, type LogEntry } from '../host/log/format.ts';
import { DivergenceError, recordGuest, replayGuest, type RecordOptions } from '../host/runtime/record.ts';
import { INTERRUPT_NIC, LiveTimer, MergedSources, ScriptedMessages, ScriptedTicks, TIMER_TICK } from '../host/runtime/events.ts';
import { runGuest } from '../host/runtime/guest.ts';
import { watBytes, watText } from './helpers.ts';

const timer = watBytes('timer');

function record(opts: Partial<RecordOptions>) {
  const chunks: Uint8Array[] = [];
  const run = recordGuest(timer, new LogWriter((b) => chunks.push(b)), { args: ['timer'], meter: { cacheDir: null }, ...opts });
  return { run, entries: readLog(Buffer.concat(chunks)) };
}

const interrupts = (entries: LogEntry[]) => entries.filter((e) => e.kind === 'interrupt');

describe('interrupts', () => {
  it('arrive at the first check point at or past their time and replay at the same counts (property, seeded)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.bigInt({ min: 100n, max: 23_000_000n }), { maxLength: 12 }), (arrivals) => {
        const sorted = [...arrivals].sort((a, b) => (a < b ? -1 : 1));
        const r = record({ interrupts: new ScriptedTicks(sorted), pollEvery: 50_000n });
        const ticks = interrupts(r.entries);
        expect(ticks.length).toBe(sorted.length);
        // each arrives no earlier than scheduled (the timer is on from count 3), and at most one poll interval (plus a loop iteration) later
        ticks.forEach((t, i) => {
          expect(t.count >= sorted[i]!).toBe(true);
          expect(t.count - sorted[i]! <= 50_000n + 16n).toBe(true);
        });
        expect(r.run.exitCode).toBe(sorted.length);
        const replay = replayGuest(timer, r.entries, { cacheDir: null });
        expect(replay).toMatchObject({ exitCode: r.run.exitCode, count: r.run.count, digest: r.run.digest });
      }),
      { seed: 7, numRuns: 25 },
    );
  }, 120_000);

  it('a tick moved by one count in the log is a divergence', () => {
    const r = record({ interrupts: new ScriptedTicks([1_000_000n, 5_000_000n]) });
    const copy = r.entries.map((e) => ({ ...e }) as LogEntry);
    const i = copy.findIndex((e) => e.kind === 'interrupt');
    copy[i] = { ...copy[i]!, count: copy[i]!.count + 1n } as LogEntry;
    const moved = readLog(Buffer.concat([encodeHeader(), encodeFrame(copy)]));
    expect(() => replayGuest(timer, moved, { cacheDir: null })).toThrow(DivergenceError);
    expect(() => replayGuest(timer, moved, { cacheDir: null })).toThrow(/interrupt at count/);
  });

  it('a live timer on the host clock: the recording decides when, the replay follows', () => {
    const r = record({ interrupts: new LiveTimer() });
    const replay = replayGuest(timer, r.entries, { cacheDir: null });
    expect(replay).toMatchObject({ exitCode: r.run.exitCode, count: r.run.count, digest: r.run.digest });
    expect(interrupts(r.entries).length).toBe(r.run.exitCode);
  });

  it('without a recording host, a guest that programs a timer is told why it cannot run', () => {
    expect(() => runGuest(timer, { meter: { cacheDir: null } })).toThrow(/interrupts are delivered under ftvm record/);
  });

  it("a handler's host calls are logged at their own counts, whatever the host's poll interval", () => {
    // The handler does some work, then reads the clock: its clock entry must follow its
    // interrupt by that work's cost, the same at every tick and for every poll interval.
    const guest = watText(`
(module
  (import "ftvm_io" "timer_set" (func $timer_set (param i64)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (global $i (mut i32) (i32.const 0))
  (global $acc (mut i32) (i32.const 0))
  (func (export "ftvm_interrupt") (param $kind i32)
    (global.set $acc (i32.mul (i32.add (global.get $acc) (i32.const 7)) (i32.const 3)))
    (global.set $acc (i32.xor (global.get $acc) (global.get $i)))
    (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 64))))
  (func (export "_start")
    (call $timer_set (i64.const 1000000))
    (loop $l
      (global.set $i (i32.add (global.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (global.get $i) (i32.const 1000000))))
    (call $exit (i32.const 0))))`);
    const gaps = (pollEvery: bigint): bigint[] => {
      const chunks: Uint8Array[] = [];
      recordGuest(guest, new LogWriter((b) => chunks.push(b)), {
        args: ['g'],
        meter: { cacheDir: null },
        interrupts: new ScriptedTicks([100_000n, 1_000_000n, 2_500_000n]),
        pollEvery,
      });
      const entries = readLog(Buffer.concat(chunks));
      const out: bigint[] = [];
      entries.forEach((e, i) => {
        if (e.kind === 'interrupt') {
          const next = entries[i + 1]!;
          expect(next.kind).toBe('clock');
          out.push(next.count - e.count);
        }
      });
      expect(replayGuest(guest, entries, { cacheDir: null }).outcome).toBe('exit');
      return out;
    };
    const a = gaps(1000n);
    expect(a.length).toBe(3);
    expect(a[0]! > 0n).toBe(true);
    expect(new Set(a).size).toBe(1);
    expect(gaps(50_000n)).toEqual(a);
  });

  it('interrupts are masked while the handler runs: it is never re-entered, and what came meanwhile follows it', () => {
    // The handler loops long enough for several ticks to fall due inside it; it records the
    // deepest nesting it saw, which is the exit code.
    const guest = watText(`
(module
  (import "ftvm_io" "timer_set" (func $timer_set (param i64)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (global $depth (mut i32) (i32.const 0))
  (global $max (mut i32) (i32.const 0))
  (global $calls (mut i32) (i32.const 0))
  (global $i (mut i32) (i32.const 0))
  (func (export "ftvm_interrupt") (param $kind i32) (local $j i32)
    (global.set $depth (i32.add (global.get $depth) (i32.const 1)))
    (if (i32.gt_u (global.get $depth) (global.get $max)) (then (global.set $max (global.get $depth))))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (loop $l
      (local.set $j (i32.add (local.get $j) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $j) (i32.const 50000))))
    (global.set $depth (i32.sub (global.get $depth) (i32.const 1))))
  (func (export "_start")
    (call $timer_set (i64.const 1000000))
    (loop $l
      (global.set $i (i32.add (global.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (global.get $i) (i32.const 200000))))
    (call $exit (i32.add (i32.mul (global.get $calls) (i32.const 16)) (global.get $max)))))`);
    const ticks = [10_000n, 20_000n, 30_000n, 40_000n, 50_000n];
    const chunks: Uint8Array[] = [];
    const run = recordGuest(guest, new LogWriter((b) => chunks.push(b)), {
      args: ['g'],
      meter: { cacheDir: null },
      interrupts: new ScriptedTicks(ticks),
      pollEvery: 1000n,
    });
    expect(run.exitCode! & 15).toBe(1); // never nested
    expect(run.exitCode! >> 4).toBe(ticks.length); // and no tick lost
    expect(replayGuest(guest, readLog(Buffer.concat(chunks)), { cacheDir: null }).exitCode).toBe(run.exitCode);
  });
});

describe('timed waits in the interrupt sources', () => {
  // A timed wait (poll_oneoff with a clock) ends at the first interrupt or at its timeout. The
  // sources decide which from their own clock; the time is injected, so nothing here sleeps long.
  it('LiveTimer: a tick due before the timeout ends the wait with it; a timeout before the tick ends it with none', () => {
    let now = 1_000n;
    const t = new LiveTimer(() => now);
    t.timerSet(500n);
    now = 1_400n; // the tick is due at 1500: 100 ns away
    expect(t.wait(0n, 1_000_000n)).toEqual([TIMER_TICK]);
    now = 2_000n;
    t.timerSet(10_000_000_000n); // 10 s away
    expect(t.wait(0n, 0n)).toEqual([]);
    // an unarmed timer never ticks: an untimed wait gets nothing, a timed one times out
    const off = new LiveTimer(() => 0n);
    expect(off.wait(0n, null)).toEqual([]);
    expect(off.wait(0n, 1n)).toEqual([]);
  });

  it('MergedSources: a scripted message ends a timed wait at once, before a live timer is asked', () => {
    const msg = { conn: 1, bytes: new Uint8Array([1]), eof: false };
    let asked = false;
    const timer = new LiveTimer(() => 0n);
    const spy = { ...timer, timerSet: () => {}, armed: () => false, poll: () => [], wait: () => ((asked = true), []) };
    const m = new MergedSources(new ScriptedMessages([{ count: 1n << 62n, msg }]), spy);
    expect(m.wait(5n, 60_000_000_000n)).toEqual([{ kind: INTERRUPT_NIC, msg }]);
    expect(asked).toBe(false);
    // nothing scripted left: the timed wait goes to the timer with what is left of the timeout
    expect(m.wait(6n, 0n)).toEqual([]);
    expect(asked).toBe(true);
  });
});
