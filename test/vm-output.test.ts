// A command guest under the service, on a real cluster of three `ftvm host`
// processes: its argv is [VM name, ...args] as under `ftvm run -- args`; its
// released stdout and stderr and its exit status are served by every host
// (GET /v1/vms/:name/stdout|stderr, and `end` in GET /v1/vms/:name); `ftvm vm
// output --follow`, started before the primary's host is killed -9 part-way,
// prints the whole output once, without duplicates or gaps, and exits with the
// guest's status; a test failover of an ended VM is refused (409) and leaves it
// as it was; an ended VM's lag is 0 once its backup acknowledged the end; a
// reactor's output reads the same from a backup made from a snapshot that
// then took over; a VM that ended before its primary's host died is taken
// over by its backup, with its output and status; `ftvm vm logs` prints both
// streams, each on its own, and guest arguments after "--" reach the guest.
import { execFile, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiOf, Cluster, eventually } from './cluster.ts';
import { watText } from './helpers.ts';

const FTVM = fileURLToPath(new URL('../host/cli/ftvm.mjs', import.meta.url));
const LINES = 40;

/**
 * Prints each argv entry on a line, then LINES lines "line NN" 50 ms apart
 * (poll_oneoff on the monotonic clock), then "bye" on stderr, computes a
 * little, and exits 3.
 */
const PRINTER = watText(`(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "line 00\\n")
  (data (i32.const 300) "\\n")
  (data (i32.const 310) "bye\\n")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16))))
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $n))
  (func $sleep (param $ns i64)
    (i64.store (i32.const 64) (i64.const 0))
    (i32.store8 (i32.const 72) (i32.const 0))
    (i32.store (i32.const 80) (i32.const 1))
    (i64.store (i32.const 88) (local.get $ns))
    (i64.store (i32.const 96) (i64.const 0))
    (i32.store16 (i32.const 104) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 16))))
  (func (export "_start") (local $i i32) (local $p i32) (local $argc i32)
    (drop (call $args_sizes_get (i32.const 32) (i32.const 36)))
    (local.set $argc (i32.load (i32.const 32)))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $argc)))
      (local.set $p (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2)))))
      (call $write (i32.const 1) (local.get $p) (call $strlen (local.get $p)))
      (call $write (i32.const 1) (i32.const 300) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.set $i (i32.const 0))
    (block $d2 (loop $l2
      (br_if $d2 (i32.ge_u (local.get $i) (i32.const ${LINES})))
      (i32.store8 (i32.const 261) (i32.add (i32.const 48) (i32.div_u (local.get $i) (i32.const 10))))
      (i32.store8 (i32.const 262) (i32.add (i32.const 48) (i32.rem_u (local.get $i) (i32.const 10))))
      (call $write (i32.const 1) (i32.const 256) (i32.const 8))
      (call $sleep (i64.const 50000000))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l2)))
    (call $write (i32.const 2) (i32.const 310) (i32.const 4))
    ;; some computing after the last output, so the backup's replay ends past any count it reported before
    (local.set $i (i32.const 0))
    (block $d3 (loop $l3
      (br_if $d3 (i32.ge_u (local.get $i) (i32.const 3000000)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l3)))
    (call $proc_exit (i32.const 3))))`);

/** A reactor: "up" on stdout at start; each NIC message on a line of stdout, and back to its sender. */
const ECHO = watText(`(module
  (import "ftvm_io" "nic_recv" (func $recv (param i32 i32 i32) (result i32)))
  (import "ftvm_io" "nic_send" (func $send (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "up\\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32))))
  (func (export "_initialize") (call $write (i32.const 100) (i32.const 3)))
  (func (export "ftvm_interrupt") (param $kind i32) (local $n i32)
    (block $d (loop $l
      (local.set $n (call $recv (i32.const 0) (i32.const 1024) (i32.const 4096)))
      (br_if $d (i32.le_s (local.get $n) (i32.const 0)))
      (call $write (i32.const 1024) (local.get $n))
      (call $write (i32.const 102) (i32.const 1))
      (drop (call $send (i32.load (i32.const 0)) (i32.const 1024) (local.get $n)))
      (br $l)))))`);

/** What the printer writes on stdout with argv `argv`. */
const expected = (argv: string[]): string => argv.map((a) => `${a}\n`).join('') + Array.from({ length: LINES }, (_, i) => `line ${String(i).padStart(2, '0')}\n`).join('');

const cluster = new Cluster(['--fail-ms', '1000', '--heartbeat-ms', '50']);
const dir = mkdtempSync(join(tmpdir(), 'ftvm-vm-output-'));
const wasm = join(dir, 'printer.wasm');
const api = apiOf(cluster);

/** Runs `ftvm vm --api <host's API> --token T ARGS` (ahead of ARGS, which may end in guest arguments after "--"); resolves with its exit code and output. */
function vm(host: string, ...args: string[]): { done: Promise<{ code: number | null; stdout: string; stderr: string }>; kill: () => void } {
  const p = spawn(process.execPath, [FTVM, 'vm', '--api', cluster.host(host).api, '--token', cluster.token, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => p.once('exit', (code) => r({ code, stdout, stderr })));
  return { done, kill: () => p.kill('SIGKILL') };
}
const children: (() => void)[] = [];

beforeAll(async () => {
  writeFileSync(wasm, PRINTER);
  for (const id of ['h1', 'h2', 'h3']) await cluster.add(id);
  await cluster.linked();
}, 120_000);
afterAll(async () => {
  for (const k of children) k();
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a command guest under the service', () => {
  it('argv is [name, ...args]; the output and the exit status are served by every host; a finished VM refuses a test failover; its lag is 0', async () => {
    const module = PRINTER.length <= 1 << 20 ? Buffer.from(PRINTER).toString('base64') : '';
    expect((await api('h1', 'POST', '/v1/vms', { name: 'argv', module, args: ['p', 'q', 'r'] })).status).toBe(201);
    const ended = await eventually(
      'the VM ended, with its end released',
      async () => {
        const v = (await api('h3', 'GET', '/v1/vms/argv')).json;
        return v.end ? v : undefined;
      },
      60_000,
    );
    expect(ended).toMatchObject({ state: 'ended', end: { outcome: 'exit', status: 3 }, gen: 1, primary: 'h1' });
    // from the primary's host, the backup's, and one with no replica (forwarded): the same stream
    for (const h of ['h1', 'h2', 'h3']) {
      const out = await eventually(`${h} serves the whole stdout`, async () => {
        const r = (await api(h, 'GET', '/v1/vms/argv/stdout')).json;
        return r.end ? r : undefined;
      });
      expect(Buffer.from(out.base64, 'base64').toString('utf8')).toBe(expected(['argv', 'p', 'q', 'r']));
      expect(out).toMatchObject({ from: 0, dropped: 0, end: { outcome: 'exit', status: 3 } });
      expect((await api(h, 'GET', '/v1/vms/argv/stderr')).json).toMatchObject({ text: 'bye\n', next: 4 });
    }
    // a part of it, from an offset
    const tail = (await api('h2', 'GET', `/v1/vms/argv/stdout?from=${expected(['argv', 'p', 'q', 'r']).length - 8}`)).json;
    expect(tail).toMatchObject({ text: 'line 39\n', end: { outcome: 'exit', status: 3 } });

    // an ended VM's lag is 0 (its backup acknowledged the end), and stays 0
    await eventually('lag 0', async () => {
      const v = (await api('h1', 'GET', '/v1/vms/argv')).json;
      return v.lagMs === 0 && v.lagCounts === '0' && v.replica.lagMs === 0 ? true : undefined;
    });
    const ageBefore = (await api('h1', 'GET', '/v1/vms/argv')).json.count;
    await eventually('a later description', async () => ((await api('h3', 'GET', '/v1/vms/argv')).json.ageMs >= 0 ? true : undefined));
    expect((await api('h1', 'GET', '/v1/vms/argv')).json).toMatchObject({ lagMs: 0, lagCounts: '0', count: ageBefore });

    // a test failover of the ended VM: refused, here and forwarded, and the VM stays as it was
    for (const h of ['h1', 'h3']) {
      const r = await api(h, 'POST', '/v1/vms/argv/failover');
      expect([r.status, r.json.error.code]).toEqual([409, 'FTVM_ERR_VM_ENDED']);
    }
    const restart = await api('h2', 'POST', '/v1/vms/argv/backup/restart');
    expect([restart.status, restart.json.error.code]).toEqual([409, 'FTVM_ERR_VM_ENDED']);
    expect((await api('h2', 'GET', '/v1/vms/argv')).json).toMatchObject({ gen: 1, primary: 'h1', backup: 'h2', count: ageBefore, end: { outcome: 'exit', status: 3 } });
    const out = (await api('h2', 'GET', '/v1/vms/argv/stdout')).json;
    expect(out.text).toBe(expected(['argv', 'p', 'q', 'r']));

    // bad offsets are refused with a code
    const bad = await api('h1', 'GET', '/v1/vms/argv/stdout?from=-1');
    expect([bad.status, bad.json.error.code]).toEqual([400, 'FTVM_ERR_BAD_REQUEST']);
    expect((await api('h1', 'GET', '/v1/vms/nosuch/stdout')).status).toBe(404);
    expect((await api('h1', 'DELETE', '/v1/vms/argv')).status).toBe(204);
  }, 120_000);

  it("a reactor's output survives a backup made from a snapshot and then a failover to it: the rings travel with the snapshot", async () => {
    expect((await api('h1', 'POST', '/v1/vms', { name: 'echo', module: Buffer.from(ECHO).toString('base64') })).json).toMatchObject({ primary: 'h1' });
    const { conn } = (await api('h1', 'POST', '/v1/connections')).json as { conn: number };
    let after = -1;
    const say = async (host: string, text: string): Promise<void> => {
      expect((await api(host, 'POST', '/v1/vms/echo/messages', { conn, data: text })).status).toBe(202);
      const got = await eventually(`the answer to ${text}`, async () => {
        const r = (await api(host, 'GET', `/v1/vms/echo/outputs?conn=${conn}&after=${after}&waitMs=1000`)).json as { seq: number; data: string }[];
        return r.find((o) => o.data === text);
      });
      after = got.seq;
    };
    await say('h1', 'm1');
    await say('h1', 'm2');
    expect((await api('h1', 'POST', '/v1/vms/echo/backup/restart')).status).toBe(202);
    const restarted = await eventually('a new backup from a snapshot', async () => {
      const v = (await api('h1', 'GET', '/v1/vms/echo')).json;
      return v.gen === 2 && v.state === 'running' && v.replica?.acked >= 0 ? v : undefined;
    });
    await say('h1', 'm3');
    expect((await api('h1', 'POST', '/v1/vms/echo/failover')).status).toBe(202);
    await eventually('the new backup took over', async () => ((await api(restarted.backup, 'GET', '/v1/vms/echo')).json.primary === restarted.backup ? true : undefined));
    await say('h1', 'm4');
    const out = await eventually('all four lines', async () => {
      const r = (await api(restarted.backup, 'GET', '/v1/vms/echo/stdout')).json;
      return r.text.includes('m4') ? r : undefined;
    });
    expect(out).toMatchObject({ from: 0, text: 'up\nm1\nm2\nm3\nm4\n', end: null, host: restarted.backup });
    expect((await api('h1', 'DELETE', '/v1/vms/echo')).status).toBe(204);
  }, 120_000);

  it('`ftvm vm` fails with one coded line and the documented status', async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['output'], 2, /^ftvm vm output: FTVM_ERR_USAGE: a VM name is required \(see ftvm vm output --help\)\n$/],
      [['bogus'], 2, /^ftvm vm: FTVM_ERR_USAGE: unknown command "bogus"/],
      [['show', 'ghost'], 1, /^ftvm vm show: FTVM_ERR_NOT_FOUND: no VM named ghost\n$/],
      [['start', 'nofile', '--module', '/nonexistent/x.wasm'], 1, /^ftvm vm start: FTVM_ERR_FILE_NOT_FOUND: .*\/nonexistent\/x\.wasm/m],
      [['tail', 'x', '--count', 'many'], 2, /^ftvm vm tail: FTVM_ERR_USAGE: --count expects a positive integer/],
      // an unknown VM: said at once, with no connection opened and announced for it
      [['tail', 'ghost', '--count', '1'], 1, /^ftvm vm tail: FTVM_ERR_NOT_FOUND: no VM named ghost\n$/],
      [['start', 'p', '--sample', 'kvsock', '--publish', '0'], 2, /^ftvm vm start: FTVM_ERR_USAGE: --publish needs a TCP port from 1 to 65535, not 0 \(see ftvm vm start --help\)\n$/],
      [['start', 'p', '--sample', 'kvsock', '--publish', '70000'], 2, /^ftvm vm start: FTVM_ERR_USAGE: --publish needs a TCP port from 1 to 65535, not 70000 \(see ftvm vm start --help\)\n$/],
      [['start', 'p', '--sample', 'kvsock', '--publish', '8080', '--publish', '8080'], 2, /^ftvm vm start: FTVM_ERR_USAGE: --publish names a port twice \(see ftvm vm start --help\)\n$/],
      [['start', 'p', '--sample', 'kvsock', '--publish', 'http'], 2, /^ftvm vm start: FTVM_ERR_USAGE: --publish expects an integer/],
    ];
    for (const [args, code, line] of cases) {
      const r = await vm('h3', ...args).done;
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(line);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const p = spawn(process.execPath, [FTVM, 'vm', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, FTVM_API: '', FTVM_TOKEN: '' } });
        let stderr = '';
        p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        p.once('exit', (c) => resolve({ code: c, stderr }));
      });
    expect(await run(['ls'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/^ftvm vm ls: FTVM_ERR_USAGE: --api and --token/) });
    expect(await run(['ls', '--api', 'not a url', '--token', 't'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/^ftvm vm ls: FTVM_ERR_USAGE: --api: not a URL/) });
    expect(await run(['ls', '--api', 'http://127.0.0.1:1', '--token', 't'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^ftvm vm ls: FTVM_ERR_UNAVAILABLE: the API cannot be reached \(ECONNREFUSED/) });
  }, 120_000);

  it('`ftvm vm output --follow` prints the whole output once across a kill -9 of the primary, and exits with the status', async () => {
    const start = vm('h1', 'start', 'printer', '--module', wasm, '--arg', '-e', '--arg', 'yy');
    expect((await start.done).code).toBe(0);
    // followed through h3, which runs no replica: its reads go to the primary's host
    const follow = vm('h3', 'output', 'printer', '--follow');
    children.push(follow.kill);
    const placed = (await api('h1', 'GET', '/v1/vms/printer')).json;
    expect(placed).toMatchObject({ primary: 'h1', backup: 'h2' });
    // part-way: some lines are out, not all
    await eventually('line 08 released', async () => ((await api('h2', 'GET', '/v1/vms/printer/stdout')).json.text.includes('line 08') ? true : undefined), 60_000);
    expect((await api('h1', 'GET', '/v1/vms/printer')).json.end).toBeNull();
    await cluster.kill('h1');

    const r = await follow.done;
    expect(r.stdout).toBe(expected(['printer', '-e', 'yy']));
    expect(r.code).toBe(3);
    // the surviving host took over and serves it all, with the status
    const v = (await api('h2', 'GET', '/v1/vms/printer')).json;
    expect(v).toMatchObject({ primary: 'h2', state: 'ended', end: { outcome: 'exit', status: 3 } });
    expect(v.gen).toBeGreaterThan(1);
    expect((await api('h2', 'GET', '/v1/vms/printer/stdout')).json).toMatchObject({ text: expected(['printer', '-e', 'yy']), end: { outcome: 'exit', status: 3 } });
    const err = vm('h2', 'output', 'printer', '--stderr', '--follow');
    expect(await err.done).toMatchObject({ code: 3, stdout: 'bye\n' });
    // without --follow: what there is, exit 0
    expect(await vm('h3', 'output', 'printer').done).toMatchObject({ code: 0, stdout: expected(['printer', '-e', 'yy']) });
    // a guest that traps: 125, with the trap's message
    expect((await api('h3', 'POST', '/v1/vms', { name: 'trapper', sample: 'trap', args: ['100'] })).status).toBe(201);
    const trapped = await vm('h3', 'output', 'trapper', '--follow').done;
    expect(trapped.code).toBe(125);
    expect(trapped.stderr).toMatch(/the guest trapped: \S/);
    expect((await vm('h3', 'output', 'nosuch').done)).toMatchObject({ code: 1, stderr: expect.stringMatching(/FTVM_ERR_NOT_FOUND/) });
  }, 180_000);

  it('`ftvm vm logs` prints both streams by default, each on its own, follows to the end with the status; guest arguments after "--" reach the guest', async () => {
    // (h1 was killed by the test before.) Proves: vm start passes --arg values, then the words after "--" (even flag-like ones), as the guest's argv after its name;
    // logs --follow prints the whole stdout on stdout and the whole stderr on stderr and exits 3 as the guest did;
    // --stderr alone puts stderr on stdout; output (the older name) still prints stdout only.
    const start = vm('h2', 'start', 'logsy', '--module', wasm, '--arg', '-e', '--', '-psdur', 'x', '--bogus');
    const started = await start.done;
    expect(started.code, started.stderr).toBe(0);
    const argv = ['logsy', '-e', '-psdur', 'x', '--bogus'];
    const follow = vm('h3', 'logs', 'logsy', '--follow');
    children.push(follow.kill);
    const followed = await follow.done;
    expect(followed).toMatchObject({ code: 3, stdout: expected(argv) });
    expect(followed.stderr.split('\n')).toContain('bye');
    // after the end: each stream alone, and both
    expect(await vm('h2', 'logs', 'logsy', '--stderr').done).toMatchObject({ code: 0, stdout: 'bye\n' });
    expect(await vm('h2', 'logs', 'logsy', '--stdout', '--follow').done).toMatchObject({ code: 3, stdout: expected(argv), stderr: '' });
    expect(await vm('h2', 'logs', 'logsy', '--all').done).toMatchObject({ code: 0, stdout: expected(argv), stderr: 'bye\n' });
    expect(await vm('h2', 'output', 'logsy').done).toMatchObject({ code: 0, stdout: expected(argv), stderr: '' });
    const missing = await vm('h2', 'logs', 'nosuch', '--follow').done;
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringMatching(/^ftvm vm logs: FTVM_ERR_NOT_FOUND: /) });
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect((await api('h2', 'DELETE', '/v1/vms/logsy')).status).toBe(204);
  }, 120_000);

  it('`ftvm vm logs` into a pipe whose reader goes away stops quietly (EPIPE); onto a full device it says so in one line (ENOSPC) and exits 1', async () => {
    // a guest that writes 200 blocks of 4 KiB (more than a pipe holds, less than the 1 MiB the host keeps) and exits 0
    const chatty = join(dir, 'chatty.wasm');
    writeFileSync(chatty, watText(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") (local $i i32)
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 4096))
        (memory.fill (i32.const 64) (i32.const 120) (i32.const 4096))
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (i32.const 200)))
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))))`));
    expect((await vm('h2', 'start', 'chatty', '--module', chatty).done).code).toBe(0);
    await eventually('the guest ended', async () => ((await api('h2', 'GET', '/v1/vms/chatty')).json.state === 'ended' ? true : undefined), 60_000);
    const base = [process.execPath, FTVM, 'vm', '--api', cluster.host('h2').api, '--token', cluster.token, 'logs', 'chatty'];
    const errFile = join(dir, 'head.err');
    const headStatus = await new Promise<string>((resolve, reject) =>
      execFile('bash', ['-c', '"$@" 2>"$ERR_FILE" | head -c 10 > /dev/null; echo "${PIPESTATUS[0]}"', 'bash', ...base, '--follow'], { env: { ...process.env, ERR_FILE: errFile }, timeout: 120_000 }, (err, out) =>
        err ? reject(err) : resolve(out.trim()),
      ),
    );
    expect({ status: headStatus, stderr: readFileSync(errFile, 'utf8') }).toEqual({ status: '0', stderr: '' });
    const full = openSync('/dev/full', 'w');
    const onFull = spawn(base[0]!, base.slice(1), { stdio: ['ignore', full, 'pipe'] });
    closeSync(full);
    let stderr = '';
    onFull.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((r) => onFull.once('exit', r));
    expect({ code, stderr }).toMatchObject({ code: 1, stderr: expect.stringMatching(/^ftvm: FTVM_ERR_OUTPUT_LOST: stdout: write failed \(ENOSPC\)/) });
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect((await api('h2', 'DELETE', '/v1/vms/chatty')).status).toBe(204);
  }, 120_000);

  it('a VM that ended before its primary\'s host died: the backup takes it over and serves the whole output and the status', async () => {
    const placed = (await api('h2', 'POST', '/v1/vms', { name: 'done', module: Buffer.from(PRINTER).toString('base64'), args: ['z'] })).json;
    expect(placed.primary).toBe('h2');
    const backup = placed.backup as string;
    expect(['h1', 'h3']).toContain(backup);
    await eventually('the end released', async () => ((await api(backup, 'GET', '/v1/vms/done')).json.end ? true : undefined), 60_000);
    await cluster.kill('h2');
    const v = await eventually(`${backup} took the ended VM over`, async () => {
      const r = (await api(backup, 'GET', '/v1/vms/done')).json;
      return r.primary === backup ? r : undefined;
    });
    expect(v).toMatchObject({ state: 'ended', gen: 2, end: { outcome: 'exit', status: 3 }, lagMs: 0 });
    expect((await api(backup, 'GET', '/v1/vms/done/stdout')).json).toMatchObject({ text: expected(['done', 'z']), end: { outcome: 'exit', status: 3 } });
    expect((await api(backup, 'GET', '/v1/vms/done/stderr')).json).toMatchObject({ text: 'bye\n' });
  }, 120_000);
});
