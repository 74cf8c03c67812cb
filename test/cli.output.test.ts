// What this proves: ftvm's own stdout and stderr never crash it. When the
// reader goes away (EPIPE, `| head`), output stops quietly, the guest runs to
// its end unaware (fd_write succeeds: the guest exits 7, not 9), the exit
// status is the guest's, and `record`'s log is complete (its replay
// reproduces the whole run). A full disk (/dev/full: ENOSPC) is reported once
// as FTVM_ERR_OUTPUT_LOST and the command exits 1, with the guest still run
// to its end. Real child processes with real pipes and /dev/full.
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FTVM, ftvm, scratch, watFile } from './ftvm-cli.ts';

const tmp = scratch();
afterAll(() => tmp.done());

/** Writes 4000 blocks of 4 KiB to stdout; exits 9 if any fd_write failed or was short, else 7. */
const WRITER = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32) (local $bad i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 4096))
    (memory.fill (i32.const 64) (i32.const 120) (i32.const 4096))
    (i32.store8 (i32.const 4159) (i32.const 10))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (i32.const 4000)))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)) (then (local.set $bad (i32.const 1))))
        (if (i32.ne (i32.load (i32.const 16)) (i32.const 4096)) (then (local.set $bad (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (call $proc_exit (select (i32.const 9) (i32.const 7) (local.get $bad)))))`;

let guest = '';
beforeAll(() => {
  guest = watFile(tmp.dir, 'writer', WRITER);
});

/** Runs `ftvm ARGS | head -c 10` in bash (a real pipe); returns ftvm's exit status (PIPESTATUS) and its stderr. */
function throughHead(args: string[]): Promise<{ status: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const script = '"$@" 2>"$ERR_FILE" | head -c 10 > /dev/null; echo "${PIPESTATUS[0]}"';
    const errFile = `${tmp.dir}/head-${Math.random().toString(36).slice(2)}.err`;
    execFile('bash', ['-c', script, 'bash', process.execPath, FTVM, ...args], { env: { ...process.env, ERR_FILE: errFile }, timeout: 120_000 }, (err, stdout) => {
      if (err) return reject(err);
      resolve({ status: Number(stdout.trim()), stderr: readFileSync(errFile, 'utf8') });
    });
  });
}

/** Runs ftvm with stdout a socket (Node's 'pipe') that is closed after the first chunk arrives. */
function withClosedStdout(args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [FTVM, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout!.once('data', () => child.stdout!.destroy());
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/** Runs ftvm with stdout (or stderr) on /dev/full. */
function onDevFull(args: string[], which: 'stdout' | 'stderr'): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const full = openSync('/dev/full', 'w');
    const stdio: ('ignore' | 'pipe' | number)[] = which === 'stdout' ? ['ignore', full, 'pipe'] : ['ignore', 'pipe', full];
    const child = spawn(process.execPath, [FTVM, ...args], { stdio, timeout: 120_000 });
    closeSync(full);
    let out = '';
    (which === 'stdout' ? child.stderr! : child.stdout!).on('data', (b: Buffer) => (out += b.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('ftvm writing to a closed pipe or socket (EPIPE, ECONNRESET)', () => {
  it('run | head: stops writing quietly, the guest runs on unaware, and the exit status is the guest\'s', async () => {
    const r = await throughHead(['run', guest]);
    expect(r.status, r.stderr).toBe(7);
    expect(r.stderr).toBe('');
  }, 120_000);

  it('run, stdout a socket whose reader closed (ECONNRESET or EPIPE): the same', async () => {
    const r = await withClosedStdout(['run', guest]);
    expect(r.signal).toBe(null);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toBe('');
  }, 120_000);

  it('record: the same, and the log holds the whole run, which replays', async () => {
    const log = `${tmp.dir}/epipe.log`;
    const r = await withClosedStdout(['record', guest, '--log', log]);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).not.toMatch(/ftvm:|Error|^\s+at /m);
    const rep = await ftvm(['replay', guest, '--log', log]);
    expect(rep.code, rep.stderr).toBe(0);
    expect(rep.stderr).toMatch(/^exit 7$/m);
    expect(rep.stdout.length).toBe(4000 * 4096);
  }, 120_000);
});

describe.skipIf(!existsSync('/dev/full'))('ftvm writing to a full device (ENOSPC)', () => {
  it('run: one FTVM_ERR_OUTPUT_LOST line, the guest still runs to its end, exit 1', async () => {
    const r = await onDevFull(['run', guest], 'stdout');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^ftvm: FTVM_ERR_OUTPUT_LOST: stdout: write failed \(ENOSPC\)/);
    expect(r.out.split('\n').filter((l) => l).length, r.out).toBe(1);
  }, 120_000);

  it('record: the same, and the log is complete', async () => {
    const log = `${tmp.dir}/full.log`;
    const r = await onDevFull(['record', guest, '--log', log], 'stdout');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^ftvm: FTVM_ERR_OUTPUT_LOST: stdout/);
    expect(r.out).not.toMatch(/^\s+at /m);
    const rep = await ftvm(['replay', guest, '--log', log]);
    expect(rep.code, rep.stderr).toBe(0);
    expect(rep.stderr).toMatch(/^exit 7$/m);
  }, 120_000);

  it('stderr on a full device: nothing can be said, the exit status is still 1', async () => {
    const r = await onDevFull(['run', 'trap', '--', '10'], 'stderr');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^trap\(10\)/);
  }, 120_000);
});
