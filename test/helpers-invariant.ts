// Runs a snippet of TypeScript (an ES module, with tsx) in a child process and
// returns how it ended: a broken invariant (host/assert.ts) stops the process
// that holds it, so the only honest way to see one is from outside.

import { spawn } from 'node:child_process';

/** The exit status, stdout and stderr of `node --import tsx -e code` run at the repository root; killed after `ms`. */
export function runSnippet(code: string, ms = 60_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: new URL('..', import.meta.url).pathname,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => p.kill('SIGKILL'), ms);
  // after 'close' (not 'exit'), all of its output has been read
  return new Promise((resolve) =>
    p.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    }),
  );
}
