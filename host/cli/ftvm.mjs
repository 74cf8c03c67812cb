#!/usr/bin/env node
// The `ftvm` command. The host is written in TypeScript and runs as the
// JavaScript host/build.mjs makes of it in dist/. Before loading it, this
// entry checks that dist/ was built from the sources as they are now (one
// stat per source file, about a millisecond) and builds it again when not, so
// an edited source is never shadowed by an older build. When dist/ cannot be
// built (a source that does not transpile, a read-only checkout), the command
// runs from the sources through tsx, seconds slower, after saying why.
// FTVM_FROM_SOURCE=1 forces that path.
//
// `ftvm host`, `ftvm cluster` and `ftvm vm` have their own modules, and
// `ftvm run`, `record` and `replay` compile through compileGuestAsync
// (host/runtime/compile.ts), which loads the metering pass (binaryen: seconds
// to import) only for a guest that is not in the cache.
//
// FTVM_TRACE_START=1 prints, when the process exits, one JSON line to stderr:
// {"ftvmStart": {"mode": "built" | "rebuilt" | "source", "checkMs", "modules": [URL...]}},
// the modules being every module the process loaded (through a module hook,
// installed only then). The tests use it to prove what a start loads.
import { buildIsCurrent, build } from '../build.mjs';

const args = process.argv.slice(2);
const trace = process.env.FTVM_TRACE_START === '1' ? await startTrace() : null;

const [file, fn] =
  args[0] === 'host' ? ['host-cmd', 'main'] : args[0] === 'cluster' ? ['cluster-cmd', 'clusterMain'] : args[0] === 'vm' ? ['vm-cmd', 'vmMain'] : ['main', 'main'];
const own = args[0] === 'host' || args[0] === 'cluster' || args[0] === 'vm' ? args.slice(1) : args;

const t0 = performance.now();
let mode = process.env.FTVM_FROM_SOURCE === '1' ? 'source' : buildIsCurrent() ? 'built' : 'rebuilt';
const checkMs = performance.now() - t0;
if (mode === 'rebuilt') {
  try {
    const r = await build();
    if (r.built && process.stderr.isTTY) process.stderr.write(`ftvm: sources changed; rebuilt dist/ in ${(r.ms / 1000).toFixed(1)} s\n`);
  } catch (err) {
    process.stderr.write(`ftvm: cannot build dist/ (${err.code ? `${err.code}: ` : ''}${err.message.split('\n')[0]}); running from the TypeScript sources\n`);
    mode = 'source';
  }
}
let url;
if (mode === 'source') {
  const { register } = await import('tsx/esm/api');
  register();
  url = new URL(`../../host/cli/${file}.ts`, import.meta.url);
} else {
  url = new URL(`../../dist/cli/${file}.js`, import.meta.url);
}
trace?.report(mode, checkMs);
const mod = await import(url.href);
process.exitCode = await mod[fn](own);

/** Collects the URL of every module loaded from here on (FTVM_TRACE_START=1 only). */
async function startTrace() {
  const { register } = await import('node:module');
  const { MessageChannel, receiveMessageOnPort } = await import('node:worker_threads');
  const { port1, port2 } = new MessageChannel();
  port1.unref();
  const hook = `export async function initialize(p) { globalThis.port = p; }
export async function load(url, context, next) { globalThis.port.postMessage(url); return next(url, context); }`;
  register(`data:text/javascript,${encodeURIComponent(hook)}`, { data: port2, transferList: [port2] });
  let info = null;
  process.on('exit', () => {
    const modules = [];
    for (let m; (m = receiveMessageOnPort(port1)); ) modules.push(m.message);
    process.stderr.write(`${JSON.stringify({ ftvmStart: { ...info, modules } })}\n`);
  });
  return { report: (mode, checkMs) => void (info = { mode, checkMs }) };
}
