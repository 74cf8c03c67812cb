#!/usr/bin/env node
// Runs one guest under Node's built-in WASI (preview1) — a reference run for
// checking the samples, not part of ftvm itself.
//
//   node wasm-src/tools/run.mjs guests/fib.wasm 30
//
// The guest's stdout/stderr go straight to this process's fd 1/2.  With
// FTVM_RUN_TIMING=1 a line "time compile=<ms> run=<ms>" is written to stderr.
// Exit status: the guest's exit code, or 134 if the guest trapped (the trap is
// reported on stderr as "trap: <Error name>: <message>").
//
// The WASI functions are wrapped in plain JS closures before being handed to
// the module.  Node 20's node:wasi exposes them as V8 "fast API calls", and
// calling those straight from wasm crashes the process (SIGSEGV/SIGABRT) once
// the guest's memory has grown to a few tens of MiB, because node:wasi can
// trigger a GC inside the fast call (nodejs/node#46777, #51303, #53087).
// Running node with --no-turbo-fast-api-calls avoids it as well.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { WASI } from 'node:wasi';

const [file, ...args] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: run.mjs <guest.wasm> [args...]\n');
  process.exit(2);
}
const bytes = readFileSync(file);
const t0 = performance.now();
const module = await WebAssembly.compile(bytes);
const wasi = new WASI({ version: 'preview1', args: [basename(file), ...args], env: {}, returnOnExit: true });
const wasiImport = wasi.getImportObject().wasi_snapshot_preview1;
const wrapped = {};
for (const [name, fn] of Object.entries(wasiImport)) wrapped[name] = (...a) => fn(...a);
const instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wrapped });
const t1 = performance.now();
let code;
try {
  code = wasi.start(instance);
} catch (e) {
  process.stderr.write(`trap: ${e?.name}: ${e?.message}\n`);
  code = 134;
}
const t2 = performance.now();
if (process.env.FTVM_RUN_TIMING) {
  process.stderr.write(`time compile=${(t1 - t0).toFixed(1)} run=${(t2 - t1).toFixed(1)}\n`);
}
process.exitCode = code;
