/**
 * The `ftvm_io` NIC functions a guest may import (the whole event ABI, timer
 * and interrupts included, is drawn in ../events.ts):
 *
 *   import "ftvm_io" "nic_recv"  (func (param i32 i32 i32) (result i32))
 *       (conn_out, buf, len): takes the oldest queued message, writes its
 *       connection to conn_out and its bytes to buf, returns its length
 *       (0: the peer closed); -1 none queued, -2 buf too small (nothing
 *       taken), -3 a pointer out of memory.
 *   import "ftvm_io" "nic_send"  (func (param i32 i32 i32) (result i32))
 *       (conn, buf, len): 0 sent; -2 empty or larger than MAX_MESSAGE_BYTES
 *       (64 KiB), -3 a pointer out of memory.
 *   import "ftvm_io" "nic_close" (func (param i32) (result i32))
 *       (conn): closes a connection (the peer sees end of file); returns 0.
 *   import "ftvm_io" "wait"      (func)
 *       blocks until an interrupt was delivered; a guest nothing will ever
 *       wake ends idle (GuestIdle).
 */
import type { WasiCtx } from './ctx.ts';
import { u32 } from './memory.ts';
import { MAX_MESSAGE_BYTES } from '../nic.ts';

/** Results of the NIC functions, as drawn above. */
export const NIC_NONE_QUEUED = -1;
export const NIC_TOO_SMALL = -2;
export const NIC_FAULT = -3;

function nicRecv(ctx: WasiCtx, connPtr: number, buf: number, len: number): number {
  const g = ctx.guest();
  if (!g.ok(connPtr, 4) || !g.ok(buf, len)) return NIC_FAULT;
  const size = ctx.nic.peekSize();
  if (size === null) return NIC_NONE_QUEUED;
  if (size > len) return NIC_TOO_SMALL;
  const m = ctx.nic.take()!;
  g.u8.set(m.bytes, buf);
  g.dv.setUint32(connPtr, m.conn, true);
  return m.bytes.length;
}

function nicSend(ctx: WasiCtx, conn: number, buf: number, len: number): number {
  const g = ctx.guest();
  if (!g.ok(buf, len)) return NIC_FAULT;
  if (len === 0 || len > MAX_MESSAGE_BYTES) return NIC_TOO_SMALL;
  ctx.nic.emit(conn, g.u8.slice(buf, buf + len));
  return 0;
}

/** The ftvm_io NIC imports of one host. */
export function nicCalls(ctx: WasiCtx): Record<'nic_recv' | 'nic_send' | 'nic_close' | 'wait', (...args: any[]) => number | void> {
  return {
    nic_recv: (connPtr: number, buf: number, len: number) => nicRecv(ctx, u32(connPtr), u32(buf), u32(len)),
    nic_send: (conn: number, buf: number, len: number) => nicSend(ctx, u32(conn), u32(buf), u32(len)),
    nic_close: (conn: number) => {
      ctx.nic.close(u32(conn));
      return 0;
    },
    wait: () => ctx.waitForInput(),
  };
}
