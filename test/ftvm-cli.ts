// Running the `ftvm` command as a user does, for the suites of the command line:
// a real child process, its stdout, stderr, exit code and how long it took.
import { execFile, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { watText } from './helpers.ts';

export const FTVM = fileURLToPath(new URL('../host/cli/ftvm.mjs', import.meta.url));

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  /** wall time of the whole process, ms */
  ms: number;
}

/**
 * Runs `ftvm args...`. `stdin`: a string written to a pipe that is then
 * closed, or `{ file }` to give the process that file as its stdin (as a
 * shell's `< file` does). Killed after `timeoutMs`.
 */
export function ftvm(args: string[], stdin: string | { file: string } = '', timeoutMs = 120_000): Promise<Ran> {
  const t0 = performance.now();
  if (typeof stdin === 'string') {
    return new Promise((resolve) => {
      const child = execFile(process.execPath, [FTVM, ...args], { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr, ms: performance.now() - t0 });
      });
      child.stdin?.on('error', () => {}); // a child that exits before reading its stdin: EPIPE, and its exit status says the rest
      child.stdin?.end(stdin);
    });
  }
  return new Promise((resolve) => {
    const fd = openSync(stdin.file, 'r');
    const child = spawn(process.execPath, [FTVM, ...args], { stdio: [fd, 'pipe', 'pipe'], timeout: timeoutMs });
    closeSync(fd);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, ms: performance.now() - t0 }));
  });
}

/** A scratch directory, removed by the returned function. */
export function scratch(): { dir: string; done: () => void } {
  const dir = mkdtempSync(`${tmpdir()}/ftvm-test-`);
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Assembles WAT text into `dir/name.wasm` and returns its path. */
export function watFile(dir: string, name: string, text: string): string {
  const path = `${dir}/${name}.wasm`;
  writeFileSync(path, watText(text));
  return path;
}
