// What this proves: every command of `ftvm` goes through the one command
// table and its parse step. Each slip a user makes (a flag without its value,
// an unknown flag, a bad number, a boolean given a value, a missing or extra
// word, words after "--" for a command that starts no guest) ends with exactly
// one stderr line "ftvm <cmd>: FTVM_ERR_USAGE: ..." and exit status 2, never
// a stack trace; `ftvm host --id` was a Node stack trace before. The valid
// shapes (a guest argument or a token that starts with "-", guest arguments after "--")
// are accepted: the command gets past its parsing (runs, or reaches for the
// API and says it cannot). And the table keeps each command's flags and its
// --help in step: every flag is named in its help, and every help starts with
// its usage. Real child processes, as a user runs them.
import { mkdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { BENCH, CLUSTER_UP, CONFORMANCE, DEMO, HOST, RECORD, REPLAY, RUN, VM_COMMANDS, type Command } from '../host/cli/commands.ts';
import { ftvm, scratch } from './ftvm-cli.ts';

const tmp = scratch();
afterAll(() => tmp.done());
const conf = `${tmp.dir}/conf`;
mkdirSync(conf, { recursive: true });
const log = `${tmp.dir}/fib.log`;
/** No API listens on port 1: a vm command that parsed reaches for it and fails with FTVM_ERR_UNAVAILABLE (exit 1). */
const NOAPI = ['--api', 'http://127.0.0.1:1', '--token', 't'];
const HOSTDIR = ['--id', 'h', '--secret', 's', '--dir', `${tmp.dir}/arbiter`];

/** A command line, the name its line must start with ("ftvm <name>: "), and what the message must say. */
type Slip = [args: string[], name: string, says: RegExp];

const slips: Slip[] = [
  // a flag without its value
  [['run', 'fib', '--deadline'], 'run', /--deadline needs a value/],
  [['record', 'fib', '--log'], 'record', /--log needs a value/],
  [['replay', 'fib', '--log'], 'replay', /--log needs a value/],
  [['bench', 'meter', '--runs'], 'bench', /--runs needs a value/],
  [['conformance', conf, '--jobs'], 'conformance', /--jobs needs a value/],
  [['host', '--id'], 'host', /--id needs a value/],
  [['cluster', 'up', '--hosts'], 'cluster up', /--hosts needs a value/],
  ...Object.keys(VM_COMMANDS).map((sub): Slip => [['vm', sub, '--token', 't', '--api'], `vm ${sub}`, /--api needs a value/]),
  // an unknown flag
  ...['run fib', 'record fib', 'replay fib', 'bench meter', 'conformance .', 'host', 'cluster up', 'demo', ...Object.keys(VM_COMMANDS).map((s) => `vm ${s}`)].map(
    (c): Slip => [[...c.split(' '), '--bogus'], c.replace(/ (fib|meter|\.)$/, ''), /unknown option --bogus/],
  ),
  // a bad number
  [['run', 'fib', '--deadline', 'soon'], 'run', /--deadline expects a non-negative integer, got "soon"/],
  [['record', 'fib', '--log', log, '--digest-every', '1e6'], 'record', /--digest-every expects a non-negative integer/],
  [['replay', 'fib', '--log', log, '--until', '-3'], 'replay', /--until needs a value/],
  [['bench', 'ft', '--trials', 'many'], 'bench', /--trials expects a non-negative integer/],
  [['conformance', conf, '--timeout', '0'], 'conformance', /--timeout expects an integer from 1 to 86400/],
  [['host', ...HOSTDIR, '--fail-ms', 'soon'], 'host', /--fail-ms expects a positive integer, got "soon"/],
  [['host', ...HOSTDIR, '--api-port', '-1'], 'host', /--api-port needs a value/],
  // a secret that starts with "-" is the secret (random text may): the line is about the number after it
  [['host', '--id', 'h', '--secret', '-s3cret', '--dir', `${tmp.dir}/arbiter`, '--fail-ms', 'soon'], 'host', /--fail-ms expects a positive integer/],
  [['cluster', 'up', '--hosts', '17'], 'cluster up', /--hosts expects an integer from 1 to 16, got "17"/],
  [['vm', 'start', 'x', '--sample', 'fib', '--memory-mib', 'lots', ...NOAPI], 'vm start', /--memory-mib expects an integer, got "lots"/],
  [['vm', 'start', 'x', '--sample', 'fib', '--cpu-percent', '1.5', ...NOAPI], 'vm start', /--cpu-percent expects an integer/],
  [['vm', 'tail', 'x', '--count', '0', ...NOAPI], 'vm tail', /--count expects a positive integer/],
  [['vm', 'send', 'x', 'hi', '--wait-ms', 'long', ...NOAPI], 'vm send', /--wait-ms expects a non-negative integer/],
  // a boolean given a value
  [['run', 'fib', '--count=yes'], 'run', /--count takes no value/],
  [['vm', 'logs', 'x', '--follow=1', ...NOAPI], 'vm logs', /--follow takes no value/],
  // missing and extra words
  [['run'], 'run', /a guest \(a \.wasm file or a sample name\) is required/],
  [['run', 'fib', 'fib'], 'run', /unexpected argument "fib"; the guest's arguments go after "--"/],
  [['bench'], 'bench', /a benchmark is required/],
  [['bench', 'nosuch'], 'bench', /unknown benchmark "nosuch"/],
  [['demo', 'nosuch'], 'demo', /unknown demo "nosuch"/],
  [['conformance'], 'conformance', /name at least one directory of tests/],
  [['host', 'extra'], 'host', /unexpected argument "extra"/],
  [['host'], 'host', /--id, a secret .* are required/],
  // a host's flags are checked before anything starts: ports, ids, times, counts, one arbiter
  ...([
    [['--api-port', '99999'], /--api-port expects an integer from 0 to 65535, got "99999"/],
    [['--peer-port', '70000'], /--peer-port expects an integer from 0 to 65535/],
    [['--fail-ms', '0'], /--fail-ms expects a positive integer/],
    [['--fail-ms', '40', '--heartbeat-ms', '50'], /--fail-ms \(40\) must be longer than --heartbeat-ms \(50\)/],
    [['--meter-jobs', '0'], /--meter-jobs expects a positive integer/],
    [['--etcd', 'http://127.0.0.1:1'], /give one of --dir and --etcd, not both/],
  ] as [string[], RegExp][]).map(([extra, says]) => [['host', '--id', 'h9', '--secret', 's', '--dir', '/nonexistent/ftvm-arbiter', ...extra], 'host', says] as [string[], string, RegExp]),
  [['host', '--id', 'bad id!', '--secret', 's', '--dir', '/nonexistent/ftvm-arbiter'], 'host', /--id "bad id!" is no host id/],
  [['cluster'], 'cluster', /a sub-command is required/],
  [['cluster', 'down'], 'cluster', /unknown sub-command "down"/],
  [['vm'], 'vm', /a command is required: start, ls/],
  [['vm', ...NOAPI], 'vm', /a command is required/],
  [['vm', 'bogus', ...NOAPI], 'vm', /unknown command "bogus"/],
  [['vm', 'show', ...NOAPI], 'vm show', /a VM name is required/],
  [['vm', 'ls', 'extra', ...NOAPI], 'vm ls', /unexpected argument "extra"/],
  [['vm', 'send', 'x', ...NOAPI], 'vm send', /a VM name and the message text are required/],
  [['vm', 'logs', 'x', '--all', '--stdout', ...NOAPI], 'vm logs', /give one of --stdout, --stderr and --all, not --stdout and --all/],
  // a flag of another command
  [['vm', 'ls', '--sample', 'kv', ...NOAPI], 'vm ls', /unknown option --sample/],
  [['run', 'fib', '--arg', '-x'], 'run', /unknown option --arg/],
  // "--" right after a flag that takes any value is still the end of the flags
  [['run', 'fib', '--env', '--', '10'], 'run', /--env needs a value/],
  [['vm', 'start', 'x', '--sample', 'fib', ...NOAPI, '--arg', '--', 'a'], 'vm start', /--arg needs a value/],
  // words after "--" for a command that starts no guest are its words: too many here
  [['replay', 'fib', '--log', log, '--', '10'], 'replay', /unexpected argument "10"/],
  [['cluster', 'up', '--', 'x'], 'cluster up', /unexpected argument "x"/],
  [['vm', 'ls', ...NOAPI, '--', '-x'], 'vm ls', /unexpected argument "-x"/],
  // a connection id is a u32; one stream flag at a time
  [['vm', 'send', 'kv', 'x', '--conn', '99999999999', ...NOAPI], 'vm send', /--conn expects an integer from 0 to 4294967295/],
  [['vm', 'logs', 'kv', '--stdout', '--stderr', ...NOAPI], 'vm logs', /give one of --stdout, --stderr and --all/],
  // a name no VM can have, for every command that takes one
  ...(['show', 'logs', 'kill', 'failover', 'restart-backup', 'tail'] as const).map((sub) => [['vm', sub, 'bad name!', ...NOAPI], `vm ${sub}`, /"bad name!" is no VM name/] as [string[], string, RegExp]),
  [['vm', 'migrate', 'bad name!', '--to', 'h2', ...NOAPI], 'vm migrate', /"bad name!" is no VM name/],
  [['vm', 'send', 'a/b', 'x', ...NOAPI], 'vm send', /"a\/b" is no VM name/],
];

describe('every slip of every command: one line, FTVM_ERR_USAGE, exit status 2', () => {
  it('a recording exists for the replay rows', async () => {
    const rec = await ftvm(['record', 'fib', '--log', log, '--', '10']);
    expect(rec.code, rec.stderr).toBe(0);
  }, 60_000);

  it.each(slips)('%j', async (args, name, says) => {
    const r = await ftvm(args, '', 60_000);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 2 });
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]!.startsWith(`ftvm ${name}: FTVM_ERR_USAGE: `), lines[0]).toBe(true);
    expect(lines[0]).toMatch(says);
    expect(r.stderr).not.toMatch(/^\s+at |ERR_PARSE_ARGS|node:internal/m);
    expect(r.stdout).toBe('');
  }, 60_000);
});

describe('vm start checks its body by the API\'s rules before it sends anything: a wrong command line', () => {
  // NOAPI names an address where nothing listens: a refusal here is the CLI's own, not the API's
  it.each([
    [['vm', 'start', 'bad name!', '--sample', 'fib', ...NOAPI], /"name" "bad name!" must match/],
    [['vm', 'start', 'x', '--sample', 'fib', '--memory-mib', '5000', ...NOAPI], /"memoryMiB" must be an integer from 1 to 1024, not 5000/],
    [['vm', 'start', 'x', '--sample', 'fib', '--cpu-percent', '0', ...NOAPI], /"cpuPercent" must be an integer from 1 to 100, not 0/],
    [['vm', 'start', 'x', ...NOAPI], /give exactly one of "sample", "module" and "moduleHash"/],
  ])('%j', async (args, says) => {
    const r = await ftvm(args as string[], '', 60_000);
    expect(r.code, r.stderr).toBe(2);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]!.startsWith('ftvm vm start: FTVM_ERR_USAGE: '), lines[0]).toBe(true);
    expect(lines[0]).toMatch(says as RegExp);
    expect(r.stderr).not.toMatch(/ECONNREFUSED|FTVM_ERR_UNAVAILABLE/);
  }, 60_000);
});

describe('ftvm vm names a file on its command line that it cannot read by its code, before any request', () => {
  it.each([
    [['vm', 'start', 'x', '--sample', 'fib', '--stdin-file', '.', ...NOAPI], 'vm start', 'FTVM_ERR_FILE_IS_DIR'],
    [['vm', 'start', 'x', '--module', '.', ...NOAPI], 'vm start', 'FTVM_ERR_FILE_IS_DIR'],
    [['vm', 'upload', '.', ...NOAPI], 'vm upload', 'FTVM_ERR_FILE_IS_DIR'],
    [['vm', 'start', 'x', '--module', 'no/such.wasm', ...NOAPI], 'vm start', 'FTVM_ERR_FILE_NOT_FOUND'],
  ])('%j', async (args, name, code) => {
    const r = await ftvm(args as string[], '', 60_000);
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]!.startsWith(`ftvm ${name}: ${code}: `), lines[0]).toBe(true);
  }, 60_000);
});

describe('the valid shapes are accepted', () => {
  it('run and record: guest arguments after "--", even ones that look like flags; --env takes a value that starts with "-"', async () => {
    const run = await ftvm(['run', 'fib', '--count', '--', '20']);
    expect(run).toMatchObject({ code: 0, stdout: 'fib(20) = 6765\n' });
    // the guest gets "--bogus" as its argument: fib reads it as no number, so the line says what fib makes of it, not ftvm
    const flagLike = await ftvm(['run', 'fib', '--', '--bogus']);
    expect(flagLike.stderr).not.toMatch(/FTVM_ERR_USAGE/);
    const env = await ftvm(['run', 'fib', '--env', '-X=1', '--', '10']);
    expect(env).toMatchObject({ code: 0, stdout: 'fib(10) = 55\n' });
    const rec = await ftvm(['record', 'fib', '--log', `${tmp.dir}/args.log`, '--', '12']);
    expect(rec).toMatchObject({ code: 0, stdout: 'fib(12) = 144\n' });
  }, 60_000);

  it('vm start takes --arg -x and guest arguments after "--"; vm send takes a text after "--": each gets past parsing to the API', async () => {
    for (const args of [
      ['vm', 'start', 'x', '--sample', 'fib', '--arg', '-x', ...NOAPI],
      ['vm', 'start', 'x', '--sample', 'fib', ...NOAPI, '--', '-psdur', 'x'],
      ['vm', 'start', 'x', '--sample', 'fib', '--env', '-K=v', ...NOAPI, '--', '--bogus'],
      ['vm', 'send', 'x', ...NOAPI, '--', '-text'],
      ['vm', 'logs', 'x', '--stderr', ...NOAPI],
      ['vm', '--api', 'http://127.0.0.1:1', '--token', 't', 'ls'],
      // a token that starts with "-" (random base64url text may) is the token
      ['vm', 'ls', '--api', 'http://127.0.0.1:1', '--token', '-Xy3'],
      ['vm', '--token', '-Xy3', '--api', 'http://127.0.0.1:1', 'show', 'kv'],
    ]) {
      const r = await ftvm(args, '', 60_000);
      const own = r.stderr.split('\n').filter((l) => l.startsWith('ftvm'));
      expect({ args, code: r.code }).toEqual({ args, code: 1 });
      expect(own, r.stderr).toHaveLength(1);
      expect(own[0]).toMatch(/^ftvm vm [a-z]+: FTVM_ERR_UNAVAILABLE: /);
    }
  }, 120_000);

  it('--help of every command prints its help on stdout and exits 0', async () => {
    for (const args of [['run'], ['record'], ['replay'], ['bench'], ['conformance'], ['host'], ['cluster', 'up'], ['cluster'], ['demo'], ['vm'], ...Object.keys(VM_COMMANDS).map((s) => ['vm', s])]) {
      const r = await ftvm([...args, '--help']);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
      expect(r.stdout).toMatch(new RegExp(`^usage: ftvm ${args.join(' ')}`));
    }
  }, 120_000);
});

describe('a command line that parses but cannot be carried out', () => {
  it('ftvm host on an API port in use: one line "ftvm host: FTVM_ERR_...", exit status 1, and the process ends (what it started is stopped)', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const port = (taken.address() as AddressInfo).port;
      const r = await ftvm(['host', ...HOSTDIR, '--api-port', String(port)], '', 60_000);
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 1 });
      const own = r.stderr.split('\n').filter((l) => l.startsWith('ftvm'));
      expect(own, r.stderr).toHaveLength(1);
      expect(own[0]).toMatch(/^ftvm host: FTVM_ERR_[A-Z_]+: .*EADDRINUSE/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    } finally {
      taken.close();
    }
  }, 90_000);
});

describe('the table keeps each command\'s flags and help in step', () => {
  const all: Command[] = [RUN, RECORD, REPLAY, BENCH, CONFORMANCE, HOST, CLUSTER_UP, DEMO, ...Object.values(VM_COMMANDS)];
  it.each(all.map((c) => [c.name, c] as const))('%s: every flag is named in its --help, and the help starts with its usage', (_name, c) => {
    expect(c.help.startsWith(`usage: ${c.usage.split('\n')[0]}`), c.help.split('\n')[0]).toBe(true);
    for (const flag of Object.keys(c.options)) expect(c.help, `--${flag}`).toContain(`--${flag}`);
  });
});
