// What this proves: every way a new user's command line can go wrong in
// `ftvm run`, `record`, `replay`, `bench` and `conformance` ends with one
// stderr line `ftvm: FTVM_ERR_<CODE>: message` (a wrong command line names
// its command: `ftvm run: FTVM_ERR_USAGE: message`), the documented exit status
// (2 for a wrong command line, 1 for a file, module or log that cannot be
// used, 3 for a divergence, 125 for a trap) and no stack trace; a file error
// names its path once. Real child processes, as a user runs them.
import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ftvm, scratch } from './ftvm-cli.ts';

const tmp = scratch();
afterAll(() => tmp.done());

/** A bad invocation: its arguments, the code it must name, its exit status, and (optionally) text the line must hold. */
type Row = [args: string[], code: string, status: number, says?: RegExp];

const log = `${tmp.dir}/fib.log`;
const rows: Row[] = [
  [['run', 'nosuch.wasm'], 'FTVM_ERR_GUEST_NOT_FOUND', 1, /nosuch\.wasm: no such file or sample guest/],
  [['run', tmp.dir], 'FTVM_ERR_FILE_IS_DIR', 1],
  [['run', 'fib', '--stdin', '/nope'], 'FTVM_ERR_FILE_NOT_FOUND', 1, /--stdin \/nope: cannot read/],
  [['replay', 'fib', '--log', `${tmp.dir}/nosuch.log`], 'FTVM_ERR_FILE_NOT_FOUND', 1, /nosuch\.log: cannot read/],
  [['record', 'fib', '--log', '/nonexistent/dir/x.log'], 'FTVM_ERR_FILE_NOT_FOUND', 1, /--log \/nonexistent\/dir\/x\.log: cannot create/],
  [['record', 'fib', '--log', tmp.dir], 'FTVM_ERR_FILE_IS_DIR', 1],
  [['record', 'fib'], 'FTVM_ERR_USAGE', 2, /needs --log FILE/],
  [['run'], 'FTVM_ERR_USAGE', 2],
  [['run', 'fib', 'fib'], 'FTVM_ERR_USAGE', 2],
  [['run', 'fib', '--bogus'], 'FTVM_ERR_USAGE', 2, /--bogus/],
  [['record', 'fib', '--log'], 'FTVM_ERR_USAGE', 2, /--log/],
  [['run', 'fib', '--depth-limit', '-5'], 'FTVM_ERR_USAGE', 2, /--depth-limit needs a value/],
  [['run', 'fib', '--depth-limit=-5'], 'FTVM_ERR_USAGE', 2, /--depth-limit expects a non-negative integer/],
  [['run', 'fib', '--deadline', 'abc'], 'FTVM_ERR_USAGE', 2],
  [['run', 'fib', '--deadline', '1e3'], 'FTVM_ERR_USAGE', 2],
  [['run', 'fib', '--env', 'NOEQUALS'], 'FTVM_ERR_USAGE', 2, /--env expects K=V/],
  [['replay', 'fib', '--log', log, '--memory', '999999999:16'], 'FTVM_ERR_MEMORY_RANGE', 2, /outside the guest's \d+ bytes/],
  [['replay', 'fib', '--log', log, '--memory', '12'], 'FTVM_ERR_USAGE', 2],
  [['replay', 'fib', '--log', log, '--exit-status', 'sometimes'], 'FTVM_ERR_USAGE', 2],
  [['replay', 'hash', '--log', log], 'FTVM_ERR_DIVERGENCE', 3, /not the guest this log was recorded with/],
  [['replay', 'fib', '--log', `${tmp.dir}/foreign.log`], 'FTVM_ERR_LOG_FOREIGN', 1],
  [['record', 'kv', '--log', `${tmp.dir}/kv.log`, '--messages', `${tmp.dir}/nope.jsonl`], 'FTVM_ERR_FILE_NOT_FOUND', 1, /--messages/],
  [['run', 'trap', '--', '10'], 'FTVM_ERR_TRAP', 125, /guest trapped: divide by zero/],
  [['run', 'fib', '--deadline', '100', '--', '30'], 'FTVM_ERR_DEADLINE', 124],
  [['frobnicate'], 'FTVM_ERR_USAGE', 2],
  [['bench'], 'FTVM_ERR_USAGE', 2],
  [['bench', 'nosuch'], 'FTVM_ERR_USAGE', 2],
  [['bench', 'meter', '--runs', 'many'], 'FTVM_ERR_USAGE', 2],
  [['bench', 'recovery', '--minutes', '0'], 'FTVM_ERR_USAGE', 2, /--minutes/],
  [['bench', 'recovery', '--minutes', 'ten'], 'FTVM_ERR_USAGE', 2, /--minutes/],
  [['conformance'], 'FTVM_ERR_USAGE', 2],
  [['conformance', '--bogus'], 'FTVM_ERR_USAGE', 2],
];

describe('ftvm command-line failures', () => {
  it('a good recording exists for the replay rows', async () => {
    writeFileSync(`${tmp.dir}/foreign.log`, 'not a log at all\n');
    const rec = await ftvm(['record', 'fib', '--log', log, '--', '10']);
    expect(rec.code, rec.stderr).toBe(0);
  }, 60_000);

  it.each(rows)('%j: one line with its code, exit status as documented, no stack trace', async (args, code, status, says) => {
    const r = await ftvm(args);
    expect(r.code, r.stderr).toBe(status);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    // Lines of ftvm's own that a command prints before failing (a replay's summary) are not errors; every "ftvm:" line is coded.
    const own = lines.filter((l) => l.startsWith('ftvm'));
    expect(own.length, r.stderr).toBe(1);
    // a wrong command line names the command it was given to (a known one)
    const prefix = code === 'FTVM_ERR_USAGE' && args[0] !== 'frobnicate' ? `ftvm ${args[0]}: ` : 'ftvm: ';
    expect(own[0]).toMatch(/^ftvm( [a-z]+)?: FTVM_ERR_[A-Z_]+: /);
    expect(own[0]!.startsWith(`${prefix}${code}: `), own[0]).toBe(true);
    if (says) expect(own[0]).toMatch(says);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).not.toMatch(/ERR_PARSE_ARGS|node:internal/);
    // A path is named once, not repeated by the system error's own text.
    for (const a of args.filter((x) => x.startsWith('/'))) expect(own[0]!.split(a).length - 1, own[0]).toBeLessThanOrEqual(1);
  }, 60_000);
});
