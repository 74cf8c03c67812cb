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
import { SHAPES, childrenOf, forEachExpression, kindName, set, setChildOf, type Shape } from './walk.ts';

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
/**
 * Stands for "this function's frame weight" until weighFrames replaces it: an
 * imported immutable global, whose value the optimizer cannot know, so it
 * neither folds it nor drops the depth bookkeeping around it.
 */
const G_WEIGHT = 'ftvm$frame_weight';
/**
 * Stands, the same way, for "the largest frame of a leaf this function
 * calls": it is added to the depth only in the limit check, never passed on,
 * because a leaf frame sits only on top of the deepest frame.
 */
const G_LEAF = 'ftvm$leaf_weight';

/** What the pass did, for tests and diagnostics. */
export interface InstrumentReport {
  /** frame weight of each function that takes part in the depth budget (filled in by weighFrames) */
  weights: Map<string, number>;
}

/** Progress of the pass over a module's functions: `done` of `total` functions instrumented. */
export type InstrumentProgress = (done: number, total: number) => void;

/**
 * Instruments `module` in place. For the 'ftvm' strategy the depth
 * bookkeeping holds placeholders until `weighFrames(module)` has run, which
 * must come after the last optimization and before the module is emitted.
 * Throws MeterError (FTVM_ERR_UNSUPPORTED_FEATURE, FTVM_ERR_MEMORY_LIMIT,
 * FTVM_ERR_NAME_CLASH) for a module ftvm refuses.
 */
export function instrumentModule(module: binaryen.Module, opts: InstrumentOptions, progress?: InstrumentProgress): InstrumentReport {
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
    module.addGlobalImport(G_WEIGHT, IMPORT_MODULE, 'frame_weight', binaryen.i32, false);
    module.addGlobalImport(G_LEAF, IMPORT_MODULE, 'leaf_weight', binaryen.i32, false);
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
  const sigs = new Signatures(defined);
  let done = 0;
  for (const info of defined) {
    const fn = new FunctionMeter(module, info, imported, opts, sigs);
    const out = fn.run();
    module.removeFunction(info.name);
    if (opts.strategy === 'classic') {
      module.addFunction(info.name, info.params, info.results, out.vars, out.body);
    } else {
      // The metered body takes the fuel and the depth as extra parameters and
      // returns the fuel as an extra result, so both stay in registers across
      // calls. The original name becomes a thin wrapper with the original
      // signature, for whatever the guest exposes to the outside (exports,
      // tables, start); the optimizer drops the wrappers nothing uses.
      const sig = sigs.of(info.name);
      module.addFunction(meteredName(info.name), sig.params, sig.results, out.vars, out.body);
      const w = wrapper(module, info, sig, fn.isNonLeaf ? null : opts.depthLimit);
      module.addFunction(info.name, info.params, info.results, w.vars, w.body);
    }
    if (progress && (++done % 256 === 0 || done === defined.length)) progress(done, defined.length);
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

/** The extended signatures of the module's defined functions, by name, each built once. */
class Signatures {
  private readonly infos = new Map<string, binaryen.FunctionInfo>();
  private readonly built = new Map<string, Signature>();
  constructor(defined: binaryen.FunctionInfo[]) {
    for (const info of defined) this.infos.set(info.name, info);
  }

  of(name: string): Signature {
    let s = this.built.get(name);
    if (!s) {
      s = extendedSignature(this.infos.get(name)!);
      this.built.set(name, s);
    }
    return s;
  }
}

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
 * The weight a wrapper adds to the depth besides its own frame: a wrapper is
 * entered from the host (whose JavaScript frames sit between the guest's) or
 * through a table.
 */
export const WRAPPER_WEIGHT = 64;

/**
 * The wrapper with the original signature. `leafLimit` is the depth limit
 * when the metered body is a leaf: a leaf does no depth bookkeeping, so the
 * wrapper checks that the leaf's frame (weighed with the wrapper's) fits.
 */
function wrapper(m: binaryen.Module, info: binaryen.FunctionInfo, sig: Signature, leafLimit: number | null): { body: Ref; vars: Type[] } {
  const params = binaryen.expandType(info.params);
  const saved = params.length;
  const inner = saved + 1;
  const vars: Type[] = [binaryen.i32, binaryen.i32];
  const depth = (): Ref => m.local.get(saved, binaryen.i32);
  // The depth the caller left is restored on the way out: a host import inside
  // the callee writes its own depth to the instance.
  const enter = [
    m.local.set(saved, m.global.get(G_DEPTH, binaryen.i32)),
    m.local.set(inner, m.i32.add(m.i32.add(depth(), m.i32.const(WRAPPER_WEIGHT)), m.global.get(G_WEIGHT, binaryen.i32))),
  ];
  if (leafLimit !== null) {
    // The fuel is the instance's (a wrapper reads it from there), so the trap's count is exact.
    enter.push(
      m.if(
        m.i32.gt_u(m.i32.add(m.local.get(inner, binaryen.i32), m.global.get(G_LEAF, binaryen.i32)), m.i32.const(leafLimit)),
        m.block(null, [m.call(F_DEPTH, [], binaryen.none), m.unreachable()], binaryen.unreachable),
      ),
    );
  }
  const call = m.call(
    meteredName(info.name),
    [...params.map((t, i) => m.local.get(i, t)), m.global.get(G_FUEL, binaryen.i64), m.local.get(inner, binaryen.i32)],
    sig.results,
  );
  const leave = m.global.set(G_DEPTH, depth());
  if (sig.orig.length === 0) return { body: m.block(null, [...enter, m.global.set(G_FUEL, call), leave]), vars };
  const tmp = saved + 2;
  vars.push(sig.results);
  const [value, fuel] = splitResult(m, tmp, sig);
  return {
    body: m.block(null, [...enter, m.local.set(tmp, call), m.global.set(G_FUEL, fuel), leave, value], info.results),
    vars,
  };
}

/** Slots of an engine frame beyond its locals (return address, frame pointer, frame marker, instance, and spill room). */
export const FRAME_FIXED_SLOTS = 6;

/**
 * An estimate, in 8-byte slots, of the engine frame of a function as it will
 * be emitted: FRAME_FIXED_SLOTS, every parameter and local (v128 counting
 * twice, a tuple once per element), and the most operand values waiting on
 * the stack anywhere in it. Measured against V8 12 (Node 20) on the main
 * thread, recursion costs at most about 8.2 bytes of native stack per slot
 * (README, "Call depth").
 */
interface Frame {
  /** own frame, in slots */
  slots: number;
  /** defined functions it calls directly */
  callees: Set<string>;
  /** where its weight placeholders sit: [parent, parent kind, child index] */
  sites: Array<[Ref, number, number]>;
  /** where its leaf-weight placeholders sit */
  leafSites: Array<[Ref, number, number]>;
}

function slotsOf(t: Type): number {
  if (t === binaryen.v128) return 2;
  return binaryen.expandType(t).length;
}

function measureFrame(f: binaryen.FunctionRef, defined: Set<string>): Frame {
  const fn = (binaryen as unknown as { Function: unknown }).Function as {
    getParams(f: binaryen.FunctionRef): Type;
    getNumVars(f: binaryen.FunctionRef): number;
    getVar(f: binaryen.FunctionRef, i: number): Type;
    getBody(f: binaryen.FunctionRef): Ref;
  };
  let slots = FRAME_FIXED_SLOTS;
  for (const t of binaryen.expandType(fn.getParams(f))) slots += slotsOf(t);
  const nVars = fn.getNumVars(f);
  for (let i = 0; i < nVars; i++) slots += slotsOf(fn.getVar(f, i));
  const frame: Frame = { slots, callees: new Set(), sites: [], leafSites: [] };
  const body = fn.getBody(f);
  if (!body) return frame;
  let pendingMost = 0;
  // The work stack, as parallel arrays: expression, values waiting under it, parent, parent kind, index in parent.
  const es: Ref[] = [body];
  const pend: number[] = [0];
  const parents: Ref[] = [0];
  const pids: number[] = [0];
  const idx: number[] = [0];
  while (es.length > 0) {
    const e = es.pop()!;
    const pending = pend.pop()!;
    const parent = parents.pop()!;
    const pid = pids.pop()!;
    const at = idx.pop()!;
    const id = binaryen.getExpressionId(e);
    // V8's baseline compiler gives every operand-stack position it ever
    // spills a slot of the frame, so the deepest stack anywhere counts.
    if (pending > pendingMost) pendingMost = pending;
    if (id === binaryen.CallId || id === binaryen.CallIndirectId) {
      if (id === binaryen.CallId) {
        const target = set.Call.getTarget(e);
        if (defined.has(target)) frame.callees.add(target);
      }
    } else if (id === binaryen.GlobalGetId) {
      const g = set.GlobalGet.getName(e);
      if (g === G_WEIGHT) frame.sites.push([parent, pid, at]);
      else if (g === G_LEAF) frame.leafSites.push([parent, pid, at]);
      continue;
    }
    const kids = childrenOf(e, id);
    // In control structures earlier children leave nothing on the stack; elsewhere each earlier operand waits.
    const control = id === binaryen.BlockId || id === binaryen.IfId || id === binaryen.LoopId;
    for (let i = kids.length - 1; i >= 0; i--) {
      es.push(kids[i]!);
      pend.push(control ? pending : pending + i);
      parents.push(e);
      pids.push(id);
      idx.push(i);
    }
  }
  frame.slots += pendingMost;
  return frame;
}

/**
 * Replaces the frame-weight placeholders of an instrumented module by the
 * weights of the code that will actually run: call it after the last
 * optimization. A function's weight is its own frame, added to the depth it
 * passes on; its limit check also adds the largest frame of a leaf it calls
 * directly (leaves do no depth bookkeeping, and a leaf frame sits only on top
 * of the deepest frame, so it is checked for but never accumulated). Every
 * placeholder in a function (its own, and those of non-leaf functions the
 * optimizer inlined into it) gets the function's values, which can only
 * overstate the depth. Returns, by function name, the weight and how many
 * placeholders got it.
 */
export function weighFrames(module: binaryen.Module): { weights: Map<string, number>; sites: Map<string, number> } {
  const weights = new Map<string, number>();
  const sites = new Map<string, number>();
  const fns: Array<[string, binaryen.FunctionRef]> = [];
  const defined = new Set<string>();
  const fn = (binaryen as unknown as { Function: unknown }).Function as { getName(f: binaryen.FunctionRef): string; getBody(f: binaryen.FunctionRef): Ref };
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const f = module.getFunctionByIndex(i);
    if (!fn.getBody(f)) continue; // imported
    const name = fn.getName(f);
    defined.add(name);
    fns.push([name, f]);
  }
  const frames = new Map<string, Frame>();
  for (const [name, f] of fns) frames.set(name, measureFrame(f, defined));
  for (const [name, frame] of frames) {
    if (frame.sites.length === 0 && frame.leafSites.length === 0) continue;
    let leaf = 0;
    for (const c of frame.callees) {
      const callee = frames.get(c)!;
      if (callee.sites.length === 0 && callee.slots > leaf) leaf = callee.slots;
    }
    weights.set(name, frame.slots);
    sites.set(name, frame.sites.length);
    for (const [parent, pid, at] of frame.sites) setChildOf(parent, pid, at, module.i32.const(frame.slots));
    for (const [parent, pid, at] of frame.leafSites) setChildOf(parent, pid, at, module.i32.const(leaf));
  }
  module.removeGlobal(G_WEIGHT);
  module.removeGlobal(G_LEAF);
  return { weights, sites };
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

/** What one pass over a function's original body learns before instrumenting it. */
interface Scan {
  /** every label that some branch targets */
  targets: Set<string>;
  /** whether the function calls any function of the guest (directly or through a table) */
  callsGuest: boolean;
}

/**
 * Walks `body` once (explicit stack): collects the branch targets, finds
 * whether it calls guest functions, and moves every reference to a local at
 * or above `from` up by `by` (to make room for parameters).
 */
function scan(body: Ref, imported: Set<string>, from: number, by: number): Scan {
  const out: Scan = { targets: new Set(), callsGuest: false };
  forEachExpression(body, (e, id) => {
    switch (id) {
      case binaryen.LocalGetId:
      case binaryen.LocalSetId: {
        if (by === 0) break;
        const w = id === binaryen.LocalGetId ? set.LocalGet : set.LocalSet;
        const i = w.getIndex(e);
        if (i >= from) w.setIndex(e, i + by);
        break;
      }
      case binaryen.BreakId:
        out.targets.add(set.Break.getName(e));
        break;
      case binaryen.SwitchId: {
        const n = set.Switch.getNumNames(e);
        for (let i = 0; i < n; i++) out.targets.add(set.Switch.getNameAt(e, i));
        out.targets.add(set.Switch.getDefaultName(e));
        break;
      }
      case binaryen.CallIndirectId:
        out.callsGuest = true;
        break;
      case binaryen.CallId:
        if (!imported.has(set.Call.getTarget(e))) out.callsGuest = true;
        break;
      default:
        break;
    }
  });
  return out;
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
 * Post-order over an explicit stack.
 */
function straight(root: Ref, memo: Map<Ref, boolean>): boolean {
  const known = memo.get(root);
  if (known !== undefined) return known;
  // Each entry: an expression, whether it is straight so far, and its children still to look at (null until expanded).
  const stack: Array<{ e: Ref; kids: Ref[] | null; ok: boolean }> = [{ e: root, kids: null, ok: true }];
  for (;;) {
    const top = stack[stack.length - 1]!;
    if (top.kids === null) {
      const id = binaryen.getExpressionId(top.e);
      top.ok = !NOT_STRAIGHT.has(id);
      top.kids = top.ok ? childrenOf(top.e, id).reverse() : [];
    }
    const next = top.ok ? top.kids.pop() : undefined;
    if (next !== undefined) {
      const m = memo.get(next);
      if (m === undefined) stack.push({ e: next, kids: null, ok: true });
      else if (!m) top.ok = false;
      continue;
    }
    stack.pop();
    memo.set(top.e, top.ok);
    if (stack.length === 0) return top.ok;
    if (!top.ok) stack[stack.length - 1]!.ok = false;
  }
}

/** A visit in progress: yields a child to visit, receives its instrumented version, returns the node's. */
type Visit = Generator<Ref, Ref, Ref>;

class FunctionMeter {
  private readonly m: binaryen.Module;
  private readonly vars: Type[];
  private readonly nParams: number;
  private readonly temps = new Map<Type, number>();
  private readonly targets: Set<string>;
  private readonly nonLeaf: boolean;
  private readonly ftvm: boolean;
  /** parameters added in front of the locals: fuel (i64) and depth (i32) for 'ftvm' */
  private readonly extra: number;
  private readonly fuel: number;
  private readonly depth: number;
  private seg: Segment = segment([]);
  /** how many segments have been opened: code that opened one changes the fuel as it runs */
  private opens = 0;
  private readonly straightMemo = new Map<Ref, boolean>();

  constructor(
    m: binaryen.Module,
    private readonly info: binaryen.FunctionInfo,
    private readonly imported: Set<string>,
    private readonly opts: InstrumentOptions,
    private readonly sigs: Signatures,
  ) {
    this.m = m;
    this.vars = [...info.vars];
    this.nParams = binaryen.expandType(info.params).length;
    this.ftvm = opts.strategy === 'ftvm';
    this.extra = this.ftvm ? 2 : 0;
    this.fuel = this.nParams;
    this.depth = this.nParams + 1;
    const s = scan(info.body, imported, this.nParams, this.extra);
    this.targets = s.targets;
    this.nonLeaf = s.callsGuest;
  }

  /** Whether the function calls guest functions (and so takes part in the depth budget). */
  get isNonLeaf(): boolean {
    return this.nonLeaf;
  }

  run(): { body: Ref; vars: Type[] } {
    const body = this.ftvm ? this.runFtvm() : this.runClassic();
    // Nothing must be left uncharged: the last segment is closed here.
    this.cut();
    return { body: body(), vars: this.vars };
  }

  private runClassic(): () => Ref {
    const charge = this.open();
    const body = this.walk(this.info.body);
    const t = binaryen.getExpressionType(this.info.body);
    return () => this.m.block(null, [...charge, body], t);
  }

  private runFtvm(): () => Ref {
    const m = this.m;
    const pre: Ref[] = [];
    if (this.nonLeaf) {
      // The frame weight is a placeholder until the optimizer is done (see
      // weighFrames): only then is the frame the engine will build known.
      const depth = (): Ref => m.local.get(this.depth, binaryen.i32);
      pre.push(
        m.local.set(this.depth, m.i32.add(depth(), m.global.get(G_WEIGHT, binaryen.i32))),
        m.if(
          m.i32.gt_u(m.i32.add(depth(), m.global.get(G_LEAF, binaryen.i32)), m.i32.const(this.opts.depthLimit)),
          m.block(null, [this.writeBack(), m.call(F_DEPTH, [], binaryen.none), m.unreachable()], binaryen.unreachable),
        ),
        this.checkPoint(),
      );
    }
    pre.push(...this.open());
    const inner = this.walk(this.info.body);
    return () => {
      const sig = this.sigs.of(this.info.name);
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

  /**
   * Instruments the tree under `root` and returns its replacement. Each
   * visit is a generator that yields the children it wants instrumented, in
   * the order the recursive definition would visit them; the work stack lives
   * on the heap, so nesting depth is bounded only by memory.
   */
  private walk(root: Ref): Ref {
    const stack: Visit[] = [];
    let next: Ref | Visit = this.visit(root);
    for (;;) {
      let value: Ref;
      if (typeof next === 'number') {
        value = next;
        if (stack.length === 0) return value;
      } else {
        stack.push(next);
        value = 0; // the first resumption of a generator ignores its argument
      }
      for (;;) {
        const step = stack[stack.length - 1]!.next(value);
        if (!step.done) {
          next = this.visit(step.value);
          break;
        }
        stack.pop();
        value = step.value;
        if (stack.length === 0) return value;
      }
    }
  }

  /** The instrumented version of `e`, or a visit that yields its children first. */
  private visit(e: Ref): Ref | Visit {
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
      case binaryen.SwitchId:
        return this.visitSwitch(e);
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

  private visitPlain(e: Ref, id: number): Ref | Visit {
    const refused = REFUSED.get(id);
    if (refused) throw unsupported(`${refused} in function ${this.info.name}`);
    const shape = SHAPES.get(id);
    if (!shape) throw unsupported(`${kindName(id)} in function ${this.info.name}`);
    const relaxed = RELAXED.get(id);
    if (relaxed && relaxed.has(opOf(e, id))) {
      throw unsupported(`relaxed SIMD in function ${this.info.name}: its results differ between CPUs`);
    }
    if (shape.access.length === 0 && !shape.items) {
      // no children: the common case (local.get, const), without a generator
      this.add(costOf(id));
      return e;
    }
    return this.visitPlainChildren(e, id, shape);
  }

  private *visitPlainChildren(e: Ref, id: number, shape: Shape): Visit {
    if (shape.items) {
      const n = shape.items.count(e);
      for (let i = 0; i < n; i++) {
        const c = shape.items.at(e, i);
        const r = yield c;
        if (r !== c) shape.items.setAt(e, i, r);
      }
    }
    for (const a of shape.access) {
      const c = a.get(e);
      if (!c) continue;
      const r = yield c;
      if (r !== c) a.set(e, r);
    }
    this.add(costOf(id));
    const nanOps = this.opts.canonicalizeNaNs ? NAN_PRODUCING.get(id) : undefined;
    if (nanOps?.has(opOf(e, id))) return this.canonicalNaN(e);
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

  private *visitBlock(e: Ref): Visit {
    const n = set.Block.getNumChildren(e);
    for (let i = 0; i < n; i++) {
      const c = set.Block.getChildAt(e, i);
      const r = yield c;
      if (r !== c) set.Block.setChildAt(e, i, r);
    }
    // A block that is the target of a branch is a merge point: paths with
    // different costs join at its end.
    const name = set.Block.getName(e);
    if (name && this.targets.has(name)) return this.after(e);
    return e;
  }

  private *visitLoop(e: Ref): Visit {
    const original = set.Loop.getBody(e);
    this.cut();
    const head: Ref[] = this.ftvm ? [this.checkPoint()] : [];
    head.push(...this.open());
    const body = yield original;
    set.Loop.setBody(e, this.m.block(null, [...head, body], binaryen.getExpressionType(original)));
    return e;
  }

  private *visitIf(e: Ref): Visit {
    const ifTrue = set.If.getIfTrue(e);
    const ifFalse = set.If.getIfFalse(e);
    set.If.setCondition(e, yield set.If.getCondition(e));
    this.add(1);
    const self = this;
    function* arm(x: Ref): Generator<Ref, Ref, Ref> {
      const charge = self.open();
      const body = yield x;
      self.cut();
      return self.m.block(null, [...charge, body], binaryen.getExpressionType(x));
    }
    if (this.ftvm && straight(ifTrue, this.straightMemo) && (!ifFalse || straight(ifFalse, this.straightMemo))) {
      // Both arms fall through to the merge and nothing in them observes the
      // count, so the code after the if stays in the current segment (charged
      // in advance); each arm charges only its own cost.
      const outer = this.seg;
      set.If.setIfTrue(e, yield* arm(ifTrue));
      if (ifFalse) set.If.setIfFalse(e, yield* arm(ifFalse));
      this.seg = outer;
      return e;
    }
    this.cut();
    set.If.setIfTrue(e, yield* arm(ifTrue));
    if (ifFalse) set.If.setIfFalse(e, yield* arm(ifFalse));
    return this.after(e);
  }

  private *visitBreak(e: Ref): Visit {
    const m = this.m;
    const original = set.Break.getValue(e);
    if (original) set.Break.setValue(e, yield original);
    const cond = set.Break.getCondition(e);
    const condition = cond ? yield cond : 0;
    if (condition) set.Break.setCondition(e, condition);
    this.add(1);
    if (!condition) {
      this.cut();
      this.openDead();
      return e;
    }
    if (this.ftvm && !original && binaryen.getExpressionType(e) !== binaryen.unreachable) {
      // br_if: the fall-through path stays in the current segment, which
      // charged it in advance; the taken path, usually the rare one, gets
      // back what the segment charges beyond this point before it leaves.
      const site = i64c(m, 0n);
      this.seg.refunds.push({ site, at: this.seg.cost });
      const fuel = (): Ref => m.local.get(this.fuel, binaryen.i64);
      return m.if(
        condition,
        m.block(null, [m.local.set(this.fuel, m.i64.add(fuel(), site)), m.br(set.Break.getName(e))], binaryen.unreachable),
      );
    }
    // br_if with a value: the fall-through path starts a new segment.
    return this.after(e);
  }

  private *visitSwitch(e: Ref): Visit {
    const value = set.Switch.getValue(e);
    if (value) set.Switch.setValue(e, yield value);
    set.Switch.setCondition(e, yield set.Switch.getCondition(e));
    this.add(1);
    this.cut();
    this.openDead();
    return e;
  }

  private *visitReturn(e: Ref): Visit {
    const original = set.Return.getValue(e);
    const value = original ? yield original : 0;
    this.cut();
    this.openDead();
    if (!this.ftvm) {
      if (value) set.Return.setValue(e, value);
      return e;
    }
    // Every return leaves through the exit block, where the count is written back.
    return this.m.br(EXIT_LABEL, 0, value || 0);
  }

  private *visitCall(e: Ref, id: number): Visit {
    const m = this.m;
    const isIndirect = id === binaryen.CallIndirectId;
    const w = isIndirect ? set.CallIndirect : set.Call;
    if (w.isReturn(e)) throw unsupported(`tail calls in function ${this.info.name}`);
    const before = this.seg;
    const opensBefore = this.opens;
    const n = w.getNumOperands(e);
    const operands: Ref[] = [];
    for (let i = 0; i < n; i++) operands.push(yield w.getOperandAt(e, i));
    const target = isIndirect ? yield set.CallIndirect.getTarget(e) : 0;
    this.add(1);
    const all = isIndirect ? [...operands, target] : operands;
    if (all.some((o) => binaryen.getExpressionType(o) === binaryen.unreachable)) {
      // The call never happens: keep the operands' evaluation, which ends in a trap or a branch.
      this.cut();
      this.openDead();
      return m.block(null, all.map((o) => dropValue(m, o)), binaryen.unreachable);
    }
    const setOperand = w.setOperandAt;
    const t = binaryen.getExpressionType(e);
    if (!this.ftvm) {
      operands.forEach((o, i) => setOperand(e, i, o));
      if (isIndirect) set.CallIndirect.setTarget(e, target);
      return this.after(e);
    }
    const callee = isIndirect ? '' : set.Call.getTarget(e);
    if (!isIndirect && !this.imported.has(callee)) return this.directCall(callee, operands, t);
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
    const sig = this.sigs.of(target);
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

  private *visitMemoryGrow(e: Ref): Visit {
    const m = this.m;
    const delta = yield set.MemoryGrow.getDelta(e);
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

/** The op of a Unary, Binary or SIMDTernary expression (the kinds whose ops the pass inspects). */
function opOf(e: Ref, id: number): number {
  if (id === binaryen.UnaryId) return set.Unary.getOp(e);
  if (id === binaryen.BinaryId) return set.Binary.getOp(e);
  if (id === binaryen.SIMDTernaryId) return set.SIMDTernary.getOp(e);
  return -1;
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
