// Making a directory and its missing parents (mkdir -p) without Node's
// recursive mkdir: on node 20, mkdirSync(path, { recursive: true }) and
// fs.promises.mkdir never return for a path under /proc (each parent it
// cannot make reports ENOENT and it tries again), so a user's
// `--log-dir /proc/x` hung a command for ever. Every directory ftvm makes on a
// path a user may give goes through here.

import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * Makes directory `path` (relative to the working directory) and each missing
 * parent, one component at a time; a directory that exists already is fine.
 * Throws the file-system error of the first component it cannot make (a Node
 * ErrnoException: ENOENT, EACCES, EROFS, ENOTDIR...), or ENOTDIR when `path`
 * exists and is not a directory.
 */
export function makeDirs(path: string): void {
  const target = resolve(path);
  const missing: string[] = [];
  for (let p = target; !existsSync(p); p = dirname(p)) {
    missing.push(p);
    if (dirname(p) === p) break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  if (!statSync(target).isDirectory()) throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${target}'`), { code: 'ENOTDIR', errno: -20, syscall: 'mkdir', path: target });
}
