/** args_* and environ_*: argv and the environment as NUL-terminated UTF-8 strings (witx `args_get`, `environ_get`). */
import { Errno } from '../abi.ts';
import type { WasiCtx } from '../ctx.ts';
import { u32 } from '../memory.ts';

type HostFn = (...args: any[]) => number | void;

function writeSizes(ctx: WasiCtx, count: number, size: number, countPtr: number, sizePtr: number): number {
  const g = ctx.guest();
  if (!g.ok(countPtr, 4) || !g.ok(sizePtr, 4)) return Errno.FAULT;
  g.dv.setUint32(countPtr, count, true);
  g.dv.setUint32(sizePtr, size, true);
  return Errno.SUCCESS;
}

function writeCStrings(ctx: WasiCtx, list: Uint8Array[], size: number, ptrsPtr: number, bufPtr: number): number {
  const g = ctx.guest();
  if (!g.ok(ptrsPtr, list.length * 4) || !g.ok(bufPtr, size)) return Errno.FAULT;
  let at = bufPtr;
  list.forEach((bytes, i) => {
    g.dv.setUint32(ptrsPtr + i * 4, at, true);
    g.u8.set(bytes, at);
    at += bytes.length;
  });
  return Errno.SUCCESS;
}

/** The args/environ imports. */
export function argsCalls(ctx: WasiCtx): Record<string, HostFn> {
  const { args, environ } = ctx;
  return {
    args_get: (argv: number, buf: number) => writeCStrings(ctx, args.list, args.size, u32(argv), u32(buf)),
    args_sizes_get: (c: number, s: number) => writeSizes(ctx, args.list.length, args.size, u32(c), u32(s)),
    environ_get: (env: number, buf: number) => writeCStrings(ctx, environ.list, environ.size, u32(env), u32(buf)),
    environ_sizes_get: (c: number, s: number) => writeSizes(ctx, environ.list.length, environ.size, u32(c), u32(s)),
  };
}
