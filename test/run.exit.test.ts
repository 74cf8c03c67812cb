// A guest's exit status, as `ftvm run`, `ftvm record` and `ftvm replay` pass it
// on: 0..123 is our exit code; 124 and 125 (ftvm's own deadline and trap codes)
// and 126 and above (proc_exit's full u32: 256 used to read as 0 once cut to
// 8 bits) are reported as FTVM_ERR_EXIT_STATUS naming the full value, with
// exit code 1. The log keeps the full u32 and the replay checks it.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeFrame, encodeHeader, readLog } from '../host/log/format.ts';
import { ftvm, scratch, watFile } from './ftvm-cli.ts';

/** Exits with the status given as argv[1] in decimal (i32 arithmetic: 4294967295 is 0xffffffff). */
const EXIT_ARG = `
  (module
    (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "_start")
      (local $p i32) (local $c i32) (local $n i32)
      (drop (call $sizes (i32.const 0) (i32.const 4)))
      (drop (call $args (i32.const 16) (i32.const 1024)))
      (local.set $p (i32.load (i32.const 20)))
      (block $end
        (loop $digit
          (local.set $c (i32.load8_u (local.get $p)))
          (br_if $end (i32.eqz (local.get $c)))
          (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $digit)))
      (call $exit (local.get $n))))`;

const tmp = scratch();
afterAll(() => tmp.done());
const guest = watFile(tmp.dir, 'exit', EXIT_ARG);

describe('exit status', () => {
  it.each([0, 7, 123])('ftvm run passes status %i through', async (status) => {
    const r = await ftvm(['run', guest, '--', String(status)]);
    expect(r.code).toBe(status);
    expect(r.stderr).toBe('');
  }, 120_000);

  it.each([
    [124, '124'],
    [125, '125'],
    [126, '126'],
    [256, '256'],
    [0xffff_ffff, '4294967295'],
  ])('ftvm run reports status %i as a failure naming it, exit code 1', async (status, shown) => {
    const r = await ftvm(['run', guest, '--', String(status)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`FTVM_ERR_EXIT_STATUS: the guest exited with status ${shown},`));
  }, 120_000);

  it('ftvm record reports 256 the same way, logs the full value, and the replay checks it', async () => {
    const log = `${tmp.dir}/exit256.log`;
    const rec = await ftvm(['record', guest, '--log', log, '--', '256']);
    expect(rec.code).toBe(1);
    expect(rec.stderr).toMatch(/FTVM_ERR_EXIT_STATUS: the guest exited with status 256,/);
    const entries = readLog(readFileSync(log));
    expect(entries.find((e) => e.kind === 'exit')?.payload).toEqual({ code: 256, trap: null });
    const rep = await ftvm(['replay', guest, '--log', log]);
    expect(rep.code).toBe(0);
    expect(rep.stderr).toMatch(/^exit 256$/m);
    // A log that says 0 where the guest exits 256 (only the exit entry changed) diverges.
    const changed = entries.map((e) => (e.kind === 'exit' ? { ...e, payload: { code: 0, trap: null } } : e));
    writeFileSync(log, Buffer.concat([encodeHeader(), encodeFrame(changed)]));
    const bad = await ftvm(['replay', guest, '--log', log]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/FTVM_ERR_DIVERGENCE: .*expected exit \{"code":0,"trap":null\}, got exit \{"code":256/);
  }, 120_000);
});
