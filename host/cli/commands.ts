// The command table of `ftvm`: every command and sub-command declared once,
// with its flags (node:util parseArgs options), the words it takes, its usage
// line and its --help text side by side, and the one parse step they all go
// through. The modules that carry the commands out (main.ts, vm-cmd.ts,
// host-cmd.ts, cluster-cmd.ts, conformance.ts) import their entry from here,
// so a flag, its help and its checks cannot drift apart in seven places.
//
// The parse step (parseCommand) turns every slip of a command line into one
// FTVM_ERR_USAGE error (exit status 2) whose message says what is wrong and
// where to look (" (see ftvm CMD --help)"): an unknown option, an option
// without its value (`ftvm host --id`), a boolean given a value, a missing or
// extra word, arguments after "--" for a command that starts no guest. The
// command prints it as the single line "ftvm CMD: FTVM_ERR_USAGE: message"
// (usageLine), never a stack trace. Numbers go through intOption, whose
// refusal is the same kind of line.
//
// Guest arguments. Every command that starts a guest (run, record, vm start)
// takes the guest's arguments after "--", as `wasmtime run` and node's own
// scripts do: `ftvm vm start ls --module ls.wasm -- -l /`. Options whose value
// belongs to the guest (vm start --arg and --env, run/record --env) take the
// next word as their value even when it starts with "-" (`--arg -e`), and
// so do --token and --secret, whose random text may start with "-".
//
// This module is loaded by every `ftvm` start, `ftvm --help` included: it
// imports nothing heavy (node:util, errors.ts and the constants of the meter
// and of published ports).

import { parseArgs } from 'node:util';
import { PUBLISH_PORTS_MAX } from '../cluster/ingress.ts';
import { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES } from '../meter/abi.ts';
import { describeFailure, EXIT, usageError } from './errors.ts';
import { RECORD_LOG_FLUSH_MS as LOG_FLUSH_MS, CLUSTER_HOSTS_MAX, CLI_INLINE_MODULE_BYTES_MAX as INLINE_MODULE_BYTES_MAX, CHAOS_HOSTS_MAX, CHAOS_TCP_PROCESSES_MAX } from '../limits.ts';
export { LOG_FLUSH_MS, CLUSTER_HOSTS_MAX, INLINE_MODULE_BYTES_MAX };

/** One flag as node:util parseArgs declares it. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
}

/** A command's flags, by long name without the leading "--". */
export type OptionsSpec = Record<string, OptionSpec>;

/** What parseCommand gives for flags `O`: each flag absent (undefined) or its value(s). */
export type OptionValues<O extends OptionsSpec> = {
  [K in keyof O]?: O[K] extends { type: 'string' } ? (O[K] extends { multiple: true } ? string[] : string) : O[K] extends { multiple: true } ? boolean[] : boolean;
};

/** One command of `ftvm`, as the table declares it. */
export interface Command<O extends OptionsSpec = OptionsSpec> {
  /** the words after `ftvm` that name it: "run", "vm start", "cluster up" */
  name: string;
  /** the usage line after "usage: " (it starts with "ftvm NAME") */
  usage: string;
  /** the whole --help text (it starts with "usage: ") */
  help: string;
  /** its flags; -h/--help is added to every command */
  options: O;
  /** the words (positionals) it takes: at least `min`, at most `max` (Infinity: any number); `missing` is the message when fewer are given */
  operands: { min: number; max: number; missing?: string };
  /** true when it starts a guest: words after "--" are the guest's arguments */
  guestArgs?: boolean;
  /** flags whose next word is their value even when it starts with "-": a guest's argument (--arg -e), a token or secret (random text) */
  rawValues?: readonly string[];
}

/** A parsed command line: the flags, the words before "--", the guest's arguments after it, and whether --help was asked. */
export interface Parsed<O extends OptionsSpec> {
  values: OptionValues<O>;
  operands: string[];
  /** the words after "--" (commands with guestArgs; [] without "--") */
  guestArgs: string[];
  help: boolean;
}

/** Declares a command (keeps the literal type of its flags for OptionValues). */
function command<const O extends OptionsSpec>(c: Command<O>): Command<O> {
  return c;
}

/**
 * Parses `argv` (the words after the command's name) against `cmd`.
 * Returns the flags, operands and guest arguments; when --help (-h) is given,
 * returns at once with help: true and nothing checked. Throws FTVM_ERR_USAGE
 * (CliError, exit status 2) for an unknown flag, a flag without its value, a
 * value for a boolean flag, and too few or too many words. For a command with
 * guestArgs the words after "--" are the guest's; for the others "--" only
 * ends the flags, so the words after it are operands that may start with "-"
 * (`vm send kv -- -text`). Each message ends with " (see ftvm NAME --help)".
 */
export function parseCommand<O extends OptionsSpec>(cmd: Command<O>, argv: readonly string[]): Parsed<O> {
  const hint = ` (see ftvm ${cmd.name} --help)`;
  const own: string[] = [];
  let guestArgs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--' && cmd.guestArgs) {
      guestArgs = argv.slice(i + 1);
      break;
    }
    if (a === '--') {
      own.push(...argv.slice(i));
      break;
    }
    // `--arg -e` becomes `--arg=-e`, so the parser takes a value that starts with "-" as the value ("--" stays the end of the flags: `--arg=--` gives that)
    if (cmd.rawValues?.includes(a) && i + 1 < argv.length && argv[i + 1] !== '--') own.push(`${a}=${argv[++i]!}`);
    else own.push(a);
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: own, allowPositionals: true, strict: true, options: { ...cmd.options, help: { type: 'boolean', short: 'h' } } });
  } catch (e) {
    throw usageError(`${parseArgsSlip(e)}${hint}`);
  }
  const help = parsed.values.help === true;
  const operands = parsed.positionals;
  if (!help) {
    if (operands.length < cmd.operands.min) throw usageError(`${cmd.operands.missing ?? 'more arguments are needed'}${hint}`);
    if (operands.length > cmd.operands.max) {
      const extra = operands[cmd.operands.max]!;
      const where = cmd.guestArgs ? '; the guest\'s arguments go after "--"' : '';
      throw usageError(`unexpected argument ${JSON.stringify(extra)}${where}${hint}`);
    }
  }
  const { help: _help, ...values } = parsed.values;
  return { values: values as OptionValues<O>, operands, guestArgs, help };
}

/** What node:util parseArgs refused, said in a few words: "unknown option --x", "--x needs a value", "--x takes no value". */
function parseArgsSlip(e: unknown): string {
  const m = String((e as Error)?.message ?? e);
  const unknown = /^Unknown option '([^']+)'/.exec(m);
  if (unknown) return `unknown option ${unknown[1]}`;
  const missing = /^Option '(?:-\w, )?(--?[^ ']+) <value>' argument missing/.exec(m);
  if (missing) return `${missing[1]} needs a value`;
  const noValue = /^Option '(?:-\w, )?(--?[^ ']+)' does not take an argument/.exec(m);
  if (noValue) return `${noValue[1]} takes no value`;
  // the rest as errors.ts words it (an option whose value starts with "-" is "ambiguous" to node:util)
  return describeFailure(e).line.replace(/^ftvm: FTVM_ERR_[A-Z_]+: /, '');
}

/**
 * An integer flag's value: undefined when the flag is absent, else `v` as a
 * number within [min, max] (decimal digits, an optional "-" when min < 0).
 * FTVM_ERR_USAGE otherwise: "--FLAG expects ..., got "V"", the range written
 * out when `v` is an integer past it ("--digest-every expects an integer from
 * 1 to 9007199254740991, got "99999999999999999999""). `flag` is written with
 * its dashes ("--jobs"); usageLine adds the help to read.
 */
export function intOption(flag: string, v: string | undefined, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  const digits = /^-?\d+$/.test(v);
  const n = digits ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    // an integer too large (or too far below every bound) is refused for its size: name the range, not the kind of number
    const outside = digits && (n > max || n < Number.MIN_SAFE_INTEGER);
    const what =
      max !== Number.MAX_SAFE_INTEGER || outside ? `an integer from ${min} to ${max}` : min === 0 ? 'a non-negative integer' : min === 1 ? 'a positive integer' : min <= Number.MIN_SAFE_INTEGER ? 'an integer' : `an integer of at least ${min}`;
    throw usageError(`${flag} expects ${what}, got "${v}"`);
  }
  return n;
}

/**
 * The one line and exit status of a failure of command `name` ("run", "vm
 * start"): describeFailure's (errors.ts), with a wrong command line
 * (FTVM_ERR_USAGE) said as "ftvm NAME: FTVM_ERR_USAGE: message (see ftvm NAME
 * --help)" so the line names the command and the help to read, whichever
 * part refused it (parseCommand, intOption, the command's own checks; a
 * message that names its help already keeps it). No trailing newline.
 */
export function usageLine(name: string, err: unknown): { line: string; status: number } {
  const d = describeFailure(err, name);
  if (d.status === EXIT.usage && d.line.startsWith('ftvm: FTVM_ERR_USAGE: ')) {
    const hint = /\(see ftvm [^()]*--help\)$/.test(d.line) ? '' : ` (see ftvm ${name} --help)`;
    return { line: `ftvm ${name}: ${d.line.slice('ftvm: '.length)}${hint}`, status: d.status };
  }
  return d;
}

// ---------------------------------------------------------------------------
// run, record, replay, bench, demo


const DIR_HELP = `  --dir HOST[::GUEST]     preopen the host directory HOST for the guest under the name GUEST
                          (default: HOST as written), at fds 3, 4, ... in the order given, or 4, 5, ...
                          after a listening socket at fd 3 (repeatable).
                          HOST is read once, at start, into the VM's in-memory filesystem: the guest
                          never touches it and never sees a later change to it
  --fs DIR                the same as --dir DIR::/  (placed first)
                          With neither, the guest has no preopened directory (without a listening
                          socket, fd 3 is EBADF).
  --out DIR               when the guest ends, write the final tree of each preopened directory to
                          DIR/0, DIR/1, ... (in --dir order); DIR must be empty or not exist`;

const STDIN_HELP = `  --stdin FILE            give the guest FILE as its stdin, read whole at start
                          Without it, the guest reads our stdin as it goes when that is a pipe or a
                          file (\`ftvm run shell.wasm < script.sql\`); from a terminal it reads nothing`;

const TCPLISTEN_HELP = `  --tcplisten ADDR        serve real TCP on ADDR (HOST:PORT; port 0: any free port), as
                          \`wasmtime run --tcplisten\` does: the guest's listening socket is fd 3 and
                          its preopened directories follow it (4, 5, ...). Prints
                          "ftvm: listening on HOST:PORT" on stderr before the guest starts. Each
                          connection is one the guest accepts; the client's FIN or reset is the end of
                          its stream, the guest's shutdown or close a FIN. A connection is paused while
                          the guest has more than 1 MiB of it unread; the guest sends at most 1 MiB its
                          client has not taken (a send window: a blocking send waits, a non-blocking one
                          answers EAGAIN), so a client that does not read stalls only its connection`;

const EXIT_HELP = `Exit code: the guest's exit status when it is 0..123; 125 when the guest
trapped (FTVM_ERR_TRAP), 124 when it was stopped at its deadline
(FTVM_ERR_DEADLINE); any other status (124, 125, 126 and above: proc_exit's
full u32) is reported as FTVM_ERR_EXIT_STATUS with its value, and the exit code
is 1. A wrong command line exits 2 (FTVM_ERR_USAGE), a file, module or log that
cannot be used exits 1, each with one line "ftvm: FTVM_ERR_<CODE>: message".
A guest that sleeps (poll_oneoff on a clock) really sleeps.

Output: when the reader of our stdout or stderr goes away (EPIPE, as in
\`| head\`), output to it stops quietly and the guest runs on: the exit code is
still the guest's. Any other write error (ENOSPC, EIO) is reported once as
FTVM_ERR_OUTPUT_LOST, later output to that stream is dropped, and the exit
code is 1. What the guest's fd_write returns never depends on either.`;

const RUN_HELP = `usage: ftvm run <guest.wasm | sample name> [options] [-- guest args...]

Runs a WASI preview1 command guest unreplicated, metered. The guest's stdout
and stderr go to ours. It has no listening socket unless --tcplisten gives it one.

${EXIT_HELP}

options:
  --count                 print the final count to stderr as "count <N>"
  --deadline N            stop at the first check point whose count reaches N
  --no-meter              run without instrumentation (no count)
  --depth-limit N         call-depth budget in frame units (default ${DEFAULT_DEPTH_LIMIT})
  --memory-limit-pages N  memory.grow fails beyond N 64 KiB pages (default ${DEFAULT_MEMORY_LIMIT_PAGES})
  --canonicalize-nans     make NaN bit patterns identical on every CPU kind
${STDIN_HELP}
${DIR_HELP}
  --dir-writeback         when the guest ends, make each --dir's host directory hold what the guest
                          left there: files it created or changed are written, what it removed is
                          removed, anything else is left alone. It happens after the VM ended and
                          is not part of it (the guest never sees the host directory)
  --env K=V               environment variable for the guest (repeatable)
${TCPLISTEN_HELP}.
                          (It runs as ftvm record does, with the log discarded.) Not with
                          --no-meter or --deadline
  -h, --help              this text
`;

const RECORD_HELP = `usage: ftvm record <guest.wasm | sample name> --log FILE [options] [-- guest args...]

Runs a WASI command guest live and writes every nondeterministic input (stdin,
the preopened directories' files with their modification times, clock
readings, random bytes, NIC messages), every output, periodic state digests
and the way it ended (the full exit status) to FILE, each at the exact count
where it happened. The guest's output goes to ours; a summary goes to stderr.
A guest that sleeps really sleeps (and a message or timer tick wakes it); its
replay does not sleep.

${EXIT_HELP}

The log reaches FILE as the guest runs: an entry waits at most ${LOG_FLUSH_MS} ms in
memory (or until the next check point of a long computation), and everything
is written before the guest waits for input or sleeps. Ctrl-C (SIGINT) or
SIGTERM stops the guest at its next check point, writes what was logged and
ends with the signal's status (130, 143): the log then holds exactly what the
guest printed. After SIGKILL the log ends at its last write, at most about
${LOG_FLUSH_MS} ms behind. \`ftvm replay\` reproduces such a log up to its end, then
reports FTVM_ERR_LOG_INCOMPLETE (exit code 4).

options:
  --log FILE              where the log is written (required)
${STDIN_HELP}
                          (each read is logged at its count, so a replay needs no stdin)
${DIR_HELP}
                          The files are logged, so a replay needs no HOST.
  --dir-writeback         as for ftvm run
  --messages FILE         messages for the guest's virtual NIC, one JSON object per line:
                            {"conn": 1, "data": "text"}   (or "base64": "...", or "eof": true)
                          with an optional "count": N, they arrive at the first check point at or past N;
                          without one, when the guest waits for input (or sleeps). Counts must not decrease.
                          Messages the guest sends are printed to stdout as {"send": {"conn", "data"|"base64", "eof"}}.
                          The guest gets the NIC's listening socket at fd 3 (its preopens follow it).
  --listen                give the guest the listening socket without --messages
${TCPLISTEN_HELP}
                          Every connection's bytes are logged as NIC messages, so a replay needs no
                          client. Not with --messages
  --env K=V               environment variable for the guest (repeatable)
  --digest-every N        log a state digest at the first check point at or past every N counts
                          (default 10000000)
  --depth-limit N, --memory-limit-pages N, --canonicalize-nans   as for ftvm run
  -h, --help              this text
`;

const REPLAY_HELP = `usage: ftvm replay <guest.wasm | sample name> --log FILE [--until COUNT] [--memory OFFSET:LENGTH] [--out DIR] [--exit-status MODE]

Runs the guest again with the log as its only source of nondeterminism and
checks every host call, output and digest against it: stdin, the preopened
directories and the listening socket come from the log too, and the guest
never sleeps. It prints the guest's output again, then how it ended ("exit N"
with the full status, "trap MESSAGE" or "idle"), "count N" and "digest HEX" to
stderr.

Exit code: 0 when the log was reproduced (whatever the guest's own status
was; see --exit-status); 3 when the guest diverged from the log
(FTVM_ERR_DIVERGENCE, naming the log entry); 4 when the log ends before the
guest did, a recording that was stopped (FTVM_ERR_LOG_INCOMPLETE: every entry
it has was reproduced, and the replay stops at its end; a last frame cut off
by the end of the file is left out); 1 when the log is damaged (the bad frame
is named) or cannot be read; 2 for a wrong command line.

options:
  --log FILE              the log written by ftvm record (required)
  --until COUNT           stop at the first check point at or past COUNT and print the
                          count and digest there (time-travel debugging)
  --memory OFFSET:LENGTH  also print that range of guest memory, in hex, to stdout
  --out DIR               write the final tree of each preopened directory to DIR/0, DIR/1, ...
                          (the files the recorded guest left, byte for byte); DIR must be empty
                          or not exist
  --exit-status MODE      "replay" (default): the exit codes above. "guest": when the log was
                          reproduced to the guest's end, exit as \`ftvm run\` would have for the
                          recorded guest (its status 0..123, 125 for a trap, 1 for another
                          status); divergence, an incomplete or bad log still give 3, 4, 1
  -h, --help              this text
`;

const BENCH_HELP = `usage: ftvm bench meter|replay|ft|startup|isolation|soak|recovery [options]

isolation: on a local cluster of three hosts, whether one VM's heavy moments
disturb the others: small kv VMs under light load with their primaries on h1,
while h1 meters a large new module and restarts the backup of a 1 GiB
reactor; per phase, the longest silence of h1 the other hosts' failure
detectors saw, event-loop delays, failovers, the longest answer time, and the
reactor's primary pause (medians of --runs, default 3; --quick: one run, 256 MiB).

startup: how long ftvm takes to start: \`ftvm --help\`, \`ftvm vm --help\`,
\`ftvm vm ls\` (against --api URL --token T, or a one-host local cluster it
starts) and \`ftvm run fib -- 20\` (cached), side by side with \`node -e 0\`
in interleaved rounds: wall and CPU time, peak memory, ratios to node.
--baseline DIR also runs another checkout's entry (DIR/host/cli/ftvm.mjs).
Options: --json, --runs N (default 7), --warmup N (default 1).

replay: record and replay time of every compute guest and of the real
modules (flite, 21 MB, from npm) relative to its plain metered run, log bytes
per host call and per second (medians, interleaved runs). --no-real skips the
real modules.

ft: on a local cluster of real host processes, FT (a primary and a backup on
three hosts) against unreplicated (one host): kv throughput and a CPU-bound
guest's time and their ratios, output latency p50/p99 and what FT adds, log
bandwidth idle and under load, backup lag p50/p99, failover time from kill -9
to the new primary's first answer (p50/p99 over --trials), backup re-creation
time and primary pause for 16 and 64 MiB guests; the primary host's CPU per
request; and, when Debian's redis-benchmark is installed (make redis-tools),
the kv load through TCP: redis-benchmark against the kvresp sample on a
published port (SET throughput with -P 16, client-side GET latency p50/p99).
The live replica runs on core 0 and everything else on core 1
(--pin process, the default: its whole host process; --pin thread: only the
replica's worker thread; --pin none: no placement; a no-op with fewer than 2
cores). Options: --json, --quick, --pin MODE, --trials N (default 7),
--seconds N of load per throughput run (default 3).

soak: on a local cluster (--hosts 2 or 3, default 3), guests that flood
every bound a host keeps, for --seconds N (default 60; --guests deaf,spam,sender
picks some): a reactor that never reads its NIC sent 8 KiB messages as fast as
the hosts take them (client port and REST), a guest writing stdout in a tight
loop, and a reactor answering a client that never reads. Each host's RSS each
second (start, peak, end), held outputs, unacknowledged log, stalls, refused
sends (FTVM_ERR_BUSY), failovers.

recovery: on a local cluster of three hosts, the kv reactor (filled to 16 MiB)
serves 100 requests/s through FtClient for --minutes N (default 10; --quick:
1) while each host's RSS is read every 5 s: first, last and largest, and the
slope in MiB per minute from the first minute until a second kv VM of the
same memory starts, 1 minute before the end; then the backup of each is
restarted through REST (--trials N times each, default 3): the time to the
new backup's first ack, to its being in sync (lag <= 50 ms), and the
primary's pause, medians and the ratio old / young. Options: --json,
--quick, --minutes N, --trials N.

meter:

Measures what metering costs on every compute guest, side by side in one run:
unmetered, ftvm, the classic per-block global counter, ewasm's wasm-metering,
Asyncify on top of ftvm (blocking imports with ftvm.check, all imports, and
the input calls only: what a cluster runs a command guest as, so that its
snapshots can carry its stack, shown also over ftvm alone), and NaN
canonicalization; then the real modules installed from npm (flite, a 21 MB
speech synthesizer) unmetered, metered, and metered with Asyncify at the
input calls; then the pass itself: seconds and
CPU seconds per MB of code and peak memory, metering flite and esbuild (20 MB,
Go) in a fresh process, and whole \`ftvm run\`s of flite (fresh cache, cached)
against node:wasi's. --no-real, --guests and --quick leave the real modules out. Prints a table (or,
with --json, one JSON document).

options:
  --json         print the JSON report on stdout (progress goes to stderr)
  --runs N       measured runs per variant (default 7)
  --warmup N     warm-up runs per variant (default 2)
  --guests a,b   only these guests
  --quick        use each guest's small test workload (a smoke run, not a measurement)
  -h, --help     this text
`;

const DEMO_HELP = `usage: ftvm demo [meter]

ftvm demo: starts a local cluster of three hosts on loopback, runs the
key-value sample with its primary on h1 and its backup on h2 while a client on
h3 writes to it, kills h1 with kill -9, shows h2 taking over and a new backup
being made on h3, reads every acknowledged write back, and prints a summary:
the failover time measured, writes acknowledged, and writes lost (0, or the
demo fails with exit code 1).

ftvm demo meter: runs every compute sample metered (twice) and unmetered,
preempts an infinite loop at an exact count, stops a runaway recursion at the
deterministic depth limit, and prints a summary of the checks.
`;


/** The flags `run` and `record` share, as node:util declares them. */
const GUEST_FLAGS = {
  stdin: { type: 'string' },
  fs: { type: 'string' },
  dir: { type: 'string', multiple: true },
  'dir-writeback': { type: 'boolean' },
  out: { type: 'string' },
  env: { type: 'string', multiple: true },
  tcplisten: { type: 'string', multiple: true },
  'depth-limit': { type: 'string' },
  'memory-limit-pages': { type: 'string' },
  'canonicalize-nans': { type: 'boolean' },
} as const;

const GUEST_OPERAND = { min: 1, max: 1, missing: 'a guest (a .wasm file or a sample name) is required' };

/** `ftvm run`: a guest unreplicated, metered (main.ts cmdRun). */
export const RUN = command({
  name: 'run',
  usage: 'ftvm run <guest.wasm | sample name> [options] [-- guest args...]',
  help: RUN_HELP,
  options: { ...GUEST_FLAGS, count: { type: 'boolean' }, deadline: { type: 'string' }, 'no-meter': { type: 'boolean' } },
  operands: GUEST_OPERAND,
  guestArgs: true,
  rawValues: ['--env'],
});

/** `ftvm record`: a guest live, its log written (main.ts cmdRecord). */
export const RECORD = command({
  name: 'record',
  usage: 'ftvm record <guest.wasm | sample name> --log FILE [options] [-- guest args...]',
  help: RECORD_HELP,
  options: { ...GUEST_FLAGS, log: { type: 'string' }, messages: { type: 'string' }, listen: { type: 'boolean' }, 'digest-every': { type: 'string' } },
  operands: GUEST_OPERAND,
  guestArgs: true,
  rawValues: ['--env'],
});

/** `ftvm replay`: a guest again from its log (main.ts cmdReplay). */
export const REPLAY = command({
  name: 'replay',
  usage: 'ftvm replay <guest.wasm | sample name> --log FILE [--until COUNT] [--memory OFFSET:LENGTH] [--out DIR] [--exit-status MODE]',
  help: REPLAY_HELP,
  options: { log: { type: 'string' }, until: { type: 'string' }, memory: { type: 'string' }, out: { type: 'string' }, 'exit-status': { type: 'string' } },
  operands: GUEST_OPERAND,
});

/** The benchmarks `ftvm bench` runs. */
export const BENCHMARKS = ['meter', 'replay', 'ft', 'startup', 'isolation', 'soak', 'recovery'] as const;

/** `ftvm bench BENCHMARK`: one of BENCHMARKS, its flags shared (main.ts cmdBench). */
export const BENCH = command({
  name: 'bench',
  usage: 'ftvm bench meter|replay|ft|startup|isolation|soak|recovery [options]',
  help: BENCH_HELP,
  options: {
    json: { type: 'boolean' },
    runs: { type: 'string' },
    warmup: { type: 'string' },
    guests: { type: 'string' },
    quick: { type: 'boolean' },
    'no-real': { type: 'boolean' },
    trials: { type: 'string' },
    seconds: { type: 'string' },
    minutes: { type: 'string' },
    hosts: { type: 'string' },
    pin: { type: 'string' },
    baseline: { type: 'string' },
    api: { type: 'string' },
    token: { type: 'string' },
  },
  operands: { min: 1, max: 1, missing: `a benchmark is required: ${BENCHMARKS.join(', ')}` },
  rawValues: ['--token'],
});

/** `ftvm demo [meter]` (demo-cluster.ts, demo.ts). */
export const DEMO = command({
  name: 'demo',
  usage: 'ftvm demo [meter]',
  help: DEMO_HELP,
  options: {},
  operands: { min: 0, max: 1 },
});

// ---------------------------------------------------------------------------
// conformance

/** Default bound on one child command of `ftvm conformance`, in seconds (an ftvm command starts slowly on a loaded machine). */
export const DEFAULT_TIMEOUT_S = 300;
/** Default number of tests `ftvm conformance` runs at once. */
export const DEFAULT_JOBS = 2;

/** `ftvm conformance DIR...` (conformance.ts cmdConformance). */
export const CONFORMANCE = command({
  name: 'conformance',
  usage: 'ftvm conformance DIR... [--json] [--filter SUBSTR] [--no-node] [--jobs N] [--timeout S]',
  help: `usage: ftvm conformance DIR... [--json] [--filter SUBSTR] [--no-node] [--jobs N] [--timeout S]

Runs WASI preview1 tests laid out as WebAssembly/wasi-testsuite's prebuilt
tests (a directory of NAME.wasm + NAME.json: args, env, root, exit_code,
stdout, stderr) three ways, each in child processes: "ftvm run", "ftvm record"
then "ftvm replay" (the replay must reproduce the recording), and Node's own
node:wasi as a reference. Every test gets a fresh copy of its root directory,
preopened as "/" (--dir COPY::/), with *.cleanup files removed, and an empty
stdin. Prints a table of verdicts, the reason of each failure in a word
(timeout, crash, trap, exit code, stdout, stderr, divergence) and a summary.

DIR is a test directory, or any directory above some (the suite's top
directory finds tests/*/testsuite/wasm32-wasip1):
  tar xJf wasip1.tar.xz -C /tmp && ftvm conformance /tmp/wasi-testsuite

options:
  --json          print one JSON document on stdout instead of the table
                  (progress goes to stderr either way)
  --filter SUBSTR only the tests whose name (e.g. "rust/fd_readdir") contains SUBSTR
  --no-node       skip the node:wasi column
  --jobs N        tests run at once (default ${DEFAULT_JOBS})
  --timeout S     bound on each child command, in seconds (default ${DEFAULT_TIMEOUT_S})
  -h, --help      this text

exit code: 0 when every test passes under both ftvm ways, 1 otherwise, 2 on
bad usage (FTVM_ERR_USAGE: a wrong flag or value; a DIR that does not exist,
no tests found, a malformed NAME.json), 130 when stopped by SIGINT or SIGTERM
(children killed, scratch copies removed).
`,
  options: { json: { type: 'boolean' }, filter: { type: 'string' }, 'no-node': { type: 'boolean' }, jobs: { type: 'string' }, timeout: { type: 'string' } },
  operands: { min: 1, max: Infinity, missing: 'name at least one directory of tests' },
});

// ---------------------------------------------------------------------------
// host, cluster up

/** `ftvm host`: one host daemon (host-cmd.ts). */
export const HOST = command({
  name: 'host',
  usage: 'ftvm host --id ID --dir DIR | --etcd URL[,URL...] [options]',
  help: `usage: ftvm host --id ID --dir DIR | --etcd URL[,URL...] [options]

Runs one host of an ftvm cluster until SIGTERM or SIGINT. It runs replicas of
VMs on worker threads, streams each primary's log to its backup over the
authenticated log channel, releases outputs only once the backup has the log
up to them, watches its peers, goes live through the arbiter when a partner
dies, and re-creates lost backups from snapshots. It serves the REST API
(under /v1, bearer token; GET /v1/openapi.json documents it) and the client
port (whose clients prove they know the same token). When it is
listening it prints one JSON line to stdout:
{"ready": true, "id", "peer", "client", "api", "slot", "token"} (the token only
when it was generated). What it does goes to stderr. A wrong command line is
one line "ftvm host: FTVM_ERR_USAGE: message" (exit status 2); a failure to
start, one line "ftvm host: FTVM_ERR_X: message" (exit status 1).

options:
  --id ID               this host's name (letters, digits, _ . -)
  --secret S            the cluster secret (default: $FTVM_SECRET; required)
  --dir DIR             file arbiter and host registry on a directory every host reaches
                        (the embedded default for hosts on one machine)
  --etcd URLS           etcd arbiter and registry instead (comma-separated endpoints)
  --bind ADDR           address to listen on (default 127.0.0.1)
  --peer-port N         log channel port (default 0: any free port)
  --client-port N       client port (default 0: any free port)
  --advertise-peer A    the host:port other hosts dial for the log channel (default: where it listens)
  --public-address ADDR the IP address VMs' published ports listen on, where TCP clients reach
                        this host (default: the --bind address)
  --api-port N          REST API port (default 0: any free port)
  --token T             the API token: the REST API's bearer token, which clients of the client
                        port must prove they know too (default: $FTVM_TOKEN, else generated and
                        printed once)
  --heartbeat-ms N      heartbeat period (default 50)
  --fail-ms N           a peer silent this long is dead (default 600)
  --lag-target-ms N     backup lag above which the primary is slowed (default 100)
  --unacked-log-max N   bytes of log the backup has not acknowledged at which the primary
                        stalls until it has (default 33554432)
  --data-dir DIR        where the host keeps modules, under DIR/modules, and the cluster id
                        it found at each arbiter, in DIR/clusters.json: restarted while
                        that arbiter's state is gone, it refuses to start (default:
                        $FTVM_DATA_DIR/ID, else ~/.cache/ftvm/host-ID)
  --module-bytes-max N  the largest module it takes, uploaded or shipped (default 134217728)
  --module-store-mib N  MiB of modules it keeps on disk; the least recently used that no
                        VM runs are evicted (default 2048; at most 256 modules)
  --meter-jobs N        modules larger than 1 MiB metered at once, on worker threads (default 1)
  --digest-every N      a VM whose primary this host starts logs a digest of its state every N
                        counts, which its backup checks against its own (default 10000000)
  -h, --help            this text
`,
  options: {
    id: { type: 'string' },
    secret: { type: 'string' },
    dir: { type: 'string' },
    etcd: { type: 'string' },
    bind: { type: 'string' },
    'peer-port': { type: 'string' },
    'client-port': { type: 'string' },
    'advertise-peer': { type: 'string' },
    'public-address': { type: 'string' },
    'api-port': { type: 'string' },
    token: { type: 'string' },
    'heartbeat-ms': { type: 'string' },
    'fail-ms': { type: 'string' },
    'lag-target-ms': { type: 'string' },
    'unacked-log-max': { type: 'string' },
    'data-dir': { type: 'string' },
    'module-bytes-max': { type: 'string' },
    'module-store-mib': { type: 'string' },
    'meter-jobs': { type: 'string' },
    'digest-every': { type: 'string' },
  },
  operands: { min: 0, max: 0 },
  rawValues: ['--secret', '--token'],
});


/** `ftvm cluster up`: a local cluster on loopback (cluster-cmd.ts). */
export const CLUSTER_UP = command({
  name: 'cluster up',
  usage: 'ftvm cluster up [--hosts N] [--log-dir DIR] [--json]',
  help: `usage: ftvm cluster up [--hosts N] [--log-dir DIR] [--json]

Starts N ftvm hosts (default 3, at most ${CLUSTER_HOSTS_MAX}) on loopback, sharing a file arbiter in a
temporary directory, one cluster secret and one API token, and waits until
they are linked to each other. Each host gets its own loopback address for the
VMs' published ports (h1 127.0.0.1, h2 127.0.0.2, ...), so every host serves a
published port as hosts of a real cluster do. Then it prints each host's
process id, REST API URL, client port and that address, and the token (with
--json: one JSON line on stdout, {"token", "hosts": [{"id", "pid", "api",
"client", "public", "log"}]}), and runs until SIGINT or SIGTERM, when it stops
every host it started. A host that dies meanwhile (kill -9 PID, to try a
failover) is said on stderr; the others go on.

Each host's log (what it did, and the lines its guests write on stdout and
stderr) goes to DIR/<id>.log: --log-dir DIR, kept after the cluster stops;
by default a directory in the cluster's temporary directory, removed with it.

options:
  --hosts N       how many hosts (1..${CLUSTER_HOSTS_MAX}, default 3)
  --log-dir DIR   where each host's log goes
  --json          print the hosts and the token as one JSON line
  -h, --help      this text
`,
  options: { hosts: { type: 'string' }, json: { type: 'boolean' }, 'log-dir': { type: 'string' } },
  operands: { min: 0, max: 0 },
});

/** At most this many hosts in a chaos cluster (host/limits.ts). */
export { CHAOS_HOSTS_MAX };

/** `ftvm chaos`: a Jepsen-style campaign on a cluster in network namespaces (chaos/cli.ts). */
export const CHAOS = command({
  name: 'chaos',
  usage: 'ftvm chaos [--seed N] [--trials N] [--hosts N] [--arbiter file|etcd] [--trial-seconds S] [--nemesis LIST] [--tcp-processes N] [--log-dir DIR] [--json]',
  help: `usage: ftvm chaos [--seed N] [--trials N] [--hosts N] [--arbiter file|etcd] [--trial-seconds S] [--nemesis LIST] [--tcp-processes N] [--log-dir DIR] [--json]

Runs a Jepsen-style campaign: trials one after another, each on a fresh
cluster of ftvm hosts, every host in its own network namespace (veth-linked
to a bridge; the clients are in the root namespace), with a fresh arbiter.
Each trial starts the kv sample (clients on the hosts' client ports) and the
kvresp sample published on a TCP port of every host (plain TCP clients
speaking RESP, as redis-cli does), runs clients that record every operation
(invoke, ok, fail or unknown) for S seconds while faults drawn from the
trial's seed come and go, heals everything, waits for the cluster to settle,
reads every key back, and checks: the history is linearizable, no
acknowledged write was lost, every host's report of each VM is true (a VM
with no replica left is lost, never running), no host crashed (or said
FTVM_ERR_INVARIANT), no output was released under two generations, no
client got another's answer, no two hosts hold one slot, the replicas'
state digests agree where both logged them. It prints a line per trial and a summary (with
--json: one JSON document, {"trials", "nemeses", "violations", ...}); each
violation names its kind, its trial, the seed that replays the trial and
the command line that does. Trial i uses seed N+i: \`--seed N+i --trials 1\`
draws the same faults again.

Needs root (network namespaces): without it, FTVM_ERR_PRIVILEGE (exit
status 1). Everything it makes (namespaces, links, a bridge, processes, a
temporary directory) is removed at its end, on SIGINT too; a run that was
killed is swept by the next one. Exit status: 0 when no trial found a
violation, 1 otherwise (or when a trial could not be set up), 2 for a wrong
command line, 130 (SIGINT) or 143 (SIGTERM) when a signal stopped the
campaign, with violations or without: the summary then says "interrupted:
stopped after K of N trials" and lists the violations found (--json:
"interrupted": true, "trialsAsked": N).

nemeses (--nemesis, comma-separated; default all that fit the arbiter):
  kill             kill -9 of a host (the primary's, the backup's or another), restarted after
  pause            SIGSTOP of a host for 1.5 to 3 failure timeouts, then SIGCONT
  isolate-primary  the primary's host cut off (its link down)
  isolate-backup   the backup's host cut off
  split            the hosts in two groups that cannot reach each other
  one-way          the primary's host cannot send to the backup's, or the other way
  clock            a host restarted with its monotonic clock offset (a time namespace)
  etcd             the etcd arbiter killed and restarted (--arbiter etcd)
  arbiter-chmod    the file arbiter's directory made unreadable, then restored
  arbiter-remove   the file arbiter's directory removed, then restored
  groups: partition (isolate-primary, isolate-backup, split, one-way),
          arbiter (etcd, arbiter-chmod, arbiter-remove), all

options:
  --seed N           the campaign's seed, 0..2^48, with N+trials-1 within 2^48 too
                     (default: drawn below 2^31, and printed)
  --trials N         how many trials (default 10)
  --hosts N          hosts per cluster (2..${CHAOS_HOSTS_MAX}, default 3)
  --arbiter A        file (a directory, the default) or etcd (an etcd in the root namespace)
  --trial-seconds S  seconds of clients and faults per trial (default 10)
  --nemesis LIST     the faults to draw from (see above)
  --tcp-processes N  TCP clients of kvresp at once (0..${CHAOS_TCP_PROCESSES_MAX}, default 2; 0: no kvresp VM)
  --log-dir DIR      keep every host's log, as DIR/trial-I/<id>.log
  --json             print the report as one JSON document
  -h, --help         this text
`,
  options: {
    seed: { type: 'string' },
    trials: { type: 'string' },
    hosts: { type: 'string' },
    arbiter: { type: 'string' },
    'trial-seconds': { type: 'string' },
    nemesis: { type: 'string' },
    'tcp-processes': { type: 'string' },
    'log-dir': { type: 'string' },
    json: { type: 'boolean' },
  },
  operands: { min: 0, max: 0 },
});

// ---------------------------------------------------------------------------
// vm and its sub-commands

/** The flags every `ftvm vm` sub-command takes. */
const API_FLAGS = { api: { type: 'string' }, token: { type: 'string' } } as const;
const API_HELP = `  --api URL      a host's REST API (default $FTVM_API)
  --token T      its bearer token (default $FTVM_TOKEN)
  -h, --help     this text`;
const NAME_OPERAND = { min: 1, max: 1, missing: 'a VM name is required' };

/** A `ftvm vm` sub-command: `synopsis` (after "ftvm vm ") and `about` (what it does) make both its --help and its lines in `ftvm vm --help`. */
function vmCommand<const O extends OptionsSpec>(c: { sub: string; synopsis: string; about: string; options: O; operands: Command['operands']; guestArgs?: boolean; rawValues?: readonly string[] }): Command<O & typeof API_FLAGS> & { sub: string; synopsis: string; about: string } {
  return {
    ...c,
    name: `vm ${c.sub}`,
    usage: `ftvm vm ${c.synopsis}`,
    help: `usage: ftvm vm ${c.synopsis}\n\n${c.about}\n\nThe options of every ftvm vm command:\n${API_HELP}\n`,
    options: { ...c.options, ...API_FLAGS },
    rawValues: [...(c.rawValues ?? []), '--token'],
  };
}


const LOGS_ABOUT = `Prints the guest's console output as released so far: by default both
streams, its stdout on our stdout and its stderr on our stderr (as docker logs
does); --stdout or --stderr: only that stream, on our stdout (--all: both, the
default). --follow waits for more until the guest ends (long polls, riding out
a failover: offsets are the same on every replica, and 503s are retried for a
minute), then exits with its status: 0..123 as it is, 125 when it trapped (the
trap's message on stderr), 1 for any other status (named on stderr,
FTVM_ERR_EXIT_STATUS). Without --follow it exits 0. The host keeps the last
1 MiB of each stream; bytes dropped before they were read are counted on
stderr. Follow through a host other than the primary's when you mean to kill
that one.`;

const LOGS_FLAGS = { stdout: { type: 'boolean' }, stderr: { type: 'boolean' }, all: { type: 'boolean' }, follow: { type: 'boolean', short: 'f' } } as const;

/** `ftvm vm` sub-commands, in the order `ftvm vm --help` lists them. */
export const VM_COMMANDS = {
  start: vmCommand({
    sub: 'start',
    synopsis: 'start NAME (--sample S | --module FILE) [--arg A ...] [--env K=V ...]\n        [--stdin-file FILE] [--memory-mib N] [--cpu-percent P] [--publish PORT ...]\n        [-- guest args...]',
    about: `Starts a VM and prints the host's answer once it runs. A module larger than
1 MiB is uploaded first (PUT /v1/modules), unless the host has it, and started
by its SHA-256; a module is metered once, on its first start, and the command
says how long it has been metering. The guest's argv is NAME followed by the
--arg values and then the words after "--" (\`-- -psdur x\`); a value of --arg
or --env may start with "-" (--arg -e).

  --sample S           a sample guest the hosts have
  --module FILE        a .wasm file
  --arg A              one guest argument (repeatable; the words after "--" follow them)
  --env K=V            one environment variable (repeatable)
  --stdin-file FILE    the guest's stdin, read whole
  --memory-mib N       the most memory it may grow to, MiB
  --cpu-percent P      the share of one core it may use, percent
  --publish PORT       a TCP port every live host serves it on, at its public address
                       ("endpoints" in show): each connection is accepted on the guest's
                       listening socket (fd 3); 1..65535, repeatable, at most ${PUBLISH_PORTS_MAX}`,
    options: {
      sample: { type: 'string' },
      module: { type: 'string' },
      arg: { type: 'string', multiple: true },
      env: { type: 'string', multiple: true },
      'stdin-file': { type: 'string' },
      'memory-mib': { type: 'string' },
      'cpu-percent': { type: 'string' },
      publish: { type: 'string', multiple: true },
    },
    operands: NAME_OPERAND,
    guestArgs: true,
    rawValues: ['--arg', '--env'],
  }),
  ls: vmCommand({ sub: 'ls', synopsis: 'ls', about: 'Prints every VM the cluster has: state, placement, count, lag, log bytes, outputs released.', options: {}, operands: { min: 0, max: 0 } }),
  show: vmCommand({ sub: 'show', synopsis: 'show NAME', about: 'Prints one VM (with "end": its exit status or trap, once it ended).', options: {}, operands: NAME_OPERAND }),
  logs: vmCommand({ sub: 'logs', synopsis: 'logs NAME [--follow] [--stdout | --stderr | --all]', about: LOGS_ABOUT, options: LOGS_FLAGS, operands: NAME_OPERAND }),
  output: vmCommand({
    sub: 'output',
    synopsis: 'output NAME [--follow] [--stdout | --stderr | --all]',
    about: 'The older name of logs, kept: the same, except that without a stream flag it prints the\nguest\'s stdout only (as it always did). See ftvm vm logs --help.',
    options: LOGS_FLAGS,
    operands: NAME_OPERAND,
  }),
  kill: vmCommand({ sub: 'kill', synopsis: 'kill NAME', about: 'Stops both replicas.', options: {}, operands: NAME_OPERAND }),
  failover: vmCommand({ sub: 'failover', synopsis: 'failover NAME', about: 'Kills only the primary replica (a test failover): the backup takes over and a new backup is made.', options: {}, operands: NAME_OPERAND }),
  'restart-backup': vmCommand({ sub: 'restart-backup', synopsis: 'restart-backup NAME', about: 'Replaces the backup with a new one made from a snapshot of the primary.', options: {}, operands: NAME_OPERAND }),
  migrate: vmCommand({
    sub: 'migrate',
    synopsis: 'migrate NAME --to HOST [--backup]',
    about: `Moves a running VM's primary (or with --backup its backup) to host HOST with
nothing lost (POST /v1/vms/NAME/migrate), and prints what it did once done:
the generation, primary and backup after it, and in ms the whole migration,
the primary's pause to copy its memory for a new backup on HOST, and the
planned switch's pause. The backup moves by a new backup made on HOST from a
snapshot of the primary. The primary moves by a backup made on HOST first
(unless it runs there), then a planned switch: the primary pauses, its backup
acknowledges the whole log and goes live at once with the next generation, and
makes its own backup where the backup ran before (on the old primary's host
when the two swap). Clients see no lost or repeated answer. 409
FTVM_ERR_CONFLICT: HOST unknown, silent or running that replica already, a
migration, failover or new backup under way, or a guest whose state cannot be
snapshotted (reactors and command guests both can: see the README's
"Snapshots of a running guest"); 503 FTVM_ERR_UNAVAILABLE: a step did not
finish in time.`,
    options: { to: { type: 'string' }, backup: { type: 'boolean' } },
    operands: NAME_OPERAND,
  }),
  upload: vmCommand({ sub: 'upload', synopsis: 'upload FILE', about: 'Uploads a module (PUT /v1/modules) and prints its hash.', options: {}, operands: { min: 1, max: 1, missing: 'a module file is required' } }),
  modules: vmCommand({ sub: 'modules', synopsis: 'modules', about: 'Prints the modules the host keeps, its bounds, and the metering jobs under way.', options: {}, operands: { min: 0, max: 0 } }),
  send: vmCommand({
    sub: 'send',
    synopsis: 'send NAME TEXT [--conn C] [--wait-ms MS]',
    about: `Sends one message (on a new API connection, or C) and prints the answers that
arrive within --wait-ms (default 2000). A TEXT that starts with "-" goes after
"--": send kv -- -x.`,
    options: { conn: { type: 'string' }, 'wait-ms': { type: 'string' } },
    operands: { min: 2, max: 2, missing: 'a VM name and the message text are required' },
  }),
  tail: vmCommand({
    sub: 'tail',
    synopsis: 'tail NAME [--conn C] [--after SEQ] [--count N]',
    about: `Follows a connection's NIC outputs (Server-Sent Events), one JSON line each,
until N arrived or Ctrl-C; a new connection's id is printed to stderr, for send
--conn (a guest's stdout and stderr: see logs).`,
    options: { conn: { type: 'string' }, after: { type: 'string' }, count: { type: 'string' } },
    operands: NAME_OPERAND,
  }),
};

/** The name of a `ftvm vm` sub-command. */
export type VmSub = keyof typeof VM_COMMANDS;

/** `ftvm vm --help`: every sub-command's synopsis and what it does, from VM_COMMANDS. */
export const VM_HELP = `usage: ftvm vm <command> [--api URL] [--token T] ...

Talks to any host's REST API (--api, default $FTVM_API; --token, default
$FTVM_TOKEN). Prints JSON answers. A failure is one line on stderr,
"ftvm vm CMD: FTVM_ERR_X: message" (the API's code when it answered,
FTVM_ERR_UNAVAILABLE when it could not be reached), with exit status 2 for a
wrong command line (FTVM_ERR_USAGE) and 1 otherwise. \`ftvm vm CMD --help\`
says more of each command.

commands:
${Object.values(VM_COMMANDS)
  .map((c) => `  ${c.synopsis}\n${indent(c.about.split('\n\n')[0]!, 6)}`)
  .join('\n')}
`;

function indent(text: string, n: number): string {
  return text
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');
}

// ---------------------------------------------------------------------------
// ftvm --help

/** Every top-level command, in the order `ftvm --help` lists them. */
export const COMMANDS: readonly Pick<Command, 'name' | 'usage'>[] = [RUN, RECORD, REPLAY, BENCH, CONFORMANCE, HOST, CLUSTER_UP, CHAOS, { name: 'vm', usage: `ftvm vm ${Object.keys(VM_COMMANDS).join('|')} ... [--api URL] [--token T]` }, DEMO];

/** `ftvm --help`. */
export const USAGE = `ftvm: fault-tolerant virtual machines for WebAssembly guests

usage:
${COMMANDS.map((c) => `  ${c.usage}`).join('\n')}
  ftvm --help | <command> --help

Failures print one line, "ftvm: FTVM_ERR_<CODE>: message", on stderr; a wrong
command line names the command, "ftvm <command>: FTVM_ERR_USAGE: message", and
exits 2. Exit status of run/record/replay/bench/conformance: 0 success, 1
failure (a file, module or log refused, output lost), 2 wrong command line
(FTVM_ERR_USAGE), 3 replay diverged, 4 replay of an incomplete log, 124 guest
stopped at its deadline, 125 guest trapped; run and record otherwise exit with
the guest's status (0..123).
`;
