// What a log holds at count 0, after its start entry and before the guest
// runs: the files of each preopened directory, then stdin when it is given
// whole. The live side (a recording, a live replica that boots the VM) logs
// it and runs the guest on what a replay rebuilds from the log, so both sides
// start from the same state (the same inode numbers, names and times).

import type { EntryKind, EntryPayloads, StdinMode } from '../../log/format.ts';
import type { Preopen } from '../instance.ts';
import { VirtualFs, type VfsDir, type VfsNode } from '../wasi.ts';
import { chunksOf, DivergenceError } from './core.ts';
import { onFd, type Feed } from './feed.ts';

/** One node of a preopened directory as the log holds it (plain data: it crosses to a replica's worker thread). */
export interface TreeNode {
  /** '/'-separated from the preopen's root; '' is the root itself */
  path: string;
  dir: boolean;
  /** a file's contents, or a symbolic link's target (UTF-8) */
  bytes: Uint8Array;
  /** a symbolic link */
  symlink: boolean;
  /** modification time, ns since the epoch */
  mtimeNs: bigint;
}

/** A preopened directory as plain data: its guest name and its tree (see fsTree). */
export interface PreopenTree {
  name: string;
  tree: TreeNode[];
}

/** The root, then every directory, file and symbolic link under it, depth first in name order. */
export function fsTree(fs: VirtualFs): TreeNode[] {
  const out: TreeNode[] = [{ path: '', dir: true, bytes: new Uint8Array(0), symlink: false, mtimeNs: fs.root.mtimNs }];
  const walk = (dir: VfsDir, at: string): void => {
    for (const name of [...dir.entries.keys()].sort(byName)) {
      const node = dir.entries.get(name)!.node;
      const path = at ? `${at}/${name}` : name;
      if (node.kind === 'dir') {
        out.push({ path, dir: true, bytes: new Uint8Array(0), symlink: false, mtimeNs: node.mtimNs });
        walk(node, path);
      } else if (node.kind === 'file') {
        out.push({ path, dir: false, bytes: node.data.slice(0, node.size), symlink: false, mtimeNs: node.mtimNs });
      } else {
        out.push({ path, dir: false, bytes: new TextEncoder().encode(node.target), symlink: true, mtimeNs: node.mtimNs });
      }
    }
  };
  walk(fs.root, '');
  return out;
}

/** The tree a `fsTree` describes, with the same names, contents and times (atim, mtim and ctim all the logged mtime). */
export function fsFromTree(tree: readonly TreeNode[]): VirtualFs {
  const fs = new VirtualFs();
  for (const n of tree) {
    if (n.dir) fs.mkdirp(n.path);
    else if (n.symlink) fs.symlink(new TextDecoder().decode(n.bytes), n.path);
    else fs.writeFile(n.path, n.bytes);
  }
  // Times last: linking entries into a directory must not move what was logged.
  for (const n of tree) {
    const node = nodeAt(fs, n.path);
    if (node) node.atimNs = node.mtimNs = node.ctimNs = n.mtimeNs;
  }
  return fs;
}

/** The node at a '/'-separated path, without following symbolic links. */
function nodeAt(fs: VirtualFs, path: string): VfsNode | undefined {
  let cur: VfsNode = fs.root;
  for (const part of path.split('/').filter((p) => p !== '')) {
    if (cur.kind !== 'dir') return undefined;
    const next = cur.entries.get(part);
    if (!next) return undefined;
    cur = next.node;
  }
  return cur;
}

/** Name order as the filesystem lists names (UTF-16 code units). */
const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

type Append = <K extends EntryKind>(kind: K, count: bigint, payload: EntryPayloads[K]) => unknown;

/**
 * Logs a live run's preamble through `append`: the start entry, the files of
 * `trees` (in fd order; none: the log holds no files and the guest gets the
 * default empty "/"), then `stdin` when start.stdin is 'whole' (or absent).
 * Returns the preopens the guest runs on, rebuilt from what was logged
 * (undefined without `trees`).
 */
export function logPreamble(append: Append, start: EntryPayloads['start'], trees: readonly PreopenTree[] | undefined, stdin: Uint8Array | undefined): Preopen[] | undefined {
  append('start', 0n, start);
  trees?.forEach(({ tree }, preopen) => {
    for (const node of tree) {
      const head = { path: node.path, dir: node.dir, preopen, mtimeNs: node.mtimeNs, ...(node.symlink ? { symlink: true } : {}) };
      if (node.dir) append('file', 0n, { ...head, bytes: new Uint8Array(0) });
      else for (const bytes of chunksOf(node.bytes)) append('file', 0n, { ...head, bytes });
    }
  });
  // Large byte payloads span several entries at the same count (an entry's size is limited).
  if ((start.stdin ?? 'whole') === 'whole') for (const bytes of chunksOf(stdin ?? new Uint8Array(0))) append('input', 0n, { fd: 0, bytes });
  return trees?.map((t) => ({ name: t.name, fs: fsFromTree(t.tree) }));
}

/** What a replay rebuilds from a log's preamble. */
export interface Preamble {
  /** how fd 0 is given (a version-2 log: 'whole') */
  stdinMode: StdinMode;
  /** stdin's bytes when given whole; null: the feed went live before them */
  stdin: Uint8Array | null;
  /** the preopened directories, in fd order (a version-2 log: "/") */
  preopens: Preopen[];
  /** the guest has the NIC's listening socket (a version-2 log: true) */
  listen: boolean;
}

/**
 * Reads the preamble that follows `start` (already taken) from `feed`.
 * DivergenceError: a file of a preopen the start entry does not name, a
 * file's pieces out of order, or (a whole log) the log's end.
 */
export function readPreamble(feed: Feed, start: EntryPayloads['start']): Preamble {
  // A version-2 log has none of these: stdin whole, "/" preopened, the socket given.
  const stdinMode: StdinMode = start.stdin ?? 'whole';
  const names = start.preopens ?? ['/'];
  const trees: TreeNode[][] = names.map(() => []);
  // A streamed log may bring the files in several frames: peek waits for the next entry.
  for (let first = feed.peek(); first?.kind === 'file'; first = feed.peek()) {
    const { path, dir } = first.payload;
    const preopen = first.payload.preopen ?? 0;
    if (preopen >= names.length) throw new DivergenceError(first, `a file of preopen ${preopen}`, `${names.length} preopened directories`);
    const bytes = dir
      ? feed.take('file', 0n)!.payload.bytes
      : feed.takeChunks('file', 0n, (e) => {
          if (e.payload.path !== path || e.payload.dir || (e.payload.preopen ?? 0) !== preopen || e.payload.symlink !== first!.payload.symlink) {
            throw new DivergenceError(e, `the rest of ${path}`, e.payload.path);
          }
          return e.payload.bytes;
        })!;
    trees[preopen]!.push({ path, dir, bytes, symlink: first.payload.symlink === true, mtimeNs: first.payload.mtimeNs ?? 0n });
  }
  const preopens: Preopen[] = names.map((name, i) => ({ name, fs: fsFromTree(trees[i]!) }));
  const stdin = stdinMode === 'whole' ? feed.takeChunks('input', 0n, onFd(0)) : null;
  return { stdinMode, stdin, preopens, listen: start.listen ?? true };
}

/** The trees of `preopens`, as a live run logs them (fsTree of each). */
export function preopenTrees(preopens: readonly Preopen[]): PreopenTree[] {
  return preopens.map((p) => ({ name: p.name, tree: fsTree(p.fs) }));
}
