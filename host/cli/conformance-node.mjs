// The reference column of `ftvm conformance`: one test under Node's own
// node:wasi (preview1), in a child process of its own so that a guest that
// traps, exits or loops cannot disturb the runner.
//
// argv[2] is one JSON object: {"wasm": path, "args": [string], "env": {K: V},
// "preopens": {guestName: hostDir}}. The guest's argv[0] is the wasm path, as
// ftvm gives it. stdin, stdout and stderr are this process's own.
//
// Exit code: the guest's status (the OS keeps its low 8 bits); on a trap 125
// with a line "conformance-node: trap: MESSAGE" on stderr; when the module
// cannot be compiled or instantiated 70 with "conformance-node: error: MESSAGE".
// Plain JavaScript so that it starts in Node's own time (no TypeScript loader).
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const spec = JSON.parse(process.argv[2] ?? '{}');
let instance;
let wasi;
try {
  wasi = new WASI({
    version: 'preview1',
    args: [spec.wasm, ...(spec.args ?? [])],
    env: spec.env ?? {},
    preopens: spec.preopens ?? {},
    returnOnExit: true,
  });
  const module = await WebAssembly.compile(readFileSync(spec.wasm));
  instance = await WebAssembly.instantiate(module, wasi.getImportObject());
} catch (err) {
  process.stderr.write(`conformance-node: error: ${err?.message ?? err}\n`);
  process.exit(70);
}
try {
  process.exitCode = wasi.start(instance) ?? 0;
} catch (err) {
  process.stderr.write(`conformance-node: trap: ${err?.message ?? err}\n`);
  process.exitCode = 125;
}
