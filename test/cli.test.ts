// The `ftvm` command as a user runs it: a real child process, its stdout,
// stderr and exit code.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const FTVM = fileURLToPath(new URL('../host/cli/ftvm.mjs', import.meta.url));
const GUESTS = fileURLToPath(new URL('../guests/', import.meta.url));

/** Runs the command; `stdin` is written to its stdin (a pipe), which is then closed (the guest reads end of file). */
function ftvm(args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [FTVM, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(stdin);
  });
}

describe('ftvm run', () => {
  it('runs a sample by name, passes args, and prints the same count twice', async () => {
    const a = await ftvm(['run', 'fib', '--count', '--', '20']);
    const b = await ftvm(['run', `${GUESTS}fib.wasm`, '--count', '--', '20']);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe('fib(20) = 6765\n');
    const count = /^count (\d+)$/m.exec(a.stderr)?.[1];
    expect(Number(count)).toBeGreaterThan(10_000);
    expect(b.stdout).toBe(a.stdout);
    expect(b.stderr).toBe(a.stderr);
  }, 60_000);

  it('exits 125 on a trap and 124 at a deadline, saying so', async () => {
    const trap = await ftvm(['run', 'trap', '--count', '--', '10']);
    expect(trap.code).toBe(125);
    expect(trap.stderr).toMatch(/guest trapped: divide by zero/);
    const stopped = await ftvm(['run', 'fib', '--count', '--deadline', '5000', '--', '25']);
    expect(stopped.code).toBe(124);
    expect(stopped.stderr).toMatch(/stopped at its deadline/);
    expect(Number(/^count (\d+)$/m.exec(stopped.stderr)?.[1])).toBeGreaterThanOrEqual(5000);
  }, 60_000);

  it('gives a clear error for a file that is not wasm, and for bad flags', async () => {
    const bad = await ftvm(['run', fileURLToPath(import.meta.url)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/FTVM_ERR_INVALID_MODULE: not a valid WebAssembly module/);
    const flag = await ftvm(['run', 'fib', '--deadline', 'soon']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toBe('ftvm run: FTVM_ERR_USAGE: --deadline expects a non-negative integer, got "soon" (see ftvm run --help)\n');
  }, 60_000);

  it('documents itself', async () => {
    const top = await ftvm(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/ftvm run/);
    const run = await ftvm(['run', '--help']);
    expect(run.stdout).toMatch(/--count/);
    const bench = await ftvm(['bench', 'meter', '--help']);
    expect(bench.stdout).toMatch(/--json/);
  }, 60_000);
});

describe('ftvm bench meter', () => {
  it('--json prints one document with every documented field', async () => {
    const r = await ftvm(['bench', 'meter', '--json', '--quick', '--runs', '1', '--warmup', '0', '--guests', 'fib,hash']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.guests.map((g: { name: string }) => g.name)).toEqual(['fib', 'hash']);
    for (const g of report.guests) {
      for (const k of ['unmetered_ms', 'metered_ms', 'ratio', 'classic_ratio', 'asyncify_ratio', 'asyncify_full_ratio', 'asyncify_input_ratio', 'asyncify_input_over_metered', 'nan_ratio']) {
        expect(typeof g[k], k).toBe('number');
        expect(g[k], k).toBeGreaterThan(0);
      }
      expect(BigInt(g.count) > 0n).toBe(true);
    }
    for (const k of ['geomean_ratio', 'classic_geomean_ratio', 'speedup_vs_classic', 'asyncify_input_over_metered_geomean', 'asyncify_input_over_metered_max']) expect(report[k]).toBeGreaterThan(0);
  }, 120_000);
});

describe('ftvm record / replay', () => {
  it('a replay prints what the recording printed, at the same count and digest; a damaged log is refused', async () => {
    const { mkdtempSync, readFileSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(`${tmpdir()}/ftvm-cli-`);
    try {
      const log = `${dir}/run.log`;
      writeFileSync(`${dir}/in.txt`, 'hello\n');
      const rec = await ftvm(['record', 'entropy', '--log', log, '--stdin', `${dir}/in.txt`, '--', '10']);
      expect(rec.code).toBe(0);
      expect(rec.stdout).toMatch(/^entropy: stdin 6 bytes/);
      const rep = await ftvm(['replay', 'entropy', '--log', log]);
      expect(rep.code).toBe(0);
      expect(rep.stdout).toBe(rec.stdout);
      const line = (s: string, k: string) => new RegExp(`^${k} (\\S+)$`, 'm').exec(s)?.[1];
      expect(line(rep.stderr, 'count')).toBe(line(rec.stderr, 'count'));
      expect(line(rep.stderr, 'digest')).toBe(line(rec.stderr, 'digest'));
      const wrong = await ftvm(['replay', 'fib', '--log', log]);
      expect(wrong.code).toBe(3);
      expect(wrong.stderr).toMatch(/FTVM_ERR_DIVERGENCE: .*not the guest this log was recorded with/);
      const bytes = readFileSync(log);
      bytes[bytes.length - 3]! ^= 0xff;
      writeFileSync(log, bytes);
      const bad = await ftvm(['replay', 'entropy', '--log', log]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/FTVM_ERR_LOG_CHECKSUM: log frame \d+ at byte \d+: checksum mismatch/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('--messages feeds the virtual NIC; sends are printed as JSON lines, again by the replay; a bad line is named', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(`${tmpdir()}/ftvm-cli-`);
    try {
      const log = `${dir}/kv.log`;
      const lines = [{ conn: 1, data: 'a SET k v' }, { conn: 2, data: 'b GET k' }, { conn: 2, eof: true }];
      writeFileSync(`${dir}/m.jsonl`, lines.map((l) => JSON.stringify(l)).join('\n'));
      const rec = await ftvm(['record', 'kv', '--log', log, '--messages', `${dir}/m.jsonl`]);
      expect(rec.code).toBe(0);
      expect(rec.stdout).toBe('{"send":{"conn":1,"data":"a OK 1"}}\n{"send":{"conn":2,"data":"b VALUE v"}}\n');
      expect(rec.stderr).toMatch(/waits for input and no more will come/);
      const rep = await ftvm(['replay', 'kv', '--log', log]);
      expect(rep.code).toBe(0);
      expect(rep.stdout).toBe(rec.stdout);
      writeFileSync(`${dir}/bad.jsonl`, '{"conn":1,"data":"x"}\n{"conn":-1,"data":"y"}\n');
      const bad = await ftvm(['record', 'kv', '--log', log, '--messages', `${dir}/bad.jsonl`]);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/bad\.jsonl:2: "conn" must be a u32/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('ftvm demo', () => {
  it('a VM survives kill -9 of its primary host, and no acknowledged write is lost', async () => {
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [FTVM, 'demo'], { timeout: 120_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      });
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/h2 won generation 2 at the arbiter and went live/);
    expect(r.stdout).toMatch(/a new backup runs on h3, made from a snapshot/);
    expect(r.stdout).toMatch(/acknowledged writes lost +0\n/);
    // the client was on the killed host: it came back on another, once
    expect(r.stdout).toMatch(/client reconnects \(same connection id\) +1\n/);
    expect(r.stdout).toMatch(/outputs out of order +0\n/);
    expect(Number(/writes acknowledged +(\d+)/.exec(r.stdout)?.[1])).toBeGreaterThan(100);
  }, 150_000);
});
