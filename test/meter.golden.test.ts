// Golden counts: every expected count below is derived by hand from the cost
// table (README, "The count"): structural operators (block, loop, else, end,
// nop, drop, unreachable, return) are free, every other operator costs 1.
// A change to the metering pass that moves any count fails here.
import { describe, expect, it } from 'vitest';
import { runGuest, type RunOptions } from '../host/runtime/guest.ts';
import { meterWithReport, WRAPPER_WEIGHT } from '../host/meter/index.ts';
import { watBytes } from './helpers.ts';

function run(name: string, opts: RunOptions = {}) {
  const calls: Array<[string, bigint | null]> = [];
  const r = runGuest(watBytes(name), {
    meter: { cacheDir: null },
    ...opts,
    onHostCall: (n, c) => calls.push([n, c]),
  });
  return { ...r, calls };
}

describe('golden counts', () => {
  it('straight-line code: 3 for const+const+add, 1 for the call, 2 for const+call', () => {
    const r = run('straight');
    expect(r.calls).toEqual([
      ['sched_yield', 4n],
      ['proc_exit', 6n],
    ]);
    expect(r).toMatchObject({ outcome: 'exit', exitCode: 0, count: 6n });
  });

  it('a loop of 10 iterations at 8 operators each, then get+call', () => {
    // per iteration: get, const, add, set, get, const, lt_u, br_if = 8
    const r = run('loop');
    expect(r.calls).toEqual([['proc_exit', 82n]]);
    expect(r).toMatchObject({ outcome: 'exit', exitCode: 10, count: 82n });
  });

  it('if/else arms, br_table and br are charged on the path actually taken', () => {
    // iteration = 4 (and-condition + if) + arm + 4 (i++) + 4 (br_if) ; arms: else 8, then 4
    // i=0 else, i=1 then, i=2 else, i=3 then: 20+16+20+16 = 72; yield at 73
    // acc: (0-1)*2=-2, -2+3=1, (1-1)*2=0, 0+3=3; 3 rem_u 3 = 0 -> $b1
    // br_table 4 (77), set 100: 2 (79), br: 1 (80), exit: get+call (82)
    const r = run('branches');
    expect(r.calls).toEqual([
      ['sched_yield', 73n],
      ['proc_exit', 82n],
    ]);
    expect(r.exitCode).toBe(100);
  });

  it('calls: the count a host sees includes the call operator and everything before it', () => {
    // quad(5): const+call (2) + quad body get,call,call (3) + 2x double (3 each) = 11
    // yield: 12. call probe (13), const (14), call yield -> 15, add (16)
    // exit(quad(1)): const (17) call (18) + 9 = 27, call exit = 28
    const r = run('calls');
    expect(r.calls).toEqual([
      ['sched_yield', 12n],
      ['sched_yield', 15n],
      ['proc_exit', 28n],
    ]);
    expect(r.exitCode).toBe(4);
  });

  it('br_if: the taken path is not charged for what it skips, and calls in its condition count', () => {
    // $b: call (1) + const in $one (2) + eqz (3) + br_if, not taken (4) + const 7 (5); yield 6
    // $c: call (7) + const (8) + br_if, taken (9), skipping two consts; yield 10; exit: const + call = 12
    const r = run('br_if_calls');
    expect(r.calls).toEqual([
      ['sched_yield', 6n],
      ['sched_yield', 10n],
      ['proc_exit', 12n],
    ]);
  });

  it('recursion: fib(10) = 55 at 2 + 89*5 + 88*13 + 1 = 1592', () => {
    // leaf: get,const,lt_s,if (4) + get (1) = 5
    // inner: 4 + (get,const,sub,call) + (get,const,sub,call) + add = 13
    const r = run('fib');
    expect(r.calls).toEqual([['proc_exit', 1592n]]);
    expect(r).toMatchObject({ exitCode: 55, count: 1592n });
  });

  it('an explicit unreachable traps at the exact count', () => {
    // yield (1), const (2), unreachable (free)
    const r = run('trap_unreachable');
    expect(r).toMatchObject({ outcome: 'trap', count: 2n });
    expect(r.trap).toMatch(/unreachable/);
  });

  it('an implicit trap reports the count of the last write-back (the host call)', () => {
    const r = run('trap_div');
    expect(r.calls).toEqual([['sched_yield', 1n]]);
    expect(r).toMatchObject({ outcome: 'trap', count: 1n });
    expect(r.trap).toMatch(/divide by zero/);
  });

  it('memory.grow past the limit fails with -1 at no extra cost', () => {
    // grow(2) from 1 page with a limit of 2 pages: -1; grow(1): old size 1
    // 3 + 3 + (get,const,eq,const,mul,get,add,call = 8) = 14
    const r = run('grow', { meter: { cacheDir: null, memoryLimitPages: 2 } });
    expect(r).toMatchObject({ exitCode: 11, count: 14n });
    // without the limit both grows succeed: 1 + 3 = 4 -> exit code 3
    expect(run('grow', { meter: { cacheDir: null, memoryLimitPages: 100 } })).toMatchObject({ exitCode: 3, count: 14n });
  });

  it('the depth limit traps at the count its frame weights give, every time', () => {
    // _start is entered through its wrapper (WRAPPER_WEIGHT plus the weights
    // the optimized wrapper and body add), then each $r adds its weight; the
    // k-th $r fails when the total passes the budget. $r #k is entered at
    // count 2 + 4(k-1): i32.const + call, then get, const, add, call per level.
    // The weights are those of the optimized code (weighFrames).
    const limit = 1000;
    const bytes = watBytes('recurse_forever');
    const { weights, sites } = meterWithReport(bytes, { depthLimit: limit });
    // binaryen names functions by index: $r is "0", its metered body "ftvm$m$0"
    const wR = weights.get('ftvm$m$0')!;
    expect(wR).toBeGreaterThan(0);
    expect(sites.get('ftvm$m$0')).toBe(1);
    let entry = WRAPPER_WEIGHT;
    for (const [name, w] of weights) if (name !== 'ftvm$m$0') entry += w * sites.get(name)!;
    let k = 1;
    while (entry + k * wR <= limit) k++;
    const expected = BigInt(2 + 4 * (k - 1));
    for (let i = 0; i < 3; i++) {
      const r = run('recurse_forever', { meter: { cacheDir: null, depthLimit: limit } });
      expect(r).toMatchObject({ outcome: 'trap', trap: 'call depth limit exceeded', count: expected });
    }
  });

  it('an if in a host call operand: its arm is counted before the host sees the count', () => {
    // const (1), if (2), else-arm const (3), call (4)
    const r = run('if_in_host_call');
    expect(r.calls).toEqual([['proc_exit', 4n]]);
    expect(r.exitCode).toBe(5);
  });

  it('the start function runs metered: exact counts at its host calls, and a deadline stops it', () => {
    // const, const, add, global.set (4), call (5)
    const r = run('start_loop', { deadline: 1_000_000n });
    expect(r.calls).toEqual([['sched_yield', 5n]]);
    expect(r).toMatchObject({ outcome: 'deadline', count: 1_000_000n });
  });
});
