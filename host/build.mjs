#!/usr/bin/env node
// Ahead-of-time build of the host: the TypeScript under host/ becomes plain
// JavaScript under dist/, so that `ftvm` starts in about the time Node itself
// takes instead of transpiling every module at every start (tsx: seconds of
// CPU). `node host/build.mjs` builds when the sources changed since the last
// build (`--force`: always; `--check`: only say, exit 1 when out of date).
//
// Layout. dist/ sits beside host/ at the same depth under the repository
// root and mirrors it file for file: every file under host/ is copied as it
// is, and each X.ts also becomes X.js (with X.js.map pointing back at the
// source), its relative `.ts` imports rewritten to `.js`. The same depth and
// the copies keep every path the code builds from import.meta.url valid from
// either tree: `../../guests/` (samples.ts), `./ui.html` (ui.ts), the worker
// entries (`./worker-entry.mjs` and the others, which load their
// worker through `runtime/load-worker.mjs`), `../cli/ftvm.mjs`, and the
// metering pass's own sources, which meter/cache.ts hashes into its cache
// key (identical copies, so the sources and the build share one cache).
//
// Staleness. dist/.stamp.json records, for every file under host/, its size,
// mtime, ctime and inode as they were when the build read it. The build is
// current when the same files exist with the same four values: any write,
// rename, copy-over or checkout changes the ctime (which no tool can set
// back) or the inode, and an added or removed file changes the set. A source
// whose timestamps are within RACY_MS of the moment the build looked at it
// could still be written again within the same filesystem clock tick without
// its timestamps moving; it is recorded as unknown, so the next start builds
// again (git's "racily clean" rule). Checking costs one readdir per folder
// and one stat per file: about a millisecond for the ~70 files (measured by
// `ftvm bench startup`).
//
// Concurrency. Several processes may start at once on out-of-date sources
// (a test suite spawning the CLI). One takes dist/.lock (holding its pid) and
// builds; the others wait for it (at most LOCK_WAIT_MS) and then look again.
// A lock whose process is gone is taken over. Each file is written to a
// temporary name and renamed into place, and the stamp is removed before and
// written after everything else, so an interrupted build is never current.

import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: this file is host/build.mjs (or its copy, dist/build.mjs). */
export const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** Where the sources are. */
export const SOURCE_DIR = join(ROOT, 'host');
/** Where the build goes (ignored by git). */
export const BUILD_DIR = join(ROOT, 'dist');

const STAMP = '.stamp.json';
const LOCK = '.lock';
const STAMP_FORMAT = 1;
/** Timestamps this close (ms) to the build's look at a file may hide a later write in the same clock tick. */
const RACY_MS = 50;
/** How long a start waits for another process's build before building itself. */
const LOCK_WAIT_MS = 60_000;
/** A bound on the source tree walked at each start. */
const MAX_SOURCE_FILES = 10_000;

/**
 * Every file under host/ with its identity: relative path (with "/") ->
 * [size bytes, mtime ms, ctime ms, inode]. Hidden files and editor backups
 * ("~" or "#" names) are left out. Throws when there are more than
 * MAX_SOURCE_FILES files.
 * @param {string} dir
 * @returns {Map<string, number[]>}
 */
export function sourceFiles(dir = SOURCE_DIR) {
  /** @type {Map<string, number[]>} */
  const out = new Map();
  // `rel` is the folder's path under `dir` with "/" (names are joined by hand: path.relative per file costs more than the stat).
  const walk = (abs, rel) => {
    for (const e of readdirSync(abs, { withFileTypes: true })) {
      if (e.name.startsWith('.') || e.name.startsWith('#') || e.name.endsWith('~')) continue;
      const p = `${abs}${sep}${e.name}`;
      if (e.isDirectory()) walk(p, `${rel}${e.name}/`);
      else if (e.isFile()) {
        if (out.size >= MAX_SOURCE_FILES) throw new Error(`more than ${MAX_SOURCE_FILES} files under ${dir}`);
        const s = statSync(p);
        out.set(`${rel}${e.name}`, [s.size, s.mtimeMs, s.ctimeMs, s.ino]);
      }
    }
  };
  walk(dir, '');
  return out;
}

/**
 * Whether dist/ holds the build of exactly the files now under host/ (see
 * "Staleness" above). Never throws: anything unreadable means "no".
 * @returns {boolean}
 */
export function buildIsCurrent() {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(join(BUILD_DIR, STAMP), 'utf8'));
  } catch {
    return false;
  }
  if (stamp?.format !== STAMP_FORMAT || typeof stamp.files !== 'object' || stamp.files === null) return false;
  let now;
  try {
    now = sourceFiles();
  } catch {
    return false;
  }
  const was = stamp.files;
  if (Object.keys(was).length !== now.size) return false;
  for (const [f, id] of now) {
    const w = was[f];
    if (!Array.isArray(w) || w.length !== id.length || w.some((v, i) => v !== id[i])) return false;
  }
  return true;
}

/** Rewrites the relative `.ts` specifiers of esbuild's output (always double-quoted) to `.js`. */
function rewriteImports(js) {
  return js.replace(/(\b(?:from|import)\s*\(?\s*)"(\.{1,2}\/[^"\n]*)\.ts"/g, '$1"$2.js"');
}

/** Writes a file under a temporary name and renames it into place, so a reader never sees half of it. */
function writeAtomic(path, data) {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/** A synchronous pause (a start that waits for another process's build has nothing else to do). */
function pause(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function processAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/**
 * Takes dist/.lock, waiting while another live process holds it. Returns
 * false when, after waiting, the build turned out current (nothing to do).
 * Throws FTVM_ERR_BUILD_LOCKED when the lock was held for LOCK_WAIT_MS.
 */
function takeLock(lock, force) {
  const until = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return true;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    let holder = NaN;
    try {
      holder = Number(readFileSync(lock, 'utf8'));
    } catch {
      continue; // released meanwhile
    }
    if (Number.isInteger(holder) && holder > 0 && !processAlive(holder)) {
      rmSync(lock, { force: true }); // left by a build that was killed
      continue;
    }
    if (!force && buildIsCurrent()) return false;
    if (Date.now() > until) {
      const e = new Error(`${lock} has been held by process ${holder} for ${LOCK_WAIT_MS} ms`);
      e.code = 'FTVM_ERR_BUILD_LOCKED';
      throw e;
    }
    pause(20);
  }
}

/**
 * Builds dist/ from host/ unless it is current (or `force`). Returns what it
 * did: built (false when it was current), files (sources seen), ms (wall).
 * Throws esbuild's error (with every message) when a source does not
 * transpile, FTVM_ERR_BUILD_LOCKED (see takeLock), or a filesystem error
 * (e.g. EACCES when dist/ cannot be written); dist/ is then not current.
 * @param {{ force?: boolean }} [opts]
 * @returns {Promise<{ built: boolean, files: number, ms: number }>}
 */
export async function build({ force = false } = {}) {
  const t0 = performance.now();
  if (!force && buildIsCurrent()) return { built: false, files: 0, ms: performance.now() - t0 };
  mkdirSync(BUILD_DIR, { recursive: true });
  const lock = join(BUILD_DIR, LOCK);
  if (!takeLock(lock, force)) return { built: false, files: 0, ms: performance.now() - t0 };
  try {
    rmSync(join(BUILD_DIR, STAMP), { force: true });
    const lookedAtMs = Date.now();
    const files = sourceFiles();
    const { build: esbuild } = await import('esbuild');
    const ts = [...files.keys()].filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
    const result = await esbuild({
      absWorkingDir: ROOT,
      entryPoints: ts.map((f) => join(SOURCE_DIR, f)),
      outbase: SOURCE_DIR,
      outdir: BUILD_DIR,
      bundle: false,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      tsconfig: join(SOURCE_DIR, 'tsconfig.json'),
      sourcemap: 'linked',
      logLevel: 'silent',
      write: false,
    });
    const written = new Set();
    for (const out of result.outputFiles) {
      // `.ts` -> `.js` keeps every column, so the source maps stay exact.
      const text = out.path.endsWith('.js') ? rewriteImports(out.text) : out.text;
      writeAtomic(out.path, text);
      written.add(out.path);
    }
    for (const f of files.keys()) {
      const to = join(BUILD_DIR, f);
      writeAtomic(to, readFileSync(join(SOURCE_DIR, f)));
      written.add(to);
    }
    // Whatever a removed source left behind goes.
    const prune = (d) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) prune(p);
        else if (!written.has(p) && e.name !== LOCK && e.name !== STAMP) unlinkSync(p);
      }
    };
    prune(BUILD_DIR);
    const stamp = {};
    for (const [f, id] of files) stamp[f] = Math.max(id[1], id[2]) >= lookedAtMs - RACY_MS ? [id[0], -1, -1, -1] : id;
    writeAtomic(join(BUILD_DIR, STAMP), JSON.stringify({ format: STAMP_FORMAT, files: stamp }));
    return { built: true, files: files.size, ms: performance.now() - t0 };
  } finally {
    rmSync(lock, { force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  if (args.includes('--check')) {
    const ok = buildIsCurrent();
    process.stdout.write(ok ? 'dist/ is current\n' : 'dist/ is out of date\n');
    process.exitCode = ok ? 0 : 1;
  } else {
    try {
      const r = await build({ force: args.includes('--force') });
      process.stdout.write(r.built ? `built dist/ from ${r.files} files in ${(r.ms / 1000).toFixed(2)} s\n` : 'dist/ is current\n');
    } catch (err) {
      process.stderr.write(`host/build.mjs: ${err.code ? `${err.code}: ` : ''}${err.message}\n`);
      process.exitCode = 1;
    }
  }
}

