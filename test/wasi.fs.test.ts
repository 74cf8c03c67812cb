// The in-memory filesystem (VirtualFs) preopened as fd 3 "/": path_open and
// the fd_* / path_* calls on files and directories, path confinement, EFAULT
// without side effects, deterministic fds/inodes/timestamps, and the state
// digest (deviceState) — through a hand-written WAT module that re-exports
// the imports, and through the C sample guest fsdemo (wasi-libc stdio).
import { describe, it, expect } from 'vitest';
import binaryen from 'binaryen';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WASI } from 'node:wasi';
import { createHash } from 'node:crypto';
import { runGuest, type GuestContext } from '../host/runtime/guest.ts';
import { DIR_RIGHTS, WASI_MODULE, WasiHost, VirtualFs, type Nondeterminism } from '../host/runtime/wasi.ts';
import { guestPath } from '../host/runtime/samples.ts';
import { fixedNondeterminism, sampleBytes, samples, text } from './helpers.ts';

const EBADF = 8;
const EEXIST = 20;
const EFAULT = 21;
const EINVAL = 28;
const EISDIR = 31;
const ENOENT = 44;
const ENOTDIR = 54;
const ENOTEMPTY = 55;
const ESPIPE = 70;
const ENOTCAPABLE = 76;

const CREAT = 1;
const DIRECTORY = 2;
const EXCL = 4;
const TRUNC = 8;
const APPEND = 1;
const SET = 0;
const CUR = 1;
const END = 2;

const PAGE = 65536;

// name -> wasm param types (every function returns i32)
const SIGS: Record<string, string[]> = {
  path_open: ['i32', 'i32', 'i32', 'i32', 'i32', 'i64', 'i64', 'i32', 'i32'],
  fd_read: ['i32', 'i32', 'i32', 'i32'],
  fd_write: ['i32', 'i32', 'i32', 'i32'],
  fd_pread: ['i32', 'i32', 'i32', 'i64', 'i32'],
  fd_pwrite: ['i32', 'i32', 'i32', 'i64', 'i32'],
  fd_seek: ['i32', 'i64', 'i32', 'i32'],
  fd_tell: ['i32', 'i32'],
  fd_close: ['i32'],
  fd_sync: ['i32'],
  fd_datasync: ['i32'],
  fd_filestat_get: ['i32', 'i32'],
  fd_filestat_set_size: ['i32', 'i64'],
  fd_fdstat_get: ['i32', 'i32'],
  fd_fdstat_set_flags: ['i32', 'i32'],
  fd_readdir: ['i32', 'i32', 'i32', 'i64', 'i32'],
  fd_prestat_get: ['i32', 'i32'],
  fd_prestat_dir_name: ['i32', 'i32', 'i32'],
  path_filestat_get: ['i32', 'i32', 'i32', 'i32', 'i32'],
  path_create_directory: ['i32', 'i32', 'i32'],
  path_remove_directory: ['i32', 'i32', 'i32'],
  path_unlink_file: ['i32', 'i32', 'i32'],
  path_rename: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
};

function wat(): string {
  const lines = ['(module'];
  for (const [name, ps] of Object.entries(SIGS)) {
    lines.push(`  (import "wasi_snapshot_preview1" "${name}" (func $${name} (param ${ps.join(' ')}) (result i32)))`);
  }
  lines.push('  (memory (export "memory") 1)');
  for (const [name, ps] of Object.entries(SIGS)) {
    const args = ps.map((_, i) => `(local.get ${i})`).join(' ');
    lines.push(`  (func (export "${name}") (param ${ps.join(' ')}) (result i32) (call $${name} ${args}))`);
  }
  lines.push(')');
  return lines.join('\n');
}

let compiled: WebAssembly.Module | undefined;
function module(): WebAssembly.Module {
  if (!compiled) {
    const mod = binaryen.parseText(wat());
    try {
      if (!mod.validate()) throw new Error('invalid test module');
      compiled = new WebAssembly.Module(new Uint8Array(mod.emitBinary()));
    } finally {
      mod.dispose();
    }
  }
  return compiled;
}

// scratch layout: 0 result u32/u64, 16 iovec, 64 second result, 128 filestat/fdstat, 1024.. strings, 8192.. data
const RES = 0;
const IOV = 16;
const RES2 = 64;
const STAT = 128;
const STR = 1024;
const DATA = 8192;
const enc = new TextEncoder();

class G {
  readonly host: WasiHost;
  readonly memory: WebAssembly.Memory;
  private readonly ex: Record<string, (...a: (number | bigint)[]) => number>;
  private strAt = STR;
  /** the preopen "/": fd 3, or 4 after the listening socket (wasmtime's layout) */
  readonly dirFd: number;
  constructor(
    readonly fs: VirtualFs,
    nondeterminism?: Nondeterminism,
    listen = false,
  ) {
    this.dirFd = listen ? 4 : 3;
    this.host = new WasiHost({ args: ['t'], env: {}, stdout: () => {}, stderr: () => {}, fs, nondeterminism, listen });
    const inst = new WebAssembly.Instance(module(), { [WASI_MODULE]: this.host.imports });
    this.memory = inst.exports['memory'] as WebAssembly.Memory;
    this.host.bindMemory(this.memory);
    this.ex = inst.exports as never;
  }
  get dv(): DataView {
    return new DataView(this.memory.buffer);
  }
  get u8(): Uint8Array {
    return new Uint8Array(this.memory.buffer);
  }
  call(name: string, ...a: (number | bigint)[]): number {
    this.strAt = STR;
    return this.ex[name]!(...a);
  }
  /** places a string in guest memory and returns [ptr, len] (valid until the next call) */
  str(s: string): [number, number] {
    const b = enc.encode(s);
    const p = this.strAt;
    this.u8.set(b, p);
    this.strAt += b.length + 8;
    return [p, b.length];
  }
  open(path: string, oflags = 0, fdflags = 0, dirfd = this.dirFd): { err: number; fd: number } {
    this.dv.setUint32(RES, 0xdead, true);
    const [p, n] = this.str(path);
    // every right for a file; a directory opened with FD_WRITE would be EISDIR
    const base = oflags & DIRECTORY ? DIR_RIGHTS : -1n;
    const err = this.ex['path_open']!(dirfd, 0, p, n, oflags, base, -1n, fdflags, RES);
    this.strAt = STR;
    return { err, fd: this.dv.getUint32(RES, true) };
  }
  openOk(path: string, oflags = 0, fdflags = 0, dirfd = this.dirFd): number {
    const r = this.open(path, oflags, fdflags, dirfd);
    expect(r.err, `open ${path}`).toBe(0);
    return r.fd;
  }
  write(fd: number, s: string, at?: bigint): number {
    const b = enc.encode(s);
    this.u8.set(b, DATA);
    this.dv.setUint32(IOV, DATA, true);
    this.dv.setUint32(IOV + 4, b.length, true);
    const err = at === undefined ? this.call('fd_write', fd, IOV, 1, RES2) : this.call('fd_pwrite', fd, IOV, 1, at, RES2);
    if (err === 0) expect(this.dv.getUint32(RES2, true)).toBe(b.length);
    return err;
  }
  read(fd: number, max = 4096, at?: bigint): { err: number; text: string } {
    this.dv.setUint32(IOV, DATA, true);
    this.dv.setUint32(IOV + 4, max, true);
    const err = at === undefined ? this.call('fd_read', fd, IOV, 1, RES2) : this.call('fd_pread', fd, IOV, 1, at, RES2);
    const n = err === 0 ? this.dv.getUint32(RES2, true) : 0;
    return { err, text: Buffer.from(this.u8.subarray(DATA, DATA + n)).toString() };
  }
  seek(fd: number, off: bigint, whence: number): { err: number; pos: bigint } {
    const err = this.call('fd_seek', fd, off, whence, RES);
    return { err, pos: this.dv.getBigUint64(RES, true) };
  }
  path(name: string, fd: number, path: string): number {
    const [p, n] = this.str(path);
    const r = this.ex[name]!(fd, p, n);
    this.strAt = STR;
    return r;
  }
  rename(from: string, to: string, fromFd = this.dirFd, toFd = this.dirFd): number {
    const [p1, n1] = this.str(from);
    const [p2, n2] = this.str(to);
    const r = this.ex['path_rename']!(fromFd, p1, n1, toFd, p2, n2);
    this.strAt = STR;
    return r;
  }
  stat(path: string, fd = this.dirFd): { err: number; ino: bigint; type: number; nlink: bigint; size: bigint; times: bigint[] } {
    const [p, n] = this.str(path);
    this.u8.fill(0xee, STAT, STAT + 64);
    const err = this.ex['path_filestat_get']!(fd, 0, p, n, STAT);
    this.strAt = STR;
    return this.filestat(err);
  }
  fstat(fd: number): ReturnType<G['stat']> {
    this.u8.fill(0xee, STAT, STAT + 64);
    return this.filestat(this.call('fd_filestat_get', fd, STAT));
  }
  private filestat(err: number): ReturnType<G['stat']> {
    const dv = this.dv;
    return {
      err,
      ino: dv.getBigUint64(STAT + 8, true),
      type: dv.getUint8(STAT + 16),
      nlink: dv.getBigUint64(STAT + 24, true),
      size: dv.getBigUint64(STAT + 32, true),
      times: [dv.getBigUint64(STAT + 40, true), dv.getBigUint64(STAT + 48, true), dv.getBigUint64(STAT + 56, true)],
    };
  }
  /** reads the whole directory with buffers of `bufLen` bytes, following cookies; returns [name, ino, type, next] */
  readdir(fd: number, bufLen = 4096): [string, bigint, number, bigint][] {
    const out: [string, bigint, number, bigint][] = [];
    let cookie = 0n;
    for (;;) {
      expect(this.call('fd_readdir', fd, DATA, bufLen, cookie, RES)).toBe(0);
      const used = this.dv.getUint32(RES, true);
      let p = 0;
      let progressed = false;
      while (p + 24 <= used) {
        const dv = this.dv;
        const next = dv.getBigUint64(DATA + p, true);
        const ino = dv.getBigUint64(DATA + p + 8, true);
        const namlen = dv.getUint32(DATA + p + 16, true);
        const type = dv.getUint8(DATA + p + 20);
        if (p + 24 + namlen > used) break; // truncated: re-read from this entry's cookie
        out.push([Buffer.from(this.u8.subarray(DATA + p + 24, DATA + p + 24 + namlen)).toString(), ino, type, next]);
        cookie = next;
        progressed = true;
        p += 24 + namlen;
      }
      if (used < bufLen) return out;
      if (!progressed) throw new Error(`buffer of ${bufLen} bytes too small for one entry`);
    }
  }
}

const ftext = (fs: VirtualFs, path: string): string | undefined => {
  const b = fs.readFile(path);
  return b && Buffer.from(b).toString();
};

describe('VirtualFs through WASI calls', () => {
  it('preopen: fd 3 is the directory "/"', () => {
    // Proves: fd_prestat_get/fd_prestat_dir_name describe fd 3 as a directory preopen named "/", fdstat says directory, other fds are not preopens.
    const g = new G(new VirtualFs());
    expect(g.call('fd_prestat_get', 3, RES)).toBe(0);
    expect(g.u8[RES]).toBe(0);
    expect(g.dv.getUint32(RES + 4, true)).toBe(1);
    expect(g.call('fd_prestat_dir_name', 3, RES2, 1)).toBe(0);
    expect(String.fromCharCode(g.u8[RES2]!)).toBe('/');
    expect(g.call('fd_prestat_dir_name', 3, PAGE - 0, 1)).toBe(EFAULT);
    expect(g.call('fd_prestat_get', 4, RES)).toBe(EBADF);
    expect(g.call('fd_fdstat_get', 3, STAT)).toBe(0);
    expect(g.u8[STAT]).toBe(3);
    const fd = g.openOk('f', CREAT);
    expect(g.call('fd_prestat_get', fd, RES)).toBe(EBADF);
    expect(g.call('fd_fdstat_get', fd, STAT)).toBe(0);
    expect(g.u8[STAT]).toBe(4);
  });

  it('create, write, read back, append, seek/tell, pread/pwrite, truncate', () => {
    // Proves: the basic file I/O calls behave like POSIX on the in-memory tree, and the VirtualFs sees the bytes.
    const fs = new VirtualFs();
    const g = new G(fs, undefined, true);
    expect(g.open('a.txt').err).toBe(ENOENT);
    const fd = g.openOk('a.txt', CREAT);
    expect(fd).toBe(5); // after stdio, the listening socket and the preopen
    expect(g.write(fd, 'hello ')).toBe(0);
    expect(g.write(fd, 'world')).toBe(0);
    expect(ftext(fs, 'a.txt')).toBe('hello world');
    expect(g.read(fd).text).toBe(''); // at the end
    expect(g.seek(fd, 0n, SET)).toEqual({ err: 0, pos: 0n });
    expect(g.read(fd, 5).text).toBe('hello');
    expect(g.call('fd_tell', fd, RES)).toBe(0);
    expect(g.dv.getBigUint64(RES, true)).toBe(5n);
    expect(g.seek(fd, 1n, CUR)).toEqual({ err: 0, pos: 6n });
    expect(g.read(fd).text).toBe('world');
    expect(g.seek(fd, -5n, END)).toEqual({ err: 0, pos: 6n });
    expect(g.write(fd, 'W')).toBe(0);
    expect(ftext(fs, 'a.txt')).toBe('hello World');
    expect(g.seek(fd, -100n, CUR).err).toBe(EINVAL);
    expect(g.seek(fd, 0n, 7).err).toBe(EINVAL);
    expect(g.seek(fd, 0n, CUR).pos).toBe(7n); // unchanged by the failed seeks
    // pread/pwrite do not move the offset
    expect(g.read(fd, 3, 1n).text).toBe('ell');
    expect(g.write(fd, 'HE', 0n)).toBe(0);
    expect(g.seek(fd, 0n, CUR).pos).toBe(7n);
    expect(ftext(fs, 'a.txt')).toBe('HEllo World');
    // seeking past the end and writing leaves a zero-filled hole
    expect(g.seek(fd, 13n, SET).pos).toBe(13n);
    expect(g.write(fd, '!')).toBe(0);
    expect(Array.from(fs.readFile('a.txt')!.subarray(11))).toEqual([0, 0, 33]);
    // fd_filestat_set_size shrinks and grows (zero-filled)
    expect(g.call('fd_filestat_set_size', fd, 5n)).toBe(0);
    expect(ftext(fs, 'a.txt')).toBe('HEllo');
    expect(g.call('fd_filestat_set_size', fd, 7n)).toBe(0);
    expect(Array.from(fs.readFile('a.txt')!)).toEqual([...enc.encode('HEllo'), 0, 0]);
    expect(g.fstat(fd).size).toBe(7n);
    expect(g.call('fd_sync', fd)).toBe(0);
    expect(g.call('fd_datasync', fd)).toBe(0);
    expect(g.call('fd_close', fd)).toBe(0);
    expect(g.call('fd_close', fd)).toBe(EBADF);
    expect(g.call('fd_sync', fd)).toBe(EBADF);
    // APPEND: every write goes to the end, whatever the offset
    const ap = g.openOk('a.txt', 0, APPEND);
    expect(g.seek(ap, 0n, SET).pos).toBe(0n);
    expect(g.write(ap, 'X')).toBe(0);
    expect(g.write(ap, 'Y')).toBe(0);
    expect(Buffer.from(fs.readFile('a.txt')!.subarray(7)).toString()).toBe('XY');
    expect(g.seek(ap, 0n, CUR).pos).toBe(9n);
    // TRUNC empties an existing file
    const tr = g.openOk('a.txt', TRUNC);
    expect(fs.readFile('a.txt')!.length).toBe(0);
    expect(g.read(tr).text).toBe('');
    // stdio cannot seek, pread or be truncated; directories cannot be read as files
    expect(g.seek(1, 0n, SET).err).toBe(ESPIPE);
    expect(g.read(0, 1, 0n).err).toBe(ESPIPE);
    expect(g.call('fd_filestat_set_size', 1, 0n)).toBe(EINVAL);
    expect(g.read(g.dirFd).err).toBe(EISDIR);
    expect(g.write(g.dirFd, 'x')).toBe(EISDIR);
    expect(g.call('fd_filestat_set_size', g.dirFd, 0n)).toBe(EISDIR);
  });

  it('path_open flags: CREAT|EXCL, DIRECTORY, trailing slash, errors', () => {
    // Proves: EEXIST / ENOENT / ENOTDIR / EISDIR / EINVAL as POSIX open(2) reports them, and no side effects on failure.
    const fs = VirtualFs.fromEntries({ 'f.txt': 'x', 'd/g.txt': 'y', 'd/e/': '' });
    const g = new G(fs);
    expect(g.open('f.txt', CREAT | EXCL).err).toBe(EEXIST);
    expect(g.open('new', EXCL).err).toBe(ENOENT);
    expect(g.open('f.txt', DIRECTORY).err).toBe(ENOTDIR);
    expect(g.open('f.txt/').err).toBe(ENOTDIR);
    expect(g.open('f.txt/x').err).toBe(ENOTDIR);
    expect(g.open('d', TRUNC).err).toBe(EISDIR);
    expect(g.open('d', CREAT).err).toBe(EISDIR);
    expect(g.open('nope/x', CREAT).err).toBe(ENOENT);
    expect(g.open('newdir', CREAT | DIRECTORY).err).toBe(EINVAL);
    expect(g.open('', 0).err).toBe(ENOENT);
    expect(g.open('f.txt', 0x10).err).toBe(EINVAL); // unknown oflag
    expect(g.open('f.txt', 0, 0x20).err).toBe(EINVAL); // unknown fdflag
    expect(g.open('f.txt', 0, 0, 9).err).toBe(EBADF);
    expect(g.open('f.txt', 0, 0, 1).err).toBe(ENOTCAPABLE); // stdio resolves no paths
    const f = g.openOk('f.txt');
    expect(g.open('x', CREAT, 0, f).err).toBe(ENOTDIR); // a file is no directory fd
    expect(fs.list()).toEqual(['d', 'f.txt']);
    // a directory fd resolves relative paths; '..' may come back to it, never climb above it (wasmtime's rule)
    const d = g.openOk('d', DIRECTORY);
    expect(g.read(g.openOk('g.txt', 0, 0, d)).text).toBe('y');
    expect(g.read(g.openOk('e/../g.txt', 0, 0, d)).text).toBe('y');
    expect(g.open('../f.txt', 0, 0, d).err).toBe(ENOTCAPABLE);
    expect(g.read(g.openOk('./d/../d/g.txt')).text).toBe('y');
    expect(g.openOk('.', DIRECTORY)).toBeGreaterThan(3);
  });

  it('escape attempts are refused with ENOTCAPABLE, whatever exists', () => {
    // Proves: absolute paths and any '..' climbing above the preopen fail for every path call, even via a subdirectory fd, and create nothing.
    const fs = VirtualFs.fromEntries({ 'sub/x': 'x' });
    const g = new G(fs);
    const before = fs.snapshot();
    for (const p of ['../x', '/etc/passwd', '/', '..', 'sub/../../x', 'sub/../..', './../sub/x']) {
      expect(g.open(p).err, p).toBe(ENOTCAPABLE);
      expect(g.open(p, CREAT).err, p).toBe(ENOTCAPABLE);
      expect(g.stat(p).err, p).toBe(ENOTCAPABLE);
      expect(g.path('path_create_directory', 3, p), p).toBe(ENOTCAPABLE);
      expect(g.path('path_unlink_file', 3, p), p).toBe(ENOTCAPABLE);
      expect(g.path('path_remove_directory', 3, p), p).toBe(ENOTCAPABLE);
      expect(g.rename('sub/x', p), p).toBe(ENOTCAPABLE);
      expect(g.rename(p, 'y'), p).toBe(ENOTCAPABLE);
    }
    // resolution is physical, component by component (symlinks make a lexical check wrong): a missing directory stops it first
    expect(g.open('nonexistent/../../x').err).toBe(ENOENT);
    const sub = g.openOk('sub', DIRECTORY);
    expect(g.open('../../x', 0, 0, sub).err).toBe(ENOTCAPABLE);
    expect(g.open('../sub/x', 0, 0, sub).err).toBe(ENOTCAPABLE);
    expect(fs.snapshot()).toBe(before);
  });

  it('mkdir, rmdir (ENOTEMPTY), unlink, rename', () => {
    // Proves: directory and name operations, with the POSIX errors.
    const fs = VirtualFs.fromEntries({ 'a.txt': 'A' });
    const g = new G(fs);
    expect(g.path('path_create_directory', 3, 'dir')).toBe(0);
    expect(g.path('path_create_directory', 3, 'dir')).toBe(EEXIST);
    expect(g.path('path_create_directory', 3, 'a.txt')).toBe(EEXIST);
    expect(g.path('path_create_directory', 3, 'missing/dir')).toBe(ENOENT);
    expect(g.path('path_create_directory', 3, 'dir/inner')).toBe(0);
    expect(g.path('path_remove_directory', 3, 'dir')).toBe(ENOTEMPTY);
    expect(g.path('path_remove_directory', 3, 'a.txt')).toBe(ENOTDIR);
    expect(g.path('path_remove_directory', 3, '.')).toBe(EINVAL);
    expect(g.path('path_remove_directory', 3, 'nope')).toBe(ENOENT);
    expect(g.path('path_unlink_file', 3, 'dir')).toBe(EISDIR);
    expect(g.path('path_unlink_file', 3, 'nope')).toBe(ENOENT);
    expect(g.path('path_remove_directory', 3, 'dir/inner')).toBe(0);
    expect(g.path('path_remove_directory', 3, 'dir')).toBe(0);
    expect(fs.list()).toEqual(['a.txt']);
    // rename a file, over another file, into a directory
    expect(g.rename('a.txt', 'b.txt')).toBe(0);
    expect(fs.list()).toEqual(['b.txt']);
    expect(ftext(fs, 'b.txt')).toBe('A');
    fs.writeFile('c.txt', enc.encode('C'));
    expect(g.rename('c.txt', 'b.txt')).toBe(0); // replaces
    expect(fs.list()).toEqual(['b.txt']);
    expect(ftext(fs, 'b.txt')).toBe('C');
    expect(g.path('path_create_directory', 3, 'd')).toBe(0);
    expect(g.rename('b.txt', 'd/b.txt')).toBe(0);
    expect(fs.list('d')).toEqual(['b.txt']);
    expect(g.rename('nope', 'x')).toBe(ENOENT);
    expect(g.rename('d', 'd/inside')).toBe(EINVAL);
    expect(g.path('path_create_directory', 3, 'e')).toBe(0);
    expect(g.rename('d/b.txt', 'e')).toBe(EISDIR);
    expect(g.rename('e', 'd/b.txt')).toBe(ENOTDIR);
    expect(g.rename('e', 'd')).toBe(ENOTEMPTY);
    expect(g.rename('d', 'e')).toBe(0); // over an empty directory
    expect(fs.list()).toEqual(['e']);
    expect(fs.list('e')).toEqual(['b.txt']);
    // an open file keeps working after rename and unlink
    const fd = g.openOk('e/b.txt');
    expect(g.rename('e/b.txt', 'moved')).toBe(0);
    expect(g.path('path_unlink_file', 3, 'moved')).toBe(0);
    expect(fs.list()).toEqual(['e']);
    expect(g.read(fd).text).toBe('C');
    // a directory fd whose directory was removed resolves nothing
    expect(g.path('path_create_directory', 3, 'gone')).toBe(0);
    const gone = g.openOk('gone', DIRECTORY);
    expect(g.path('path_remove_directory', 3, 'gone')).toBe(0);
    expect(g.open('x', CREAT, 0, gone).err).toBe(ENOENT);
    // [fd, 'dir', filesystem, inode, preopen, fdflags, rights]; the removed directory is kept (unlinked) in the snapshot
    expect(JSON.parse(g.host.deviceState()).fds.find((f: unknown[]) => f[0] === gone).slice(0, 6)).toEqual([gone, 'dir', 0, 8, null, 0]);
  });

  it('files cannot grow past maxFileSize (EFBIG)', () => {
    // Proves: writes, pwrites and set_size beyond the limit fail without changing the file.
    const fs = new VirtualFs({ maxFileSize: 8 });
    const g = new G(fs);
    const fd = g.openOk('f', CREAT);
    expect(g.write(fd, '12345678')).toBe(0);
    expect(g.write(fd, '9')).toBe(22);
    expect(g.write(fd, 'x', 8n)).toBe(22);
    expect(g.call('fd_filestat_set_size', fd, 9n)).toBe(22);
    expect(ftext(fs, 'f')).toBe('12345678');
  });

  it('fd_readdir: ".", "..", sorted entries, cookies, dirent layout, truncated last entry', () => {
    // Proves: the preview1 dirent layout (d_next, d_ino, d_namlen, d_type, name), resumption by cookie, and that a small buffer is filled completely with the last entry truncated.
    const fs = VirtualFs.fromEntries({ 'zeta.txt': 'z', 'alpha.txt': 'aa', 'mid/': '' });
    const g = new G(fs);
    const all = g.readdir(3);
    expect(all.map((e) => e[0])).toEqual(['.', '..', 'alpha.txt', 'mid', 'zeta.txt']);
    expect(all.map((e) => e[2])).toEqual([3, 3, 4, 3, 4]);
    expect(all.map((e) => e[3])).toEqual([1n, 2n, 3n, 4n, 5n]);
    expect(all[0]![1]).toBe(1n); // root inode
    expect(all[2]![1]).toBe(g.stat('alpha.txt').ino);
    // small buffers give the same listing
    for (const len of [40, 50, 64, 100]) expect(g.readdir(3, len)).toEqual(all);
    // an exact truncation: 30 bytes = the 25-byte "." entry + 5 bytes of ".."'s header
    expect(g.call('fd_readdir', 3, DATA, 30, 0n, RES)).toBe(0);
    expect(g.dv.getUint32(RES, true)).toBe(30);
    expect(g.dv.getBigUint64(DATA + 8, true)).toBe(1n); // "." : d_ino of the root
    expect(g.dv.getUint32(DATA + 16, true)).toBe(1); // d_namlen
    expect(g.u8[DATA + 24]).toBe(46); // "."
    expect(g.u8[DATA + 25]).toBe(2); // ".."'s d_next, cut off after 5 bytes
    // from a cookie past the end: nothing
    expect(g.call('fd_readdir', 3, DATA, 100, 99n, RES)).toBe(0);
    expect(g.dv.getUint32(RES, true)).toBe(0);
    // a subdirectory fd: ".." is its parent
    const mid = g.openOk('mid', DIRECTORY);
    expect(g.readdir(mid).map((e) => [e[0], e[1]])).toEqual([
      ['.', g.stat('mid').ino],
      ['..', 1n],
    ]);
    expect(g.call('fd_readdir', g.openOk('zeta.txt'), DATA, 100, 0n, RES)).toBe(ENOTDIR);
    expect(g.call('fd_readdir', 3, PAGE - 10, 100, 0n, RES)).toBe(EFAULT);
  });

  it('filestat: deterministic inodes, sizes, link counts, and timestamps from the VM clock', () => {
    // Proves: inode numbers are assigned incrementally at creation (root 1); nlink counts names (a directory 2 + subdirectories); a preloaded file keeps the times it was given (0) and a created one gets the VM's realtime clock.
    const fs = VirtualFs.fromEntries({ 'b.txt': 'bbb', 'a.txt': 'a' });
    const clock = { clockNs: () => 7n, clockResolutionNs: () => 1n, randomFill: () => {} };
    const g = new G(fs, clock);
    // fromEntries creates in sorted order: a.txt = 2, b.txt = 3
    expect(g.stat('a.txt')).toEqual({ err: 0, ino: 2n, type: 4, nlink: 1n, size: 1n, times: [0n, 0n, 0n] });
    expect(g.stat('b.txt')).toMatchObject({ ino: 3n, size: 3n });
    expect(g.stat('.')).toMatchObject({ err: 0, ino: 1n, type: 3, times: [0n, 0n, 0n] });
    expect(g.stat('b.txt/')).toMatchObject({ err: ENOTDIR });
    expect(g.stat('nope').err).toBe(ENOENT);
    const fd = g.openOk('new', CREAT);
    expect(g.fstat(fd)).toEqual({ err: 0, ino: 4n, type: 4, nlink: 1n, size: 0n, times: [7n, 7n, 7n] });
    expect(g.path('path_create_directory', 3, 'dir')).toBe(0);
    expect(g.stat('dir')).toMatchObject({ ino: 5n, type: 3, nlink: 2n, times: [7n, 7n, 7n] });
    expect(g.stat('.')).toMatchObject({ nlink: 3n, times: [0n, 7n, 7n] });
  });

  it('fds are the lowest free number >= 5', () => {
    // Proves: deterministic fd allocation; closing stdio, the preopen or the listening socket does not hand those numbers out.
    const g = new G(VirtualFs.fromEntries({ f: '' }), undefined, true);
    expect([g.openOk('f'), g.openOk('f'), g.openOk('f')]).toEqual([5, 6, 7]);
    expect(g.call('fd_close', 6)).toBe(0);
    expect(g.call('fd_close', 0)).toBe(0);
    expect(g.call('fd_close', 3)).toBe(0); // the listening socket
    expect(g.openOk('f')).toBe(6);
    expect(g.openOk('f')).toBe(8);
    expect(g.call('fd_close', 4)).toBe(0); // the preopen
    expect(g.open('f').err).toBe(EBADF);
    expect(g.open('f', 0, 0, 5).err).toBe(ENOTDIR);
  });

  it('bad pointers give EFAULT without side effects', () => {
    // Proves: out-of-range paths, result pointers and iovecs fail before anything is created, changed or moved.
    const fs = VirtualFs.fromEntries({ 'f.txt': 'hello', 'd/': '' });
    const g = new G(fs);
    const fd = g.openOk('f.txt');
    const before = g.host.deviceState();
    const [p, n] = g.str('new.txt');
    expect(g.call('path_open', 3, 0, p, n, CREAT, 0n, 0n, 0, PAGE - 2)).toBe(EFAULT);
    expect(g.call('path_open', 3, 0, PAGE - 3, 7, CREAT, 0n, 0n, 0, RES)).toBe(EFAULT);
    expect(g.call('path_open', 3, 0, p, n, CREAT | TRUNC, 0n, 0n, 0, -1)).toBe(EFAULT);
    const [q, m] = g.str('f.txt');
    expect(g.call('path_open', 3, 0, q, m, TRUNC, 0n, 0n, 0, PAGE)).toBe(EFAULT);
    expect(g.call('path_create_directory', 3, PAGE - 1, 2)).toBe(EFAULT);
    expect(g.call('path_unlink_file', 3, PAGE - 1, 2)).toBe(EFAULT);
    const [r1, r1n] = g.str('f.txt');
    expect(g.call('path_rename', 3, r1, r1n, 3, PAGE - 1, 5)).toBe(EFAULT);
    expect(g.call('path_filestat_get', 3, 0, r1, r1n, PAGE - 8)).toBe(EFAULT);
    // reads: a bad iovec buffer, a bad iovec array, a bad nread pointer — the offset must not move
    g.dv.setUint32(IOV, PAGE - 2, true);
    g.dv.setUint32(IOV + 4, 4, true);
    expect(g.call('fd_read', fd, IOV, 1, RES)).toBe(EFAULT);
    expect(g.call('fd_read', fd, PAGE - 4, 1, RES)).toBe(EFAULT);
    g.dv.setUint32(IOV, DATA, true);
    expect(g.call('fd_read', fd, IOV, 1, PAGE - 2)).toBe(EFAULT);
    expect(g.call('fd_write', fd, IOV, 1, PAGE - 2)).toBe(EFAULT);
    expect(g.call('fd_pwrite', fd, IOV, 1, 0n, PAGE)).toBe(EFAULT);
    expect(g.call('fd_seek', fd, 3n, SET, PAGE - 4)).toBe(EFAULT);
    expect(g.call('fd_tell', fd, PAGE - 4)).toBe(EFAULT);
    expect(g.call('fd_filestat_get', fd, PAGE - 8)).toBe(EFAULT);
    expect(g.call('fd_readdir', 3, DATA, 100, 0n, PAGE)).toBe(EFAULT);
    expect(g.host.deviceState()).toBe(before);
    expect(fs.list()).toEqual(['d', 'f.txt']);
    expect(ftext(fs, 'f.txt')).toBe('hello');
    expect(g.read(fd).text).toBe('hello');
  });

  it('deviceState covers the tree and every open fd, canonically', () => {
    // Proves: deviceState changes with file contents, fd offsets and flags; identical call sequences give identical states; snapshot() is independent of insertion order.
    const run = () => {
      const fs = VirtualFs.fromEntries({ 'in.txt': 'data' });
      // the VM clock stamps created and written files: the same clock readings give the same state
      const g = new G(fs, fixedNondeterminism(), true);
      const states = [g.host.deviceState()];
      const fd = g.openOk('out.txt', CREAT);
      states.push(g.host.deviceState());
      g.write(fd, 'abc');
      states.push(g.host.deviceState());
      g.seek(fd, 1n, SET);
      states.push(g.host.deviceState());
      g.write(fd, 'B');
      states.push(g.host.deviceState());
      g.call('fd_fdstat_set_flags', fd, APPEND);
      states.push(g.host.deviceState());
      return states;
    };
    const a = run();
    expect(new Set(a).size).toBe(a.length); // every step changed the state
    expect(run()).toEqual(a);
    const last = JSON.parse(a[a.length - 1]!);
    // without the rights, the last field
    expect(last.fds.map((f: unknown[]) => f.slice(0, -1))).toEqual([
      [0, 'stdio', 0, 0],
      [1, 'stdio', 1, 0],
      [2, 'stdio', 2, 0],
      [3, 'listen', 0],
      [4, 'dir', 0, 1, '/', 0],
      [5, 'file', 0, 3, 2, APPEND],
    ]);
    const x = VirtualFs.fromEntries({ 'a/b': 'x', c: 'y' });
    const y = new VirtualFs();
    y.writeFile('a/b', enc.encode('x'));
    y.writeFile('c', enc.encode('y'));
    expect(y.snapshot()).toBe(x.snapshot());
    const t0 = ['0', '0', '0'];
    expect(JSON.parse(x.snapshot()).nodes).toEqual([
      [1, 'd', t0, 2, true, [['a', 2, 0], ['c', 4, 1]]],
      [2, 'd', t0, 1, true, [['b', 3, 0]]],
      [3, 'f', t0, 1, 1, '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881'],
      [4, 'f', t0, 1, 1, 'a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa'],
    ]);
    expect(x.clone().snapshot()).toBe(x.snapshot());
  });

  it('fromHostDir loads a host directory recursively, copying symlinks as links, never following them', () => {
    // Proves: the CLI loader copies directories and regular files (sorted, reproducible inodes) and a symlink as its target text; nothing reached through a symlink is read.
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-vfs-'));
    try {
      writeFileSync(join(dir, 'b.txt'), 'bee');
      mkdirSync(join(dir, 'sub'));
      writeFileSync(join(dir, 'sub', 'a.bin'), Buffer.from([1, 2, 3]));
      symlinkSync('/etc', join(dir, 'link'));
      const fs = VirtualFs.fromHostDir(dir);
      expect(fs.list()).toEqual(['b.txt', 'link', 'sub']);
      expect(fs.readLink('link')).toBe('/etc');
      expect(fs.list('link')).toBeUndefined();
      expect(ftext(fs, 'b.txt')).toBe('bee');
      expect(Array.from(fs.readFile('sub/a.bin')!)).toEqual([1, 2, 3]);
      expect(VirtualFs.fromHostDir(dir).snapshot()).toBe(fs.snapshot());
      // each node keeps the host's mtime (ns) as its atim/mtim/ctim
      utimesSync(join(dir, 'b.txt'), 1_000_000, 1_234_567);
      const stamped = VirtualFs.fromHostDir(dir);
      const g = new G(stamped);
      expect(g.stat('b.txt').times).toEqual([1_234_567_000_000_000n, 1_234_567_000_000_000n, 1_234_567_000_000_000n]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the fsdemo sample guest (wasi-libc stdio) on a VirtualFs', () => {
  const g = samples().find((s) => s.name === 'fsdemo')!;

  function run(fs?: VirtualFs) {
    let ctx: GuestContext | undefined;
    const r = runGuest(sampleBytes(g), { args: ['fsdemo'], fs, nondeterminism: fixedNondeterminism(), onStart: (c) => (ctx = c) });
    return { r, out: text(r.stdout), state: ctx!.wasi.deviceState() };
  }

  it('creates, appends, seeks, renames, unlinks, lists, and reads a preloaded file', () => {
    // Proves: a real libc program works end to end; the tree it leaves is the expected one; a preloaded input.txt is read.
    const fs = VirtualFs.fromEntries({ 'input.txt': 'hello\n' });
    const { r, out } = run(fs);
    expect(r.outcome).toBe('exit');
    expect(r.exitCode).toBe(0);
    expect(out).toBe('fsdemo: files=a.txt,c.txt a=91ca7039 input=6:f8934173\n');
    expect(fs.list()).toEqual(['fsdemo', 'input.txt']);
    expect(fs.list('fsdemo')).toEqual(['a.txt', 'c.txt']);
    expect(ftext(fs, 'fsdemo/a.txt')).toBe('alpha\nBETA\n');
    expect(ftext(fs, 'fsdemo/c.txt')).toBe('to be renamed\n');
    // with the default (empty) filesystem
    expect(run().out).toBe('fsdemo: files=a.txt,c.txt a=91ca7039 input=none\n');
  });

  it('deviceState is identical for identical runs and changes with the files', () => {
    // Proves: the filesystem is part of the VM state digest, deterministically.
    const a = run(VirtualFs.fromEntries({ 'input.txt': 'hello\n' }));
    const b = run(VirtualFs.fromEntries({ 'input.txt': 'hello\n' }));
    const c = run(VirtualFs.fromEntries({ 'input.txt': 'hellO\n' }));
    expect(b.state).toBe(a.state);
    expect(b.r.count).toBe(a.r.count);
    expect(c.state).not.toBe(a.state);
    // the file's contents are in the state (by hash), whatever its path
    expect(JSON.parse(a.state).fs[0]).toContain(createHash('sha256').update('alpha\nBETA\n').digest('hex'));
  });

  it('matches node:wasi with a host directory preopened as "/"', () => {
    // Proves: the guest-visible behaviour agrees with a reference WASI implementation: same stdout, same resulting tree and contents.
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-fsdemo-'));
    try {
      writeFileSync(join(dir, 'input.txt'), 'hello\n');
      // the reference's stdout goes to a file outside the preopened directory
      const outFile = `${dir}.out`;
      const outFd = openSync(outFile, 'w');
      const wasi = new WASI({ version: 'preview1', args: ['fsdemo'], env: {}, preopens: { '/': dir }, returnOnExit: true, stdout: outFd });
      // wrapped in closures: see wasm-src/tools/run.mjs (node:wasi fast API calls)
      const imp = (wasi.getImportObject() as { wasi_snapshot_preview1: Record<string, (...a: unknown[]) => unknown> }).wasi_snapshot_preview1;
      const wrapped = Object.fromEntries(Object.entries(imp).map(([n, f]) => [n, (...a: unknown[]) => f(...a)]));
      const inst = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(guestPath(g.wasm))), { wasi_snapshot_preview1: wrapped });
      expect(wasi.start(inst)).toBe(0);
      closeSync(outFd);
      const refOut = readFileSync(outFile, 'utf8');
      rmSync(outFile);
      const fs = VirtualFs.fromEntries({ 'input.txt': 'hello\n' });
      expect(run(fs).out).toBe(refOut);
      expect(readdirSync(join(dir, 'fsdemo')).sort()).toEqual(fs.list('fsdemo'));
      // same paths and contents (inode numbers and times differ: the host tree was loaded fresh)
      const tree = (v: VirtualFs, at = ''): unknown[] =>
        (v.list(at) ?? []).flatMap((n) => {
          const p = at ? `${at}/${n}` : n;
          const bytes = v.readFile(p);
          return bytes ? [[p, Buffer.from(bytes).toString()]] : [[p, 'dir'], ...tree(v, p)];
        });
      expect(tree(VirtualFs.fromHostDir(dir))).toEqual(tree(fs));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
