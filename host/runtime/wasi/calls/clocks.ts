/** clock_*, random_get, sched_yield: every value from `Nondeterminism`, so a recorder logs it and a replayer answers it. */
import { Errno, isKnownClock } from '../abi.ts';
import type { WasiCtx } from '../ctx.ts';
import { u32 } from '../memory.ts';

type HostFn = (...args: any[]) => number | void;

function clockTimeGet(ctx: WasiCtx, id: number, ptr: number): number {
  if (!isKnownClock(id)) return Errno.INVAL;
  if (!ctx.guest().ok(ptr, 8)) return Errno.FAULT;
  const t = ctx.nd.clockNs(id);
  ctx.guest().dv.setBigUint64(ptr, BigInt.asUintN(64, t), true);
  return Errno.SUCCESS;
}

function clockResGet(ctx: WasiCtx, id: number, ptr: number): number {
  if (!isKnownClock(id)) return Errno.INVAL;
  if (!ctx.guest().ok(ptr, 8)) return Errno.FAULT;
  const r = ctx.nd.clockResolutionNs(id);
  ctx.guest().dv.setBigUint64(ptr, BigInt.asUintN(64, r), true);
  return Errno.SUCCESS;
}

function randomGet(ctx: WasiCtx, buf: number, len: number): number {
  if (!ctx.guest().ok(buf, len)) return Errno.FAULT;
  if (len === 0) return Errno.SUCCESS;
  // Fill a host-owned buffer, then copy in: the source never holds a view of guest memory.
  const bytes = new Uint8Array(len);
  ctx.nd.randomFill(bytes);
  const after = ctx.guest();
  if (!after.ok(buf, len)) return Errno.FAULT;
  after.u8.set(bytes, buf);
  return Errno.SUCCESS;
}

/** The clock, random and scheduling imports. */
export function clockCalls(ctx: WasiCtx): Record<string, HostFn> {
  return {
    clock_time_get: (id: number, _precision: bigint, ptr: number) => clockTimeGet(ctx, u32(id), u32(ptr)),
    clock_res_get: (id: number, ptr: number) => clockResGet(ctx, u32(id), u32(ptr)),
    random_get: (buf: number, len: number) => randomGet(ctx, u32(buf), u32(len)),
    // One thread, nothing else to run.
    sched_yield: () => Errno.SUCCESS,
  };
}
