// How the `ftvm` command starts: from the JavaScript built in dist/, loading
// no more than the command needs (binaryen, whose import takes seconds, only
// for a guest that must be metered), and never from a build older than the
// sources. Each start is a real child process run with FTVM_TRACE_START=1,
// which makes the entry print, at exit, how it started and every module the
// process loaded.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

interface Start {
  code: number;
  stdout: string;
  stderr: string;
  mode: 'built' | 'rebuilt' | 'source';
  modules: string[];
}

function ftvm(entry: string, args: string[], env: Record<string, string> = {}): Promise<Start> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [entry, ...args],
      { timeout: 120_000, env: { ...process.env, FTVM_FROM_SOURCE: '', ...env, FTVM_TRACE_START: '1' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        const line = stderr.split('\n').find((l) => l.startsWith('{"ftvmStart"'));
        if (!line) return reject(new Error(`no start trace (exit ${code}): ${stderr}`));
        const { mode, modules } = (JSON.parse(line) as { ftvmStart: { mode: Start['mode']; modules: string[] } }).ftvmStart;
        resolve({ code, stdout, stderr: stderr.replace(`${line}\n`, ''), mode, modules });
      },
    );
  });
}

const heavy = (modules: string[]): string[] => modules.filter((m) => /\/node_modules\/(binaryen|fastify|@fastify|tsx|esbuild|etcd3|prom-client)\//.test(m));

describe('the command line starts light', () => {
  const entry = join(ROOT, 'host/cli/ftvm.mjs');
  const cache = mkdtempSync(join(tmpdir(), 'ftvm-startup-cache-'));
  afterAll(() => rmSync(cache, { recursive: true, force: true }));

  it('ftvm --help and ftvm vm --help run the built JavaScript and load none of the heavy packages', async () => {
    for (const args of [['--help'], ['vm', '--help'], ['bench', '--help']]) {
      const s = await ftvm(entry, args);
      expect(s.code, args.join(' ')).toBe(0);
      expect(s.stdout).toMatch(/usage:\s+ftvm/);
      expect(s.mode).not.toBe('source');
      const own = s.modules.filter((m) => m.startsWith('file:') && !m.includes('/node_modules/'));
      expect(own.length).toBeGreaterThan(0);
      for (const m of own) expect(m, 'a module of ours loaded from outside dist/').toContain('/dist/');
      expect(heavy(s.modules)).toEqual([]);
    }
  }, 240_000);

  it('ftvm run meters a guest not in the cache on the metering thread (this thread never loads binaryen) and runs it from the cache after, with no thread', async () => {
    const env = { FTVM_CACHE_DIR: cache };
    const cold = await ftvm(entry, ['run', 'fib', '--count', '--', '20'], env);
    expect(cold.code, cold.stderr).toBe(0);
    expect(cold.stdout).toBe('fib(20) = 6765\n');
    expect(cold.modules.some((m) => /\/dist\/meter\/thread\.js$/.test(m))).toBe(true);
    expect(heavy(cold.modules)).toEqual([]);
    const warm = await ftvm(entry, ['run', 'fib', '--count', '--', '20'], env);
    expect(warm.code, warm.stderr).toBe(0);
    expect(warm.stdout).toBe(cold.stdout);
    expect(warm.stderr).toBe(cold.stderr); // the same "count N"
    expect(heavy(warm.modules)).toEqual([]);
    expect(warm.modules.some((m) => m.includes('/meter/thread'))).toBe(false);
  }, 240_000);
});

describe('an edited source is never shadowed by an older build', () => {
  // A copy of the host in a scratch checkout, so its sources can be edited.
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-startup-tree-'));
  cpSync(join(ROOT, 'host'), join(dir, 'host'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(dir, 'node_modules'));
  const entry = join(dir, 'host/cli/ftvm.mjs');
  // the file that holds `ftvm --help`'s first line (the command table)
  const main = join(dir, 'host/cli/commands.ts');
  const usageLine = 'ftvm: fault-tolerant virtual machines for WebAssembly guests';
  const edit = (marker: string): void => writeFileSync(main, readFileSync(main, 'utf8').replace(/ftvm: fault-tolerant virtual machines for WebAssembly guests[^\n`]*/, `${usageLine} ${marker}`));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('builds dist/ on the first start, reuses it while nothing changes, and rebuilds after an edit', async () => {
    const first = await ftvm(entry, ['--help']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.mode).toBe('rebuilt');
    expect(first.modules.some((m) => m.startsWith(`file://${dir}/dist/cli/main.js`))).toBe(true);
    // A source written within the build's clock tick is rebuilt once more (see host/build.mjs), so allow a few starts.
    let again = await ftvm(entry, ['--help']);
    for (let i = 0; i < 3 && again.mode !== 'built'; i++) again = await ftvm(entry, ['--help']);
    expect(again.mode).toBe('built');
    expect(again.stdout).toBe(first.stdout);

    edit('(edited once)');
    const edited = await ftvm(entry, ['--help']);
    expect(edited.mode).toBe('rebuilt');
    expect(edited.stdout).toContain(`${usageLine} (edited once)`);
  }, 240_000);

  it('several starts at once on edited sources all run the edit (one builds, the others wait for it)', async () => {
    edit('(edited twice)');
    const all = await Promise.all([1, 2, 3, 4].map(() => ftvm(entry, ['--help'])));
    for (const s of all) {
      expect(s.code, s.stderr).toBe(0);
      expect(s.mode).not.toBe('source');
      expect(s.stdout).toContain(`${usageLine} (edited twice)`);
    }
  }, 240_000);

  it('when dist/ cannot be built, the command runs from the sources and says so', async () => {
    edit('(edited thrice)');
    const broken = join(dir, 'host/bench/ft.ts');
    writeFileSync(broken, `${readFileSync(broken, 'utf8')}\nexport const = ;\n`);
    const s = await ftvm(entry, ['--help']);
    expect(s.code, s.stderr).toBe(0);
    expect(s.mode).toBe('source');
    expect(s.stderr).toMatch(/cannot build dist\/.*running from the TypeScript sources/);
    expect(s.stdout).toContain(`${usageLine} (edited thrice)`);
  }, 240_000);
});
