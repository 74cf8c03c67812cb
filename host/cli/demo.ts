// `ftvm demo` (run by `make demo`): what ftvm can show today, in one minute.
// Every compute sample runs metered twice and unmetered once; a guest that
// loops forever is preempted at an exact count; a runaway recursion meets the
// deterministic depth limit. A summary says whether every check held.

import { readFileSync } from 'node:fs';
import binaryen from 'binaryen';
import { compileGuest, runGuest } from '../runtime/guest.ts';
import { guestPath, loadManifest } from '../runtime/samples.ts';

const INFINITE_LOOP = `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (loop (br 0))))`;

function assemble(wat: string): Uint8Array {
  const m = binaryen.parseText(wat);
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

export function demo(out: (line: string) => void): number {
  const checks: Array<[string, boolean]> = [];
  out('ftvm demo: metered guests, exact counts, deterministic limits\n');
  out('guest     output                                   count            same twice  same as unmetered');
  for (const g of loadManifest().guests.filter((x) => x.kind === 'compute')) {
    const bytes = new Uint8Array(readFileSync(guestPath(g.wasm)));
    const args = [g.name, ...g.args_test];
    const a = runGuest(compileGuest(bytes), { args });
    const b = runGuest(compileGuest(bytes), { args });
    const plain = runGuest(bytes, { args, meter: { variant: 'plain' } });
    const stdout = Buffer.from(a.stdout).toString().trim();
    const twice = a.count === b.count && Buffer.compare(a.stdout, b.stdout) === 0;
    const same = Buffer.compare(a.stdout, plain.stdout) === 0 && a.exitCode === plain.exitCode;
    checks.push([`${g.name} deterministic`, twice], [`${g.name} unchanged by metering`, same]);
    out(
      `${g.name.padEnd(9)} ${stdout.slice(0, 40).padEnd(40)} ${String(a.count).padStart(16)}  ${twice ? 'yes' : 'NO '}         ${same ? 'yes' : 'NO'}`,
    );
  }
  const deadline = 1_000_000n;
  const loop = runGuest(assemble(INFINITE_LOOP), { deadline });
  out(`\nan infinite loop, deadline ${deadline}: stopped (${loop.outcome}) at count ${loop.count}`);
  checks.push(['infinite loop preempted at its deadline', loop.outcome === 'deadline' && loop.count === deadline]);
  const rec = loadManifest().guests.find((x) => x.name === 'recurse');
  if (rec) {
    const bytes = new Uint8Array(readFileSync(guestPath(rec.wasm)));
    const r1 = runGuest(bytes, { args: ['recurse', '1000000'] });
    const r2 = runGuest(bytes, { args: ['recurse', '1000000'] });
    out(`runaway recursion: ${r1.trap} at count ${r1.count} (again: ${r2.count})`);
    checks.push(['depth limit deterministic', r1.outcome === 'trap' && r1.count === r2.count]);
  }
  const failed = checks.filter(([, ok]) => !ok);
  out(`\nsummary: ${checks.length - failed.length} of ${checks.length} checks held${failed.length ? `; FAILED: ${failed.map(([n]) => n).join(', ')}` : ''}`);
  return failed.length ? 1 : 0;
}
