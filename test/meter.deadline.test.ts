// Deadlines and the depth limit: execution stops at the first check point whose
// count reaches the deadline, at the same count on every run; an infinite loop
// is preempted; and deep recursion traps at the deterministic depth limit, at
// the same count on the main thread and in a worker thread.
import { describe, expect, it } from 'vitest';
import { runGuest } from '../host/runtime/guest.ts';
import { runGuestInWorker } from '../host/runtime/worker.ts';
import { sampleBytes, samples, watBytes, watText } from './helpers.ts';

const sample = (name: string) => samples().find((g) => g.name === name)!;

describe('deadlines', () => {
  it('stop at the first loop header at or past the deadline', () => {
    // loop.wat: headers at counts 0, 8, 16, ..., 72 (8 operators per iteration)
    const stops = [1n, 8n, 9n, 50n, 72n].map((d) => runGuest(watBytes('loop'), { deadline: d }));
    expect(stops.map((r) => r.outcome)).toEqual(['deadline', 'deadline', 'deadline', 'deadline', 'deadline']);
    expect(stops.map((r) => r.count)).toEqual([8n, 8n, 16n, 56n, 72n]);
    // Past the last header the guest finishes normally.
    expect(runGuest(watBytes('loop'), { deadline: 73n })).toMatchObject({ outcome: 'exit', exitCode: 10, count: 82n });
  });

  it('an infinite loop is preempted exactly at its deadline, every time', () => {
    // infinite.wat: one br (cost 1) per iteration, so there is a header at every count.
    for (const d of [1000n, 1001n, 123457n]) {
      expect(runGuest(watBytes('infinite'), { deadline: d })).toMatchObject({ outcome: 'deadline', count: d });
    }
  });

  it('the host can move the deadline from a check point and let the guest go on', () => {
    const seen: bigint[] = [];
    const r = runGuest(watBytes('infinite'), {
      deadline: 100n,
      onCheck: (count, meter) => {
        seen.push(count);
        if (seen.length < 5) meter.setDeadline(count + 100n);
      },
    });
    expect(seen).toEqual([100n, 200n, 300n, 400n, 500n]);
    expect(r).toMatchObject({ outcome: 'deadline', count: 500n });
  });

  it('a compute guest stops at the same count on every run, and earlier deadlines stop earlier', { timeout: 120_000 }, () => {
    const g = sample('interp');
    const args = [g.name, ...g.args_test];
    const full = runGuest(sampleBytes(g), { args });
    const d = full.count! / 3n;
    const a = runGuest(sampleBytes(g), { args, deadline: d });
    const b = runGuest(sampleBytes(g), { args, deadline: d });
    expect(a.outcome).toBe('deadline');
    expect(a.count! >= d).toBe(true);
    expect(b.count).toBe(a.count);
    const earlier = runGuest(sampleBytes(g), { args, deadline: d / 2n });
    expect(earlier.count! < a.count!).toBe(true);
  });

  it('preemption never changes where a guest traps or what it prints', () => {
    const g = sample('trap');
    const free = runGuest(sampleBytes(g), { args: ['trap', '500'] });
    const sliced = runGuest(sampleBytes(g), {
      args: ['trap', '500'],
      deadline: 777n,
      onCheck: (count, meter) => meter.setDeadline(count + 777n),
    });
    expect(sliced).toMatchObject({ outcome: 'trap', count: free.count, trap: free.trap });
    expect(sliced.stdout).toEqual(free.stdout);
  });
});

describe('the call-depth limit', () => {
  it('deep recursion traps at the same count on the main thread and in worker threads', async () => {
    const g = sample('recurse');
    const bytes = sampleBytes(g);
    const args = ['recurse', '100000'];
    const main = runGuest(bytes, { args });
    expect(main).toMatchObject({ outcome: 'trap', trap: 'call depth limit exceeded' });
    // A worker with V8's default stack, and one with a much larger stack: the
    // engine's limit differs, the guest's does not.
    const small = await runGuestInWorker(bytes, { args });
    const large = await runGuestInWorker(bytes, { args, stackSizeMb: 32 });
    for (const r of [small, large]) {
      expect(r).toMatchObject({ outcome: 'trap', trap: 'call depth limit exceeded', count: main.count });
    }
  }, 300_000);

  it('the limit is configurable and a deeper budget lets deeper recursion finish', () => {
    const bytes = sampleBytes(sample('recurse'));
    const args = ['recurse', '300'];
    expect(runGuest(bytes, { args, meter: { depthLimit: 1000 } }).outcome).toBe('trap');
    expect(runGuest(bytes, { args }).outcome).toBe('exit');
  });
});

/**
 * A recursion $r(n) that calls, once, at its bottom, a leaf holding 2000 live
 * v128 values (32 KB of frame in V8's baseline tier); exits with (n + leaf) & 255.
 * The values are loaded before a store that the optimizer cannot move them
 * past, so they stay live in locals after optimizing (computed values would
 * be folded into one expression and the frame would shrink).
 */
function leafRecursion(depth: number): Uint8Array {
  const n = 2000;
  let locals = '';
  let init = '';
  let sum = '(v128.const i32x4 0 0 0 0)';
  for (let i = 0; i < n; i++) {
    locals += `(local $v${i} v128)`;
    init += `(local.set $v${i} (v128.load offset=${i * 16} (local.get 0)))`;
    sum = `(i32x4.add ${sum} (local.get $v${i}))`;
  }
  return watText(`(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func $leaf (param i32) (result i32) ${locals} ${init}
      (v128.store (local.get 0) (v128.const i32x4 1 2 3 4)) (i32x4.extract_lane 0 ${sum}))
    (func $r (param i32) (result i32)
      (if (result i32) (i32.eqz (local.get 0))
        (then (call $leaf (local.get 0)))
        (else (i32.add (call $r (i32.sub (local.get 0) (i32.const 1))) (i32.const 1)))))
    (func (export "_start") (call $exit (i32.and (call $r (i32.const ${depth})) (i32.const 255)))))`);
}

describe('the depth limit decides, never the native stack, with the frames that actually run', () => {
  it('a recursion that calls a large leaf once finishes on every thread as on the bare engine, at depth 100 and 3000', async () => {
    // The leaf is not inlined into the recursion (its frame would then be paid
    // at every level), and its frame is checked for once, on top: so the
    // default budget lets this run as deep as the engine itself does.
    for (const depth of [100, 3000]) {
      const bytes = leafRecursion(depth);
      const bare = runGuest(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>));
      expect(bare.outcome).toBe('exit');
      const main = runGuest(bytes, { meter: { cacheDir: null } });
      expect(main).toMatchObject({ outcome: 'exit', exitCode: bare.exitCode });
      for (const stackSizeMb of [4, 16]) {
        const w = await runGuestInWorker(bytes, { stackSizeMb, meter: { cacheDir: null } });
        expect(w).toMatchObject({ outcome: 'exit', exitCode: bare.exitCode, count: main.count });
      }
    }
  }, 900_000);

  it('far deeper, it traps at the depth limit at the same count on the main thread and in 4 and 16 MiB workers', async () => {
    const bytes = leafRecursion(300_000);
    const main = runGuest(bytes, { meter: { cacheDir: null } });
    expect(main).toMatchObject({ outcome: 'trap', trap: 'call depth limit exceeded' });
    for (const stackSizeMb of [4, 16]) {
      const w = await runGuestInWorker(bytes, { stackSizeMb, meter: { cacheDir: null } });
      expect(w).toMatchObject({ outcome: 'trap', trap: 'call depth limit exceeded', count: main.count });
    }
  }, 900_000);

  it('the leaf frame counts where it sits: a budget too small for the leaf alone traps before calling it', () => {
    // 2000 v128 locals are 4000 slots: a budget of 3000 cannot hold the leaf
    // at depth 1, whatever the recursion's own frames weigh.
    const bytes = leafRecursion(1);
    expect(runGuest(bytes, { meter: { cacheDir: null, depthLimit: 3000 } })).toMatchObject({ outcome: 'trap', trap: 'call depth limit exceeded' });
    expect(runGuest(bytes, { meter: { cacheDir: null, depthLimit: 6000 } })).toMatchObject({ outcome: 'exit' });
  }, 120_000);
});

describe('re-entrant calls from the host', () => {
  it('do not pile up depth: a host import that calls an export many times', async () => {
    // g (an export) calls a guest function and the host import `loop`,
    // which calls g again, up to 500 times in a row.
    const { watText } = await import('./helpers.ts');
    const { compileModule, meter } = await import('../host/meter/index.ts');
    const { MeterHost } = await import('../host/runtime/meter-host.ts');
    const bytes = watText(`(module
      (import "env" "again" (func $again))
      (func $leaf (result i32) (i32.const 1))
      (func (export "g") (drop (call $leaf)) (call $again)))`);
    const mh = new MeterHost();
    let calls = 0;
    let g: () => void = () => {};
    const instance = new WebAssembly.Instance(compileModule(meter(bytes, { cacheDir: null, depthLimit: 20_000 }).binary), {
      ftvm: mh.imports,
      env: {
        again: () => {
          if (++calls < 500) g();
        },
      },
    });
    mh.bind(instance);
    mh.enter();
    g = instance.exports.g as () => void;
    // nested: each call of g is inside the previous one's host call, 500 deep
    expect(() => g()).toThrow(/depth limit/);
    calls = 0;
    // sequential: the host calls g 500 times one after the other from the top
    let sequential = 0;
    const mh2 = new MeterHost();
    const instance2 = new WebAssembly.Instance(compileModule(meter(bytes, { cacheDir: null, depthLimit: 20_000 }).binary), {
      ftvm: mh2.imports,
      env: { again: () => void sequential++ },
    });
    mh2.bind(instance2);
    mh2.enter();
    for (let i = 0; i < 500; i++) (instance2.exports.g as () => void)();
    expect(sequential).toBe(500);
  });
});

describe('a guest in a worker thread', () => {
  it('that never ends is stopped by the timeout, and the caller is told', async () => {
    const started = Date.now();
    await expect(runGuestInWorker(watBytes('infinite'), { timeoutMs: 1500 })).rejects.toMatchObject({ code: 'FTVM_ERR_WORKER_TIMEOUT' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
  }, 30_000);
});
