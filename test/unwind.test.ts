// Snapshots of a command guest with a live wasm stack (runtime/unwind.ts):
// unwinding at a call that waits for input, taking the state, and rewinding
// must be invisible to the guest, and a fresh instance resumed from that
// state must end exactly where the uninterrupted run ended: same output,
// same count, same state digest. Any lost local, global, frame or byte of
// the memory region the unwinder borrows shows up as a different output or
// digest.
import { describe, expect, it } from 'vitest';
import { eventually } from '../host/cluster/local.ts';
import { compileGuest } from '../host/runtime/guest.ts';
import { runModule, snapshotGlobals, SnapshotError, UnwindNow, type GuestContext, type ResumePoint, type RunOptions } from '../host/runtime/instance.ts';
import { stateDigest } from '../host/runtime/replay/core.ts';
import { STACK_REGION_OFFSET } from '../host/runtime/unwind.ts';
import { replicaStartOf, sampleBytes, samples, watBytes, watText } from './helpers.ts';
import { ReplicaHandle } from '../host/cluster/replica-handle.ts';
import { meterOptions } from '../host/runtime/record.ts';
import type { FromReplica } from '../host/runtime/replay/engine.ts';
import { stream } from './replica-stream.ts';
import { afterEach } from 'vitest';

const stdin = new TextEncoder().encode('alpha\nbeta\ngamma\n\ndelta epsilon\nzeta\neta\ntheta\niota\nkappa\nlambda\n');
const guest = compileGuest(watBytes('stackwalk'), { asyncify: 'input-calls' });

interface Ended {
  stdout: Buffer;
  count: bigint | null;
  digest: string;
  outcome: string;
}

function run(opts: RunOptions): Ended {
  let ctx: GuestContext | null = null;
  const r = runModule(guest, { ...opts, onStart: (c) => (ctx = c) });
  return { stdout: Buffer.from(r.stdout), count: r.count, digest: Buffer.from(stateDigest(ctx!)).toString('hex'), outcome: r.outcome };
}

/** Runs with a snapshot wanted at the `k`-th call that waits for input; returns the run and the state taken. */
function runWithSnapshotAt(k: number): { ended: Ended; point: ResumePoint; outBefore: number } {
  let calls = 0;
  let point: ResumePoint | null = null;
  let written = 0;
  let outBefore = -1;
  const ended = run({
    stdin,
    onStdout: (b) => (written += b.length),
    unwind: {
      wanted: () => ++calls === k,
      onUnwound: (c, stack) => {
        outBefore = written;
        point = {
          count: c.meter!.count,
          memory: new Uint8Array(c.memory.buffer).slice(),
          globals: snapshotGlobals(c.instance),
          devices: c.wasi.image(),
          stack,
        };
      },
    },
  });
  expect(point, `no snapshot at call ${k}`).not.toBeNull();
  return { ended, point: point!, outBefore };
}

const handles: ReplicaHandle[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.terminate()));
});

describe('snapshots of a command guest with a live stack', () => {
  const straight = run({ stdin });
  // the calls that wait for input: one per byte, then one per level of the stack that finds end of input
  let inputCalls = 0;
  run({ stdin, unwind: { wanted: () => (inputCalls++, false), onUnwound: () => {} } });

  it('the guest runs as it would without the unwinder', () => {
    expect(straight.outcome).toBe('exit');
    expect(straight.stdout.length).toBe(20);
    const plain = compileGuest(watBytes('stackwalk'));
    const r = runModule(plain, { stdin });
    // Asyncify on top of the metering changes no count and no output.
    expect(Buffer.from(r.stdout).equals(straight.stdout)).toBe(true);
    expect(r.count).toBe(straight.count);
  });

  it('unwinding and rewinding at any input call is invisible, and a fresh instance resumed there ends the same', () => {
    expect(inputCalls).toBeGreaterThan(stdin.length);
    for (let k = 1; k <= inputCalls; k++) {
      const { ended, point, outBefore } = runWithSnapshotAt(k);
      expect(ended, `snapshot at call ${k}`).toEqual(straight);
        // the guest writes only at its end, after every input call
      expect(outBefore).toBe(0);
      expect(point.stack!.length).toBeGreaterThan(8);
      // the region the unwinder borrowed holds the guest's own bytes in the snapshot
      const resumed = run({ resume: point, unwind: { wanted: () => false, onUnwound: () => {} } });
      expect(resumed, `resumed from call ${k}`).toEqual(straight);
    }
  });

  it('a deeper stack makes a larger image, and snapshots can follow one another in one run', () => {
    const shallow = runWithSnapshotAt(2).point.stack!.length;
    const deep = runWithSnapshotAt(stdin.length - 2).point.stack!.length;
    expect(deep).toBeGreaterThan(shallow);
    // every third ask unwinds; the call made again after the rewind is asked too, at the same count
    let asks = 0;
    let taken = 0;
    const asked: bigint[] = [];
    const every = run({
      stdin,
      unwind: {
        wanted: (c) => (asked.push(c.meter!.count), ++asks % 3 === 0),
        onUnwound: () => taken++,
      },
    });
    expect(every).toEqual(straight);
    expect(taken).toBe(Math.floor(asks / 3));
    expect(asks).toBe(inputCalls + taken);
    for (let i = 2; i < asked.length; i += 3) expect(asked[i + 1], `the ask after unwind ${i}`).toBe(i + 1 < asked.length ? asked[i] : undefined);
  });

  it('a snapshot resumed twice in a chain ends the same', () => {
    const first = runWithSnapshotAt(10).point;
    let calls = 0;
    let second: ResumePoint | null = null;
    const mid = run({
      resume: first,
      unwind: {
        wanted: () => ++calls === 20,
        onUnwound: (c, stack) => {
          second = { count: c.meter!.count, memory: new Uint8Array(c.memory.buffer).slice(), globals: snapshotGlobals(c.instance), devices: c.wasi.image(), stack };
        },
      },
    });
    expect(mid).toEqual(straight);
    expect(second!.count).toBeGreaterThan(first.count);
    expect(run({ resume: second!, unwind: { wanted: () => false, onUnwound: () => {} } })).toEqual(straight);
  });

  it('the borrowed region is the guest\'s again between snapshots', () => {
    const { point } = runWithSnapshotAt(30);
    // the image starts with Asyncify's header: where its data ends, inside the region
    const end = new DataView(point.stack!.buffer, point.stack!.byteOffset).getUint32(0, true);
    expect(end).toBe(STACK_REGION_OFFSET + point.stack!.length);
  });

  it('refuses what cannot resume: a command guest without its stack, or without Asyncify', () => {
    const { point } = runWithSnapshotAt(5);
    expect(() => run({ resume: { ...point, stack: undefined }, unwind: { wanted: () => false, onUnwound: () => {} } })).toThrow(SnapshotError);
    const plain = compileGuest(watBytes('stackwalk'));
    expect(() => runModule(plain, { resume: point, unwind: { wanted: () => false, onUnwound: () => {} } })).toThrow(SnapshotError);
  });

  it('input-calls Asyncify: a command guest (kvsock) gets the unwinder and its largest frame; a reactor (kv) gets neither', () => {
    const exportsOf = (name: string): WebAssembly.ModuleExportDescriptor[] => {
      const g = samples('service').find((x) => x.name === name);
      expect(g, name).toBeDefined();
      return WebAssembly.Module.exports(compileGuest(sampleBytes(g!), { asyncify: 'input-calls' }));
    };
    const kvsock = exportsOf('kvsock').map((e) => e.name);
    expect(kvsock).toEqual(expect.arrayContaining(['asyncify_start_unwind', 'asyncify_stop_rewind', 'ftvm_unwind_frame_bytes']));
    const kv = exportsOf('kv').map((e) => e.name);
    expect(kv.filter((n) => n.startsWith('asyncify_') || n === 'ftvm_unwind_frame_bytes')).toEqual([]);
  });

  it('a guest blocked in a call that has had no effect yet unwinds from inside it (UnwindNow), and makes the call again', () => {
    // writes "w", then blocks in sock_accept on its listening socket (fd 3) with "a" in a global and memory
    const blocked = compileGuest(
      watText(`(module
        (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (global $g (mut i32) (i32.const 5))
        (func $deep (param $n i32) (result i32)
          (if (result i32) (local.get $n)
            (then (i32.add (call $deep (i32.sub (local.get $n) (i32.const 1))) (local.get $n)))
            (else (call $accept (i32.const 3) (i32.const 0) (i32.const 64)))))
        (func (export "_start")
          (i32.store8 (i32.const 2048) (i32.const 119))
          (i32.store (i32.const 32) (i32.const 2048))
          (i32.store (i32.const 36) (i32.const 1))
          (drop (call $write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
          (global.set $g (call $deep (i32.const 6)))))`),
      { asyncify: 'input-calls' },
    );
    let waits = 0;
    let atPointOutside: boolean | null = null;
    let point: ResumePoint | null = null;
    const end = (c: GuestContext | null): string => Buffer.from(stateDigest(c!)).toString('hex');
    let first: GuestContext | null = null;
    const r = runModule(blocked, {
      onStart: (c) => {
        first = c;
        atPointOutside = c.atSnapshotPoint();
      },
      wait: (c) => {
        waits++;
        // the first wait unwinds; the call made again after the rewind waits again, and nothing comes
        if (waits === 1) {
          expect(c.atSnapshotPoint()).toBe(true);
          throw new UnwindNow();
        }
        return false;
      },
      unwind: {
        wanted: () => false,
        onUnwound: (c, stack) => {
          point = { count: c.meter!.count, memory: new Uint8Array(c.memory.buffer).slice(), globals: snapshotGlobals(c.instance), devices: c.wasi.image(), stack };
        },
      },
    });
    expect(atPointOutside).toBe(false);
    expect(waits).toBe(2);
    expect(r.outcome).toBe('idle');
    expect(Buffer.from(r.stdout).toString()).toBe('w');
    expect(point).not.toBeNull();
    expect(point!.count).toBe(r.count);
    // a fresh instance resumed there blocks in the same call at the same count, in the same state, and writes nothing more
    let second: GuestContext | null = null;
    const again = runModule(blocked, { resume: point!, onStart: (c) => (second = c), wait: () => false, unwind: { wanted: () => false, onUnwound: () => {} } });
    expect(again.outcome).toBe('idle');
    expect(again.count).toBe(r.count);
    expect(Buffer.from(again.stdout).length).toBe(0);
    expect(end(second)).toBe(end(first));
  });

  it('a primary unwound from a blocked read after other messages came in goes on as before: a backup replaying its whole log from boot never diverges', async () => {
    // serves the first connection only: echoes what it reads, in a blocking fd_read
    const one = watBytes('oneconn');
    const start = replicaStartOf(one, ['one']);
    const compiled = compileGuest(one, { ...meterOptions(start), asyncify: 'input-calls' });
    const made = (role: 'primary' | 'backup') => {
      const h = new ReplicaHandle({ vm: 'one', module: one, start, role, compiled });
      handles.push(h);
      const said: FromReplica[] = [];
      h.on('message', (m) => said.push(m));
      return { h, said };
    };
    const p = made('primary');
    const b = made('backup');
    const log = stream(p, () => b.h);
    const send = (conn: number, text: string) => p.h.send({ t: 'msg', msg: { conn, bytes: new TextEncoder().encode(text), eof: false } });
    const echoed = (text: string) => eventually(`the echo of ${text}`, () => (log.outputs.some((o) => Buffer.from(o.bytes).toString() === text) ? true : undefined));
    send(1, 'a');
    await echoed('a');
    // another connection's message comes in while the guest waits in fd_read on the first
    send(2, 'b');
    await eventually('b logged', () => (log.entries.some((e) => e.kind === 'interrupt' && Buffer.from((e.payload as { bytes: Uint8Array }).bytes ?? []).toString() === 'b') ? true : undefined));
    p.h.send({ t: 'snapshot', id: 1 });
    await eventually('the snapshot', () => (p.said.some((m) => m.t === 'snapshot') ? true : undefined));
    send(1, 'c');
    await echoed('c');
    // the backup replayed all of it, the unwind and the call made again included
    const last = log.entries.at(-1)!;
    await eventually('the backup caught up', () => (b.said.some((m) => m.t === 'progress' && m.count >= last.count) ? true : undefined));
    expect(b.said.filter((m) => m.t === 'error')).toEqual([]);
    await p.h.terminate();
    b.h.send({ t: 'golive' });
    const live = (await eventually('live', () => b.said.find((m) => m.t === 'live'))) as Extract<FromReplica, { t: 'live' }>;
    const after = stream(b, () => null, live.seq);
    b.h.send({ t: 'msg', msg: { conn: 1, bytes: new TextEncoder().encode('d'), eof: false } });
    await eventually('d echoed by the backup gone live', () => (after.outputs.some((o) => Buffer.from(o.bytes).toString() === 'd') ? true : undefined));
    expect(b.said.filter((m) => m.t === 'error')).toEqual([]);
  }, 60_000);
});
