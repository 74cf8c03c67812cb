// The VM's virtual NIC: a message-oriented network interface, part of the VM's
// state.
//
// The outside world talks to a VM over connections, each named by a u32 id
// chosen by the host. A message carries the connection id and 1..MAX_MESSAGE_BYTES
// bytes; an end-of-stream message (no bytes, `eof`) says the peer closed. Messages
// arrive only as interrupts (kind INTERRUPT_NIC), so the recording logs each one
// with its count and the replay delivers it at the same count.
//
// A guest reads them in one of two ways:
//   - raw: `ftvm_io.nic_recv` takes the oldest queued message of any connection
//     that is not a socket, `ftvm_io.nic_send` sends one message;
//   - as WASI sockets: `sock_accept` on the listening socket (fd 3) turns the
//     connection of the oldest queued message into a stream socket, and from
//     then on that connection's messages become its byte stream.
// A connection the guest closed stays closed: later messages for it are dropped,
// until the peer's end-of-stream: then both sides are done and the id is
// forgotten (so the set of closed ids stays as small as the connections still
// half open, however many a long-running server has seen; an id whose peer
// already ended is forgotten when the guest closes it; of ids whose peer never
// ends, as a client-port client that went away, the newest STREAMS_DONE_MAX). A message after the
// peer's end-of-stream is a new connection with that id.
// A connection that is not a socket keeps its send window after its peer's
// end-of-stream (the guest may still answer a client that half-closed), until
// the guest closes it; a raw guest that never closes its connections would
// keep one window per connection it ever served, so only the windows of the
// newest STREAMS_DONE_MAX connections whose peer ended are kept: an older
// one's goes, and the guest sends on it without a window (the ingress still
// bounds what a client leaves unread). Which ones go follows from the
// arrivals alone, so every replica keeps the same.

import { createHash } from 'node:crypto';
import { NIC_MESSAGE_BYTES_MAX as MAX_MESSAGE_BYTES, GUEST_UNREAD_BYTES_MAX, CLIENT_UNREAD_BYTES_MAX, SEND_WINDOW_BYTES, INPUT_INBOX_BYTES_MAX, INPUT_INBOX_MAX, NIC_QUEUE_BYTES_MAX, NIC_QUEUE_MAX, STREAMS_DONE_MAX } from '../limits.ts';
export { MAX_MESSAGE_BYTES, GUEST_UNREAD_BYTES_MAX, CLIENT_UNREAD_BYTES_MAX, SEND_WINDOW_BYTES };

export { INPUT_INBOX_BYTES_MAX, INPUT_INBOX_MAX, NIC_QUEUE_BYTES_MAX, NIC_QUEUE_MAX };

export interface NicMessage {
  conn: number;
  bytes: Uint8Array;
  /** the peer (arriving) or the guest (sent) closed the connection; bytes is empty */
  eof: boolean;
  /**
   * Arriving only: the guest may send on this connection up to this offset in
   * its outgoing stream (bytes from the connection's start). A connection
   * with no window sends without limit. A message with a window and no bytes
   * moves the window only (or opens the connection, see `arrive`).
   */
  window?: number;
}

/** A connection the guest accepted as a stream socket. */
export interface NicSocket {
  conn: number;
  /** received bytes not read yet, oldest first */
  chunks: Uint8Array[];
  /** offset into chunks[0] */
  head: number;
  /** the peer closed its side */
  peerClosed: boolean;
  /** the guest shut down its sending side */
  sendClosed: boolean;
  /** the guest shut down its receiving side (arrivals are dropped) */
  recvClosed: boolean;
}

export interface NicImage {
  queue: NicMessage[];
  sockets: { conn: number; pending: Uint8Array; peerClosed: boolean; sendClosed: boolean; recvClosed: boolean }[];
  closed: number[];
  /** [conn, window end, bytes sent] of connections with a send window (absent in images made before windows) */
  windows?: [number, number, number][];
  /** connections not accepted as sockets whose peer ended while they had a window, oldest first (at most STREAMS_DONE_MAX; absent when none) */
  ended?: number[];
}

export class VirtualNic {
  /** messages of connections that are not sockets, in arrival order */
  private readonly queue: NicMessage[] = [];
  /** the bytes of the messages in `queue` */
  private queueBytes = 0;
  private readonly sockets = new Map<number, NicSocket>();
  private readonly closed = new Set<number>();
  /** connections with a send window: how far the guest may send, and how far it has */
  private readonly windows = new Map<number, { end: number; sent: number }>();
  /** connections that are not sockets whose peer ended while they had a window, oldest first: the windows kept past the end (see the header) */
  private readonly ended = new Set<number>();
  /** every message the guest sent, in order, is handed here */
  constructor(private readonly send: (msg: NicMessage) => void = () => {}) {}

  /** A message arrives (called by the host at an interrupt). */
  arrive(msg: NicMessage): void {
    if (this.closed.has(msg.conn)) {
      if (msg.eof) this.closed.delete(msg.conn); // both sides ended: nothing more can come
      return;
    }
    // a message after the peer's end-of-stream begins a new connection with that id
    if (!msg.eof && this.ended.size) this.ended.delete(msg.conn);
    const s = this.sockets.get(msg.conn);
    if (msg.window !== undefined) {
      const w = this.windows.get(msg.conn);
      if (w) w.end = Math.max(w.end, msg.window);
      else this.windows.set(msg.conn, { end: msg.window, sent: 0 });
      // a window alone opens a connection not seen yet, and is nothing more for one that is
      if (!msg.bytes.length && !msg.eof && (s || this.queue.some((m) => m.conn === msg.conn))) return;
    }
    if (!s) {
      this.queue.push({ conn: msg.conn, bytes: msg.bytes.slice(), eof: msg.eof });
      this.queueBytes += msg.bytes.length;
      if (msg.eof && this.windows.has(msg.conn)) this.windowEnded(msg.conn);
      return;
    }
    if (s.recvClosed) return;
    if (msg.eof) s.peerClosed = true;
    else if (!s.peerClosed && msg.bytes.length) s.chunks.push(msg.bytes.slice());
  }

  /** A connection's peer ended while it keeps a window: the newest STREAMS_DONE_MAX such windows are kept, an older one goes. */
  private windowEnded(conn: number): void {
    this.ended.delete(conn);
    this.ended.add(conn);
    if (this.ended.size <= STREAMS_DONE_MAX) return;
    const oldest = this.ended.values().next().value!;
    this.ended.delete(oldest);
    this.windows.delete(oldest);
  }

  /** The oldest queued message, removed; null when none is queued. An opening (see `arrive`) is not a message: it is dropped. */
  take(): NicMessage | null {
    this.dropOpenings();
    const m = this.queue.shift() ?? null;
    if (m) this.queueBytes -= m.bytes.length;
    return m;
  }

  /** The size of the oldest queued message, or null. */
  peekSize(): number | null {
    this.dropOpenings();
    return this.queue[0]?.bytes.length ?? null;
  }

  /**
   * An empty message that is not an end-of-stream opens a connection (a TCP
   * client connected and has sent nothing yet, as before a server's greeting):
   * `accept` takes it, the raw ABI never sees it.
   */
  private dropOpenings(): void {
    while (this.queue.length && !this.queue[0]!.eof && this.queue[0]!.bytes.length === 0) this.queue.shift();
  }

  get queued(): number {
    return this.queue.length;
  }

  /** The bytes of the messages queued (of connections not accepted as sockets). */
  get queuedBytes(): number {
    return this.queueBytes;
  }

  /** Sends one message from the guest. */
  emit(conn: number, bytes: Uint8Array, eof = false): void {
    const w = this.windows.get(conn);
    if (w) w.sent += bytes.length;
    this.send({ conn, bytes, eof });
  }

  /** Bytes the guest may send on `conn` now: what its send window leaves (0 when full), or Infinity for a connection without one. */
  sendRoom(conn: number): number {
    const w = this.windows.get(conn);
    return w ? Math.max(0, w.end - w.sent) : Infinity;
  }

  /** Makes the connection of the oldest queued message a socket, moving its queued messages to it; null when none is queued. */
  accept(): NicSocket | null {
    const first = this.queue[0];
    if (!first) return null;
    const s: NicSocket = { conn: first.conn, chunks: [], head: 0, peerClosed: false, sendClosed: false, recvClosed: false };
    this.sockets.set(first.conn, s);
    const rest: NicMessage[] = [];
    for (const m of this.queue.splice(0)) {
      if (m.conn !== s.conn) rest.push(m);
      else if (m.eof) s.peerClosed = true;
      else if (!s.peerClosed && m.bytes.length) s.chunks.push(m.bytes);
    }
    this.queue.push(...rest);
    this.queueBytes = rest.reduce((n, m) => n + m.bytes.length, 0);
    return s;
  }

  /** Bytes a socket can read now. */
  readable(s: NicSocket): number {
    let n = 0;
    for (const c of s.chunks) n += c.length;
    return n - s.head;
  }

  /** Bytes of connection `conn` the guest has not read: its socket's stream, or its queued messages before it is accepted. */
  unread(conn: number): number {
    const s = this.sockets.get(conn);
    if (s) return this.readable(s);
    let n = 0;
    for (const m of this.queue) if (m.conn === conn) n += m.bytes.length;
    return n;
  }

  /** Reads up to `max` bytes from a socket's stream. */
  read(s: NicSocket, max: number): Uint8Array {
    const out = new Uint8Array(Math.min(max, this.readable(s)));
    let at = 0;
    while (at < out.length) {
      const c = s.chunks[0]!;
      const take = Math.min(c.length - s.head, out.length - at);
      out.set(c.subarray(s.head, s.head + take), at);
      at += take;
      s.head += take;
      if (s.head === c.length) {
        s.chunks.shift();
        s.head = 0;
      }
    }
    return out;
  }

  /** The guest closed a socket or a raw connection: the peer is told once, and later arrivals are dropped until the peer ends too. */
  close(conn: number): void {
    const s = this.sockets.get(conn);
    if (!s?.sendClosed) this.emit(conn, new Uint8Array(0), true);
    // The peer already ended (an eof read, or one still queued): nothing more can come, so nothing need be dropped.
    const peerDone = s ? s.peerClosed : this.queue.some((m) => m.conn === conn && m.eof);
    this.sockets.delete(conn);
    this.windows.delete(conn);
    this.ended.delete(conn);
    if (!peerDone) {
      // A peer may never end (a client-port client that went away is not said to the guest):
      // the newest STREAMS_DONE_MAX stay closed, an older one's later messages would open it anew.
      this.closed.add(conn);
      if (this.closed.size > STREAMS_DONE_MAX) this.closed.delete(this.closed.values().next().value!);
    }
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.conn === conn) this.queueBytes -= this.queue.splice(i, 1)[0]!.bytes.length;
  }

  /** Everything the NIC holds, for a snapshot (structured-clonable). */
  image(): NicImage {
    return {
      queue: this.queue.map((m) => ({ conn: m.conn, bytes: m.bytes.slice(), eof: m.eof })),
      sockets: [...this.sockets.values()].map((s) => ({
        conn: s.conn,
        pending: this.read({ ...s, chunks: [...s.chunks] }, Number.MAX_SAFE_INTEGER),
        peerClosed: s.peerClosed,
        sendClosed: s.sendClosed,
        recvClosed: s.recvClosed,
      })),
      closed: [...this.closed],
      windows: [...this.windows].map(([conn, w]) => [conn, w.end, w.sent]),
      ...(this.ended.size ? { ended: [...this.ended] } : {}),
    };
  }

  /** Rebuilds the state an image describes (the NIC must be new). */
  restore(img: NicImage): void {
    this.queue.push(...img.queue.map((m) => ({ conn: m.conn, bytes: m.bytes, eof: m.eof })));
    this.queueBytes = this.queue.reduce((n, m) => n + m.bytes.length, 0);
    for (const s of img.sockets) {
      this.sockets.set(s.conn, {
        conn: s.conn,
        chunks: s.pending.length ? [s.pending] : [],
        head: 0,
        peerClosed: s.peerClosed,
        sendClosed: s.sendClosed,
        recvClosed: s.recvClosed,
      });
    }
    for (const c of img.closed) this.closed.add(c);
    for (const [conn, end, sent] of img.windows ?? []) this.windows.set(conn, { end, sent });
    for (const c of img.ended ?? []) this.ended.add(c);
  }

  /** The socket of an accepted connection. */
  socket(conn: number): NicSocket | undefined {
    return this.sockets.get(conn);
  }

  /** Canonical encoding of everything queued and every socket, for the state digest. */
  state(): string {
    const h = createHash('sha256');
    for (const m of this.queue) {
      h.update(`${m.conn}:${m.eof ? 'eof' : m.bytes.length};`);
      h.update(m.bytes);
    }
    const sockets = [...this.sockets.values()]
      .sort((a, b) => a.conn - b.conn)
      .map((s) => {
        const pending = this.read({ ...s, chunks: [...s.chunks] }, Number.MAX_SAFE_INTEGER);
        return [s.conn, s.peerClosed, s.sendClosed, s.recvClosed, createHash('sha256').update(pending).digest('hex')];
      });
    const state: Record<string, unknown> = { queue: this.queue.length, queued: h.digest('hex'), sockets, closed: [...this.closed].sort((a, b) => a - b) };
    // (only when there are any: a digest without windows reads as it always did)
    if (this.windows.size) state.windows = [...this.windows].sort((a, b) => a[0] - b[0]).map(([conn, w]) => [conn, w.end, w.sent]);
    // (in their order: it decides which window goes next)
    if (this.ended.size) state.ended = [...this.ended];
    return JSON.stringify(state);
  }
}
