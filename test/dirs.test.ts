// makeDirs: mkdir -p that returns: a directory and its missing parents are
// made; a path that cannot be made fails at once with its errno, also under
// /proc, where node 20's recursive mkdir never returns; the CLI commands that
// take a directory say so in one line rather than hang.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeDirs } from '../host/dirs.ts';
import { ftvm } from './ftvm-cli.ts';

const made: string[] = [];
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('makeDirs', () => {
  it('makes a directory and its missing parents, and takes one that exists', () => {
    const root = mkdtempSync(join(tmpdir(), 'ftvm-dirs-'));
    made.push(root);
    makeDirs(join(root, 'a', 'b', 'c'));
    expect(statSync(join(root, 'a', 'b', 'c')).isDirectory()).toBe(true);
    makeDirs(join(root, 'a', 'b'));
    makeDirs(root);
  });

  it('fails at once with the errno of the part it cannot make', () => {
    const root = mkdtempSync(join(tmpdir(), 'ftvm-dirs-'));
    made.push(root);
    writeFileSync(join(root, 'file'), 'x');
    expect(() => makeDirs(join(root, 'file'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
    expect(() => makeDirs(join(root, 'file', 'x'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
    // node's own recursive mkdir spins here for ever
    expect(() => makeDirs('/proc/ftvm-nope/x')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  it('a command given a log directory under /proc says it cannot make it, and exits', async () => {
    const r = await ftvm(['cluster', 'up', '--hosts', '1', '--log-dir', '/proc/ftvm-nope']);
    expect([r.code, r.stderr.trim()]).toEqual([1, 'ftvm cluster up: FTVM_ERR_FILE_NOT_FOUND: --log-dir /proc/ftvm-nope: cannot create (no such file or directory)']);
  }, 60_000);

  it('ftvm chaos given a log directory it cannot make says so in one line (root: before it makes any namespace)', async () => {
    const r = await ftvm(['chaos', '--trials', '1', '--log-dir', '/proc/ftvm-nope']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toBe(
      process.getuid?.() === 0
        ? 'ftvm chaos: FTVM_ERR_FILE_NOT_FOUND: --log-dir /proc/ftvm-nope: cannot create (no such file or directory)'
        : 'ftvm chaos: FTVM_ERR_PRIVILEGE: ftvm chaos makes network namespaces, links and bridges: it must run as root (uid 0)',
    );
  }, 60_000);
});
