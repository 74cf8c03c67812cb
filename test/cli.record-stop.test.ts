// What this proves: a recording that is stopped leaves a log that replays.
// `ftvm record` writes its log as the guest runs; SIGTERM and SIGINT make it
// write what was logged and end with the signal's own status, and the replay
// then prints exactly what the recording printed and says the log is
// incomplete (FTVM_ERR_LOG_INCOMPLETE, exit 4). After SIGKILL (no chance to
// write anything more) the log still replays up to its end, which is at most
// a moment behind; a guest blocked reading stdin had everything written
// before it blocked; a last frame cut off by the end of the file is left out.
// Real child processes, real signals.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readLogPrefix } from '../host/log/format.ts';
import { FTVM, ftvm, scratch, watFile } from './ftvm-cli.ts';

const tmp = scratch();
afterAll(() => tmp.done());

/** Computes for ever; about every million iterations reads the monotonic clock and prints "tick". */
const LOOP = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "tick\\n")
  (func (export "_start")
    (local $i i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 5))
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (if (i32.eqz (i32.and (local.get $i) (i32.const 0xfffff)))
        (then
          (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 32)))
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
      (br $l))))`;

/** Prints "prompt", then reads stdin to its end, then exits 0. */
const PROMPT = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "prompt\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 7))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 256))
    (i32.store (i32.const 4) (i32.const 1024))
    (loop $l
      (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (br_if $l (i32.load (i32.const 16))))))`;

let loop = '';
let prompt = '';
beforeAll(() => {
  loop = watFile(tmp.dir, 'loop', LOOP);
  prompt = watFile(tmp.dir, 'prompt', PROMPT);
});

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Waits until `cond` holds, looking every 20 ms, for at most `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts `ftvm record`; returns the child, what it printed so far, and how it ended. */
function record(args: string[]): { child: ChildProcess; out: () => string; ended: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, [FTVM, 'record', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, out: () => out, ended };
}

describe('a recording stopped by a signal', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s: ends with the signal, and the replay prints exactly what the recording printed', async (signal) => {
    const log = `${tmp.dir}/${signal}.log`;
    const rec = record([loop, '--log', log]);
    await until(() => rec.out().split('\n').length > 30, 60_000, 'the guest to print');
    rec.child.kill(signal);
    const end = await rec.ended;
    expect(end.signal, end.stderr).toBe(signal);
    const printed = rec.out();
    const rep = await ftvm(['replay', loop, '--log', log]);
    expect(rep.code, rep.stderr).toBe(4);
    expect(rep.stderr).toMatch(/^ftvm: FTVM_ERR_LOG_INCOMPLETE: --log .* ends before the guest did/m);
    expect(rep.stderr).toMatch(/^stopped at count \d+: the end of the log$/m);
    const [, done, of] = /^replayed (\d+) of (\d+) entries$/m.exec(rep.stderr)!;
    expect(done).toBe(of);
    expect(rep.stdout.length).toBeGreaterThan(0);
    expect(rep.stdout).toBe(printed);
  }, 120_000);

  it('SIGKILL: what reached the file replays up to its end, a moment behind what was printed', async () => {
    const log = `${tmp.dir}/kill.log`;
    const rec = record([loop, '--log', log]);
    await until(() => rec.out().split('\n').length > 30, 60_000, 'the guest to print');
    // The log reaches the file as the guest runs, not only at its end.
    const outputs = (): number => (existsSync(log) ? readLogPrefix(readFileSync(log)).entries.filter((e) => e.kind === 'output').length : 0);
    await until(() => outputs() >= 10, 60_000, 'outputs in the log file');
    rec.child.kill('SIGKILL');
    await rec.ended;
    const printed = rec.out();
    const rep = await ftvm(['replay', loop, '--log', log]);
    expect(rep.code, rep.stderr).toBe(4);
    expect(rep.stderr).toMatch(/^ftvm: FTVM_ERR_LOG_INCOMPLETE: /m);
    expect(rep.stdout.length).toBeGreaterThanOrEqual('tick\n'.length * 10);
    expect(printed.startsWith(rep.stdout)).toBe(true);
  }, 120_000);

  it('a guest blocked reading stdin had everything logged before it blocked', async () => {
    const log = `${tmp.dir}/prompt.log`;
    const rec = record([prompt, '--log', log]);
    await until(() => rec.out() === 'prompt\n', 60_000, 'the prompt');
    await until(() => existsSync(log) && statSync(log).size > 16, 10_000, 'the log to be written');
    rec.child.kill('SIGKILL');
    await rec.ended;
    const rep = await ftvm(['replay', prompt, '--log', log]);
    expect(rep.code, rep.stderr).toBe(4);
    expect(rep.stdout).toBe('prompt\n');
    expect(rep.stderr).toMatch(/^ftvm: FTVM_ERR_LOG_INCOMPLETE: /m);
  }, 120_000);

  it('a last frame cut off by the end of the file is left out, and said so', async () => {
    const log = `${tmp.dir}/SIGTERM.log`;
    const bytes = readFileSync(log);
    const cut = `${tmp.dir}/cut.log`;
    writeFileSync(cut, bytes.subarray(0, bytes.length - 3));
    const rep = await ftvm(['replay', loop, '--log', cut]);
    expect(rep.code, rep.stderr).toBe(4);
    expect(rep.stderr).toMatch(/^ftvm: FTVM_ERR_LOG_INCOMPLETE: .*its last frame is cut off at byte \d+/m);
    // Cut while the VM was being set up (a whole stdin spans several frames at count 0): the guest never ran.
    writeFileSync(`${tmp.dir}/stdin.txt`, 'x'.repeat(300_000));
    const whole = `${tmp.dir}/stdin.log`;
    expect((await ftvm(['record', 'fib', '--log', whole, '--stdin', `${tmp.dir}/stdin.txt`, '--', '5'])).code).toBe(0);
    const frames = readFileSync(whole);
    let end = 16;
    for (let i = 0; i < 2; i++) end += 8 + frames.readUInt32LE(end); // the start frame and one of stdin
    writeFileSync(cut, frames.subarray(0, end));
    const early = await ftvm(['replay', 'fib', '--log', cut]);
    expect(early.code, early.stderr).toBe(4);
    expect(early.stderr).toMatch(/^ftvm: FTVM_ERR_LOG_INCOMPLETE: .*before the guest started/m);
    // The header alone: nothing to replay, said the same way.
    writeFileSync(cut, bytes.subarray(0, 16));
    const none = await ftvm(['replay', loop, '--log', cut]);
    expect(none.code).toBe(4);
    expect(none.stderr).toMatch(/^ftvm: FTVM_ERR_LOG_INCOMPLETE: .*nothing to replay/m);
    // Cut inside the header, or empty (stopped before the log was begun): the same, saying where it ends
    writeFileSync(cut, bytes.subarray(0, 10));
    const inHeader = await ftvm(['replay', loop, '--log', cut]);
    expect(inHeader.code).toBe(4);
    expect(inHeader.stderr).toMatch(/^ftvm: FTVM_ERR_LOG_INCOMPLETE: .*nothing to replay: it ends inside its 16-byte header, after 10 bytes/m);
    writeFileSync(cut, '');
    const empty = await ftvm(['replay', loop, '--log', cut]);
    expect(empty.code).toBe(4);
    expect(empty.stderr).toMatch(/it ends inside its 16-byte header, after 0 bytes/);
    // a foreign one is still refused as such
    writeFileSync(cut, 'MZ');
    const foreign = await ftvm(['replay', loop, '--log', cut]);
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toMatch(/^ftvm: FTVM_ERR_LOG_FOREIGN: /m);
  }, 120_000);
});
