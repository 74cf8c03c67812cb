// The `ftvm` command line.

import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CliError, describeFailure, EXIT, fileError, onFile, usageError } from './errors.ts';
import { hostStderr, hostStdout, outputLost } from './host-output.ts';
import { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES, I64_MAX } from '../meter/abi.ts';
import type { MeterOptions } from '../meter/cache.ts';
import type { RunResult } from '../runtime/instance.ts';
import type { ReplayedRun, ReplayOptions } from '../runtime/recorder.ts';
import { progressReporter } from '../meter/progress.ts';
import { loadManifest, resolveGuest } from '../runtime/samples.ts';
import { MAX_MESSAGE_BYTES, type NicMessage } from '../runtime/nic.ts';
import { isListenAddr } from '../runtime/listen-addr.ts';

/** The longest an entry waits in memory before `ftvm record` writes it to the log file, ms. */
const LOG_FLUSH_MS = 100;

const USAGE = `ftvm: fault-tolerant virtual machines for WebAssembly guests

usage:
  ftvm run <guest.wasm | sample> [options] [-- guest args...]
  ftvm record <guest.wasm | sample> --log FILE [options] [-- guest args...]
  ftvm replay <guest.wasm | sample> --log FILE [--until COUNT] [--memory OFFSET:LENGTH] [--out DIR]
  ftvm bench meter|replay|ft|startup|isolation [--json] [--runs N] [--warmup N] [--guests a,b] [--quick]
  ftvm conformance DIR... [--json] [--filter SUBSTR] [--no-node] [--jobs N]
  ftvm host --id ID --dir DIR | --etcd URLS [options]
  ftvm cluster up [--hosts N] [--json]
  ftvm vm start|ls|show|kill|failover|send ... [--api URL] [--token T]
  ftvm demo [meter]
  ftvm --help | <command> --help

Failures print one line, "ftvm: FTVM_ERR_<CODE>: message", on stderr. Exit status of
run/record/replay/bench/conformance: 0 success, 1 failure (a file, module or log refused,
output lost), 2 wrong command line (FTVM_ERR_USAGE), 3 replay diverged, 4 replay of an
incomplete log, 124 guest stopped at its deadline, 125 guest trapped; run and record
otherwise exit with the guest's status (0..123).
`;

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

const REPLAY_HELP = `usage: ftvm replay <guest.wasm | sample name> --log FILE [options]

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

const BENCH_HELP = `usage: ftvm bench meter|replay|ft|startup|isolation [options]

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

meter:

Measures what metering costs on every compute guest, side by side in one run:
unmetered, ftvm, the classic per-block global counter, ewasm's wasm-metering,
Asyncify on top of ftvm (blocking imports only, and all), and NaN
canonicalization; then the real modules installed from npm (flite, a 21 MB
speech synthesizer) unmetered and metered; then the pass itself: seconds and
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

/**
 * Runs one `ftvm` command line (argv without the program name) and returns
 * the exit status (see errors.ts for the table). Every failure of `run`,
 * `record`, `replay`, `bench` and `conformance` is printed as one line
 * `ftvm: FTVM_ERR_X: message` on stderr, never as a stack trace; output that
 * could not be written (FTVM_ERR_OUTPUT_LOST) makes the status 1.
 */
export async function main(argv: string[]): Promise<number> {
  const status = await dispatch(argv);
  return outputLost() ? EXIT.failure : status;
}

async function dispatch(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'run':
        return await cmdRun(rest);
      case 'record':
        return await cmdRecord(rest);
      case 'replay':
        return await cmdReplay(rest);
      case 'bench':
        return await cmdBench(rest);
      case 'conformance': {
        const { cmdConformance } = await import('./conformance.ts');
        return await cmdConformance(rest);
      }
      case 'demo': {
        if (rest.includes('--help') || rest.includes('-h')) {
          hostStdout.write(DEMO_HELP);
          return 0;
        }
        const say = (l: string): void => void hostStdout.write(`${l}\n`);
        if (rest[0] === 'meter') {
          // demo.ts compiles guests synchronously: the pass must be loaded first (runtime/guest.ts).
          const { demo } = await import('./demo.ts');
          return demo(say);
        }
        if (rest.length) {
          throw usageError(`ftvm demo: unknown argument "${rest[0]}" (see ftvm demo --help)`);
        }
        const { clusterDemo } = await import('./demo-cluster.ts');
        return await clusterDemo(say);
      }
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        if (cmd === undefined) {
          hostStderr.write(USAGE);
          return EXIT.usage;
        }
        hostStdout.write(USAGE);
        return 0;
      default:
        throw usageError(`unknown command "${cmd}" (see ftvm --help)`);
    }
  } catch (err) {
    const { line, status } = describeFailure(err, cmd);
    hostStderr.write(`${line}\n`);
    return status;
  }
}

async function cmdRun(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash >= 0 ? argv.slice(0, dash) : argv;
  const guestArgs = dash >= 0 ? argv.slice(dash + 1) : [];
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      count: { type: 'boolean' },
      deadline: { type: 'string' },
      'no-meter': { type: 'boolean' },
      'depth-limit': { type: 'string' },
      'memory-limit-pages': { type: 'string' },
      'canonicalize-nans': { type: 'boolean' },
      stdin: { type: 'string' },
      fs: { type: 'string' },
      dir: { type: 'string', multiple: true },
      'dir-writeback': { type: 'boolean' },
      out: { type: 'string' },
      env: { type: 'string', multiple: true },
      tcplisten: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    hostStdout.write(RUN_HELP);
    return 0;
  }
  const tcplisten = tcpListenOption(values.tcplisten);
  if (tcplisten !== null && values['no-meter']) throw usageError('--tcplisten runs the guest metered (connections arrive as interrupts at check points): drop --no-meter');
  if (tcplisten !== null && values.deadline !== undefined) throw usageError('--deadline is not available with --tcplisten');
  if (positionals.length !== 1) throw usageError(`ftvm run takes one guest (a .wasm file or a sample name) before "--", got ${positionals.length}: see ftvm run --help`);
  const io = await import('./guest-io.ts');
  const dirs = io.parseDirs(values.dir, values.fs);
  if (values.out !== undefined) io.checkOut(values.out);
  const bytes = loadGuest(positionals[0]!);
  const meterOptions: MeterOptions = {
    variant: values['no-meter'] ? 'plain' : 'ftvm',
    depthLimit: values['depth-limit'] !== undefined ? positiveInt('--depth-limit', values['depth-limit']) : undefined,
    memoryLimitPages: values['memory-limit-pages'] !== undefined ? positiveInt('--memory-limit-pages', values['memory-limit-pages']) : undefined,
    canonicalizeNaNs: values['canonicalize-nans'] ?? false,
    onProgress: progressReporter(hostStderr),
  };
  const env = parseEnv(values.env);
  const deadline = values.deadline !== undefined ? BigInt(positiveInt('--deadline', values.deadline)) : undefined;
  const stdin = values.stdin !== undefined ? readStdinFile(values.stdin) : undefined;
  if (tcplisten !== null) {
    const meter = { depthLimit: meterOptions.depthLimit, memoryLimitPages: meterOptions.memoryLimitPages, canonicalizeNaNs: meterOptions.canonicalizeNaNs };
    return await runServing({
      bytes,
      args: [positionals[0]!, ...guestArgs],
      env,
      stdin,
      dirs,
      meter,
      tcplisten,
      logFd: null,
      logPath: '',
      summary: 'run',
      printCount: values.count ?? false,
      dirWriteback: values['dir-writeback'] ?? false,
      out: values.out,
    });
  }
  const { compileGuestAsync } = await import('../runtime/compile.ts');
  const { runModule } = await import('../runtime/instance.ts');
  const { module } = await compileGuestAsync(bytes, meterOptions);
  const initial = io.loadPreopens(dirs);
  // The VM works on copies: the trees read at start stay as they were, for write-back.
  const preopens = initial.map((p) => ({ name: p.name, fs: p.fs.clone() }));
  const result: RunResult = runModule(module, {
    args: [positionals[0]!, ...guestArgs],
    env,
    stdin,
    stdinRead: stdin ? undefined : (io.processStdin() ?? undefined),
    preopens,
    listen: false,
    onStdout: hostStdout.sink,
    onStderr: hostStderr.sink,
    deadline,
  });
  const status = io.exitStatus(result);
  if (status.message) hostStderr.write(`${status.message}\n`);
  if (values.count && result.count !== null) hostStderr.write(`count ${result.count}\n`);
  if (values['dir-writeback']) for (const l of io.writeBack(dirs, initial, preopens)) hostStderr.write(`${l}\n`);
  if (values.out !== undefined) io.writeOut(values.out, preopens);
  return status.code;
}

/** `--tcplisten ADDR` given at most once: the address, or null. FTVM_ERR_USAGE for a second one or a malformed ADDR. */
function tcpListenOption(list: string[] | undefined): string | null {
  if (!list?.length) return null;
  if (list.length > 1) throw usageError('--tcplisten may be given once (the guest has one listening socket, fd 3)');
  const addr = list[0]!;
  if (!isListenAddr(addr)) throw usageError(`--tcplisten expects HOST:PORT (PORT 0..65535, 0 for any free port), got "${addr}"`);
  return addr;
}

/**
 * Runs (`summary` 'run', the log discarded) or records a guest serving real
 * TCP connections on `tcplisten` (runtime/tcp-listen.ts): listens first,
 * prints "ftvm: listening on HOST:PORT" on stderr, then runs the guest on the
 * recording worker with a live connection source; when the guest ends, every
 * connection is ended after its pending output. Returns the exit status.
 * FTVM_ERR_TCPLISTEN when the address cannot be listened on.
 */
async function runServing(
  o: Omit<import('./record-worker.ts').RecordJob, 'module' | 'listen' | 'messages' | 'flushAfterMs' | 'tcp'> & { tcplisten: string },
): Promise<number> {
  const io = await import('./guest-io.ts');
  const { compileGuestAsync } = await import('../runtime/compile.ts');
  const { recordStart } = await import('../runtime/recorder.ts');
  const { VirtualFs } = await import('../runtime/wasi.ts');
  const { meterOptions } = await import('../runtime/replay-core.ts');
  const { recordInWorker } = await import('./record-worker.ts');
  const { TcpListenBridge } = await import('../runtime/tcp-listen.ts');
  const start = recordStart(o.bytes, {
    args: o.args,
    env: o.env,
    stdin: o.stdin,
    stdinRead: o.stdin ? undefined : (io.processStdin() ?? undefined),
    preopens: o.dirs.map((d) => ({ name: d.guest, fs: new VirtualFs() })),
    listen: true,
    digestEvery: o.digestEvery,
    meter: o.meter,
  });
  const { module } = await compileGuestAsync(o.bytes, { ...meterOptions(start), onProgress: progressReporter(hostStderr) });
  const bridge = new TcpListenBridge();
  const { tcplisten, ...job } = o;
  const bound = await bridge.listen(tcplisten).catch((e: unknown) => {
    bridge.destroy();
    throw e;
  });
  hostStderr.write(`ftvm: listening on ${bound}\n`);
  let status: number;
  try {
    status = await recordInWorker({ ...job, module, listen: true, messages: null, flushAfterMs: LOG_FLUSH_MS, tcp: bridge.wire() });
  } catch (e) {
    bridge.destroy();
    throw e;
  }
  await bridge.close();
  return status;
}

/** The guest's bytes: a path, or a sample's name. FTVM_ERR_GUEST_NOT_FOUND, or a file error naming the path. */
function loadGuest(nameOrPath: string): Uint8Array {
  let path: string;
  try {
    path = resolveGuest(nameOrPath);
  } catch {
    const samples = loadManifest().guests.map((g) => g.name);
    throw new CliError('FTVM_ERR_GUEST_NOT_FOUND', `${nameOrPath}: no such file or sample guest (samples: ${samples.join(', ')})`);
  }
  return onFile('guest', path, 'read', () => new Uint8Array(readFileSync(path)));
}

/** `--stdin FILE`, read whole; a file error names it. */
function readStdinFile(path: string): Uint8Array {
  return onFile('--stdin', path, 'read', () => new Uint8Array(readFileSync(path)));
}

async function cmdRecord(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const { values, positionals } = parseArgs({
    args: dash >= 0 ? argv.slice(0, dash) : argv,
    allowPositionals: true,
    options: {
      log: { type: 'string' },
      stdin: { type: 'string' },
      fs: { type: 'string' },
      dir: { type: 'string', multiple: true },
      'dir-writeback': { type: 'boolean' },
      out: { type: 'string' },
      messages: { type: 'string' },
      listen: { type: 'boolean' },
      tcplisten: { type: 'string', multiple: true },
      env: { type: 'string', multiple: true },
      'digest-every': { type: 'string' },
      'depth-limit': { type: 'string' },
      'memory-limit-pages': { type: 'string' },
      'canonicalize-nans': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    hostStdout.write(RECORD_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw usageError(`ftvm record takes one guest (a .wasm file or a sample name) before "--", got ${positionals.length}: see ftvm record --help`);
  if (!values.log) throw usageError('ftvm record needs --log FILE: see ftvm record --help');
  const logPath = values.log;
  const tcplisten = tcpListenOption(values.tcplisten);
  if (tcplisten !== null && values.messages !== undefined) throw usageError('--messages and --tcplisten cannot be combined: the guest has one listening socket');
  const io = await import('./guest-io.ts');
  const dirs = io.parseDirs(values.dir, values.fs);
  if (values.out !== undefined) io.checkOut(values.out);
  const bytes = loadGuest(positionals[0]!);
  const messages = values.messages !== undefined ? parseMessages(values.messages) : null;
  const env = parseEnv(values.env);
  const stdin = values.stdin !== undefined ? readStdinFile(values.stdin) : undefined;
  const { compileGuestAsync } = await import('../runtime/compile.ts');
  const { recordStart } = await import('../runtime/recorder.ts');
  const { VirtualFs } = await import('../runtime/wasi.ts');
  const { meterOptions } = await import('../runtime/replay-core.ts');
  const { recordInWorker } = await import('./record-worker.ts');
  const args = [positionals[0]!, ...(dash >= 0 ? argv.slice(dash + 1) : [])];
  const listen = values.listen === true || messages !== null;
  const digestEvery = values['digest-every'] !== undefined ? BigInt(positiveInt('--digest-every', values['digest-every']) || 1) : undefined;
  const meter = {
    depthLimit: values['depth-limit'] !== undefined ? positiveInt('--depth-limit', values['depth-limit']) : undefined,
    memoryLimitPages: values['memory-limit-pages'] !== undefined ? positiveInt('--memory-limit-pages', values['memory-limit-pages']) : undefined,
    canonicalizeNaNs: values['canonicalize-nans'] ?? false,
  };
  // The start entry decides how the guest is metered; the recording itself (record-worker.ts) logs the same one.
  const start = recordStart(bytes, { args, env, stdin, stdinRead: stdin ? undefined : (io.processStdin() ?? undefined), preopens: dirs.map((d) => ({ name: d.guest, fs: new VirtualFs() })), listen, digestEvery, meter });
  // The log file is made before the guest is compiled, so a path that cannot be written is refused first.
  const fd = onFile('--log', logPath, 'create', () => openSync(logPath, 'w'));
  try {
    if (tcplisten !== null) {
      const status = await runServing({
        bytes,
        args,
        env,
        stdin,
        dirs,
        digestEvery,
        meter,
        tcplisten,
        logFd: fd,
        logPath,
        summary: 'record',
        dirWriteback: values['dir-writeback'] ?? false,
        out: values.out,
      });
      return outputLost() ? EXIT.failure : status;
    }
    const { module } = await compileGuestAsync(bytes, { ...meterOptions(start), onProgress: progressReporter(hostStderr) });
    // What is logged reaches the file within LOG_FLUSH_MS (and before every wait), so a recording that is stopped leaves a log that replays up to there.
    const status = await recordInWorker({
      module,
      bytes,
      args,
      env,
      stdin,
      dirs,
      listen,
      digestEvery,
      meter,
      messages,
      logFd: fd,
      logPath,
      flushAfterMs: LOG_FLUSH_MS,
      dirWriteback: values['dir-writeback'] ?? false,
      out: values.out,
      summary: 'record',
    });
    return outputLost() ? EXIT.failure : status;
  } finally {
    closeSync(fd);
  }
}

async function cmdReplay(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      log: { type: 'string' },
      until: { type: 'string' },
      memory: { type: 'string' },
      out: { type: 'string' },
      'exit-status': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    hostStdout.write(REPLAY_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw usageError(`ftvm replay takes one guest (a .wasm file or a sample name), got ${positionals.length}: see ftvm replay --help`);
  if (!values.log) throw usageError('ftvm replay needs --log FILE: see ftvm replay --help');
  const logPath = values.log;
  const exitMode = values['exit-status'] ?? 'replay';
  if (exitMode !== 'replay' && exitMode !== 'guest') throw usageError(`--exit-status expects "replay" or "guest", got "${exitMode}"`);
  let range: [number, number] | null = null;
  if (values.memory !== undefined) {
    const m = /^(\d+):(\d+)$/.exec(values.memory);
    if (!m || !Number.isSafeInteger(Number(m[1])) || !Number.isSafeInteger(Number(m[2]))) throw usageError(`--memory expects OFFSET:LENGTH (non-negative integers), got "${values.memory}"`);
    range = [Number(m[1]), Number(m[2])];
  }
  const until = values.until !== undefined ? BigInt(positiveInt('--until', values.until)) : undefined;
  const io = await import('./guest-io.ts');
  if (values.out !== undefined) io.checkOut(values.out);
  const bytes = loadGuest(positionals[0]!);
  const { isComplete, readLogPrefix } = await import('../log/format.ts');
  const { replayModule, startOf } = await import('../runtime/recorder.ts');
  const { DivergenceError, meterOptions, moduleHash } = await import('../runtime/replay-core.ts');
  const { compileGuestAsync } = await import('../runtime/compile.ts');
  const file = onFile('--log', logPath, 'read', () => new Uint8Array(readFileSync(logPath)));
  const { entries, cutAt } = readLogPrefix(file);
  if (entries.length === 0) {
    const why = cutAt !== null ? `its first frame is cut off at byte ${cutAt}` : 'it has no entries';
    throw new CliError('FTVM_ERR_LOG_INCOMPLETE', `--log ${logPath}: nothing to replay: ${why} (a recording stopped before the guest started)`, EXIT.incomplete);
  }
  const start = startOf(entries);
  if (start.module !== moduleHash(bytes)) {
    throw new DivergenceError(entries[0]!, `module ${start.module}`, `module ${moduleHash(bytes)} (not the guest this log was recorded with)`);
  }
  const { module } = await compileGuestAsync(bytes, meterOptions(start));
  let memoryError: CliError | null = null;
  const incompleteError = (what: string): CliError => {
    const cut = cutAt !== null ? `; its last frame is cut off at byte ${cutAt}` : '';
    return new CliError('FTVM_ERR_LOG_INCOMPLETE', `--log ${logPath} ends before the guest did (a recording that was stopped${cut}): ${what}`, EXIT.incomplete);
  };
  const replay = (opts: ReplayOptions): ReplayedRun => {
    try {
      return replayModule(bytes, module, entries, opts);
    } catch (e) {
      // The log ends while the VM is being set up (its files, a whole stdin): the guest never ran.
      if (e instanceof DivergenceError && e.entry === null && !isComplete(entries)) throw incompleteError('it ends before the guest started');
      throw e;
    }
  };
  const r = replay({
    until,
    acceptIncomplete: true,
    onStdout: hostStdout.sink,
    onStderr: hostStderr.sink,
    onSend: io.printSend,
    inspect: (memory) => {
      if (!range) return;
      const [off, len] = range;
      if (off + len > memory.buffer.byteLength) {
        memoryError = new CliError('FTVM_ERR_MEMORY_RANGE', `--memory ${off}:${len} is outside the guest's ${memory.buffer.byteLength} bytes of memory`, EXIT.usage);
        return;
      }
      const view = Buffer.from(memory.buffer, off, len);
      for (let i = 0; i < len; i += 16) {
        hostStdout.write(`${(off + i).toString(16).padStart(8, '0')}  ${view.subarray(i, Math.min(i + 16, len)).toString('hex').replace(/(..)/g, '$1 ').trim()}\n`);
      }
    },
  });
  const logged = entries.filter((e) => e.kind !== 'progress').length;
  if (r.stoppedAtUntil) hostStderr.write(`stopped at count ${r.count} (--until ${values.until})\n`);
  else if (r.incomplete) hostStderr.write(`stopped at count ${r.count}: the end of the log\n`);
  else hostStderr.write(r.outcome === 'trap' ? `trap ${r.trap}\n` : r.outcome === 'exit' ? `exit ${r.exitCode}\n` : `${r.outcome}\n`);
  hostStderr.write(`count ${r.count}\ndigest ${r.digest}\nreplayed ${r.entriesReplayed} of ${logged} entries\n`);
  if (values.out !== undefined) for (const l of io.writeOut(values.out, r.preopens)) hostStderr.write(`${l}\n`);
  if (memoryError) throw memoryError;
  if (r.incomplete) throw incompleteError(`every logged entry was reproduced, up to count ${r.count}`);
  if (exitMode === 'guest' && !r.stoppedAtUntil) {
    // as `run` would have exited, with the line `run` prints for a status it cannot pass on
    const status = io.exitStatus(r);
    if (status.message && r.outcome === 'exit') hostStderr.write(`${status.message}\n`);
    return status.code;
  }
  return EXIT.ok;
}

/** The --messages file: JSON Lines of {conn, data | base64 | eof, count?}. */
function parseMessages(file: string): { count: bigint; msg: NicMessage }[] {
  const out: { count: bigint; msg: NicMessage }[] = [];
  const bad = (message: string): CliError => new CliError('FTVM_ERR_MESSAGES', message, EXIT.usage);
  onFile('--messages', file, 'read', () => readFileSync(file, 'utf8'))
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return;
      const where = `${file}:${i + 1}`;
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line) as Record<string, unknown>;
      } catch {
        throw bad(`${where}: not a JSON object`);
      }
      const conn = o.conn;
      if (typeof conn !== 'number' || !Number.isInteger(conn) || conn < 0 || conn > 0xffff_ffff) throw bad(`${where}: "conn" must be a u32`);
      const eof = o.eof === true;
      const bytes =
        typeof o.data === 'string' ? new Uint8Array(Buffer.from(o.data, 'utf8')) : typeof o.base64 === 'string' ? new Uint8Array(Buffer.from(o.base64, 'base64')) : new Uint8Array(0);
      if (eof ? bytes.length > 0 : bytes.length === 0) throw bad(`${where}: a message has 1..${MAX_MESSAGE_BYTES} bytes of "data" or "base64", or is {"eof": true}`);
      if (bytes.length > MAX_MESSAGE_BYTES) throw bad(`${where}: ${bytes.length} bytes is more than ${MAX_MESSAGE_BYTES}`);
      const count = o.count === undefined ? I64_MAX : typeof o.count === 'number' && Number.isSafeInteger(o.count) && o.count >= 0 ? BigInt(o.count) : null;
      if (count === null) throw bad(`${where}: "count" must be a non-negative integer`);
      if (out.length && count < out.at(-1)!.count) throw bad(`${where}: counts must not decrease`);
      out.push({ count, msg: { conn, bytes, eof } });
    });
  return out;
}

function parseEnv(list: string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of list ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw usageError(`--env expects K=V, got "${kv}"`);
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return env;
}

async function cmdBench(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what === '-h' || what === '--help' || what === undefined) {
    if (what === undefined) throw usageError('ftvm bench needs a benchmark: meter, replay, ft or startup (see ftvm bench --help)');
    hostStdout.write(BENCH_HELP);
    return 0;
  }
  if (what !== 'meter' && what !== 'replay' && what !== 'ft' && what !== 'startup' && what !== 'isolation') {
    throw usageError(`ftvm bench: unknown benchmark "${what}" (available: meter, replay, ft, startup)`);
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      json: { type: 'boolean' },
      runs: { type: 'string' },
      warmup: { type: 'string' },
      guests: { type: 'string' },
      quick: { type: 'boolean' },
      'no-real': { type: 'boolean' },
      trials: { type: 'string' },
      seconds: { type: 'string' },
      pin: { type: 'string' },
      baseline: { type: 'string' },
      api: { type: 'string' },
      token: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    hostStdout.write(BENCH_HELP);
    return 0;
  }
  if (what === 'startup') {
    const { benchStartup, formatStartupReport } = await import('../bench/startup.ts');
    const report = await benchStartup({
      runs: values.runs ? positiveInt('--runs', values.runs) : undefined,
      warmup: values.warmup ? positiveInt('--warmup', values.warmup) : undefined,
      baseline: values.baseline,
      api: values.api,
      token: values.token,
      log: (l) => hostStderr.write(`${l}\n`),
    });
    hostStdout.write((values.json ? JSON.stringify(report) : formatStartupReport(report)) + '\n');
    return 0;
  }
  if (what === 'isolation') {
    const { benchIsolation, formatIsolationReport } = await import('../bench/isolation.ts');
    const report = await benchIsolation({ runs: values.runs ? positiveInt('--runs', values.runs) : undefined, quick: values.quick, log: (l) => hostStderr.write(`${l}\n`) });
    hostStdout.write((values.json ? JSON.stringify(report) : formatIsolationReport(report)) + '\n');
    return 0;
  }
  if (what === 'ft') {
    const { benchFt, formatFtReport } = await import('../bench/ft.ts');
    if (values.pin !== undefined && !['thread', 'process', 'none'].includes(values.pin)) throw usageError(`--pin expects thread, process or none, got "${values.pin}"`);
    const report = await benchFt({
      pin: values.pin as 'thread' | 'process' | 'none' | undefined,
      trials: values.trials ? positiveInt('--trials', values.trials) : undefined,
      seconds: values.seconds ? positiveInt('--seconds', values.seconds) : undefined,
      quick: values.quick,
      log: (l) => hostStderr.write(`${l}\n`),
    });
    hostStdout.write((values.json ? JSON.stringify(report) : formatFtReport(report)) + '\n');
    return 0;
  }
  if (what === 'replay') {
    // It compiles guests synchronously: the pass must be loaded first (runtime/guest.ts).
    const { benchReplay, formatReplayReport } = await import('../bench/replay.ts');
    const report = benchReplay({
      runs: values.runs ? positiveInt('--runs', values.runs) : 5,
      warmup: values.warmup !== undefined ? positiveInt('--warmup', values.warmup) : 1,
      guests: values.guests?.split(','),
      quick: values.quick,
      real: !values['no-real'],
      log: (l) => hostStderr.write(`${l}\n`),
    });
    hostStdout.write((values.json ? JSON.stringify(report) : formatReplayReport(report)) + '\n');
    return 0;
  }
  const { benchMeter, formatMeterReport } = await import('../bench/meter.ts');
  const report = benchMeter({
    runs: values.runs ? positiveInt('--runs', values.runs) : 7,
    warmup: values.warmup !== undefined ? positiveInt('--warmup', values.warmup) : 2,
    guests: values.guests?.split(','),
    quick: values.quick,
    real: !values['no-real'],
    log: (l) => hostStderr.write(`${l}\n`),
  });
  if (values.json) hostStdout.write(JSON.stringify(report) + '\n');
  else hostStdout.write(formatMeterReport(report) + '\n');
  return 0;
}

/** A non-negative integer option value (decimal digits only); FTVM_ERR_USAGE otherwise. */
function positiveInt(flag: string, v: string): number {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw usageError(`${flag} expects a non-negative integer, got "${v}"`);
  return n;
}
