/**
 * The state one WASI host holds besides guest memory (wasmtime's `WasiCtx`):
 * options, stdio, the descriptor table, the filesystems, the NIC, and the
 * per-call clock reading. The call modules (calls/*.ts) are functions of it.
 */
import { CLOCK_REALTIME } from './abi.ts';
import { GuestIdle } from './errors.ts';
import { DIR_RIGHTS, FdTable, LISTEN_RIGHTS, RIGHTS_ALL, STDIN_RIGHTS, STDOUT_RIGHTS, type DirFd, type FdEntry } from './fdtable.ts';
import { Guest, encodeCStrings } from './memory.ts';
import { liveNondeterminism, type Nondeterminism } from './nondeterminism.ts';
import { VirtualFs } from './vfs.ts';
import { VirtualNic } from '../nic.ts';

/** How a `WasiHost` is set up. Every field is read once, at construction. */
export interface WasiOptions {
  /** argv including argv[0] */
  args: string[];
  env: Record<string, string>;
  /** bytes available on fd 0, then EOF */
  stdin?: Uint8Array;
  /**
   * Streamed stdin: fd_read on fd 0 calls it with the number of bytes the guest
   * asked for (> 0); it returns at most that many, and an empty array at end
   * of file. Overrides `stdin`. The caller logs what it returns (record) or
   * returns what the log says (replay). poll_oneoff reports fd 0 readable
   * (nbytes 0) in this mode.
   */
  stdinRead?: (maxBytes: number) => Uint8Array;
  /** called synchronously with a copy of the bytes */
  stdout(bytes: Uint8Array): void;
  stderr(bytes: Uint8Array): void;
  /** default liveNondeterminism */
  nondeterminism?: Nondeterminism;
  /** preopened as "/" (fd 3, or 4 after a listening socket) and mutated in place when `preopens` is absent; default an empty VirtualFs */
  fs?: VirtualFs;
  /**
   * Directories preopened in this order, each under its guest name (e.g. "/",
   * "/data", "."): at fds 3, 4, ..., or 4, 5, ... when the guest has a
   * listening socket (it takes fd 3, as in `wasmtime run --tcplisten`).
   * [] means none. Absent: `fs` (or an empty VirtualFs) under "/", as before.
   */
  preopens?: { name: string; fs: VirtualFs }[];
  /**
   * Give the guest the NIC's listening socket, at fd 3, before the preopens
   * (wasmtime's layout: `wasmtime run --tcplisten` numbers its listeners from
   * 3 and the preopened directories after them). Default true.
   */
  listen?: boolean;
  /** the VM's network interface. Default: one that sends nowhere */
  nic?: VirtualNic;
  /**
   * The guest blocks. timeoutNs null (a poll_oneoff with nothing ready and no
   * clock, a blocking accept or recv, `ftvm_io.wait`): true once an interrupt
   * was delivered, false when none ever will (the guest then ends idle,
   * GuestIdle). timeoutNs set (poll_oneoff with a clock subscription and
   * nothing ready): true once an interrupt was delivered, false when timeoutNs
   * nanoseconds passed with none. A live caller really sleeps; a replaying
   * caller answers from the log without sleeping. Default: nothing ever
   * arrives; a timed wait really sleeps (Atomics.wait) and returns false.
   */
  wait?: (timeoutNs: bigint | null) => boolean;
}

/**
 * The listening socket's fd when the guest has one: 3, the first fd after
 * stdio, as `wasmtime run --tcplisten ADDR` gives it (crates/wasi-common and
 * the CLI's run.rs push the listeners before the preopened directories).
 */
export const LISTEN_FD = 3;

/** the longest timed wait one `Atomics.wait` makes (the default `wait`), in ms; longer waits loop */
import { SLEEP_SLICE_MS } from '../../limits.ts';

/** The default `wait`: nothing ever arrives; a timed wait sleeps for real. */
export function defaultWait(timeoutNs: bigint | null): boolean {
  if (timeoutNs === null) return false;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  let leftMs = Number(timeoutNs / 1_000_000n);
  if (timeoutNs % 1_000_000n !== 0n) leftMs++;
  while (leftMs > 0) {
    const slice = Math.min(leftMs, SLEEP_SLICE_MS);
    Atomics.wait(cell, 0, 0, slice);
    leftMs -= slice;
  }
  return false;
}

/** The state of one WASI host. */
export class WasiCtx {
  memory: WebAssembly.Memory | undefined;
  readonly args: { list: Uint8Array[]; size: number };
  readonly environ: { list: Uint8Array[]; size: number };
  /** buffered stdin (when not streamed) */
  readonly stdin: Uint8Array;
  stdinPos = 0;
  /** streamed stdin, or null */
  readonly stdinRead: ((maxBytes: number) => Uint8Array) | null;
  /** streamed stdin: bytes read so far, and whether its end was seen */
  stdinStreamed = 0;
  stdinEof = false;
  readonly nd: Nondeterminism;
  readonly out: (bytes: Uint8Array) => void;
  readonly err: (bytes: Uint8Array) => void;
  /** every preopened filesystem, in preopen order */
  readonly filesystems: VirtualFs[];
  readonly preopens: { name: string; fs: VirtualFs }[];
  readonly fds: FdTable;
  readonly nic: VirtualNic;
  /** the listening socket's fd (LISTEN_FD, 3), or null */
  readonly listenFd: number | null;
  /** the first preopen's fd: 3, or 4 after the listening socket */
  readonly firstPreopenFd: number;
  private readonly block: (timeoutNs: bigint | null) => boolean;
  /** the realtime clock as read once during the current host call (null: not read yet) */
  private callNowNs: bigint | null = null;

  constructor(opts: WasiOptions) {
    this.args = encodeCStrings(opts.args, 'argument');
    const envStrings = Object.entries(opts.env).map(([k, v]) => {
      if (k.includes('=')) throw new TypeError(`WASI environment variable name must not contain '=': ${JSON.stringify(k)}`);
      return `${k}=${v}`;
    });
    this.environ = encodeCStrings(envStrings, 'environment entry');
    this.stdinRead = opts.stdinRead ?? null;
    this.stdin = opts.stdin && !opts.stdinRead ? opts.stdin.slice() : new Uint8Array(0);
    this.out = opts.stdout;
    this.err = opts.stderr;
    this.nd = opts.nondeterminism ?? liveNondeterminism;
    if (opts.preopens) {
      for (const p of opts.preopens) {
        if (p.name.length === 0 || p.name.includes('\0')) throw new TypeError(`WASI preopen name must be non-empty and without NUL: ${JSON.stringify(p.name)}`);
      }
    }
    this.preopens = opts.preopens ? opts.preopens.map((p) => ({ name: p.name, fs: p.fs })) : [{ name: '/', fs: opts.fs ?? new VirtualFs() }];
    this.filesystems = [...new Set(this.preopens.map((p) => p.fs))];
    this.nic = opts.nic ?? new VirtualNic();
    const listen = opts.listen ?? true;
    this.listenFd = listen ? LISTEN_FD : null;
    this.firstPreopenFd = listen ? LISTEN_FD + 1 : 3;
    this.fds = new FdTable(this.firstPreopenFd + this.preopens.length);
    this.block = opts.wait ?? defaultWait;
    this.resetFds();
  }

  /** Stdio, the listening socket and the preopens at their numbers, nothing else open. */
  resetFds(): void {
    this.fds.clear();
    this.fds.set(0, stdio(0));
    this.fds.set(1, stdio(1));
    this.fds.set(2, stdio(2));
    if (this.listenFd !== null) this.fds.set(this.listenFd, { kind: 'listen', flags: 0, base: LISTEN_RIGHTS, inheriting: 0n });
    this.preopens.forEach((p, i) => this.fds.set(this.firstPreopenFd + i, preopenFd(p.fs, p.name)));
  }

  /** A view of guest memory for the current call. Error if bindMemory was not called. */
  guest(): Guest {
    if (!this.memory) throw new Error('WasiHost: bindMemory() must be called before the guest runs');
    return new Guest(this.memory.buffer);
  }

  /** Marks the start of a host call (the per-call clock reading is forgotten). */
  beginCall(): void {
    this.callNowNs = null;
  }

  /** The VM's realtime clock in ns, read through Nondeterminism at most once per host call (file timestamps, *_NOW flags). */
  nowNs(): bigint {
    if (this.callNowNs === null) this.callNowNs = BigInt.asUintN(64, this.nd.clockNs(CLOCK_REALTIME));
    return this.callNowNs;
  }

  /** Blocks until something arrives; a guest nothing will ever wake ends idle (GuestIdle). */
  waitForInput(): void {
    if (!this.block(null)) throw new GuestIdle();
  }

  /** A timed wait: true when an interrupt was delivered, false when timeoutNs passed. */
  waitFor(timeoutNs: bigint): boolean {
    return this.block(timeoutNs);
  }

  /** The index in `filesystems` of a VirtualFs (-1 if not preopened). */
  fsIndex(fs: VirtualFs): number {
    return this.filesystems.indexOf(fs);
  }
}


/** A stdio descriptor with the rights wasmtime gives it. */
export function stdio(stream: 0 | 1 | 2): FdEntry {
  const rights = stream === 0 ? STDIN_RIGHTS : STDOUT_RIGHTS;
  return { kind: 'stdio', stream, flags: 0, base: rights, inheriting: rights };
}

/** A preopened directory's descriptor: the directory rights, every right to inherit. */
export function preopenFd(fs: VirtualFs, name: string): DirFd {
  return { kind: 'dir', node: fs.root, fs, preopen: name, flags: 0, base: DIR_RIGHTS, inheriting: RIGHTS_ALL };
}

