/**
 * The descriptor table: what each fd names and the rights it carries.
 *
 * Rights (preview1 `rights`) are tracked per descriptor and checked by every
 * call before it acts (ENOTCAPABLE when missing). Their sources:
 *  - stdio: stdin FD_READ, stdout/stderr FD_WRITE, each with
 *    FD_FDSTAT_SET_FLAGS, FD_FILESTAT_GET and POLL_FD_READWRITE; no seek, no
 *    tell (a character device, as wasmtime reports it); inheriting the same.
 *  - a preopened directory: DIR_RIGHTS as base, every right as inheriting.
 *  - `path_open`: the requested base and inheriting rights, masked by the
 *    directory descriptor's inheriting rights and by what the opened kind can
 *    use (DIR_RIGHTS or FILE_RIGHTS). A right asked for but not held is
 *    dropped, not an error (as wasmtime and wasi-libc, which asks for more
 *    than it needs, expect).
 *  - `fd_fdstat_set_rights` may only narrow (ENOTCAPABLE otherwise).
 *
 * Numbering: the lowest free number at or above the table's first free fd
 * (the first after the preopens and the listening socket), so the same calls
 * always give the same numbers. At most MAX_FDS descriptors are open (EMFILE).
 */
import { Errno, Rights, RIGHTS_ALL } from './abi.ts';
import type { NicSocket } from '../nic.ts';
import type { VfsDir, VfsFile, VirtualFs } from './vfs.ts';

/** the most descriptors open at once */
import { FDS_MAX as MAX_FDS } from '../../limits.ts'; export { MAX_FDS };

const R = Rights;
/** every right that applies to a regular file's own descriptor */
export const FILE_RIGHTS =
  R.FD_DATASYNC | R.FD_READ | R.FD_SEEK | R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC | R.FD_TELL | R.FD_WRITE | R.FD_ADVISE | R.FD_ALLOCATE |
  R.FD_FILESTAT_GET | R.FD_FILESTAT_SET_SIZE | R.FD_FILESTAT_SET_TIMES | R.POLL_FD_READWRITE;
/** every right that applies to a directory's own descriptor (no read, write or seek of bytes) */
export const DIR_RIGHTS =
  R.FD_DATASYNC | R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC | R.FD_ADVISE | R.PATH_CREATE_DIRECTORY | R.PATH_CREATE_FILE | R.PATH_LINK_SOURCE |
  R.PATH_LINK_TARGET | R.PATH_OPEN | R.FD_READDIR | R.PATH_READLINK | R.PATH_RENAME_SOURCE | R.PATH_RENAME_TARGET |
  R.PATH_FILESTAT_GET | R.PATH_FILESTAT_SET_SIZE | R.PATH_FILESTAT_SET_TIMES | R.FD_FILESTAT_GET | R.FD_FILESTAT_SET_TIMES |
  R.PATH_SYMLINK | R.PATH_REMOVE_DIRECTORY | R.PATH_UNLINK_FILE | R.POLL_FD_READWRITE;
/** a socket's rights */
export const SOCK_RIGHTS = R.FD_READ | R.FD_WRITE | R.FD_FDSTAT_SET_FLAGS | R.FD_FILESTAT_GET | R.POLL_FD_READWRITE | R.SOCK_SHUTDOWN;
/** the listening socket's rights */
export const LISTEN_RIGHTS = R.FD_FDSTAT_SET_FLAGS | R.FD_FILESTAT_GET | R.POLL_FD_READWRITE | R.SOCK_ACCEPT;
/** stdin's rights */
export const STDIN_RIGHTS = R.FD_READ | R.FD_FDSTAT_SET_FLAGS | R.FD_FILESTAT_GET | R.POLL_FD_READWRITE;
/** stdout's and stderr's rights */
export const STDOUT_RIGHTS = R.FD_WRITE | R.FD_FDSTAT_SET_FLAGS | R.FD_FILESTAT_GET | R.POLL_FD_READWRITE;
export { RIGHTS_ALL };

/** Rights and fdflags common to every descriptor. */
interface FdBase {
  /** fdflags (append, nonblock, ...) */
  flags: number;
  /** rights for operations on this descriptor */
  base: bigint;
  /** rights given to descriptors opened through this one */
  inheriting: bigint;
}

/** An open descriptor: stdio (0 stdin, 1 stdout, 2 stderr, whatever number it has now), a regular file, a directory, the listening socket or an accepted connection. */
export type FdEntry = FdBase &
  (
    | { kind: 'stdio'; stream: 0 | 1 | 2 }
    | { kind: 'file'; node: VfsFile; fs: VirtualFs; offset: number }
    | { kind: 'dir'; node: VfsDir; fs: VirtualFs; preopen: string | null }
    | { kind: 'listen' }
    | { kind: 'sock'; sock: NicSocket }
  );

/** A descriptor of the filesystem. */
/** A descriptor of the filesystem (a file or a directory). */
export type FsFd = Extract<FdEntry, { kind: 'file' | 'dir' }>;
/** A regular file's descriptor. */
export type FileFd = Extract<FdEntry, { kind: 'file' }>;
/** A directory's descriptor (a preopen when `preopen` is its name). */
export type DirFd = Extract<FdEntry, { kind: 'dir' }>;
/** true for a file or directory descriptor */
export const isFs = (f: FdEntry): f is FsFd => f.kind === 'file' || f.kind === 'dir';

/** The open descriptors of one WASI host. */
export class FdTable {
  private readonly map = new Map<number, FdEntry>();
  /** where allocation starts: the first fd after stdio, the preopens and the listening socket */
  firstFree: number;

  constructor(firstFree: number) {
    this.firstFree = firstFree;
  }

  /** The entry of `fd`, or undefined when it is not open. */
  get(fd: number): FdEntry | undefined {
    return this.map.get(fd);
  }
  /** true when `fd` is open */
  has(fd: number): boolean {
    return this.map.has(fd);
  }
  /** Opens (or replaces) `fd`; callers get numbers from `alloc`, which keeps the MAX_FDS bound. */
  set(fd: number, f: FdEntry): void {
    this.map.set(fd, f);
  }
  /** Closes `fd` (nothing if not open). */
  delete(fd: number): void {
    this.map.delete(fd);
  }
  /** Closes every descriptor. */
  clear(): void {
    this.map.clear();
  }
  /** the number of open descriptors */
  get size(): number {
    return this.map.size;
  }
  /** [fd, entry] in fd order */
  sorted(): [number, FdEntry][] {
    return [...this.map.entries()].sort(([a], [b]) => a - b);
  }

  /** The lowest free fd >= firstFree, or -EMFILE. */
  alloc(): number {
    if (this.map.size >= MAX_FDS) return -Errno.MFILE;
    let fd = this.firstFree;
    while (this.map.has(fd)) fd++;
    return fd;
  }

  /**
   * The descriptor `fd` when it holds every right in `need`: the entry, EBADF
   * when not open, or ENOTCAPABLE.
   */
  withRights(fd: number, need: bigint): FdEntry | number {
    const f = this.map.get(fd);
    if (!f) return Errno.BADF;
    if ((f.base & need) !== need) return Errno.NOTCAPABLE;
    return f;
  }
}
