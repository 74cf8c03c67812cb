// The metering pass: gives every point of a guest's execution an exact count.
//
// ## The count
// The count is the number of wasm operators executed, by this cost table:
//   free (0): nop, drop, block, loop, else, end, unreachable, return, and the
//             tuple.make/tuple.extract nodes binaryen uses to model multi-value;
//   1:        every other operator (if, br, br_if, br_table, call, local.get, ...).
// It is defined over the module as binaryen (version pinned in package.json)
// reads it; for ordinary single-value code that is one node per wasm operator.
//
// ## Where it lives
// Execution is cut into *segments*: straight-line pieces that start at a
// function entry, a loop header, an if arm, a branch-target merge, or just after
// a call, and that end at the next such point. Each segment's whole cost is
// subtracted once, at its start, from a *fuel* value (fuel = deadline - count).
// No operator between a segment's start and its end can observe the count, so
// pre-charging is exact wherever it can be observed. Two refinements keep
// segments long: a br_if does not end its segment (its taken edge gets back
// what the segment charges beyond it), and an if whose arms are straight-line
// code leaves the code after it in the surrounding segment.
//
// The fuel lives in a parameter: every defined function F gets a metered body
// `ftvm$m$F` that takes (fuel i64, depth i32) after its own parameters and
// returns the fuel after its own results, so between the guest's functions the
// fuel stays in registers. F itself becomes a wrapper with the original
// signature that reads the fuel from, and writes it back to, the exported
// global `ftvm_fuel`: it serves exports, table entries and the start function.
//   - at a check point (every loop header, and the entry of a function that
//     calls guest functions) the fuel is compared with 0; when the deadline is
//     reached the host import `ftvm.check(fuel) -> fuel` gets the exact count;
//   - before a host import or an indirect call the fuel (and depth) are
//     written to the instance and reloaded after, so the host sees the exact
//     count including the call operator;
//   - before `unreachable` and the depth-limit trap the fuel is written back.
// A trap cannot run code, so the count at any other trap is the value of the
// last write-back: deterministic, and the same on every replica, because
// deadlines never cause a write-back.
//
// ## Call depth
// V8's stack limit differs between threads and processes, so the pass keeps a
// deterministic depth, passed like the fuel: every function that calls guest
// functions adds its frame weight on entry (see frameWeight; a wrapper adds
// WRAPPER_WEIGHT for the host or table frames in between); above the limit it
// calls `ftvm.depth_exceeded()`, which traps. Leaf functions cannot recurse
// and skip the bookkeeping; the limit leaves room for one leaf frame. The depth
// reaches the instance (`ftvm_depth`) only before calls that may come back
// into the guest, and a wrapper restores the caller's on the way out.
//
// ## Memory
// memory.grow beyond the configured limit returns -1 (as if the engine refused),
// decided by the instrumentation rather than by how much memory the host has.

import binaryen from 'binaryen';
import { MeterError } from './errors.ts';
import { SHAPES, kindName, mapChildren, set } from './walk.ts';

type Ref = number;
type Type = number;

import { EXPORT_CLASSIC_REMAINING, EXPORT_DEPTH, EXPORT_FUEL, EXPORT_GLOBAL_PREFIX, EXPORT_START, I64_MAX, IMPORT_CHECK, IMPORT_DEPTH_EXCEEDED, IMPORT_MODULE } from './abi.ts';
export * from './abi.ts';

export type Strategy = 'ftvm' | 'classic';

export interface InstrumentOptions {
  /** 'ftvm': the local-cached counter described above. 'classic': a global
   *  counter charged and checked in every basic block (the scheme of wasmer's
   *  metering middleware), kept as the benchmark's peer baseline. */
  strategy: Strategy;
  /** depth budget in frame units */
  depthLimit: number;
  /** memory.grow fails beyond this many 64 KiB pages */
  memoryLimitPages: number;
  /** replace every NaN produced by scalar float arithmetic by the canonical quiet NaN */
  canonicalizeNaNs: boolean;
}

const FREE = new Set<number>([
  binaryen.NopId,
  binaryen.BlockId,
  binaryen.LoopId,
  binaryen.DropId,
  binaryen.UnreachableId,
  binaryen.ReturnId,
  binaryen.TupleMakeId,
  binaryen.TupleExtractId,
]);

/** cost of one expression node, excluding its children */
export function costOf(id: number): number {
  return FREE.has(id) ? 0 : 1;
}

const REFUSED: ReadonlyMap<number, string> = new Map([
  [binaryen.TryId, 'exception handling'],
  [binaryen.ThrowId, 'exception handling'],
  [binaryen.RethrowId, 'exception handling'],
  [binaryen.PopId, 'exception handling'],
  [binaryen.CallRefId, 'typed function references (call_ref)'],
  // binaryen.js has no wrappers (nor id constants) for the bulk table
  // instructions; they follow table.grow in binaryen's ExpressionIds.
  [binaryen.TableGrowId + 1, 'table.fill'],
  [binaryen.TableGrowId + 2, 'table.copy'],
  [binaryen.TableGrowId + 3, 'table.init'],
  [binaryen.TableGrowId + 4, 'elem.drop'],
]);

const B = binaryen as unknown as Record<string, number>;
const ops = (names: string[]): ReadonlySet<number> => new Set(names.map((k) => B[k]!));
const byPrefix = (prefixes: string[]): ReadonlySet<number> =>
  new Set(Object.keys(B).filter((k) => prefixes.some((p) => k.startsWith(p))).map((k) => B[k]!));

/** Relaxed SIMD operations, per expression kind (binaryen numbers ops per kind): their results differ between CPUs. */
const RELAXED: ReadonlyMap<number, ReadonlySet<number>> = new Map([
  [binaryen.UnaryId, byPrefix(['RelaxedTrunc'])],
  [binaryen.BinaryId, byPrefix(['RelaxedSwizzle', 'RelaxedMin', 'RelaxedMax', 'RelaxedQ15', 'RelaxedDotI8x16I7x16SToVec'])],
  [binaryen.SIMDTernaryId, byPrefix(['RelaxedMadd', 'RelaxedNmadd', 'RelaxedLaneselect', 'RelaxedDotI8x16I7x16AddS'])],
]);

/** Scalar float operations whose result may be a NaN with an unspecified bit pattern, per expression kind. */
const NAN_PRODUCING: ReadonlyMap<number, ReadonlySet<number>> = new Map([
  [
    binaryen.UnaryId,
    ops([
      'SqrtFloat32', 'CeilFloat32', 'FloorFloat32', 'TruncFloat32', 'NearestFloat32',
      'SqrtFloat64', 'CeilFloat64', 'FloorFloat64', 'TruncFloat64', 'NearestFloat64',
      'PromoteFloat32', 'DemoteFloat64',
    ]),
  ],
  [
    binaryen.BinaryId,
    ops([
      'AddFloat32', 'SubFloat32', 'MulFloat32', 'DivFloat32', 'MinFloat32', 'MaxFloat32',
      'AddFloat64', 'SubFloat64', 'MulFloat64', 'DivFloat64', 'MinFloat64', 'MaxFloat64',
    ]),
  ],
]);

interface Segment {
  /** i64.const nodes to patch with the segment's cost once it is known */
  sites: Ref[];
  /** i64.const nodes on a br_if's taken edge, to patch with the cost the segment charged beyond that br_if */
  refunds: Array<{ site: Ref; at: number }>;
  cost: number;
}

const segment = (sites: Ref[]): Segment => ({ sites, refunds: [], cost: 0 });

const EXIT_LABEL = 'ftvm$exit';
const G_FUEL = 'ftvm$fuel';
const G_DEPTH = 'ftvm$depth';
const F_CHECK = 'ftvm$check';
const F_DEPTH = 'ftvm$depth_exceeded';

/** Instruments `module` in place. */
/** What the pass did, for tests and diagnostics. */
export interface InstrumentReport {
  /** frame weight of each function that takes part in the depth budget */
  weights: Map<string, number>;
}

export function instrumentModule(module: binaryen.Module, opts: InstrumentOptions): InstrumentReport {
  const report: InstrumentReport = { weights: new Map() };
  refuseModuleLevelFeatures(module, opts);
  const globalName = opts.strategy === 'ftvm' ? G_FUEL : 'ftvm$classic_remaining';
  const exportName = opts.strategy === 'ftvm' ? EXPORT_FUEL : EXPORT_CLASSIC_REMAINING;
  for (const name of [exportName, EXPORT_DEPTH, EXPORT_START]) {
    if (exportExists(module, name)) {
      throw new MeterError('FTVM_ERR_NAME_CLASH', `the module already exports "${name}", a name ftvm reserves`);
    }
  }
  const i64Max = i64c(module, I64_MAX);
  module.addGlobal(globalName, binaryen.i64, true, i64Max);
  module.addGlobalExport(globalName, exportName);
  if (opts.strategy === 'ftvm') {
    module.addGlobal(G_DEPTH, binaryen.i32, true, module.i32.const(0));
    module.addGlobalExport(G_DEPTH, EXPORT_DEPTH);
    module.addFunctionImport(F_CHECK, IMPORT_MODULE, IMPORT_CHECK, binaryen.i64, binaryen.i64);
    module.addFunctionImport(F_DEPTH, IMPORT_MODULE, IMPORT_DEPTH_EXCEEDED, binaryen.none, binaryen.none);
  }

  if (opts.strategy === 'ftvm') {
    exportMutableGlobals(module);
    const start = module.getStart();
    if (start) {
      module.setStart(0 as unknown as binaryen.FunctionRef);
      module.addFunctionExport(binaryen.getFunctionInfo(start).name, EXPORT_START);
    }
  }

  const imported = new Set<string>();
  const defined: binaryen.FunctionInfo[] = [];
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const info = binaryen.getFunctionInfo(module.getFunctionByIndex(i));
    if (info.module) imported.add(info.name);
    else defined.push(info);
  }
  for (const info of defined) {
    const fn = new FunctionMeter(module, info, imported, opts);
    const out = fn.run();
    if (out.weight !== null) report.weights.set(info.name, out.weight);
    module.removeFunction(info.name);
    if (opts.strategy === 'classic') {
      module.addFunction(info.name, info.params, info.results, out.vars, out.body);
      continue;
    }
    // The metered body takes the fuel and the depth as extra parameters and
    // returns the fuel as an extra result, so both stay in registers across
    // calls. The original name becomes a thin wrapper with the original
    // signature, for whatever the guest exposes to the outside (exports,
    // tables, start); the optimizer drops the wrappers nothing uses.
    const sig = extendedSignature(info);
    module.addFunction(meteredName(info.name), sig.params, sig.results, out.vars, out.body);
    const w = wrapper(module, info, sig);
    module.addFunction(info.name, info.params, info.results, w.vars, w.body);
  }
  return report;
}

/** The name of a function's metered body. */
function meteredName(name: string): string {
  return `ftvm$m$${name}`;
}

interface Signature {
  params: Type;
  results: Type;
  /** the original results, expanded */
  orig: Type[];
}

/** The engine's limits on parameters and results; the metered body needs two more parameters and one more result. */
const PARAMS_MAX = 1000;
const RESULTS_MAX = 1000;

function extendedSignature(info: binaryen.FunctionInfo): Signature {
  const orig = binaryen.expandType(info.results);
  if (binaryen.expandType(info.params).length + 2 > PARAMS_MAX || orig.length + 1 > RESULTS_MAX) {
    throw unsupported(`a function with more than ${PARAMS_MAX - 2} parameters or ${RESULTS_MAX - 1} results (${info.name})`);
  }
  return {
    params: binaryen.createType([...binaryen.expandType(info.params), binaryen.i64, binaryen.i32]),
    results: binaryen.createType([...orig, binaryen.i64]),
    orig,
  };
}

/** Splits the extended result held in local `tmp`: returns [value expression or 0, fuel expression]. */
function splitResult(m: binaryen.Module, tmp: number, sig: { results: Type; orig: Type[] }): [Ref, Ref] {
  const n = sig.orig.length;
  if (n === 0) return [0, m.local.get(tmp, binaryen.i64)];
  const part = (i: number): Ref => m.tuple.extract(m.local.get(tmp, sig.results), i);
  const value = n === 1 ? part(0) : m.tuple.make(sig.orig.map((_, i) => part(i)));
  return [value, part(n)];
}

/**
 * The weight a wrapper adds to the depth: a wrapper is entered from the host
 * (whose JavaScript frames sit between the guest's) or through a table.
 */
export const WRAPPER_WEIGHT = 64;

function wrapper(m: binaryen.Module, info: binaryen.FunctionInfo, sig: Signature): { body: Ref; vars: Type[] } {
  const params = binaryen.expandType(info.params);
  const saved = params.length;
  const depth = (): Ref => m.local.get(saved, binaryen.i32);
  const call = m.call(
    meteredName(info.name),
    [
      ...params.map((t, i) => m.local.get(i, t)),
      m.global.get(G_FUEL, binaryen.i64),
      m.i32.add(depth(), m.i32.const(WRAPPER_WEIGHT)),
    ],
    sig.results,
  );
  // The depth the caller left is restored on the way out: a host import inside
  // the callee writes its own depth to the instance.
  const enter = m.local.set(saved, m.global.get(G_DEPTH, binaryen.i32));
  const leave = m.global.set(G_DEPTH, depth());
  if (sig.orig.length === 0) return { body: m.block(null, [enter, m.global.set(G_FUEL, call), leave]), vars: [binaryen.i32] };
  const tmp = saved + 1;
  const [value, fuel] = splitResult(m, tmp, sig);
  return {
    body: m.block(null, [enter, m.local.set(tmp, call), m.global.set(G_FUEL, fuel), leave, value], info.results),
    vars: [binaryen.i32, sig.results],
  };
}

/** Moves every reference to a local at or above `from` up by `by` (to make room for parameters). */
function shiftLocals(body: Ref, from: number, by: number): void {
  const visit = (e: Ref): void => {
    const id = binaryen.getExpressionId(e);
    if (id === binaryen.LocalGetId || id === binaryen.LocalSetId) {
      const w = id === binaryen.LocalGetId ? set.LocalGet : set.LocalSet;
      const i = w.getIndex(e);
      if (i >= from) w.setIndex(e, i + by);
    }
    forEachChild(e, visit);
  };
  visit(body);
}


function exportMutableGlobals(module: binaryen.Module): void {
  for (let i = 0; i < module.getNumExports(); i++) {
    const name = binaryen.getExportInfo(module.getExportByIndex(i)).name;
    if (name.startsWith(EXPORT_GLOBAL_PREFIX)) {
      throw new MeterError('FTVM_ERR_NAME_CLASH', `the module already exports "${name}"; ftvm reserves names starting with "${EXPORT_GLOBAL_PREFIX}"`);
    }
  }
  for (let i = 0; i < module.getNumGlobals(); i++) {
    const g = binaryen.getGlobalInfo(module.getGlobalByIndex(i));
    if (g.module || !g.mutable || g.name === G_FUEL || g.name === G_DEPTH) continue;
    module.addGlobalExport(g.name, `${EXPORT_GLOBAL_PREFIX}${i}`);
  }
}

function exportExists(module: binaryen.Module, name: string): boolean {
  for (let i = 0; i < module.getNumExports(); i++) {
    if (binaryen.getExportInfo(module.getExportByIndex(i)).name === name) return true;
  }
  return false;
}

function refuseModuleLevelFeatures(module: binaryen.Module, opts: InstrumentOptions): void {
  if (module.hasMemory()) {
    const mem = module.getMemoryInfo();
    if (mem.shared) {
      throw new MeterError(
        'FTVM_ERR_UNSUPPORTED_FEATURE',
        'the module uses shared memory (threads): concurrent access cannot be replayed deterministically',
      );
    }
    if (mem.is64) {
      throw new MeterError('FTVM_ERR_UNSUPPORTED_FEATURE', 'the module uses 64-bit memory (memory64), which ftvm does not support');
    }
    if (mem.initial > opts.memoryLimitPages) {
      throw new MeterError(
        'FTVM_ERR_MEMORY_LIMIT',
        `the module's initial memory is ${mem.initial} pages, above the limit of ${opts.memoryLimitPages} pages`,
      );
    }
  }
}

/** Collects every label that some branch targets. */
function branchTargets(body: Ref): Set<string> {
  const out = new Set<string>();
  const visit = (e: Ref): void => {
    const id = binaryen.getExpressionId(e);
    if (id === binaryen.BreakId) out.add((binaryen.getExpressionInfo(e) as binaryen.BreakInfo).name);
    if (id === binaryen.SwitchId) {
      const info = binaryen.getExpressionInfo(e) as binaryen.SwitchInfo;
      for (const n of info.names) out.add(n);
      out.add(info.defaultName as string);
    }
    forEachChild(e, visit);
  };
  visit(body);
  return out;
}

/** Visits the direct children of any expression the pass understands. */
function forEachChild(e: Ref, fn: (c: Ref) => void): void {
  const id = binaryen.getExpressionId(e);
  const shape = SHAPES.get(id);
  if (shape) {
    mapChildren(shape, e, (c) => (fn(c), c));
    return;
  }
  const kids: Ref[] = [];
  // (binaryen.js cannot describe every kind, e.g. unreachable: ask only for the ones with children)
  const info = (): Record<string, unknown> => binaryen.getExpressionInfo(e) as unknown as Record<string, unknown>;
  switch (id) {
    case binaryen.BlockId:
      kids.push(...(info().children as Ref[]));
      break;
    case binaryen.IfId:
      kids.push(info().condition as Ref, info().ifTrue as Ref, info().ifFalse as Ref);
      break;
    case binaryen.LoopId:
      kids.push(info().body as Ref);
      break;
    case binaryen.BreakId:
    case binaryen.SwitchId:
      kids.push(info().value as Ref, info().condition as Ref);
      break;
    case binaryen.CallId:
      kids.push(...(info().operands as Ref[]));
      break;
    case binaryen.CallIndirectId:
      kids.push(...(info().operands as Ref[]), info().target as Ref);
      break;
    case binaryen.ReturnId:
      kids.push(info().value as Ref);
      break;
    default:
      break;
  }
  for (const k of kids) if (k) fn(k);
}

/** Kinds that transfer control or let something observe the count. */
const NOT_STRAIGHT = new Set<number>([
  binaryen.CallId,
  binaryen.CallIndirectId,
  binaryen.LoopId,
  binaryen.BreakId,
  binaryen.SwitchId,
  binaryen.ReturnId,
  binaryen.UnreachableId,
]);

/**
 * Code that always runs to its end (or traps) without calling out, looping or
 * branching away. `memo` keeps nested ifs from being walked again and again.
 */
function straight(e: Ref, memo: Map<Ref, boolean>): boolean {
  const known = memo.get(e);
  if (known !== undefined) return known;
  let ok = !NOT_STRAIGHT.has(binaryen.getExpressionId(e));
  if (ok) {
    forEachChild(e, (c) => {
      if (ok && !straight(c, memo)) ok = false;
    });
  }
  memo.set(e, ok);
  return ok;
}

/** The most operand values evaluated and still waiting when any call in `body` runs. */
function pendingAtCalls(body: Ref): number {
  let most = 0;
  const visit = (e: Ref, pending: number): void => {
    const id = binaryen.getExpressionId(e);
    if (id === binaryen.CallId || id === binaryen.CallIndirectId) most = Math.max(most, pending);
    // In a block, earlier children leave nothing on the stack; elsewhere each earlier operand waits.
    let i = 0;
    forEachChild(e, (c) => visit(c, pending + (id === binaryen.BlockId ? 0 : i++)));
  };
  visit(body, 0);
  return most;
}

/** Does the function call any function of the guest (directly or indirectly)? */
function callsGuest(body: Ref, imported: Set<string>): boolean {
  let found = false;
  const visit = (e: Ref): void => {
    if (found) return;
    const id = binaryen.getExpressionId(e);
    if (id === binaryen.CallIndirectId) found = true;
    if (id === binaryen.CallId) {
      const info = binaryen.getExpressionInfo(e) as binaryen.CallInfo;
      if (!imported.has(info.target)) found = true;
    }
    forEachChild(e, visit);
  };
  visit(body);
  return found;
}

class FunctionMeter {
  private readonly m: binaryen.Module;
  private readonly vars: Type[];
  private readonly nParams: number;
  private readonly temps = new Map<Type, number>();
  private readonly targets: Set<string>;
  private readonly ftvm: boolean;
  /** parameters added in front of the locals: fuel (i64) and depth (i32) for 'ftvm' */
  private readonly extra: number;
  private readonly fuel: number;
  private readonly depth: number;
  private seg: Segment = segment([]);
  /** how many segments have been opened: code that opened one changes the fuel as it runs */
  private opens = 0;
  private readonly straightMemo = new Map<Ref, boolean>();
  /** the i32.const that receives the frame weight once it is known */
  private weightSite: Ref = 0;

  constructor(
    m: binaryen.Module,
    private readonly info: binaryen.FunctionInfo,
    private readonly imported: Set<string>,
    private readonly opts: InstrumentOptions,
  ) {
    this.m = m;
    this.vars = [...info.vars];
    this.nParams = binaryen.expandType(info.params).length;
    this.targets = branchTargets(info.body);
    this.ftvm = opts.strategy === 'ftvm';
    this.extra = this.ftvm ? 2 : 0;
    this.fuel = this.nParams;
    this.depth = this.nParams + 1;
    if (this.extra) shiftLocals(info.body, this.nParams, this.extra);
  }

  run(): { body: Ref; vars: Type[]; weight: number | null } {
    const body = this.ftvm ? this.runFtvm() : this.runClassic();
    // Nothing must be left uncharged: the last segment is closed here.
    this.cut();
    const built = body();
    // The frame weight is known only now that every local the pass adds exists.
    let weight: number | null = null;
    if (this.weightSite) {
      weight = this.frameWeight();
      set.Const.setValueI32(this.weightSite, weight);
    }
    return { body: built, vars: this.vars, weight };
  }

  private runClassic(): () => Ref {
    const charge = this.open();
    const body = this.visit(this.info.body);
    const t = binaryen.getExpressionType(this.info.body);
    return () => this.m.block(null, [...charge, body], t);
  }

  private runFtvm(): () => Ref {
    const m = this.m;
    const nonLeaf = callsGuest(this.info.body, this.imported);
    const pre: Ref[] = [];
    if (nonLeaf) {
      // Leaf functions cannot recurse and skip the bookkeeping; the budget
      // leaves room for one leaf frame.
      const depth = (): Ref => m.local.get(this.depth, binaryen.i32);
      pre.push(
        m.local.set(this.depth, m.i32.add(depth(), (this.weightSite = m.i32.const(0)))),
        m.if(
          m.i32.gt_u(depth(), m.i32.const(this.opts.depthLimit)),
          m.block(null, [this.writeBack(), m.call(F_DEPTH, [], binaryen.none), m.unreachable()], binaryen.unreachable),
        ),
        this.checkPoint(),
      );
    }
    pre.push(...this.open());
    const inner = this.visit(this.info.body);
    return () => {
      const sig = extendedSignature(this.info);
      const exit = m.block(EXIT_LABEL, [inner], this.info.results);
      const fuel = m.local.get(this.fuel, binaryen.i64);
      if (sig.orig.length === 0) return m.block(null, [...pre, exit, fuel], binaryen.i64);
      const rv = this.addVar(this.info.results);
      const values =
        sig.orig.length === 1
          ? [m.local.get(rv, this.info.results)]
          : sig.orig.map((_, i) => m.tuple.extract(m.local.get(rv, this.info.results), i));
      return m.block(null, [...pre, m.local.set(rv, exit), m.tuple.make([...values, fuel])], sig.results);
    };
  }

  /** Writes the fuel (and depth) back to the instance, for the host or a trap to see. */
  private writeBack(): Ref {
    return this.m.global.set(G_FUEL, this.m.local.get(this.fuel, binaryen.i64));
  }

  private writeBackDepth(): Ref {
    return this.m.global.set(G_DEPTH, this.m.local.get(this.depth, binaryen.i32));
  }

  /**
   * An estimate, in 8-byte slots, of the engine frame of the metered body:
   * 4 for the frame itself, every parameter and local (the ones the pass adds
   * included; v128 counts twice), and the most values that can wait on the
   * operand stack across one of its calls.
   */
  private frameWeight(): number {
    let w = 4 + 2; // + the fuel and depth parameters
    for (const t of [...binaryen.expandType(this.info.params), ...this.vars]) {
      w += t === binaryen.v128 ? 2 : binaryen.expandType(t).length;
    }
    return w + pendingAtCalls(this.info.body);
  }

  private addVar(t: Type): number {
    this.vars.push(t);
    return this.nParams + this.extra + this.vars.length - 1;
  }

  /** a scratch local of type t, valid only between its set and the get right after */
  private temp(t: Type): number {
    let i = this.temps.get(t);
    if (i === undefined) {
      i = this.addVar(t);
      this.temps.set(t, i);
    }
    return i;
  }

  // ---- segments -------------------------------------------------------------

  /** Opens a new segment charged by the returned code, which the caller places at the segment's start. */
  private open(): Ref[] {
    const m = this.m;
    this.opens++;
    if (this.ftvm) {
      const site = i64c(m, 0n);
      this.seg = segment([site]);
      return [m.local.set(this.fuel, m.i64.sub(m.local.get(this.fuel, binaryen.i64), site))];
    }
    const a = i64c(m, 0n);
    const b = i64c(m, 0n);
    this.seg = segment([a, b]);
    const g = 'ftvm$classic_remaining';
    return [
      m.if(m.i64.lt_u(m.global.get(g, binaryen.i64), a), m.unreachable()),
      m.global.set(g, m.i64.sub(m.global.get(g, binaryen.i64), b)),
    ];
  }

  /** Opens a segment for code that cannot run (after an unconditional branch). */
  private openDead(): void {
    this.seg = segment([]);
  }

  /** Closes the current segment: its cost is now known. */
  private cut(): void {
    const { sites, refunds, cost } = this.seg;
    for (const s of sites) set.Const.setValueI64(s, BigInt(cost));
    for (const r of refunds) set.Const.setValueI64(r.site, BigInt(cost - r.at));
    this.seg = segment([]);
  }

  private add(n: number): void {
    this.seg.cost += n;
  }

  /** Ends the segment at `e` and starts a new one right after it. */
  private after(e: Ref): Ref {
    const m = this.m;
    const t = binaryen.getExpressionType(e);
    this.cut();
    if (t === binaryen.unreachable) {
      this.openDead();
      return e;
    }
    const charge = this.open();
    if (t === binaryen.none) return m.block(null, [e, ...charge], binaryen.none);
    const tmp = this.temp(t);
    return m.block(null, [m.local.set(tmp, e), ...charge, m.local.get(tmp, t)], t);
  }

  private checkPoint(): Ref {
    const m = this.m;
    const f = this.fuel;
    return m.if(
      m.i64.le_s(m.local.get(f, binaryen.i64), i64c(m, 0n)),
      m.local.set(f, m.call(F_CHECK, [m.local.get(f, binaryen.i64)], binaryen.i64)),
    );
  }

  // ---- the walk ---------------------------------------------------------------

  private visit(e: Ref): Ref {
    const id = binaryen.getExpressionId(e);
    switch (id) {
      case binaryen.BlockId:
        return this.visitBlock(e);
      case binaryen.LoopId:
        return this.visitLoop(e);
      case binaryen.IfId:
        return this.visitIf(e);
      case binaryen.BreakId:
        return this.visitBreak(e);
      case binaryen.SwitchId: {
        const info = binaryen.getExpressionInfo(e) as binaryen.SwitchInfo;
        if (info.value) set.Switch.setValue(e, this.visit(info.value));
        set.Switch.setCondition(e, this.visit(info.condition));
        this.add(1);
        this.cut();
        this.openDead();
        return e;
      }
      case binaryen.CallId:
      case binaryen.CallIndirectId:
        return this.visitCall(e, id);
      case binaryen.ReturnId:
        return this.visitReturn(e);
      case binaryen.UnreachableId:
        this.cut();
        this.openDead();
        if (!this.ftvm) return e;
        return this.m.block(null, [this.writeBack(), e], binaryen.unreachable);
      case binaryen.MemoryGrowId:
        return this.visitMemoryGrow(e);
      default:
        return this.visitPlain(e, id);
    }
  }

  private visitPlain(e: Ref, id: number): Ref {
    const refused = REFUSED.get(id);
    if (refused) throw unsupported(`${refused} in function ${this.info.name}`);
    const shape = SHAPES.get(id);
    if (!shape) throw unsupported(`${kindName(id)} in function ${this.info.name}`);
    const relaxed = RELAXED.get(id);
    if (relaxed) {
      const op = (binaryen.getExpressionInfo(e) as unknown as { op: number }).op;
      if (relaxed.has(op)) {
        throw unsupported(`relaxed SIMD in function ${this.info.name}: its results differ between CPUs`);
      }
    }
    mapChildren(shape, e, (c) => this.visit(c));
    this.add(costOf(id));
    const nanOps = this.opts.canonicalizeNaNs ? NAN_PRODUCING.get(id) : undefined;
    if (nanOps?.has((binaryen.getExpressionInfo(e) as unknown as { op: number }).op)) return this.canonicalNaN(e);
    return e;
  }

  /** x -> (x == x) ? x : canonical NaN; comparisons are not charged (instrumentation). */
  private canonicalNaN(e: Ref): Ref {
    const m = this.m;
    const t = binaryen.getExpressionType(e);
    if (t !== binaryen.f32 && t !== binaryen.f64) return e;
    const tmp = this.temp(t);
    const get = (): Ref => m.local.get(tmp, t);
    const nan = t === binaryen.f32 ? m.f32.const_bits(0x7fc00000) : (m.f64.const_bits as (v: bigint) => Ref)(0x7ff8000000000000n);
    const same = t === binaryen.f32 ? m.f32.eq(get(), get()) : m.f64.eq(get(), get());
    return m.block(null, [m.local.set(tmp, e), m.select(same, get(), nan)], t);
  }

  private visitBlock(e: Ref): Ref {
    const info = binaryen.getExpressionInfo(e) as binaryen.BlockInfo;
    info.children.forEach((c, i) => {
      const n = this.visit(c);
      if (n !== c) set.Block.setChildAt(e, i, n);
    });
    // A block that is the target of a branch is a merge point: paths with
    // different costs join at its end.
    if (info.name && this.targets.has(info.name)) return this.after(e);
    return e;
  }

  private visitLoop(e: Ref): Ref {
    const info = binaryen.getExpressionInfo(e) as binaryen.LoopInfo;
    this.cut();
    const head: Ref[] = this.ftvm ? [this.checkPoint()] : [];
    head.push(...this.open());
    const body = this.visit(info.body);
    set.Loop.setBody(e, this.m.block(null, [...head, body], binaryen.getExpressionType(info.body)));
    return e;
  }

  private visitIf(e: Ref): Ref {
    const info = binaryen.getExpressionInfo(e) as binaryen.IfInfo;
    set.If.setCondition(e, this.visit(info.condition));
    this.add(1);
    const arm = (x: Ref): Ref => {
      const charge = this.open();
      const body = this.visit(x);
      this.cut();
      return this.m.block(null, [...charge, body], binaryen.getExpressionType(x));
    };
    if (this.ftvm && straight(info.ifTrue, this.straightMemo) && (!info.ifFalse || straight(info.ifFalse, this.straightMemo))) {
      // Both arms fall through to the merge and nothing in them observes the
      // count, so the code after the if stays in the current segment (charged
      // in advance); each arm charges only its own cost.
      const outer = this.seg;
      set.If.setIfTrue(e, arm(info.ifTrue));
      if (info.ifFalse) set.If.setIfFalse(e, arm(info.ifFalse));
      this.seg = outer;
      return e;
    }
    this.cut();
    set.If.setIfTrue(e, arm(info.ifTrue));
    if (info.ifFalse) set.If.setIfFalse(e, arm(info.ifFalse));
    return this.after(e);
  }

  private visitBreak(e: Ref): Ref {
    const m = this.m;
    const info = binaryen.getExpressionInfo(e) as binaryen.BreakInfo;
    if (info.value) set.Break.setValue(e, this.visit(info.value));
    const condition = info.condition ? this.visit(info.condition) : 0;
    if (condition) set.Break.setCondition(e, condition);
    this.add(1);
    if (!condition) {
      this.cut();
      this.openDead();
      return e;
    }
    if (this.ftvm && !info.value && binaryen.getExpressionType(e) !== binaryen.unreachable) {
      // br_if: the fall-through path stays in the current segment, which
      // charged it in advance; the taken path, usually the rare one, gets
      // back what the segment charges beyond this point before it leaves.
      const site = i64c(m, 0n);
      this.seg.refunds.push({ site, at: this.seg.cost });
      const fuel = (): Ref => m.local.get(this.fuel, binaryen.i64);
      return m.if(
        condition,
        m.block(null, [m.local.set(this.fuel, m.i64.add(fuel(), site)), m.br(info.name)], binaryen.unreachable),
      );
    }
    // br_if with a value: the fall-through path starts a new segment.
    return this.after(e);
  }

  private visitReturn(e: Ref): Ref {
    const info = binaryen.getExpressionInfo(e) as binaryen.ReturnInfo;
    const value = info.value ? this.visit(info.value) : 0;
    this.cut();
    this.openDead();
    if (!this.ftvm) {
      if (value) set.Return.setValue(e, value);
      return e;
    }
    // Every return leaves through the exit block, where the count is written back.
    return this.m.br(EXIT_LABEL, 0, value || 0);
  }

  private visitCall(e: Ref, id: number): Ref {
    const m = this.m;
    const isIndirect = id === binaryen.CallIndirectId;
    const info = binaryen.getExpressionInfo(e) as binaryen.CallIndirectInfo & binaryen.CallInfo;
    if (info.isReturn) throw unsupported(`tail calls in function ${this.info.name}`);
    const before = this.seg;
    const opensBefore = this.opens;
    const operands = info.operands.map((o) => this.visit(o));
    const target = isIndirect ? this.visit(info.target) : 0;
    this.add(1);
    const all = isIndirect ? [...operands, target] : operands;
    if (all.some((o) => binaryen.getExpressionType(o) === binaryen.unreachable)) {
      // The call never happens: keep the operands' evaluation, which ends in a trap or a branch.
      this.cut();
      this.openDead();
      return m.block(null, all.map((o) => dropValue(m, o)), binaryen.unreachable);
    }
    const setOperand = isIndirect ? set.CallIndirect.setOperandAt : set.Call.setOperandAt;
    const t = binaryen.getExpressionType(e);
    if (!this.ftvm) {
      operands.forEach((o, i) => setOperand(e, i, o));
      if (isIndirect) set.CallIndirect.setTarget(e, target);
      return this.after(e);
    }
    if (!isIndirect && !this.imported.has(info.target)) return this.directCall(info.target, operands, t);
    const code: Ref[] = [];
    if (this.seg !== before || this.opens !== opensBefore) {
      // An operand changes the fuel as it runs (it contains a call, a branch or
      // an if arm): the write-back must come after the operands, so they are
      // evaluated first, in order, into fresh locals.
      operands.forEach((o, i) => {
        const ot = binaryen.getExpressionType(o);
        const l = this.addVar(ot);
        code.push(m.local.set(l, o));
        setOperand(e, i, m.local.get(l, ot));
      });
      if (isIndirect) {
        const l = this.addVar(binaryen.i32);
        code.push(m.local.set(l, target));
        set.CallIndirect.setTarget(e, m.local.get(l, binaryen.i32));
      }
    } else {
      operands.forEach((o, i) => setOperand(e, i, o));
      if (isIndirect) set.CallIndirect.setTarget(e, target);
    }
    this.cut();
    // A host import, or a table entry (which is a wrapper with the original
    // signature): both take the count and the depth from the instance.
    code.push(this.writeBack(), this.writeBackDepth());
    // Reload what the callee (or the host) left, minus the cost of the segment that starts here.
    const site = i64c(m, 0n);
    const reload = m.local.set(this.fuel, m.i64.sub(m.global.get(G_FUEL, binaryen.i64), site));
    if (t === binaryen.none) {
      code.push(e, reload);
    } else {
      const tmp = this.temp(t);
      code.push(m.local.set(tmp, e), reload, m.local.get(tmp, t));
    }
    this.seg = segment([site]);
    return m.block(null, code, t);
  }

  /** A call to one of the guest's own functions: fuel and depth travel as arguments and the fuel comes back as a result. */
  private directCall(target: string, operands: Ref[], t: Type): Ref {
    const m = this.m;
    const callee = binaryen.getFunctionInfo(m.getFunction(target));
    const sig = extendedSignature(callee);
    // The fuel argument is evaluated after the original operands, so it
    // already includes whatever they charged.
    const call = m.call(
      meteredName(target),
      [...operands, m.local.get(this.fuel, binaryen.i64), m.local.get(this.depth, binaryen.i32)],
      sig.results,
    );
    this.cut();
    const site = i64c(m, 0n);
    this.seg = segment([site]);
    if (sig.orig.length === 0) return m.local.set(this.fuel, m.i64.sub(call, site));
    const tmp = this.temp(sig.results);
    const [value, fuel] = splitResult(m, tmp, sig);
    return m.block(null, [m.local.set(tmp, call), m.local.set(this.fuel, m.i64.sub(fuel, site)), value], t);
  }

  private visitMemoryGrow(e: Ref): Ref {
    const m = this.m;
    const info = binaryen.getExpressionInfo(e) as binaryen.MemoryGrowInfo;
    const delta = this.visit(info.delta);
    this.add(1);
    if (binaryen.getExpressionType(delta) === binaryen.unreachable) return delta;
    // Growth beyond the limit fails deterministically, decided here and not by the engine.
    const d = this.addVar(binaryen.i32);
    set.MemoryGrow.setDelta(e, m.local.get(d, binaryen.i32));
    const limit = this.opts.memoryLimitPages;
    return m.block(
      null,
      [
        m.local.set(d, delta),
        m.if(
          m.i32.gt_u(m.local.get(d, binaryen.i32), m.i32.sub(m.i32.const(limit), m.memory.size())),
          m.i32.const(-1),
          e,
        ),
      ],
      binaryen.i32,
    );
  }
}

/** An expression evaluated for its effects only. */
function dropValue(m: binaryen.Module, e: Ref): Ref {
  const t = binaryen.getExpressionType(e);
  return t === binaryen.none || t === binaryen.unreachable ? e : m.drop(e);
}

/** binaryen.js takes i64 constants as bigint (its .d.ts still shows the old low/high form). */
function i64c(m: binaryen.Module, v: bigint): Ref {
  return (m.i64.const as unknown as (v: bigint) => Ref)(v);
}

function unsupported(what: string): MeterError {
  return new MeterError('FTVM_ERR_UNSUPPORTED_FEATURE', `the module uses ${what}, which ftvm refuses`);
}
