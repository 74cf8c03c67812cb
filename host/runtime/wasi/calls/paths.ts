/**
 * Path calls (`path_*`), resolved inside a preopen by resolve.ts.
 *
 * Semantics beyond the witx text (Linux's where wasmtime follows it):
 *  - path_open on an existing symlink without LOOKUPFLAGS_SYMLINK_FOLLOW
 *    gives ELOOP (O_NOFOLLOW); opening a directory with FD_WRITE in the
 *    requested base rights, or with CREAT/TRUNC, gives EISDIR; CREAT with
 *    DIRECTORY gives EINVAL; a trailing '/' on a file gives ENOTDIR.
 *  - Removal, rename and link never follow a symlink in the last component,
 *    even with a trailing '/' (which then gives ENOTDIR, as on Linux).
 *  - path_link refuses directories (EPERM) and an existing target (EEXIST);
 *    rename and link across two different filesystems give EXDEV.
 *  - path_symlink refuses an absolute target (ENOTCAPABLE, as wasmtime) and
 *    otherwise stores the target text as given; whether it stays inside the
 *    descriptor's subtree is decided each time it is followed (resolve.ts).
 *  - path_readlink copies as much of the target as fits and reports that
 *    count (truncating, as readlink(2) and wasmtime do).
 *  - Timestamps: a new inode gets atim = mtim = ctim = now; a directory whose
 *    entries change gets mtim = ctim = now; an inode whose link count changes
 *    or that is renamed gets ctim = now. "now" is the VM's realtime clock,
 *    read at most once per call through Nondeterminism.
 */
import {
  Errno,
  FDFLAGS_ALL,
  FILESTAT,
  LOOKUPFLAGS_ALL,
  LOOKUPFLAGS_SYMLINK_FOLLOW,
  OFLAGS_ALL,
  OFLAGS_CREAT,
  OFLAGS_DIRECTORY,
  OFLAGS_EXCL,
  OFLAGS_TRUNC,
  Rights,
} from '../abi.ts';
import type { WasiCtx } from '../ctx.ts';
import { DIR_RIGHTS, FILE_RIGHTS, type DirFd } from '../fdtable.ts';
import { isErrno, u32, type Guest } from '../memory.ts';
import { readPath, resolve, type Resolved } from '../resolve.ts';
import { MAX_DIR_ENTRIES, MAX_SYMLINK_BYTES, resizeFile, type VfsDir } from '../vfs.ts';
import { setTimes, writeFilestat } from './files.ts';

type HostFn = (...args: any[]) => number | void;

/** The directory descriptor a path is resolved against, holding `need`: EBADF if not open, ENOTDIR for a regular file, ENOTCAPABLE for stdio, sockets or a missing right. */
function dirFd(ctx: WasiCtx, fd: number, need: bigint): DirFd | number {
  const f = ctx.fds.get(fd);
  if (!f) return Errno.BADF;
  if (f.kind === 'file') return Errno.NOTDIR;
  // stdio and sockets hold no path rights
  if (f.kind !== 'dir' || (f.base & need) !== need) return Errno.NOTCAPABLE;
  return f;
}

/** Checks, reads and resolves a path argument against a directory fd holding `need`. */
function lookup(ctx: WasiCtx, g: Guest, fd: number, need: bigint, ptr: number, len: number, follow: boolean | 'never'): { dir: DirFd; r: Resolved } | number {
  const dir = dirFd(ctx, fd, need);
  if (isErrno(dir)) return dir;
  const path = readPath(g, ptr, len);
  if (isErrno(path)) return path;
  const r = resolve(dir, path, follow === true, follow !== 'never');
  if (isErrno(r)) return r;
  return { dir, r };
}

/** Marks a directory's entries changed now. */
function dirChanged(ctx: WasiCtx, d: VfsDir): void {
  d.mtimNs = d.ctimNs = ctx.nowNs();
}

function pathOpen(
  ctx: WasiCtx,
  fd: number,
  dirflags: number,
  path: number,
  pathLen: number,
  oflags: number,
  base: bigint,
  inheriting: bigint,
  fdflags: number,
  fdPtr: number,
): number {
  const g = ctx.guest();
  if (!g.ok(path, pathLen) || !g.ok(fdPtr, 4)) return Errno.FAULT;
  if ((dirflags & ~LOOKUPFLAGS_ALL) !== 0 || (oflags & ~OFLAGS_ALL) !== 0 || (fdflags & ~FDFLAGS_ALL) !== 0) {
    return ctx.fds.has(fd) ? Errno.INVAL : Errno.BADF;
  }
  let need = Rights.PATH_OPEN;
  if (oflags & OFLAGS_CREAT) need |= Rights.PATH_CREATE_FILE;
  if (oflags & OFLAGS_TRUNC) need |= Rights.PATH_FILESTAT_SET_SIZE;
  const l = lookup(ctx, g, fd, need, path, pathLen, (dirflags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0);
  if (isErrno(l)) return l;
  const { dir, r } = l;
  const next = ctx.fds.alloc();
  if (next < 0) return -next;
  let node = r.node;
  if (node) {
    if ((oflags & OFLAGS_CREAT) !== 0 && (oflags & OFLAGS_EXCL) !== 0) return Errno.EXIST;
    if (node.kind === 'symlink') return Errno.LOOP;
    if (node.kind === 'file') {
      if ((oflags & OFLAGS_DIRECTORY) !== 0 || r.slash) return Errno.NOTDIR;
      if ((oflags & OFLAGS_TRUNC) !== 0) {
        resizeFile(node, 0, dir.fs.maxFileSize);
        node.mtimNs = node.ctimNs = ctx.nowNs();
      }
    } else if ((oflags & (OFLAGS_TRUNC | OFLAGS_CREAT)) !== 0 || (base & Rights.FD_WRITE) !== 0n) {
      return Errno.ISDIR;
    }
  } else {
    if ((oflags & OFLAGS_CREAT) === 0) return Errno.NOENT;
    if ((oflags & OFLAGS_DIRECTORY) !== 0) return Errno.INVAL;
    if (r.slash) return Errno.ISDIR;
    const parent = r.parent!;
    if (!dir.fs.canCreate(parent)) return Errno.NOSPC;
    const now = ctx.nowNs();
    node = dir.fs.newFile(now);
    dir.fs.link(parent, r.name, node);
    dirChanged(ctx, parent);
  }
  const allowed = base & dir.inheriting;
  const inh = inheriting & dir.inheriting;
  ctx.fds.set(
    next,
    node.kind === 'file'
      ? { kind: 'file', node, fs: dir.fs, offset: 0, flags: fdflags, base: allowed & FILE_RIGHTS, inheriting: inh }
      : { kind: 'dir', node, fs: dir.fs, preopen: null, flags: fdflags, base: allowed & DIR_RIGHTS, inheriting: inh },
  );
  g.dv.setUint32(fdPtr, next, true);
  return Errno.SUCCESS;
}

function pathFilestatGet(ctx: WasiCtx, fd: number, flags: number, path: number, pathLen: number, ptr: number): number {
  const g = ctx.guest();
  if (!g.ok(path, pathLen) || !g.ok(ptr, FILESTAT.SIZE)) return Errno.FAULT;
  if ((flags & ~LOOKUPFLAGS_ALL) !== 0) return ctx.fds.has(fd) ? Errno.INVAL : Errno.BADF;
  const l = lookup(ctx, g, fd, Rights.PATH_FILESTAT_GET, path, pathLen, (flags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0);
  if (isErrno(l)) return l;
  const { node, slash } = l.r;
  if (!node) return Errno.NOENT;
  if (slash && node.kind !== 'dir') return Errno.NOTDIR;
  writeFilestat(g, ptr, node);
  return Errno.SUCCESS;
}

function pathFilestatSetTimes(ctx: WasiCtx, fd: number, flags: number, path: number, pathLen: number, atim: bigint, mtim: bigint, fst: number): number {
  const g = ctx.guest();
  if (!g.ok(path, pathLen)) return Errno.FAULT;
  if ((flags & ~LOOKUPFLAGS_ALL) !== 0) return ctx.fds.has(fd) ? Errno.INVAL : Errno.BADF;
  const l = lookup(ctx, g, fd, Rights.PATH_FILESTAT_SET_TIMES, path, pathLen, (flags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0);
  if (isErrno(l)) return l;
  const { node, slash } = l.r;
  if (!node) return Errno.NOENT;
  if (slash && node.kind !== 'dir') return Errno.NOTDIR;
  return setTimes(ctx, node, atim, mtim, fst);
}

function pathCreateDirectory(ctx: WasiCtx, fd: number, path: number, pathLen: number): number {
  const g = ctx.guest();
  if (!g.ok(path, pathLen)) return Errno.FAULT;
  const l = lookup(ctx, g, fd, Rights.PATH_CREATE_DIRECTORY, path, pathLen, false);
  if (isErrno(l)) return l;
  const { dir, r } = l;
  if (r.node || !r.parent) return Errno.EXIST;
  if (!dir.fs.canCreate(r.parent)) return Errno.NOSPC;
  const d = dir.fs.newDir(r.parent, ctx.nowNs());
  dir.fs.link(r.parent, r.name, d);
  dirChanged(ctx, r.parent);
  return Errno.SUCCESS;
}

/** path_remove_directory (want 'dir') and path_unlink_file (want 'file'; a symlink is unlinked, never followed) */
function pathRemove(ctx: WasiCtx, fd: number, path: number, pathLen: number, want: 'dir' | 'file'): number {
  const g = ctx.guest();
  if (!g.ok(path, pathLen)) return Errno.FAULT;
  const need = want === 'dir' ? Rights.PATH_REMOVE_DIRECTORY : Rights.PATH_UNLINK_FILE;
  const l = lookup(ctx, g, fd, need, path, pathLen, 'never');
  if (isErrno(l)) return l;
  const { dir, r } = l;
  const node = r.node;
  if (!node) return Errno.NOENT;
  if (want === 'dir') {
    if (node.kind !== 'dir') return Errno.NOTDIR;
    if (!r.parent || node === dir.fs.root) return Errno.INVAL; // '.', '..' or the preopen itself
    if (node.entries.size > 0) return Errno.NOTEMPTY;
  } else {
    if (node.kind === 'dir') return Errno.ISDIR;
    if (r.slash) return Errno.NOTDIR;
  }
  const parent = r.parent!;
  dir.fs.unlink(parent, r.name);
  dirChanged(ctx, parent);
  node.ctimNs = ctx.nowNs();
  return Errno.SUCCESS;
}

function pathRename(ctx: WasiCtx, fd: number, oldPath: number, oldLen: number, newFd: number, newPath: number, newLen: number): number {
  const g = ctx.guest();
  if (!g.ok(oldPath, oldLen) || !g.ok(newPath, newLen)) return Errno.FAULT;
  const a = lookup(ctx, g, fd, Rights.PATH_RENAME_SOURCE, oldPath, oldLen, 'never');
  if (isErrno(a)) return a;
  const b = lookup(ctx, g, newFd, Rights.PATH_RENAME_TARGET, newPath, newLen, 'never');
  if (isErrno(b)) return b;
  const from = a.r;
  const to = b.r;
  const node = from.node;
  if (!node) return Errno.NOENT;
  if (a.dir.fs !== b.dir.fs) return Errno.XDEV;
  const fs = a.dir.fs;
  if (!from.parent || !to.parent || node === fs.root) return Errno.INVAL; // '.' or '..' at either end
  if (node.kind !== 'dir' && (from.slash || to.slash)) return Errno.NOTDIR;
  const target = to.node;
  if (target === node) return Errno.SUCCESS; // the same inode (the same entry, or two hard links): nothing to do
  if (node.kind === 'dir') {
    // not into itself or its own subtree
    for (let d: VfsDir | null = to.parent; d; d = d.parent) if (d === node) return Errno.INVAL;
  }
  if (target) {
    if (node.kind === 'dir' && target.kind !== 'dir') return Errno.NOTDIR;
    if (node.kind !== 'dir' && target.kind === 'dir') return Errno.ISDIR;
    if (target.kind === 'dir' && target.entries.size > 0) return Errno.NOTEMPTY;
  }
  if (!target && to.parent !== from.parent && to.parent.entries.size >= MAX_DIR_ENTRIES) return Errno.NOSPC;
  const now = ctx.nowNs();
  if (target) {
    fs.unlink(to.parent, to.name);
    target.ctimNs = now;
  }
  // Unlink first: for a file, nlink stays what it was once linked again; a directory gets its new parent.
  fs.unlink(from.parent, from.name);
  fs.link(to.parent, to.name, node);
  node.ctimNs = now;
  dirChanged(ctx, from.parent);
  dirChanged(ctx, to.parent);
  return Errno.SUCCESS;
}

function pathLink(ctx: WasiCtx, oldFd: number, oldFlags: number, oldPath: number, oldLen: number, newFd: number, newPath: number, newLen: number): number {
  const g = ctx.guest();
  if (!g.ok(oldPath, oldLen) || !g.ok(newPath, newLen)) return Errno.FAULT;
  if ((oldFlags & ~LOOKUPFLAGS_ALL) !== 0) return ctx.fds.has(oldFd) ? Errno.INVAL : Errno.BADF;
  const a = lookup(ctx, g, oldFd, Rights.PATH_LINK_SOURCE, oldPath, oldLen, (oldFlags & LOOKUPFLAGS_SYMLINK_FOLLOW) !== 0);
  if (isErrno(a)) return a;
  const b = lookup(ctx, g, newFd, Rights.PATH_LINK_TARGET, newPath, newLen, 'never');
  if (isErrno(b)) return b;
  const node = a.r.node;
  if (!node) return Errno.NOENT;
  if (node.kind === 'dir') return Errno.PERM;
  if (a.r.slash) return Errno.NOTDIR;
  if (b.r.node || !b.r.parent) return Errno.EXIST;
  if (b.r.slash) return Errno.NOENT;
  if (a.dir.fs !== b.dir.fs) return Errno.XDEV;
  if (b.r.parent.entries.size >= MAX_DIR_ENTRIES) return Errno.NOSPC;
  b.dir.fs.link(b.r.parent, b.r.name, node);
  node.ctimNs = ctx.nowNs();
  dirChanged(ctx, b.r.parent);
  return Errno.SUCCESS;
}

function pathReadlink(ctx: WasiCtx, fd: number, path: number, pathLen: number, buf: number, bufLen: number, bufusedPtr: number): number {
  const g = ctx.guest();
  if (!g.ok(path, pathLen) || !g.ok(buf, bufLen) || !g.ok(bufusedPtr, 4)) return Errno.FAULT;
  const l = lookup(ctx, g, fd, Rights.PATH_READLINK, path, pathLen, 'never');
  if (isErrno(l)) return l;
  const node = l.r.node;
  if (!node) return Errno.NOENT;
  if (node.kind !== 'symlink' || l.r.slash) return Errno.INVAL;
  const bytes = new TextEncoder().encode(node.target);
  const n = Math.min(bytes.length, bufLen);
  g.u8.set(bytes.subarray(0, n), buf);
  g.dv.setUint32(bufusedPtr, n, true);
  return Errno.SUCCESS;
}

function pathSymlink(ctx: WasiCtx, oldPath: number, oldLen: number, fd: number, newPath: number, newLen: number): number {
  const g = ctx.guest();
  if (!g.ok(oldPath, oldLen) || !g.ok(newPath, newLen)) return Errno.FAULT;
  const target = readPath(g, oldPath, oldLen);
  if (isErrno(target)) return target;
  if (Buffer.byteLength(target) > MAX_SYMLINK_BYTES) return Errno.NAMETOOLONG;
  // An absolute target could never be followed inside a preopen: refused at creation, as wasmtime does.
  if (target.startsWith('/')) return Errno.NOTCAPABLE;
  const l = lookup(ctx, g, fd, Rights.PATH_SYMLINK, newPath, newLen, 'never');
  if (isErrno(l)) return l;
  const { dir, r } = l;
  if (r.node || !r.parent) return r.node && r.node.kind !== 'dir' && r.slash ? Errno.NOTDIR : Errno.EXIST;
  if (r.slash) return Errno.NOENT;
  if (!dir.fs.canCreate(r.parent)) return Errno.NOSPC;
  const now = ctx.nowNs();
  dir.fs.link(r.parent, r.name, dir.fs.newSymlink(target, now));
  dirChanged(ctx, r.parent);
  return Errno.SUCCESS;
}

const u64 = (x: bigint): bigint => BigInt.asUintN(64, x);

/** The `path_*` imports. */
export function pathCalls(ctx: WasiCtx): Record<string, HostFn> {
  return {
    path_open: (fd: number, dirflags: number, path: number, len: number, oflags: number, base: bigint, inh: bigint, fdflags: number, out: number) =>
      pathOpen(ctx, u32(fd), u32(dirflags), u32(path), u32(len), u32(oflags) & 0xffff, u64(base), u64(inh), u32(fdflags) & 0xffff, u32(out)),
    path_filestat_get: (fd: number, flags: number, path: number, len: number, ptr: number) =>
      pathFilestatGet(ctx, u32(fd), u32(flags), u32(path), u32(len), u32(ptr)),
    path_filestat_set_times: (fd: number, flags: number, path: number, len: number, atim: bigint, mtim: bigint, fst: number) =>
      pathFilestatSetTimes(ctx, u32(fd), u32(flags), u32(path), u32(len), u64(atim), u64(mtim), u32(fst) & 0xffff),
    path_create_directory: (fd: number, path: number, len: number) => pathCreateDirectory(ctx, u32(fd), u32(path), u32(len)),
    path_remove_directory: (fd: number, path: number, len: number) => pathRemove(ctx, u32(fd), u32(path), u32(len), 'dir'),
    path_unlink_file: (fd: number, path: number, len: number) => pathRemove(ctx, u32(fd), u32(path), u32(len), 'file'),
    path_rename: (fd: number, op: number, ol: number, nfd: number, np: number, nl: number) =>
      pathRename(ctx, u32(fd), u32(op), u32(ol), u32(nfd), u32(np), u32(nl)),
    path_link: (ofd: number, oflags: number, op: number, ol: number, nfd: number, np: number, nl: number) =>
      pathLink(ctx, u32(ofd), u32(oflags), u32(op), u32(ol), u32(nfd), u32(np), u32(nl)),
    path_readlink: (fd: number, path: number, len: number, buf: number, bufLen: number, out: number) =>
      pathReadlink(ctx, u32(fd), u32(path), u32(len), u32(buf), u32(bufLen), u32(out)),
    path_symlink: (op: number, ol: number, fd: number, np: number, nl: number) => pathSymlink(ctx, u32(op), u32(ol), u32(fd), u32(np), u32(nl)),
  };
}
