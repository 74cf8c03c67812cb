/**
 * The in-memory virtual filesystem: part of a guest VM's state.
 *
 * Model (POSIX-like inodes):
 *  - An inode is a regular file, a directory or a symbolic link, numbered at
 *    creation (the root is 1, then incrementally), so the same operations
 *    always give the same numbers.
 *  - A directory maps names to inodes. Files and symlinks may be linked under
 *    several names (hard links; `nlink` counts them) and know no path of their
 *    own. A directory has exactly one parent (no hard links to directories), so
 *    `..` is well defined; the root's and a removed directory's parent is null.
 *  - Each directory entry carries a sequence number, taken from the
 *    directory's counter when the entry is made; it never changes while the
 *    entry exists and is never reused. `fd_readdir` uses it as its cookie, so a
 *    listing resumed after entries were added or removed loses nothing that
 *    stayed and repeats nothing (POSIX leaves only the entries added or removed
 *    meanwhile unspecified). A directory lists its entries in sequence order.
 *  - Every inode has atim/mtim/ctim in ns. The filesystem never reads a clock:
 *    the caller passes the time (the WASI calls take it from the VM's logged
 *    clock); `fromEntries`/`writeFile`/`mkdirp` leave 0 unless given, and
 *    `fromHostDir` keeps each host file's mtime.
 *  - Limits: a file grows up to `maxFileSize` bytes (EFBIG), a symlink target
 *    is at most MAX_SYMLINK_BYTES, a directory holds at most
 *    MAX_DIR_ENTRIES entries, the tree at most `maxInodes` inodes (ENOSPC).
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join as joinPath } from 'node:path';

/** the longest symlink target, in UTF-8 bytes (PATH_MAX of Linux) */
import { SYMLINK_BYTES_MAX as MAX_SYMLINK_BYTES } from '../../limits.ts'; export { MAX_SYMLINK_BYTES };
/** the most entries one directory may hold */
import { DIR_ENTRIES_MAX as MAX_DIR_ENTRIES } from '../../limits.ts'; export { MAX_DIR_ENTRIES };

interface InodeTimes {
  /** last access, ns since the epoch of the VM's realtime clock */
  atimNs: bigint;
  /** last modification of the contents */
  mtimNs: bigint;
  /** last change of the inode (contents, links, times) */
  ctimNs: bigint;
}

/** A regular file: `data` has spare capacity past `size`, grown as written. */
export interface VfsFile extends InodeTimes {
  readonly kind: 'file';
  readonly ino: bigint;
  /** the number of directory entries naming it */
  nlink: number;
  data: Uint8Array;
  size: number;
  /** cached sha256 (hex) of the contents; null after a change */
  hash: string | null;
}

/** A symbolic link: its target text, as the guest wrote it (never resolved at creation). */
export interface VfsSymlink extends InodeTimes {
  readonly kind: 'symlink';
  readonly ino: bigint;
  nlink: number;
  readonly target: string;
}

/** A directory entry: the inode and its readdir sequence number. */
export interface VfsEntry {
  node: VfsNode;
  seq: bigint;
}

/** A directory. */
export interface VfsDir extends InodeTimes {
  readonly kind: 'dir';
  readonly ino: bigint;
  /** null for the root and for a removed directory */
  parent: VfsDir | null;
  /** entries in sequence order (a JS Map keeps insertion order; a replaced name is deleted first) */
  readonly entries: Map<string, VfsEntry>;
  /** the next entry's sequence number */
  nextSeq: bigint;
  /** false once removed (rmdir, or replaced by rename) */
  linked: boolean;
}

/** Any inode. */
export type VfsNode = VfsFile | VfsDir | VfsSymlink;

/**
 * A filesystem in a VM snapshot: every inode (the root first), each
 * directory's entries with their sequence numbers. Structured-clonable.
 */
export interface FsImage {
  maxFileSize: number;
  nextIno: bigint;
  nodes: {
    ino: bigint;
    kind: 'file' | 'dir' | 'symlink';
    times: [atimNs: bigint, mtimNs: bigint, ctimNs: bigint];
    /** file contents */
    data: Uint8Array | null;
    /** symlink target */
    target: string | null;
    /** directories: [name, ino, seq] in order, the next seq, and whether still linked */
    entries: [string, bigint, bigint][] | null;
    nextSeq: bigint | null;
    linked: boolean | null;
  }[];
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * An in-memory directory tree. A `WasiHost` preopens it and mutates it in
 * place (use `clone()` to keep an original). The methods here are the
 * caller's API (building a tree, reading results); the WASI calls use the
 * `link`/`unlink`/`new*` primitives.
 */
export class VirtualFs {
  /** the largest size a file may reach (EFBIG beyond) */
  readonly maxFileSize: number;
  /** the most inodes the tree may hold (ENOSPC beyond) */
  readonly maxInodes: number;
  readonly root: VfsDir;
  private nextIno = 1n;
  /** live inode count (linked or held open is not tracked: created minus freed by unlink to 0) */
  private inodes = 0;

  constructor(opts: { maxFileSize?: number; maxInodes?: number } = {}) {
    this.maxFileSize = opts.maxFileSize ?? 256 * 1024 * 1024;
    this.maxInodes = opts.maxInodes ?? 1_000_000;
    this.root = this.newDir(null, 0n);
  }

  /** Builds a tree from `{ 'a.txt': bytes, 'sub/b.txt': bytes }` (strings are UTF-8 encoded); parent directories are created as needed, a key ending in '/' makes an empty directory. Timestamps 0. */
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
   * Loads a host directory recursively (names sorted, so inode numbers and
   * readdir order are reproducible). Directories, regular files and symbolic
   * links are copied; a symlink is copied as a link (its target text), never
   * followed, so nothing outside `path` is ever read; special files are
   * skipped. Each node's atim/mtim/ctim is the host's mtime in ns.
   * Throws Error if `path` is not a directory, RangeError for a file larger than maxFileSize.
   */
  static fromHostDir(path: string, opts: { maxFileSize?: number } = {}): VirtualFs {
    const vfs = new VirtualFs(opts);
    const stamp = (n: VfsNode, full: string): void => {
      const t = lstatSync(full, { bigint: true }).mtimeNs;
      n.atimNs = n.mtimNs = n.ctimNs = t;
    };
    const load = (hostDir: string, dir: VfsDir): void => {
      for (const name of readdirSync(hostDir).sort(byName)) {
        const full = joinPath(hostDir, name);
        const st = lstatSync(full);
        if (st.isDirectory()) {
          const d = vfs.newDir(dir, 0n);
          vfs.link(dir, name, d);
          load(full, d);
          stamp(d, full);
        } else if (st.isFile()) {
          const bytes = new Uint8Array(readFileSync(full));
          if (bytes.length > vfs.maxFileSize) throw new RangeError(`${full}: larger than maxFileSize`);
          const f = vfs.newFile(0n);
          f.data = bytes;
          f.size = bytes.length;
          vfs.link(dir, name, f);
          stamp(f, full);
        } else if (st.isSymbolicLink()) {
          const target = readlinkSync(full, 'utf8');
          if (Buffer.byteLength(target) > MAX_SYMLINK_BYTES) continue;
          const l = vfs.newSymlink(target, 0n);
          vfs.link(dir, name, l);
          stamp(l, full);
        }
      }
    };
    if (!lstatSync(path).isDirectory()) throw new Error(`${path} is not a directory`);
    load(path, vfs.root);
    stamp(vfs.root, path);
    return vfs;
  }

  /** A deep copy with the same inode numbers, links, sequence numbers and times. */
  clone(): VirtualFs {
    const { fs } = VirtualFs.fromImage(this.image());
    return fs;
  }

  /** @internal A new, unlinked directory (linked by `link`). */
  newDir(parent: VfsDir | null, nowNs: bigint): VfsDir {
    this.count();
    return { kind: 'dir', ino: this.nextIno++, parent, entries: new Map(), nextSeq: 0n, linked: true, atimNs: nowNs, mtimNs: nowNs, ctimNs: nowNs };
  }

  /** @internal A new, unlinked, empty file. */
  newFile(nowNs: bigint): VfsFile {
    this.count();
    return { kind: 'file', ino: this.nextIno++, nlink: 0, data: new Uint8Array(0), size: 0, hash: null, atimNs: nowNs, mtimNs: nowNs, ctimNs: nowNs };
  }

  /** @internal A new, unlinked symlink. */
  newSymlink(target: string, nowNs: bigint): VfsSymlink {
    this.count();
    return { kind: 'symlink', ino: this.nextIno++, nlink: 0, target, atimNs: nowNs, mtimNs: nowNs, ctimNs: nowNs };
  }

  /** true when one more inode may be created and, given `dir`, one more entry added to it */
  canCreate(dir?: VfsDir): boolean {
    return this.inodes < this.maxInodes && (!dir || dir.entries.size < MAX_DIR_ENTRIES);
  }

  private count(): void {
    if (this.inodes >= this.maxInodes) throw new RangeError(`VirtualFs: more than ${this.maxInodes} inodes`);
    this.inodes++;
  }

  /** @internal Adds `name` -> `node` to `dir` (which must not hold `name`), with the next sequence number. */
  link(dir: VfsDir, name: string, node: VfsNode): void {
    if (dir.entries.has(name)) throw new Error(`VirtualFs: ${name} exists`);
    if (dir.entries.size >= MAX_DIR_ENTRIES) throw new RangeError('VirtualFs: directory full');
    dir.entries.set(name, { node, seq: dir.nextSeq++ });
    if (node.kind === 'dir') {
      node.parent = dir;
      node.linked = true;
    } else node.nlink++;
  }

  /** @internal Removes `name` from `dir`; a directory removed this way is marked unlinked. */
  unlink(dir: VfsDir, name: string): void {
    const e = dir.entries.get(name);
    if (!e) return;
    dir.entries.delete(name);
    const n = e.node;
    if (n.kind === 'dir') {
      n.parent = null;
      n.linked = false;
    } else n.nlink--;
    if ((n.kind === 'dir' || n.nlink === 0) && this.inodes > 0) this.inodes--;
  }

  private lookup(path: string): VfsNode | undefined {
    let cur: VfsNode = this.root;
    for (const part of path.split('/').filter((p) => p !== '' && p !== '.')) {
      if (cur.kind !== 'dir') return undefined;
      const next: VfsEntry | undefined = cur.entries.get(part);
      if (!next) return undefined;
      cur = next.node;
    }
    return cur;
  }

  /** Creates the directory `path` and its missing parents ('/'-separated, relative to the root). Error if a non-directory is in the way or for '..'. */
  mkdirp(path: string): VfsDir {
    let cur = this.root;
    for (const part of path.split('/').filter((p) => p !== '' && p !== '.')) {
      if (part === '..') throw new Error(`VirtualFs: '..' not allowed: ${path}`);
      const next = cur.entries.get(part)?.node;
      if (next && next.kind !== 'dir') throw new Error(`VirtualFs: ${path}: a non-directory is in the way`);
      if (next) cur = next;
      else {
        const d = this.newDir(cur, 0n);
        this.link(cur, part, d);
        cur = d;
      }
    }
    return cur;
  }

  /** Creates or replaces a file's contents (parent directories created as needed). Error if `path` is a directory; RangeError past maxFileSize. */
  writeFile(path: string, bytes: Uint8Array): void {
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    const name = parts.pop();
    if (!name || name === '..') throw new Error(`VirtualFs: bad file path ${JSON.stringify(path)}`);
    if (bytes.length > this.maxFileSize) throw new RangeError(`VirtualFs: ${path}: larger than maxFileSize`);
    const dir = this.mkdirp(parts.join('/'));
    let f = dir.entries.get(name)?.node;
    if (f && f.kind !== 'file') throw new Error(`VirtualFs: ${path} is not a regular file`);
    if (!f) {
      f = this.newFile(0n);
      this.link(dir, name, f);
    }
    f.data = bytes.slice();
    f.size = bytes.length;
    f.hash = null;
  }

  /** Creates a symlink at `path` (parents created as needed). Error if the name exists. */
  symlink(target: string, path: string): void {
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    const name = parts.pop();
    if (!name || name === '..') throw new Error(`VirtualFs: bad link path ${JSON.stringify(path)}`);
    this.link(this.mkdirp(parts.join('/')), name, this.newSymlink(target, 0n));
  }

  /** A copy of a file's contents, or undefined if `path` is not a regular file (symlinks are not followed). */
  readFile(path: string): Uint8Array | undefined {
    const n = this.lookup(path);
    return n?.kind === 'file' ? n.data.slice(0, n.size) : undefined;
  }

  /** A symlink's target, or undefined if `path` is not a symlink. */
  readLink(path: string): string | undefined {
    const n = this.lookup(path);
    return n?.kind === 'symlink' ? n.target : undefined;
  }

  /** The sorted entry names of a directory, or undefined if `path` is not a directory. */
  list(path = ''): string[] | undefined {
    const n = this.lookup(path);
    return n?.kind === 'dir' ? [...n.entries.keys()].sort(byName) : undefined;
  }

  /**
   * Every inode reachable from the root plus `extra` (inodes no longer
   * linked but still open), for a VM snapshot.
   */
  image(extra: VfsNode[] = []): FsImage {
    const nodes: FsImage['nodes'] = this.reachable(extra).map((n) => ({
      ino: n.ino,
      kind: n.kind,
      times: [n.atimNs, n.mtimNs, n.ctimNs],
      data: n.kind === 'file' ? n.data.slice(0, n.size) : null,
      target: n.kind === 'symlink' ? n.target : null,
      entries: n.kind === 'dir' ? [...n.entries].map(([name, e]): [string, bigint, bigint] => [name, e.node.ino, e.seq]) : null,
      nextSeq: n.kind === 'dir' ? n.nextSeq : null,
      linked: n.kind === 'dir' ? n.linked : null,
    }));
    return { maxFileSize: this.maxFileSize, nextIno: this.nextIno, nodes };
  }

  /** The filesystem an image describes, and its inodes by number. Error on an inconsistent image. */
  static fromImage(img: FsImage): { fs: VirtualFs; byIno: Map<bigint, VfsNode> } {
    const fs = new VirtualFs({ maxFileSize: img.maxFileSize });
    const first = img.nodes[0];
    if (!first || first.kind !== 'dir' || first.ino !== fs.root.ino) throw new Error('filesystem image: the first node must be the root');
    const byIno = new Map<bigint, VfsNode>();
    for (const n of img.nodes) {
      const [atimNs, mtimNs, ctimNs] = n.times;
      let node: VfsNode;
      if (n.ino === fs.root.ino) node = fs.root;
      else if (n.kind === 'dir') node = { kind: 'dir', ino: n.ino, parent: null, entries: new Map(), nextSeq: 0n, linked: false, atimNs, mtimNs, ctimNs };
      else if (n.kind === 'file') {
        const data = n.data ?? new Uint8Array(0);
        node = { kind: 'file', ino: n.ino, nlink: 0, data, size: data.length, hash: null, atimNs, mtimNs, ctimNs };
      } else node = { kind: 'symlink', ino: n.ino, nlink: 0, target: n.target ?? '', atimNs, mtimNs, ctimNs };
      node.atimNs = atimNs;
      node.mtimNs = mtimNs;
      node.ctimNs = ctimNs;
      byIno.set(n.ino, node);
    }
    for (const n of img.nodes) {
      if (n.kind !== 'dir') continue;
      const dir = byIno.get(n.ino) as VfsDir;
      for (const [name, ino, seq] of n.entries ?? []) {
        const child = byIno.get(ino);
        if (!child) throw new Error(`filesystem image: directory ${n.ino} names missing inode ${ino}`);
        dir.entries.set(name, { node: child, seq });
        if (child.kind === 'dir') {
          child.parent = dir;
          child.linked = true;
        } else child.nlink++;
      }
      dir.nextSeq = n.nextSeq ?? BigInt(dir.entries.size);
      dir.linked = n.ino === fs.root.ino || (n.linked ?? false);
    }
    fs.nextIno = img.nextIno;
    fs.inodes = img.nodes.length;
    return { fs, byIno };
  }

  /**
   * A canonical encoding of the whole tree for state digests, independent of
   * paths and of the order calls built it in beyond what a guest can observe:
   * JSON of the next inode number and every reachable inode (plus `extra`) in
   * inode order: `[ino, 'd', times, nextSeq, linked, [[name, ino, seq]...]]`,
   * `[ino, 'f', times, nlink, size, sha256hex]`, `[ino, 'l', times, nlink, target]`,
   * with times as three decimal ns strings.
   */
  snapshot(extra: VfsNode[] = []): string {
    const rows: unknown[][] = [];
    for (const n of this.reachable(extra)) {
      const times = [String(n.atimNs), String(n.mtimNs), String(n.ctimNs)];
      if (n.kind === 'dir') rows.push([Number(n.ino), 'd', times, Number(n.nextSeq), n.linked, [...n.entries].map(([name, e]) => [name, Number(e.node.ino), Number(e.seq)])]);
      else if (n.kind === 'symlink') rows.push([Number(n.ino), 'l', times, n.nlink, n.target]);
      else rows.push([Number(n.ino), 'f', times, n.nlink, n.size, fileHash(n)]);
    }
    rows.sort((a, b) => (a[0] as number) - (b[0] as number));
    return JSON.stringify({ nextIno: Number(this.nextIno), nodes: rows });
  }

  /** Every inode reachable from the root, then from `extra`, each once, depth first in entry order. */
  private reachable(extra: VfsNode[]): VfsNode[] {
    const out: VfsNode[] = [];
    const seen = new Set<bigint>();
    const stack: VfsNode[] = [...extra.slice().reverse(), this.root];
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (seen.has(n.ino)) continue;
      seen.add(n.ino);
      out.push(n);
      if (n.kind === 'dir') for (const e of [...n.entries.values()].reverse()) stack.push(e.node);
    }
    return out;
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** sha256 (hex) of a file's contents, cached until the next change */
export function fileHash(f: VfsFile): string {
  if (f.hash === null) f.hash = sha256(f.data.subarray(0, f.size));
  return f.hash;
}

/**
 * The path of a directory from its filesystem's root ('.' for the root), or
 * null if it is no longer linked into the tree. A file or symlink has no path
 * of its own (it may have several names): null for them.
 */
export function vfsPath(fs: VirtualFs, n: VfsNode): string | null {
  if (n.kind !== 'dir') return null;
  const parts: string[] = [];
  let cur: VfsDir = n;
  while (cur !== fs.root) {
    const p: VfsDir | null = cur.parent;
    if (!p || !cur.linked) return null;
    let name: string | null = null;
    for (const [k, e] of p.entries) if (e.node === cur) name = k;
    if (name === null) return null;
    parts.push(name);
    cur = p;
  }
  return parts.length === 0 ? '.' : parts.reverse().join('/');
}

/** true when `d` is still reachable from its root (a removed directory resolves nothing). */
export function isLinked(d: VfsDir): boolean {
  for (let cur: VfsDir | null = d; cur; cur = cur.parent) if (!cur.linked) return false;
  return true;
}

/** Resizes a file's contents to `size` bytes (zero-filled when growing), keeping spare capacity up to `limit`. Bytes past `size` are always 0. */
export function resizeFile(f: VfsFile, size: number, limit: number): void {
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
