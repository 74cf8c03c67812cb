// Real TCP connections as the VM's NIC connections: what `ftvm run
// --tcplisten ADDR` (and `ftvm record --tcplisten ADDR`) give a guest, the
// unreplicated way to run a server written for `wasmtime run --tcplisten`.
//
// Two halves on two threads, joined by one MessagePort and one shared cell:
//
//   main thread: TcpListenBridge          worker: LiveConnections (an InterruptSource)
//     net.Server on ADDR                    receiveMessageOnPort (never blocks the guest's thread
//     a socket per connection                 on an event loop it does not have)
//     bytes in  -> {msg}  ---- port ---->   -> INTERRUPT_NIC at the next check point or wait
//     FIN / reset -> {msg eof}               (the guest's sock_accept, recv, poll see them)
//     socket.write  <- {send} <-- port --   <- the guest's sock_send / shutdown / close
//     socket.end()  <- {send eof}
//     unread -= n   <- {read}   <-- port --  <- what the guest read since (VirtualNic.unread)
//
// After each post the main thread bumps the shared cell and notifies it; a
// guest blocked in a wait sleeps on that cell (Atomics.wait), so it wakes when
// bytes arrive, and also when its timer ticks or a poll_oneoff clock expires.
//
// Connections: ids 1, 2, ... in accept order (u32; at most MAX_CONNECTIONS
// open at once, more are refused by closing them at once). A connection opens
// with an empty message (the guest's accept returns as soon as the client
// connects); bytes arrive in messages of at most MAX_MESSAGE_BYTES, as read.
// The client's FIN is the end of the stream; so is a reset (ECONNRESET) or any
// socket error.
//
// Bounds:
//   - in: a socket is paused (socket.pause(), so TCP flow control pushes back
//     on the client) while the guest has more than UNREAD_MAX_BYTES of it
//     delivered or on the way and not read, and resumed when it read enough;
//   - out: each connection opens with a send window (nic.ts
//     SEND_WINDOW_BYTES) and the window moves on as the kernel takes the
//     guest's bytes for the client; at the window the guest's send waits (or
//     answers EAGAIN), as on a real kernel whose socket buffer is full, so a
//     client that does not read stalls only its own connection. Past
//     OUTGOING_MAX_BYTES waiting (only the raw NIC ABI, which has no windows,
//     gets there) the connection is reset and the guest sees its end.

import { createServer, type Server, type Socket } from 'node:net';
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { INTERRUPT_NIC, LiveTimer, type Interrupt, type InterruptSource } from './events.ts';
import { parseListenAddr } from './listen-addr.ts';
import { CLIENT_UNREAD_BYTES_MAX, GUEST_UNREAD_BYTES_MAX, MAX_MESSAGE_BYTES, SEND_WINDOW_BYTES, type NicMessage, type VirtualNic } from './nic.ts';
import type { FtvmErrorCode } from '../errors.ts';
import { TCPLISTEN_CONNS_MAX as MAX_CONNECTIONS, TCPLISTEN_END_WAIT_MS as END_WAIT_MS } from '../limits.ts';
export { MAX_CONNECTIONS };

/** A connection's bytes the guest has not read yet (delivered or on the way) above which its socket is paused (nic.ts). */
export const UNREAD_MAX_BYTES = GUEST_UNREAD_BYTES_MAX;
/** A connection's output waiting for a client that does not read, above which it is reset (nic.ts). */
export const OUTGOING_MAX_BYTES = CLIENT_UNREAD_BYTES_MAX;

/** main -> worker */
type ToGuest = { t: 'msg'; conn: number; bytes: Uint8Array; eof: boolean; window?: number };
/** worker -> main */
type FromGuest = { t: 'send'; conn: number; bytes: Uint8Array; eof: boolean } | { t: 'read'; conn: number; n: number } | { t: 'end' };

/** What the worker needs: plain data, the port goes in the Worker's transferList. */
export interface LiveConnectionsWire {
  port: MessagePort;
  /** Int32Array view, [0] bumped after every post */
  signal: SharedArrayBuffer;
}

/** An address that cannot be listened on (FTVM_ERR_TCPLISTEN; ftvm exits 1). */
export class TcpListenError extends Error {
  constructor(
    readonly code: Extract<FtvmErrorCode, 'FTVM_ERR_TCPLISTEN'>,
    message: string,
  ) {
    super(message);
    this.name = 'TcpListenError';
  }
}

interface Conn {
  id: number;
  socket: Socket;
  /** bytes posted to the guest and not reported read */
  unread: number;
  paused: boolean;
  /** the end of the stream was posted to the guest */
  eofPosted: boolean;
  /** bytes of the guest's output the kernel took for the client, and the send window last posted (nic.ts) */
  taken: number;
  window: number;
}

/** The main thread's half: the listening socket and the real connections. */
export class TcpListenBridge {
  private readonly server: Server;
  private readonly conns = new Map<number, Conn>();
  private readonly port: MessagePort;
  private readonly remote: MessagePort;
  private readonly signal = new SharedArrayBuffer(4);
  private readonly cell = new Int32Array(this.signal);
  private nextId = 1;
  private ended: (() => void) | null = null;
  private sawEnd = false;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.remote = port2;
    this.port.on('message', (m: FromGuest) => this.fromGuest(m));
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.accept(s));
  }

  /** The worker's half, to hand over once (the port must be transferred). */
  wire(): LiveConnectionsWire {
    return { port: this.remote, signal: this.signal };
  }

  /** Listens on ADDR; resolves to the bound "host:port". FTVM_ERR_TCPLISTEN when it cannot. */
  listen(addr: string): Promise<string> {
    const parsed = parseListenAddr(addr);
    if (!parsed) return Promise.reject(new TcpListenError('FTVM_ERR_TCPLISTEN', `--tcplisten expects HOST:PORT (PORT 0..65535, 0 for any), got "${addr}"`));
    const { host, port } = parsed;
    return new Promise((resolve, reject) => {
      this.server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new TcpListenError('FTVM_ERR_TCPLISTEN', `--tcplisten ${addr}: cannot listen: ${e.code ?? e.message}`)),
      );
      this.server.listen({ host, port }, () => {
        const a = this.server.address();
        if (!a || typeof a === 'string') return resolve(String(a));
        resolve(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
      });
    });
  }

  /**
   * The guest ended: waits (at most END_WAIT_MS) for its last sends to reach
   * this thread, ends every connection (FIN after the pending output), stops
   * listening, and destroys what is still open END_WAIT_MS later (a client
   * that neither reads nor closes does not keep ftvm alive).
   */
  async close(): Promise<void> {
    if (!this.sawEnd) {
      await new Promise<void>((resolve) => {
        this.ended = resolve;
        setTimeout(resolve, END_WAIT_MS).unref();
      });
    }
    this.server.close();
    const open = [...this.conns.values()].map((c) => c.socket);
    for (const s of open) s.end();
    this.conns.clear();
    this.port.close();
    if (open.length) setTimeout(() => open.forEach((s) => s.destroy()), END_WAIT_MS).unref();
  }

  /** Stops now: resets every connection, stops listening. */
  destroy(): void {
    this.server.close();
    for (const c of this.conns.values()) c.socket.destroy();
    this.conns.clear();
    this.port.close();
  }

  private post(m: ToGuest): void {
    this.port.postMessage(m);
    Atomics.add(this.cell, 0, 1);
    Atomics.notify(this.cell, 0);
  }

  private accept(socket: Socket): void {
    if (this.conns.size >= MAX_CONNECTIONS) {
      socket.destroy();
      return;
    }
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    const c: Conn = { id, socket, unread: 0, paused: false, eofPosted: false, taken: 0, window: SEND_WINDOW_BYTES };
    this.conns.set(id, c);
    // The connection's opening (an empty message, see nic.ts): the guest accepts it as soon as the
    // client connects, as a real accept() returns, so a server that speaks first gets its client.
    // It opens the send window too: the guest sends at most SEND_WINDOW_BYTES the client has not taken.
    this.post({ t: 'msg', conn: id, bytes: new Uint8Array(0), eof: false, window: c.window });
    socket.on('data', (chunk: Buffer) => {
      if (c.eofPosted) return;
      for (let at = 0; at < chunk.length; at += MAX_MESSAGE_BYTES) {
        const bytes = new Uint8Array(chunk.subarray(at, at + MAX_MESSAGE_BYTES));
        this.post({ t: 'msg', conn: id, bytes, eof: false });
      }
      c.unread += chunk.length;
      if (c.unread > UNREAD_MAX_BYTES && !c.paused) {
        c.paused = true;
        socket.pause();
      }
    });
    const eof = (): void => {
      if (c.eofPosted) return;
      c.eofPosted = true;
      this.post({ t: 'msg', conn: id, bytes: new Uint8Array(0), eof: true });
    };
    socket.on('end', eof);
    socket.on('error', () => {
      eof();
      socket.destroy();
    });
    socket.on('close', () => {
      eof();
      if (this.conns.get(id) === c) this.conns.delete(id);
    });
  }

  private fromGuest(m: FromGuest): void {
    if (m.t === 'end') {
      this.sawEnd = true;
      this.ended?.();
      return;
    }
    const c = this.conns.get(m.conn);
    if (!c) return; // gone: the client closed, or the connection was reset
    if (m.t === 'read') {
      c.unread = Math.max(0, c.unread - m.n);
      if (c.paused && c.unread <= UNREAD_MAX_BYTES) {
        c.paused = false;
        c.socket.resume();
      }
      return;
    }
    if (m.eof) {
      c.socket.end();
      return;
    }
    if (c.socket.destroyed || c.socket.writableEnded) return;
    const n = m.bytes.length;
    c.socket.write(m.bytes, () => {
      // the kernel took it for the client: the window moves on (by a quarter at least, so updates stay few)
      c.taken += n;
      if (c.eofPosted && c.socket.destroyed) return;
      if (c.taken + SEND_WINDOW_BYTES - c.window >= SEND_WINDOW_BYTES / 4) {
        c.window = c.taken + SEND_WINDOW_BYTES;
        this.post({ t: 'msg', conn: c.id, bytes: new Uint8Array(0), eof: false, window: c.window });
      }
    });
    if (c.socket.writableLength > OUTGOING_MAX_BYTES) {
      // The client does not read: drop it rather than hold the guest's output without bound.
      c.socket.resetAndDestroy();
    }
  }
}

/**
 * The worker's half: an InterruptSource that delivers the bridge's messages
 * as NIC interrupts, sends the guest's messages back (`send`), reports what
 * the guest read (flow control), and ticks the guest's timer (a LiveTimer)
 * while it waits for either.
 */
export class LiveConnections implements InterruptSource {
  private readonly port: MessagePort;
  private readonly cell: Int32Array;
  private readonly timer = new LiveTimer();
  private nic: VirtualNic | null = null;
  /** per connection: bytes delivered to the NIC and not yet reported read */
  private readonly outstanding = new Map<number, number>();

  constructor(wire: LiveConnectionsWire) {
    this.port = wire.port;
    this.cell = new Int32Array(wire.signal);
  }

  attach(nic: VirtualNic): void {
    this.nic = nic;
  }

  /** Hands one message the guest sent to the main thread (VirtualNic's send callback). */
  send(msg: NicMessage): void {
    this.port.postMessage({ t: 'send', conn: msg.conn, bytes: msg.bytes, eof: msg.eof } satisfies FromGuest);
  }

  /** The guest ended: tells the main thread that every send was posted. */
  end(): void {
    this.port.postMessage({ t: 'end' } satisfies FromGuest);
  }

  timerSet(periodNs: bigint): void {
    this.timer.timerSet(periodNs);
  }

  /** A message can arrive at any time. */
  armed(): boolean {
    return true;
  }

  poll(): Interrupt[] {
    this.reportReads();
    const due = this.timer.poll();
    for (;;) {
      const r = receiveMessageOnPort(this.port) as { message: ToGuest } | undefined;
      if (!r) break;
      const { conn, bytes, eof, window } = r.message;
      if (bytes.length) this.outstanding.set(conn, (this.outstanding.get(conn) ?? 0) + bytes.length);
      due.push({ kind: INTERRUPT_NIC, msg: { conn, bytes, eof, ...(window !== undefined ? { window } : {}) } });
    }
    return due;
  }

  /** Sleeps on the shared cell until a message comes, the timer ticks or `timeoutNs` passed ([] then). */
  wait(count: bigint, timeoutNs: bigint | null = null): Interrupt[] {
    const end = timeoutNs === null ? null : process.hrtime.bigint() + timeoutNs;
    for (;;) {
      const seen = Atomics.load(this.cell, 0);
      const due = this.poll();
      if (due.length) return due;
      let leftNs = end === null ? null : end - process.hrtime.bigint();
      if (leftNs !== null && leftNs <= 0n) return [];
      const tick = this.timer.untilTickNs();
      if (tick !== null && (leftNs === null || tick < leftNs)) leftNs = tick;
      const ms = leftNs === null ? Infinity : Math.max(1, Math.ceil(Number(leftNs) / 1e6));
      Atomics.wait(this.cell, 0, seen, ms);
    }
  }

  /** Tells the main thread how much of each connection the guest read since the last report. */
  private reportReads(): void {
    if (!this.nic) return;
    for (const [conn, n] of this.outstanding) {
      const read = n - this.nic.unread(conn);
      if (read <= 0) continue;
      if (read === n) this.outstanding.delete(conn);
      else this.outstanding.set(conn, n - read);
      this.port.postMessage({ t: 'read', conn, n: read } satisfies FromGuest);
    }
  }
}
