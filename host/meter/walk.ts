// Generic access to the children of a binaryen expression, in execution order,
// and walks over expression trees that never recurse on the JavaScript stack.
//
// binaryen.js exposes one wrapper class per expression kind, each with its own
// getter and setter names. The metering pass needs to visit every child of every
// expression in the order the wasm engine evaluates them and to replace a child
// by an instrumented version; this table is the one place that knows the field
// names. An expression kind missing here is refused by the pass with a clear
// error instead of being silently skipped.
//
// Every walk here keeps its own work stack on the heap: compilers nest blocks
// thousands deep (Go lowers a switch to one block per case) and build operand
// chains as deep as a function is long, far deeper than the JavaScript stack
// allows a recursive walk to go.

import binaryen from 'binaryen';

type Ref = number;

/** How to read and replace one child of an expression, through binaryen.js's own getters and setters (cheap: one call each). */
interface Field {
  get: (e: Ref) => Ref;
  set: (e: Ref, c: Ref) => void;
}

/** A list of children (operands) of an expression. */
interface List {
  count: (e: Ref) => number;
  at: (e: Ref, i: number) => Ref;
  setAt: (e: Ref, i: number, c: Ref) => void;
}

export interface Shape {
  /** the binaryen.js wrapper class that holds the getters and setters */
  cls: string;
  /** scalar child fields, in evaluation order */
  fields: string[];
  /** the name of an array-of-children field, evaluated before the scalar fields */
  list?: 'operands' | 'children';
  /** accessors of `fields`, in the same order */
  access: Field[];
  /** accessors of `list` */
  items: List | null;
}

type Wrapper = Record<string, (...a: unknown[]) => unknown>;
const W = binaryen as unknown as Record<string, Wrapper>;

function cap(s: string): string {
  return s[0]!.toUpperCase() + s.slice(1);
}

function shape(cls: string, fields: string[], list?: 'operands' | 'children'): Shape {
  const w = W[cls] ?? {};
  if (!W[cls] && (fields.length > 0 || list)) throw new Error(`binaryen.js has no ${cls}`);
  const access = fields.map((f) => {
    const get = w['get' + cap(f)] as (e: Ref) => Ref;
    const set = w['set' + cap(f)] as (e: Ref, c: Ref) => void;
    if (!get || !set) throw new Error(`binaryen.js has no ${cls}.get/set${cap(f)}`);
    return { get, set };
  });
  let items: List | null = null;
  if (list) {
    const one = list === 'operands' ? 'Operand' : 'Child';
    items = {
      count: w[`getNum${list === 'operands' ? 'Operands' : 'Children'}`] as (e: Ref) => number,
      at: w[`get${one}At`] as (e: Ref, i: number) => Ref,
      setAt: w[`set${one}At`] as (e: Ref, i: number, c: Ref) => void,
    };
  }
  return { cls, fields, list, access, items };
}

/** Expression kinds whose children are all plain operands (no control flow of their own). */
export const SHAPES: ReadonlyMap<number, Shape> = new Map<number, Shape>([
  [binaryen.LocalGetId, shape('LocalGet', [])],
  [binaryen.LocalSetId, shape('LocalSet', ['value'])],
  [binaryen.GlobalGetId, shape('GlobalGet', [])],
  [binaryen.GlobalSetId, shape('GlobalSet', ['value'])],
  [binaryen.LoadId, shape('Load', ['ptr'])],
  [binaryen.StoreId, shape('Store', ['ptr', 'value'])],
  [binaryen.ConstId, shape('Const', [])],
  [binaryen.UnaryId, shape('Unary', ['value'])],
  [binaryen.BinaryId, shape('Binary', ['left', 'right'])],
  [binaryen.SelectId, shape('Select', ['ifTrue', 'ifFalse', 'condition'])],
  [binaryen.DropId, shape('Drop', ['value'])],
  [binaryen.MemorySizeId, shape('MemorySize', [])],
  [binaryen.MemoryGrowId, shape('MemoryGrow', ['delta'])],
  [binaryen.NopId, shape('Nop', [])],
  [binaryen.SIMDExtractId, shape('SIMDExtract', ['vec'])],
  [binaryen.SIMDReplaceId, shape('SIMDReplace', ['vec', 'value'])],
  [binaryen.SIMDShuffleId, shape('SIMDShuffle', ['left', 'right'])],
  [binaryen.SIMDTernaryId, shape('SIMDTernary', ['a', 'b', 'c'])],
  [binaryen.SIMDShiftId, shape('SIMDShift', ['vec', 'shift'])],
  [binaryen.SIMDLoadId, shape('SIMDLoad', ['ptr'])],
  [binaryen.SIMDLoadStoreLaneId, shape('SIMDLoadStoreLane', ['ptr', 'vec'])],
  [binaryen.MemoryInitId, shape('MemoryInit', ['dest', 'offset', 'size'])],
  [binaryen.DataDropId, shape('DataDrop', [])],
  [binaryen.MemoryCopyId, shape('MemoryCopy', ['dest', 'source', 'size'])],
  [binaryen.MemoryFillId, shape('MemoryFill', ['dest', 'value', 'size'])],
  [binaryen.RefNullId, shape('RefNull', [])],
  [binaryen.RefIsNullId, shape('RefIsNull', ['value'])],
  [binaryen.RefFuncId, shape('RefFunc', [])],
  [binaryen.RefEqId, shape('RefEq', ['left', 'right'])],
  [binaryen.TableGetId, shape('TableGet', ['index'])],
  [binaryen.TableSetId, shape('TableSet', ['index', 'value'])],
  [binaryen.TableSizeId, shape('TableSize', [])],
  [binaryen.TableGrowId, shape('TableGrow', ['value', 'delta'])],
  // Atomic instructions are deterministic on an unshared memory (shared memory is refused).
  [binaryen.AtomicRMWId, shape('AtomicRMW', ['ptr', 'value'])],
  [binaryen.AtomicCmpxchgId, shape('AtomicCmpxchg', ['ptr', 'expected', 'replacement'])],
  [binaryen.AtomicWaitId, shape('AtomicWait', ['ptr', 'expected', 'timeout'])],
  [binaryen.AtomicNotifyId, shape('AtomicNotify', ['ptr', 'notifyCount'])],
  [binaryen.AtomicFenceId, shape('AtomicFence', [])],
  [binaryen.TupleMakeId, shape('TupleMake', [], 'operands')],
  [binaryen.TupleExtractId, shape('TupleExtract', ['tuple'])],
]);

/**
 * The control-flow and call kinds, whose children the pass handles one by one;
 * the same accessors, for walks that treat every kind alike.
 */
const CONTROL: ReadonlyMap<number, Shape> = new Map<number, Shape>([
  [binaryen.BlockId, shape('Block', [], 'children')],
  [binaryen.IfId, shape('If', ['condition', 'ifTrue', 'ifFalse'])],
  [binaryen.LoopId, shape('Loop', ['body'])],
  [binaryen.BreakId, shape('Break', ['value', 'condition'])],
  [binaryen.SwitchId, shape('Switch', ['value', 'condition'])],
  [binaryen.CallId, shape('Call', [], 'operands')],
  [binaryen.CallIndirectId, shape('CallIndirect', ['target'], 'operands')],
  [binaryen.ReturnId, shape('Return', ['value'])],
]);

const ANY: ReadonlyMap<number, Shape> = new Map([...SHAPES, ...CONTROL]);

/** Names of expression kinds, for error messages. */
export function kindName(id: number): string {
  for (const [k, v] of Object.entries(binaryen as unknown as Record<string, unknown>)) if (v === id && k.endsWith('Id')) return k.slice(0, -2);
  return `expression kind ${id}`;
}

/**
 * The children of `e` (of kind `id`), in evaluation order, absent optional
 * ones left out. A kind neither table knows (unreachable, or one the pass
 * refuses) has none here.
 */
export function childrenOf(e: Ref, id: number): Ref[] {
  const s = ANY.get(id);
  const out: Ref[] = [];
  if (!s) return out;
  if (s.items) {
    const n = s.items.count(e);
    for (let i = 0; i < n; i++) out.push(s.items.at(e, i));
  }
  for (const a of s.access) {
    const c = a.get(e);
    if (c) out.push(c);
  }
  return out;
}

/**
 * Replaces the child of `e` that `childrenOf(e, id)` lists at `index` (the
 * same numbering: list items first, then the present scalar fields).
 */
export function setChildOf(e: Ref, id: number, index: number, c: Ref): void {
  const s = ANY.get(id)!;
  if (s.items) {
    const n = s.items.count(e);
    if (index < n) return s.items.setAt(e, index, c);
    index -= n;
  }
  for (const a of s.access) {
    if (!a.get(e)) continue;
    if (index-- === 0) return a.set(e, c);
  }
  throw new RangeError(`no child ${index} in ${kindName(id)}`);
}

/**
 * Visits every direct child of `expr` (of a kind in SHAPES) in evaluation
 * order, replacing each by what `fn` returns (which may be the same reference).
 */
export function mapChildren(shape: Shape, expr: Ref, fn: (child: Ref) => Ref): void {
  if (shape.items) {
    const n = shape.items.count(expr);
    for (let i = 0; i < n; i++) {
      const child = shape.items.at(expr, i);
      const next = fn(child);
      if (next !== child) shape.items.setAt(expr, i, next);
    }
  }
  for (const a of shape.access) {
    const child = a.get(expr);
    if (!child) continue;
    const next = fn(child);
    if (next !== child) a.set(expr, next);
  }
}

/**
 * Calls `fn` on every expression under `root` (root included), parents before
 * children, children in evaluation order. `fn` returns false to skip the
 * children of the expression it was given.
 */
export function forEachExpression(root: Ref, fn: (e: Ref, id: number) => boolean | void): void {
  const stack: Ref[] = [root];
  while (stack.length > 0) {
    const e = stack.pop()!;
    const id = binaryen.getExpressionId(e);
    if (fn(e, id) === false) continue;
    const kids = childrenOf(e, id);
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]!);
  }
}

/** The size of a function body, for the optimizer's budget (see index.ts). */
export interface BodyShape {
  /** expressions in the body, blocks included */
  nodes: number;
  /** the most expressions other than blocks on one path from the body down (blocks nest cheaply for binaryen's passes) */
  depth: number;
}

/** Measures `body` (a function body) with a heap stack: any depth or length. */
export function bodyShape(body: Ref): BodyShape {
  const blockId = binaryen.BlockId;
  const refs: Ref[] = [body];
  const depths: number[] = [0];
  let nodes = 0;
  let depth = 0;
  while (refs.length > 0) {
    const e = refs.pop()!;
    const id = binaryen.getExpressionId(e);
    const d = depths.pop()! + (id === blockId ? 0 : 1);
    nodes++;
    if (d > depth) depth = d;
    for (const c of childrenOf(e, id)) {
      refs.push(c);
      depths.push(d);
    }
  }
  return { nodes, depth };
}

/** The few binaryen.js expression setters the pass calls directly (untyped in binaryen's .d.ts). */
interface Setters {
  Const: { setValueI64(e: Ref, v: bigint): void; setValueI32(e: Ref, v: number): void };
  Block: { setChildAt(e: Ref, i: number, c: Ref): void; getNumChildren(e: Ref): number; getChildAt(e: Ref, i: number): Ref; getName(e: Ref): string | null };
  Loop: { setBody(e: Ref, c: Ref): void; getBody(e: Ref): Ref };
  If: {
    setCondition(e: Ref, c: Ref): void;
    setIfTrue(e: Ref, c: Ref): void;
    setIfFalse(e: Ref, c: Ref): void;
    getCondition(e: Ref): Ref;
    getIfTrue(e: Ref): Ref;
    getIfFalse(e: Ref): Ref;
  };
  Break: { setValue(e: Ref, c: Ref): void; setCondition(e: Ref, c: Ref): void; getValue(e: Ref): Ref; getCondition(e: Ref): Ref; getName(e: Ref): string };
  Switch: {
    setValue(e: Ref, c: Ref): void;
    setCondition(e: Ref, c: Ref): void;
    getValue(e: Ref): Ref;
    getCondition(e: Ref): Ref;
    getNumNames(e: Ref): number;
    getNameAt(e: Ref, i: number): string;
    getDefaultName(e: Ref): string;
  };
  Call: { setOperandAt(e: Ref, i: number, c: Ref): void; getNumOperands(e: Ref): number; getOperandAt(e: Ref, i: number): Ref; getTarget(e: Ref): string; isReturn(e: Ref): boolean };
  CallIndirect: {
    setOperandAt(e: Ref, i: number, c: Ref): void;
    setTarget(e: Ref, c: Ref): void;
    getNumOperands(e: Ref): number;
    getOperandAt(e: Ref, i: number): Ref;
    getTarget(e: Ref): Ref;
    isReturn(e: Ref): boolean;
  };
  Return: { setValue(e: Ref, c: Ref): void; getValue(e: Ref): Ref };
  LocalGet: { getIndex(e: Ref): number; setIndex(e: Ref, i: number): void };
  LocalSet: { getIndex(e: Ref): number; setIndex(e: Ref, i: number): void };
  MemoryGrow: { setDelta(e: Ref, c: Ref): void; getDelta(e: Ref): Ref };
  Unary: { getOp(e: Ref): number };
  Binary: { getOp(e: Ref): number };
  SIMDTernary: { getOp(e: Ref): number };
  GlobalGet: { getName(e: Ref): string };
}
export const set = binaryen as unknown as Setters;
