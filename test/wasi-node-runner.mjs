// Runs a WASI preview1 command under Node's own node:wasi, as the reference the
// real-program tests compare ftvm with. One JSON argument:
//   {"wasm": PATH, "args": [...], "env": {K: V}, "preopens": {GUEST: HOST}}
// args[0] is the program name. The guest's fd 0, 1 and 2 are this process's, so
// stdin comes from the pipe the test gives it. The exit code is the guest's status.
//
// The WASI functions are wrapped in plain closures: Node 20 exposes them as V8 fast
// API calls, and calling those straight from wasm can crash once the guest's memory
// has grown (nodejs/node#46777, #51303), as wasm-src/tools/run.mjs notes.
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const spec = JSON.parse(process.argv[2]);
const wasi = new WASI({ version: 'preview1', args: spec.args, env: spec.env ?? {}, preopens: spec.preopens ?? {}, returnOnExit: true });
const module = await WebAssembly.compile(readFileSync(spec.wasm));
const raw = wasi.getImportObject().wasi_snapshot_preview1;
const wrapped = {};
for (const [name, fn] of Object.entries(raw)) wrapped[name] = (...a) => fn(...a);
const instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wrapped });
process.exitCode = wasi.start(instance);
