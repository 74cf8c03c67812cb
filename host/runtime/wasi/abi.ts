/**
 * The wasi_snapshot_preview1 ABI: enum values, flag bits and struct layouts,
 * as the preview1 witx (`typenames.witx`) defines them. Every struct field is
 * named here with its byte offset, so call sites never carry a bare number.
 *
 * Source: WebAssembly/WASI, legacy/preview1/witx/typenames.witx and
 * docs.md (the "Size" / "Alignment" / "Offset" notes of each record).
 */

/** The import module name of preview1. */
export const WASI_MODULE = 'wasi_snapshot_preview1';

// ---- errno (u16) ----
/** preview1 `errno` values used by this host (witx `$errno`). */
export const Errno = {
  SUCCESS: 0,
  TOOBIG: 1,
  ACCES: 2,
  AGAIN: 6,
  BADF: 8,
  EXIST: 20,
  FAULT: 21,
  FBIG: 22,
  ILSEQ: 25,
  INVAL: 28,
  IO: 29,
  ISDIR: 31,
  LOOP: 32,
  MFILE: 33,
  MLINK: 34,
  NAMETOOLONG: 37,
  NOENT: 44,
  NOSPC: 51,
  NOSYS: 52,
  NOTCONN: 53,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTSOCK: 57,
  NOTSUP: 58,
  OVERFLOW: 61,
  PERM: 63,
  PIPE: 64,
  SPIPE: 70,
  XDEV: 75,
  NOTCAPABLE: 76,
} as const;
/** One of the errno values above. */
export type ErrnoValue = (typeof Errno)[keyof typeof Errno];

// ---- clockid (u32): realtime, monotonic, process and thread CPU time ----
export const CLOCK_REALTIME = 0;
export const CLOCK_MONOTONIC = 1;
export const CLOCK_PROCESS_CPUTIME = 2;
export const CLOCK_THREAD_CPUTIME = 3;

/** true for the four clock ids preview1 defines */
export function isKnownClock(id: number): boolean {
  return id === CLOCK_REALTIME || id === CLOCK_MONOTONIC || id === CLOCK_PROCESS_CPUTIME || id === CLOCK_THREAD_CPUTIME;
}

// ---- filetype (u8) ----
/** preview1 `filetype` values (witx `$filetype`). */
export const Filetype = {
  UNKNOWN: 0,
  BLOCK_DEVICE: 1,
  CHARACTER_DEVICE: 2,
  DIRECTORY: 3,
  REGULAR_FILE: 4,
  SOCKET_DGRAM: 5,
  SOCKET_STREAM: 6,
  SYMBOLIC_LINK: 7,
} as const;

// ---- rights (u64 flags) ----
/** preview1 `rights` bits (witx `$rights`), as bigint masks. */
export const Rights = {
  FD_DATASYNC: 1n << 0n,
  FD_READ: 1n << 1n,
  FD_SEEK: 1n << 2n,
  FD_FDSTAT_SET_FLAGS: 1n << 3n,
  FD_SYNC: 1n << 4n,
  FD_TELL: 1n << 5n,
  FD_WRITE: 1n << 6n,
  FD_ADVISE: 1n << 7n,
  FD_ALLOCATE: 1n << 8n,
  PATH_CREATE_DIRECTORY: 1n << 9n,
  PATH_CREATE_FILE: 1n << 10n,
  PATH_LINK_SOURCE: 1n << 11n,
  PATH_LINK_TARGET: 1n << 12n,
  PATH_OPEN: 1n << 13n,
  FD_READDIR: 1n << 14n,
  PATH_READLINK: 1n << 15n,
  PATH_RENAME_SOURCE: 1n << 16n,
  PATH_RENAME_TARGET: 1n << 17n,
  PATH_FILESTAT_GET: 1n << 18n,
  PATH_FILESTAT_SET_SIZE: 1n << 19n,
  PATH_FILESTAT_SET_TIMES: 1n << 20n,
  FD_FILESTAT_GET: 1n << 21n,
  FD_FILESTAT_SET_SIZE: 1n << 22n,
  FD_FILESTAT_SET_TIMES: 1n << 23n,
  PATH_SYMLINK: 1n << 24n,
  PATH_REMOVE_DIRECTORY: 1n << 25n,
  PATH_UNLINK_FILE: 1n << 26n,
  POLL_FD_READWRITE: 1n << 27n,
  SOCK_SHUTDOWN: 1n << 28n,
  SOCK_ACCEPT: 1n << 29n,
} as const;
/** all 30 rights preview1 defines */
export const RIGHTS_ALL = (1n << 30n) - 1n;

// ---- oflags (u16) ----
export const OFLAGS_CREAT = 1;
export const OFLAGS_DIRECTORY = 2;
export const OFLAGS_EXCL = 4;
export const OFLAGS_TRUNC = 8;
export const OFLAGS_ALL = 0xf;

// ---- lookupflags (u32) ----
export const LOOKUPFLAGS_SYMLINK_FOLLOW = 1;
export const LOOKUPFLAGS_ALL = 1;

// ---- fdflags (u16) ----
export const FDFLAGS_APPEND = 1;
export const FDFLAGS_DSYNC = 2;
export const FDFLAGS_NONBLOCK = 4;
export const FDFLAGS_RSYNC = 8;
export const FDFLAGS_SYNC = 16;
export const FDFLAGS_ALL = 0x1f;

// ---- fstflags (u16) ----
export const FSTFLAGS_ATIM = 1;
export const FSTFLAGS_ATIM_NOW = 2;
export const FSTFLAGS_MTIM = 4;
export const FSTFLAGS_MTIM_NOW = 8;
export const FSTFLAGS_ALL = 0xf;

// ---- advice (u8) ----
/** normal, sequential, random, willneed, dontneed, noreuse: 0..5 */
export const ADVICE_MAX = 5;

// ---- whence (u8) ----
export const WHENCE_SET = 0;
export const WHENCE_CUR = 1;
export const WHENCE_END = 2;

// ---- preopentype (u8) ----
export const PREOPENTYPE_DIR = 0;
/**
 * Not a preview1 tag (preview1 knows only `dir`): what fd_prestat_get answers
 * for the listening socket, so that preopen scans skip it (see calls/files.ts).
 */
export const PREOPENTYPE_NOT_DIR = 1;

// ---- eventtype (u8), subclockflags (u16), eventrwflags (u16) ----
export const EVENTTYPE_CLOCK = 0;
export const EVENTTYPE_FD_READ = 1;
export const EVENTTYPE_FD_WRITE = 2;
export const SUBCLOCKFLAGS_ABSTIME = 1;
export const EVENTRWFLAGS_HANGUP = 1;

// ---- riflags, roflags, sdflags ----
export const RIFLAGS_RECV_PEEK = 1;
export const RIFLAGS_RECV_WAITALL = 2;
export const SDFLAGS_RD = 1;
export const SDFLAGS_WR = 2;

// ---- signal (u8) ----
/** the highest `signal` value preview1 defines (SIGSYS) */
export const SIGNAL_MAX = 30;

// ---- struct layouts (byte offsets, little-endian) ----

/** `iovec` / `ciovec`: buf (u32 pointer), buf_len (u32). */
export const IOVEC = { SIZE: 8, buf: 0, buf_len: 4 } as const;
/** `fdstat` */
export const FDSTAT = { SIZE: 24, fs_filetype: 0, fs_flags: 2, fs_rights_base: 8, fs_rights_inheriting: 16 } as const;
/** `filestat` */
export const FILESTAT = { SIZE: 64, dev: 0, ino: 8, filetype: 16, nlink: 24, size: 32, atim: 40, mtim: 48, ctim: 56 } as const;
/** `prestat`: the tag, then `prestat_dir.pr_name_len` */
export const PRESTAT = { SIZE: 8, tag: 0, pr_name_len: 4 } as const;
/** `dirent`, followed by d_namlen bytes of name */
export const DIRENT = { SIZE: 24, d_next: 0, d_ino: 8, d_namlen: 16, d_type: 20 } as const;
/** `subscription`: userdata, the union tag, then `subscription_clock` or `subscription_fd_readwrite` at offset 16 */
export const SUBSCRIPTION = {
  SIZE: 48,
  userdata: 0,
  tag: 8,
  clock_id: 16,
  clock_timeout: 24,
  clock_precision: 32,
  clock_flags: 40,
  fd_readwrite_fd: 16,
} as const;
/** `event` */
export const EVENT = { SIZE: 32, userdata: 0, error: 8, type: 10, fd_readwrite_nbytes: 16, fd_readwrite_flags: 24 } as const;

/** the largest u32, the ABI's `size` */
export const U32_MAX = 0xffff_ffff;
