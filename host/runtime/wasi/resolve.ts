/**
 * Path resolution inside a preopen, the capability boundary of preview1.
 *
 * A path is resolved component by component from a directory descriptor,
 * keeping the chain of directories from the descriptor's directory to the
 * current one:
 *  - an absolute path is refused (ENOTCAPABLE), as is an empty one (ENOENT);
 *  - `..` steps up that chain and may climb back to the directory of the
 *    descriptor the path is resolved from, never above it (ENOTCAPABLE),
 *    even when that directory is a subdirectory of its preopen: a descriptor
 *    is a capability for its own subtree only. This is wasmtime's rule
 *    (cap-std); Linux would let `..` climb to the root.
 *  - a symbolic link met in an intermediate component is always followed, the
 *    last component only when the caller asks (LOOKUPFLAGS_SYMLINK_FOLLOW) or
 *    when the path ends in '/'. Its target is resolved relative to the
 *    directory holding the link, under the same rules: an absolute target or
 *    one whose `..` leaves the preopen gives ENOTCAPABLE. More than
 *    MAX_SYMLINK_FOLLOWS links in one resolution gives ELOOP (Linux's bound).
 *  - a component longer than MAX_NAME bytes, or a path longer than MAX_PATH
 *    bytes, gives ENAMETOOLONG.
 */
import { Errno } from './abi.ts';
import { isLinked, type VfsDir, type VfsNode } from './vfs.ts';
import type { DirFd } from './fdtable.ts';
import type { Guest } from './memory.ts';

import { PATH_BYTES_MAX as MAX_PATH } from '../../limits.ts'; export { MAX_PATH };
import { NAME_BYTES_MAX as MAX_NAME } from '../../limits.ts'; export { MAX_NAME };
/** how many symlinks one resolution may follow (Linux's MAXSYMLINKS) */
import { SYMLINK_FOLLOWS_MAX as MAX_SYMLINK_FOLLOWS } from '../../limits.ts'; export { MAX_SYMLINK_FOLLOWS };

/** A resolved path: the directory holding the last component, its name, and the node if it exists. */
export interface Resolved {
  /** null when the last component is '.' or '..' (it names a directory that cannot be created or removed by name) */
  parent: VfsDir | null;
  name: string;
  node: VfsNode | undefined;
  /** the path (or the last link target followed) ended in '/' */
  slash: boolean;
  /** the preopen's root */
  root: VfsDir;
}

/** Reads and decodes a guest path (the region must already be checked): the string, or ENOENT (empty), ENAMETOOLONG, EILSEQ (not UTF-8), EINVAL (NUL). */
export function readPath(g: Guest, ptr: number, len: number): string | number {
  if (len === 0) return Errno.NOENT;
  if (len > MAX_PATH) return Errno.NAMETOOLONG;
  let s: string;
  try {
    s = new TextDecoder('utf-8', { fatal: true }).decode(g.u8.subarray(ptr, ptr + len));
  } catch {
    return Errno.ILSEQ;
  }
  if (s.includes('\0')) return Errno.INVAL;
  return s;
}


/**
 * Resolves `path` against a directory descriptor. `followLast`: follow a
 * symlink in the last component; `slashFollows`: a trailing '/' follows it too
 * (false for calls that act on the link itself: unlink, rename, link, symlink). Returns a `Resolved` or an errno (see the
 * module comment; ENOENT/ENOTDIR for a missing or non-directory intermediate
 * component, ENOENT when the descriptor's directory was removed).
 */
export function resolve(dirFd: DirFd, path: string, followLast: boolean, slashFollows = true): Resolved | number {
  const root = dirFd.fs.root;
  if (path.length === 0) return Errno.NOENT;
  if (path.startsWith('/')) return Errno.NOTCAPABLE;
  // a directory fd whose directory was removed resolves nothing
  if (!isLinked(dirFd.node)) return Errno.NOENT;
  const chain: VfsDir[] = [dirFd.node];
  let slash = path.endsWith('/');
  // Components still to walk, in reverse order (the next one last).
  const todo = path.split('/').filter((p) => p !== '').reverse();
  if (todo.length === 0) return Errno.NOENT;
  for (const p of todo) if (Buffer.byteLength(p) > MAX_NAME) return Errno.NAMETOOLONG;
  let follows = 0;
  for (;;) {
    const part = todo.pop()!;
    const last = todo.length === 0;
    const cur = chain[chain.length - 1]!;
    if (part === '.' || part === '..') {
      if (part === '..') {
        if (chain.length === 1) return Errno.NOTCAPABLE;
        chain.pop();
      }
      if (last) return { parent: null, name: part, node: chain[chain.length - 1]!, slash, root };
      continue;
    }
    const node = cur.entries.get(part)?.node;
    if (node?.kind === 'symlink' && (!last || followLast || (slash && slashFollows))) {
      if (++follows > MAX_SYMLINK_FOLLOWS) return Errno.LOOP;
      const target = node.target;
      if (target.length === 0) return Errno.NOENT;
      if (target.startsWith('/')) return Errno.NOTCAPABLE;
      const parts = target.split('/').filter((p) => p !== '');
      for (const p of parts) if (Buffer.byteLength(p) > MAX_NAME) return Errno.NAMETOOLONG;
      if (last) slash = target.endsWith('/') || slash;
      if (parts.length === 0) {
        if (last) return { parent: null, name: '.', node: cur, slash, root };
        continue;
      }
      for (let i = parts.length - 1; i >= 0; i--) todo.push(parts[i]!);
      continue;
    }
    if (last) return { parent: cur, name: part, node, slash, root };
    if (!node) return Errno.NOENT;
    if (node.kind !== 'dir') return Errno.NOTDIR;
    chain.push(node);
  }
}
