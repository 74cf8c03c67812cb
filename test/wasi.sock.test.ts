// WASI preview1 sockets on the VM's virtual network (host/runtime/wasi.ts +
// host/runtime/nic.ts), driven directly through `WasiHost.imports` with
// pointers into a bound WebAssembly.Memory: fd 3 is the listening socket,
// accepted connections get the lowest free fd >= 5 (after the preopen "/"
// at 4), arrivals come through
// `nic.arrive`, and `wait` delivers scripted batches of messages (or says that
// nothing will ever come, which ends a blocking call with GuestIdle).
import { describe, expect, it } from 'vitest';
import { GuestIdle, LISTEN_FD, WasiHost } from '../host/runtime/wasi.ts';
import { MAX_MESSAGE_BYTES, VirtualNic, type NicMessage } from '../host/runtime/nic.ts';

/** the preopen "/", after the listening socket at fd 3 (wasmtime's --tcplisten layout) */
const PREOPEN_FD = 4;

// errno (WASI preview1)
const EAGAIN = 6;
const EBADF = 8;
const EFAULT = 21;
const EINVAL = 28;
const ENOTCONN = 53;
const ENOTSOCK = 57;
const EPIPE = 64;

const FDFLAGS_NONBLOCK = 4;
const SHUT_RD = 1;
const SHUT_WR = 2;
const EVENTTYPE_CLOCK = 0;
const EVENTTYPE_FD_READ = 1;
const EVENTTYPE_FD_WRITE = 2;
const EVENTRW_HANGUP = 1;
const SUBSCRIPTION_SIZE = 48;
const EVENT_SIZE = 32;
const FILETYPE_REGULAR_FILE = 4;
const FILETYPE_SOCKET_STREAM = 6;
const OFLAGS_CREAT = 1;
const CLOCK_MONOTONIC = 1;

// Memory layout used by the harness.
const R0 = 0; // u32 out: fd / nread / nwritten / datalen
const R1 = 8; // u16 ro_flags, u32 nevents
const IOVS = 64; // iovec array (up to 120 entries)
const SUBS = 1024; // poll subscriptions (up to 21)
const EVENTS = 2048; // poll events (up to 32)
const PATH = 3072;
const FDSTAT = 3584;
const DATA = 4096; // buffers
const SENTINEL = 0xdeadbeef;
const FILL = 0x2e; // '.', the content of a read buffer nothing was written to

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

type Sub =
  | { userdata: bigint; type: 'read' | 'write'; fd: number }
  | { userdata: bigint; type: 'clock'; timeoutNs: bigint };

interface PollEvent {
  userdata: bigint;
  error: number;
  type: number;
  nbytes: bigint;
  flags: number;
}

type Fn = (...args: (number | bigint)[]) => number;

/** A WasiHost on a VirtualNic, with a scripted `wait` and helpers that lay out WASI arguments in memory. */
class Harness {
  readonly sent: NicMessage[] = [];
  readonly nic: VirtualNic;
  readonly host: WasiHost;
  readonly memory: WebAssembly.Memory;
  /** batches of messages, one delivered per wait() call; wait() returns false once none is left */
  readonly toCome: NicMessage[][] = [];
  /** how often the host called wait() without a timeout (blocked until an interrupt) */
  waits = 0;
  /** the timeouts of the timed waits (poll_oneoff with a clock), each answered "the time passed, nothing came" */
  timedWaits: bigint[] = [];
  /** runs inside wait() before the batch is delivered, as a guest interrupt handler would */
  onWait: (() => void) | null = null;

  constructor(pages = 2) {
    this.nic = new VirtualNic((m) => this.sent.push({ conn: m.conn, bytes: m.bytes.slice(), eof: m.eof }));
    this.host = new WasiHost({
      args: [],
      env: {},
      stdout: () => {},
      stderr: () => {},
      nic: this.nic,
      wait: (timeoutNs) => {
        if (timeoutNs !== null) {
          this.timedWaits.push(timeoutNs);
          return false;
        }
        this.waits++;
        this.onWait?.();
        const batch = this.toCome.shift();
        if (!batch) return false;
        for (const m of batch) this.nic.arrive(m);
        return true;
      },
    });
    this.memory = new WebAssembly.Memory({ initial: pages });
    this.host.bindMemory(this.memory);
  }

  get fn(): Record<string, Fn> {
    return this.host.imports as Record<string, Fn>;
  }
  get dv(): DataView {
    return new DataView(this.memory.buffer);
  }
  get u8(): Uint8Array {
    return new Uint8Array(this.memory.buffer);
  }
  get size(): number {
    return this.memory.buffer.byteLength;
  }

  arrive(conn: number, data: string | Uint8Array): void {
    this.nic.arrive({ conn, bytes: typeof data === 'string' ? enc(data) : data, eof: false });
  }
  eof(conn: number): void {
    this.nic.arrive({ conn, bytes: new Uint8Array(0), eof: true });
  }
  /** queue a batch that the next wait() delivers */
  later(...batch: { conn: number; data?: string; eof?: boolean }[]): void {
    this.toCome.push(batch.map((m) => ({ conn: m.conn, bytes: enc(m.data ?? ''), eof: m.eof ?? false })));
  }

  accept(fd = LISTEN_FD, flags = 0): { err: number; fd: number } {
    this.dv.setUint32(R0, SENTINEL, true);
    const err = this.fn['sock_accept']!(fd, flags, R0);
    return { err, fd: this.dv.getUint32(R0, true) };
  }
  /** accepts and expects success */
  acceptOk(flags = 0): number {
    const r = this.accept(LISTEN_FD, flags);
    expect(r.err).toBe(0);
    return r.fd;
  }

  setFlags(fd: number, flags: number): number {
    return this.fn['fd_fdstat_set_flags']!(fd, flags);
  }
  fdstat(fd: number): { err: number; filetype: number; flags: number } {
    const err = this.fn['fd_fdstat_get']!(fd, FDSTAT);
    return { err, filetype: this.dv.getUint8(FDSTAT), flags: this.dv.getUint16(FDSTAT + 2, true) };
  }

  /** writes an iovec array at IOVS naming consecutive buffers of the given lengths from DATA; returns their addresses */
  iovecs(lens: number[]): number[] {
    const ptrs: number[] = [];
    let at = DATA;
    lens.forEach((len, i) => {
      this.dv.setUint32(IOVS + i * 8, at, true);
      this.dv.setUint32(IOVS + i * 8 + 4, len, true);
      ptrs.push(at);
      at += len;
    });
    return ptrs;
  }

  /** sock_recv (or fd_read) into iovecs of the given lengths; parts are the whole buffers, FILL where nothing was written */
  recv(fd: number, lens: number[], via: 'sock_recv' | 'fd_read' = 'sock_recv', riFlags = 0): { err: number; n: number; parts: string[]; roFlags: number } {
    const ptrs = this.iovecs(lens);
    const total = lens.reduce((a, b) => a + b, 0);
    this.u8.fill(FILL, DATA, DATA + total);
    this.dv.setUint32(R0, SENTINEL, true);
    this.dv.setUint16(R1, 0xffff, true);
    const err =
      via === 'sock_recv'
        ? this.fn['sock_recv']!(fd, IOVS, lens.length, riFlags, R0, R1)
        : this.fn['fd_read']!(fd, IOVS, lens.length, R0);
    const parts = ptrs.map((p, i) => dec(this.u8.slice(p, p + lens[i]!)));
    return { err, n: this.dv.getUint32(R0, true), parts, roFlags: this.dv.getUint16(R1, true) };
  }
  /** everything readable now (in one 8 KiB iovec), as text */
  recvAll(fd: number): string {
    const r = this.recv(fd, [8192]);
    expect(r.err).toBe(0);
    return r.parts[0]!.slice(0, r.n);
  }

  /** sock_send (or fd_write) of the given parts, one iovec each */
  send(fd: number, parts: (string | Uint8Array)[], via: 'sock_send' | 'fd_write' = 'sock_send'): { err: number; n: number } {
    const bytes = parts.map((p) => (typeof p === 'string' ? enc(p) : p));
    const ptrs = this.iovecs(bytes.map((b) => b.length));
    bytes.forEach((b, i) => this.u8.set(b, ptrs[i]!));
    this.dv.setUint32(R0, SENTINEL, true);
    const err =
      via === 'sock_send' ? this.fn['sock_send']!(fd, IOVS, bytes.length, 0, R0) : this.fn['fd_write']!(fd, IOVS, bytes.length, R0);
    return { err, n: this.dv.getUint32(R0, true) };
  }

  shutdown(fd: number, how: number): number {
    return this.fn['sock_shutdown']!(fd, how);
  }
  close(fd: number): number {
    return this.fn['fd_close']!(fd);
  }

  /** path_open(fd 3, name, O_CREAT): the new fd */
  createFile(name: string): { err: number; fd: number } {
    const b = enc(name);
    this.u8.set(b, PATH);
    this.dv.setUint32(R0, SENTINEL, true);
    const err = this.fn['path_open']!(PREOPEN_FD, 0, PATH, b.length, OFLAGS_CREAT, 0n, 0n, 0, R0);
    return { err, fd: this.dv.getUint32(R0, true) };
  }

  poll(subs: Sub[]): { err: number; events: PollEvent[] } {
    this.u8.fill(0, SUBS, SUBS + subs.length * SUBSCRIPTION_SIZE);
    this.u8.fill(0xff, EVENTS, EVENTS + subs.length * EVENT_SIZE);
    subs.forEach((s, i) => {
      const p = SUBS + i * SUBSCRIPTION_SIZE;
      this.dv.setBigUint64(p, s.userdata, true);
      if (s.type === 'clock') {
        this.dv.setUint8(p + 8, EVENTTYPE_CLOCK);
        this.dv.setUint32(p + 16, CLOCK_MONOTONIC, true);
        this.dv.setBigUint64(p + 24, s.timeoutNs, true);
        this.dv.setUint16(p + 40, 0, true); // relative
      } else {
        this.dv.setUint8(p + 8, s.type === 'read' ? EVENTTYPE_FD_READ : EVENTTYPE_FD_WRITE);
        this.dv.setUint32(p + 16, s.fd, true);
      }
    });
    this.dv.setUint32(R1, SENTINEL, true);
    const err = this.fn['poll_oneoff']!(SUBS, EVENTS, subs.length, R1);
    const events: PollEvent[] = [];
    if (err === 0) {
      const n = this.dv.getUint32(R1, true);
      for (let i = 0; i < n; i++) {
        const p = EVENTS + i * EVENT_SIZE;
        events.push({
          userdata: this.dv.getBigUint64(p, true),
          error: this.dv.getUint16(p + 8, true),
          type: this.dv.getUint8(p + 10),
          nbytes: this.dv.getBigUint64(p + 16, true),
          flags: this.dv.getUint16(p + 24, true),
        });
      }
    }
    return { err, events };
  }

  /** what the guest sent, as "conn:text" or "conn:<eof>" */
  sentText(): string[] {
    return this.sent.map((m) => `${m.conn}:${m.eof ? '<eof>' : dec(m.bytes)}`);
  }
}

const readEv = (userdata: bigint, nbytes: bigint, flags = 0, error = 0): PollEvent => ({
  userdata,
  error,
  type: EVENTTYPE_FD_READ,
  nbytes,
  flags,
});
const writeEv = (userdata: bigint, error = 0): PollEvent => ({ userdata, error, type: EVENTTYPE_FD_WRITE, nbytes: 0n, flags: 0 });
const clockEv = (userdata: bigint): PollEvent => ({ userdata, error: 0, type: EVENTTYPE_CLOCK, nbytes: 0n, flags: 0 });

describe('sock_accept', () => {
  it('on a non-blocking listening socket with nothing queued gives EAGAIN without waiting', () => {
    const h = new Harness();
    expect(h.setFlags(LISTEN_FD, FDFLAGS_NONBLOCK)).toBe(0);
    expect(h.fdstat(LISTEN_FD)).toEqual({ err: 0, filetype: FILETYPE_SOCKET_STREAM, flags: FDFLAGS_NONBLOCK });
    h.later({ conn: 1, data: 'never asked for' });
    expect(h.accept()).toEqual({ err: EAGAIN, fd: SENTINEL });
    expect(h.waits).toBe(0);
    expect(h.toCome.length).toBe(1);
    // fd 5 was not handed out
    expect(h.fdstat(5).err).toBe(EBADF);
    // once something is queued the same call accepts it
    h.arrive(1, 'x');
    expect(h.accept()).toEqual({ err: 0, fd: 5 });
  });

  it('blocking: waits until a connection arrives, then accepts it', () => {
    const h = new Harness();
    h.later(); // the first interrupt brings nothing for the network
    h.later({ conn: 9, data: 'hi' }, { conn: 9, data: ' there' });
    expect(h.accept()).toEqual({ err: 0, fd: 5 });
    expect(h.waits).toBe(2);
    expect(h.fdstat(5)).toEqual({ err: 0, filetype: FILETYPE_SOCKET_STREAM, flags: 0 });
    expect(h.recvAll(5)).toBe('hi there');
    expect(h.nic.queued).toBe(0);
  });

  it('blocking with nothing ever to come ends the guest idle (GuestIdle), allocating nothing', () => {
    const h = new Harness();
    expect(() => h.accept()).toThrow(GuestIdle);
    expect(h.waits).toBe(1);
    expect(h.dv.getUint32(R0, true)).toBe(SENTINEL);
    h.arrive(3, 'a');
    expect(h.accept()).toEqual({ err: 0, fd: 5 });
  });

  it('on a descriptor that is not the listening socket gives ENOTSOCK; on a closed one EBADF', () => {
    const h = new Harness();
    h.arrive(1, 'a');
    h.arrive(2, 'b');
    expect(h.acceptOk()).toBe(5);
    for (const fd of [0, 1, 2, PREOPEN_FD, 5]) expect(h.accept(fd)).toEqual({ err: ENOTSOCK, fd: SENTINEL });
    expect(h.accept(6)).toEqual({ err: EBADF, fd: SENTINEL }); // never opened
    expect(h.close(LISTEN_FD)).toBe(0);
    expect(h.accept(LISTEN_FD)).toEqual({ err: EBADF, fd: SENTINEL });
    expect(h.waits).toBe(0);
    expect(h.nic.queued).toBe(1); // conn 2 still waits
    expect(h.sent).toEqual([]); // closing the listening socket tells nobody anything
  });

  it('rejects unknown fdflags (EINVAL) and a bad fd pointer (EFAULT) without accepting', () => {
    const h = new Harness();
    h.arrive(1, 'a');
    expect(h.accept(LISTEN_FD, 0x20)).toEqual({ err: EINVAL, fd: SENTINEL });
    expect(h.fn['sock_accept']!(LISTEN_FD, 0, h.size - 3)).toBe(EFAULT);
    expect(h.fn['sock_accept']!(LISTEN_FD, 0, -1)).toBe(EFAULT);
    expect(h.nic.queued).toBe(1);
    expect(h.fdstat(5).err).toBe(EBADF);
    // the fdflags given to accept become the new socket's flags
    expect(h.accept(LISTEN_FD, FDFLAGS_NONBLOCK)).toEqual({ err: 0, fd: 5 });
    expect(h.fdstat(5).flags).toBe(FDFLAGS_NONBLOCK);
    expect(h.recvAll(5)).toBe('a');
    expect(h.recv(5, [4]).err).toBe(EAGAIN);
  });

  it('hands out the lowest free fd >= 5', () => {
    const h = new Harness();
    for (const conn of [10, 11, 12, 13]) h.arrive(conn, `c${conn}`);
    expect([h.acceptOk(), h.acceptOk(), h.acceptOk()]).toEqual([5, 6, 7]);
    expect(h.close(6)).toBe(0);
    expect(h.acceptOk()).toBe(6);
    expect(h.recvAll(5)).toBe('c10');
    expect(h.recvAll(6)).toBe('c13');
    expect(h.recvAll(7)).toBe('c12');
    // a file takes the next lowest, and accept skips it
    expect(h.createFile('f')).toEqual({ err: 0, fd: 8 });
    h.arrive(14, 'c14');
    expect(h.acceptOk()).toBe(9);
  });

  it('moves every earlier queued message of the oldest connection to the socket; other connections stay queued', () => {
    const h = new Harness();
    h.arrive(1, 'one-');
    h.arrive(2, 'two');
    h.arrive(1, 'more-');
    h.arrive(3, 'three');
    h.arrive(1, 'end');
    h.eof(2);
    expect(h.nic.queued).toBe(6);
    expect(h.acceptOk()).toBe(5);
    expect(h.nic.queued).toBe(3); // 2:'two', 3:'three', 2:eof
    expect(h.recvAll(5)).toBe('one-more-end');
    // later messages for conn 1 go straight to the socket
    h.arrive(1, '+late');
    expect(h.nic.queued).toBe(3);
    expect(h.recvAll(5)).toBe('+late');
    // the next accept takes conn 2 (the oldest queued), with its eof
    expect(h.acceptOk()).toBe(6);
    expect(h.nic.queued).toBe(1);
    expect(h.recv(6, [16]).n).toBe(3);
    expect(h.recv(6, [16])).toMatchObject({ err: 0, n: 0 }); // the peer closed: EOF
    // what is left is conn 3's message, untouched, for the raw interface
    expect(h.nic.take()).toEqual({ conn: 3, bytes: enc('three'), eof: false });
  });

  it('a connection whose only queued message is its eof is accepted already closed', () => {
    const h = new Harness();
    h.eof(4);
    expect(h.acceptOk()).toBe(5);
    expect(h.recv(5, [8])).toMatchObject({ err: 0, n: 0 });
    expect(h.waits).toBe(0);
  });
});

describe('sock_recv and fd_read on a socket', () => {
  it('reads across message boundaries into several iovecs', () => {
    const h = new Harness();
    h.arrive(7, 'hel');
    h.arrive(7, 'lo wo');
    h.arrive(7, 'rld!');
    expect(h.acceptOk()).toBe(5);
    const r = h.recv(5, [4, 3, 10]);
    expect(r.err).toBe(0);
    expect(r.n).toBe(12);
    expect(r.parts).toEqual(['hell', 'o w', 'orld!.....']);
    expect(r.roFlags).toBe(0); // ro_flags written as 0
    // everything was consumed
    expect(h.setFlags(5, FDFLAGS_NONBLOCK)).toBe(0);
    expect(h.recv(5, [4]).err).toBe(EAGAIN);
  });

  it('RECV_PEEK reads without consuming', () => {
    const h = new Harness();
    h.arrive(7, 'abc');
    h.arrive(7, 'def');
    expect(h.acceptOk()).toBe(5);
    expect(h.recv(5, [4], 'sock_recv', 1)).toMatchObject({ err: 0, n: 4, parts: ['abcd'] });
    // only into the first iovec, as wasmtime's peek
    expect(h.recv(5, [2, 8], 'sock_recv', 1)).toMatchObject({ err: 0, n: 2, parts: ['ab', '........'] });
    expect(h.recv(5, [5])).toMatchObject({ err: 0, n: 5, parts: ['abcde'] });
    expect(h.recv(5, [5], 'sock_recv', 1)).toMatchObject({ err: 0, n: 1, parts: ['f....'] });
    expect(h.recvAll(5)).toBe('f');
  });

  it('reads at most what the iovecs hold and keeps the rest, in order; fd_read is the same stream', () => {
    const h = new Harness();
    h.arrive(7, 'abcdef');
    h.arrive(7, 'ghij');
    expect(h.acceptOk()).toBe(5);
    expect(h.recv(5, [2, 0, 3])).toMatchObject({ err: 0, n: 5, parts: ['ab', '', 'cde'] });
    expect(h.recv(5, [3], 'fd_read')).toMatchObject({ err: 0, n: 3, parts: ['fgh'] });
    expect(h.recv(5, [1, 8], 'fd_read')).toMatchObject({ err: 0, n: 2, parts: ['i', 'j.......'] });
    expect(h.waits).toBe(0);
  });

  it('non-blocking with no data gives EAGAIN without waiting; blocking waits for data', () => {
    const h = new Harness();
    h.arrive(7, 'x');
    expect(h.acceptOk()).toBe(5);
    expect(h.recvAll(5)).toBe('x');
    expect(h.setFlags(5, FDFLAGS_NONBLOCK)).toBe(0);
    h.later({ conn: 7, data: 'later' });
    for (const via of ['sock_recv', 'fd_read'] as const) {
      const r = h.recv(5, [8], via);
      expect(r.err).toBe(EAGAIN);
      expect(r.n).toBe(SENTINEL);
      expect(r.parts).toEqual(['........']);
    }
    expect(h.waits).toBe(0);
    // blocking again: a message for another connection does not wake the reader, one for it does
    expect(h.setFlags(5, 0)).toBe(0);
    h.toCome.unshift([{ conn: 8, bytes: enc('other'), eof: false }]);
    expect(h.recv(5, [8])).toMatchObject({ err: 0, n: 5, parts: ['later...'] });
    expect(h.waits).toBe(2);
    expect(h.nic.queued).toBe(1);
    // and with nothing to come, the guest ends idle
    expect(() => h.recv(5, [8])).toThrow(GuestIdle);
    expect(h.waits).toBe(3);
  });

  it("after the peer's eof: the rest is read, then 0 bytes (EOF) without waiting, even when non-blocking", () => {
    const h = new Harness();
    h.arrive(7, 'last words');
    h.eof(7);
    h.arrive(7, 'after eof'); // dropped
    expect(h.acceptOk()).toBe(5);
    expect(h.recv(5, [4])).toMatchObject({ err: 0, n: 4, parts: ['last'] });
    expect(h.recv(5, [64])).toMatchObject({ err: 0, n: 6 });
    expect(h.recv(5, [64])).toMatchObject({ err: 0, n: 0 });
    expect(h.recv(5, [64], 'fd_read')).toMatchObject({ err: 0, n: 0 });
    h.arrive(7, 'still dropped');
    expect(h.setFlags(5, FDFLAGS_NONBLOCK)).toBe(0);
    expect(h.recv(5, [64])).toMatchObject({ err: 0, n: 0, parts: ['.'.repeat(64)] });
    expect(h.waits).toBe(0);
    expect(h.nic.queued).toBe(0);
  });

  it('an eof arriving while blocked ends the read with 0 bytes', () => {
    const h = new Harness();
    h.arrive(7, 'a');
    expect(h.acceptOk()).toBe(5);
    expect(h.recvAll(5)).toBe('a');
    h.later({ conn: 7, eof: true });
    expect(h.recv(5, [8])).toMatchObject({ err: 0, n: 0 });
    expect(h.waits).toBe(1);
  });

  it('on the listening socket gives ENOTCONN; on a non-socket ENOTSOCK; on a closed fd EBADF', () => {
    const h = new Harness();
    h.arrive(7, 'queued');
    expect(h.recv(LISTEN_FD, [8]).err).toBe(ENOTCONN);
    expect(h.recv(LISTEN_FD, [8], 'fd_read').err).toBe(ENOTCONN);
    expect(h.recv(1, [8]).err).toBe(ENOTSOCK);
    expect(h.recv(PREOPEN_FD, [8]).err).toBe(ENOTSOCK);
    expect(h.recv(5, [8]).err).toBe(EBADF);
    expect(h.recv(5, [8], 'fd_read').err).toBe(EBADF);
    expect(h.nic.queued).toBe(1); // nothing was taken
    expect(h.waits).toBe(0);
  });

  it('a bad iovec, buffer, nread or ro_flags pointer gives EFAULT and consumes nothing', () => {
    const h = new Harness();
    h.arrive(7, 'hello');
    expect(h.acceptOk()).toBe(5);
    const before = h.host.deviceState();
    const recv = h.fn['sock_recv']!;
    const read = h.fn['fd_read']!;
    const end = h.size;
    // the iovec array runs past the end of memory
    expect(recv(5, end - 4, 1, 0, R0, R1)).toBe(EFAULT);
    expect(read(5, end - 4, 1, R0)).toBe(EFAULT);
    // the second iovec's buffer runs past the end of memory
    h.dv.setUint32(IOVS, DATA, true);
    h.dv.setUint32(IOVS + 4, 2, true);
    h.dv.setUint32(IOVS + 8, end - 2, true);
    h.dv.setUint32(IOVS + 12, 4, true);
    h.u8.fill(FILL, DATA, DATA + 2);
    expect(recv(5, IOVS, 2, 0, R0, R1)).toBe(EFAULT);
    expect(read(5, IOVS, 2, R0)).toBe(EFAULT);
    expect(dec(h.u8.slice(DATA, DATA + 2))).toBe('..'); // not even the first buffer was filled
    // nread / ro_flags out of range
    h.iovecs([8]);
    expect(recv(5, IOVS, 1, 0, end - 2, R1)).toBe(EFAULT);
    expect(recv(5, IOVS, 1, 0, R0, end - 1)).toBe(EFAULT);
    expect(read(5, IOVS, 1, end)).toBe(EFAULT);
    expect(h.host.deviceState()).toBe(before);
    expect(h.recvAll(5)).toBe('hello');
  });

  it('a bad pointer on a blocking read with no data is EFAULT at once, without waiting', () => {
    const h = new Harness();
    h.arrive(7, 'a');
    expect(h.acceptOk()).toBe(5);
    expect(h.recvAll(5)).toBe('a');
    h.later({ conn: 7, data: 'b' });
    expect(h.fn['sock_recv']!(5, h.size - 4, 1, 0, R0, R1)).toBe(EFAULT);
    expect(h.waits).toBe(0);
  });
});

describe("flags as wasmtime's preview1 host takes them (wasi-common's TcpListener and TcpStream)", () => {
  const APPEND = 1;
  const NONBLOCK = FDFLAGS_NONBLOCK;
  const WAITALL = 2;
  const ENOTSUP = 58;

  it('sock_accept and fd_fdstat_set_flags on sockets take NONBLOCK or nothing; anything else is EINVAL and changes nothing', () => {
    // Proves: a server that asks for APPEND on a socket is refused as under wasmtime ("cannot set anything else than NONBLOCK").
    const h = new Harness();
    h.arrive(1, 'a');
    expect(h.accept(LISTEN_FD, APPEND)).toEqual({ err: EINVAL, fd: SENTINEL });
    expect(h.nic.queued).toBe(1); // nothing was accepted
    expect(h.accept(LISTEN_FD, APPEND | NONBLOCK)).toEqual({ err: EINVAL, fd: SENTINEL });
    expect(h.accept(LISTEN_FD, NONBLOCK)).toEqual({ err: 0, fd: 5 });
    expect(h.fdstat(5).flags).toBe(NONBLOCK);
    expect(h.setFlags(5, APPEND)).toBe(EINVAL);
    expect(h.setFlags(LISTEN_FD, APPEND | NONBLOCK)).toBe(EINVAL);
    expect(h.fdstat(5).flags).toBe(NONBLOCK);
    expect(h.setFlags(5, 0)).toBe(0);
    expect(h.fdstat(5).flags).toBe(0);
  });

  it('sock_recv: unknown ri_flags are ENOTSUP; RECV_WAITALL waits for the whole buffer, or returns less at the end of the stream', () => {
    // Proves: WAITALL is honoured (one read of 6 bytes across two arrivals), non-blocking WAITALL says EAGAIN without consuming, and an eof ends the wait with what there is.
    const h = new Harness();
    h.arrive(1, 'abc');
    expect(h.acceptOk()).toBe(5);
    expect(h.recv(5, [8], 'sock_recv', 4).err).toBe(ENOTSUP);
    h.later({ conn: 1, data: 'def' });
    expect(h.recv(5, [2, 4], 'sock_recv', WAITALL)).toMatchObject({ err: 0, n: 6, parts: ['ab', 'cdef'] });
    expect(h.waits).toBe(1);
    h.arrive(1, 'gh');
    expect(h.setFlags(5, NONBLOCK)).toBe(0);
    expect(h.recv(5, [4], 'sock_recv', WAITALL).err).toBe(EAGAIN);
    expect(h.setFlags(5, 0)).toBe(0);
    h.later({ conn: 1, eof: true });
    expect(h.recv(5, [4], 'sock_recv', WAITALL)).toMatchObject({ err: 0, n: 2, parts: ['gh..'] });
    expect(h.recv(5, [4], 'sock_recv', WAITALL)).toMatchObject({ err: 0, n: 0 });
  });

  it('sock_send with si_flags is ENOTSUP and sends nothing', () => {
    const h = new Harness();
    h.arrive(1, 'a');
    expect(h.acceptOk()).toBe(5);
    h.u8.set(enc('x'), DATA);
    h.iovecs([1]);
    expect(h.fn['sock_send']!(5, IOVS, 1, 1, R0)).toBe(ENOTSUP);
    expect(h.sent).toEqual([]);
  });
});

describe('sock_send and fd_write on a socket', () => {
  it('sends one message per call, gathering all iovecs, on the socket’s connection', () => {
    const h = new Harness();
    h.arrive(21, 'req');
    h.arrive(22, 'req');
    expect(h.acceptOk()).toBe(5);
    expect(h.acceptOk()).toBe(6);
    expect(h.send(5, ['ab', '', 'cd'])).toEqual({ err: 0, n: 4 });
    expect(h.send(6, ['x'], 'fd_write')).toEqual({ err: 0, n: 1 });
    expect(h.send(5, ['e', 'f'], 'fd_write')).toEqual({ err: 0, n: 2 });
    expect(h.sentText()).toEqual(['21:abcd', '22:x', '21:ef']);
    expect(h.sent.every((m) => !m.eof)).toBe(true);
  });

  it('an empty send sends no message and reports 0 bytes', () => {
    const h = new Harness();
    h.arrive(21, 'req');
    expect(h.acceptOk()).toBe(5);
    expect(h.send(5, [])).toEqual({ err: 0, n: 0 });
    expect(h.send(5, ['', ''], 'fd_write')).toEqual({ err: 0, n: 0 });
    expect(h.sent).toEqual([]);
  });

  it(`splits a payload larger than MAX_MESSAGE_BYTES (${MAX_MESSAGE_BYTES}) into messages of at most that size, in order`, () => {
    expect(MAX_MESSAGE_BYTES).toBe(64 * 1024);
    const h = new Harness(4);
    h.arrive(21, 'req');
    expect(h.acceptOk()).toBe(5);
    const payload = new Uint8Array(150_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >>> 8)) & 0xff;
    expect(h.send(5, [payload.subarray(0, 100_000), payload.subarray(100_000)])).toEqual({ err: 0, n: 150_000 });
    expect(h.sent.map((m) => [m.conn, m.bytes.length, m.eof])).toEqual([
      [21, 65536, false],
      [21, 65536, false],
      [21, 150_000 - 2 * 65536, false],
    ]);
    expect(Buffer.concat(h.sent.map((m) => m.bytes)).equals(Buffer.from(payload))).toBe(true);
    // exactly MAX_MESSAGE_BYTES is one message; one more byte is two
    h.sent.length = 0;
    expect(h.send(5, [payload.subarray(0, MAX_MESSAGE_BYTES)], 'fd_write')).toEqual({ err: 0, n: MAX_MESSAGE_BYTES });
    expect(h.send(5, [payload.subarray(0, MAX_MESSAGE_BYTES + 1)])).toEqual({ err: 0, n: MAX_MESSAGE_BYTES + 1 });
    expect(h.sent.map((m) => m.bytes.length)).toEqual([MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES, 1]);
    expect(h.sent[2]!.bytes[0]).toBe(payload[MAX_MESSAGE_BYTES]);
  });

  it('after sock_shutdown(SHUT_WR) gives EPIPE and sends nothing', () => {
    const h = new Harness();
    h.arrive(21, 'req');
    expect(h.acceptOk()).toBe(5);
    expect(h.send(5, ['before'])).toEqual({ err: 0, n: 6 });
    expect(h.shutdown(5, SHUT_WR)).toBe(0);
    expect(h.send(5, ['after'])).toEqual({ err: EPIPE, n: SENTINEL });
    expect(h.send(5, ['after'], 'fd_write')).toEqual({ err: EPIPE, n: SENTINEL });
    expect(h.sentText()).toEqual(['21:before', '21:<eof>']);
  });

  it('on the listening socket ENOTCONN, on a non-socket ENOTSOCK, on a closed fd EBADF; a bad pointer EFAULT', () => {
    const h = new Harness();
    h.arrive(21, 'req');
    expect(h.send(LISTEN_FD, ['x'])).toEqual({ err: ENOTCONN, n: SENTINEL });
    expect(h.send(LISTEN_FD, ['x'], 'fd_write')).toEqual({ err: ENOTCONN, n: SENTINEL });
    expect(h.send(1, ['x'])).toEqual({ err: ENOTSOCK, n: SENTINEL });
    expect(h.send(PREOPEN_FD, ['x'])).toEqual({ err: ENOTSOCK, n: SENTINEL });
    expect(h.send(5, ['x'])).toEqual({ err: EBADF, n: SENTINEL });
    expect(h.acceptOk()).toBe(5);
    const send = h.fn['sock_send']!;
    expect(send(5, h.size - 4, 1, 0, R0)).toBe(EFAULT); // iovec array out of range
    h.dv.setUint32(IOVS, h.size - 2, true);
    h.dv.setUint32(IOVS + 4, 3, true);
    expect(send(5, IOVS, 1, 0, R0)).toBe(EFAULT); // buffer out of range
    expect(h.fn['fd_write']!(5, IOVS, 1, R0)).toBe(EFAULT);
    h.iovecs([2]);
    expect(send(5, IOVS, 1, 0, h.size - 3)).toBe(EFAULT); // datalen out of range
    expect(h.sent).toEqual([]);
  });
});

describe('sock_shutdown', () => {
  it('SHUT_WR sends exactly one eof, even when repeated; the socket can still be read', () => {
    const h = new Harness();
    h.arrive(21, 'req');
    expect(h.acceptOk()).toBe(5);
    expect(h.shutdown(5, SHUT_WR)).toBe(0);
    expect(h.shutdown(5, SHUT_WR)).toBe(0);
    expect(h.shutdown(5, SHUT_WR | SHUT_RD)).toBe(0);
    expect(h.sent).toEqual([{ conn: 21, bytes: new Uint8Array(0), eof: true }]);
    const h2 = new Harness();
    h2.arrive(21, 'req');
    expect(h2.acceptOk()).toBe(5);
    expect(h2.shutdown(5, SHUT_WR)).toBe(0);
    h2.arrive(21, '-more');
    expect(h2.recvAll(5)).toBe('req-more');
  });

  it('how = 0 or with unknown bits gives EINVAL and changes nothing', () => {
    const h = new Harness();
    h.arrive(21, 'req');
    expect(h.acceptOk()).toBe(5);
    const before = h.host.deviceState();
    for (const how of [0, 4, SHUT_WR | 4, SHUT_RD | 8, 0x100, -1]) expect(h.shutdown(5, how)).toBe(EINVAL);
    expect(h.sent).toEqual([]);
    expect(h.host.deviceState()).toBe(before);
    expect(h.send(5, ['ok'])).toEqual({ err: 0, n: 2 });
    expect(h.recvAll(5)).toBe('req');
  });

  it('on the listening socket ENOTCONN, on a non-socket ENOTSOCK, on a closed fd EBADF', () => {
    const h = new Harness();
    expect(h.shutdown(LISTEN_FD, SHUT_WR)).toBe(ENOTCONN);
    expect(h.shutdown(1, SHUT_WR)).toBe(ENOTSOCK);
    expect(h.shutdown(PREOPEN_FD, SHUT_RD)).toBe(ENOTSOCK);
    expect(h.shutdown(5, SHUT_WR)).toBe(EBADF);
    expect(h.sent).toEqual([]);
  });

  it('SHUT_RD drops unread bytes and later arrivals: reads give EOF; sending still works', () => {
    const h = new Harness();
    h.arrive(21, 'unread');
    expect(h.acceptOk()).toBe(5);
    expect(h.shutdown(5, SHUT_RD)).toBe(0);
    expect(h.recv(5, [16])).toMatchObject({ err: 0, n: 0, parts: ['.'.repeat(16)] });
    h.arrive(21, 'later');
    h.eof(21);
    expect(h.nic.queued).toBe(0); // not queued for accept either
    expect(h.recv(5, [16], 'fd_read')).toMatchObject({ err: 0, n: 0 });
    expect(h.poll([{ userdata: 1n, type: 'read', fd: 5 }]).events).toEqual([readEv(1n, 0n, EVENTRW_HANGUP)]);
    expect(h.waits).toBe(0);
    expect(h.send(5, ['reply'])).toEqual({ err: 0, n: 5 });
    expect(h.sentText()).toEqual(['21:reply']); // SHUT_RD alone sends no eof
  });
});

describe('fd_close of a socket', () => {
  it('sends one eof; later messages of the connection are dropped, not queued nor accepted', () => {
    const h = new Harness();
    h.arrive(21, 'req');
    expect(h.acceptOk()).toBe(5);
    expect(h.close(5)).toBe(0);
    expect(h.sentText()).toEqual(['21:<eof>']);
    h.arrive(21, 'too late');
    h.eof(21);
    expect(h.nic.queued).toBe(0);
    expect(h.setFlags(LISTEN_FD, FDFLAGS_NONBLOCK)).toBe(0);
    expect(h.accept().err).toBe(EAGAIN);
    expect(h.poll([{ userdata: 1n, type: 'read', fd: LISTEN_FD }, { userdata: 2n, type: 'clock', timeoutNs: 10n }]).events).toEqual([
      clockEv(2n),
    ]);
    // the fd is gone
    expect(h.recv(5, [4]).err).toBe(EBADF);
    expect(h.send(5, ['x']).err).toBe(EBADF);
    expect(h.close(5)).toBe(EBADF);
    expect(h.sent.length).toBe(1);
    // other connections are unaffected and the fd is reused
    h.arrive(22, 'other');
    expect(h.accept()).toEqual({ err: 0, fd: 5 });
    expect(h.recvAll(5)).toBe('other');
  });

  it('remembers a closed connection only until its peer ends too, so the closed set stays bounded by the half-open connections', () => {
    // Proves: a server closing 1000 connections (each ended by its peer, before or after the close) keeps no trace of them; one whose peer has not ended still drops what comes.
    const h = new Harness();
    for (let conn = 1; conn <= 1000; conn++) {
      h.arrive(conn, 'req');
      const peerFirst = conn % 2 === 0;
      if (peerFirst) h.eof(conn);
      const fd = h.acceptOk();
      expect(h.close(fd)).toBe(0);
      if (!peerFirst) {
        h.arrive(conn, 'late'); // dropped
        h.eof(conn);
      }
    }
    expect(h.nic.image().closed).toEqual([]);
    expect(h.nic.queued).toBe(0);
    h.arrive(2000, 'x');
    expect(h.close(h.acceptOk())).toBe(0);
    h.arrive(2000, 'dropped');
    expect(h.nic.image().closed).toEqual([2000]);
    expect(h.nic.queued).toBe(0);
  });

  it('sends no eof when the socket was already shut down for writing', () => {
    const h = new Harness();
    h.arrive(21, 'req');
    expect(h.acceptOk()).toBe(5);
    expect(h.shutdown(5, SHUT_WR)).toBe(0);
    expect(h.close(5)).toBe(0);
    expect(h.sentText()).toEqual(['21:<eof>']);
  });

  it("sends its eof even after the peer's eof", () => {
    const h = new Harness();
    h.arrive(21, 'req');
    h.eof(21);
    expect(h.acceptOk()).toBe(5);
    expect(h.close(5)).toBe(0);
    expect(h.sentText()).toEqual(['21:<eof>']);
  });
});

describe('poll_oneoff on sockets', () => {
  it('fd_read on the listening socket is ready only while a connection is queued', () => {
    const h = new Harness();
    const subs: Sub[] = [
      { userdata: 10n, type: 'read', fd: LISTEN_FD },
      { userdata: 11n, type: 'clock', timeoutNs: 1_000_000n },
    ];
    expect(h.poll(subs)).toEqual({ err: 0, events: [clockEv(11n)] });
    h.arrive(1, 'a');
    h.arrive(1, 'b');
    expect(h.poll(subs)).toEqual({ err: 0, events: [readEv(10n, 0n)] });
    expect(h.acceptOk()).toBe(5);
    // conn 1's messages moved to the socket: nothing is queued for accept any more
    expect(h.poll(subs)).toEqual({ err: 0, events: [clockEv(11n)] });
    expect(h.waits).toBe(0);
  });

  it('fd_read on a socket reports the readable bytes, and HANGUP once the peer closed and all is read', () => {
    const h = new Harness();
    h.arrive(1, 'abc');
    expect(h.acceptOk()).toBe(5);
    h.arrive(1, 'defg');
    const subs: Sub[] = [
      { userdata: 1n, type: 'read', fd: 5 },
      { userdata: 2n, type: 'clock', timeoutNs: 5n },
    ];
    expect(h.poll(subs).events).toEqual([readEv(1n, 7n)]);
    expect(h.recv(5, [2]).n).toBe(2);
    expect(h.poll(subs).events).toEqual([readEv(1n, 5n)]);
    expect(h.recv(5, [5]).n).toBe(5);
    expect(h.poll(subs).events).toEqual([clockEv(2n)]); // nothing to read: not ready
    h.arrive(1, 'hi');
    h.eof(1);
    expect(h.poll(subs).events).toEqual([readEv(1n, 2n, 0)]); // bytes still readable before the EOF
    expect(h.recvAll(5)).toBe('hi');
    expect(h.poll(subs).events).toEqual([readEv(1n, 0n, EVENTRW_HANGUP)]);
    expect(h.waits).toBe(0);
  });

  it('fd_write on sockets (accepted or listening) is always ready; a closed fd reports EBADF', () => {
    const h = new Harness();
    h.arrive(1, 'x');
    expect(h.acceptOk()).toBe(5);
    expect(h.recvAll(5)).toBe('x');
    expect(h.shutdown(5, SHUT_WR)).toBe(0); // even when it could not send any more
    const r = h.poll([
      { userdata: 1n, type: 'read', fd: 5 },
      { userdata: 2n, type: 'write', fd: 5 },
      { userdata: 3n, type: 'read', fd: LISTEN_FD },
      { userdata: 4n, type: 'write', fd: LISTEN_FD },
      { userdata: 5n, type: 'write', fd: 6 },
      { userdata: 6n, type: 'read', fd: 6 },
    ]);
    expect(r).toEqual({ err: 0, events: [writeEv(2n), writeEv(4n), writeEv(5n, EBADF), readEv(6n, 0n, 0, EBADF)] });
    expect(h.waits).toBe(0);
  });

  it('with nothing ready and no clock it blocks (calls wait) until a subscribed event is ready', () => {
    const h = new Harness();
    h.arrive(1, 'x');
    expect(h.acceptOk()).toBe(5);
    expect(h.recvAll(5)).toBe('x');
    h.later({ conn: 2, data: 'not for the socket' }); // queued, but nobody subscribed to fd 4
    h.later({ conn: 1, data: 'hello' });
    h.later({ conn: 1, data: 'unused' });
    expect(h.poll([{ userdata: 7n, type: 'read', fd: 5 }])).toEqual({ err: 0, events: [readEv(7n, 5n)] });
    expect(h.waits).toBe(2);
    expect(h.toCome.length).toBe(1);
    // the listening socket: a new connection wakes it
    expect(h.recvAll(5)).toBe('hello');
    expect(h.acceptOk()).toBe(6);
    expect(h.poll([{ userdata: 8n, type: 'read', fd: 5 }])).toEqual({ err: 0, events: [readEv(8n, 6n)] });
    expect(h.waits).toBe(3);
    // nothing ever comes: the guest ends idle
    expect(() => h.poll([{ userdata: 9n, type: 'read', fd: LISTEN_FD }])).toThrow(GuestIdle);
    expect(h.waits).toBe(4);
    expect(h.dv.getUint32(R1, true)).toBe(SENTINEL); // no events were written
  });

  it('with a clock subscription and nothing ready it returns the clock event at once, without waiting', () => {
    const h = new Harness();
    h.arrive(1, 'x');
    expect(h.acceptOk()).toBe(5);
    expect(h.recvAll(5)).toBe('x');
    h.later({ conn: 1, data: 'would make fd 5 ready' });
    const t0 = Date.now();
    const r = h.poll([
      { userdata: 1n, type: 'read', fd: 5 },
      { userdata: 2n, type: 'read', fd: LISTEN_FD },
      { userdata: 3n, type: 'clock', timeoutNs: 3_600_000_000_000n },
    ]);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(r).toEqual({ err: 0, events: [clockEv(3n)] });
    expect(h.waits).toBe(0);
    expect(h.toCome.length).toBe(1);
  });
});

describe('deviceState', () => {
  it('changes when a message is queued, accepted, read, or a socket is closed', () => {
    const h = new Harness();
    const states = [h.host.deviceState()];
    const step = () => {
      const s = h.host.deviceState();
      expect(states).not.toContain(s);
      states.push(s);
    };
    h.arrive(1, 'hello');
    step(); // queued
    h.arrive(2, 'x');
    step(); // queued
    expect(h.acceptOk()).toBe(5);
    step(); // accepted
    expect(h.recv(5, [2]).n).toBe(2);
    step(); // partly read
    expect(h.recv(5, [8]).n).toBe(3);
    step(); // read to the end
    h.arrive(1, 'more');
    step(); // arrived on the socket
    expect(h.shutdown(5, SHUT_WR)).toBe(0);
    step(); // shut down for writing
    expect(h.close(5)).toBe(0);
    step(); // closed
    // failed or empty calls change nothing
    const last = h.host.deviceState();
    expect(h.recv(5, [4]).err).toBe(EBADF);
    expect(h.send(LISTEN_FD, ['x']).err).toBe(ENOTCONN);
    h.arrive(1, 'dropped');
    expect(h.host.deviceState()).toBe(last);
  });

  it('is equal for two hosts that saw the same sequence of calls, and differs when the bytes differ', () => {
    const run = (h: Harness, word: string): string[] => {
      const out: string[] = [h.host.deviceState()];
      h.arrive(3, word);
      h.arrive(4, 'b');
      out.push(h.host.deviceState());
      expect(h.acceptOk()).toBe(5);
      out.push(h.host.deviceState());
      expect(h.recv(5, [2]).err).toBe(0);
      out.push(h.host.deviceState());
      expect(h.setFlags(5, FDFLAGS_NONBLOCK)).toBe(0);
      out.push(h.host.deviceState());
      expect(h.acceptOk()).toBe(6);
      expect(h.close(5)).toBe(0);
      out.push(h.host.deviceState());
      return out;
    };
    const a = run(new Harness(), 'abc');
    const b = run(new Harness(), 'abc');
    expect(a).toEqual(b);
    expect(new Set(a).size).toBe(a.length);
    const c = run(new Harness(), 'abd');
    expect(c[0]).toBe(a[0]);
    expect(c[1]).not.toBe(a[1]);
    expect(c[3]).not.toBe(a[3]);
  });
});

describe('bugs: interrupt handlers that run while sock_accept blocks', () => {
  // A blocking sock_accept calls wait(), during which interrupts are delivered
  // and the guest's ftvm_interrupt handler runs (events.ts, place 'wait'). The
  // handler may open descriptors of its own; onWait stands in for it here.
  it('a blocking accept does not hand out an fd that an interrupt handler opened meanwhile', () => {
    const h = new Harness();
    let handlerFd = -1;
    h.onWait = () => {
      h.onWait = null;
      const r = h.createFile('log');
      expect(r.err).toBe(0);
      handlerFd = r.fd;
    };
    h.later({ conn: 1, data: 'hi' });
    const r = h.accept();
    expect(handlerFd).toBe(5);
    expect(r.err).toBe(0);
    // the accepted socket must get a free fd, and fd 5 must still be the handler's file
    expect(r.fd).toBe(6);
    expect(h.fdstat(5).filetype).toBe(FILETYPE_REGULAR_FILE);
    expect(h.fdstat(6).filetype).toBe(FILETYPE_SOCKET_STREAM);
  });

  it('a blocking accept does not replace a socket that an interrupt handler accepted meanwhile', () => {
    const h = new Harness();
    let handlerFd = -1;
    h.onWait = () => {
      // the first interrupt brings conn 1, and the handler accepts it itself
      h.onWait = null;
      h.arrive(1, 'for the handler');
      handlerFd = h.acceptOk();
    };
    h.later(); // the batch of the first wait (conn 1 arrived in the handler)
    h.later({ conn: 2, data: 'for the main code' });
    const r = h.accept();
    expect(handlerFd).toBe(5);
    expect(r.err).toBe(0);
    expect(r.fd).toBe(6);
    expect(h.recvAll(5)).toBe('for the handler');
    expect(h.recvAll(6)).toBe('for the main code');
  });
});
