/**
 * A small, self-contained WASI preview1 host for command programs.
 *
 * Scope: stdio (fd 0 from an in-memory buffer, fds 1/2 to callbacks), argv,
 * environ, clocks, randomness, poll_oneoff over clocks and stdio, proc_exit.
 * There is no filesystem: no preopens exist and path_open always fails.
 *
 * Every value the guest can observe that is not a pure function of the
 * options (clocks, randomness) is obtained through `Nondeterminism`, so a
 * recorder/replayer can stand in for the live sources.
 *
 * Conventions:
 *  - `memory.buffer` is re-read on every call, because the guest may grow it.
 *  - Every guest pointer is bounds-checked before anything is read, written
 *    or sent anywhere; an out-of-range region yields EFAULT with no side
 *    effects (nothing written to memory, no stdout call, no stdin consumed).
 *  - i32 arguments arrive as signed JS numbers and are reinterpreted as u32.
 *  - Any function not listed in `WasiHost.provided` is absent from `imports`,
 *    so a loader can refuse modules importing it.
 */
import { randomFillSync } from 'node:crypto';

export const WASI_MODULE = 'wasi_snapshot_preview1';

/** Every nondeterministic value the guest can observe comes through this interface, so that a recorder/replayer can stand in later. */
export interface Nondeterminism {
  /** realtime=0, monotonic=1, process_cputime=2, thread_cputime=3 */
  clockNs(clockId: number): bigint;
  clockResolutionNs(clockId: number): bigint;
  randomFill(dest: Uint8Array): void;
}

const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const CLOCK_PROCESS_CPUTIME = 2;
const CLOCK_THREAD_CPUTIME = 3;

function isKnownClock(id: number): boolean {
  return id === CLOCK_REALTIME || id === CLOCK_MONOTONIC || id === CLOCK_PROCESS_CPUTIME || id === CLOCK_THREAD_CPUTIME;
}

function cpuTimeNs(): bigint {
  const u = process.cpuUsage();
  return BigInt(u.user + u.system) * 1000n;
}

/**
 * Live sources: realtime from Date.now() (ms resolution, in ns), monotonic from
 * process.hrtime.bigint(), CPU time from process.cpuUsage() (µs resolution; the
 * thread clock reports process CPU time, as Node runs the guest on one thread),
 * randomness from crypto.randomFillSync.
 */
export const liveNondeterminism: Nondeterminism = {
  clockNs(clockId: number): bigint {
    switch (clockId) {
      case CLOCK_REALTIME:
        return BigInt(Date.now()) * 1_000_000n;
      case CLOCK_MONOTONIC:
        return process.hrtime.bigint();
      case CLOCK_PROCESS_CPUTIME:
      case CLOCK_THREAD_CPUTIME:
        return cpuTimeNs();
      default:
        throw new RangeError(`unknown WASI clock id ${clockId}`);
    }
  },
  clockResolutionNs(clockId: number): bigint {
    switch (clockId) {
      case CLOCK_REALTIME:
        return 1_000_000n;
      case CLOCK_MONOTONIC:
        return 1n;
      case CLOCK_PROCESS_CPUTIME:
      case CLOCK_THREAD_CPUTIME:
        return 1_000n;
      default:
        throw new RangeError(`unknown WASI clock id ${clockId}`);
    }
  },
  randomFill(dest: Uint8Array): void {
    randomFillSync(dest);
  },
};

export interface WasiOptions {
  /** argv including argv[0] */
  args: string[];
  env: Record<string, string>;
  /** bytes available on fd 0, then EOF */
  stdin?: Uint8Array;
  /** called synchronously with a copy of the bytes */
  stdout(bytes: Uint8Array): void;
  stderr(bytes: Uint8Array): void;
  /** default liveNondeterminism */
  nondeterminism?: Nondeterminism;
}

/** Thrown by proc_exit; unwinds the guest out of its entry point. */
export class WasiExit extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`WASI proc_exit(${code})`);
    this.name = 'WasiExit';
    this.code = code;
  }
}

// errno (preview1 `errno` enum, u16)
const ESUCCESS = 0;
const EBADF = 8;
const EFAULT = 21;
const EINVAL = 28;
const ESPIPE = 70;
const ENOTCAPABLE = 76;

// filetype
const FILETYPE_CHARACTER_DEVICE = 2;

// eventtype
const EVENTTYPE_CLOCK = 0;
const EVENTTYPE_FD_READ = 1;
const EVENTTYPE_FD_WRITE = 2;

// subclockflags
const SUBCLOCK_ABSTIME = 1;
// eventrwflags
const EVENTRW_HANGUP = 1;
// fdflags: append|dsync|nonblock|rsync|sync
const FDFLAGS_ALL = 0x1f;
// rights: the 30 rights defined by preview1 (fd_datasync .. sock_accept)
const RIGHTS_ALL = (1n << 30n) - 1n;

// struct sizes (preview1 ABI)
const IOVEC_SIZE = 8;
const FDSTAT_SIZE = 24;
const FILESTAT_SIZE = 64;
const SUBSCRIPTION_SIZE = 48;
const EVENT_SIZE = 32;

const U32_MAX = 0xffff_ffff;

const PROVIDED = [
  'args_get',
  'args_sizes_get',
  'environ_get',
  'environ_sizes_get',
  'fd_write',
  'fd_read',
  'fd_close',
  'fd_seek',
  'fd_fdstat_get',
  'fd_fdstat_set_flags',
  'fd_prestat_get',
  'fd_prestat_dir_name',
  'fd_filestat_get',
  'path_open',
  'clock_time_get',
  'clock_res_get',
  'random_get',
  'sched_yield',
  'proc_exit',
  'poll_oneoff',
] as const;

type ProvidedName = (typeof PROVIDED)[number];
type HostFn = (...args: any[]) => number | void;

/** A snapshot of guest memory taken at the start of one host call. */
class Guest {
  readonly u8: Uint8Array;
  readonly dv: DataView;
  constructor(buffer: ArrayBufferLike) {
    this.u8 = new Uint8Array(buffer);
    this.dv = new DataView(buffer);
  }
  /** true when [ptr, ptr+len) lies inside memory; ptr and len are u32 */
  ok(ptr: number, len: number): boolean {
    return ptr + len <= this.u8.byteLength;
  }
}

interface Iovec {
  ptr: number;
  len: number;
}

interface StdFd {
  flags: number;
}

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

const u32 = (x: number): number => x >>> 0;

function encodeCStrings(strings: readonly string[], what: string): { list: Uint8Array[]; size: number } {
  const enc = new TextEncoder();
  const list: Uint8Array[] = [];
  let size = 0;
  for (const s of strings) {
    if (s.includes('\0')) throw new TypeError(`WASI ${what} must not contain NUL: ${JSON.stringify(s)}`);
    const body = enc.encode(s);
    const bytes = new Uint8Array(body.length + 1);
    bytes.set(body);
    list.push(bytes);
    size += bytes.length;
  }
  if (size > U32_MAX || list.length > U32_MAX / 4) throw new RangeError(`WASI ${what} too large`);
  return { list, size };
}

export class WasiHost {
  /** names of the preview1 functions this host provides */
  static readonly provided: ReadonlySet<string> = new Set<string>(PROVIDED);

  /** import object entries for WASI_MODULE */
  readonly imports: Record<string, (...args: any[]) => number | void>;

  private memory: WebAssembly.Memory | undefined;
  private readonly args: { list: Uint8Array[]; size: number };
  private readonly environ: { list: Uint8Array[]; size: number };
  private readonly stdin: Uint8Array;
  private stdinPos = 0;
  private readonly nd: Nondeterminism;
  private readonly out: (bytes: Uint8Array) => void;
  private readonly err: (bytes: Uint8Array) => void;
  /** open descriptors; only stdio exists, and it can be closed */
  private readonly fds = new Map<number, StdFd>([
    [0, { flags: 0 }],
    [1, { flags: 0 }],
    [2, { flags: 0 }],
  ]);

  constructor(opts: WasiOptions) {
    this.args = encodeCStrings(opts.args, 'argument');
    const envStrings = Object.entries(opts.env).map(([k, v]) => {
      if (k.includes('=')) throw new TypeError(`WASI environment variable name must not contain '=': ${JSON.stringify(k)}`);
      return `${k}=${v}`;
    });
    this.environ = encodeCStrings(envStrings, 'environment entry');
    this.stdin = opts.stdin ? opts.stdin.slice() : new Uint8Array(0);
    this.out = opts.stdout;
    this.err = opts.stderr;
    this.nd = opts.nondeterminism ?? liveNondeterminism;

    const table: Record<ProvidedName, HostFn> = {
      args_get: (argv: number, buf: number) => this.writeCStrings(this.args.list, this.args.size, u32(argv), u32(buf)),
      args_sizes_get: (countPtr: number, sizePtr: number) =>
        this.writeSizes(this.args.list.length, this.args.size, u32(countPtr), u32(sizePtr)),
      environ_get: (environ: number, buf: number) =>
        this.writeCStrings(this.environ.list, this.environ.size, u32(environ), u32(buf)),
      environ_sizes_get: (countPtr: number, sizePtr: number) =>
        this.writeSizes(this.environ.list.length, this.environ.size, u32(countPtr), u32(sizePtr)),
      fd_write: (fd: number, iovs: number, iovsLen: number, nwritten: number) =>
        this.fdWrite(u32(fd), u32(iovs), u32(iovsLen), u32(nwritten)),
      fd_read: (fd: number, iovs: number, iovsLen: number, nread: number) =>
        this.fdRead(u32(fd), u32(iovs), u32(iovsLen), u32(nread)),
      fd_close: (fd: number) => (this.fds.delete(u32(fd)) ? ESUCCESS : EBADF),
      fd_seek: (fd: number, _offset: bigint, _whence: number, _newOffsetPtr: number) =>
        this.fds.has(u32(fd)) ? ESPIPE : EBADF,
      fd_fdstat_get: (fd: number, ptr: number) => this.fdFdstatGet(u32(fd), u32(ptr)),
      fd_fdstat_set_flags: (fd: number, flags: number) => {
        const f = this.fds.get(u32(fd));
        if (!f) return EBADF;
        if ((flags & 0xffff & ~FDFLAGS_ALL) !== 0) return EINVAL;
        f.flags = flags & FDFLAGS_ALL;
        return ESUCCESS;
      },
      // No preopened directories exist, so every fd answers "not a preopen".
      fd_prestat_get: (_fd: number, _ptr: number) => EBADF,
      fd_prestat_dir_name: (_fd: number, _path: number, _len: number) => EBADF,
      fd_filestat_get: (fd: number, ptr: number) => this.fdFilestatGet(u32(fd), u32(ptr)),
      path_open: (
        dirfd: number,
        _dirflags: number,
        path: number,
        pathLen: number,
        _oflags: number,
        _rightsBase: bigint,
        _rightsInheriting: bigint,
        _fdflags: number,
        fdPtr: number,
      ) => this.pathOpen(u32(dirfd), u32(path), u32(pathLen), u32(fdPtr)),
      clock_time_get: (id: number, _precision: bigint, ptr: number) => this.clockTimeGet(u32(id), u32(ptr)),
      clock_res_get: (id: number, ptr: number) => this.clockResGet(u32(id), u32(ptr)),
      random_get: (buf: number, len: number) => this.randomGet(u32(buf), u32(len)),
      sched_yield: () => ESUCCESS,
      proc_exit: (code: number): void => {
        throw new WasiExit(u32(code));
      },
      poll_oneoff: (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number) =>
        this.pollOneoff(u32(inPtr), u32(outPtr), u32(nsubs), u32(neventsPtr)),
    };
    this.imports = table;
  }

  /** must be called after instantiation, before running */
  bindMemory(memory: WebAssembly.Memory): void {
    this.memory = memory;
  }

  /** The state of the virtual devices (stdin position, open descriptors and their flags), canonically encoded for a state digest. */
  deviceState(): string {
    const fds = [...this.fds.entries()].sort(([a], [b]) => a - b).map(([fd, f]) => [fd, f.flags]);
    return JSON.stringify({ stdinPos: this.stdinPos, stdinBytes: this.stdin.length, fds });
  }

  private guest(): Guest {
    if (!this.memory) throw new Error('WasiHost: bindMemory() must be called before the guest runs');
    return new Guest(this.memory.buffer);
  }

  // ---- args / environ ----

  private writeSizes(count: number, size: number, countPtr: number, sizePtr: number): number {
    const g = this.guest();
    if (!g.ok(countPtr, 4) || !g.ok(sizePtr, 4)) return EFAULT;
    g.dv.setUint32(countPtr, count, true);
    g.dv.setUint32(sizePtr, size, true);
    return ESUCCESS;
  }

  private writeCStrings(list: Uint8Array[], size: number, ptrsPtr: number, bufPtr: number): number {
    const g = this.guest();
    if (!g.ok(ptrsPtr, list.length * 4) || !g.ok(bufPtr, size)) return EFAULT;
    let at = bufPtr;
    list.forEach((bytes, i) => {
      g.dv.setUint32(ptrsPtr + i * 4, at, true);
      g.u8.set(bytes, at);
      at += bytes.length;
    });
    return ESUCCESS;
  }

  // ---- stdio ----

  /** Reads an iovec array, checking the array and every buffer it names. */
  private readIovecs(g: Guest, iovs: number, count: number): Iovec[] | undefined {
    if (!g.ok(iovs, count * IOVEC_SIZE)) return undefined;
    const list: Iovec[] = [];
    for (let i = 0; i < count; i++) {
      const ptr = g.dv.getUint32(iovs + i * IOVEC_SIZE, true);
      const len = g.dv.getUint32(iovs + i * IOVEC_SIZE + 4, true);
      if (!g.ok(ptr, len)) return undefined;
      list.push({ ptr, len });
    }
    return list;
  }

  private fdWrite(fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number {
    const sink = fd === 1 ? this.out : fd === 2 ? this.err : undefined;
    if (!sink || !this.fds.has(fd)) return EBADF;
    const g = this.guest();
    const list = this.readIovecs(g, iovs, iovsLen);
    if (!list || !g.ok(nwrittenPtr, 4)) return EFAULT;
    let total = 0;
    for (const v of list) total += v.len;
    if (total > U32_MAX) return EINVAL;
    if (total > 0) {
      const bytes = new Uint8Array(total);
      let at = 0;
      for (const v of list) {
        bytes.set(g.u8.subarray(v.ptr, v.ptr + v.len), at);
        at += v.len;
      }
      sink(bytes);
    }
    // The sink may not touch guest memory, but re-read anyway to stay safe against growth.
    const after = this.guest();
    if (!after.ok(nwrittenPtr, 4)) return EFAULT;
    after.dv.setUint32(nwrittenPtr, total, true);
    return ESUCCESS;
  }

  private fdRead(fd: number, iovs: number, iovsLen: number, nreadPtr: number): number {
    if (fd !== 0 || !this.fds.has(fd)) return EBADF;
    const g = this.guest();
    const list = this.readIovecs(g, iovs, iovsLen);
    if (!list || !g.ok(nreadPtr, 4)) return EFAULT;
    let n = 0;
    for (const v of list) {
      const avail = this.stdin.length - this.stdinPos;
      if (avail === 0) break;
      const take = Math.min(avail, v.len);
      g.u8.set(this.stdin.subarray(this.stdinPos, this.stdinPos + take), v.ptr);
      this.stdinPos += take;
      n += take;
    }
    g.dv.setUint32(nreadPtr, n, true);
    return ESUCCESS;
  }

  private fdFdstatGet(fd: number, ptr: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    const g = this.guest();
    if (!g.ok(ptr, FDSTAT_SIZE)) return EFAULT;
    g.u8.fill(0, ptr, ptr + FDSTAT_SIZE);
    g.dv.setUint8(ptr, FILETYPE_CHARACTER_DEVICE);
    g.dv.setUint16(ptr + 2, f.flags, true);
    g.dv.setBigUint64(ptr + 8, RIGHTS_ALL, true);
    g.dv.setBigUint64(ptr + 16, RIGHTS_ALL, true);
    return ESUCCESS;
  }

  private fdFilestatGet(fd: number, ptr: number): number {
    if (!this.fds.has(fd)) return EBADF;
    const g = this.guest();
    if (!g.ok(ptr, FILESTAT_SIZE)) return EFAULT;
    // dev, ino, nlink, size and the timestamps are all reported as 0.
    g.u8.fill(0, ptr, ptr + FILESTAT_SIZE);
    g.dv.setUint8(ptr + 16, FILETYPE_CHARACTER_DEVICE);
    return ESUCCESS;
  }

  private pathOpen(dirfd: number, path: number, pathLen: number, fdPtr: number): number {
    const g = this.guest();
    if (!g.ok(path, pathLen) || !g.ok(fdPtr, 4)) return EFAULT;
    // No directory descriptors exist: stdio cannot resolve paths, anything else is not open.
    return this.fds.has(dirfd) ? ENOTCAPABLE : EBADF;
  }

  // ---- clocks / random ----

  private clockTimeGet(id: number, ptr: number): number {
    if (!isKnownClock(id)) return EINVAL;
    const g = this.guest();
    if (!g.ok(ptr, 8)) return EFAULT;
    const t = this.nd.clockNs(id);
    this.guest().dv.setBigUint64(ptr, BigInt.asUintN(64, t), true);
    return ESUCCESS;
  }

  private clockResGet(id: number, ptr: number): number {
    if (!isKnownClock(id)) return EINVAL;
    const g = this.guest();
    if (!g.ok(ptr, 8)) return EFAULT;
    const r = this.nd.clockResolutionNs(id);
    this.guest().dv.setBigUint64(ptr, BigInt.asUintN(64, r), true);
    return ESUCCESS;
  }

  private randomGet(buf: number, len: number): number {
    const g = this.guest();
    if (!g.ok(buf, len)) return EFAULT;
    if (len === 0) return ESUCCESS;
    // Fill a host-owned buffer, then copy in: the source never holds a view of guest memory.
    const bytes = new Uint8Array(len);
    this.nd.randomFill(bytes);
    const after = this.guest();
    if (!after.ok(buf, len)) return EFAULT;
    after.u8.set(bytes, buf);
    return ESUCCESS;
  }

  // ---- poll_oneoff ----

  /**
   * Never blocks. fd_read / fd_write subscriptions on open stdio are always
   * ready (fd 0 reports the unread stdin byte count, and HANGUP at EOF); on
   * other fds they report EBADF. Clock subscriptions are resolved virtually:
   * if some event is already ready, only clocks already due are reported;
   * otherwise the clock(s) with the earliest deadline are reported as fired,
   * without sleeping. Absolute deadlines read the clock through
   * Nondeterminism (once per clock id per call); relative ones read nothing.
   */
  private pollOneoff(inPtr: number, outPtr: number, nsubs: number, neventsPtr: number): number {
    if (nsubs === 0) return EINVAL;
    const g = this.guest();
    if (!g.ok(inPtr, nsubs * SUBSCRIPTION_SIZE) || !g.ok(outPtr, nsubs * EVENT_SIZE) || !g.ok(neventsPtr, 4)) {
      return EFAULT;
    }

    const subs: Sub[] = [];
    for (let i = 0; i < nsubs; i++) {
      const p = inPtr + i * SUBSCRIPTION_SIZE;
      const userdata = g.dv.getBigUint64(p, true);
      const tag = g.dv.getUint8(p + 8);
      if (tag === EVENTTYPE_CLOCK) {
        subs.push({
          kind: 'clock',
          userdata,
          clockId: g.dv.getUint32(p + 16, true),
          timeout: g.dv.getBigUint64(p + 24, true),
          abstime: (g.dv.getUint16(p + 40, true) & SUBCLOCK_ABSTIME) !== 0,
        });
      } else if (tag === EVENTTYPE_FD_READ || tag === EVENTTYPE_FD_WRITE) {
        subs.push({ kind: 'fd', userdata, type: tag, fd: g.dv.getUint32(p + 16, true) });
      } else {
        return EINVAL;
      }
    }

    const now = new Map<number, bigint>();
    const readNow = (id: number): bigint => {
      let t = now.get(id);
      if (t === undefined) {
        t = BigInt.asUintN(64, this.nd.clockNs(id));
        now.set(id, t);
      }
      return t;
    };

    const immediate: { index: number; ev: Ev }[] = [];
    const clocks: { index: number; ev: Ev; remaining: bigint }[] = [];
    subs.forEach((s, index) => {
      if (s.kind === 'fd') {
        const open = this.fds.has(s.fd);
        let nbytes = 0n;
        let flags = 0;
        if (open && s.fd === 0 && s.type === EVENTTYPE_FD_READ) {
          const avail = this.stdin.length - this.stdinPos;
          nbytes = BigInt(avail);
          if (avail === 0) flags = EVENTRW_HANGUP;
        }
        immediate.push({ index, ev: { userdata: s.userdata, error: open ? ESUCCESS : EBADF, type: s.type, nbytes, flags } });
        return;
      }
      const ev: Ev = { userdata: s.userdata, error: ESUCCESS, type: EVENTTYPE_CLOCK, nbytes: 0n, flags: 0 };
      if (!isKnownClock(s.clockId)) {
        ev.error = EINVAL;
        immediate.push({ index, ev });
        return;
      }
      let remaining = s.timeout;
      if (s.abstime) {
        const t = readNow(s.clockId);
        remaining = s.timeout > t ? s.timeout - t : 0n;
      }
      clocks.push({ index, ev, remaining });
    });

    let fired: typeof clocks;
    if (immediate.length > 0) {
      fired = clocks.filter((c) => c.remaining === 0n);
    } else {
      let min = clocks[0]!.remaining;
      for (const c of clocks) if (c.remaining < min) min = c.remaining;
      fired = clocks.filter((c) => c.remaining === min);
    }
    const events = [...immediate, ...fired].sort((a, b) => a.index - b.index).map((e) => e.ev);

    const out = this.guest();
    if (!out.ok(outPtr, nsubs * EVENT_SIZE) || !out.ok(neventsPtr, 4)) return EFAULT;
    events.forEach((ev, i) => {
      const p = outPtr + i * EVENT_SIZE;
      out.u8.fill(0, p, p + EVENT_SIZE);
      out.dv.setBigUint64(p, ev.userdata, true);
      out.dv.setUint16(p + 8, ev.error, true);
      out.dv.setUint8(p + 10, ev.type);
      out.dv.setBigUint64(p + 16, ev.nbytes, true);
      out.dv.setUint16(p + 24, ev.flags, true);
    });
    out.dv.setUint32(neventsPtr, events.length, true);
    return ESUCCESS;
  }
}
