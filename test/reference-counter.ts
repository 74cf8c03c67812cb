// An independent oracle for the count: a deliberately naive instrumentation
// that adds each operator's cost to a global right when the operator runs
// (after its operands, before its effect for calls), with no segments, no
// locals, no write-backs. It shares only the cost table with the real pass.
// Where the real pass says the count is exact (at every host call), the two
// must agree.

import binaryen from 'binaryen';
import { costOf } from '../host/meter/instrument.ts';
import { EMIT_FEATURES } from '../host/meter/index.ts';
import { SHAPES, mapChildren, set } from '../host/meter/walk.ts';

type Ref = number;
export const REF_COUNT_EXPORT = 'ref_count';
const G = 'ref$count';

export function referenceInstrument(bytes: Uint8Array): Uint8Array {
  const m = (binaryen.readBinary as (b: Uint8Array, f?: number) => binaryen.Module)(bytes, binaryen.Features.All);
  try {
    m.addGlobal(G, binaryen.i64, true, (m.i64.const as unknown as (v: bigint) => Ref)(0n));
    m.addGlobalExport(G, REF_COUNT_EXPORT);
    const fns: binaryen.FunctionInfo[] = [];
    for (let i = 0; i < m.getNumFunctions(); i++) {
      const info = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
      if (!info.module) fns.push(info);
    }
    for (const info of fns) {
      const vars = [...info.vars];
      const nParams = binaryen.expandType(info.params).length;
      const fresh = (t: number): number => nParams + vars.push(t) - 1;
      const inc = (c: number): Ref =>
        m.global.set(G, m.i64.add(m.global.get(G, binaryen.i64), (m.i64.const as unknown as (v: bigint) => Ref)(BigInt(c))));
      /** evaluate x, then count c */
      const after = (x: Ref, c: number): Ref => {
        const t = binaryen.getExpressionType(x);
        if (c === 0 || t === binaryen.unreachable) return x;
        if (t === binaryen.none) return m.block(null, [x, inc(c)], binaryen.none);
        const tmp = fresh(t);
        return m.block(null, [m.local.set(tmp, x), inc(c), m.local.get(tmp, t)], t);
      };
      const visit = (e: Ref): Ref => {
        const id = binaryen.getExpressionId(e);
        const info = (): Record<string, unknown> => binaryen.getExpressionInfo(e) as unknown as Record<string, unknown>;
        switch (id) {
          case binaryen.BlockId:
            (info().children as Ref[]).forEach((c, i) => set.Block.setChildAt(e, i, visit(c)));
            return e;
          case binaryen.LoopId:
            set.Loop.setBody(e, visit(info().body as Ref));
            return e;
          case binaryen.IfId: {
            const x = info();
            set.If.setCondition(e, after(visit(x.condition as Ref), 1));
            set.If.setIfTrue(e, visit(x.ifTrue as Ref));
            if (x.ifFalse) set.If.setIfFalse(e, visit(x.ifFalse as Ref));
            return e;
          }
          case binaryen.BreakId:
          case binaryen.SwitchId: {
            const x = info();
            const w = id === binaryen.BreakId ? set.Break : set.Switch;
            const v = x.value ? visit(x.value as Ref) : 0;
            if (x.condition) {
              if (v) w.setValue(e, v);
              w.setCondition(e, after(visit(x.condition as Ref), 1));
              return e;
            }
            if (v) {
              w.setValue(e, after(v, 1));
              return e;
            }
            return m.block(null, [inc(1), e], binaryen.unreachable);
          }
          case binaryen.CallId:
          case binaryen.CallIndirectId: {
            const x = info();
            const indirect = id === binaryen.CallIndirectId;
            const ops = (x.operands as Ref[]).map(visit);
            if (indirect) ops.push(visit(x.target as Ref));
            if (ops.some((o) => binaryen.getExpressionType(o) === binaryen.unreachable)) {
              // never called: only the operands run
              return m.block(
                null,
                ops.map((o) => ([binaryen.none, binaryen.unreachable].includes(binaryen.getExpressionType(o)) ? o : m.drop(o))),
                binaryen.unreachable,
              );
            }
            const code: Ref[] = [];
            ops.forEach((o, i) => {
              const t = binaryen.getExpressionType(o);
              const l = fresh(t);
              code.push(m.local.set(l, o));
              if (indirect && i === ops.length - 1) set.CallIndirect.setTarget(e, m.local.get(l, t));
              else (indirect ? set.CallIndirect.setOperandAt : set.Call.setOperandAt)(e, i, m.local.get(l, t));
            });
            code.push(inc(1), e);
            return m.block(null, code, binaryen.getExpressionType(e));
          }
          case binaryen.ReturnId: {
            const v = info().value as Ref;
            if (v) set.Return.setValue(e, visit(v));
            return e;
          }
          case binaryen.UnreachableId:
            return e;
          default: {
            const shape = SHAPES.get(id);
            if (!shape) throw new Error(`reference counter: unsupported expression ${id}`);
            mapChildren(shape, e, visit);
            return after(e, costOf(id));
          }
        }
      };
      const body = visit(info.body);
      m.removeFunction(info.name);
      m.addFunction(info.name, info.params, info.results, vars, body);
    }
    m.setFeatures(EMIT_FEATURES);
    if (!m.validate()) throw new Error('reference counter produced an invalid module');
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}
