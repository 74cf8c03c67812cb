/**
 * Descriptor calls (`fd_*`): stdio, regular files, directories, preopens.
 *
 * Semantics beyond the witx text:
 *  - Type before rights: a byte operation on a directory gives EISDIR, a seek
 *    or positional I/O on stdio or a socket ESPIPE, whatever the rights; then
 *    a missing right gives ENOTCAPABLE.
 *  - fd_pwrite writes at the given offset even on an APPEND descriptor (as
 *    wasmtime; Linux appends).
 *  - An unlinked file stays readable/writable through descriptors already open.
 *  - Timestamps: a write of at least one byte, a resize or an allocation that
 *    grows the file sets mtim and ctim to the VM's realtime clock (read once
 *    per call, through Nondeterminism). Reads never change atim (a fixed
 *    `noatime`: reads stay free of clock readings, so of log entries).
 *  - fd_allocate really allocates: the file grows to offset+len (zero-filled)
 *    when shorter, as posix_fallocate on Linux (wasmtime answers ENOTSUP);
 *    len 0 gives EINVAL as on Linux.
 *  - fd_advise validates its arguments and is otherwise a no-op.
 *  - fd_renumber(from, to) moves `from` onto `to`, closing what `to` held;
 *    both must be open (EBADF), as wasmtime. A preopen may be renumbered or closed.
 *  - fd_readdir lists ".", "..", then the entries in creation order; cookies
 *    are 1 for ".", 2 for "..", and 3 + the entry's sequence number (see
 *    vfs.ts), so they stay valid while entries come and go.
 */
import {
  ADVICE_MAX,
  DIRENT,
  Errno,
  FDFLAGS_ALL,
  FDFLAGS_NONBLOCK,
  FDFLAGS_APPEND,
  FDSTAT,
  FILESTAT,
  Filetype,
  FSTFLAGS_ALL,
  FSTFLAGS_ATIM,
  FSTFLAGS_ATIM_NOW,
  FSTFLAGS_MTIM,
  FSTFLAGS_MTIM_NOW,
  PRESTAT,
  PREOPENTYPE_DIR,
  PREOPENTYPE_NOT_DIR,
  Rights,
  WHENCE_CUR,
  WHENCE_END,
  WHENCE_SET,
} from '../abi.ts';
import type { WasiCtx } from '../ctx.ts';
import { isFs, type FdEntry, type FileFd } from '../fdtable.ts';
import { gather, iovecsTotal, isErrno, readIovecs, u32, type Guest } from '../memory.ts';
import { resizeFile, type VfsNode } from '../vfs.ts';
import { sockRead, sockSend } from './sockets.ts';

type HostFn = (...args: any[]) => number | void;

/** The preview1 filetype of a descriptor. */
export function fdFiletype(f: FdEntry): number {
  switch (f.kind) {
    case 'stdio':
      return Filetype.CHARACTER_DEVICE;
    case 'dir':
      return Filetype.DIRECTORY;
    case 'file':
      return Filetype.REGULAR_FILE;
    default:
      return Filetype.SOCKET_STREAM;
  }
}

/** The preview1 filetype of an inode. */
export function nodeFiletype(n: VfsNode): number {
  return n.kind === 'dir' ? Filetype.DIRECTORY : n.kind === 'file' ? Filetype.REGULAR_FILE : Filetype.SYMBOLIC_LINK;
}

/** nlink as reported: the entries naming a file or symlink; for a directory 2 + its subdirectories (1 once removed), as on Linux. */
function nlinkOf(n: VfsNode): bigint {
  if (n.kind !== 'dir') return BigInt(n.nlink);
  if (!n.linked && n.parent === null && n.ino !== 1n) return 1n;
  let subdirs = 0;
  for (const e of n.entries.values()) if (e.node.kind === 'dir') subdirs++;
  return BigInt(2 + subdirs);
}

/** Writes a filestat: dev 0, the inode, its type, nlink, size (a directory 0, a symlink its target's length), and the three times in ns. */
export function writeFilestat(g: Guest, ptr: number, node: VfsNode): void {
  g.u8.fill(0, ptr, ptr + FILESTAT.SIZE);
  g.dv.setBigUint64(ptr + FILESTAT.ino, node.ino, true);
  g.dv.setUint8(ptr + FILESTAT.filetype, nodeFiletype(node));
  g.dv.setBigUint64(ptr + FILESTAT.nlink, nlinkOf(node), true);
  const size = node.kind === 'file' ? node.size : node.kind === 'symlink' ? Buffer.byteLength(node.target) : 0;
  g.dv.setBigUint64(ptr + FILESTAT.size, BigInt(size), true);
  g.dv.setBigUint64(ptr + FILESTAT.atim, node.atimNs, true);
  g.dv.setBigUint64(ptr + FILESTAT.mtim, node.mtimNs, true);
  g.dv.setBigUint64(ptr + FILESTAT.ctim, node.ctimNs, true);
}

/**
 * Applies fd/path_filestat_set_times to a node: fstflags validated (EINVAL for
 * unknown bits or SET and NOW of the same time together); *_NOW reads the VM's
 * clock (once per call); ctim becomes now whenever anything is set.
 */
export function setTimes(ctx: WasiCtx, node: VfsNode, atimNs: bigint, mtimNs: bigint, fstflags: number): number {
  if ((fstflags & ~FSTFLAGS_ALL) !== 0) return Errno.INVAL;
  if ((fstflags & FSTFLAGS_ATIM) !== 0 && (fstflags & FSTFLAGS_ATIM_NOW) !== 0) return Errno.INVAL;
  if ((fstflags & FSTFLAGS_MTIM) !== 0 && (fstflags & FSTFLAGS_MTIM_NOW) !== 0) return Errno.INVAL;
  if (fstflags === 0) return Errno.SUCCESS;
  const now = ctx.nowNs();
  if (fstflags & FSTFLAGS_ATIM) node.atimNs = atimNs;
  if (fstflags & FSTFLAGS_ATIM_NOW) node.atimNs = now;
  if (fstflags & FSTFLAGS_MTIM) node.mtimNs = mtimNs;
  if (fstflags & FSTFLAGS_MTIM_NOW) node.mtimNs = now;
  node.ctimNs = now;
  return Errno.SUCCESS;
}

/** Marks a file's contents changed now. */
function touch(ctx: WasiCtx, node: VfsNode): void {
  node.mtimNs = node.ctimNs = ctx.nowNs();
}

/** The file descriptor `fd` with `need`: EBADF, EISDIR for a directory, `notFile` for stdio/sockets, ENOTCAPABLE. */
function fileFd(ctx: WasiCtx, fd: number, need: bigint, notFile: number): FileFd | number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind === 'dir') return Errno.ISDIR;
  if (f.kind !== 'file') return notFile;
  if ((f.base & need) !== need) return Errno.NOTCAPABLE;
  return f;
}

/** Reads a file's bytes at `at` (or the fd's offset, advancing it) into the iovecs. */
function fileRead(ctx: WasiCtx, f: FileFd, iovs: number, iovsLen: number, at: bigint | null, nreadPtr: number): number {
  const g = ctx.guest();
  const list = readIovecs(g, iovs, iovsLen);
  if (!list || !g.ok(nreadPtr, 4)) return Errno.FAULT;
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
  return Errno.SUCCESS;
}

/** Writes the iovecs into a file at `at` (or the fd's offset / the end for APPEND, advancing it). */
function fileWrite(ctx: WasiCtx, f: FileFd, iovs: number, iovsLen: number, at: bigint | null, nwrittenPtr: number): number {
  const g = ctx.guest();
  const list = readIovecs(g, iovs, iovsLen);
  if (!list || !g.ok(nwrittenPtr, 4)) return Errno.FAULT;
  const file = f.node;
  const total = iovecsTotal(list);
  if (total < 0) return -total;
  const start = at !== null ? at : BigInt((f.flags & FDFLAGS_APPEND) !== 0 ? file.size : f.offset);
  if (start + BigInt(total) > BigInt(f.fs.maxFileSize)) return Errno.FBIG;
  let pos = Number(start);
  if (total > 0) {
    if (pos + total > file.size) resizeFile(file, pos + total, f.fs.maxFileSize);
    for (const v of list) {
      file.data.set(g.u8.subarray(v.ptr, v.ptr + v.len), pos);
      pos += v.len;
    }
    file.hash = null;
    touch(ctx, file);
  }
  if (at === null) f.offset = pos;
  g.dv.setUint32(nwrittenPtr, total, true);
  return Errno.SUCCESS;
}

/** Reads from stdin (buffered or streamed) into the iovecs. */
function stdinRead(ctx: WasiCtx, iovs: number, iovsLen: number, nreadPtr: number): number {
  const g = ctx.guest();
  const list = readIovecs(g, iovs, iovsLen);
  if (!list || !g.ok(nreadPtr, 4)) return Errno.FAULT;
  let n = 0;
  if (ctx.stdinRead) {
    const total = iovecsTotal(list);
    if (total < 0) return -total;
    if (total === 0 || ctx.stdinEof) {
      g.dv.setUint32(nreadPtr, 0, true);
      return Errno.SUCCESS;
    }
    const ask = Math.min(total, MAX_STDIN_READ_BYTES);
    const got = ctx.stdinRead(ask);
    if (got.length > ask) throw new RangeError(`stdinRead returned ${got.length} bytes, more than the ${ask} asked for`);
    if (got.length === 0) ctx.stdinEof = true;
    ctx.stdinStreamed += got.length;
    // The source may have grown memory: look again.
    const after = ctx.guest();
    const again = readIovecs(after, iovs, iovsLen);
    if (!again || !after.ok(nreadPtr, 4)) return Errno.FAULT;
    for (const v of again) {
      const take = Math.min(got.length - n, v.len);
      if (take <= 0) break;
      after.u8.set(got.subarray(n, n + take), v.ptr);
      n += take;
    }
    after.dv.setUint32(nreadPtr, n, true);
    return Errno.SUCCESS;
  }
  for (const v of list) {
    const avail = ctx.stdin.length - ctx.stdinPos;
    if (avail === 0) break;
    const take = Math.min(avail, v.len);
    g.u8.set(ctx.stdin.subarray(ctx.stdinPos, ctx.stdinPos + take), v.ptr);
    ctx.stdinPos += take;
    n += take;
  }
  g.dv.setUint32(nreadPtr, n, true);
  return Errno.SUCCESS;
}

/** the most bytes one fd_read asks a streamed stdin for */
import { STDIN_READ_BYTES_MAX as MAX_STDIN_READ_BYTES } from '../../../limits.ts'; export { MAX_STDIN_READ_BYTES };

function fdWrite(ctx: WasiCtx, fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind === 'sock' || f.kind === 'listen') return sockSend(ctx, fd, iovs, iovsLen, nwrittenPtr);
  if (f.kind === 'dir') return Errno.ISDIR;
  if ((f.base & Rights.FD_WRITE) === 0n) return f.kind === 'stdio' ? Errno.BADF : Errno.NOTCAPABLE;
  if (f.kind === 'file') return fileWrite(ctx, f, iovs, iovsLen, null, nwrittenPtr);
  const sink = f.stream === 1 ? ctx.out : f.stream === 2 ? ctx.err : undefined;
  if (!sink) return Errno.BADF;
  const g = ctx.guest();
  const list = readIovecs(g, iovs, iovsLen);
  if (!list || !g.ok(nwrittenPtr, 4)) return Errno.FAULT;
  const total = iovecsTotal(list);
  if (total < 0) return -total;
  if (total > 0) sink(gather(g, list, total));
  // The sink may not touch guest memory, but re-read anyway to stay safe against growth.
  const after = ctx.guest();
  if (!after.ok(nwrittenPtr, 4)) return Errno.FAULT;
  after.dv.setUint32(nwrittenPtr, total, true);
  return Errno.SUCCESS;
}

function fdRead(ctx: WasiCtx, fd: number, iovs: number, iovsLen: number, nreadPtr: number): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind === 'sock' || f.kind === 'listen') return sockRead(ctx, fd, iovs, iovsLen, 0, nreadPtr, null);
  if (f.kind === 'dir') return Errno.ISDIR;
  if ((f.base & Rights.FD_READ) === 0n) return f.kind === 'stdio' ? Errno.BADF : Errno.NOTCAPABLE;
  if (f.kind === 'file') return fileRead(ctx, f, iovs, iovsLen, null, nreadPtr);
  if (f.stream !== 0) return Errno.BADF;
  return stdinRead(ctx, iovs, iovsLen, nreadPtr);
}

/** fd_seek and fd_tell (a seek by 0 from CUR needing FD_TELL): offsets beyond the end are allowed, negative ones are EINVAL. */
function fdSeek(ctx: WasiCtx, fd: number, offset: bigint, whence: number, newOffsetPtr: number, tell: boolean): number {
  const f = fileFd(ctx, fd, tell ? Rights.FD_TELL : 0n, Errno.SPIPE);
  if (isErrno(f)) return f;
  if (!tell) {
    // fd_seek(0, CUR) is what fd_tell does; the spec lets FD_TELL cover it
    const isTell = offset === 0n && (whence & 0xff) === WHENCE_CUR;
    const need = isTell ? Rights.FD_TELL | Rights.FD_SEEK : Rights.FD_SEEK;
    if ((f.base & need) === 0n) return Errno.NOTCAPABLE;
  }
  const g = ctx.guest();
  if (!g.ok(newOffsetPtr, 8)) return Errno.FAULT;
  const delta = BigInt.asIntN(64, offset);
  let base: number;
  if ((whence & 0xff) === WHENCE_SET) base = 0;
  else if ((whence & 0xff) === WHENCE_CUR) base = f.offset;
  else if ((whence & 0xff) === WHENCE_END) base = f.node.size;
  else return Errno.INVAL;
  const next = BigInt(base) + delta;
  if (next < 0n || next > BigInt(Number.MAX_SAFE_INTEGER)) return Errno.INVAL;
  f.offset = Number(next);
  g.dv.setBigUint64(newOffsetPtr, next, true);
  return Errno.SUCCESS;
}

function fdFdstatGet(ctx: WasiCtx, fd: number, ptr: number): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  const g = ctx.guest();
  if (!g.ok(ptr, FDSTAT.SIZE)) return Errno.FAULT;
  g.u8.fill(0, ptr, ptr + FDSTAT.SIZE);
  g.dv.setUint8(ptr + FDSTAT.fs_filetype, fdFiletype(f));
  g.dv.setUint16(ptr + FDSTAT.fs_flags, f.flags, true);
  g.dv.setBigUint64(ptr + FDSTAT.fs_rights_base, f.base, true);
  g.dv.setBigUint64(ptr + FDSTAT.fs_rights_inheriting, f.inheriting, true);
  return Errno.SUCCESS;
}

function fdFilestatGet(ctx: WasiCtx, fd: number, ptr: number): number {
  const f = ctx.fds.withRights(fd, Rights.FD_FILESTAT_GET);
  if (isErrno(f)) return f;
  const g = ctx.guest();
  if (!g.ok(ptr, FILESTAT.SIZE)) return Errno.FAULT;
  if (!isFs(f)) {
    // dev, ino, nlink, size and the timestamps of stdio and sockets are all reported as 0.
    g.u8.fill(0, ptr, ptr + FILESTAT.SIZE);
    g.dv.setUint8(ptr + FILESTAT.filetype, fdFiletype(f));
  } else {
    writeFilestat(g, ptr, f.node);
  }
  return Errno.SUCCESS;
}

/**
 * fd_prestat_get. A preopened directory answers its tag (PREOPENTYPE_DIR) and
 * name length. The listening socket (fd 3, before the preopens) answers
 * SUCCESS with tag PREOPENTYPE_NOT_DIR and length 0: wasi-libc's and Go's
 * preopen scans walk fds from 3 until EBADF and skip a tag they do not know,
 * so they go on to the directories after it. (wasmtime answers EBADF there,
 * which ends wasi-libc's scan at fd 3 and hides every --dir from a guest
 * that also has --tcplisten: wasmtime issue #3936.) Anything else: EBADF.
 */
function fdPrestatGet(ctx: WasiCtx, fd: number, ptr: number): number {
  const f = ctx.fds.get(fd);
  const listener = f?.kind === 'listen' && fd === ctx.listenFd;
  if (!listener && (!f || f.kind !== 'dir' || f.preopen === null)) return Errno.BADF;
  const g = ctx.guest();
  if (!g.ok(ptr, PRESTAT.SIZE)) return Errno.FAULT;
  g.u8.fill(0, ptr, ptr + PRESTAT.SIZE);
  if (listener) {
    g.dv.setUint8(ptr + PRESTAT.tag, PREOPENTYPE_NOT_DIR);
    return Errno.SUCCESS;
  }
  g.dv.setUint8(ptr + PRESTAT.tag, PREOPENTYPE_DIR);
  g.dv.setUint32(ptr + PRESTAT.pr_name_len, Buffer.byteLength((f as { preopen: string }).preopen), true);
  return Errno.SUCCESS;
}

function fdPrestatDirName(ctx: WasiCtx, fd: number, path: number, len: number): number {
  const f = ctx.fds.get(fd);
  if (!f || f.kind !== 'dir' || f.preopen === null) return Errno.BADF;
  const name = new TextEncoder().encode(f.preopen);
  const g = ctx.guest();
  if (!g.ok(path, len)) return Errno.FAULT;
  if (len < name.length) return Errno.NAMETOOLONG;
  g.u8.set(name, path);
  return Errno.SUCCESS;
}

function fdClose(ctx: WasiCtx, fd: number): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  ctx.fds.delete(fd);
  if (f.kind === 'sock') ctx.nic.close(f.sock.conn);
  return Errno.SUCCESS;
}

function fdRenumber(ctx: WasiCtx, from: number, to: number): number {
  const f = ctx.fds.get(from);
  const t = ctx.fds.get(to);
  if (!f || !t) return Errno.BADF;
  if (from === to) return Errno.SUCCESS;
  if (t.kind === 'sock') ctx.nic.close(t.sock.conn);
  ctx.fds.set(to, f);
  ctx.fds.delete(from);
  return Errno.SUCCESS;
}

function fdFilestatSetSize(ctx: WasiCtx, fd: number, size: bigint): number {
  const f = fileFd(ctx, fd, Rights.FD_FILESTAT_SET_SIZE, Errno.INVAL);
  if (isErrno(f)) return f;
  if (size > BigInt(f.fs.maxFileSize)) return Errno.FBIG;
  resizeFile(f.node, Number(size), f.fs.maxFileSize);
  touch(ctx, f.node);
  return Errno.SUCCESS;
}

function fdFilestatSetTimes(ctx: WasiCtx, fd: number, atim: bigint, mtim: bigint, fstflags: number): number {
  const f = ctx.fds.withRights(fd, Rights.FD_FILESTAT_SET_TIMES);
  if (isErrno(f)) return f;
  if (!isFs(f)) return Errno.BADF;
  return setTimes(ctx, f.node, atim, mtim, fstflags);
}

function fdAdvise(ctx: WasiCtx, fd: number, offset: bigint, len: bigint, advice: number): number {
  const f = fileFd(ctx, fd, Rights.FD_ADVISE, Errno.SPIPE);
  if (isErrno(f)) return f;
  if (advice > ADVICE_MAX) return Errno.INVAL;
  if (offset + len > 0xffff_ffff_ffff_ffffn) return Errno.INVAL;
  return Errno.SUCCESS;
}

function fdAllocate(ctx: WasiCtx, fd: number, offset: bigint, len: bigint): number {
  const f = fileFd(ctx, fd, Rights.FD_ALLOCATE, Errno.SPIPE);
  if (isErrno(f)) return f;
  if (len === 0n) return Errno.INVAL;
  const end = offset + len;
  if (end > BigInt(f.fs.maxFileSize)) return Errno.FBIG;
  if (end > BigInt(f.node.size)) {
    resizeFile(f.node, Number(end), f.fs.maxFileSize);
    touch(ctx, f.node);
  }
  return Errno.SUCCESS;
}

function fdFdstatSetFlags(ctx: WasiCtx, fd: number, flags: number): number {
  const f = ctx.fds.withRights(fd, Rights.FD_FDSTAT_SET_FLAGS);
  if (isErrno(f)) return f;
  if ((flags & 0xffff & ~FDFLAGS_ALL) !== 0) return Errno.INVAL;
  // Sockets take NONBLOCK or nothing, as wasmtime's (wasi-common's set_fdflags on a socket: EINVAL otherwise).
  if ((f.kind === 'sock' || f.kind === 'listen') && (flags & FDFLAGS_ALL & ~FDFLAGS_NONBLOCK) !== 0) return Errno.INVAL;
  f.flags = flags & FDFLAGS_ALL;
  return Errno.SUCCESS;
}

function fdFdstatSetRights(ctx: WasiCtx, fd: number, base: bigint, inheriting: bigint): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if ((base & ~f.base) !== 0n || (inheriting & ~f.inheriting) !== 0n) return Errno.NOTCAPABLE;
  f.base = base;
  f.inheriting = inheriting;
  return Errno.SUCCESS;
}

/** fd_sync / fd_datasync: everything lives in memory, there is nothing to flush; the right is still required. */
function fdSync(ctx: WasiCtx, fd: number, need: bigint): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (!isFs(f)) return Errno.SUCCESS;
  if ((f.base & need) === 0n) return Errno.NOTCAPABLE;
  return Errno.SUCCESS;
}

function fdReaddir(ctx: WasiCtx, fd: number, buf: number, bufLen: number, cookie: bigint, bufusedPtr: number): number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind !== 'dir') return Errno.NOTDIR;
  if ((f.base & Rights.FD_READDIR) === 0n) return Errno.NOTCAPABLE;
  const g = ctx.guest();
  if (!g.ok(buf, bufLen) || !g.ok(bufusedPtr, 4)) return Errno.FAULT;
  const dir = f.node;
  const enc = new TextEncoder();
  let used = 0;
  // Serializes one entry, copying the part that fits (the last entry truncated) straight into the checked buffer.
  const put = (next: bigint, name: string, node: VfsNode): boolean => {
    const nameBytes = enc.encode(name);
    const ent = new Uint8Array(DIRENT.SIZE + nameBytes.length);
    const edv = new DataView(ent.buffer);
    edv.setBigUint64(DIRENT.d_next, next, true);
    edv.setBigUint64(DIRENT.d_ino, node.ino, true);
    edv.setUint32(DIRENT.d_namlen, nameBytes.length, true);
    edv.setUint8(DIRENT.d_type, nodeFiletype(node));
    ent.set(nameBytes, DIRENT.SIZE);
    const take = Math.min(ent.length, bufLen - used);
    g.u8.set(ent.subarray(0, take), buf + used);
    used += take;
    return used < bufLen;
  };
  let more = true;
  if (cookie < 1n) more = put(1n, '.', dir);
  if (more && cookie < 2n) more = put(2n, '..', dir.parent && f.node !== f.fs.root ? dir.parent : dir);
  if (more) {
    for (const [name, e] of dir.entries) {
      const c = e.seq + 3n;
      if (c <= cookie) continue;
      if (!put(c, name, e.node)) break;
    }
  }
  g.dv.setUint32(bufusedPtr, used, true);
  return Errno.SUCCESS;
}

function fdPread(ctx: WasiCtx, fd: number, iovs: number, iovsLen: number, offset: bigint, nreadPtr: number): number {
  const f = fileFd(ctx, fd, Rights.FD_READ | Rights.FD_SEEK, Errno.SPIPE);
  if (isErrno(f)) return f;
  return fileRead(ctx, f, iovs, iovsLen, offset, nreadPtr);
}

function fdPwrite(ctx: WasiCtx, fd: number, iovs: number, iovsLen: number, offset: bigint, nwrittenPtr: number): number {
  const f = fileFd(ctx, fd, Rights.FD_WRITE | Rights.FD_SEEK, Errno.SPIPE);
  if (isErrno(f)) return f;
  return fileWrite(ctx, f, iovs, iovsLen, offset, nwrittenPtr);
}

const u64 = (x: bigint): bigint => BigInt.asUintN(64, x);

/** The `fd_*` imports. */
export function fileCalls(ctx: WasiCtx): Record<string, HostFn> {
  return {
    fd_write: (fd: number, iovs: number, n: number, out: number) => fdWrite(ctx, u32(fd), u32(iovs), u32(n), u32(out)),
    fd_read: (fd: number, iovs: number, n: number, out: number) => fdRead(ctx, u32(fd), u32(iovs), u32(n), u32(out)),
    fd_pread: (fd: number, iovs: number, n: number, off: bigint, out: number) => fdPread(ctx, u32(fd), u32(iovs), u32(n), u64(off), u32(out)),
    fd_pwrite: (fd: number, iovs: number, n: number, off: bigint, out: number) => fdPwrite(ctx, u32(fd), u32(iovs), u32(n), u64(off), u32(out)),
    fd_seek: (fd: number, off: bigint, whence: number, out: number) => fdSeek(ctx, u32(fd), off, u32(whence), u32(out), false),
    fd_tell: (fd: number, out: number) => fdSeek(ctx, u32(fd), 0n, WHENCE_CUR, u32(out), true),
    fd_close: (fd: number) => fdClose(ctx, u32(fd)),
    fd_renumber: (from: number, to: number) => fdRenumber(ctx, u32(from), u32(to)),
    fd_fdstat_get: (fd: number, ptr: number) => fdFdstatGet(ctx, u32(fd), u32(ptr)),
    fd_fdstat_set_flags: (fd: number, flags: number) => fdFdstatSetFlags(ctx, u32(fd), u32(flags)),
    fd_fdstat_set_rights: (fd: number, base: bigint, inh: bigint) => fdFdstatSetRights(ctx, u32(fd), u64(base), u64(inh)),
    fd_filestat_get: (fd: number, ptr: number) => fdFilestatGet(ctx, u32(fd), u32(ptr)),
    fd_filestat_set_size: (fd: number, size: bigint) => fdFilestatSetSize(ctx, u32(fd), u64(size)),
    fd_filestat_set_times: (fd: number, atim: bigint, mtim: bigint, fst: number) => fdFilestatSetTimes(ctx, u32(fd), u64(atim), u64(mtim), u32(fst) & 0xffff),
    fd_advise: (fd: number, off: bigint, len: bigint, advice: number) => fdAdvise(ctx, u32(fd), u64(off), u64(len), u32(advice) & 0xff),
    fd_allocate: (fd: number, off: bigint, len: bigint) => fdAllocate(ctx, u32(fd), u64(off), u64(len)),
    fd_sync: (fd: number) => fdSync(ctx, u32(fd), Rights.FD_SYNC),
    fd_datasync: (fd: number) => fdSync(ctx, u32(fd), Rights.FD_DATASYNC),
    fd_readdir: (fd: number, buf: number, len: number, cookie: bigint, out: number) => fdReaddir(ctx, u32(fd), u32(buf), u32(len), u64(cookie), u32(out)),
    fd_prestat_get: (fd: number, ptr: number) => fdPrestatGet(ctx, u32(fd), u32(ptr)),
    fd_prestat_dir_name: (fd: number, path: number, len: number) => fdPrestatDirName(ctx, u32(fd), u32(path), u32(len)),
  };
}

