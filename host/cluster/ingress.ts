// Published ports: real TCP connections to a host become connections of a
// VM's virtual NIC.
//
// Every live host listens on each port a VM publishes, at its own public
// address. A TCP connection accepted there gets a connection id with
// STREAM_CONN_BIT set; its bytes go to the VM's primary (wherever it runs) as
// NIC messages stamped with their offset in the connection's byte stream,
// and the guest's sends come back, under the Output Rule, stamped with their
// offset in the other direction. The offsets are what make a failover of the
// VM invisible to the client:
//
//   - Input: the ingress host keeps every byte it took from the socket until
//     the VM's backup has it in its log (an `in-ack` from the primary's host,
//     sent when the backup acknowledged the frame that delivered it). When the
//     VM gets a new primary, the ingress host sends the kept bytes again; the
//     new primary knows from its replayed log how far each stream was
//     delivered (replay/engine.ts, `inputEnds`) and drops what it already has.
//   - Output: every send of the guest on a stream connection has an offset
//     computed by every replica's host from the same log. The ingress host
//     writes each byte once, in order: it drops what it wrote already, keeps
//     what arrives past a gap (at most OUT_OF_ORDER_MAX pieces), and asks the
//     new primary for what it missed (`adopt`).
//
// End-of-stream counts as one offset unit in both directions, so a FIN is
// delivered exactly once too. A reset from the client is an end-of-stream for
// the guest. A connection through a host that dies dies with it (the client
// sees a reset, as with a dead load balancer, and connects to another
// endpoint).

import { createServer, type Server, type Socket } from 'node:net';
import { CLIENT_UNREAD_BYTES_MAX, MAX_MESSAGE_BYTES, SEND_WINDOW_BYTES } from '../runtime/nic.ts';
import { PUBLISH_PORTS_MAX, INGRESS_UNACKED_BYTES_MAX, INGRESS_CONNS_MAX, INGRESS_HALF_CLOSED_MAX, INGRESS_CONNS_PER_VM_MAX, INGRESS_OUT_OF_ORDER_MAX as OUT_OF_ORDER_MAX, INGRESS_REPEAT_MS as REPEAT_MS, INGRESS_CLOSED_LINGER_MS as CLOSED_LINGER_MS, INGRESS_BIND_RETRY_MS as BIND_RETRY_MS } from '../limits.ts';
export { PUBLISH_PORTS_MAX, INGRESS_UNACKED_BYTES_MAX, INGRESS_CONNS_MAX, INGRESS_HALF_CLOSED_MAX, INGRESS_CONNS_PER_VM_MAX };

/** Connection ids with this bit set are TCP connections through published ports (the other ids: FtClient and API connections). */
export const STREAM_CONN_BIT = 0x800000;

/** Whether connection id `conn` (a u32) is a TCP connection through a published port, whose bytes carry stream offsets. */
export function isStreamConn(conn: number): boolean {
  return (conn & STREAM_CONN_BIT) !== 0;
}

/**
 * Bytes written to one client's socket that the client has not read: above
 * this the connection is reset and the guest sees end-of-stream on it. The
 * guest is never stalled by one slow client. The same bound as
 * `ftvm run --tcplisten` (nic.ts).
 */
export const INGRESS_WRITE_BYTES_MAX = CLIENT_UNREAD_BYTES_MAX;

/** What the ingress needs from its host. */
export interface IngressHooks {
  /** A new connection id with STREAM_CONN_BIT set, unique in the cluster (the host's slot in the high byte), or null when none can be handed out now (the connection is refused). */
  newConn(): number | null;
  /**
   * Sends `bytes` (or the end-of-stream, `eof`) of connection `conn` at stream
   * offset `off` to VM `vm`'s primary; `window`, when given, moves the
   * connection's send window (nic.ts); a message with a window, no bytes and
   * no offset moves the window only.
   */
  send(vm: string, conn: number, off: number | undefined, bytes: Uint8Array, eof: boolean, window?: number): void;
  /** Asks VM `vm`'s primary to resend the outputs of `conn` after output sequence number `afterSeq`. */
  adopt(vm: string, conn: number, afterSeq: number): void;
  /** Port `port` of VM `vm` could not be bound here (`error`: the system's code); said once until it is bound. */
  unbound(vm: string, port: number, error: string): void;
  log(line: string): void;
}

interface Piece {
  off: number;
  bytes: Uint8Array;
  eof: boolean;
  /** the connection's opening (no bytes, offset 0): it gives the guest its send window */
  opening?: true;
}

interface StreamConn {
  vm: string;
  conn: number;
  sock: Socket;
  /** stream offset after the last byte (or end-of-stream) taken from the socket */
  inEnd: number;
  /** what was taken and is not in the backup's log yet, oldest first */
  unacked: Piece[];
  unackedBytes: number;
  paused: boolean;
  /** the socket closed (FIN, reset or error) and its end-of-stream was taken */
  inEof: boolean;
  /** stream offset after the last output byte written to the socket */
  outEnd: number;
  /** the highest output sequence number written */
  outSeq: number;
  /** outputs that arrived past a gap, by offset */
  early: Map<number, Piece & { seq: number }>;
  outEof: boolean;
  closedAt: number | null;
  /** when the client ended its side (its FIN, or the socket closed): from then on it no longer counts against the caps of live connections */
  endedAt: number | null;
  /** output bytes the kernel took for the client, and the send window last given to the guest */
  taken: number;
  window: number;
  resentAt: number;
  resentFrom: number;
  adoptedAt: number;
}

/** A VM's listeners on this host, by published port. */
interface Published {
  ports: number[];
  servers: Map<number, Server>;
  /** ports that could not be bound, with when it was last tried and why */
  failed: Map<number, { at: number; error: string }>;
  /** its connections on this host now */
  conns: number;
}

/** What the ingress did, for GET /v1/hosts and the tests. */
export interface IngressStats {
  /** connections open now: live ones (their clients have not ended them) and half-closed ones */
  conns: number;
  live: number;
  halfClosed: number;
  accepted: number;
  /** connections refused because INGRESS_CONNS_MAX were open */
  refused: number;
  bytesIn: number;
  bytesOut: number;
  /** input sent again to a new primary (bytes) */
  resentBytes: number;
  /** output pieces dropped because they were written already */
  duplicateOutputs: number;
  /** connections reset because their client did not read INGRESS_WRITE_BYTES_MAX bytes */
  slowReaderResets: number;
  /** times reading a socket paused because the backup or the guest lagged */
  pauses: number;
  /** send windows moved on as clients took the guest's output */
  windowMoves: number;
}

/**
 * One host's published ports (see the file's head). Inputs: the VM's ports
 * (`publish`), outputs released for its connections (`deliver`), input
 * acknowledgements (`inputAcked`), requests to resend (`resendFrom`), and
 * news of a new primary (`newPrimary`). Errors: none thrown; a port that
 * cannot be bound is logged, reported by `bindErrors` and retried every
 * BIND_RETRY_MS.
 */
export class TcpIngress {
  private readonly published = new Map<string, Published>();
  private readonly conns = new Map<number, StreamConn>();
  /** connections whose client has not ended them (what INGRESS_CONNS_MAX bounds) */
  private live = 0;
  /** connections whose client ended them and the guest not yet, oldest first (at most INGRESS_HALF_CLOSED_MAX) */
  private readonly halfClosed = new Set<StreamConn>();
  readonly stats: IngressStats = { conns: 0, accepted: 0, refused: 0, bytesIn: 0, bytesOut: 0, resentBytes: 0, duplicateOutputs: 0, slowReaderResets: 0, pauses: 0, windowMoves: 0, live: 0, halfClosed: 0 };

  /** `address`: the IP address this host's published ports listen on (its public address). */
  constructor(
    readonly address: string,
    private readonly hooks: IngressHooks,
  ) {}

  /** Listens on `ports` for VM `vm` (idempotent; ports no longer published are closed). */
  publish(vm: string, ports: readonly number[]): void {
    let p = this.published.get(vm);
    if (!p) {
      if (!ports.length) return;
      p = { ports: [], servers: new Map(), failed: new Map(), conns: 0 };
      this.published.set(vm, p);
    }
    p.ports = [...ports];
    for (const [port, srv] of p.servers) {
      if (!ports.includes(port)) {
        srv.close();
        p.servers.delete(port);
      }
    }
    const now = Date.now();
    for (const port of ports) {
      if (p.servers.has(port)) continue;
      const failed = p.failed.get(port);
      if (failed && now - failed.at < BIND_RETRY_MS) continue;
      const srv = createServer({ allowHalfOpen: true, noDelay: true }, (sock) => this.accept(vm, sock));
      p.servers.set(port, srv);
      srv.on('error', (e: NodeJS.ErrnoException) => {
        if (p!.servers.get(port) === srv) p!.servers.delete(port);
        srv.close();
        const first = !p!.failed.has(port);
        p!.failed.set(port, { at: Date.now(), error: e.code ?? e.message });
        if (first) this.hooks.unbound(vm, port, e.code ?? e.message);
      });
      srv.on('listening', () => p!.failed.delete(port));
      srv.listen(port, this.address);
    }
  }

  /** The VM is gone: its listeners close and its connections are reset. */
  unpublish(vm: string): void {
    const p = this.published.get(vm);
    if (p) for (const srv of p.servers.values()) srv.close();
    this.published.delete(vm);
    for (const c of [...this.conns.values()]) {
      if (c.vm !== vm) continue;
      c.sock.resetAndDestroy();
      this.forget(c);
    }
  }

  /** VMs with published ports on this host. */
  vms(): string[] {
    return [...this.published.keys()];
  }

  /** Ports of `vm` this host could not bind, with the error code. */
  bindErrors(vm: string): { port: number; error: string }[] {
    const p = this.published.get(vm);
    return p ? [...p.failed].map(([port, f]) => ({ port, error: f.error })) : [];
  }

  /** Every "vm:port" this host could not bind (it tries again every BIND_RETRY_MS), at most PUBLISH_PORTS_MAX per VM. */
  unbound(): string[] {
    const out: string[] = [];
    for (const [vm, p] of this.published) for (const port of p.failed.keys()) out.push(`${vm}:${port}`);
    return out;
  }

  /** Whether `conn` is a connection of this host's ingress. */
  has(conn: number): boolean {
    return this.conns.has(conn);
  }

  private accept(vm: string, sock: Socket): void {
    const p = this.published.get(vm);
    const conn = this.live >= INGRESS_CONNS_MAX || !p || p.conns >= INGRESS_CONNS_PER_VM_MAX ? null : this.hooks.newConn();
    if (conn === null || !p) {
      this.stats.refused++;
      sock.resetAndDestroy();
      return;
    }
    p.conns++;
    this.live++;
    this.stats.accepted++;
    const c: StreamConn = {
      vm,
      conn,
      sock,
      inEnd: 0,
      unacked: [],
      unackedBytes: 0,
      paused: false,
      inEof: false,
      outEnd: 0,
      outSeq: -1,
      early: new Map(),
      outEof: false,
      closedAt: null,
      endedAt: null,
      taken: 0,
      window: SEND_WINDOW_BYTES,
      resentAt: 0,
      resentFrom: -1,
      adoptedAt: 0,
    };
    this.conns.set(c.conn, c);
    this.stats.conns = this.conns.size;
    this.stats.live = this.live;
    this.stats.halfClosed = this.halfClosed.size;
    // the guest accepts the connection before its client sends anything (a server may speak first);
    // the opening gives the guest its send window
    this.take(c, new Uint8Array(0), false);
    sock.on('data', (chunk: Buffer) => {
      for (let at = 0; at < chunk.length; at += MAX_MESSAGE_BYTES) this.take(c, new Uint8Array(chunk.subarray(at, at + MAX_MESSAGE_BYTES)), false);
    });
    sock.on('end', () => this.take(c, new Uint8Array(0), true));
    sock.on('error', () => {});
    sock.on('close', () => {
      c.closedAt = Date.now();
      // a reset, or our own reset: the guest sees end-of-stream all the same
      if (!c.inEof) this.take(c, new Uint8Array(0), true);
      this.maybeForget(c);
    });
  }

  /** Bytes (or the end-of-stream) taken from the socket go to the VM, and are kept until its backup has them. */
  private take(c: StreamConn, bytes: Uint8Array, eof: boolean): void {
    if (c.inEof || (!eof && !bytes.length && c.inEnd > 0)) return;
    const piece: Piece = c.inEnd === 0 && !eof && !bytes.length ? { off: 0, bytes, eof, opening: true } : { off: c.inEnd, bytes, eof };
    c.inEnd += eof ? 1 : bytes.length;
    if (eof) {
      c.inEof = true;
      this.ended(c);
    }
    this.stats.bytesIn += bytes.length;
    c.unacked.push(piece);
    c.unackedBytes += bytes.length;
    if (!c.paused && c.unackedBytes > INGRESS_UNACKED_BYTES_MAX) {
      c.paused = true;
      this.stats.pauses++;
      c.sock.pause();
    }
    this.hooks.send(c.vm, c.conn, piece.off, bytes, eof, piece.opening ? c.window : undefined);
  }

  /** The VM's backup has the input of `conn` up to stream offset `end`: it need not be kept any more. */
  inputAcked(conn: number, end: number): void {
    const c = this.conns.get(conn);
    if (!c) return;
    let drop = 0;
    while (drop < c.unacked.length) {
      const u = c.unacked[drop]!;
      if (u.off + (u.eof ? 1 : u.bytes.length) > end) break;
      c.unackedBytes -= u.bytes.length;
      drop++;
    }
    if (drop) c.unacked.splice(0, drop);
    if (c.paused && c.unackedBytes <= INGRESS_UNACKED_BYTES_MAX / 2) {
      c.paused = false;
      c.sock.resume();
    }
    this.maybeForget(c);
  }

  /** The VM's primary lacks the input of `conn` from offset `from` on (it was lost with an old primary): send it again. */
  resendFrom(conn: number, from: number): void {
    const c = this.conns.get(conn);
    if (!c) return;
    const now = Date.now();
    if (from === c.resentFrom && now - c.resentAt < REPEAT_MS) return;
    c.resentFrom = from;
    c.resentAt = now;
    for (const u of c.unacked) {
      if (u.off + (u.eof ? 1 : u.bytes.length) <= from) continue;
      this.stats.resentBytes += u.bytes.length;
      this.hooks.send(c.vm, c.conn, u.off, u.bytes, u.eof, u.opening ? c.window : undefined);
    }
  }

  /** VM `vm` has a new primary: it gets every input its backup may lack, and resends the outputs after the last one written. */
  newPrimary(vm: string): void {
    for (const c of this.conns.values()) {
      if (c.vm !== vm) continue;
      c.resentFrom = -1;
      this.resendFrom(c.conn, c.unacked[0]?.off ?? c.inEnd);
      if (!c.outEof && c.closedAt === null) {
        // the window as it stands now (a move lost with the old primary is not lost for long)
        this.hooks.send(vm, c.conn, undefined, new Uint8Array(0), false, c.window);
        this.hooks.adopt(vm, c.conn, c.outSeq);
      }
    }
  }

  /**
   * An output of the VM released for `conn` (sequence number `seq`, at
   * stream offset `off`): written to the socket once, in order. Returns false
   * when `conn` is not this ingress's.
   */
  deliver(conn: number, seq: number, off: number | undefined, bytes: Uint8Array, eof: boolean): boolean {
    const c = this.conns.get(conn);
    if (!c) return isStreamConn(conn);
    if (c.outEof || c.closedAt !== null || c.sock.destroyed) return true;
    const at = off ?? c.outEnd;
    const end = at + (eof ? 1 : bytes.length);
    if (end <= c.outEnd) {
      this.stats.duplicateOutputs++;
      return true;
    }
    if (at > c.outEnd) {
      // past a gap: kept until what comes before it arrives
      if (c.early.size >= OUT_OF_ORDER_MAX) {
        this.hooks.log(`${c.vm}: connection ${conn}: ${OUT_OF_ORDER_MAX} outputs wait for a gap to fill; reset`);
        c.sock.resetAndDestroy();
        return true;
      }
      c.early.set(at, { off: at, bytes, eof, seq });
      const now = Date.now();
      if (now - c.adoptedAt >= REPEAT_MS) {
        c.adoptedAt = now;
        this.hooks.adopt(c.vm, conn, c.outSeq);
      }
      return true;
    }
    this.write(c, seq, bytes.subarray(c.outEnd - at), eof);
    for (let next = c.early.get(c.outEnd); next && !c.outEof; next = c.early.get(c.outEnd)) {
      c.early.delete(next.off);
      this.write(c, next.seq, next.bytes, next.eof);
    }
    for (const k of c.early.keys()) if (k < c.outEnd) c.early.delete(k);
    return true;
  }

  private write(c: StreamConn, seq: number, bytes: Uint8Array, eof: boolean): void {
    if (seq > c.outSeq) c.outSeq = seq;
    if (eof) {
      c.outEnd += 1;
      c.outEof = true;
      c.sock.end();
      return;
    }
    c.outEnd += bytes.length;
    this.stats.bytesOut += bytes.length;
    const n = bytes.length;
    c.sock.write(bytes, () => {
      // the kernel took it for the client: the guest may send on (moved by a quarter window at least, so moves stay few)
      c.taken += n;
      if (c.closedAt !== null || c.outEof || c.taken + SEND_WINDOW_BYTES - c.window < SEND_WINDOW_BYTES / 4) return;
      c.window = c.taken + SEND_WINDOW_BYTES;
      this.stats.windowMoves++;
      this.hooks.send(c.vm, c.conn, undefined, new Uint8Array(0), false, c.window);
    });
    if (c.sock.writableLength > INGRESS_WRITE_BYTES_MAX) {
      this.stats.slowReaderResets++;
      this.hooks.log(`${c.vm}: connection ${c.conn}: the client did not read ${INGRESS_WRITE_BYTES_MAX} bytes; reset`);
      c.sock.resetAndDestroy();
    }
  }

  private maybeForget(c: StreamConn): void {
    if (c.closedAt === null) return;
    if (c.unacked.length === 0 || Date.now() - c.closedAt > CLOSED_LINGER_MS) this.forget(c);
  }

  /** The client ended its side: the connection leaves the caps of live ones, and joins the bounded set of half-closed ones. */
  private ended(c: StreamConn): void {
    if (c.endedAt !== null) return;
    c.endedAt = Date.now();
    this.live--;
    const p = this.published.get(c.vm);
    if (p) p.conns--;
    this.halfClosed.add(c);
    this.stats.live = this.live;
    this.stats.halfClosed = this.halfClosed.size;
    if (this.halfClosed.size > INGRESS_HALF_CLOSED_MAX) {
      const oldest = this.halfClosed.values().next().value!;
      this.halfClosed.delete(oldest);
      oldest.sock.resetAndDestroy();
    }
  }

  private forget(c: StreamConn): void {
    if (this.conns.get(c.conn) !== c) return;
    this.conns.delete(c.conn);
    this.halfClosed.delete(c);
    if (c.endedAt === null) {
      c.endedAt = Date.now();
      this.live--;
      const p = this.published.get(c.vm);
      if (p) p.conns--;
    }
    this.stats.conns = this.conns.size;
    this.stats.live = this.live;
    this.stats.halfClosed = this.halfClosed.size;
  }

  /** Forgets closed connections that lingered too long (called with the host's heartbeat). */
  sweep(): void {
    const now = Date.now();
    for (const c of [...this.conns.values()]) if (c.closedAt !== null && now - c.closedAt > CLOSED_LINGER_MS) this.forget(c);
    // a guest that never ends its side of a connection its client ended: reset after the linger
    for (const c of [...this.halfClosed]) {
      if (now - c.endedAt! <= CLOSED_LINGER_MS) break;
      this.halfClosed.delete(c);
      c.sock.resetAndDestroy();
    }
  }

  /** Closes every listener and resets every connection. */
  close(): void {
    for (const vm of [...this.published.keys()]) this.unpublish(vm);
    for (const c of [...this.conns.values()]) {
      c.sock.destroy();
      this.forget(c);
    }
  }
}
