// The WASI host's filesystem semantics beyond plain files, driven through
// `WasiHost.imports` on a bare memory: symbolic and hard links, timestamps
// from the VM's clock, readdir cookies under concurrent removal, rights per
// descriptor, the capability boundary of a directory descriptor, preopens,
// fd_renumber/fd_allocate/fd_advise/proc_raise, streamed stdin, clock waits,
// and that every such change is in the state digest and survives a snapshot.
import { describe, it, expect } from 'vitest';
import binaryen from 'binaryen';
import { LogWriter } from '../host/log/writer.ts';
import { readLog } from '../host/log/format.ts';
import { recordGuest, replayGuest } from '../host/runtime/record.ts';
import { DIR_RIGHTS, Errno, GuestIdle, Rights, RIGHTS_ALL, VirtualFs, WasiHost, type Nondeterminism, type WasiOptions } from '../host/runtime/wasi.ts';

const E = Errno;
const CREAT = 1;
const DIRECTORY = 2;
const EXCL = 4;
const FOLLOW = 1;
const FILETYPE_DIR = 3;
const FILETYPE_FILE = 4;
const FILETYPE_SYMLINK = 7;
const ATIM = 1;
const ATIM_NOW = 2;
const MTIM = 4;
const MTIM_NOW = 8;

// guest memory layout
const RES = 0; // results (fd, nread, bufused, ...)
const IOV = 16;
const STAT = 64;
const STR = 256; // path strings
const DATA = 8192; // buffers
const PAGE = 65536;

type Fn = (...a: (number | bigint)[]) => number;

/** A clock that counts its readings: each reading is 1000 ns later than the last. */
function countingClock(): Nondeterminism & { reads: number } {
  const c = {
    reads: 0,
    clockNs: () => BigInt(++c.reads) * 1000n,
    clockResolutionNs: () => 1n,
    randomFill: (d: Uint8Array) => d.fill(7),
  };
  return c;
}

class H {
  readonly host: WasiHost;
  readonly memory = new WebAssembly.Memory({ initial: 2 });
  private at = STR;
  constructor(opts: Partial<WasiOptions> = {}) {
    // No listening socket unless asked: "/" is preopened at fd 3 (with one, it would be at 4).
    this.host = new WasiHost({ args: ['t'], env: {}, stdout: () => {}, stderr: () => {}, listen: false, ...opts });
    this.host.bindMemory(this.memory);
  }
  get dv(): DataView {
    return new DataView(this.memory.buffer);
  }
  get u8(): Uint8Array {
    return new Uint8Array(this.memory.buffer);
  }
  call(name: string, ...a: (number | bigint)[]): number {
    const r = (this.host.imports[name] as Fn)(...a);
    this.at = STR;
    return r;
  }
  s(text: string): [number, number] {
    const b = Buffer.from(text);
    const p = this.at;
    this.u8.set(b, p);
    this.at += b.length + 8;
    return [p, b.length];
  }
  open(path: string, o: { oflags?: number; base?: bigint; inh?: bigint; dirflags?: number; dirfd?: number; fdflags?: number } = {}): { err: number; fd: number } {
    const base = o.base ?? ((o.oflags ?? 0) & DIRECTORY ? DIR_RIGHTS : RIGHTS_ALL);
    this.dv.setUint32(RES, 0xdead, true);
    const err = this.call('path_open', o.dirfd ?? 3, o.dirflags ?? 0, ...this.s(path), o.oflags ?? 0, base, o.inh ?? RIGHTS_ALL, o.fdflags ?? 0, RES);
    return { err, fd: this.dv.getUint32(RES, true) };
  }
  openOk(path: string, o: Parameters<H['open']>[1] = {}): number {
    const r = this.open(path, o);
    expect(r.err, `open ${path}`).toBe(0);
    return r.fd;
  }
  write(fd: number, text: string): number {
    const b = Buffer.from(text);
    this.u8.set(b, DATA);
    this.dv.setUint32(IOV, DATA, true);
    this.dv.setUint32(IOV + 4, b.length, true);
    return this.call('fd_write', fd, IOV, 1, RES);
  }
  read(fd: number, max = 1024): { err: number; text: string } {
    this.dv.setUint32(IOV, DATA, true);
    this.dv.setUint32(IOV + 4, max, true);
    const err = this.call('fd_read', fd, IOV, 1, RES);
    return { err, text: err ? '' : Buffer.from(this.u8.subarray(DATA, DATA + this.dv.getUint32(RES, true))).toString() };
  }
  private statAt(err: number) {
    const dv = this.dv;
    return {
      err,
      ino: dv.getBigUint64(STAT + 8, true),
      type: dv.getUint8(STAT + 16),
      nlink: dv.getBigUint64(STAT + 24, true),
      size: dv.getBigUint64(STAT + 32, true),
      atim: dv.getBigUint64(STAT + 40, true),
      mtim: dv.getBigUint64(STAT + 48, true),
      ctim: dv.getBigUint64(STAT + 56, true),
    };
  }
  stat(path: string, flags = FOLLOW, dirfd = 3) {
    return this.statAt(this.call('path_filestat_get', dirfd, flags, ...this.s(path), STAT));
  }
  fstat(fd: number) {
    return this.statAt(this.call('fd_filestat_get', fd, STAT));
  }
  fdstat(fd: number): { err: number; base: bigint; inh: bigint; type: number } {
    const err = this.call('fd_fdstat_get', fd, STAT);
    return { err, type: this.dv.getUint8(STAT), base: this.dv.getBigUint64(STAT + 8, true), inh: this.dv.getBigUint64(STAT + 16, true) };
  }
  symlink(target: string, path: string, dirfd = 3): number {
    const [tp, tl] = this.s(target);
    return this.call('path_symlink', tp, tl, dirfd, ...this.s(path));
  }
  readlink(path: string, bufLen = 64): { err: number; text: string } {
    const err = this.call('path_readlink', 3, ...this.s(path), DATA, bufLen, RES);
    return { err, text: err ? '' : Buffer.from(this.u8.subarray(DATA, DATA + this.dv.getUint32(RES, true))).toString() };
  }
  link(from: string, to: string, flags = 0): number {
    const [a, al] = this.s(from);
    return this.call('path_link', 3, flags, a, al, 3, ...this.s(to));
  }
  path(name: string, path: string, dirfd = 3): number {
    return this.call(name, dirfd, ...this.s(path));
  }
  /** One fd_readdir call from `cookie`: the complete entries [name, cookie, type] it returned. */
  readdirOnce(fd: number, cookie: bigint, bufLen: number): [string, bigint, number][] {
    expect(this.call('fd_readdir', fd, DATA, bufLen, cookie, RES)).toBe(0);
    const used = this.dv.getUint32(RES, true);
    const out: [string, bigint, number][] = [];
    for (let p = 0; p + 24 <= used; ) {
      const namlen = this.dv.getUint32(DATA + p + 16, true);
      if (p + 24 + namlen > used) break;
      out.push([Buffer.from(this.u8.subarray(DATA + p + 24, DATA + p + 24 + namlen)).toString(), this.dv.getBigUint64(DATA + p, true), this.dv.getUint8(DATA + p + 20)]);
      p += 24 + namlen;
    }
    return out;
  }
}

describe('symbolic links', () => {
  it('are created, read (truncated to the buffer), and followed per LOOKUPFLAGS_SYMLINK_FOLLOW', () => {
    // Proves: path_symlink/path_readlink round trip; filestat without FOLLOW describes the link (type 7, size = target length), with FOLLOW the target; path_open follows only with FOLLOW (ELOOP otherwise, O_NOFOLLOW), and always in intermediate components.
    const fs = VirtualFs.fromEntries({ 'd/file.txt': 'hello' });
    const h = new H({ fs });
    expect(h.symlink('d/file.txt', 'ln')).toBe(0);
    expect(h.symlink('d', 'dl')).toBe(0);
    expect(h.symlink('x', 'ln')).toBe(E.EXIST);
    expect(h.readlink('ln')).toEqual({ err: 0, text: 'd/file.txt' });
    expect(h.readlink('ln', 4)).toEqual({ err: 0, text: 'd/fi' });
    expect(h.readlink('d/file.txt').err).toBe(E.INVAL);
    expect(h.stat('ln', 0)).toMatchObject({ err: 0, type: FILETYPE_SYMLINK, size: 10n, nlink: 1n });
    expect(h.stat('ln', FOLLOW)).toMatchObject({ err: 0, type: FILETYPE_FILE, size: 5n });
    expect(h.open('ln').err).toBe(E.LOOP);
    expect(h.read(h.openOk('ln', { dirflags: FOLLOW })).text).toBe('hello');
    expect(h.read(h.openOk('dl/file.txt')).text).toBe('hello'); // intermediate: always followed
    expect(h.stat('dl/', 0)).toMatchObject({ err: 0, type: FILETYPE_DIR }); // a trailing slash follows
    expect(fs.readLink('ln')).toBe('d/file.txt');
    // unlinking the link leaves its target
    expect(h.path('path_unlink_file', 'ln')).toBe(0);
    expect(fs.readFile('d/file.txt')).toBeDefined();
    // dangling: readable as a link, ENOENT when followed, creatable through with CREAT|FOLLOW
    expect(h.symlink('missing', 'dang')).toBe(0);
    expect(h.stat('dang', FOLLOW).err).toBe(E.NOENT);
    expect(h.open('dang', { oflags: CREAT, dirflags: FOLLOW }).err).toBe(0);
    expect(fs.readFile('missing')).toEqual(new Uint8Array(0));
  });

  it('never lead out of the descriptor: absolute targets refused, `..` escapes ENOTCAPABLE, chains bounded (ELOOP)', () => {
    // Proves: an absolute target is refused at creation (as wasmtime); a relative target climbing above the descriptor fails when followed, whatever exists; a self-loop and a chain of 41 links give ELOOP while 40 resolve.
    const fs = VirtualFs.fromEntries({ 'f.txt': 'F', 'sub/g.txt': 'G' });
    fs.symlink('/etc/passwd', 'abs'); // as fromHostDir may copy it
    const h = new H({ fs });
    expect(h.symlink('/etc/passwd', 'x')).toBe(E.NOTCAPABLE);
    expect(h.stat('abs', FOLLOW).err).toBe(E.NOTCAPABLE);
    expect(h.symlink('../f.txt', 'sub/up')).toBe(0);
    expect(h.symlink('../../f.txt', 'sub/up2')).toBe(0);
    expect(h.read(h.openOk('sub/up', { dirflags: FOLLOW })).text).toBe('F'); // from fd 3: stays inside
    expect(h.stat('sub/up2', FOLLOW).err).toBe(E.NOTCAPABLE);
    const sub = h.openOk('sub', { oflags: DIRECTORY });
    expect(h.stat('up', FOLLOW, sub).err).toBe(E.NOTCAPABLE); // from the subdirectory's fd: above it
    expect(h.stat('g.txt', FOLLOW, sub).err).toBe(0);
    expect(h.symlink('self', 'self')).toBe(0);
    expect(h.open('self', { dirflags: FOLLOW }).err).toBe(E.LOOP);
    // l0 -> l1 -> ... -> l40 -> f.txt: resolving l0 follows 41 links; l1 follows 40
    for (let i = 0; i < 41; i++) expect(h.symlink(i === 40 ? 'f.txt' : `l${i + 1}`, `l${i}`)).toBe(0);
    expect(h.stat('l1', FOLLOW).err).toBe(0);
    expect(h.stat('l0', FOLLOW).err).toBe(E.LOOP);
  });
});

describe('hard links', () => {
  it('name one inode in several directories, count links, and keep the data until the last name goes', () => {
    // Proves: path_link shares the inode (same ino, nlink 2, writes visible through both names); unlinking one name leaves the other; directories cannot be linked (EPERM); an existing name is EEXIST; renaming a name onto another name of the same inode changes nothing.
    const fs = VirtualFs.fromEntries({ 'a.txt': 'A', 'd/': '' });
    const h = new H({ fs });
    expect(h.link('a.txt', 'd/b.txt')).toBe(0);
    const a = h.stat('a.txt');
    expect(h.stat('d/b.txt')).toMatchObject({ ino: a.ino, nlink: 2n });
    const fd = h.openOk('d/b.txt');
    expect(h.write(fd, 'Z')).toBe(0);
    expect(Buffer.from(fs.readFile('a.txt')!).toString()).toBe('Z');
    expect(h.link('a.txt', 'd/b.txt')).toBe(E.EXIST);
    expect(h.link('a.txt', 'a.txt')).toBe(E.EXIST);
    expect(h.link('d', 'd2')).toBe(E.PERM);
    const [p1, l1] = h.s('a.txt');
    expect(h.call('path_rename', 3, p1, l1, 3, ...h.s('d/b.txt'))).toBe(0);
    expect(fs.list()).toEqual(['a.txt', 'd']);
    expect(h.path('path_unlink_file', 'a.txt')).toBe(0);
    expect(h.stat('d/b.txt')).toMatchObject({ ino: a.ino, nlink: 1n, size: 1n });
    expect(h.fstat(fd)).toMatchObject({ nlink: 1n });
  });

  it('the state digest names files by inode, not by path', () => {
    // Proves: an open descriptor is described by its inode: the digest of the fd table does not change when the file it holds is renamed.
    const h = new H({ fs: VirtualFs.fromEntries({ 'a.txt': 'A' }) });
    const fd = h.openOk('a.txt');
    const before = JSON.parse(h.host.deviceState()).fds;
    const [p, l] = h.s('a.txt');
    expect(h.call('path_rename', 3, p, l, 3, ...h.s('b.txt'))).toBe(0);
    expect(JSON.parse(h.host.deviceState()).fds).toEqual(before);
    expect(before.find((f: unknown[]) => f[0] === fd).slice(0, 4)).toEqual([fd, 'file', 0, 2]);
  });
});

describe('timestamps', () => {
  it('come from the VM realtime clock, once per call; reads change nothing (noatime)', () => {
    // Proves: create stamps atim/mtim/ctim and the directory's mtim/ctim with one clock reading; a write moves mtim/ctim only; a read reads no clock and changes no time; link changes ctim.
    const clock = countingClock();
    const fs = new VirtualFs();
    const h = new H({ fs, nondeterminism: clock });
    const fd = h.openOk('f', { oflags: CREAT });
    expect(clock.reads).toBe(1);
    expect(h.fstat(fd)).toMatchObject({ atim: 1000n, mtim: 1000n, ctim: 1000n });
    expect(h.stat('.')).toMatchObject({ mtim: 1000n, ctim: 1000n });
    expect(h.write(fd, 'abc')).toBe(0);
    expect(clock.reads).toBe(2);
    expect(h.fstat(fd)).toMatchObject({ atim: 1000n, mtim: 2000n, ctim: 2000n });
    const r = h.openOk('f');
    expect(h.read(r).text).toBe('abc');
    expect(clock.reads).toBe(2);
    expect(h.fstat(fd)).toMatchObject({ atim: 1000n, mtim: 2000n });
    expect(h.link('f', 'g')).toBe(0);
    expect(clock.reads).toBe(3);
    expect(h.fstat(fd)).toMatchObject({ mtim: 2000n, ctim: 3000n });
  });

  it('set_times: explicit values, *_NOW from the clock, SET with NOW refused', () => {
    // Proves: fd/path_filestat_set_times set what fstflags say (ctim becomes now); ATIM_NOW/MTIM_NOW read the logged clock; SET and NOW of one time together, or unknown bits, give EINVAL and change nothing.
    const clock = countingClock();
    const h = new H({ fs: VirtualFs.fromEntries({ f: 'x' }), nondeterminism: clock });
    const fd = h.openOk('f');
    expect(h.call('fd_filestat_set_times', fd, 111n, 222n, ATIM | MTIM)).toBe(0);
    expect(h.fstat(fd)).toMatchObject({ atim: 111n, mtim: 222n, ctim: 1000n });
    expect(h.call('path_filestat_set_times', 3, FOLLOW, ...h.s('f'), 0n, 0n, ATIM_NOW)).toBe(0);
    expect(h.fstat(fd)).toMatchObject({ atim: 2000n, mtim: 222n, ctim: 2000n });
    expect(h.call('fd_filestat_set_times', fd, 5n, 5n, ATIM | ATIM_NOW)).toBe(E.INVAL);
    expect(h.call('fd_filestat_set_times', fd, 5n, 5n, MTIM | MTIM_NOW)).toBe(E.INVAL);
    expect(h.call('fd_filestat_set_times', fd, 5n, 5n, 0x10)).toBe(E.INVAL);
    expect(h.fstat(fd)).toMatchObject({ atim: 2000n, mtim: 222n });
    expect(clock.reads).toBe(2);
    expect(h.call('fd_filestat_set_times', fd, 0n, 0n, MTIM_NOW)).toBe(0);
    expect(h.fstat(fd)).toMatchObject({ mtim: 3000n });
  });
});

describe('fd_readdir cookies', () => {
  it('stay valid while entries are removed: unlinking every entry returned, batch by batch, empties a directory of 200 files', () => {
    // Proves: what `rm -r` and Rust's remove_dir_all do works: a cookie names a position that survives removal of earlier entries, so nothing is skipped.
    const h = new H();
    expect(h.path('path_create_directory', 'big')).toBe(0);
    for (let i = 0; i < 200; i++) expect(h.open(`big/f${i}`, { oflags: CREAT | EXCL }).err).toBe(0);
    const dir = h.openOk('big', { oflags: DIRECTORY });
    let cookie = 0n;
    let removed = 0;
    for (let round = 0; round < 1000; round++) {
      const batch = h.readdirOnce(dir, cookie, 300);
      if (batch.length === 0) break;
      for (const [name, next] of batch) {
        if (name !== '.' && name !== '..') {
          expect(h.path('path_unlink_file', `big/${name}`)).toBe(0);
          removed++;
        }
        cookie = next;
      }
    }
    expect(removed).toBe(200);
    expect(h.host.fs.list('big')).toEqual([]);
  });

  it('list entries in creation order; entries added during a listing come after the cookie', () => {
    // Proves: ".", "..", then creation order, with cookies 1, 2, 3...; a file created mid-listing is returned later, none is repeated.
    const h = new H({ fs: VirtualFs.fromEntries({ b: '', a: '' }) });
    const first = h.readdirOnce(3, 0n, 4096);
    expect(first.map((e) => [e[0], e[1]])).toEqual([['.', 1n], ['..', 2n], ['a', 3n], ['b', 4n]]);
    const part = h.readdirOnce(3, 0n, 60).map((e) => e[0]);
    expect(part).toEqual(['.', '..']);
    expect(h.open('c', { oflags: CREAT }).err).toBe(0);
    expect(h.path('path_unlink_file', 'a')).toBe(0);
    expect(h.readdirOnce(3, 2n, 4096).map((e) => e[0])).toEqual(['b', 'c']);
  });
});

describe('rights', () => {
  it('are tracked per descriptor, inherited through path_open, enforced, and only narrowed', () => {
    // Proves: a read-only open reports and enforces no write right (ENOTCAPABLE); a directory reports no seek right and opening one with FD_WRITE is EISDIR; a directory opened with narrow inheriting rights passes only those on; fd_fdstat_set_rights narrows and refuses to widen.
    const h = new H({ fs: VirtualFs.fromEntries({ 'f.txt': 'abc', 'd/g.txt': 'g' }) });
    const ro = h.openOk('f.txt', { base: Rights.FD_READ | Rights.FD_SEEK });
    expect(h.fdstat(ro).base & Rights.FD_WRITE).toBe(0n);
    expect(h.write(ro, 'x')).toBe(E.NOTCAPABLE);
    expect(h.read(ro).text).toBe('abc');
    expect(h.fdstat(3).base & Rights.FD_SEEK).toBe(0n);
    expect(h.open('d', { oflags: DIRECTORY, base: Rights.FD_READ | Rights.FD_WRITE }).err).toBe(E.ISDIR);
    const d = h.openOk('d', { oflags: DIRECTORY, base: DIR_RIGHTS, inh: Rights.FD_READ });
    const g = h.openOk('g.txt', { dirfd: d });
    expect(h.fdstat(g).base).toBe(Rights.FD_READ);
    expect(h.write(g, 'x')).toBe(E.NOTCAPABLE);
    expect(h.call('fd_fdstat_set_rights', ro, Rights.FD_READ, 0n)).toBe(0);
    expect(h.call('fd_seek', ro, 0n, 0, RES)).toBe(E.NOTCAPABLE);
    expect(h.call('fd_fdstat_set_rights', ro, Rights.FD_READ | Rights.FD_WRITE, 0n)).toBe(E.NOTCAPABLE);
    expect(h.call('fd_fdstat_set_rights', 3, DIR_RIGHTS & ~Rights.PATH_CREATE_DIRECTORY, RIGHTS_ALL)).toBe(0);
    expect(h.path('path_create_directory', 'new')).toBe(E.NOTCAPABLE);
  });
});

describe('preopens and descriptors', () => {
  it('no preopen: fd 3 is EBADF; several preopens get fds 3, 4, ... under their names, or 4, 5, ... after the listening socket at 3', () => {
    // Proves: preopens: [] leaves fd 3 unused (what a test expecting EBADF sees); names and order are kept; `listen` puts the socket at fd 3 and the preopens after it (wasmtime's --tcplisten layout), and the socket's prestat lets a preopen scan go on; renaming across two filesystems is EXDEV.
    const none = new H({ preopens: [], listen: false });
    expect(none.call('fd_prestat_get', 3, RES)).toBe(E.BADF);
    expect(none.call('fd_fdstat_get', 3, STAT)).toBe(E.BADF);
    const a = VirtualFs.fromEntries({ 'x.txt': 'x' });
    const b = new VirtualFs();
    const plain = new H({ preopens: [{ name: '/', fs: a }, { name: '/data', fs: b }] });
    expect(plain.host.listenFd).toBe(null);
    expect(plain.call('fd_prestat_get', 4, RES)).toBe(0);
    expect(plain.dv.getUint32(RES + 4, true)).toBe(5);
    expect(plain.call('fd_prestat_get', 5, RES)).toBe(E.BADF);
    const two = new H({ preopens: [{ name: '/', fs: a }, { name: '/data', fs: b }], listen: true });
    expect(two.host.listenFd).toBe(3);
    expect(two.fdstat(3).type).toBe(6); // socket_stream
    // wasi-libc's scan: fd 3 answers SUCCESS with a tag that is not a directory (skipped), then the preopens, then EBADF
    expect(two.call('fd_prestat_get', 3, RES)).toBe(0);
    expect([two.u8[RES], two.dv.getUint32(RES + 4, true)]).toEqual([1, 0]);
    expect(two.call('fd_prestat_dir_name', 3, DATA, 5)).toBe(E.BADF);
    expect(two.call('fd_prestat_get', 4, RES)).toBe(0);
    expect([two.u8[RES], two.dv.getUint32(RES + 4, true)]).toEqual([0, 1]);
    expect(two.call('fd_prestat_get', 5, RES)).toBe(0);
    expect(two.dv.getUint32(RES + 4, true)).toBe(5);
    expect(two.call('fd_prestat_dir_name', 5, DATA, 5)).toBe(0);
    expect(Buffer.from(two.u8.subarray(DATA, DATA + 5)).toString()).toBe('/data');
    expect(two.call('fd_prestat_get', 6, RES)).toBe(E.BADF);
    // the first fd handed out comes after the preopens
    expect(two.open('y.txt', { oflags: CREAT, dirfd: 5 })).toEqual({ err: 0, fd: 6 });
    expect(b.list()).toEqual(['y.txt']);
    const [p, l] = two.s('x.txt');
    expect(two.call('path_rename', 4, p, l, 5, ...two.s('x.txt'))).toBe(E.XDEV);
  });

  it('fd_renumber moves a descriptor, fd_allocate grows a file, fd_advise validates, proc_raise is not supported', () => {
    // Proves: renumber closes the target and frees the source (both must be open); allocate extends to offset+len (never shrinks, len 0 EINVAL); advise checks its advice; proc_raise answers ENOTSUP (EINVAL outside the signal enum) as wasmtime.
    const h = new H({ fs: VirtualFs.fromEntries({ 'a.txt': 'A', 'b.txt': 'B' }) });
    const a = h.openOk('a.txt');
    const b = h.openOk('b.txt');
    expect(h.call('fd_renumber', a, b)).toBe(0);
    expect(h.read(b).text).toBe('A');
    expect(h.call('fd_fdstat_get', a, STAT)).toBe(E.BADF);
    expect(h.call('fd_renumber', a, b)).toBe(E.BADF);
    expect(h.call('fd_allocate', b, 10n, 5n)).toBe(0);
    expect(h.fstat(b).size).toBe(15n);
    expect(h.call('fd_allocate', b, 0n, 3n)).toBe(0);
    expect(h.fstat(b).size).toBe(15n);
    expect(h.call('fd_allocate', b, 0n, 0n)).toBe(E.INVAL);
    expect(h.call('fd_allocate', 3, 0n, 1n)).toBe(E.ISDIR);
    expect(h.call('fd_advise', b, 0n, 10n, 5)).toBe(0);
    expect(h.call('fd_advise', b, 0n, 10n, 6)).toBe(E.INVAL);
    expect(h.call('proc_raise', 15)).toBe(E.NOTSUP);
    expect(h.call('proc_raise', 31)).toBe(E.INVAL);
  });
});

describe('stdin and waiting', () => {
  it('streamed stdin: fd_read asks stdinRead for what the guest asked, until an empty read (EOF)', () => {
    // Proves: stdinRead is called with the iovecs' total, its bytes scatter in order, and after EOF it is not called again; poll reports fd 0 readable with nbytes 0.
    const asked: number[] = [];
    let data = Buffer.from('hello world');
    const h = new H({
      stdinRead: (n) => {
        asked.push(n);
        const b = data.subarray(0, Math.min(n, 4)); // a pipe gives at most 4 bytes at a time
        data = data.subarray(b.length);
        return b;
      },
    });
    expect(h.read(0, 100).text).toBe('hell');
    expect(h.read(0, 3).text).toBe('o w');
    expect(h.read(0, 100).text).toBe('orld');
    expect(h.read(0, 100)).toEqual({ err: 0, text: '' });
    expect(h.read(0, 100)).toEqual({ err: 0, text: '' });
    expect(asked).toEqual([100, 3, 100, 100]);
  });

  it('poll_oneoff on a clock waits the time left, looks again after an interrupt, and fires when the time passed', () => {
    // Proves: the contract of WasiOptions.wait for clocks: read the monotonic clock, wait(remaining); on true look at descriptors and the clock again and wait the rest; on false report the clock.
    let now = 1_000n;
    const waits: (bigint | null)[] = [];
    const answers = [true, false];
    const clock: Nondeterminism = { clockNs: () => now, clockResolutionNs: () => 1n, randomFill: () => {} };
    const h = new H({
      nondeterminism: clock,
      wait: (t) => {
        waits.push(t);
        now += 300n; // 300 ns pass in each wait
        return answers.shift()!;
      },
    });
    const sub = 1024;
    h.dv.setBigUint64(sub, 9n, true);
    h.dv.setUint8(sub + 8, 0);
    h.dv.setUint32(sub + 16, 1, true);
    h.dv.setBigUint64(sub + 24, 1_000n, true);
    h.dv.setUint16(sub + 40, 0, true);
    expect(h.call('poll_oneoff', sub, 2048, 1, RES)).toBe(0);
    expect(h.dv.getUint32(RES, true)).toBe(1);
    expect(h.dv.getBigUint64(2048, true)).toBe(9n);
    expect(waits).toEqual([1_000n, 700n]);
  });

  it('the default wait sleeps for a timed wait and ends the guest idle for an untimed one', () => {
    // Proves: without WasiOptions.wait, a clock poll really waits (at least the timeout passes) and a blocking wait with nothing to come throws GuestIdle.
    const h = new H();
    const sub = 1024;
    h.dv.setUint8(sub + 8, 0);
    h.dv.setUint32(sub + 16, 1, true);
    h.dv.setBigUint64(sub + 24, 30_000_000n, true); // 30 ms
    const t0 = process.hrtime.bigint();
    expect(h.call('poll_oneoff', sub, 2048, 1, RES)).toBe(0);
    expect(process.hrtime.bigint() - t0).toBeGreaterThanOrEqual(30_000_000n);
    expect(() => h.host.nicImports.wait()).toThrow(GuestIdle);
  });
});

describe('snapshots', () => {
  it('image()/fromImage() keep links, times, rights, readdir sequence numbers, renumbered fds and preopen names', () => {
    // Proves: a host restored from a (structured-cloned) image has the same device state, and goes on the same way: the next created entry gets the same cookie and inode.
    const opts = (clock: Nondeterminism): Partial<WasiOptions> => ({
      preopens: [{ name: '/', fs: VirtualFs.fromEntries({ 'a.txt': 'A' }) }, { name: 'tmp', fs: new VirtualFs() }],
      nondeterminism: clock,
      listen: false,
    });
    const clock = countingClock();
    const h = new H(opts(clock));
    expect(h.symlink('a.txt', 'ln')).toBe(0);
    expect(h.link('a.txt', 'hard')).toBe(0);
    expect(h.path('path_unlink_file', 'a.txt')).toBe(0);
    const fd = h.openOk('hard', { base: Rights.FD_READ | Rights.FD_SEEK });
    expect(h.call('fd_renumber', fd, 4)).toBe(0);
    expect(h.call('fd_filestat_set_times', 4, 5n, 6n, ATIM | MTIM)).toBe(E.NOTCAPABLE);
    const img = structuredClone(h.host.image());
    // the restored host's clock goes on from where the original's is
    const clock2 = countingClock();
    clock2.reads = clock.reads;
    const o = { args: ['t'], env: {}, stdout: () => {}, stderr: () => {}, ...opts(clock2) } as WasiOptions;
    const back = WasiHost.fromImage(o, img);
    expect(back.deviceState()).toBe(h.host.deviceState());
    const r = new H();
    (r as { host: WasiHost }).host = back;
    back.bindMemory(r.memory);
    expect(r.read(4).text).toBe('A');
    expect(h.read(4).text).toBe('A');
    expect(r.readlink('ln').text).toBe('a.txt');
    expect(r.open('new', { oflags: CREAT }).err).toBe(0);
    expect(h.open('new', { oflags: CREAT }).err).toBe(0);
    expect(back.deviceState()).toBe(h.host.deviceState());
  });
});

describe('record and replay', () => {
  it('a guest using links, set-times NOW, readdir and a clock sleep replays to the same count, outputs and digest', () => {
    // Proves: the new calls are deterministic under record and replay: every clock they read (file times, *_NOW, the poll's deadline) comes from the log, so the replay's state digest, which holds inodes, links, times and cookies, equals the recording's.
    const wat = `
(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_times" (func $times (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "out.txt")
  (data (i32.const 120) "ln")
  (data (i32.const 130) "hard")
  (data (i32.const 200) "hello\\n")
  (func (export "_start")
    (local $fd i32) (local $err i32)
    (local.set $err (i32.or (local.get $err)
      (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 7) (i32.const 1) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 0))))
    (local.set $fd (i32.load (i32.const 0)))
    (i32.store (i32.const 16) (i32.const 200))
    (i32.store (i32.const 20) (i32.const 6))
    (local.set $err (i32.or (local.get $err) (call $write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24))))
    (local.set $err (i32.or (local.get $err) (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))
    (local.set $err (i32.or (local.get $err) (call $symlink (i32.const 100) (i32.const 7) (i32.const 3) (i32.const 120) (i32.const 2))))
    (local.set $err (i32.or (local.get $err) (call $link (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 7) (i32.const 3) (i32.const 130) (i32.const 4))))
    (local.set $err (i32.or (local.get $err) (call $times (local.get $fd) (i64.const 0) (i64.const 0) (i32.const 10))))
    (local.set $err (i32.or (local.get $err) (call $readdir (i32.const 3) (i32.const 1024) (i32.const 60) (i64.const 2) (i32.const 32))))
    ;; a 1 ms relative sleep on the monotonic clock
    (i64.store (i32.const 512) (i64.const 7))
    (i32.store8 (i32.const 520) (i32.const 0))
    (i32.store (i32.const 528) (i32.const 1))
    (i64.store (i32.const 536) (i64.const 1000000))
    (i32.store16 (i32.const 552) (i32.const 0))
    (local.set $err (i32.or (local.get $err) (call $poll (i32.const 512) (i32.const 600) (i32.const 1) (i32.const 40))))
    (call $exit (local.get $err))))`;
    const mod = binaryen.parseText(wat);
    const bytes = new Uint8Array(mod.emitBinary());
    mod.dispose();
    const chunks: Uint8Array[] = [];
    const out: Uint8Array[] = [];
    const run = recordGuest(bytes, new LogWriter((b) => chunks.push(b)), { args: ['g'], fs: VirtualFs.fromEntries({ 'in.txt': 'x' }), listen: false, onStdout: (b) => out.push(b), meter: { cacheDir: null } });
    expect(run.exitCode).toBe(0);
    expect(Buffer.concat(out).toString()).toBe('hello\n');
    const entries = readLog(Buffer.concat(chunks));
    // file times and the sleep's deadline were read from the clock, and logged
    expect(entries.filter((e) => e.kind === 'clock').length).toBeGreaterThanOrEqual(5);
    const replayed = replayGuest(bytes, entries, { cacheDir: null });
    expect(replayed.exitCode).toBe(0);
    expect(replayed.count).toBe(run.count);
    expect(replayed.digest).toBe(run.digest);
  }, 60_000);
});
