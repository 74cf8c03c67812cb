// What this proves: `ftvm record` takes a command line as large as `ftvm
// run` does (15 arguments of 100 KB: the start entry is larger than a log
// frame, 1 MiB) and its replay reproduces it; `ftvm replay` exits 0 when the
// log was reproduced whatever the guest's status was, and with
// `--exit-status guest` exits as `ftvm run` did for the recorded guest, while
// a divergence stays 3. Real child processes.
import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { watText } from './helpers.ts';
import { ftvm, scratch } from './ftvm-cli.ts';

const tmp = scratch();
afterAll(() => tmp.done());

describe('ftvm record with a large command line', () => {
  it('15 arguments of 100 KB: record, replay and run agree', async () => {
    const big = Array.from({ length: 15 }, (_, i) => String.fromCharCode(97 + i).repeat(100_000));
    const log = `${tmp.dir}/big.log`;
    const run = await ftvm(['run', 'fib', '--', ...big]);
    const rec = await ftvm(['record', 'fib', '--log', log, '--', ...big]);
    expect(rec.stderr).not.toMatch(/FTVM_ERR|exceeds/);
    expect(rec.code).toBe(run.code);
    expect(rec.stdout).toBe(run.stdout);
    const rep = await ftvm(['replay', 'fib', '--log', log]);
    expect(rep.code, rep.stderr).toBe(0);
    expect(rep.stdout).toBe(rec.stdout);
    expect(/^digest (\w+)$/m.exec(rep.stderr)?.[1]).toBe(/^digest (\w+)$/m.exec(rec.stderr)?.[1]);
  }, 120_000);
});

describe('ftvm replay exit status', () => {
  it('0 when reproduced, whatever the guest did; --exit-status guest gives the guest\'s status as ftvm run does', async () => {
    const cases: [guest: string, args: string[], status: number][] = [
      ['fib', ['10'], 0],
      ['fib', ['not-a-number', 'x'], -1], // fib's own usage error: whatever run says
      ['trap', ['10'], 125],
    ];
    for (const [guest, args, want] of cases) {
      const log = `${tmp.dir}/${guest}-${args.join('_')}.log`;
      const run = await ftvm(['run', guest, '--', ...args]);
      const status = want < 0 ? run.code : want;
      expect(run.code).toBe(status);
      const rec = await ftvm(['record', guest, '--log', log, '--', ...args]);
      expect(rec.code, rec.stderr).toBe(status);
      const plain = await ftvm(['replay', guest, '--log', log]);
      expect(plain.code, plain.stderr).toBe(0);
      const asGuest = await ftvm(['replay', guest, '--log', log, '--exit-status', 'guest']);
      expect(asGuest.code, asGuest.stderr).toBe(status);
      expect(asGuest.stdout).toBe(run.stdout);
    }
  }, 120_000);

  it('a status outside 0..123: --exit-status guest exits 1 with the line run prints', async () => {
    const guest = `${tmp.dir}/exit200.wasm`;
    writeFileSync(guest, watText(`(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (call $exit (i32.const 200))))`));
    const log = `${tmp.dir}/exit200.log`;
    const rec = await ftvm(['record', guest, '--log', log]);
    expect(rec.code).toBe(1);
    expect(rec.stderr).toMatch(/^ftvm: FTVM_ERR_EXIT_STATUS: the guest exited with status 200/m);
    const asGuest = await ftvm(['replay', guest, '--log', log, '--exit-status', 'guest']);
    expect(asGuest.code).toBe(1);
    expect(asGuest.stderr).toMatch(/^ftvm: FTVM_ERR_EXIT_STATUS: the guest exited with status 200/m);
    expect((await ftvm(['replay', guest, '--log', log])).code).toBe(0);
  }, 120_000);

  it('a divergence is 3 under --exit-status guest too', async () => {
    const log = `${tmp.dir}/fib-exit.log`;
    await ftvm(['record', 'fib', '--log', log, '--', '10']);
    const r = await ftvm(['replay', 'hash', '--log', log, '--exit-status', 'guest']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^ftvm: FTVM_ERR_DIVERGENCE: /m);
  }, 120_000);
});
