/**
 * A small, self-contained WASI preview1 host for command programs.
 *
 * Scope: stdio (fd 0 from an in-memory buffer, fds 1/2 to callbacks), argv,
 * environ, clocks, randomness, poll_oneoff over clocks and descriptors,
 * proc_exit, and an in-memory filesystem (`VirtualFs`, preopened as fd 3
 * under the name "/"; an empty one when the options give none).
 *
 * Filesystem semantics (see `VirtualFs`):
 *  - Paths are relative to a directory fd; absolute paths and any `..` that
 *    would climb above the preopen (checked lexically, before any lookup) fail
 *    with ENOTCAPABLE. There are no symlinks; lookupflags are validated only.
 *  - New descriptors get the lowest free number >= 4, so the same calls give
 *    the same fds. At most MAX_FDS descriptors are open (EMFILE).
 *  - Rights are accepted and ignored (every fd reports all rights).
 *  - filestat timestamps (atim/mtim/ctim) are always 0, never a real clock;
 *    dev is 0, nlink 1, inode numbers come from the VirtualFs (incremental).
 *    A directory's size is reported as 0.
 *  - fd_readdir lists ".", "..", then the entries sorted by name; the cookie
 *    of an entry is its index + 1 in that order (a directory changed between
 *    calls may therefore skip or repeat entries).
 *  - fd_pwrite writes at the given offset even on an APPEND descriptor.
 *  - An unlinked file stays readable/writable through descriptors already open.
 *  - Reading, writing, seeking or resizing a directory fd gives EISDIR; a
 *    directory fd whose directory was removed resolves no paths (ENOENT).
 *  - Files grow up to `VirtualFs.maxFileSize` (EFBIG beyond); there is no
 *    limit on the total size or the number of files.
 *  - poll_oneoff reports file and directory fds as always ready (nbytes 0).
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
import { createHash, randomFillSync } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { MAX_MESSAGE_BYTES, VirtualNic, type NicImage, type NicSocket } from './nic.ts';

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
  /** preopened as fd 3 ("/") and mutated in place; default an empty VirtualFs */
  fs?: VirtualFs;
  /** the VM's network interface; its listening socket is fd 4. Default: one that sends nowhere */
  nic?: VirtualNic;
  /**
   * Called when the guest blocks (a poll_oneoff with nothing ready and no
   * clock, a blocking accept or recv, `ftvm_io.wait`): delivers at least one
   * interrupt and returns true, or returns false when none will ever come, and
   * the guest then ends idle. Default: nothing ever comes.
   */
  wait?: () => boolean;
}

/** Thrown when the guest blocks and nothing will ever wake it: the run ends idle. */
export class GuestIdle extends Error {
  constructor() {
    super('the guest waits for input and none will come');
    this.name = 'GuestIdle';
  }
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
const EEXIST = 20;
const EFAULT = 21;
const EFBIG = 22;
const EILSEQ = 25;
const EINVAL = 28;
const EISDIR = 31;
const EMFILE = 33;
const ENAMETOOLONG = 37;
const ENOENT = 44;
const ENOTDIR = 54;
const ENOTEMPTY = 55;
const ESPIPE = 70;
const EAGAIN = 6;
const ENOTSOCK = 57;
const ENOTCONN = 53;
const EPIPE = 64;
const ENOTCAPABLE = 76;

// filetype
const FILETYPE_CHARACTER_DEVICE = 2;
const FILETYPE_DIRECTORY = 3;
const FILETYPE_REGULAR_FILE = 4;
const FILETYPE_SOCKET_STREAM = 6;

// oflags
const OFLAGS_CREAT = 1;
const OFLAGS_DIRECTORY = 2;
const OFLAGS_EXCL = 4;
const OFLAGS_TRUNC = 8;
const OFLAGS_ALL = 0xf;
// lookupflags: symlink_follow (there are no symlinks)
const LOOKUP_ALL = 1;
// fdflags
const FDFLAGS_APPEND = 1;
const FDFLAGS_NONBLOCK = 4;
// riflags (sock_recv): RECV_PEEK; RECV_WAITALL is accepted and ignored
const RIFLAGS_PEEK = 1;
// sdflags (sock_shutdown)
const SDFLAGS_RD = 1;
const SDFLAGS_WR = 2;
// whence
const WHENCE_SET = 0;
const WHENCE_CUR = 1;
const WHENCE_END = 2;
// preopentype
const PREOPENTYPE_DIR = 0;

/** the preopened directory's fd and name */
const PREOPEN_FD = 3;
const PREOPEN_NAME = '/';
/** the VM's listening socket on its virtual network */
export const LISTEN_FD = 4;
/** the first fd handed out by path_open and sock_accept */
const FIRST_FREE_FD = 5;
const MAX_FDS = 1024;
const MAX_PATH = 4096;
const MAX_NAME = 255;

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
const PRESTAT_SIZE = 8;
const DIRENT_SIZE = 24;
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
  'fd_filestat_set_size',
  'fd_pread',
  'fd_pwrite',
  'fd_tell',
  'fd_readdir',
  'fd_sync',
  'fd_datasync',
  'path_open',
  'path_filestat_get',
  'path_create_directory',
  'path_remove_directory',
  'path_unlink_file',
  'path_rename',
  'clock_time_get',
  'clock_res_get',
  'random_get',
  'sched_yield',
  'proc_exit',
  'poll_oneoff',
  'sock_accept',
  'sock_recv',
  'sock_send',
  'sock_shutdown',
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

/** An open descriptor: stdio, a regular file (with its offset), a directory, the listening socket or an accepted one. */
type FdEntry =
  | { kind: 'stdio'; flags: number }
  | { kind: 'file'; node: VfsFile; offset: number; flags: number }
  | { kind: 'dir'; node: VfsDir; flags: number; preopen: string | null }
  | { kind: 'listen'; flags: number }
  | { kind: 'sock'; sock: NicSocket; flags: number };

/** A descriptor of the filesystem. */
type FsFd = Extract<FdEntry, { kind: 'file' | 'dir' }>;
const isFs = (f: FdEntry): f is FsFd => f.kind === 'file' || f.kind === 'dir';

/** A resolved path: the directory holding the last component, its name, and the node if it exists. */
interface Resolved {
  /** null when the last component is '.' or '..' (it names a directory that cannot be created or removed by name) */
  parent: VfsDir | null;
  name: string;
  node: VfsNode | undefined;
  /** the path ended in '/' */
  slash: boolean;
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
const isErrno = (x: unknown): x is number => typeof x === 'number';

// ---------------------------------------------------------------------------
// In-memory virtual filesystem

/** A regular file: `data` has spare capacity past `size`, grown as written. */
export interface VfsFile {
  readonly kind: 'file';
  readonly ino: bigint;
  parent: VfsDir | null;
  name: string;
  data: Uint8Array;
  size: number;
  /** cached sha256 (hex) of the contents; null after a change */
  hash: string | null;
}

export interface VfsDir {
  readonly kind: 'dir';
  readonly ino: bigint;
  /** null for the root and for a removed directory */
  parent: VfsDir | null;
  name: string;
  readonly entries: Map<string, VfsNode>;
}

export type VfsNode = VfsFile | VfsDir;

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * An in-memory directory tree, part of a guest VM's state. A `WasiHost`
 * preopens it as fd 3 under the name "/" and mutates it in place (use
 * `clone()` to keep an original). No symlinks, hard links, permissions or
 * timestamps exist (every timestamp reads as 0). Inode numbers are assigned
 * incrementally at creation (the root is 1), so the same sequence of
 * operations always gives the same numbers.
 */
/** A filesystem in a VM snapshot: nodes in an order where every parent precedes its children; the root first. */
export interface FsImage {
  maxFileSize: number;
  nextIno: bigint;
  nodes: { ino: bigint; kind: 'file' | 'dir'; parent: bigint | null; name: string; data: Uint8Array | null }[];
}

/** Everything a WasiHost holds besides guest memory, for a VM snapshot (structured-clonable). */
export interface DeviceImage {
  stdin: Uint8Array;
  stdinPos: number;
  fs: FsImage;
  fds: ({ fd: number; flags: number } & (
    | { kind: 'stdio' | 'listen' }
    | { kind: 'file'; ino: bigint; offset: number }
    | { kind: 'dir'; ino: bigint; preopen: string | null }
    | { kind: 'sock'; conn: number }
  ))[];
  nic: NicImage;
}

export class VirtualFs {
  /** the largest size a file may reach (EFBIG beyond) */
  readonly maxFileSize: number;
  readonly root: VfsDir;
  private nextIno = 1n;

  constructor(opts: { maxFileSize?: number } = {}) {
    this.maxFileSize = opts.maxFileSize ?? 256 * 1024 * 1024;
    this.root = this.newDir(null, '');
  }

  /** Builds a tree from `{ 'a.txt': bytes, 'sub/b.txt': bytes }` (strings are UTF-8 encoded); parent directories are created as needed, a key ending in '/' makes an empty directory. */
  static fromEntries(entries: Record<string, Uint8Array | string>, opts: { maxFileSize?: number } = {}): VirtualFs {
    const fs = new VirtualFs(opts);
    for (const key of Object.keys(entries).sort(byName)) {
      const value = entries[key]!;
      if (key.endsWith('/')) fs.mkdirp(key);
      else fs.writeFile(key, typeof value === 'string' ? new TextEncoder().encode(value) : value);
    }
    return fs;
  }

  /**
   * Loads a host directory recursively (names sorted, so inode numbers are
   * reproducible). Only directories and regular files are copied; symlinks and
   * special files are skipped, so nothing outside `path` is ever read.
   */
  static fromHostDir(path: string, opts: { maxFileSize?: number } = {}): VirtualFs {
    const vfs = new VirtualFs(opts);
    const load = (hostDir: string, dir: VfsDir): void => {
      for (const name of readdirSync(hostDir).sort(byName)) {
        const full = joinPath(hostDir, name);
        const st = lstatSync(full);
        if (st.isDirectory()) {
          const d = vfs.newDir(dir, name);
          dir.entries.set(name, d);
          load(full, d);
        } else if (st.isFile()) {
          const bytes = new Uint8Array(readFileSync(full));
          if (bytes.length > vfs.maxFileSize) throw new RangeError(`${full}: larger than maxFileSize`);
          const f = vfs.newFile(dir, name);
          f.data = bytes;
          f.size = bytes.length;
          dir.entries.set(name, f);
        }
      }
    };
    if (!lstatSync(path).isDirectory()) throw new Error(`${path} is not a directory`);
    load(path, vfs.root);
    return vfs;
  }

  /** A deep copy with the same inode numbers. */
  clone(): VirtualFs {
    const copy = new VirtualFs({ maxFileSize: this.maxFileSize });
    copy.nextIno = this.nextIno;
    const walk = (from: VfsDir, to: VfsDir): void => {
      for (const [name, n] of from.entries) {
        if (n.kind === 'dir') {
          const d: VfsDir = { kind: 'dir', ino: n.ino, parent: to, name, entries: new Map() };
          to.entries.set(name, d);
          walk(n, d);
        } else {
          to.entries.set(name, { kind: 'file', ino: n.ino, parent: to, name, data: n.data.slice(0, n.size), size: n.size, hash: n.hash });
        }
      }
    };
    walk(this.root, copy.root);
    return copy;
  }

  /** @internal */
  newDir(parent: VfsDir | null, name: string): VfsDir {
    return { kind: 'dir', ino: this.nextIno++, parent, name, entries: new Map() };
  }

  /** @internal */
  newFile(parent: VfsDir, name: string): VfsFile {
    return { kind: 'file', ino: this.nextIno++, parent, name, data: new Uint8Array(0), size: 0, hash: null };
  }

  private lookup(path: string): VfsNode | undefined {
    let cur: VfsNode = this.root;
    for (const part of path.split('/').filter((p) => p !== '' && p !== '.')) {
      if (cur.kind !== 'dir') return undefined;
      const next: VfsNode | undefined = cur.entries.get(part);
      if (!next) return undefined;
      cur = next;
    }
    return cur;
  }

  /** Creates the directory `path` and its missing parents ('/'-separated, relative to the root). */
  mkdirp(path: string): VfsDir {
    let cur = this.root;
    for (const part of path.split('/').filter((p) => p !== '' && p !== '.')) {
      if (part === '..') throw new Error(`VirtualFs: '..' not allowed: ${path}`);
      const next = cur.entries.get(part);
      if (next?.kind === 'file') throw new Error(`VirtualFs: ${path}: a file is in the way`);
      if (next) cur = next;
      else {
        const d = this.newDir(cur, part);
        cur.entries.set(part, d);
        cur = d;
      }
    }
    return cur;
  }

  /** Creates or replaces a file (parent directories created as needed). */
  writeFile(path: string, bytes: Uint8Array): void {
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    const name = parts.pop();
    if (!name || name === '..') throw new Error(`VirtualFs: bad file path ${JSON.stringify(path)}`);
    if (bytes.length > this.maxFileSize) throw new RangeError(`VirtualFs: ${path}: larger than maxFileSize`);
    const dir = this.mkdirp(parts.join('/'));
    let f = dir.entries.get(name);
    if (f?.kind === 'dir') throw new Error(`VirtualFs: ${path} is a directory`);
    if (!f) {
      f = this.newFile(dir, name);
      dir.entries.set(name, f);
    }
    f.data = bytes.slice();
    f.size = bytes.length;
    f.hash = null;
  }

  /** A copy of a file's contents, or undefined if `path` is not a file. */
  readFile(path: string): Uint8Array | undefined {
    const n = this.lookup(path);
    return n?.kind === 'file' ? n.data.slice(0, n.size) : undefined;
  }

  /** The sorted entry names of a directory, or undefined if `path` is not a directory. */
  list(path = ''): string[] | undefined {
    const n = this.lookup(path);
    return n?.kind === 'dir' ? [...n.entries.keys()].sort(byName) : undefined;
  }

  /**
   * A canonical encoding of the whole tree for state digests: JSON of the
   * next inode number and every node sorted by path ('.' is the root):
   * `[path, 'd', ino]` or `[path, 'f', ino, size, sha256hex]`.
   */
  /**
   * Every node reachable from the root plus `extra` (files no longer linked
   * but still open), with inode numbers and the next one, for a VM snapshot.
   */
  image(extra: VfsNode[] = []): FsImage {
    const nodes: FsImage['nodes'] = [];
    const seen = new Set<bigint>();
    const add = (n: VfsNode): void => {
      if (seen.has(n.ino)) return;
      seen.add(n.ino);
      nodes.push({
        ino: n.ino,
        kind: n.kind,
        parent: n.parent ? n.parent.ino : null,
        name: n.name,
        data: n.kind === 'file' ? n.data.slice(0, n.size) : null,
      });
      if (n.kind === 'dir') for (const c of n.entries.values()) add(c);
    };
    add(this.root);
    for (const n of extra) add(n);
    return { maxFileSize: this.maxFileSize, nextIno: this.nextIno, nodes };
  }

  /** The filesystem an image describes, and its nodes by inode number. */
  static fromImage(img: FsImage): { fs: VirtualFs; byIno: Map<bigint, VfsNode> } {
    const fs = new VirtualFs({ maxFileSize: img.maxFileSize });
    const byIno = new Map<bigint, VfsNode>([[fs.root.ino, fs.root]]);
    const root = img.nodes[0];
    if (!root || root.kind !== 'dir' || root.ino !== fs.root.ino) throw new Error('filesystem image: the first node must be the root');
    for (const n of img.nodes.slice(1)) {
      const node: VfsNode =
        n.kind === 'dir'
          ? { kind: 'dir', ino: n.ino, parent: null, name: n.name, entries: new Map() }
          : { kind: 'file', ino: n.ino, parent: null, name: n.name, data: n.data ?? new Uint8Array(0), size: n.data?.length ?? 0, hash: null };
      byIno.set(n.ino, node);
    }
    for (const n of img.nodes.slice(1)) {
      if (n.parent === null) continue;
      const parent = byIno.get(n.parent);
      const node = byIno.get(n.ino)!;
      if (!parent || parent.kind !== 'dir') throw new Error(`filesystem image: node ${n.ino} has no directory ${n.parent}`);
      node.parent = parent;
      parent.entries.set(n.name, node);
    }
    fs.nextIno = img.nextIno;
    return { fs, byIno };
  }

  snapshot(): string {
    const rows: (string | number)[][] = [];
    const walk = (dir: VfsDir, prefix: string): void => {
      rows.push([prefix === '' ? '.' : prefix, 'd', Number(dir.ino)]);
      for (const [name, n] of dir.entries) {
        const p = prefix === '' ? name : `${prefix}/${name}`;
        if (n.kind === 'dir') walk(n, p);
        else rows.push([p, 'f', Number(n.ino), n.size, fileHash(n)]);
      }
    };
    walk(this.root, '');
    rows.sort((a, b) => byName(a[0] as string, b[0] as string));
    return JSON.stringify({ nextIno: Number(this.nextIno), nodes: rows });
  }
}

/** sha256 (hex) of a file's contents, cached until the next change */
export function fileHash(f: VfsFile): string {
  if (f.hash === null) f.hash = createHash('sha256').update(f.data.subarray(0, f.size)).digest('hex');
  return f.hash;
}

/** The path of a node from the root ('.' for the root), or null if it is no longer linked into the tree. */
export function vfsPath(fs: VirtualFs, n: VfsNode): string | null {
  const parts: string[] = [];
  let cur: VfsNode = n;
  while (cur !== fs.root) {
    if (!cur.parent || cur.parent.entries.get(cur.name) !== cur) return null;
    parts.push(cur.name);
    cur = cur.parent;
  }
  return parts.length === 0 ? '.' : parts.reverse().join('/');
}

/** Resizes a file's contents to `size` bytes (zero-filled when growing), keeping spare capacity up to `limit`. Bytes past `size` are always 0. */
function resizeFile(f: VfsFile, size: number, limit: number): void {
  if (size > f.data.length) {
    const cap = Math.max(size, Math.min(Math.max(f.data.length * 2, 64), limit));
    const grown = new Uint8Array(cap);
    grown.set(f.data.subarray(0, f.size));
    f.data = grown;
  } else if (size < f.size) {
    f.data.fill(0, size, f.size);
  }
  f.size = size;
  f.hash = null;
}

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

function fileType(f: FdEntry): number {
  switch (f.kind) {
    case 'stdio':
      return FILETYPE_CHARACTER_DEVICE;
    case 'dir':
      return FILETYPE_DIRECTORY;
    case 'file':
      return FILETYPE_REGULAR_FILE;
    default:
      return FILETYPE_SOCKET_STREAM;
  }
}

/** filestat: dev 0, the inode, the type, nlink 1, the size (0 for a directory), and atim/mtim/ctim always 0 (no clock is read). */
function writeFilestat(g: Guest, ptr: number, node: VfsNode): void {
  g.u8.fill(0, ptr, ptr + FILESTAT_SIZE);
  g.dv.setBigUint64(ptr + 8, node.ino, true);
  g.dv.setUint8(ptr + 16, node.kind === 'dir' ? FILETYPE_DIRECTORY : FILETYPE_REGULAR_FILE);
  g.dv.setBigUint64(ptr + 24, 1n, true);
  g.dv.setBigUint64(ptr + 32, node.kind === 'file' ? BigInt(node.size) : 0n, true);
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
  /** the filesystem preopened as fd 3 */
  readonly fs: VirtualFs;
  /** open descriptors: stdio, the preopen, the listening socket, and whatever path_open and sock_accept opened; any can be closed */
  private readonly fds = new Map<number, FdEntry>();
  /** the VM's virtual NIC */
  readonly nic: VirtualNic;
  private readonly block: () => boolean;
  /** `ftvm_io` functions of the virtual NIC (see events.ts) */
  readonly nicImports: Record<'nic_recv' | 'nic_send' | 'nic_close' | 'wait', HostFn>;

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
    this.fs = opts.fs ?? new VirtualFs();
    for (const fd of [0, 1, 2]) this.fds.set(fd, { kind: 'stdio', flags: 0 });
    this.fds.set(PREOPEN_FD, { kind: 'dir', node: this.fs.root, flags: 0, preopen: PREOPEN_NAME });
    this.nic = opts.nic ?? new VirtualNic();
    this.fds.set(LISTEN_FD, { kind: 'listen', flags: 0 });
    this.block = opts.wait ?? (() => false);
    this.nicImports = {
      nic_recv: (connPtr: number, buf: number, len: number) => this.nicRecv(u32(connPtr), u32(buf), u32(len)),
      nic_send: (conn: number, buf: number, len: number) => this.nicSend(u32(conn), u32(buf), u32(len)),
      nic_close: (conn: number) => {
        this.nic.close(u32(conn));
        return 0;
      },
      wait: () => this.waitForInput(),
    };

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
      fd_close: (fd: number) => this.fdClose(u32(fd)),
      fd_seek: (fd: number, offset: bigint, whence: number, newOffsetPtr: number) =>
        this.fdSeek(u32(fd), offset, u32(whence), u32(newOffsetPtr)),
      fd_tell: (fd: number, ptr: number) => this.fdSeek(u32(fd), 0n, WHENCE_CUR, u32(ptr)),
      fd_pread: (fd: number, iovs: number, iovsLen: number, offset: bigint, nread: number) =>
        this.fdPread(u32(fd), u32(iovs), u32(iovsLen), BigInt.asUintN(64, offset), u32(nread)),
      fd_pwrite: (fd: number, iovs: number, iovsLen: number, offset: bigint, nwritten: number) =>
        this.fdPwrite(u32(fd), u32(iovs), u32(iovsLen), BigInt.asUintN(64, offset), u32(nwritten)),
      fd_filestat_set_size: (fd: number, size: bigint) => this.fdFilestatSetSize(u32(fd), BigInt.asUintN(64, size)),
      fd_readdir: (fd: number, buf: number, bufLen: number, cookie: bigint, bufused: number) =>
        this.fdReaddir(u32(fd), u32(buf), u32(bufLen), BigInt.asUintN(64, cookie), u32(bufused)),
      // Everything lives in memory: there is nothing to flush.
      fd_sync: (fd: number) => (this.fds.has(u32(fd)) ? ESUCCESS : EBADF),
      fd_datasync: (fd: number) => (this.fds.has(u32(fd)) ? ESUCCESS : EBADF),
      fd_fdstat_get: (fd: number, ptr: number) => this.fdFdstatGet(u32(fd), u32(ptr)),
      fd_fdstat_set_flags: (fd: number, flags: number) => {
        const f = this.fds.get(u32(fd));
        if (!f) return EBADF;
        if ((flags & 0xffff & ~FDFLAGS_ALL) !== 0) return EINVAL;
        f.flags = flags & FDFLAGS_ALL;
        return ESUCCESS;
      },
      fd_prestat_get: (fd: number, ptr: number) => this.fdPrestatGet(u32(fd), u32(ptr)),
      fd_prestat_dir_name: (fd: number, path: number, len: number) => this.fdPrestatDirName(u32(fd), u32(path), u32(len)),
      fd_filestat_get: (fd: number, ptr: number) => this.fdFilestatGet(u32(fd), u32(ptr)),
      path_open: (
        dirfd: number,
        dirflags: number,
        path: number,
        pathLen: number,
        oflags: number,
        _rightsBase: bigint,
        _rightsInheriting: bigint,
        fdflags: number,
        fdPtr: number,
      ) => this.pathOpen(u32(dirfd), u32(dirflags), u32(path), u32(pathLen), u32(oflags), u32(fdflags), u32(fdPtr)),
      path_filestat_get: (fd: number, flags: number, path: number, pathLen: number, ptr: number) =>
        this.pathFilestatGet(u32(fd), u32(flags), u32(path), u32(pathLen), u32(ptr)),
      path_create_directory: (fd: number, path: number, pathLen: number) =>
        this.pathCreateDirectory(u32(fd), u32(path), u32(pathLen)),
      path_remove_directory: (fd: number, path: number, pathLen: number) =>
        this.pathRemove(u32(fd), u32(path), u32(pathLen), 'dir'),
      path_unlink_file: (fd: number, path: number, pathLen: number) => this.pathRemove(u32(fd), u32(path), u32(pathLen), 'file'),
      path_rename: (fd: number, oldPath: number, oldLen: number, newFd: number, newPath: number, newLen: number) =>
        this.pathRename(u32(fd), u32(oldPath), u32(oldLen), u32(newFd), u32(newPath), u32(newLen)),
      clock_time_get: (id: number, _precision: bigint, ptr: number) => this.clockTimeGet(u32(id), u32(ptr)),
      clock_res_get: (id: number, ptr: number) => this.clockResGet(u32(id), u32(ptr)),
      random_get: (buf: number, len: number) => this.randomGet(u32(buf), u32(len)),
      sched_yield: () => ESUCCESS,
      proc_exit: (code: number): void => {
        throw new WasiExit(u32(code));
      },
      poll_oneoff: (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number) =>
        this.pollOneoff(u32(inPtr), u32(outPtr), u32(nsubs), u32(neventsPtr)),
      sock_accept: (fd: number, flags: number, fdPtr: number) => this.sockAccept(u32(fd), u32(flags), u32(fdPtr)),
      sock_recv: (fd: number, iovs: number, iovsLen: number, riFlags: number, datalenPtr: number, flagsPtr: number) =>
        this.sockRecv(u32(fd), u32(iovs), u32(iovsLen), u32(riFlags), u32(datalenPtr), u32(flagsPtr)),
      sock_send: (fd: number, iovs: number, iovsLen: number, _siFlags: number, datalenPtr: number) =>
        this.sockSend(u32(fd), u32(iovs), u32(iovsLen), u32(datalenPtr)),
      sock_shutdown: (fd: number, how: number) => this.sockShutdown(u32(fd), u32(how)),
    };
    this.imports = table;
  }

  /** The devices' whole state, for a VM snapshot. */
  image(): DeviceImage {
    const orphans: VfsNode[] = [];
    const fds: DeviceImage['fds'] = [...this.fds.entries()]
      .sort(([a], [b]) => a - b)
      .map(([fd, f]) => {
        switch (f.kind) {
          case 'stdio':
          case 'listen':
            return { fd, flags: f.flags, kind: f.kind };
          case 'sock':
            return { fd, flags: f.flags, kind: 'sock', conn: f.sock.conn };
          case 'file':
            orphans.push(f.node);
            return { fd, flags: f.flags, kind: 'file', ino: f.node.ino, offset: f.offset };
          case 'dir':
            orphans.push(f.node);
            return { fd, flags: f.flags, kind: 'dir', ino: f.node.ino, preopen: f.preopen };
        }
      });
    return { stdin: this.stdin.slice(), stdinPos: this.stdinPos, fs: this.fs.image(orphans), fds, nic: this.nic.image() };
  }

  /** Puts the devices in the state of an image (taken from a host built with the same options). */
  private restore(img: DeviceImage, byIno: Map<bigint, VfsNode>): void {
    this.stdinPos = img.stdinPos;
    this.nic.restore(img.nic);
    this.fds.clear();
    for (const f of img.fds) {
      switch (f.kind) {
        case 'stdio':
        case 'listen':
          this.fds.set(f.fd, { kind: f.kind, flags: f.flags });
          break;
        case 'sock': {
          const sock = this.nic.socket(f.conn);
          if (!sock) throw new Error(`device image: fd ${f.fd} names connection ${f.conn}, which has no socket`);
          this.fds.set(f.fd, { kind: 'sock', sock, flags: f.flags });
          break;
        }
        case 'file': {
          const node = byIno.get(f.ino);
          if (node?.kind !== 'file') throw new Error(`device image: fd ${f.fd} names inode ${f.ino}, which is not a file`);
          this.fds.set(f.fd, { kind: 'file', node, offset: f.offset, flags: f.flags });
          break;
        }
        case 'dir': {
          const node = byIno.get(f.ino);
          if (node?.kind !== 'dir') throw new Error(`device image: fd ${f.fd} names inode ${f.ino}, which is not a directory`);
          this.fds.set(f.fd, { kind: 'dir', node, flags: f.flags, preopen: f.preopen });
          break;
        }
      }
    }
  }

  /** A host in the state of a device image; `opts.stdin` and `opts.fs` are ignored (the image has both). */
  static fromImage(opts: WasiOptions, img: DeviceImage): WasiHost {
    const { fs, byIno } = VirtualFs.fromImage(img.fs);
    const host = new WasiHost({ ...opts, stdin: img.stdin, fs });
    host.restore(img, byIno);
    return host;
  }

  /** must be called after instantiation, before running */
  bindMemory(memory: WebAssembly.Memory): void {
    this.memory = memory;
  }

  /**
   * The state of the virtual devices, canonically encoded for a state digest:
   * stdin position, every open descriptor in fd order (kind, path, inode,
   * offset, flags; for a file no longer linked into the tree, its size and
   * sha256 instead of a path) and the filesystem's `snapshot()`.
   */
  deviceState(): string {
    const fds = [...this.fds.entries()]
      .sort(([a], [b]) => a - b)
      .map(([fd, f]) => {
        if (f.kind === 'stdio' || f.kind === 'listen') return [fd, f.kind, f.flags];
        if (f.kind === 'sock') return [fd, 'sock', f.sock.conn, f.flags];
        const path = vfsPath(this.fs, f.node);
        const where = path ?? (f.node.kind === 'file' ? `(unlinked ${f.node.size} ${fileHash(f.node)})` : '(removed)');
        return f.kind === 'file'
          ? [fd, 'file', where, Number(f.node.ino), f.offset, f.flags]
          : [fd, 'dir', where, Number(f.node.ino), f.preopen, f.flags];
      });
    return JSON.stringify({ stdinPos: this.stdinPos, stdinBytes: this.stdin.length, fds, fs: this.fs.snapshot(), nic: this.nic.state() });
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
    const f = this.fds.get(fd);
    if (f?.kind === 'sock' || f?.kind === 'listen') return this.sockSend(fd, iovs, iovsLen, nwrittenPtr);
    if (f && f.kind !== 'stdio') return this.fileWrite(f, iovs, iovsLen, null, nwrittenPtr);
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
    const f = this.fds.get(fd);
    if (f?.kind === 'sock' || f?.kind === 'listen') return this.sockRead(fd, iovs, iovsLen, 0, nreadPtr, null);
    if (f && f.kind !== 'stdio') return this.fileRead(f, iovs, iovsLen, null, nreadPtr);
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
    g.dv.setUint8(ptr, fileType(f));
    g.dv.setUint16(ptr + 2, f.flags, true);
    g.dv.setBigUint64(ptr + 8, RIGHTS_ALL, true);
    g.dv.setBigUint64(ptr + 16, RIGHTS_ALL, true);
    return ESUCCESS;
  }

  private fdFilestatGet(fd: number, ptr: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    const g = this.guest();
    if (!g.ok(ptr, FILESTAT_SIZE)) return EFAULT;
    if (!isFs(f)) {
      // dev, ino, nlink, size and the timestamps are all reported as 0.
      g.u8.fill(0, ptr, ptr + FILESTAT_SIZE);
      g.dv.setUint8(ptr + 16, fileType(f));
    } else {
      writeFilestat(g, ptr, f.node);
    }
    return ESUCCESS;
  }

  // ---- filesystem ----

  private fdPrestatGet(fd: number, ptr: number): number {
    const f = this.fds.get(fd);
    if (!f || f.kind !== 'dir' || f.preopen === null) return EBADF;
    const g = this.guest();
    if (!g.ok(ptr, PRESTAT_SIZE)) return EFAULT;
    g.u8.fill(0, ptr, ptr + PRESTAT_SIZE);
    g.dv.setUint8(ptr, PREOPENTYPE_DIR);
    g.dv.setUint32(ptr + 4, new TextEncoder().encode(f.preopen).length, true);
    return ESUCCESS;
  }

  private fdPrestatDirName(fd: number, path: number, len: number): number {
    const f = this.fds.get(fd);
    if (!f || f.kind !== 'dir' || f.preopen === null) return EBADF;
    const name = new TextEncoder().encode(f.preopen);
    const g = this.guest();
    if (!g.ok(path, len)) return EFAULT;
    if (len < name.length) return ENAMETOOLONG;
    g.u8.set(name, path);
    return ESUCCESS;
  }

  /** The lowest free fd >= FIRST_FREE_FD, or EMFILE. */
  private allocFd(): number {
    if (this.fds.size >= MAX_FDS) return -EMFILE;
    let fd = FIRST_FREE_FD;
    while (this.fds.has(fd)) fd++;
    return fd;
  }

  /** The directory a path is resolved against: EBADF if not open, ENOTDIR for a file, ENOTCAPABLE for stdio. */
  private dirOf(fd: number): VfsDir | number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (f.kind === 'stdio' || f.kind === 'listen' || f.kind === 'sock') return ENOTCAPABLE;
    if (f.kind === 'file') return ENOTDIR;
    return f.node;
  }

  /** Reads and decodes a guest path (the region must already be checked). */
  private readPath(g: Guest, ptr: number, len: number): string | number {
    if (len === 0) return ENOENT;
    if (len > MAX_PATH) return ENAMETOOLONG;
    let s: string;
    try {
      s = new TextDecoder('utf-8', { fatal: true }).decode(g.u8.subarray(ptr, ptr + len));
    } catch {
      return EILSEQ;
    }
    if (s.includes('\0')) return EINVAL;
    return s;
  }

  /**
   * Resolves `path` against `start`. Absolute paths, and any `..` that climbs
   * above the preopen root (checked lexically first, so the answer does not
   * depend on what exists), give ENOTCAPABLE.
   */
  private resolve(start: VfsDir, path: string): Resolved | number {
    if (path.startsWith('/')) return ENOTCAPABLE;
    const parts = path.split('/').filter((p) => p !== '');
    const slash = path.endsWith('/');
    let depth = 0;
    for (let d: VfsDir | null = start; d && d !== this.fs.root; d = d.parent) depth++;
    for (const p of parts) {
      if (Buffer.byteLength(p) > MAX_NAME) return ENAMETOOLONG;
      if (p === '..') {
        if (--depth < 0) return ENOTCAPABLE;
      } else if (p !== '.') depth++;
    }
    // a directory fd whose directory was removed resolves nothing
    if (start !== this.fs.root && vfsPath(this.fs, start) === null) return ENOENT;
    let cur: VfsDir = start;
    for (let i = 0; i < parts.length - 1; i++) {
      const p = parts[i]!;
      if (p === '.') continue;
      if (p === '..') {
        if (!cur.parent) return ENOENT;
        cur = cur.parent;
        continue;
      }
      const next = cur.entries.get(p);
      if (!next) return ENOENT;
      if (next.kind !== 'dir') return ENOTDIR;
      cur = next;
    }
    const last = parts[parts.length - 1]!;
    if (last === '.') return { parent: null, name: last, node: cur, slash };
    if (last === '..') return cur.parent ? { parent: null, name: last, node: cur.parent, slash } : ENOENT;
    return { parent: cur, name: last, node: cur.entries.get(last), slash };
  }

  /** Checks and reads a path argument and resolves it against a directory fd. */
  private lookupPath(g: Guest, fd: number, ptr: number, len: number): Resolved | number {
    const dir = this.dirOf(fd);
    if (isErrno(dir)) return dir;
    const path = this.readPath(g, ptr, len);
    if (isErrno(path)) return path;
    return this.resolve(dir, path);
  }

  private pathOpen(dirfd: number, dirflags: number, path: number, pathLen: number, oflags: number, fdflags: number, fdPtr: number): number {
    const g = this.guest();
    if (!g.ok(path, pathLen) || !g.ok(fdPtr, 4)) return EFAULT;
    if ((dirflags & ~LOOKUP_ALL) !== 0 || (oflags & 0xffff & ~OFLAGS_ALL) !== 0 || (fdflags & 0xffff & ~FDFLAGS_ALL) !== 0) {
      return this.fds.has(dirfd) ? EINVAL : EBADF;
    }
    const r = this.lookupPath(g, dirfd, path, pathLen);
    if (isErrno(r)) return r;
    const fd = this.allocFd();
    if (fd < 0) return -fd;
    const flags = fdflags & FDFLAGS_ALL;
    let node = r.node;
    if (node) {
      if ((oflags & OFLAGS_CREAT) !== 0 && (oflags & OFLAGS_EXCL) !== 0) return EEXIST;
      if (node.kind === 'file') {
        if ((oflags & OFLAGS_DIRECTORY) !== 0 || r.slash) return ENOTDIR;
        if ((oflags & OFLAGS_TRUNC) !== 0) resizeFile(node, 0, this.fs.maxFileSize);
      } else if ((oflags & (OFLAGS_TRUNC | OFLAGS_CREAT)) !== 0) {
        return EISDIR;
      }
    } else {
      if ((oflags & OFLAGS_CREAT) === 0) return ENOENT;
      if ((oflags & OFLAGS_DIRECTORY) !== 0) return EINVAL;
      if (r.slash) return EISDIR;
      const parent = r.parent!;
      node = this.fs.newFile(parent, r.name);
      parent.entries.set(r.name, node);
    }
    this.fds.set(fd, node.kind === 'file' ? { kind: 'file', node, offset: 0, flags } : { kind: 'dir', node, flags, preopen: null });
    g.dv.setUint32(fdPtr, fd, true);
    return ESUCCESS;
  }

  /** Reads a file's bytes at `at` (or the fd's offset, advancing it) into the iovecs. */
  private fileRead(f: FsFd, iovs: number, iovsLen: number, at: bigint | null, nreadPtr: number): number {
    const g = this.guest();
    const list = this.readIovecs(g, iovs, iovsLen);
    if (!list || !g.ok(nreadPtr, 4)) return EFAULT;
    if (f.kind === 'dir') return EISDIR;
    const file = f.node;
    let pos = at === null ? f.offset : at > BigInt(file.size) ? file.size : Number(at);
    let n = 0;
    for (const v of list) {
      const take = Math.max(0, Math.min(file.size - pos, v.len));
      if (take === 0) break;
      g.u8.set(file.data.subarray(pos, pos + take), v.ptr);
      pos += take;
      n += take;
    }
    if (at === null) f.offset = pos;
    g.dv.setUint32(nreadPtr, n, true);
    return ESUCCESS;
  }

  /** Writes the iovecs into a file at `at` (or the fd's offset / the end for APPEND, advancing it). */
  private fileWrite(f: FsFd, iovs: number, iovsLen: number, at: bigint | null, nwrittenPtr: number): number {
    const g = this.guest();
    const list = this.readIovecs(g, iovs, iovsLen);
    if (!list || !g.ok(nwrittenPtr, 4)) return EFAULT;
    if (f.kind === 'dir') return EISDIR;
    const file = f.node;
    let total = 0;
    for (const v of list) total += v.len;
    if (total > U32_MAX) return EINVAL;
    const start = at !== null ? at : BigInt((f.flags & FDFLAGS_APPEND) !== 0 ? file.size : f.offset);
    if (start + BigInt(total) > BigInt(this.fs.maxFileSize)) return EFBIG;
    let pos = Number(start);
    if (total > 0) {
      if (pos + total > file.size) resizeFile(file, pos + total, this.fs.maxFileSize);
      for (const v of list) {
        file.data.set(g.u8.subarray(v.ptr, v.ptr + v.len), pos);
        pos += v.len;
      }
      file.hash = null;
    }
    if (at === null) f.offset = pos;
    g.dv.setUint32(nwrittenPtr, total, true);
    return ESUCCESS;
  }

  private fdPread(fd: number, iovs: number, iovsLen: number, offset: bigint, nreadPtr: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (!isFs(f)) return ESPIPE;
    return this.fileRead(f, iovs, iovsLen, offset, nreadPtr);
  }

  private fdPwrite(fd: number, iovs: number, iovsLen: number, offset: bigint, nwrittenPtr: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (!isFs(f)) return ESPIPE;
    return this.fileWrite(f, iovs, iovsLen, offset, nwrittenPtr);
  }

  /** fd_seek and fd_tell (which is a seek by 0 from CUR): offsets beyond the end are allowed. */
  private fdSeek(fd: number, offset: bigint, whence: number, newOffsetPtr: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (!isFs(f)) return ESPIPE;
    const g = this.guest();
    if (!g.ok(newOffsetPtr, 8)) return EFAULT;
    if (f.kind === 'dir') return EISDIR;
    const delta = BigInt.asIntN(64, offset);
    let base: number;
    if ((whence & 0xff) === WHENCE_SET) base = 0;
    else if ((whence & 0xff) === WHENCE_CUR) base = f.offset;
    else if ((whence & 0xff) === WHENCE_END) base = f.node.size;
    else return EINVAL;
    const next = BigInt(base) + delta;
    if (next < 0n || next > BigInt(Number.MAX_SAFE_INTEGER)) return EINVAL;
    f.offset = Number(next);
    g.dv.setBigUint64(newOffsetPtr, next, true);
    return ESUCCESS;
  }

  private fdFilestatSetSize(fd: number, size: bigint): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (f.kind === 'dir') return EISDIR;
    if (!isFs(f)) return EINVAL;
    if (size > BigInt(this.fs.maxFileSize)) return EFBIG;
    resizeFile(f.node, Number(size), this.fs.maxFileSize);
    return ESUCCESS;
  }

  private fdReaddir(fd: number, buf: number, bufLen: number, cookie: bigint, bufusedPtr: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (f.kind !== 'dir') return ENOTDIR;
    const g = this.guest();
    if (!g.ok(buf, bufLen) || !g.ok(bufusedPtr, 4)) return EFAULT;
    const dir = f.node;
    const names = [...dir.entries.keys()].sort(byName);
    const list: [string, VfsNode][] = [
      ['.', dir],
      ['..', dir.parent ?? dir],
      ...names.map((n): [string, VfsNode] => [n, dir.entries.get(n)!]),
    ];
    const enc = new TextEncoder();
    // Serialize entries from the cookie on, copying the part that fits (the last entry truncated) straight into the checked buffer.
    let used = 0;
    for (let i = cookie > BigInt(list.length) ? list.length : Number(cookie); i < list.length && used < bufLen; i++) {
      const [name, node] = list[i]!;
      const nameBytes = enc.encode(name);
      const ent = new Uint8Array(DIRENT_SIZE + nameBytes.length);
      const edv = new DataView(ent.buffer);
      edv.setBigUint64(0, BigInt(i + 1), true);
      edv.setBigUint64(8, node.ino, true);
      edv.setUint32(16, nameBytes.length, true);
      edv.setUint8(20, node.kind === 'dir' ? FILETYPE_DIRECTORY : FILETYPE_REGULAR_FILE);
      ent.set(nameBytes, DIRENT_SIZE);
      const take = Math.min(ent.length, bufLen - used);
      g.u8.set(ent.subarray(0, take), buf + used);
      used += take;
    }
    g.dv.setUint32(bufusedPtr, used, true);
    return ESUCCESS;
  }

  private pathFilestatGet(fd: number, flags: number, path: number, pathLen: number, ptr: number): number {
    const g = this.guest();
    if (!g.ok(path, pathLen) || !g.ok(ptr, FILESTAT_SIZE)) return EFAULT;
    if ((flags & ~LOOKUP_ALL) !== 0) return this.fds.has(fd) ? EINVAL : EBADF;
    const r = this.lookupPath(g, fd, path, pathLen);
    if (isErrno(r)) return r;
    if (!r.node) return ENOENT;
    if (r.slash && r.node.kind !== 'dir') return ENOTDIR;
    writeFilestat(g, ptr, r.node);
    return ESUCCESS;
  }

  private pathCreateDirectory(fd: number, path: number, pathLen: number): number {
    const g = this.guest();
    if (!g.ok(path, pathLen)) return EFAULT;
    const r = this.lookupPath(g, fd, path, pathLen);
    if (isErrno(r)) return r;
    if (r.node || !r.parent) return EEXIST;
    r.parent.entries.set(r.name, this.fs.newDir(r.parent, r.name));
    return ESUCCESS;
  }

  /** path_remove_directory (want 'dir') and path_unlink_file (want 'file') */
  private pathRemove(fd: number, path: number, pathLen: number, want: 'dir' | 'file'): number {
    const g = this.guest();
    if (!g.ok(path, pathLen)) return EFAULT;
    const r = this.lookupPath(g, fd, path, pathLen);
    if (isErrno(r)) return r;
    const node = r.node;
    if (!node) return ENOENT;
    if (want === 'dir') {
      if (node.kind !== 'dir') return ENOTDIR;
      if (!r.parent || node === this.fs.root) return EINVAL; // '.', '..' or the preopen itself
      if (node.entries.size > 0) return ENOTEMPTY;
    } else {
      if (node.kind === 'dir') return EISDIR;
      if (r.slash) return ENOTDIR;
    }
    r.parent!.entries.delete(r.name);
    node.parent = null;
    return ESUCCESS;
  }

  private pathRename(fd: number, oldPath: number, oldLen: number, newFd: number, newPath: number, newLen: number): number {
    const g = this.guest();
    if (!g.ok(oldPath, oldLen) || !g.ok(newPath, newLen)) return EFAULT;
    const from = this.lookupPath(g, fd, oldPath, oldLen);
    if (isErrno(from)) return from;
    const to = this.lookupPath(g, newFd, newPath, newLen);
    if (isErrno(to)) return to;
    const node = from.node;
    if (!node) return ENOENT;
    if (!from.parent || !to.parent || node === this.fs.root) return EINVAL; // '.' or '..' at either end
    if (node.kind === 'file' && (from.slash || to.slash)) return ENOTDIR;
    const target = to.node;
    if (target === node) return ESUCCESS;
    if (node.kind === 'dir') {
      // not into itself or its own subtree
      for (let d: VfsDir | null = to.parent; d; d = d.parent) if (d === node) return EINVAL;
    }
    if (target) {
      if (node.kind === 'dir' && target.kind !== 'dir') return ENOTDIR;
      if (node.kind === 'file' && target.kind === 'dir') return EISDIR;
      if (target.kind === 'dir' && target.entries.size > 0) return ENOTEMPTY;
      target.parent = null;
    }
    from.parent.entries.delete(from.name);
    to.parent.entries.set(to.name, node);
    node.parent = to.parent;
    node.name = to.name;
    return ESUCCESS;
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

  // ---- the virtual network ----

  /** Blocks until something arrives; a guest nothing will ever wake ends idle. */
  private waitForInput(): void {
    if (!this.block()) throw new GuestIdle();
  }

  private fdClose(fd: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    this.fds.delete(fd);
    if (f.kind === 'sock') this.nic.close(f.sock.conn);
    return ESUCCESS;
  }

  /** ftvm_io.nic_recv: >= 0 the message's length (0: the peer closed), -1 nothing queued, -2 buffer too small, -3 bad pointer. */
  private nicRecv(connPtr: number, buf: number, len: number): number {
    const g = this.guest();
    if (!g.ok(connPtr, 4) || !g.ok(buf, len)) return -3;
    const size = this.nic.peekSize();
    if (size === null) return -1;
    if (size > len) return -2;
    const m = this.nic.take()!;
    g.u8.set(m.bytes, buf);
    g.dv.setUint32(connPtr, m.conn, true);
    return m.bytes.length;
  }

  /** ftvm_io.nic_send: 0 sent, -2 empty or larger than MAX_MESSAGE_BYTES, -3 bad pointer. */
  private nicSend(conn: number, buf: number, len: number): number {
    const g = this.guest();
    if (!g.ok(buf, len)) return -3;
    if (len === 0 || len > MAX_MESSAGE_BYTES) return -2;
    this.nic.emit(conn, g.u8.slice(buf, buf + len));
    return 0;
  }

  private sockAccept(fd: number, flags: number, fdPtr: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (f.kind !== 'listen') return ENOTSOCK;
    if ((flags & 0xffff & ~FDFLAGS_ALL) !== 0) return EINVAL;
    if (!this.guest().ok(fdPtr, 4)) return EFAULT;
    while (this.nic.queued === 0) {
      if (f.flags & FDFLAGS_NONBLOCK) return EAGAIN;
      this.waitForInput();
      if (this.fds.get(fd) !== f) return EBADF; // an interrupt handler closed it
    }
    // Only now: an interrupt handler may have opened descriptors while this call waited.
    const next = this.allocFd();
    if (next < 0) return -next;
    const sock = this.nic.accept()!;
    this.fds.set(next, { kind: 'sock', sock, flags: flags & FDFLAGS_ALL });
    const g = this.guest();
    if (!g.ok(fdPtr, 4)) return EFAULT;
    g.dv.setUint32(fdPtr, next, true);
    return ESUCCESS;
  }

  /** Reads a socket's stream into iovecs; blocks unless the socket is non-blocking. Writes ro_flags when flagsPtr is given. */
  private sockRead(fd: number, iovs: number, iovsLen: number, riFlags: number, nreadPtr: number, flagsPtr: number | null): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (f.kind === 'listen') return ENOTCONN;
    if (f.kind !== 'sock') return ENOTSOCK;
    const check = (g: Guest): Iovec[] | undefined =>
      g.ok(nreadPtr, 4) && (flagsPtr === null || g.ok(flagsPtr, 2)) ? this.readIovecs(g, iovs, iovsLen) : undefined;
    if (!check(this.guest())) return EFAULT;
    const s = f.sock;
    while (this.nic.readable(s) === 0 && !s.peerClosed && !s.recvClosed) {
      if (f.flags & FDFLAGS_NONBLOCK) return EAGAIN;
      this.waitForInput();
      if (this.fds.get(fd) !== f) return EBADF; // an interrupt handler closed it
    }
    // An interrupt handler may have grown memory: check again.
    const g = this.guest();
    const list = check(g);
    if (!list) return EFAULT;
    let n = 0;
    // RECV_PEEK reads from a copy, so the stream keeps its bytes.
    const from = riFlags & RIFLAGS_PEEK ? { ...s, chunks: [...s.chunks] } : s;
    for (const v of list) {
      const bytes = this.nic.read(from, v.len);
      g.u8.set(bytes, v.ptr);
      n += bytes.length;
      if (bytes.length < v.len) break;
    }
    g.dv.setUint32(nreadPtr, n, true);
    if (flagsPtr !== null) g.dv.setUint16(flagsPtr, 0, true);
    return ESUCCESS;
  }

  private sockRecv(fd: number, iovs: number, iovsLen: number, riFlags: number, datalenPtr: number, flagsPtr: number): number {
    return this.sockRead(fd, iovs, iovsLen, riFlags, datalenPtr, flagsPtr);
  }

  /** Sends the gathered bytes on a socket, in messages of at most MAX_MESSAGE_BYTES. */
  private sockSend(fd: number, iovs: number, iovsLen: number, datalenPtr: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (f.kind === 'listen') return ENOTCONN;
    if (f.kind !== 'sock') return ENOTSOCK;
    const g = this.guest();
    const list = this.readIovecs(g, iovs, iovsLen);
    if (!list || !g.ok(datalenPtr, 4)) return EFAULT;
    if (f.sock.sendClosed) return EPIPE;
    let total = 0;
    for (const v of list) total += v.len;
    if (total > U32_MAX) return EINVAL;
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const v of list) {
      bytes.set(g.u8.subarray(v.ptr, v.ptr + v.len), at);
      at += v.len;
    }
    for (let off = 0; off < total; off += MAX_MESSAGE_BYTES) {
      this.nic.emit(f.sock.conn, bytes.slice(off, off + MAX_MESSAGE_BYTES));
    }
    g.dv.setUint32(datalenPtr, total, true);
    return ESUCCESS;
  }

  private sockShutdown(fd: number, how: number): number {
    const f = this.fds.get(fd);
    if (!f) return EBADF;
    if (f.kind === 'listen') return ENOTCONN;
    if (f.kind !== 'sock') return ENOTSOCK;
    if (how === 0 || (how & ~(SDFLAGS_RD | SDFLAGS_WR)) !== 0) return EINVAL;
    const s = f.sock;
    if (how & SDFLAGS_RD) {
      s.recvClosed = true;
      s.chunks.length = 0;
      s.head = 0;
    }
    if (how & SDFLAGS_WR && !s.sendClosed) {
      s.sendClosed = true;
      this.nic.emit(s.conn, new Uint8Array(0), true);
    }
    return ESUCCESS;
  }

  // ---- poll_oneoff ----

  /**
   * fd_read / fd_write subscriptions on stdio, files and directories are
   * always ready (fd 0 reports the unread stdin byte count, and HANGUP at EOF);
   * on a closed fd they report EBADF. A socket is ready to read when it has
   * bytes or its peer closed (HANGUP), the listening socket when a connection
   * waits to be accepted; sockets are always ready to write. Clock
   * subscriptions are resolved virtually: if some event is already ready, only
   * clocks already due are reported; otherwise the clock(s) with the earliest
   * deadline are reported as fired, without sleeping. Absolute deadlines read
   * the clock through Nondeterminism (once per clock id per call); relative
   * ones read nothing. Only when nothing is ready and there is no clock does
   * the call block, until an interrupt brings something (see WasiOptions.wait).
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

    const badClocks: { index: number; ev: Ev }[] = [];
    const clocks: { index: number; ev: Ev; remaining: bigint }[] = [];
    const fdEvents = (): { index: number; ev: Ev }[] => {
      const ready: { index: number; ev: Ev }[] = [];
      subs.forEach((s, index) => {
        if (s.kind !== 'fd') return;
        const f = this.fds.get(s.fd);
        let nbytes = 0n;
        let flags = 0;
        if (f && s.type === EVENTTYPE_FD_READ) {
          if (f.kind === 'stdio' && s.fd === 0) {
            const avail = this.stdin.length - this.stdinPos;
            nbytes = BigInt(avail);
            if (avail === 0) flags = EVENTRW_HANGUP;
          } else if (f.kind === 'listen') {
            if (this.nic.queued === 0) return;
          } else if (f.kind === 'sock') {
            const avail = this.nic.readable(f.sock);
            if (avail === 0 && !f.sock.peerClosed && !f.sock.recvClosed) return;
            nbytes = BigInt(avail);
            if (avail === 0) flags = EVENTRW_HANGUP;
          }
        }
        ready.push({ index, ev: { userdata: s.userdata, error: f ? ESUCCESS : EBADF, type: s.type, nbytes, flags } });
      });
      return ready;
    };
    subs.forEach((s, index) => {
      if (s.kind === 'fd') return;
      const ev: Ev = { userdata: s.userdata, error: ESUCCESS, type: EVENTTYPE_CLOCK, nbytes: 0n, flags: 0 };
      if (!isKnownClock(s.clockId)) {
        ev.error = EINVAL;
        badClocks.push({ index, ev });
        return;
      }
      let remaining = s.timeout;
      if (s.abstime) {
        const t = readNow(s.clockId);
        remaining = s.timeout > t ? s.timeout - t : 0n;
      }
      clocks.push({ index, ev, remaining });
    });

    let immediate = [...badClocks, ...fdEvents()];
    while (immediate.length === 0 && clocks.length === 0) {
      this.waitForInput();
      immediate = fdEvents();
    }
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
