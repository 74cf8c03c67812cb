/**
 * poll_oneoff.
 *
 * fd_read / fd_write subscriptions on stdio, files and directories are always
 * ready (fd 0 reports the unread stdin byte count and HANGUP at its end; a
 * streamed stdin is reported readable with nbytes 0); on a closed fd they
 * report EBADF. A socket is ready to read when it has bytes or its peer closed
 * (HANGUP), the listening socket when a connection waits to be accepted;
 * sockets are always ready to write.
 *
 * Clocks: when some event is already ready, only clocks already due are
 * reported with it (a relative timeout of 0, or an absolute deadline passed;
 * absolute deadlines read their clock through Nondeterminism, once per clock
 * id). When nothing is ready, each subscribed clock is read through
 * Nondeterminism (logged), and the call waits through `WasiOptions.wait` for
 * the time left to the earliest deadline: a live caller sleeps, a replaying
 * one answers from the log. If the wait ends with nothing delivered, the
 * earliest clock(s) fired; if an interrupt was delivered, descriptors are
 * looked at again, then the clocks are read again and the call waits the rest.
 * With no clock and nothing ready the call blocks until an interrupt brings
 * something (or the guest ends idle).
 */
import {
  Errno,
  EVENT,
  EVENTRWFLAGS_HANGUP,
  EVENTTYPE_CLOCK,
  EVENTTYPE_FD_READ,
  EVENTTYPE_FD_WRITE,
  isKnownClock,
  SUBCLOCKFLAGS_ABSTIME,
  SUBSCRIPTION,
} from '../abi.ts';
import type { WasiCtx } from '../ctx.ts';
import { u32 } from '../memory.ts';

type HostFn = (...args: any[]) => number | void;

type Sub =
  | { kind: 'clock'; userdata: bigint; clockId: number; timeout: bigint; abstime: boolean }
  | { kind: 'fd'; userdata: bigint; type: number; fd: number };

interface Ev {
  userdata: bigint;
  error: number;
  type: number;
  nbytes: bigint;
  flags: number;
}

/** the most subscriptions one call may pass (each costs host memory) */
import { POLL_SUBSCRIPTIONS_MAX as MAX_SUBSCRIPTIONS } from '../../../limits.ts'; export { MAX_SUBSCRIPTIONS };

function fdEvents(ctx: WasiCtx, subs: readonly Sub[]): { index: number; ev: Ev }[] {
  const ready: { index: number; ev: Ev }[] = [];
  subs.forEach((s, index) => {
    if (s.kind !== 'fd') return;
    const f = ctx.fds.get(s.fd);
    let nbytes = 0n;
    let flags = 0;
    if (f && s.type === EVENTTYPE_FD_READ) {
      if (f.kind === 'stdio' && f.stream === 0) {
        if (!ctx.stdinRead) {
          const avail = ctx.stdin.length - ctx.stdinPos;
          nbytes = BigInt(avail);
          if (avail === 0) flags = EVENTRWFLAGS_HANGUP;
        } else if (ctx.stdinEof) flags = EVENTRWFLAGS_HANGUP;
      } else if (f.kind === 'listen') {
        if (ctx.nic.queued === 0) return;
      } else if (f.kind === 'sock') {
        const avail = ctx.nic.readable(f.sock);
        if (avail === 0 && !f.sock.peerClosed && !f.sock.recvClosed) return;
        nbytes = BigInt(avail);
        if (avail === 0) flags = EVENTRWFLAGS_HANGUP;
      }
    }
    if (f && s.type === EVENTTYPE_FD_WRITE && f.kind === 'sock' && !f.sock.sendClosed) {
      // writable while the connection's send window has room (nic.ts)
      const room = ctx.nic.sendRoom(f.sock.conn);
      if (room <= 0) return;
      if (Number.isFinite(room)) nbytes = BigInt(room);
    }
    ready.push({ index, ev: { userdata: s.userdata, error: f ? Errno.SUCCESS : Errno.BADF, type: s.type, nbytes, flags } });
  });
  return ready;
}

function pollOneoff(ctx: WasiCtx, inPtr: number, outPtr: number, nsubs: number, neventsPtr: number): number {
  if (nsubs === 0) return Errno.INVAL;
  if (nsubs > MAX_SUBSCRIPTIONS) return Errno.INVAL;
  const g = ctx.guest();
  if (!g.ok(inPtr, nsubs * SUBSCRIPTION.SIZE) || !g.ok(outPtr, nsubs * EVENT.SIZE) || !g.ok(neventsPtr, 4)) return Errno.FAULT;

  const subs: Sub[] = [];
  for (let i = 0; i < nsubs; i++) {
    const p = inPtr + i * SUBSCRIPTION.SIZE;
    const userdata = g.dv.getBigUint64(p + SUBSCRIPTION.userdata, true);
    const tag = g.dv.getUint8(p + SUBSCRIPTION.tag);
    if (tag === EVENTTYPE_CLOCK) {
      subs.push({
        kind: 'clock',
        userdata,
        clockId: g.dv.getUint32(p + SUBSCRIPTION.clock_id, true),
        timeout: g.dv.getBigUint64(p + SUBSCRIPTION.clock_timeout, true),
        abstime: (g.dv.getUint16(p + SUBSCRIPTION.clock_flags, true) & SUBCLOCKFLAGS_ABSTIME) !== 0,
      });
    } else if (tag === EVENTTYPE_FD_READ || tag === EVENTTYPE_FD_WRITE) {
      subs.push({ kind: 'fd', userdata, type: tag, fd: g.dv.getUint32(p + SUBSCRIPTION.fd_readwrite_fd, true) });
    } else {
      return Errno.INVAL;
    }
  }

  let now = new Map<number, bigint>();
  const readNow = (id: number): bigint => {
    let t = now.get(id);
    if (t === undefined) {
      t = BigInt.asUintN(64, ctx.nd.clockNs(id));
      now.set(id, t);
    }
    return t;
  };

  const badClocks: { index: number; ev: Ev }[] = [];
  const clocks: { index: number; ev: Ev; sub: Extract<Sub, { kind: 'clock' }>; deadline: bigint | null }[] = [];
  subs.forEach((s, index) => {
    if (s.kind === 'fd') return;
    const ev: Ev = { userdata: s.userdata, error: Errno.SUCCESS, type: EVENTTYPE_CLOCK, nbytes: 0n, flags: 0 };
    if (!isKnownClock(s.clockId)) {
      ev.error = Errno.INVAL;
      badClocks.push({ index, ev });
      return;
    }
    clocks.push({ index, ev, sub: s, deadline: s.abstime ? s.timeout : null });
  });

  let immediate = [...badClocks, ...fdEvents(ctx, subs)];
  let fired: typeof clocks = [];
  if (immediate.length > 0) {
    fired = clocks.filter((c) => (c.sub.abstime ? c.sub.timeout <= readNow(c.sub.clockId) : c.sub.timeout === 0n));
  } else if (clocks.length === 0) {
    while (immediate.length === 0) {
      ctx.waitForInput();
      immediate = fdEvents(ctx, subs);
    }
  } else {
    // Relative deadlines count from the first reading of their clock.
    for (const c of clocks) if (c.deadline === null) c.deadline = readNow(c.sub.clockId) + c.sub.timeout;
    for (;;) {
      const left = clocks.map((c) => {
        const t = readNow(c.sub.clockId);
        return c.deadline! > t ? c.deadline! - t : 0n;
      });
      let min = left[0]!;
      for (const l of left) if (l < min) min = l;
      if (min === 0n || !ctx.waitFor(min)) {
        fired = clocks.filter((_, i) => left[i] === min);
        break;
      }
      immediate = fdEvents(ctx, subs);
      if (immediate.length > 0) {
        now = new Map();
        fired = clocks.filter((c) => c.deadline! <= readNow(c.sub.clockId));
        break;
      }
      now = new Map();
    }
  }
  const events = [...immediate, ...fired].sort((a, b) => a.index - b.index).map((e) => e.ev);

  const out = ctx.guest();
  if (!out.ok(outPtr, nsubs * EVENT.SIZE) || !out.ok(neventsPtr, 4)) return Errno.FAULT;
  events.forEach((ev, i) => {
    const p = outPtr + i * EVENT.SIZE;
    out.u8.fill(0, p, p + EVENT.SIZE);
    out.dv.setBigUint64(p + EVENT.userdata, ev.userdata, true);
    out.dv.setUint16(p + EVENT.error, ev.error, true);
    out.dv.setUint8(p + EVENT.type, ev.type);
    out.dv.setBigUint64(p + EVENT.fd_readwrite_nbytes, ev.nbytes, true);
    out.dv.setUint16(p + EVENT.fd_readwrite_flags, ev.flags, true);
  });
  out.dv.setUint32(neventsPtr, events.length, true);
  return Errno.SUCCESS;
}

/** The poll_oneoff import. */
export function pollCalls(ctx: WasiCtx): Record<string, HostFn> {
  return {
    poll_oneoff: (inPtr: number, outPtr: number, nsubs: number, nevents: number) => pollOneoff(ctx, u32(inPtr), u32(outPtr), u32(nsubs), u32(nevents)),
  };
}
