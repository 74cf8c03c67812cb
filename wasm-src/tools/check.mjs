#!/usr/bin/env node
// Verifies the guest samples listed in guests/manifest.json:
//   * exports: `_start` (function) and `memory`
//   * imports: only wasi_snapshot_preview1 functions from ALLOWED_IMPORTS
//   * MVP feature set only (`wasm-opt --mvp-features`, if wasm-opt is present)
//   * runs args_test (and, unless --no-bench, args_bench) under node:wasi via
//     run.mjs and checks the outcome against `expected_test`; prints timings.
//
//   node wasm-src/tools/check.mjs [--dir guests] [--no-bench] [name...]
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const manifestPath = join(root, 'guests/manifest.json');
const runner = join(here, 'run.mjs');
const wasmOpt = join(root, 'node_modules/.bin/wasm-opt');

const ALLOWED_IMPORTS = new Set(['args_get', 'args_sizes_get', 'fd_write', 'proc_exit']);
// entropy exists to read every nondeterministic WASI input
const EXTRA_IMPORTS = {
  entropy: new Set(['clock_time_get', 'fd_read', 'random_get']),
  // asclock reads Date.now / process.hrtime / Math.random via the wasi-shim
  asclock: new Set(['clock_time_get', 'random_get']),
  // fsdemo uses wasi-libc stdio/dirent on the preopened directory
  fsdemo: new Set([
    'fd_close', 'fd_fdstat_get', 'fd_fdstat_set_flags', 'fd_prestat_get', 'fd_prestat_dir_name', 'fd_read', 'fd_readdir', 'fd_seek',
    'path_create_directory', 'path_open', 'path_remove_directory', 'path_rename', 'path_unlink_file',
  ]),
};

let dir = join(root, 'guests');
let bench = true;
const only = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--dir') dir = resolve(argv[++i]);
  else if (argv[i] === '--no-bench') bench = false;
  else only.push(argv[i]);
}

const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
let failures = 0;
const fail = (name, msg) => {
  failures++;
  console.log(`FAIL ${name}: ${msg}`);
};

function run(file, args) {
  const r = spawnSync(process.execPath, ['--no-warnings', runner, file, ...args], {
    encoding: 'utf8',
    env: { ...process.env, FTVM_RUN_TIMING: '1' },
    maxBuffer: 1 << 20,
  });
  const m = /time compile=([\d.]+) run=([\d.]+)/.exec(r.stderr);
  return {
    status: r.status,
    signal: r.signal,
    stdout: r.stdout,
    stderr: r.stderr.replace(/time compile=.*\n/, ''),
    runMs: m ? Number(m[2]) : NaN,
  };
}

for (const g of manifest.guests) {
  if (only.length && !only.includes(g.name)) continue;
  // Services need the ftvm virtual network (ftvm_io, sockets); the test suite runs them.
  if (g.kind === 'service') continue;
  const file = join(dir, g.wasm);
  if (!existsSync(file)) {
    fail(g.name, `${file} missing`);
    continue;
  }
  const bytes = readFileSync(file);
  const mod = new WebAssembly.Module(bytes);
  const imports = WebAssembly.Module.imports(mod);
  const exports = WebAssembly.Module.exports(mod);
  for (const imp of imports) {
    if (imp.module !== 'wasi_snapshot_preview1' || imp.kind !== 'function' || !(ALLOWED_IMPORTS.has(imp.name) || EXTRA_IMPORTS[g.name]?.has(imp.name))) {
      fail(g.name, `unexpected import ${imp.module}.${imp.name} (${imp.kind})`);
    }
  }
  if (!exports.some((e) => e.name === '_start' && e.kind === 'function')) fail(g.name, 'no _start export');
  if (!exports.some((e) => e.name === 'memory' && e.kind === 'memory')) fail(g.name, 'no memory export');
  if (existsSync(wasmOpt)) {
    const v = spawnSync(wasmOpt, ['--mvp-features', file, '-o', '/dev/null'], { encoding: 'utf8' });
    if (v.status !== 0) fail(g.name, `not MVP-only:\n${v.stderr}`);
  }

  const sets = [['test', g.args_test]];
  if (bench) sets.push(['bench', g.args_bench]);
  const times = [];
  for (const [label, args] of sets) {
    const r = run(file, args);
    const lines = r.stdout.split('\n').filter(Boolean);
    if (g.kind === 'compute' || g.name === 'recurse') {
      if (r.status !== 0) fail(g.name, `${label} run exited ${r.status ?? r.signal}: ${r.stderr.trim()}`);
      if (lines.length !== 1 || !lines[0].startsWith(`${g.name}(`)) {
        fail(g.name, `${label} run printed ${JSON.stringify(r.stdout)}`);
      }
    } else if (g.name === 'trap') {
      if (r.status !== 134 || !/RuntimeError: divide by zero/.test(r.stderr)) {
        fail(g.name, `${label} run did not trap with divide by zero (exit ${r.status ?? r.signal}, stderr ${JSON.stringify(r.stderr)})`);
      }
    }
    if (label === 'test' && g.expected_test) {
      const e = g.expected_test;
      if (e.stdout !== undefined && r.stdout !== e.stdout) {
        fail(g.name, `test stdout ${JSON.stringify(r.stdout)} != expected ${JSON.stringify(e.stdout)}`);
      }
      if (e.exit_code !== undefined && r.status !== e.exit_code) fail(g.name, `test exit ${r.status} != ${e.exit_code}`);
      if (e.trap !== undefined && !r.stderr.includes(e.trap)) fail(g.name, `test did not trap with "${e.trap}"`);
    }
    times.push(`${label} [${args.join(' ')}] ${r.runMs.toFixed(1)} ms`);
  }
  console.log(
    `ok   ${g.name.padEnd(8)} ${String(bytes.length).padStart(6)} B  imports: ${imports.map((i) => i.name).join(',')}  | ${times.join(' | ')}`,
  );
}

if (failures) {
  console.log(`${failures} failure(s)`);
  process.exit(1);
}
console.log('all guests OK');
