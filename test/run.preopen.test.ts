// Preopened directories as wasmtime users pass them: `--dir HOST[::GUEST]`
// (repeatable), `--fs DIR` = `--dir DIR::/`, none given = no preopen at all
// (fd 3 is EBADF). A guest reads input from one --dir and writes its result
// into another; `--dir-writeback` puts the result in the host directory after
// the guest ended, and a replay, which needs no host directory (the files
// are in the log with their preopen and mtime), writes the same files to
// `--out`. Bad --dir values give clear errors with stable codes.
import { existsSync, mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { readLog, type LogEntry } from '../host/log/format.ts';
import { ftvm, scratch } from './ftvm-cli.ts';
import { watBytes } from './helpers.ts';

const tmp = scratch();
afterAll(() => tmp.done());
const copy = `${tmp.dir}/copy_file.wasm`;
writeFileSync(copy, watBytes('copy_file'));
const prestat = `${tmp.dir}/prestat.wasm`;
writeFileSync(prestat, watBytes('prestat'));

/** A fresh input and output directory pair under `name`. */
function dirs(name: string): { input: string; output: string } {
  const input = `${tmp.dir}/${name}/in`;
  const output = `${tmp.dir}/${name}/out`;
  mkdirSync(input, { recursive: true });
  mkdirSync(output, { recursive: true });
  writeFileSync(`${input}/in.txt`, 'forty-two\n');
  writeFileSync(`${output}/old.txt`, 'stale\n');
  writeFileSync(`${output}/keep.txt`, 'kept\n');
  return { input, output };
}

describe('--dir', () => {
  it('ftvm run: reads from one --dir, writes into another; --dir-writeback brings the result back', async () => {
    const { input, output } = dirs('run');
    const r = await ftvm(['run', copy, '--dir', `${input}::/in`, '--dir', `${output}::/out`, '--dir-writeback']);
    expect(r.stderr).toMatch(/write-back .*\/out \(\/out\): 1 files written, 1 removed/);
    expect(r.code).toBe(0);
    expect(readFileSync(`${output}/out.txt`, 'utf8')).toBe('forty-two\ndone\n');
    expect(existsSync(`${output}/old.txt`)).toBe(false);
    expect(readFileSync(`${output}/keep.txt`, 'utf8')).toBe('kept\n');
    // the input directory is unchanged
    expect(readFileSync(`${input}/in.txt`, 'utf8')).toBe('forty-two\n');
  }, 120_000);

  it('without --dir-writeback the host directories are never written', async () => {
    const { input, output } = dirs('nowb');
    const r = await ftvm(['run', copy, '--dir', `${input}::/in`, '--dir', `${output}::/out`]);
    expect(r.code).toBe(0);
    expect(existsSync(`${output}/out.txt`)).toBe(false);
    expect(existsSync(`${output}/old.txt`)).toBe(true);
  }, 120_000);

  it('ftvm record logs the files with their preopen and mtime; ftvm replay needs no host directory and writes the same files to --out', async () => {
    const { input, output } = dirs('rec');
    symlinkSync('in.txt', `${input}/link.txt`);
    const log = `${tmp.dir}/copy.log`;
    const rec = await ftvm(['record', copy, '--log', log, '--dir', `${input}::/in`, '--dir', `${output}::/out`, '--dir-writeback', '--out', `${tmp.dir}/rec-out`]);
    expect(rec.code).toBe(0);
    expect(readFileSync(`${output}/out.txt`, 'utf8')).toBe('forty-two\ndone\n');
    const entries = readLog(readFileSync(log));
    const start = entries[0]!;
    expect(start.kind === 'start' && [start.payload.preopens, start.payload.listen, start.payload.stdin]).toEqual([['/in', '/out'], false, 'stream']);
    const files = entries.filter((e): e is Extract<LogEntry, { kind: 'file' }> => e.kind === 'file');
    const inTxt = files.find((e) => e.payload.path === 'in.txt')!;
    expect(inTxt.payload.preopen).toBe(0);
    expect(inTxt.payload.mtimeNs).toBe(statSync(`${input}/in.txt`, { bigint: true }).mtimeNs);
    expect(files.find((e) => e.payload.path === 'old.txt')!.payload.preopen).toBe(1);
    // each preopen's root comes first, with the host directory's mtime; a symlink is logged as one
    expect(files.find((e) => e.payload.path === '' && e.payload.preopen === 0)!.payload.mtimeNs).toBe(statSync(input, { bigint: true }).mtimeNs);
    const link = files.find((e) => e.payload.path === 'link.txt')!;
    expect([link.payload.symlink, Buffer.from(link.payload.bytes).toString()]).toEqual([true, 'in.txt']);
    // replay with the host directories changed: they are not read
    writeFileSync(`${input}/in.txt`, 'something else\n');
    const rep = await ftvm(['replay', copy, '--log', log, '--out', `${tmp.dir}/rep-out`]);
    expect(rep.code).toBe(0);
    expect(readFileSync(`${tmp.dir}/rep-out/1/out.txt`, 'utf8')).toBe('forty-two\ndone\n');
    expect(readFileSync(`${tmp.dir}/rep-out/0/in.txt`, 'utf8')).toBe('forty-two\n');
    expect(readlinkSync(`${tmp.dir}/rep-out/0/link.txt`)).toBe('in.txt');
    expect(existsSync(`${tmp.dir}/rep-out/1/old.txt`)).toBe(false);
    expect(readFileSync(`${tmp.dir}/rec-out/1/out.txt`, 'utf8')).toBe('forty-two\ndone\n');
  }, 120_000);

  it('no --dir: no preopen (fd 3 is EBADF); --fs DIR is a preopen at fd 3', async () => {
    const none = await ftvm(['run', prestat]);
    expect(none.code).toBe(8);
    const { input } = dirs('fs');
    expect((await ftvm(['run', prestat, '--fs', input])).code).toBe(0);
    expect((await ftvm(['run', prestat, '--dir', input])).code).toBe(0);
  }, 120_000);

  it('bad --dir values are refused with stable codes before the guest runs', async () => {
    const { input } = dirs('bad');
    const missing = await ftvm(['run', prestat, '--dir', `${tmp.dir}/nowhere`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/FTVM_ERR_DIR_NOT_FOUND: --dir .*nowhere.*does not exist/);
    const file = await ftvm(['run', prestat, '--dir', `${input}/in.txt::/x`]);
    expect(file.stderr).toMatch(/FTVM_ERR_DIR_NOT_A_DIR: .*in\.txt is not a directory/);
    const twice = await ftvm(['run', prestat, '--dir', `${input}::/x`, '--dir', `${tmp.dir}::/x`]);
    expect(twice.stderr).toMatch(/FTVM_ERR_DIR_DUPLICATE: .*"\/x" is given twice/);
    const empty = await ftvm(['record', prestat, '--log', `${tmp.dir}/x.log`, '--dir', `${input}::`]);
    expect(empty.stderr).toMatch(/FTVM_ERR_DIR_SYNTAX: --dir expects HOST or HOST::GUEST/);
    const out = await ftvm(['replay', prestat, '--log', `${tmp.dir}/x.log`, '--out', input]);
    expect(out.stderr).toMatch(/FTVM_ERR_OUT_NOT_EMPTY/);
    for (const r of [file, twice, empty, out]) expect(r.code).toBe(1);
  }, 120_000);
});
