// Modules of any shape: deep nesting of blocks, ifs and loops, long operand
// chains, deep expression trees, huge functions and many functions are
// metered without a JavaScript stack overflow, run to the same output as the
// unmetered module, and count the same on every metering. The modules are
// written here as raw bytes (not through binaryen's text parser), so nothing
// but the pass under test walks them.
import { describe, expect, it } from 'vitest';
import { runGuest } from '../host/runtime/guest.ts';
import { compileGuestAsync } from '../host/runtime/compile.ts';
import { runModule, type RunResult } from '../host/runtime/instance.ts';
import binaryen from 'binaryen';
import { clearMemoryCache, DEFAULT_DEPTH_LIMIT, instrumentModule, meter, weighFrames } from '../host/meter/index.ts';
import { s32, u32 } from './big-module.ts';

// ---- a minimal wasm binary writer ----------------------------------------------

const uleb = u32;
const sleb = s32;

/** Appends `src` to `dst` without spreading (spread arguments are bounded by the stack). */
function append(dst: number[], src: ArrayLike<number>): void {
  for (let i = 0; i < src.length; i++) dst.push(src[i]!);
}

function section(id: number, body: number[]): number[] {
  const out = [id, ...uleb(body.length)];
  append(out, body);
  return out;
}

const I32 = 0x7f;

interface Func {
  /** index into TYPES */
  type: number;
  /** i32 locals beyond the parameters */
  locals: number;
  code: number[];
}

// Types: 0 () -> (); 1 (i32) -> (); 2 (i32) -> (i32); 3 (i32 i32 i32 i32) -> (i32)
const TYPES = [
  [0x60, 0, 0],
  [0x60, 1, I32, 0],
  [0x60, 1, I32, 1, I32],
  [0x60, 4, I32, I32, I32, I32, 1, I32],
];
const IMPORTS = 2; // proc_exit = 0, fd_write = 1

/**
 * A WASI command: imports proc_exit and fd_write, one page of memory, and
 * `funcs` (the first is _start). Function indices start at IMPORTS.
 */
function wasiModule(funcs: Func[]): Uint8Array {
  const types: number[] = [...uleb(TYPES.length)];
  for (const t of TYPES) append(types, t);
  const name = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s)];
  const imports = [
    ...uleb(2),
    ...name('wasi_snapshot_preview1'), ...name('proc_exit'), 0x00, 1,
    ...name('wasi_snapshot_preview1'), ...name('fd_write'), 0x00, 3,
  ];
  const fsec: number[] = [...uleb(funcs.length)];
  for (const f of funcs) append(fsec, uleb(f.type));
  const mem = [1, 0x00, 1];
  const exps = [...uleb(2), ...name('_start'), 0x00, ...uleb(IMPORTS), ...name('memory'), 0x02, 0];
  const code: number[] = [...uleb(funcs.length)];
  for (const f of funcs) {
    const body: number[] = f.locals ? [1, ...uleb(f.locals), I32] : [0];
    append(body, f.code);
    body.push(0x0b);
    append(code, uleb(body.length));
    append(code, body);
  }
  const out: number[] = [0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0];
  append(out, section(1, types));
  append(out, section(2, imports));
  append(out, section(3, fsec));
  append(out, section(5, mem));
  append(out, section(7, exps));
  append(out, section(10, code));
  return new Uint8Array(out);
}

const op = {
  block: [0x02, 0x40],
  blockI32: [0x02, I32],
  loop: [0x03, 0x40],
  if: [0x04, 0x40],
  else: [0x05],
  end: [0x0b],
  br: (l: number) => [0x0c, ...uleb(l)],
  brIf: (l: number) => [0x0d, ...uleb(l)],
  return: [0x0f],
  call: (f: number) => [0x10, ...uleb(f)],
  drop: [0x1a],
  get: (l: number) => [0x20, ...uleb(l)],
  set: (l: number) => [0x21, ...uleb(l)],
  tee: (l: number) => [0x22, ...uleb(l)],
  i32: (v: number) => [0x41, ...sleb(v)],
  store: [0x36, 2, 0],
  add: [0x6a],
  sub: [0x6b],
  mul: [0x6c],
  xor: [0x73],
  eqz: [0x45],
  ltU: [0x49],
};

/**
 * `_start` code that prints the i32 the code in `compute` leaves on the
 * stack as 4 raw bytes on stdout, then exits 0. Memory: [0..4) the value,
 * [8..16) one iovec, [16..20) nwritten.
 */
function printAndExit(compute: number[]): number[] {
  const c: number[] = [];
  append(c, op.i32(0));
  append(c, compute);
  append(c, op.store);
  for (const [addr, v] of [[8, 0], [12, 4]] as const) {
    append(c, op.i32(addr));
    append(c, op.i32(v));
    append(c, op.store);
  }
  append(c, [...op.i32(1), ...op.i32(8), ...op.i32(1), ...op.i32(16), ...op.call(1), ...op.drop]);
  append(c, [...op.i32(0), ...op.call(0)]);
  return c;
}

// ---- the shapes ------------------------------------------------------------------

/** A switch of `cases` cases as Go lowers it: a br_table into cases+1 nested blocks; case k returns 7k+1. Called for 0..cases and summed. */
function switchModule(cases: number): Uint8Array {
  const sw: number[] = [];
  for (let i = 0; i <= cases; i++) append(sw, op.block);
  append(sw, op.get(0));
  sw.push(0x0e);
  append(sw, uleb(cases));
  for (let i = 0; i < cases; i++) append(sw, uleb(i));
  append(sw, uleb(cases));
  for (let k = 0; k <= cases; k++) append(sw, [...op.end, ...op.i32(7 * k + 1), ...op.return]);
  append(sw, op.i32(0)); // never reached; keeps the function's end typed
  // _start: sum = Σ sw(i) for i in 0..cases (local 0: i, local 1: sum)
  const loop: number[] = [];
  append(loop, [...op.block, ...op.loop]);
  append(loop, [...op.get(1), ...op.get(0), ...op.call(IMPORTS + 1), ...op.add, ...op.set(1)]);
  append(loop, [...op.get(0), ...op.i32(1), ...op.add, ...op.tee(0), ...op.i32(cases + 1), ...op.ltU, ...op.brIf(0)]);
  append(loop, [...op.end, ...op.end]);
  return wasiModule([
    { type: 0, locals: 2, code: [...loop, ...printAndExit(op.get(1))] },
    { type: 2, locals: 0, code: sw },
  ]);
}

/** `depth` nested ifs on (local 0 > 0 ... ) each adding to local 1, the innermost with a loop. */
function nestedIfs(depth: number): Uint8Array {
  const c: number[] = [...op.i32(depth), ...op.set(0)];
  for (let i = 0; i < depth; i++) {
    append(c, [...op.get(0), ...op.if, ...op.get(1), ...op.i32(i + 1), ...op.add, ...op.set(1)]);
    append(c, [...op.get(0), ...op.i32(1), ...op.sub, ...op.set(0)]);
  }
  for (let i = 0; i < depth; i++) append(c, i % 2 ? [...op.end] : [...op.else, ...op.get(1), ...op.i32(1000), ...op.xor, ...op.set(1), ...op.end]);
  return wasiModule([{ type: 0, locals: 2, code: [...c, ...printAndExit(op.get(1))] }]);
}

/** `depth` nested loops, each run once (a check point each), the innermost counting to 100. */
function nestedLoops(depth: number): Uint8Array {
  const c: number[] = [];
  for (let i = 0; i < depth; i++) append(c, [...op.loop, ...op.get(1), ...op.i32(1), ...op.add, ...op.set(1)]);
  append(c, [...op.get(0), ...op.i32(1), ...op.add, ...op.tee(0), ...op.i32(100), ...op.ltU, ...op.brIf(0)]);
  for (let i = 0; i < depth; i++) append(c, op.end);
  return wasiModule([{ type: 0, locals: 2, code: [...c, ...printAndExit([...op.get(0), ...op.get(1), ...op.add])] }]);
}

/** A left-deep tree: ((((x + 1) * 3) + 2) ...) `depth` operators deep. */
function leftDeep(depth: number): number[] {
  const c: number[] = [...op.get(0)];
  for (let i = 0; i < depth; i++) append(c, i % 2 ? [...op.i32(i), ...op.add] : [...op.i32(3), ...op.mul]);
  return c;
}

/** A right-deep tree: (1 + (2 + (3 + ... x))), `depth` operands waiting on the stack. */
function rightDeep(depth: number): number[] {
  const c: number[] = [];
  for (let i = 0; i < depth; i++) append(c, op.i32(i));
  append(c, op.get(0));
  for (let i = 0; i < depth; i++) append(c, i % 2 ? op.xor : op.add);
  return c;
}

/** Nested blocks with values: (block (result i32) (block (result i32) ... (local.get 0)) + k ...). */
function valueBlocks(depth: number): number[] {
  const c: number[] = [];
  for (let i = 0; i < depth; i++) append(c, op.blockI32);
  append(c, op.get(0));
  for (let i = 0; i < depth; i++) append(c, [...op.i32(i), ...op.add, ...op.end]);
  return c;
}

/** Calls nested as operands: f(f(f(...f(x)))) where f(v) = v * 3 + 1. */
function nestedCalls(depth: number): Uint8Array {
  const c: number[] = [...op.get(0)];
  for (let i = 0; i < depth; i++) append(c, op.call(IMPORTS + 1));
  return wasiModule([
    { type: 0, locals: 1, code: printAndExit(c) },
    { type: 2, locals: 0, code: [...op.get(0), ...op.i32(3), ...op.mul, ...op.i32(1), ...op.add] },
  ]);
}

/** One function of `statements` statements (local 1 = local 1 * 31 + k). */
function hugeFunction(statements: number): Uint8Array {
  const c: number[] = [];
  for (let k = 0; k < statements; k++) append(c, [...op.get(1), ...op.i32(31), ...op.mul, ...op.i32(k), ...op.add, ...op.set(1)]);
  return wasiModule([{ type: 0, locals: 2, code: [...c, ...printAndExit(op.get(1))] }]);
}

/** `n` functions; function k returns its argument * 5 + k; _start chains them all. */
function manyFunctions(n: number): Uint8Array {
  // One call after another, each taking the last one's result from a local (nesting
  // the calls as operands instead is the deep shape of 'calls nested ... deep').
  const c: number[] = [...op.i32(1), ...op.set(0)];
  for (let k = 0; k < n; k++) append(c, [...op.get(0), ...op.call(IMPORTS + 1 + k), ...op.set(0)]);
  append(c, op.get(0));
  const funcs: Func[] = [{ type: 0, locals: 1, code: printAndExit(c) }];
  for (let k = 0; k < n; k++) funcs.push({ type: 2, locals: 0, code: [...op.get(0), ...op.i32(5), ...op.mul, ...op.i32(k), ...op.add] });
  return wasiModule(funcs);
}

/** A function computing `expr` over its argument (local 0), called by _start with 7. */
function exprModule(expr: number[]): Uint8Array {
  return wasiModule([
    { type: 0, locals: 1, code: printAndExit([...op.i32(7), ...op.call(IMPORTS + 1)]) },
    { type: 2, locals: 0, code: expr },
  ]);
}

// ---- the check -------------------------------------------------------------------

/**
 * Runs `bytes` unmetered straight on the engine, through the unmetered
 * pipeline, and metered twice (metered afresh each time): the outputs agree
 * and the two metered counts are equal. Returns the count. The optimizer
 * runs: functions beyond its budget (OPTIMIZE_NODES_MAX, OPTIMIZE_DEPTH_MAX)
 * are left as instrumented, so every shape here is metered in seconds.
 * `thread`: meter as ftvm run and the hosts do, on the metering thread
 * (compileGuestAsync), for shapes that binaryen's optimizer makes deeper
 * than this thread's stack (sinking a chain of statements into one
 * expression); else on this thread, which costs no thread start.
 */
async function sameEverywhere(bytes: Uint8Array, thread = false): Promise<bigint> {
  expect(WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)).toBe(true);
  const raw = runGuest(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>));
  expect(raw).toMatchObject({ outcome: 'exit', exitCode: 0 });
  expect(raw.stdout.length).toBe(4);
  const run = async (variant: 'plain' | 'ftvm'): Promise<RunResult> => {
    clearMemoryCache();
    const meter = { variant, cacheDir: null };
    return thread ? runModule((await compileGuestAsync(bytes, meter)).module) : runGuest(bytes, { meter });
  };
  const plain = await run('plain');
  const a = await run('ftvm');
  const b = await run('ftvm');
  for (const r of [plain, a, b]) {
    expect(r).toMatchObject({ outcome: 'exit', exitCode: 0 });
    expect(Buffer.from(r.stdout).equals(Buffer.from(raw.stdout))).toBe(true);
  }
  expect(a.count).not.toBeNull();
  expect(b.count).toBe(a.count);
  return a.count!;
}

const SLOW = 300_000;

describe('modules of any shape are metered, run as unmetered, and count deterministically', () => {
  it('a br_table switch of 3500 cases in 3501 nested blocks (the shape Go emits)', async () => {
    const n = 3500;
    const count = await sameEverywhere(switchModule(n));
    // Each call: get, br_table, const (3) and the call itself with its
    // operand (get, call); each iteration adds get/add/set and the loop test
    // get,const,add,tee,const,lt_u,br_if: 3 + 2 + 3 + 7 = 15 per case; then
    // the printed value is one local.get.
    expect(count).toBe(BigInt(15 * (n + 1)) + 1n + PRINT_AND_EXIT);
  }, SLOW);

  it('ifs nested 2000 deep', () => sameEverywhere(nestedIfs(2000)), SLOW);

  it('ifs nested 300 deep (within the optimizer\'s budget)', () => sameEverywhere(nestedIfs(300)), SLOW);

  it('loops nested 1500 deep, each a check point', () => sameEverywhere(nestedLoops(1500)), SLOW);

  it('an expression tree 2000 operators deep (left-deep)', async () => {
    const count = await sameEverywhere(exprModule(leftDeep(2000)));
    // the chain: get + 2000 x (const, op) = 4001; the call: const, call = 2
    expect(count).toBe(4001n + 2n + PRINT_AND_EXIT);
  }, SLOW);

  it('an operand chain 2000 values long (right-deep)', () => sameEverywhere(exprModule(rightDeep(2000))), SLOW);

  it('blocks with values nested 1000 deep', () => sameEverywhere(exprModule(valueBlocks(1000))), SLOW);

  it('calls nested 1000 deep as operands', () => sameEverywhere(nestedCalls(1000)), SLOW);

  it('one function of 30000 dependent statements (beyond the optimizer\'s budget)', () => sameEverywhere(hugeFunction(30_000)), SLOW);

  it('3000 dependent statements (within the budget)', () => sameEverywhere(hugeFunction(3000), true), SLOW);

  // (every one is inlined into the caller, INLINE_COMBINED_BYTES_MAX notwithstanding: 14 nodes each; the local
  // passes on that caller then take time that grows with the square of their number, 4.5 s to meter 1500, 43 s 5000)
  it('1500 functions, each called once (all inlined into their caller)', () => sameEverywhere(manyFunctions(1500), true), SLOW);
});

describe('on the metering thread (ftvm run, record, replay and the hosts), modules tens of thousands deep', () => {
  // compileGuestAsync meters on a thread with a METER_STACK_MB native stack,
  // where binaryen follows these shapes; on a main thread (about 1 MB) it
  // stops at a few thousand levels.
  const deep: Array<[string, () => Uint8Array]> = [
    ['ifs nested 20000 deep', () => nestedIfs(20_000)],
    ['calls nested 20000 deep as operands', () => nestedCalls(20_000)],
    ['an expression tree 50000 operators deep', () => exprModule(leftDeep(50_000))],
    ['loops nested 20000 deep', () => nestedLoops(20_000)],
  ];
  it.each(deep)('%s: metered, and runs as on the engine, counting the same twice', async (_name, build) => {
    const bytes = build();
    const raw = runGuest(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>));
    expect(raw).toMatchObject({ outcome: 'exit', exitCode: 0 });
    const counts: Array<bigint | null> = [];
    for (let i = 0; i < 2; i++) {
      clearMemoryCache();
      const { module } = await compileGuestAsync(bytes, { cacheDir: null });
      const r = runModule(module);
      expect(r).toMatchObject({ outcome: 'exit', exitCode: 0 });
      expect(Buffer.from(r.stdout).equals(Buffer.from(raw.stdout))).toBe(true);
      counts.push(r.count);
    }
    expect(counts[0]).not.toBeNull();
    expect(counts[1]).toBe(counts[0]);
  }, SLOW);

  it('a module deeper than binaryen\'s own stack allows is refused with FTVM_ERR_MODULE_TOO_DEEP, and the next module meters', async () => {
    await expect(compileGuestAsync(nestedIfs(50_000), { cacheDir: null })).rejects.toMatchObject({ code: 'FTVM_ERR_MODULE_TOO_DEEP' });
    clearMemoryCache();
    const { module } = await compileGuestAsync(nestedIfs(10), { cacheDir: null });
    expect(runModule(module)).toMatchObject({ outcome: 'exit', exitCode: 0 });
  }, SLOW);
});

describe('the pass\'s own walks have no depth limit', () => {
  // binaryen's reader, optimizer and writer recurse in C++ on this thread's
  // stack (blocks excepted), so modules this deep cannot be emitted; the
  // pass's walks (instrumenting, weighing) must still go through them.
  const shapes: Array<[string, () => Uint8Array]> = [
    ['an expression tree 100000 operators deep', () => exprModule(leftDeep(100_000))],
    ['an operand chain 20000 values long', () => exprModule(rightDeep(20_000))],
    ['blocks with values nested 20000 deep', () => exprModule(valueBlocks(20_000))],
    ['calls nested 5000 deep', () => nestedCalls(5000)],
    ['ifs nested 5000 deep', () => nestedIfs(5000)],
    ['loops nested 5000 deep', () => nestedLoops(5000)],
  ];
  it.each(shapes)('%s: instrumented and weighed', (_name, build) => {
    const m = (binaryen.readBinary as (b: Uint8Array, f?: number) => binaryen.Module)(build(), binaryen.Features.All);
    try {
      instrumentModule(m, { strategy: 'ftvm', depthLimit: DEFAULT_DEPTH_LIMIT, memoryLimitPages: 16, canonicalizeNaNs: false });
      const { weights } = weighFrames(m);
      expect(weights.size).toBeGreaterThan(0);
    } finally {
      m.dispose();
    }
  }, SLOW);

  it('a module deeper than binaryen can follow is refused with a clear error, not a crash', () => {
    let err: unknown = null;
    try {
      meter(nestedCalls(20_000), { cacheDir: null, optimize: false });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'FTVM_ERR_MODULE_TOO_DEEP' });
  }, SLOW);
});

/**
 * The count of printAndExit after its value is computed: store (i32.const,
 * <value>, store: 2 beyond the value), two more stores (3 each), fd_write
 * (4 consts + call = 5), drop (free), proc_exit (const + call = 2).
 */
const PRINT_AND_EXIT = 2n + 6n + 5n + 2n;
