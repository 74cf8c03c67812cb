// What `ftvm run`, `ftvm record` and `ftvm replay` give a guest from the
// outside world and take back from it: preopened directories (`--dir`,
// `--fs`), the process's stdin, the files it leaves (`--dir-writeback`,
// `--out`), and how its exit status becomes ours.
//
// Determinism: a host directory is read once, when the VM starts, into the
// VM's in-memory filesystem (and, under record, into the log with each file's
// modification time); the guest never sees a change made to the host
// directory after that. Its writes stay in the VM until it ends; write-back
// copies the final tree out after the VM ended and is not part of the VM, so
// a replay from the log gives the same files (to `--out`) without any host
// directory. Nothing here loads binaryen.

import { existsSync, fstatSync, lstatSync, readdirSync, readlinkSync, readSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sleepNs } from '../runtime/events.ts';
import type { Preopen, RunResult } from '../runtime/instance.ts';
import { VirtualFs } from '../runtime/wasi.ts';
import { PREOPENS_MAX } from '../log/format.ts';
import type { NicMessage } from '../runtime/nic.ts';
import { hostStdout } from './host-output.ts';
import type { FtvmErrorCode } from '../errors.ts';
import { makeDirs } from '../dirs.ts';

/** A bad `--dir`, `--fs` or `--out` value; `code` names which rule it broke. */
export class GuestDirError extends Error {
  constructor(
    readonly code: Extract<FtvmErrorCode, 'FTVM_ERR_DIR_SYNTAX' | 'FTVM_ERR_DIR_NOT_FOUND' | 'FTVM_ERR_DIR_NOT_A_DIR' | 'FTVM_ERR_DIR_DUPLICATE' | 'FTVM_ERR_DIR_TOO_MANY' | 'FTVM_ERR_OUT_NOT_EMPTY'>,
    message: string,
  ) {
    super(message);
    this.name = 'GuestDirError';
  }
}

/** One `--dir HOST[::GUEST]`: the host directory and the name the guest sees it under. */
export interface DirSpec {
  host: string;
  guest: string;
}

/**
 * Parses `--dir` values (HOST, or HOST::GUEST as wasmtime's `--dir` takes
 * them; GUEST defaults to HOST as written) and `--fs DIR` (= `--dir DIR::/`,
 * placed first). Checks each host path is an existing directory and that no
 * guest name repeats. Errors: FTVM_ERR_DIR_SYNTAX (an empty part),
 * FTVM_ERR_DIR_NOT_FOUND, FTVM_ERR_DIR_NOT_A_DIR, FTVM_ERR_DIR_DUPLICATE,
 * FTVM_ERR_DIR_TOO_MANY (more than PREOPENS_MAX).
 */
export function parseDirs(dirs: readonly string[] | undefined, fs: string | undefined): DirSpec[] {
  const specs: DirSpec[] = [];
  if (fs !== undefined) specs.push({ host: fs, guest: '/' });
  for (const v of dirs ?? []) {
    const sep = v.indexOf('::');
    const host = sep < 0 ? v : v.slice(0, sep);
    const guest = sep < 0 ? v : v.slice(sep + 2);
    if (!host || !guest) throw new GuestDirError('FTVM_ERR_DIR_SYNTAX', `--dir expects HOST or HOST::GUEST, got "${v}"`);
    specs.push({ host, guest });
  }
  if (specs.length > PREOPENS_MAX) throw new GuestDirError('FTVM_ERR_DIR_TOO_MANY', `at most ${PREOPENS_MAX} directories can be preopened, ${specs.length} were given`);
  const seen = new Set<string>();
  for (const s of specs) {
    const flag = s.guest === '/' && fs === s.host ? `--fs ${s.host}` : `--dir ${s.host}::${s.guest}`;
    if (!existsSync(s.host)) throw new GuestDirError('FTVM_ERR_DIR_NOT_FOUND', `${flag}: ${s.host} does not exist`);
    if (!statSync(s.host).isDirectory()) throw new GuestDirError('FTVM_ERR_DIR_NOT_A_DIR', `${flag}: ${s.host} is not a directory`);
    if (seen.has(s.guest)) throw new GuestDirError('FTVM_ERR_DIR_DUPLICATE', `${flag}: the guest name "${s.guest}" is given twice`);
    seen.add(s.guest);
  }
  return specs;
}

/** Reads each host directory once into an in-memory tree (regular files and directories; symlinks and special files are skipped). */
export function loadPreopens(specs: readonly DirSpec[]): Preopen[] {
  return specs.map((s) => ({ name: s.guest, fs: VirtualFs.fromHostDir(s.host) }));
}

/**
 * The process's stdin as a streamed source (RunOptions.stdinRead) when fd 0
 * is a pipe, a socket or a regular file; null when it is a terminal or
 * another device (the guest then gets an empty stdin, as before). Reads block
 * until bytes come; a non-blocking descriptor's EAGAIN is waited out in steps
 * of at most 10 ms. End of file, or a descriptor that cannot be read,
 * gives an empty read (end of file) from then on.
 */
export function processStdin(): ((maxBytes: number) => Uint8Array) | null {
  let kind: 'stream' | null = null;
  try {
    const st = fstatSync(0);
    if (st.isFIFO() || st.isFile() || st.isSocket()) kind = 'stream';
  } catch {
    return null;
  }
  if (!kind) return null;
  let ended = false;
  return (maxBytes) => {
    if (ended) return new Uint8Array(0);
    const buf = Buffer.alloc(Math.max(1, Math.min(maxBytes, 1 << 20)));
    for (let backoffMs = 1; ; backoffMs = Math.min(backoffMs * 2, 10)) {
      try {
        const n = readSync(0, buf, 0, buf.length, null);
        if (n === 0) ended = true;
        return new Uint8Array(buf.subarray(0, n));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          sleepNs(BigInt(backoffMs) * 1_000_000n);
          continue;
        }
        if (code === 'EOF') {
          ended = true;
          return new Uint8Array(0);
        }
        throw e;
      }
    }
  };
}

/**
 * How a guest's exit status becomes the command's exit code (wasmtime's rule
 * for its CLI, with ftvm's own codes kept apart): a status 0..123 passes
 * through; a trap is 125 and a stop at the deadline 124 (ftvm's own); any
 * other status (124, 125: they would read as ftvm's; 126 and above: reserved
 * by shells, and by WASI's proc_exit, which treats them as a failure) is
 * reported with its full u32 value and gives 1. Returns the code and the
 * message to print (null: none): `ftvm: FTVM_ERR_TRAP: guest trapped: MESSAGE`,
 * `ftvm: FTVM_ERR_DEADLINE: ...`, `ftvm: FTVM_ERR_EXIT_STATUS: ...`.
 */
export function exitStatus(r: Pick<RunResult, 'outcome' | 'exitCode' | 'trap'>): { code: number; message: string | null } {
  if (r.outcome === 'trap') return { code: 125, message: `ftvm: FTVM_ERR_TRAP: guest trapped: ${r.trap}` };
  if (r.outcome === 'deadline') return { code: 124, message: 'ftvm: FTVM_ERR_DEADLINE: guest stopped at its deadline' };
  const status = r.exitCode ?? 0;
  if (status >= 0 && status <= 123) return { code: status, message: null };
  return {
    code: 1,
    message:
      `ftvm: FTVM_ERR_EXIT_STATUS: the guest exited with status ${status}, which is outside 0..123 ` +
      `(124 and 125 are ftvm's deadline and trap codes, 126 and above are reserved); exiting with 1`,
  };
}

interface HostNode {
  path: string;
  kind: 'dir' | 'file' | 'symlink';
}

/** Every directory, file and symbolic link of an in-memory tree, parents before children. */
function treeOf(fs: VirtualFs): HostNode[] {
  const out: HostNode[] = [];
  const walk = (dir: string): void => {
    for (const name of fs.list(dir) ?? []) {
      const path = dir ? `${dir}/${name}` : name;
      if (fs.readFile(path)) out.push({ path, kind: 'file' });
      else if (fs.readLink(path) !== undefined) out.push({ path, kind: 'symlink' });
      else if (fs.list(path)) {
        out.push({ path, kind: 'dir' });
        walk(path);
      }
    }
  };
  walk('');
  return out;
}

/** A name from the VM is one path component (the WASI host refuses '/', '..' and NUL in names; this is the last line). */
function safe(path: string): string {
  for (const part of path.split('/')) {
    if (!part || part === '.' || part === '..' || part.includes('\0')) throw new Error(`refusing to write the guest's path "${path}" to the host`);
  }
  return path;
}

/** Whether something (a dangling symlink included) is at `path`. */
function present(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes a tree's directories, files and symbolic links (as links, their
 * targets as the guest wrote them) under `root` (created); `only` picks the
 * files to write. Returns how many files and links were written.
 */
function writeTree(fs: VirtualFs, root: string, only?: (path: string, bytes: Uint8Array) => boolean): number {
  makeDirs(root);
  let written = 0;
  for (const n of treeOf(fs)) {
    const to = join(root, safe(n.path));
    const isDir = present(to) && lstatSync(to).isDirectory();
    if (n.kind === 'dir') {
      if (present(to) && !isDir) rmSync(to, { force: true });
      makeDirs(to);
      continue;
    }
    if (n.kind === 'symlink') {
      const target = fs.readLink(n.path)!;
      if (present(to) && !isDir && lstatSync(to).isSymbolicLink() && readlinkSync(to) === target) continue;
      if (present(to)) rmSync(to, { recursive: true, force: true });
      symlinkSync(target, to);
      written++;
      continue;
    }
    const bytes = fs.readFile(n.path)!;
    if (only && !only(n.path, bytes)) continue;
    if (present(to) && (isDir || lstatSync(to).isSymbolicLink())) rmSync(to, { recursive: true, force: true });
    writeFileSync(to, bytes);
    written++;
  }
  return written;
}

/**
 * `--dir-writeback`: makes each host directory hold what the guest left in
 * its preopen: files it created or changed are written, directories created,
 * and what it removed (present when the VM started, absent at its end) is
 * removed. Anything else in the host directory (added there while the guest
 * ran) is left alone. `initial` is what was read at start, in the same order
 * as `final`. Returns a one-line summary per directory.
 */
export function writeBack(specs: readonly DirSpec[], initial: readonly Preopen[], final: readonly Preopen[]): string[] {
  return specs.map((s, i) => {
    const before = initial[i]!.fs;
    const after = final[i]!.fs;
    const written = writeTree(after, s.host, (path, bytes) => {
      const was = before.readFile(path);
      return !was || Buffer.compare(was, bytes) !== 0;
    });
    // What the guest left, by path: a node it replaced by another kind was rewritten above.
    const now = new Set(treeOf(after).map((n) => n.path));
    let removed = 0;
    // Deepest first, so a removed directory's contents go before it.
    for (const n of treeOf(before).reverse()) {
      if (now.has(n.path)) continue;
      const at = join(s.host, safe(n.path));
      if (!present(at)) continue;
      rmSync(at, { recursive: true, force: true });
      removed++;
    }
    return `write-back ${s.host} (${s.guest}): ${written} files written, ${removed} removed`;
  });
}

/**
 * `--out DIR`: writes the final tree of preopen i (in --dir order) to
 * DIR/i. DIR must not exist or be empty (FTVM_ERR_OUT_NOT_EMPTY), so nothing
 * of the user's is overwritten. Returns a one-line summary per preopen.
 */
export function checkOut(dir: string): void {
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0)) {
    throw new GuestDirError('FTVM_ERR_OUT_NOT_EMPTY', `--out ${dir}: must be an empty directory or not exist`);
  }
}

/** Writes each preopen's final tree to DIR/<index> (see checkOut). */
export function writeOut(dir: string, final: readonly Preopen[]): string[] {
  makeDirs(dir);
  return final.map((p, i) => {
    const files = writeTree(p.fs, join(dir, String(i)));
    return `out ${join(dir, String(i))} (${p.name}): ${files} files`;
  });
}

/** A message as one JSON line: text when it is valid UTF-8 without control characters other than newline and tab, else base64. */
export function printSend(m: NicMessage): void {
  const text = Buffer.from(m.bytes).toString('utf8');
  const plain = Buffer.from(text, 'utf8').equals(Buffer.from(m.bytes)) && !/[\u0000-\u0008\u000b-\u001f]/.test(text);
  const body = m.eof ? { conn: m.conn, eof: true } : plain ? { conn: m.conn, data: text } : { conn: m.conn, base64: Buffer.from(m.bytes).toString('base64') };
  hostStdout.write(`${JSON.stringify({ send: body })}\n`);
}
