// `ftvm conformance` on a tiny suite built here at test time in
// wasi-testsuite's layout (WAT modules assembled by binaryen, JSON specs, a
// `root` directory with a stale *.cleanup file): the command, as a real child
// process, gives the right verdict and reason for every test under each way
// (ftvm run, ftvm record + replay, node:wasi), exits 1 because some tests
// fail, and leaves the suite's own files untouched. Also: usage errors exit 2
// with a clear message, and the judging rules for replays and timeouts.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cmdConformance,
  findTests,
  formatConformanceTable,
  judge,
  judgeReplay,
  runChild,
  runConformance,
  type ChildResult,
  type ConformanceReport,
  type TestSpec,
} from '../host/cli/conformance.ts';
import { watText } from './helpers.ts';

const FTVM = fileURLToPath(new URL('../host/cli/ftvm.mjs', import.meta.url));

const WASI = '"wasi_snapshot_preview1"';

/** Writes "hello\n" to stdout and returns from _start (status 0). */
const HELLO = `(module
  (import ${WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`;

/** Exits with status argc * 10 + (number of environment variables). */
const COUNTS = `(module
  (import ${WASI} "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import ${WASI} "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import ${WASI} "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $environ_sizes_get (i32.const 8) (i32.const 12)))
    (call $proc_exit (i32.add (i32.mul (i32.load (i32.const 0)) (i32.const 10)) (i32.load (i32.const 8))))))`;

/**
 * From the preopen at fd 3: prints data.txt (exit 10/11 when it cannot open or
 * read it), exits 12 when stale.cleanup is there (it must have been removed),
 * exits 13 when made.txt cannot be created exclusively (a reused copy of the
 * root would already hold it).
 */
const ROOT_READ = `(module
  (import ${WASI} "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import ${WASI} "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import ${WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import ${WASI} "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "data.txt")
  (data (i32.const 120) "stale.cleanup")
  (data (i32.const 140) "made.txt")
  (func (export "_start")
    (if (call $path_open (i32.const 3) (i32.const 1) (i32.const 100) (i32.const 8) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))
      (then (call $proc_exit (i32.const 10))))
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (i32.const 512))
    (if (call $fd_read (i32.load (i32.const 0)) (i32.const 16) (i32.const 1) (i32.const 24))
      (then (call $proc_exit (i32.const 11))))
    (i32.store (i32.const 20) (i32.load (i32.const 24)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 28)))
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 1) (i32.const 120) (i32.const 13) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))
      (then (call $proc_exit (i32.const 12))))
    (if (call $path_open (i32.const 3) (i32.const 1) (i32.const 140) (i32.const 8) (i32.const 5) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 0))
      (then (call $proc_exit (i32.const 13))))))`;

function ftvm(args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FTVM, ...args], { timeout: timeoutMs, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

let top: string;
let testDir: string;

beforeAll(() => {
  top = mkdtempSync(join(tmpdir(), 'ftvm-conf-test-'));
  testDir = join(top, 'tests', 'wat', 'testsuite', 'wasm32-wasip1');
  mkdirSync(join(testDir, 'fs-tests.dir'), { recursive: true });
  const put = (name: string, wat: string, spec?: object): void => {
    writeFileSync(join(testDir, `${name}.wasm`), watText(wat));
    if (spec) writeFileSync(join(testDir, `${name}.json`), JSON.stringify(spec));
  };
  writeFileSync(join(testDir, 'manifest.json'), '{"name": "tiny", "version": "wasm32-wasip1"}');
  writeFileSync(join(testDir, 'fs-tests.dir', 'data.txt'), 'from the root\n');
  writeFileSync(join(testDir, 'fs-tests.dir', 'stale.cleanup'), 'left by an earlier run');
  put('hello', HELLO, { stdout: 'hello\n' });
  put('hello-wrong-stdout', HELLO, { stdout: 'goodbye\n' });
  put('args-env', COUNTS, { args: ['a', 'b c'], env: { K: 'V=1' }, exit_code: 31 });
  put('wrong-exit', COUNTS); // no spec: exit 0 expected; the guest exits 10
  put('root-read', ROOT_READ, { root: 'fs-tests.dir', stdout: 'from the root\n' });
});

afterAll(() => {
  if (top) rmSync(top, { recursive: true, force: true });
});

describe('ftvm conformance on a tiny suite', () => {
  it('gives each test the right verdict under each way, finds the tests from the top directory, and exits 1', async () => {
    const [r, help] = await Promise.all([ftvm(['conformance', top, '--json', '--jobs', '2'], 1_500_000), ftvm(['run', '--help'], 120_000)]);
    // The contract's `--dir` flag of ftvm run (CONTRACT section 3). Until the CLI has it, a test with a root cannot run under ftvm.
    const hasDir = /--dir/.test(help.stdout);
    expect(r.code, r.stderr).toBe(1);
    const report = JSON.parse(r.stdout) as ConformanceReport;
    const verdicts = Object.fromEntries(
      report.tests.map((t) => [t.name, [t.run, t.record_replay, t.node!].map((v) => (v.pass ? 'pass' : v.reason))]),
    );
    const ftvmRoot = hasDir ? 'pass' : 'crash';
    expect(verdicts).toEqual({
      'wat/args-env': ['pass', 'pass', 'pass'],
      'wat/hello': ['pass', 'pass', 'pass'],
      'wat/hello-wrong-stdout': ['stdout', 'stdout', 'stdout'],
      'wat/root-read': [ftvmRoot, ftvmRoot, 'pass'],
      'wat/wrong-exit': ['exit code', 'exit code', 'exit code'],
    });
    const wrongExit = report.tests.find((t) => t.name === 'wat/wrong-exit')!;
    expect(wrongExit.run.detail).toMatch(/^expected 0, got 10/);
    expect(wrongExit.run.exit_code).toBe(10);
    expect(report.tests.find((t) => t.name === 'wat/hello-wrong-stdout')!.node!.detail).toMatch(/expected "goodbye\\n", got "hello\\n"/);
    const passing = hasDir ? 3 : 2;
    expect(report.summary).toEqual({ total: 5, run: passing, record_replay: passing, node: 3 });
    // The suite's own root is untouched: only fresh copies were cleaned and written.
    expect(existsSync(join(testDir, 'fs-tests.dir', 'stale.cleanup'))).toBe(true);
    expect(existsSync(join(testDir, 'fs-tests.dir', 'made.txt'))).toBe(false);

    // The same report as a table: one row per test, the reasons, and passed/total per way.
    const table = formatConformanceTable(report);
    expect(table).toMatch(/^test\s+run\s+record\+replay\s+node:wasi$/m);
    expect(table).toMatch(/^wat\/hello\s+pass\s+pass\s+pass$/m);
    expect(table).toMatch(/^wat\/hello-wrong-stdout\s+stdout\s+stdout\s+stdout$/m);
    expect(table).toMatch(/^wat\/wrong-exit\s+exit code\s+exit code\s+exit code$/m);
    expect(table).toMatch(new RegExp(`^passed\\s+${passing}/5\\s+${passing}/5\\s+3/5$`, 'm'));
    expect(table).toMatch(/wat\/wrong-exit \[run\] exit code: expected 0, got 10/);
  }, 1_600_000);

  it('with --filter and --no-node prints the table of the selected tests without node:wasi, and exits 0 when they pass both ftvm ways', async () => {
    const r = await ftvm(['conformance', testDir, '--filter', 'args-env', '--no-node', '--jobs', '2'], 900_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^test\s+run\s+record\+replay$/m);
    expect(r.stdout).toMatch(/^wat\/args-env\s+pass\s+pass$/m);
    expect(r.stdout).toMatch(/^passed\s+1\/1\s+1\/1$/m);
    expect(r.stdout).not.toMatch(/hello|node:wasi/);
  }, 900_000);
});

describe('ftvm conformance stopped', () => {
  it('starts no more tests once stopped (as on Ctrl-C) and reports only the ways that ended', async () => {
    const tests = findTests([testDir]);
    const stop = new AbortController();
    const lines: string[] = [];
    // Two ways run at once; stopping when the first ends must kill the other's child and start nothing more.
    const report = await runConformance(tests, [testDir], {
      jobs: 2,
      timeout_s: 600,
      noNode: false,
      progress: (l) => {
        lines.push(l);
        stop.abort();
      },
      stop: stop.signal,
    });
    expect(lines).toHaveLength(1);
    expect(report.tests).toHaveLength(5);
    const verdicts = report.tests.flatMap((t) => [t.run, t.record_replay, t.node].filter(Boolean));
    expect(verdicts).toHaveLength(1);
  }, 900_000);
});

describe('ftvm conformance usage', () => {
  async function usage(argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await cmdConformance(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
    return { code, out, err };
  }

  it('exits 2 with a clear message for a missing directory, no tests, a filter that selects none, a bad spec and bad flags', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'ftvm-conf-empty-'));
    try {
      expect(await usage([join(empty, 'nope')])).toMatchObject({ code: 2, err: expect.stringMatching(/FTVM_ERR_USAGE: .*nope is not a directory/) });
      expect(await usage([empty])).toMatchObject({ code: 2, err: expect.stringMatching(/FTVM_ERR_NO_TESTS: no tests \(\*\.wasm\) under/) });
      expect(await usage([])).toMatchObject({ code: 2, err: expect.stringMatching(/name at least one directory/) });
      expect(await usage([testDir, '--filter', 'zzz'])).toMatchObject({ code: 2, err: expect.stringMatching(/no test name contains "zzz"/) });
      expect(await usage([testDir, '--jobs', '0'])).toMatchObject({ code: 2, err: expect.stringMatching(/--jobs expects an integer from 1/) });
      expect(await usage([testDir, '--frobnicate'])).toMatchObject({ code: 2, err: expect.stringMatching(/^ftvm conformance: FTVM_ERR_USAGE: unknown option --frobnicate/) });
      writeFileSync(join(empty, 't.wasm'), watText(HELLO));
      writeFileSync(join(empty, 't.json'), '{"args": "not a list"}');
      expect(await usage([empty])).toMatchObject({ code: 2, err: expect.stringMatching(/FTVM_ERR_BAD_SPEC: .*t\.json: "args" must be an array of strings/) });
      writeFileSync(join(empty, 't.json'), '{"root": "missing.dir"}');
      expect(await usage([empty])).toMatchObject({ code: 2, err: expect.stringMatching(/FTVM_ERR_BAD_SPEC: .*"root" missing\.dir is not a directory/) });
      const help = await usage(['--help']);
      expect(help.code).toBe(0);
      expect(help.out).toMatch(/usage: ftvm conformance DIR\.\.\./);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('ftvm conformance judging', () => {
  const spec: TestSpec = { args: [], env: {}, root: null, dirs: [], exit_code: 0, stdout: 'x\n', stderr: null };
  const result = (over: Partial<ChildResult>): ChildResult => ({
    code: 0,
    signal: null,
    timedOut: false,
    stdout: Buffer.from('x\n'),
    stderr: Buffer.from('count 10\ndigest abcd\nlog /tmp/l: 3 entries, 100 bytes\n'),
    truncated: false,
    duration_ms: 1,
    ...over,
  });

  it('kills a command at its timeout and calls it a timeout', async () => {
    const r = await runChild(['-e', 'setInterval(() => {}, 1000)'], 500, tmpdir());
    expect(r.timedOut).toBe(true);
    expect(judge(spec, r, 'ftvm')).toMatchObject({ pass: false, reason: 'timeout' });
  }, 60_000);

  it('tells a crash of ftvm, a trap and a wrong status apart', () => {
    expect(judge(spec, result({ code: 1, stderr: Buffer.from('ftvm: FTVM_ERR_UNSUPPORTED_IMPORT: fd_advise\n') }), 'ftvm')).toMatchObject({ reason: 'crash', detail: expect.stringMatching(/fd_advise/) });
    expect(judge(spec, result({ code: 125, stderr: Buffer.from('ftvm: guest trapped: unreachable\n') }), 'ftvm')).toMatchObject({ reason: 'trap', detail: 'unreachable' });
    const panic = Buffer.from("thread 'main' panicked at src/bin/x.rs:3:5:\nassertion failed: ok\nftvm: guest trapped: unreachable\n");
    expect(judge(spec, result({ code: 125, stderr: panic }), 'ftvm')).toMatchObject({ reason: 'trap', detail: "unreachable; guest stderr: thread 'main' panicked at src/bin/x.rs:3:5: assertion failed: ok" });
    expect(judge(spec, result({ code: 1, stderr: Buffer.from('assertion failed\n') }), 'ftvm')).toMatchObject({ reason: 'exit code' });
    expect(judge(spec, result({ code: null, signal: 'SIGSEGV' }), 'node')).toMatchObject({ reason: 'crash' });
    expect(judge(spec, result({}), 'ftvm')).toMatchObject({ pass: true, reason: null });
  });

  it('passes a replay only when it reproduces the recording', () => {
    const record = result({});
    const replayed = (over: Partial<ChildResult>): ChildResult => result({ stderr: Buffer.from('count 10\ndigest abcd\nreplayed 3 of 3 entries\n'), ...over });
    expect(judgeReplay(record, replayed({}))).toMatchObject({ pass: true });
    // the recording metered the module (progress lines before the guest's output); the replay found it cached
    const metered = result({ stderr: Buffer.from('ftvm: metering 2.1 MB: parse (0.0s)\nftvm: metering 2.1 MB: optimize 10/10 functions (0.4s)\noops\ncount 10\ndigest abcd\n') });
    expect(judgeReplay(metered, replayed({ stderr: Buffer.from('oops\ncount 10\ndigest abcd\nreplayed 3 of 3 entries\n') }))).toMatchObject({ pass: true });
    expect(judgeReplay(metered, replayed({ stderr: Buffer.from('other\ncount 10\ndigest abcd\nreplayed 3 of 3 entries\n') }))).toMatchObject({ pass: false, reason: 'divergence' });
    // ftvm replay exits 0 when it reproduced the recording, whatever the guest's status:
    // a replay that ends with the guest's own status 7 did not say it reproduced it.
    expect(judgeReplay(result({ code: 7 }), replayed({ code: 0 }))).toMatchObject({ pass: true });
    expect(judgeReplay(result({ code: 7 }), replayed({ code: 7 }))).toMatchObject({ pass: false, reason: 'crash' });
    expect(judgeReplay(record, replayed({ code: 3, stderr: Buffer.from('ftvm: FTVM_ERR_DIVERGENCE: entry 2\n') }))).toMatchObject({ reason: 'divergence', detail: expect.stringMatching(/FTVM_ERR_DIVERGENCE: entry 2/) });
    expect(judgeReplay(record, replayed({ stderr: Buffer.from('count 10\ndigest beef\nreplayed 3 of 3 entries\n') }))).toMatchObject({ reason: 'divergence', detail: expect.stringMatching(/digest abcd recorded, beef replayed/) });
    expect(judgeReplay(record, replayed({ stdout: Buffer.from('y\n') }))).toMatchObject({ reason: 'divergence' });
    expect(judgeReplay(record, replayed({ code: 1, stderr: Buffer.from('ftvm: FTVM_ERR_LOG_CHECKSUM: frame 2\n') }))).toMatchObject({ reason: 'crash' });
  });
});
