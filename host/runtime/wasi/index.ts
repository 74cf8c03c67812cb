/**
 * A WASI preview1 host for command programs, split by concern as wasmtime
 * splits its preview1 host:
 *
 *   abi.ts             errno, rights, flags, filetypes, struct layouts (named offsets)
 *   memory.ts          guest-memory access (bounds-checked views, iovecs, C strings)
 *   nondeterminism.ts  the one door to clocks and randomness (logged by a recorder)
 *   errors.ts          GuestIdle, WasiExit
 *   vfs.ts             the in-memory filesystem (inodes, hard and symbolic links, times)
 *   resolve.ts         path resolution inside a preopen (`..`, symlinks, ELOOP)
 *   fdtable.ts         the descriptor table and rights per descriptor
 *   ctx.ts             WasiOptions and the host's state (WasiCtx)
 *   calls/args.ts      args_*, environ_*
 *   calls/clocks.ts    clock_*, random_get, sched_yield
 *   calls/files.ts     fd_*
 *   calls/paths.ts     path_*
 *   calls/poll.ts      poll_oneoff
 *   calls/sockets.ts   sock_*
 *   calls/proc.ts      proc_exit, proc_raise
 *   image.ts           snapshot image and the state digest
 *   nic-abi.ts         the ftvm_io NIC functions, beside their documentation
 *
 * All 46 functions of wasi_snapshot_preview1 are provided. Conventions:
 *  - `memory.buffer` is re-read on every call, because the guest may grow it.
 *  - Every guest pointer is bounds-checked before anything is read, written
 *    or sent anywhere; an out-of-range region yields EFAULT with no side
 *    effects (nothing written to memory, no stdout call, no stdin consumed).
 *  - i32 arguments arrive as signed JS numbers and are reinterpreted as u32.
 *  - Every value the guest can observe that is not a pure function of the
 *    options (clocks, randomness, file timestamps, how long a wait lasted) is
 *    obtained through `Nondeterminism` or `WasiOptions.wait`, so a
 *    recorder/replayer can stand in for the live sources.
 *  - Descriptors, in wasmtime's order (`wasmtime run --tcplisten`): 0-2
 *    stdio, then the NIC's listening socket at 3 when the guest has one,
 *    then the preopens (by default one, "/": at 4 after a listener, else at
 *    3), then whatever path_open and sock_accept open (the lowest free
 *    number after those).
 */
import { argsCalls } from './calls/args.ts';
import { clockCalls } from './calls/clocks.ts';
import { fileCalls } from './calls/files.ts';
import { pathCalls } from './calls/paths.ts';
import { pollCalls } from './calls/poll.ts';
import { procCalls } from './calls/proc.ts';
import { socketCalls } from './calls/sockets.ts';
import { WasiCtx, type WasiOptions } from './ctx.ts';
import { deviceImage, deviceState, filesystemsFromImage, restoreDevices, type DeviceImage } from './image.ts';
import { nicCalls } from './nic-abi.ts';
import { VirtualFs } from './vfs.ts';
import type { VirtualNic } from '../nic.ts';

export { WASI_MODULE, Errno, Rights, RIGHTS_ALL } from './abi.ts';
export { liveNondeterminism, type Nondeterminism } from './nondeterminism.ts';
export { GuestIdle, WasiExit } from './errors.ts';
export { VirtualFs, fileHash, vfsPath, type FsImage, type VfsDir, type VfsFile, type VfsNode, type VfsSymlink, type VfsEntry } from './vfs.ts';
export type { WasiOptions } from './ctx.ts';
export type { DeviceImage } from './image.ts';
export { DIR_RIGHTS, FILE_RIGHTS, MAX_FDS } from './fdtable.ts';

/** The listening socket's fd (3; the preopens follow it, as under `wasmtime run --tcplisten`). */
export { LISTEN_FD } from './ctx.ts';

/** The 46 functions of wasi_snapshot_preview1, every one provided. */
const PROVIDED = [
  'args_get',
  'args_sizes_get',
  'environ_get',
  'environ_sizes_get',
  'clock_res_get',
  'clock_time_get',
  'fd_advise',
  'fd_allocate',
  'fd_close',
  'fd_datasync',
  'fd_fdstat_get',
  'fd_fdstat_set_flags',
  'fd_fdstat_set_rights',
  'fd_filestat_get',
  'fd_filestat_set_size',
  'fd_filestat_set_times',
  'fd_pread',
  'fd_prestat_get',
  'fd_prestat_dir_name',
  'fd_pwrite',
  'fd_read',
  'fd_readdir',
  'fd_renumber',
  'fd_seek',
  'fd_sync',
  'fd_tell',
  'fd_write',
  'path_create_directory',
  'path_filestat_get',
  'path_filestat_set_times',
  'path_link',
  'path_open',
  'path_readlink',
  'path_remove_directory',
  'path_rename',
  'path_symlink',
  'path_unlink_file',
  'poll_oneoff',
  'proc_exit',
  'proc_raise',
  'sched_yield',
  'random_get',
  'sock_accept',
  'sock_recv',
  'sock_send',
  'sock_shutdown',
] as const;

type HostFn = (...args: any[]) => number | void;

/**
 * One guest's WASI preview1 host. Build it, pass `imports` under WASI_MODULE
 * (and `nicImports` under ftvm_io), instantiate, call `bindMemory`, run.
 * Throws WasiExit from proc_exit and GuestIdle when the guest waits for
 * something that will never come.
 */
export class WasiHost {
  /** names of the preview1 functions this host provides (all 46) */
  static readonly provided: ReadonlySet<string> = new Set<string>(PROVIDED);

  /** import object entries for WASI_MODULE */
  readonly imports: Record<string, HostFn>;
  /** `ftvm_io` functions of the virtual NIC (see nic-abi.ts) */
  readonly nicImports: Record<'nic_recv' | 'nic_send' | 'nic_close' | 'wait', HostFn>;
  private readonly ctx: WasiCtx;

  /** TypeError for args/env/preopen names the ABI cannot carry (NUL, '=' in a name), RangeError when they exceed u32 sizes. */
  constructor(opts: WasiOptions) {
    this.ctx = new WasiCtx(opts);
    const ctx = this.ctx;
    const table: Record<string, HostFn> = {
      ...argsCalls(ctx),
      ...clockCalls(ctx),
      ...fileCalls(ctx),
      ...pathCalls(ctx),
      ...pollCalls(ctx),
      ...procCalls(),
      ...socketCalls(ctx),
    };
    const imports: Record<string, HostFn> = {};
    for (const name of PROVIDED) {
      const fn = table[name];
      if (!fn) throw new Error(`WasiHost: ${name} has no implementation`);
      // Each call starts with no clock reading (file timestamps read it at most once per call).
      imports[name] = (...args: unknown[]) => {
        ctx.beginCall();
        return fn(...args);
      };
    }
    this.imports = imports;
    this.nicImports = nicCalls(ctx);
  }

  /** The first preopen's filesystem ("/" by default); an empty VirtualFs when there is no preopen. */
  get fs(): VirtualFs {
    return this.ctx.preopens[0]?.fs ?? (this.emptyFs ??= new VirtualFs());
  }
  private emptyFs: VirtualFs | undefined;

  /** The VM's virtual NIC. */
  get nic(): VirtualNic {
    return this.ctx.nic;
  }

  /** The listening socket's fd, or null when the guest has none. */
  get listenFd(): number | null {
    return this.ctx.listenFd;
  }

  /** The devices' whole state, for a VM snapshot. */
  image(): DeviceImage {
    return deviceImage(this.ctx);
  }

  /**
   * A host in the state of a device image, built with the options the imaged
   * host had (the same preopen names and listen choice); `opts.stdin`, `opts.fs`
   * and the preopens' filesystems are replaced by the image's. Error on an
   * image that does not fit.
   */
  static fromImage(opts: WasiOptions, img: DeviceImage): WasiHost {
    const { filesystems, byIno } = filesystemsFromImage(img);
    const names = opts.preopens ? opts.preopens : [{ name: '/', fs: opts.fs ?? null }];
    const originals: unknown[] = [];
    for (const p of names) if (!originals.includes(p.fs ?? p)) originals.push(p.fs ?? p);
    if (originals.length !== filesystems.length) throw new Error(`device image: ${filesystems.length} filesystems for ${originals.length} preopened`);
    const preopens = names.map((p) => ({ name: p.name, fs: filesystems[originals.indexOf(p.fs ?? p)]! }));
    const host = new WasiHost({ ...opts, stdin: img.stdin, fs: undefined, preopens });
    restoreDevices(host.ctx, img, byIno);
    return host;
  }

  /** Must be called after instantiation, before running. */
  bindMemory(memory: WebAssembly.Memory): void {
    this.ctx.memory = memory;
  }

  /** The state of the virtual devices, canonically encoded for a state digest (see image.ts). */
  deviceState(): string {
    return deviceState(this.ctx);
  }
}
