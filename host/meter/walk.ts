// Generic access to the children of a binaryen expression, in execution order.
//
// binaryen.js exposes one wrapper class per expression kind, each with its own
// getter and setter names. The metering pass needs to visit every child of every
// expression in the order the wasm engine evaluates them and to replace a child
// by an instrumented version; this table is the one place that knows the field
// names. An expression kind missing here is refused by the pass with a clear
// error instead of being silently skipped.

import binaryen from 'binaryen';

type Ref = number;

interface Shape {
  /** the binaryen.js wrapper class that holds the setters */
  cls: string;
  /** scalar child fields, in evaluation order */
  fields: string[];
  /** the name of an array-of-children field, evaluated before the scalar fields */
  list?: 'operands' | 'children';
}

const E = binaryen as unknown as Record<string, unknown>;

/** Expression kinds whose children are all plain operands (no control flow of their own). */
export const SHAPES: ReadonlyMap<number, Shape> = new Map<number, Shape>([
  [binaryen.LocalGetId, { cls: 'LocalGet', fields: [] }],
  [binaryen.LocalSetId, { cls: 'LocalSet', fields: ['value'] }],
  [binaryen.GlobalGetId, { cls: 'GlobalGet', fields: [] }],
  [binaryen.GlobalSetId, { cls: 'GlobalSet', fields: ['value'] }],
  [binaryen.LoadId, { cls: 'Load', fields: ['ptr'] }],
  [binaryen.StoreId, { cls: 'Store', fields: ['ptr', 'value'] }],
  [binaryen.ConstId, { cls: 'Const', fields: [] }],
  [binaryen.UnaryId, { cls: 'Unary', fields: ['value'] }],
  [binaryen.BinaryId, { cls: 'Binary', fields: ['left', 'right'] }],
  [binaryen.SelectId, { cls: 'Select', fields: ['ifTrue', 'ifFalse', 'condition'] }],
  [binaryen.DropId, { cls: 'Drop', fields: ['value'] }],
  [binaryen.MemorySizeId, { cls: 'MemorySize', fields: [] }],
  [binaryen.MemoryGrowId, { cls: 'MemoryGrow', fields: ['delta'] }],
  [binaryen.NopId, { cls: 'Nop', fields: [] }],
  [binaryen.SIMDExtractId, { cls: 'SIMDExtract', fields: ['vec'] }],
  [binaryen.SIMDReplaceId, { cls: 'SIMDReplace', fields: ['vec', 'value'] }],
  [binaryen.SIMDShuffleId, { cls: 'SIMDShuffle', fields: ['left', 'right'] }],
  [binaryen.SIMDTernaryId, { cls: 'SIMDTernary', fields: ['a', 'b', 'c'] }],
  [binaryen.SIMDShiftId, { cls: 'SIMDShift', fields: ['vec', 'shift'] }],
  [binaryen.SIMDLoadId, { cls: 'SIMDLoad', fields: ['ptr'] }],
  [binaryen.SIMDLoadStoreLaneId, { cls: 'SIMDLoadStoreLane', fields: ['ptr', 'vec'] }],
  [binaryen.MemoryInitId, { cls: 'MemoryInit', fields: ['dest', 'offset', 'size'] }],
  [binaryen.DataDropId, { cls: 'DataDrop', fields: [] }],
  [binaryen.MemoryCopyId, { cls: 'MemoryCopy', fields: ['dest', 'source', 'size'] }],
  [binaryen.MemoryFillId, { cls: 'MemoryFill', fields: ['dest', 'value', 'size'] }],
  [binaryen.RefNullId, { cls: 'RefNull', fields: [] }],
  [binaryen.RefIsNullId, { cls: 'RefIsNull', fields: ['value'] }],
  [binaryen.RefFuncId, { cls: 'RefFunc', fields: [] }],
  [binaryen.RefEqId, { cls: 'RefEq', fields: ['left', 'right'] }],
  [binaryen.TableGetId, { cls: 'TableGet', fields: ['index'] }],
  [binaryen.TableSetId, { cls: 'TableSet', fields: ['index', 'value'] }],
  [binaryen.TableSizeId, { cls: 'TableSize', fields: [] }],
  [binaryen.TableGrowId, { cls: 'TableGrow', fields: ['value', 'delta'] }],
  // Atomic instructions are deterministic on an unshared memory (shared memory is refused).
  [binaryen.AtomicRMWId, { cls: 'AtomicRMW', fields: ['ptr', 'value'] }],
  [binaryen.AtomicCmpxchgId, { cls: 'AtomicCmpxchg', fields: ['ptr', 'expected', 'replacement'] }],
  [binaryen.AtomicWaitId, { cls: 'AtomicWait', fields: ['ptr', 'expected', 'timeout'] }],
  [binaryen.AtomicNotifyId, { cls: 'AtomicNotify', fields: ['ptr', 'notifyCount'] }],
  [binaryen.AtomicFenceId, { cls: 'AtomicFence', fields: [] }],
  [binaryen.TupleMakeId, { cls: 'TupleMake', fields: [], list: 'operands' }],
  [binaryen.TupleExtractId, { cls: 'TupleExtract', fields: ['tuple'] }],
]);

/** Names of expression kinds, for error messages. */
export function kindName(id: number): string {
  for (const [k, v] of Object.entries(E)) if (v === id && k.endsWith('Id')) return k.slice(0, -2);
  return `expression kind ${id}`;
}

function cap(s: string): string {
  return s[0]!.toUpperCase() + s.slice(1);
}

type Wrapper = Record<string, (...a: unknown[]) => unknown>;

/**
 * Visit every child of `expr` in evaluation order, replacing each by what `fn`
 * returns (which may be the same reference).
 */
export function mapChildren(shape: Shape, expr: Ref, fn: (child: Ref) => Ref): void {
  if (!shape.list && shape.fields.length === 0) return;
  const info = binaryen.getExpressionInfo(expr) as unknown as Record<string, unknown>;
  const w = (binaryen as unknown as Record<string, Wrapper>)[shape.cls]!;
  if (shape.list) {
    const items = info[shape.list] as Ref[];
    const setAt = shape.list === 'operands' ? 'setOperandAt' : 'setChildAt';
    items.forEach((child, i) => {
      const next = fn(child);
      if (next !== child) w[setAt]!(expr, i, next);
    });
  }
  for (const field of shape.fields) {
    const child = info[field] as Ref;
    if (!child) continue;
    const next = fn(child);
    if (next !== child) w['set' + cap(field)]!(expr, next);
  }
}

/** The few binaryen.js expression setters the pass calls directly (untyped in binaryen's .d.ts). */
interface Setters {
  Const: { setValueI64(e: Ref, v: bigint): void; setValueI32(e: Ref, v: number): void };
  Block: { setChildAt(e: Ref, i: number, c: Ref): void };
  Loop: { setBody(e: Ref, c: Ref): void };
  If: { setCondition(e: Ref, c: Ref): void; setIfTrue(e: Ref, c: Ref): void; setIfFalse(e: Ref, c: Ref): void };
  Break: { setValue(e: Ref, c: Ref): void; setCondition(e: Ref, c: Ref): void };
  Switch: { setValue(e: Ref, c: Ref): void; setCondition(e: Ref, c: Ref): void };
  Call: { setOperandAt(e: Ref, i: number, c: Ref): void };
  CallIndirect: { setOperandAt(e: Ref, i: number, c: Ref): void; setTarget(e: Ref, c: Ref): void };
  Return: { setValue(e: Ref, c: Ref): void };
  LocalGet: { getIndex(e: Ref): number; setIndex(e: Ref, i: number): void };
  LocalSet: { getIndex(e: Ref): number; setIndex(e: Ref, i: number): void };
  MemoryGrow: { setDelta(e: Ref, c: Ref): void };
}
export const set = binaryen as unknown as Setters;
