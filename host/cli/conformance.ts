// `ftvm conformance`: runs a directory of WASI preview1 tests laid out as
// WebAssembly/wasi-testsuite lays out its prebuilt tests, three ways, as a user
// would, and prints a table (or one JSON document) of the verdicts.
//
// The layout and the meaning of a test (wasi-testsuite's doc/specification.md):
// every `NAME.wasm` in a test directory is one test; `NAME.json` beside it
// (absent: all defaults) gives `args` (default none), `env` (default none),
// `root` (a directory relative to the test directory, preopened as the guest's
// "/"; default: no preopen), `dirs` (older suites: directories preopened under
// their own names), `exit_code` (default 0) and `stdout` / `stderr` (compared
// only when given). `*.cleanup` files are what earlier runs left behind and
// are removed first. A test passes when its exit code and the given outputs
// match. Every run gets a fresh copy of the root, since tests change it.
//
// The ways, each in child processes so that nothing of the runner leaks into
// the guest and a hung or crashed test costs only its own bounded time:
// - run:            `ftvm run T.wasm [--dir COPY::/] [--env K=V]... -- ARGS`;
// - record+replay:  `ftvm record --log L ...` (same shape) then
//                   `ftvm replay T.wasm --log L`. It passes when the recording
//                   meets the spec AND the replay reproduces it: exit code 0
//                   (ftvm replay itself checks the guest's end against the
//                   log's exit entry) or the recorded status, the same stdout,
//                   the same guest stderr, and the same final count and state
//                   digest. Replay's exit code 3 is a divergence.
// - node:wasi:      Node's own node:wasi (version 'preview1', preopens
//                   {"/": COPY}, returnOnExit), the reference column
//                   (conformance-node.mjs).
// Every child's stdin is a pipe closed at once (the guest reads end of file),
// its stdout and stderr are kept up to MAX_OUTPUT_BYTES each, and it is killed
// with SIGKILL after the per-command timeout.
//
// A failure is named in one word, checked in this order:
//   timeout     the command did not end within the timeout;
//   crash       the runtime failed rather than the guest: killed by a signal,
//               or exit 1 with ftvm's own error (an FTVM_ERR_* code, a module
//               refused) or a JavaScript error on stderr;
//   trap        the guest trapped (ftvm's exit code 125), e.g. a failed Rust
//               assertion, which aborts;
//   exit code   the guest's status is not the expected one;
//   stdout      stdout differs from the spec's (only when the spec gives one);
//   stderr      the guest's stderr differs from the spec's (only when given);
//   divergence  replay stopped with FTVM_ERR_DIVERGENCE, or ended with other
//               output, count or digest than the recording.

import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { exitStatusOf, type FtvmErrorCode } from '../errors.ts';
import { CONFORMANCE, DEFAULT_JOBS, DEFAULT_TIMEOUT_S, intOption, parseCommand } from './commands.ts';
import { CliError } from './errors.ts';

export { DEFAULT_JOBS, DEFAULT_TIMEOUT_S } from './commands.ts';

/** The `ftvm` entry point the ways run, as a user runs it. */
const FTVM_CLI = fileURLToPath(new URL('./ftvm.mjs', import.meta.url));
/** The node:wasi reference runner. */
const NODE_RUNNER = fileURLToPath(new URL('./conformance-node.mjs', import.meta.url));

/** Bytes kept of each child's stdout and of its stderr; the rest is dropped and the result marked truncated. */
export const MAX_OUTPUT_BYTES = 1 << 20;
/** Bounds on the search for test directories under a DIR argument. */
const MAX_WALK_DEPTH = 8;
const MAX_WALK_DIRS = 10_000;
/** Bound on the number of tests in one run, so the task list and report stay bounded. */
export const MAX_TESTS = 10_000;

/** A usage error of `ftvm conformance`: the exit code the catalogue gives its code (2 for each), with the message. Codes: FTVM_ERR_USAGE (a DIR that is not a directory), FTVM_ERR_NO_TESTS, FTVM_ERR_BAD_SPEC (a test's JSON); a wrong flag is FTVM_ERR_USAGE (commands.ts). */
export class ConformanceUsageError extends Error {
  constructor(
    readonly code: Extract<FtvmErrorCode, 'FTVM_ERR_USAGE' | 'FTVM_ERR_NO_TESTS' | 'FTVM_ERR_BAD_SPEC'>,
    message: string,
  ) {
    super(message);
  }
}

/** One test's spec, as its JSON file gives it, defaults applied (wasi-testsuite doc/specification.md). */
export interface TestSpec {
  args: string[];
  env: Record<string, string>;
  /** Host directory (absolute) preopened as "/", or null for no preopen. */
  root: string | null;
  /** Older suites' form: host directories (absolute) preopened under the given guest names. */
  dirs: { host: string; guest: string }[];
  exit_code: number;
  /** Expected stdout, compared only when given. */
  stdout: string | null;
  /** Expected stderr, compared only when given. */
  stderr: string | null;
}

/** One test: a `.wasm` and its spec. `name` is "LABEL/NAME", LABEL the suite's language directory ("c", "rust", ...) or the test directory's name. */
export interface ConformanceTest {
  name: string;
  wasm: string;
  spec: TestSpec;
}

/** The ways a test is run. */
export type WayName = 'run' | 'record_replay' | 'node';
export const WAYS: readonly WayName[] = ['run', 'record_replay', 'node'];
/** Column titles of the ways. */
export const WAY_TITLES: Record<WayName, string> = { run: 'run', record_replay: 'record+replay', node: 'node:wasi' };

/** Why a way failed, in a word (see the module header for each). */
export type FailReason = 'timeout' | 'crash' | 'trap' | 'exit code' | 'stdout' | 'stderr' | 'divergence';

/** The verdict of one test under one way. */
export interface WayVerdict {
  pass: boolean;
  /** null when it passed. */
  reason: FailReason | null;
  /** One line saying what differed or what the runtime said (empty when it passed). */
  detail: string;
  /** The guest's status as the (last) command reported it; null on a timeout or a signal. */
  exit_code: number | null;
  /** Wall time of the way's command(s), in milliseconds. */
  duration_ms: number;
}

/** One row of the report. `node` is absent with --no-node. */
export interface TestReport {
  name: string;
  wasm: string;
  expected_exit_code: number;
  run: WayVerdict;
  record_replay: WayVerdict;
  node?: WayVerdict;
}

/** The whole report, as `--json` prints it. Durations in milliseconds. */
export interface ConformanceReport {
  dirs: string[];
  jobs: number;
  timeout_s: number;
  node_version: string;
  tests: TestReport[];
  summary: { total: number; run: number; record_replay: number; node: number | null };
  elapsed_ms: number;
}

// ---------------------------------------------------------------------------
// Finding the tests

/**
 * The tests under the given directories, sorted by name. A directory holding
 * `*.wasm` files is a test directory; other directories are searched below
 * (depth <= 8, skipping hidden ones, node_modules and `*.dir` roots).
 * Throws ConformanceUsageError: FTVM_ERR_USAGE when a DIR does not exist
 * or is not a directory, FTVM_ERR_BAD_SPEC for a malformed NAME.json,
 * FTVM_ERR_NO_TESTS when there are more than MAX_TESTS.
 */
export function findTests(dirs: string[]): ConformanceTest[] {
  const testDirs: string[] = [];
  const seen = new Set<string>();
  let visited = 0;
  const walk = (dir: string, depth: number): void => {
    if (++visited > MAX_WALK_DIRS || depth > MAX_WALK_DEPTH) return;
    const real = realpathSync(dir);
    if (seen.has(real)) return;
    seen.add(real);
    const entries = readdirSync(dir, { withFileTypes: true });
    if (entries.some((e) => e.isFile() && e.name.endsWith('.wasm'))) {
      testDirs.push(dir);
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (!e.isDirectory() || e.name.startsWith('.') || e.name === 'node_modules' || e.name.endsWith('.dir')) continue;
      walk(join(dir, e.name), depth + 1);
    }
  };
  for (const d of dirs) {
    const abs = resolve(d);
    if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new ConformanceUsageError('FTVM_ERR_USAGE', `${d} is not a directory`);
    walk(abs, 0);
  }
  const tests: ConformanceTest[] = [];
  for (const dir of testDirs) {
    const label = /[\\/]tests[\\/]([^\\/]+)[\\/]testsuite[\\/]/.exec(dir + '/')?.[1] ?? basename(dir);
    for (const f of readdirSync(dir).sort()) {
      if (!f.endsWith('.wasm')) continue;
      const stem = f.slice(0, -'.wasm'.length);
      const jsonPath = join(dir, `${stem}.json`);
      tests.push({ name: `${label}/${stem}`, wasm: join(dir, f), spec: readSpec(jsonPath, dir) });
      if (tests.length > MAX_TESTS) throw new ConformanceUsageError('FTVM_ERR_NO_TESTS', `more than ${MAX_TESTS} tests; name fewer directories or use --filter`);
    }
  }
  // Two directories with the same label: keep names unique by the directory's path.
  const counts = new Map<string, number>();
  for (const t of tests) counts.set(t.name, (counts.get(t.name) ?? 0) + 1);
  for (const t of tests) if (counts.get(t.name)! > 1) t.name = `${t.wasm.slice(0, -'.wasm'.length)}`;
  return tests.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * A test's spec from its JSON file (absent: all defaults), paths made absolute
 * against the test directory. Throws ConformanceUsageError FTVM_ERR_BAD_SPEC
 * naming the file and field when the file is not JSON or a field has the
 * wrong type, or when `root` / a `dirs` entry is not a directory.
 */
export function readSpec(jsonPath: string, testDir: string): TestSpec {
  const spec: TestSpec = { args: [], env: {}, root: null, dirs: [], exit_code: 0, stdout: null, stderr: null };
  if (!existsSync(jsonPath)) return spec;
  const bad = (what: string): never => {
    throw new ConformanceUsageError('FTVM_ERR_BAD_SPEC', `${jsonPath}: ${what}`);
  };
  let o: unknown;
  try {
    o = JSON.parse(readFileSync(jsonPath, 'utf8'));
  } catch (err) {
    bad(`not JSON (${(err as Error).message})`);
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return bad('not a JSON object');
  const j = o as Record<string, unknown>;
  const isDir = (p: string): boolean => existsSync(p) && statSync(p).isDirectory();
  if (j.args !== undefined) {
    if (!Array.isArray(j.args) || !j.args.every((a) => typeof a === 'string')) bad('"args" must be an array of strings');
    spec.args = j.args as string[];
  }
  if (j.env !== undefined) {
    if (typeof j.env !== 'object' || j.env === null || Array.isArray(j.env)) bad('"env" must be an object of strings');
    for (const [k, v] of Object.entries(j.env as object)) {
      if (typeof v !== 'string' || k === '' || k.includes('=')) bad(`"env" entry "${k}" must be a string under a name without "="`);
      spec.env[k] = v as string;
    }
  }
  if (j.root !== undefined) {
    if (typeof j.root !== 'string') bad('"root" must be a string');
    spec.root = resolve(testDir, j.root as string);
    if (!isDir(spec.root)) bad(`"root" ${j.root as string} is not a directory`);
  }
  if (j.dirs !== undefined) {
    if (!Array.isArray(j.dirs) || !j.dirs.every((a) => typeof a === 'string')) bad('"dirs" must be an array of strings');
    for (const d of j.dirs as string[]) {
      const host = resolve(testDir, d);
      if (!isDir(host)) bad(`"dirs" entry ${d} is not a directory`);
      spec.dirs.push({ host, guest: d });
    }
  }
  if (j.exit_code !== undefined) {
    if (typeof j.exit_code !== 'number' || !Number.isInteger(j.exit_code) || j.exit_code < 0 || j.exit_code > 0xffff_ffff) bad('"exit_code" must be a u32');
    spec.exit_code = j.exit_code as number;
  }
  for (const k of ['stdout', 'stderr'] as const) {
    if (j[k] === undefined) continue;
    if (typeof j[k] !== 'string') bad(`"${k}" must be a string`);
    spec[k] = j[k] as string;
  }
  return spec;
}

// ---------------------------------------------------------------------------
// Child processes

/** What a child command did. `stdout`/`stderr` hold at most MAX_OUTPUT_BYTES each. */
export interface ChildResult {
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  stdout: Buffer;
  stderr: Buffer;
  truncated: boolean;
  duration_ms: number;
}

/**
 * Runs `node ARGS` with a closed stdin pipe, collecting bounded output, killed
 * (SIGKILL) after timeoutMs or when `stop` aborts. Never rejects: a failure to
 * start is a result with code null and the error on stderr.
 */
export function runChild(args: string[], timeoutMs: number, cwd: string, stop?: AbortSignal): Promise<ChildResult> {
  const started = performance.now();
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'], signal: stop, killSignal: 'SIGKILL' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let truncated = false;
    let timedOut = false;
    const keep = (chunks: Buffer[], have: number, b: Buffer): number => {
      const room = MAX_OUTPUT_BYTES - have;
      if (b.length > room) truncated = true;
      if (room > 0) chunks.push(room >= b.length ? b : b.subarray(0, room));
      return have + Math.min(room, b.length);
    };
    child.stdout.on('data', (b: Buffer) => void (outBytes = keep(out, outBytes, b)));
    child.stderr.on('data', (b: Buffer) => void (errBytes = keep(err, errBytes, b)));
    // A guest that never reads leaves the pipe unread; ignore EPIPE from our end.
    child.stdin.on('error', () => {});
    child.stdin.end();
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    let spawnError: Error | null = null;
    child.on('error', (e) => {
      spawnError = e;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (spawnError) err.push(Buffer.from(`could not start: ${spawnError.message}\n`));
      resolvePromise({
        code,
        signal,
        timedOut,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err),
        truncated,
        duration_ms: performance.now() - started,
      });
    });
  });
}

// ---------------------------------------------------------------------------
// Judging

/** Lines ftvm itself appends to stderr after the guest's output (summaries and messages), dropped before comparing the guest's stderr. */
const FTVM_TAIL_LINE = /^(ftvm: .*|exit \d+|trap .*|idle|count \d+|digest [0-9a-f]+|log .*: \d+ entries, \d+ bytes|replayed \d+ of \d+ entries|stopped at count .*|conformance-node: .*)$/;

/** ftvm's progress lines while it meters a module of 1 MiB or more, before the guest runs (meter/progress.ts). */
const FTVM_HEAD_LINE = /^ftvm: metering \d+(\.\d+)? MB: .*$/;

/**
 * The guest's own stderr: `text` without the lines the runner appended at
 * its end, nor the metering progress it printed before the guest ran (only
 * a run that found the module uncached prints it, so a recording and its
 * replay may differ there).
 */
export function guestStderr(text: string): string {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  while (lines.length && FTVM_TAIL_LINE.test(lines.at(-1)!)) lines.pop();
  while (lines.length && FTVM_HEAD_LINE.test(lines[0]!)) lines.shift();
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** The value of a "KEY VALUE" summary line of ftvm record/replay's stderr, or null. */
function summaryValue(stderr: string, key: 'count' | 'digest'): string | null {
  const m = new RegExp(`^${key} (\\S+)$`, 'm').exec(stderr);
  return m ? m[1]! : null;
}

/** One line of text, shortened, for a detail. */
function oneLine(s: string, max = 160): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** How two texts first differ, shown briefly: `expected "..." got "..."`. */
function difference(expected: string, got: string): string {
  let i = 0;
  while (i < expected.length && i < got.length && expected[i] === got[i]) i++;
  const from = Math.max(0, i - 20);
  return `from byte ${i}: expected ${JSON.stringify(expected.slice(from, i + 40))}, got ${JSON.stringify(got.slice(from, i + 40))}`;
}

/** The runtime's own failure message in a child's stderr (ftvm's "ftvm: ..." line not about the guest, a JavaScript stack frame of an uncaught error, conformance-node's error), or null. */
function runtimeFailure(stderr: string): string | null {
  for (const line of stderr.split('\n')) {
    if (/^ftvm: (?!guest )/.test(line) || /^conformance-node: error: /.test(line) || /^\s+at .+:\d+:\d+\)?$/.test(line)) return oneLine(line);
  }
  return null;
}

/**
 * Judges one command's result against the spec (the rules of the module
 * header, in order). `kind` says whose conventions the exit code follows:
 * ftvm (125 trap; exit 1 with ftvm's own error = crash) or the node:wasi
 * runner (125 + "conformance-node: trap"; 70 + "conformance-node: error").
 */
export function judge(spec: TestSpec, r: ChildResult, kind: 'ftvm' | 'node'): WayVerdict {
  const stderr = r.stderr.toString('utf8');
  const base = { exit_code: r.timedOut || r.signal ? null : r.code, duration_ms: Math.round(r.duration_ms) };
  const fail = (reason: FailReason, detail: string): WayVerdict => ({ pass: false, reason, detail, ...base });
  // What the guest said before it failed (a Rust panic's or a C assertion's message) says most about why.
  const said = oneLine(guestStderr(stderr), 200);
  const withSaid = (d: string): string => (said ? `${d}; guest stderr: ${said}` : d);
  if (r.timedOut) return fail('timeout', `killed after ${Math.round(r.duration_ms / 1000)} s`);
  if (r.signal || r.code === null) return fail('crash', `ended by ${r.signal ?? 'an error'}${stderr ? `: ${oneLine(stderr)}` : ''}`);
  if (kind === 'node') {
    if (r.code === 70 && /^conformance-node: error: /m.test(stderr)) return fail('crash', runtimeFailure(stderr) ?? 'error');
    if (r.code === 125 && /^conformance-node: trap: /m.test(stderr)) return fail('trap', withSaid(oneLine(/^conformance-node: trap: (.*)$/m.exec(stderr)![1]!)));
  } else {
    const failure = runtimeFailure(stderr);
    if (r.code === 1 && failure && spec.exit_code !== 1) return fail('crash', failure);
    if (r.code === 125 && spec.exit_code !== 125) return fail('trap', withSaid(oneLine(/^ftvm: (?:FTVM_ERR_TRAP: )?guest trapped: (.*)$/m.exec(stderr)?.[1] ?? 'trap')));
  }
  if (r.code !== spec.exit_code) {
    const runtime = runtimeFailure(stderr);
    const expected = `expected ${spec.exit_code}, got ${r.code}`;
    return fail('exit code', runtime ? `${expected}: ${runtime}` : withSaid(expected));
  }
  const stdout = r.stdout.toString('utf8');
  if (spec.stdout !== null && stdout !== spec.stdout) return fail('stdout', difference(spec.stdout, stdout));
  if (spec.stderr !== null && guestStderr(stderr) !== spec.stderr) return fail('stderr', difference(spec.stderr, guestStderr(stderr)));
  return { pass: true, reason: null, detail: '', ...base };
}

/**
 * Whether a replay reproduced its recording: the replay's exit code is 0
 * (ftvm replay checks the guest's end against the log's exit entry itself and
 * exits 0 when it matched, whatever the guest's status), and stdout, the guest's stderr, and the final count and
 * digest equal the recording's. Exit code 3 (FTVM_ERR_DIVERGENCE) and any
 * other difference are a divergence; a timeout or crash of the replay is that.
 */
export function judgeReplay(record: ChildResult, replay: ChildResult): WayVerdict {
  const stderr = replay.stderr.toString('utf8');
  const base = { exit_code: replay.timedOut || replay.signal ? null : replay.code, duration_ms: Math.round(replay.duration_ms) };
  const fail = (reason: FailReason, detail: string): WayVerdict => ({ pass: false, reason, detail: `replay: ${detail}`, ...base });
  if (replay.timedOut) return fail('timeout', `killed after ${Math.round(replay.duration_ms / 1000)} s`);
  if (replay.signal || replay.code === null) return fail('crash', `ended by ${replay.signal ?? 'an error'}`);
  if (replay.code === 3) return fail('divergence', /FTVM_ERR_DIVERGENCE.*$/m.exec(stderr)?.[0] ?? 'exit code 3');
  if (replay.code !== 0) return fail('crash', runtimeFailure(stderr) ?? `exit code ${replay.code}`);
  const recStderr = record.stderr.toString('utf8');
  if (!replay.stdout.equals(record.stdout)) return fail('divergence', `stdout ${difference(record.stdout.toString('utf8'), replay.stdout.toString('utf8'))}`);
  if (guestStderr(stderr) !== guestStderr(recStderr)) return fail('divergence', `stderr ${difference(guestStderr(recStderr), guestStderr(stderr))}`);
  for (const key of ['count', 'digest'] as const) {
    const a = summaryValue(recStderr, key);
    const b = summaryValue(stderr, key);
    if (a === null || a !== b) return fail('divergence', `${key} ${a ?? '(none)'} recorded, ${b ?? '(none)'} replayed`);
  }
  return { pass: true, reason: null, detail: '', ...base };
}

// ---------------------------------------------------------------------------
// The ways

/**
 * A fresh copy of the test's root (and `dirs`) under `scratch`, without
 * `*.cleanup` files, and the preopens as [guest name, host copy] pairs.
 */
function freshPreopens(spec: TestSpec, scratch: string): [string, string][] {
  const pairs: [string, string][] = [];
  const copy = (host: string, guest: string, i: number): void => {
    const to = join(scratch, `preopen-${i}`);
    cpSync(host, to, { recursive: true, verbatimSymlinks: true, filter: (src) => !src.endsWith('.cleanup') });
    pairs.push([guest, to]);
  };
  if (spec.root) copy(spec.root, '/', 0);
  spec.dirs.forEach((d, i) => copy(d.host, d.guest, i + 1));
  return pairs;
}

/** The flags of `ftvm run` / `ftvm record` for a spec (CONTRACT section 3): `--dir=COPY::GUEST`, `--env=K=V`; guest args follow `--`. */
function ftvmGuestFlags(spec: TestSpec, preopens: [string, string][]): { flags: string[]; guestArgs: string[] } {
  const flags = [...preopens.map(([guest, host]) => `--dir=${host}::${guest}`), ...Object.entries(spec.env).map(([k, v]) => `--env=${k}=${v}`)];
  return { flags, guestArgs: ['--', ...spec.args] };
}

/** Runs one test one way in its own scratch directory (removed afterwards). */
async function runWay(test: ConformanceTest, way: WayName, timeoutMs: number, scratchRoot: string, id: number, stop?: AbortSignal): Promise<WayVerdict> {
  const scratch = mkdtempSync(join(scratchRoot, `${id}-${way}-`));
  try {
    const preopens = freshPreopens(test.spec, scratch);
    if (way === 'node') {
      const spec = { wasm: test.wasm, args: test.spec.args, env: test.spec.env, preopens: Object.fromEntries(preopens) };
      return judge(test.spec, await runChild(['--no-warnings', NODE_RUNNER, JSON.stringify(spec)], timeoutMs, scratch, stop), 'node');
    }
    const { flags, guestArgs } = ftvmGuestFlags(test.spec, preopens);
    if (way === 'run') return judge(test.spec, await runChild([FTVM_CLI, 'run', test.wasm, ...flags, ...guestArgs], timeoutMs, scratch, stop), 'ftvm');
    const log = join(scratch, 'guest.ftlog');
    const record = await runChild([FTVM_CLI, 'record', test.wasm, '--log', log, ...flags, ...guestArgs], timeoutMs, scratch, stop);
    const recorded = judge(test.spec, record, 'ftvm');
    const recordDetail = recorded.detail ? `record: ${recorded.detail}` : '';
    // Without a log there is nothing to replay; a recording that did not meet the spec is still replayed, to tell a divergence too.
    if (recorded.reason === 'timeout' || recorded.reason === 'crash' || !existsSync(log)) return { ...recorded, detail: recordDetail };
    const replay = await runChild([FTVM_CLI, 'replay', test.wasm, '--log', log], timeoutMs, scratch, stop);
    const replayed = judgeReplay(record, replay);
    const duration_ms = recorded.duration_ms + replayed.duration_ms;
    if (!recorded.pass) return { ...recorded, detail: replayed.pass ? recordDetail : `${recordDetail}; ${replayed.detail}`, duration_ms };
    return { ...replayed, exit_code: recorded.exit_code, duration_ms };
  } catch (err) {
    // The runner's own trouble with one test (e.g. copying its root) fails that test, loudly, and the others go on.
    return { pass: false, reason: 'crash', detail: `runner: ${(err as Error).message}`, exit_code: null, duration_ms: 0 };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Options of runConformance. */
export interface ConformanceOptions {
  /** Tests run at once (>= 1). */
  jobs: number;
  /** Bound on each child command, in seconds. */
  timeout_s: number;
  /** Skip the node:wasi column. */
  noNode: boolean;
  /** One line per finished test way, for progress. */
  progress?: (line: string) => void;
  /** Aborting it kills the running children and starts no more; the report then holds only the ways that ended. */
  stop?: AbortSignal;
}

/**
 * Runs every test every way, `jobs` at a time (a test's ways run as separate
 * tasks), and returns the report. Scratch copies live under one temporary
 * directory, removed at the end.
 */
export async function runConformance(tests: ConformanceTest[], dirs: string[], opts: ConformanceOptions): Promise<ConformanceReport> {
  const started = performance.now();
  const ways = WAYS.filter((w) => !(opts.noNode && w === 'node'));
  const rows: TestReport[] = tests.map((t) => ({ name: t.name, wasm: t.wasm, expected_exit_code: t.spec.exit_code }) as TestReport);
  const tasks = tests.flatMap((_, i) => ways.map((way) => ({ i, way })));
  const scratchRoot = mkdtempSync(join(tmpdir(), 'ftvm-conformance-'));
  let next = 0;
  let done = 0;
  try {
    const worker = async (): Promise<void> => {
      while (next < tasks.length && !opts.stop?.aborted) {
        const { i, way } = tasks[next++]!;
        const v = await runWay(tests[i]!, way, opts.timeout_s * 1000, scratchRoot, i, opts.stop);
        if (opts.stop?.aborted) break;
        rows[i]![way] = v;
        done++;
        opts.progress?.(`[${done}/${tasks.length}] ${tests[i]!.name} ${WAY_TITLES[way]}: ${v.pass ? 'pass' : `${v.reason}${v.detail ? ` (${v.detail})` : ''}`} ${(v.duration_ms / 1000).toFixed(1)} s`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.jobs, tasks.length) }, worker));
  } finally {
    rmSync(scratchRoot, { recursive: true, force: true });
  }
  const passed = (w: WayName): number => rows.filter((r) => r[w]?.pass).length;
  return {
    dirs: dirs.map((d) => resolve(d)),
    jobs: opts.jobs,
    timeout_s: opts.timeout_s,
    node_version: process.version,
    tests: rows,
    summary: { total: rows.length, run: passed('run'), record_replay: passed('record_replay'), node: opts.noNode ? null : passed('node') },
    elapsed_ms: Math.round(performance.now() - started),
  };
}

// ---------------------------------------------------------------------------
// Output

/** The report as a text table: one row per test ("pass" or the reason), the failures' details, and the summary (passed/total per way). */
export function formatConformanceTable(report: ConformanceReport): string {
  const ways = WAYS.filter((w) => w !== 'node' || report.summary.node !== null);
  const cell = (v: WayVerdict | undefined): string => (!v ? '-' : v.pass ? 'pass' : v.reason!);
  const head = ['test', ...ways.map((w) => WAY_TITLES[w])];
  const body = report.tests.map((t) => [t.name, ...ways.map((w) => cell(t[w]))]);
  const total = report.summary.total;
  const foot = ['passed', ...ways.map((w) => `${report.summary[w]}/${total}`)];
  const widths = head.map((_, c) => Math.max(...[head, ...body, foot].map((r) => r[c]!.length)));
  const line = (r: string[]): string => r.map((s, c) => s.padEnd(widths[c]!)).join('  ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const out = [line(head), rule, ...body.map(line), rule, line(foot), ''];
  const failures = report.tests.flatMap((t) => ways.filter((w) => t[w] && !t[w]!.pass).map((w) => `  ${t.name} [${WAY_TITLES[w]}] ${t[w]!.reason}: ${t[w]!.detail}`));
  if (failures.length) out.push('failures:', ...failures, '');
  out.push(
    `${total} tests; passed: ${ways.map((w) => `${WAY_TITLES[w]} ${report.summary[w]}/${total}`).join(', ')}; ` +
      `${(report.elapsed_ms / 1000).toFixed(0)} s with ${report.jobs} jobs (node ${report.node_version})`,
  );
  return out.join('\n');
}

// ---------------------------------------------------------------------------
// The command

/** Where the command writes. */
export interface ConformanceIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const processIo: ConformanceIo = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};

/**
 * `ftvm conformance DIR... [--json] [--filter SUBSTR] [--no-node] [--jobs N] [--timeout S]`.
 * Returns the exit code: 0 when every test passes under both ftvm ways, 1
 * otherwise, 2 on bad usage (the message, with its FTVM_ERR_* code, on stderr).
 */
export async function cmdConformance(argv: string[], io: ConformanceIo = processIo): Promise<number> {
  let parsed: ReturnType<typeof parseCommand<typeof CONFORMANCE.options>>;
  try {
    parsed = parseCommand(CONFORMANCE, argv);
  } catch (err) {
    io.stderr(`ftvm conformance: ${(err as CliError).code}: ${(err as Error).message}\n`);
    return 2;
  }
  const { values, operands: positionals } = parsed;
  if (parsed.help) {
    io.stdout(CONFORMANCE.help);
    return 0;
  }
  try {
    const count = (flag: string, v: string | undefined, dflt: number, max: number): number => intOption(flag, v, 1, max) ?? dflt;
    const jobs = count('--jobs', values.jobs, DEFAULT_JOBS, 64);
    const timeout_s = count('--timeout', values.timeout, DEFAULT_TIMEOUT_S, 86_400);
    let tests = findTests(positionals);
    if (!tests.length) throw new ConformanceUsageError('FTVM_ERR_NO_TESTS', `no tests (*.wasm) under ${positionals.join(', ')}`);
    if (values.filter !== undefined) {
      tests = tests.filter((t) => t.name.includes(values.filter!));
      if (!tests.length) throw new ConformanceUsageError('FTVM_ERR_NO_TESTS', `no test name contains "${values.filter}"`);
    }
    io.stderr(`ftvm conformance: ${tests.length} tests, ${jobs} at a time, ${timeout_s} s bound per command\n`);
    // Ctrl-C or a kill: end the children and remove the scratch copies rather than leave them behind.
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
    let report: ConformanceReport;
    try {
      report = await runConformance(tests, positionals, { jobs, timeout_s, noNode: values['no-node'] ?? false, progress: (l) => io.stderr(`${l}\n`), stop: stop.signal });
    } finally {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    }
    if (stop.signal.aborted) {
      io.stderr('ftvm conformance: stopped by a signal; no report\n');
      return 130;
    }
    io.stdout(values.json ? `${JSON.stringify(report)}\n` : `${formatConformanceTable(report)}\n`);
    return report.summary.run === report.summary.total && report.summary.record_replay === report.summary.total ? 0 : 1;
  } catch (err) {
    if (err instanceof ConformanceUsageError) {
      io.stderr(`ftvm: ${err.code}: ${err.message}\n`);
      return exitStatusOf(err.code);
    }
    if (err instanceof CliError && err.code === 'FTVM_ERR_USAGE') {
      io.stderr(`ftvm conformance: ${err.code}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
