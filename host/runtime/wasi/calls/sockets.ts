/**
 * Socket calls (`sock_*`) on the VM's virtual NIC: the listening socket and
 * the connections accepted from it. fd_read/fd_write on a socket come here too.
 * A blocking call waits through `WasiCtx.waitForInput` (an interrupt may bring
 * data; a guest nothing will wake ends idle). Sockets carry SOCK_RIGHTS, the
 * listening socket LISTEN_RIGHTS (see fdtable.ts).
 *
 * Flags as wasmtime's preview1 host takes them (wasi-common's TcpListener and
 * TcpStream, crates/wasi-common/src/sync/net.rs): sock_accept and
 * fd_fdstat_set_flags on a socket accept NONBLOCK or nothing (EINVAL); sock_recv
 * accepts RECV_PEEK (into the first iovec only) and RECV_WAITALL (the whole
 * buffer, up to WAITALL_MAX_BYTES; less only at the end of the stream),
 * anything else ENOTSUP; sock_send
 * takes no si_flags (ENOTSUP). A send never blocks and never sends less than
 * asked (the NIC queues it; see runtime/tcp-listen.ts for the bound on a real
 * connection). Unlike wasmtime, sock_recv/sock_send on a descriptor that is not
 * a socket answer ENOTSOCK (wasmtime: EBADF) and on the listening socket
 * ENOTCONN, as POSIX does.
 */
import { Errno, FDFLAGS_ALL, FDFLAGS_NONBLOCK, RIFLAGS_RECV_PEEK, RIFLAGS_RECV_WAITALL, Rights, SDFLAGS_RD, SDFLAGS_WR } from '../abi.ts';
import type { WasiCtx } from '../ctx.ts';
import { SOCK_RIGHTS } from '../fdtable.ts';
import { gather, iovecsTotal, readIovecs, u32, type Guest, type Iovec } from '../memory.ts';
import { MAX_MESSAGE_BYTES } from '../../nic.ts';

type HostFn = (...args: any[]) => number | void;

/**
 * The most a RECV_WAITALL waits for, bytes: a larger buffer is filled with
 * what is there once this much arrived (POSIX lets MSG_WAITALL return less).
 * It stays below the unread bound at which a real connection is paused
 * (runtime/tcp-listen.ts UNREAD_MAX_BYTES), so such a wait always ends.
 */
import { WAITALL_BYTES_MAX as WAITALL_MAX_BYTES } from '../../../limits.ts'; export { WAITALL_MAX_BYTES };

function sockAccept(ctx: WasiCtx, fd: number, flags: number, fdPtr: number): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind !== 'listen') return Errno.NOTSOCK;
  if ((f.base & Rights.SOCK_ACCEPT) === 0n) return Errno.NOTCAPABLE;
  if ((flags & 0xffff & ~FDFLAGS_ALL) !== 0) return Errno.INVAL;
  if ((flags & FDFLAGS_ALL & ~FDFLAGS_NONBLOCK) !== 0) return Errno.INVAL; // wasmtime: "cannot set anything else than NONBLOCK"
  if (!ctx.guest().ok(fdPtr, 4)) return Errno.FAULT;
  while (ctx.nic.queued === 0) {
    if (f.flags & FDFLAGS_NONBLOCK) return Errno.AGAIN;
    ctx.waitForInput();
    if (ctx.fds.get(fd) !== f) return Errno.BADF; // an interrupt handler closed it
  }
  // Only now: an interrupt handler may have opened descriptors while this call waited.
  const next = ctx.fds.alloc();
  if (next < 0) return -next;
  const sock = ctx.nic.accept()!;
  ctx.fds.set(next, { kind: 'sock', sock, flags: flags & FDFLAGS_ALL, base: SOCK_RIGHTS, inheriting: 0n });
  const g = ctx.guest();
  if (!g.ok(fdPtr, 4)) return Errno.FAULT;
  g.dv.setUint32(fdPtr, next, true);
  return Errno.SUCCESS;
}

/** Reads a socket's stream into iovecs; blocks unless the socket is non-blocking. Writes ro_flags when flagsPtr is given. */
export function sockRead(ctx: WasiCtx, fd: number, iovs: number, iovsLen: number, riFlags: number, nreadPtr: number, flagsPtr: number | null): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind === 'listen') return Errno.NOTCONN;
  if (f.kind !== 'sock') return Errno.NOTSOCK;
  if ((f.base & Rights.FD_READ) === 0n) return Errno.NOTCAPABLE;
  const check = (g: Guest): Iovec[] | undefined =>
    g.ok(nreadPtr, 4) && (flagsPtr === null || g.ok(flagsPtr, 2)) ? readIovecs(g, iovs, iovsLen) : undefined;
  if ((riFlags & ~(RIFLAGS_RECV_PEEK | RIFLAGS_RECV_WAITALL)) !== 0) return Errno.NOTSUP;
  const first = check(ctx.guest());
  if (!first) return Errno.FAULT;
  const peek = (riFlags & RIFLAGS_RECV_PEEK) !== 0;
  // RECV_WAITALL (without PEEK): wait until the whole buffer can be filled, or the stream ended.
  const want = !peek && riFlags & RIFLAGS_RECV_WAITALL ? Math.min(WAITALL_MAX_BYTES, Math.max(1, first.reduce((a, v) => a + v.len, 0))) : 1;
  const s = f.sock;
  while (ctx.nic.readable(s) < want && !s.peerClosed && !s.recvClosed) {
    if (f.flags & FDFLAGS_NONBLOCK) return Errno.AGAIN;
    ctx.waitForInput();
    if (ctx.fds.get(fd) !== f) return Errno.BADF; // an interrupt handler closed it
  }
  // An interrupt handler may have grown memory: check again.
  const g = ctx.guest();
  const all = check(g);
  if (!all) return Errno.FAULT;
  let n = 0;
  // RECV_PEEK reads from a copy, so the stream keeps its bytes, and only into the first iovec (as wasmtime).
  const from = peek ? { ...s, chunks: [...s.chunks] } : s;
  const list = peek ? all.slice(0, 1) : all;
  for (const v of list) {
    const bytes = ctx.nic.read(from, v.len);
    g.u8.set(bytes, v.ptr);
    n += bytes.length;
    if (bytes.length < v.len) break;
  }
  g.dv.setUint32(nreadPtr, n, true);
  if (flagsPtr !== null) g.dv.setUint16(flagsPtr, 0, true);
  return Errno.SUCCESS;
}

/** Sends the gathered bytes on a socket, in messages of at most MAX_MESSAGE_BYTES. */
export function sockSend(ctx: WasiCtx, fd: number, iovs: number, iovsLen: number, datalenPtr: number): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind === 'listen') return Errno.NOTCONN;
  if (f.kind !== 'sock') return Errno.NOTSOCK;
  if ((f.base & Rights.FD_WRITE) === 0n) return Errno.NOTCAPABLE;
  const g = ctx.guest();
  const list = readIovecs(g, iovs, iovsLen);
  if (!list || !g.ok(datalenPtr, 4)) return Errno.FAULT;
  if (f.sock.sendClosed) return Errno.PIPE;
  const total = iovecsTotal(list);
  if (total < 0) return -total;
  const bytes = gather(g, list, total);
  // The connection's send window (nic.ts): a blocking socket waits for room
  // until all is sent; a non-blocking one sends what fits, or answers EAGAIN.
  const conn = f.sock.conn;
  let sent = 0;
  while (sent < total) {
    const room = ctx.nic.sendRoom(conn);
    if (room <= 0) {
      if (f.flags & FDFLAGS_NONBLOCK) break;
      ctx.waitForInput();
      // an interrupt handler may have closed or shut it meanwhile
      if (ctx.fds.get(fd) !== f) return sent ? done(ctx, datalenPtr, sent) : Errno.BADF;
      if (f.sock.sendClosed) return sent ? done(ctx, datalenPtr, sent) : Errno.PIPE;
      continue;
    }
    const n = Math.min(room, total - sent, MAX_MESSAGE_BYTES);
    ctx.nic.emit(conn, bytes.slice(sent, sent + n));
    sent += n;
  }
  if (sent === 0 && total > 0) return Errno.AGAIN;
  return done(ctx, datalenPtr, sent);
}

/** Writes how many bytes a send took (memory may have grown during a wait: checked again). */
function done(ctx: WasiCtx, datalenPtr: number, n: number): number {
  const g = ctx.guest();
  if (!g.ok(datalenPtr, 4)) return Errno.FAULT;
  g.dv.setUint32(datalenPtr, n, true);
  return Errno.SUCCESS;
}

/** sock_send with si_flags: preview1 defines none, and wasmtime refuses any (ENOTSUP) after the descriptor checks. */
function sockSendFlagged(ctx: WasiCtx, fd: number): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind === 'listen') return Errno.NOTCONN;
  if (f.kind !== 'sock') return Errno.NOTSOCK;
  return Errno.NOTSUP;
}

function sockShutdown(ctx: WasiCtx, fd: number, how: number): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind === 'listen') return Errno.NOTCONN;
  if (f.kind !== 'sock') return Errno.NOTSOCK;
  if ((f.base & Rights.SOCK_SHUTDOWN) === 0n) return Errno.NOTCAPABLE;
  if (how === 0 || (how & ~(SDFLAGS_RD | SDFLAGS_WR)) !== 0) return Errno.INVAL;
  const s = f.sock;
  if (how & SDFLAGS_RD) {
    s.recvClosed = true;
    s.chunks.length = 0;
    s.head = 0;
  }
  if (how & SDFLAGS_WR && !s.sendClosed) {
    s.sendClosed = true;
    ctx.nic.emit(s.conn, new Uint8Array(0), true);
  }
  return Errno.SUCCESS;
}

/** The `sock_*` imports. */
export function socketCalls(ctx: WasiCtx): Record<string, HostFn> {
  return {
    sock_accept: (fd: number, flags: number, fdPtr: number) => sockAccept(ctx, u32(fd), u32(flags), u32(fdPtr)),
    sock_recv: (fd: number, iovs: number, n: number, ri: number, datalen: number, flags: number) =>
      sockRead(ctx, u32(fd), u32(iovs), u32(n), u32(ri), u32(datalen), u32(flags)),
    sock_send: (fd: number, iovs: number, n: number, si: number, datalen: number) =>
      u32(si) & 0xffff ? sockSendFlagged(ctx, u32(fd)) : sockSend(ctx, u32(fd), u32(iovs), u32(n), u32(datalen)),
    sock_shutdown: (fd: number, how: number) => sockShutdown(ctx, u32(fd), u32(how)),
  };
}
