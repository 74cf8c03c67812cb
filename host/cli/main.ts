// The `ftvm` command line.

import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES, I64_MAX, progressReporter, type MeterOptions } from '../meter/index.ts';
import { runGuest, type RunResult } from '../runtime/guest.ts';
import { resolveGuest } from '../runtime/samples.ts';
import { DivergenceError, recordGuest, replayGuest } from '../runtime/record.ts';
import { LogWriter } from '../log/writer.ts';
import { VirtualFs } from '../runtime/wasi.ts';
import { readLog } from '../log/format.ts';
import { LiveTimer, MergedSources, ScriptedMessages } from '../runtime/events.ts';
import { MAX_MESSAGE_BYTES, type NicMessage } from '../runtime/nic.ts';

const USAGE = `ftvm: fault-tolerant virtual machines for WebAssembly guests

usage:
  ftvm run <guest.wasm | sample> [options] [-- guest args...]
  ftvm record <guest.wasm | sample> --log FILE [--stdin FILE] [--digest-every N] [-- guest args...]
  ftvm replay <guest.wasm | sample> --log FILE [--until COUNT] [--memory OFFSET:LENGTH]
  ftvm bench meter|replay|ft [--json] [--runs N] [--warmup N] [--guests a,b] [--quick]
  ftvm host --id ID --dir DIR | --etcd URLS [options]
  ftvm cluster up [--hosts N] [--json]
  ftvm vm start|ls|show|kill|failover|send ... [--api URL] [--token T]
  ftvm demo [meter]
  ftvm --help | <command> --help
`;

const RUN_HELP = `usage: ftvm run <guest.wasm | sample name> [options] [-- guest args...]

Runs a WASI preview1 command guest unreplicated, metered. The guest's stdout
and stderr go to ours; our exit code is the guest's (125 for a trap, 124 when
stopped at the deadline).

options:
  --count                 print the final count to stderr as "count <N>"
  --deadline N            stop at the first check point whose count reaches N
  --no-meter              run without instrumentation (no count)
  --depth-limit N         call-depth budget in frame units (default ${DEFAULT_DEPTH_LIMIT})
  --memory-limit-pages N  memory.grow fails beyond N 64 KiB pages (default ${DEFAULT_MEMORY_LIMIT_PAGES})
  --canonicalize-nans     make NaN bit patterns identical on every CPU kind
  --stdin FILE            bytes the guest reads on fd 0
  --fs DIR                copy DIR into the guest's in-memory filesystem (preopened as "/")
  --env K=V               environment variable for the guest (repeatable)
  -h, --help              this text
`;

const RECORD_HELP = `usage: ftvm record <guest.wasm | sample name> --log FILE [options] [-- guest args...]

Runs a WASI command guest live and writes every nondeterministic input (stdin,
clock readings, random bytes), every output, periodic state digests and the
way it ended to FILE, each at the exact count where it happened. The guest's
output goes to ours; a summary goes to stderr.

options:
  --log FILE              where the log is written (required)
  --stdin FILE            bytes the guest reads on fd 0
  --fs DIR                copy DIR into the guest's in-memory filesystem (logged, so a replay needs no DIR)
  --messages FILE         messages for the guest's virtual NIC, one JSON object per line:
                            {"conn": 1, "data": "text"}   (or "base64": "...", or "eof": true)
                          with an optional "count": N, they arrive at the first check point at or past N;
                          without one, when the guest waits for input. Counts must not decrease.
                          Messages the guest sends are printed to stdout as {"send": {"conn", "data"|"base64", "eof"}}.
  --env K=V               environment variable for the guest (repeatable)
  --digest-every N        log a state digest at the first check point at or past every N counts
                          (default 10000000)
  --depth-limit N, --memory-limit-pages N, --canonicalize-nans   as for ftvm run
  -h, --help              this text
`;

const REPLAY_HELP = `usage: ftvm replay <guest.wasm | sample name> --log FILE [options]

Runs the guest again with the log as its only source of nondeterminism and
checks every host call, output and digest against it. It prints the guest's
output again, then "count N" and "digest HEX" to stderr. A mismatch stops the
replay with FTVM_ERR_DIVERGENCE naming the log entry (exit code 3); a damaged
log stops it with the frame that is bad.

options:
  --log FILE              the log written by ftvm record (required)
  --until COUNT           stop at the first check point at or past COUNT and print the
                          count and digest there (time-travel debugging)
  --memory OFFSET:LENGTH  also print that range of guest memory, in hex, to stdout
  -h, --help              this text
`;

const BENCH_HELP = `usage: ftvm bench meter|replay|ft [options]

replay: record and replay time of every compute guest and of the real
modules (flite, 21 MB, from npm) relative to its plain metered run, log bytes
per host call and per second (medians, interleaved runs). --no-real skips the
real modules.

ft: on a local cluster of real host processes, FT (a primary and a backup on
three hosts) against unreplicated (one host): kv throughput and a CPU-bound
guest's time and their ratios, output latency p50/p99 and what FT adds, log
bandwidth idle and under load, backup lag p50/p99, failover time from kill -9
to the new primary's first answer (p50/p99 over --trials), backup re-creation
time and primary pause for 16 and 64 MiB guests. Options: --json, --quick,
--trials N (default 7), --seconds N of load per throughput run (default 3).

meter:

Measures what metering costs on every compute guest, side by side in one run:
unmetered, ftvm, the classic per-block global counter, ewasm's wasm-metering,
Asyncify on top of ftvm (blocking imports only, and all), and NaN
canonicalization; then the real modules installed from npm (flite, a 21 MB
speech synthesizer) unmetered and metered; then the pass itself: seconds and
CPU seconds per MB of code and peak memory, metering flite and esbuild (20 MB,
Go) in a fresh process, and whole \`ftvm run\`s of flite (fresh cache, cached)
against node:wasi's. --no-real skips the real modules. Prints a table (or,
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

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'run':
        return cmdRun(rest);
      case 'record':
        return cmdRecord(rest);
      case 'replay':
        return cmdReplay(rest);
      case 'bench':
        return await cmdBench(rest);
      case 'demo': {
        if (rest.includes('--help') || rest.includes('-h')) {
          process.stdout.write(DEMO_HELP);
          return 0;
        }
        const say = (l: string): void => void process.stdout.write(`${l}\n`);
        if (rest[0] === 'meter') {
          const { demo } = await import('./demo.ts');
          return demo(say);
        }
        if (rest.length) {
          process.stderr.write(`ftvm demo: unknown argument "${rest[0]}"\n\n${DEMO_HELP}`);
          return 2;
        }
        const { clusterDemo } = await import('./demo-cluster.ts');
        return await clusterDemo(say);
      }
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        process.stderr.write(`ftvm: unknown command "${cmd}"\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    const e = err as Error & { code?: string };
    process.stderr.write(`ftvm: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
    return 1;
  }
}

function cmdRun(argv: string[]): number {
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
      env: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(RUN_HELP);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(RUN_HELP);
    return 2;
  }
  const bytes = loadGuest(positionals[0]!);
  const meterOptions: MeterOptions = {
    variant: values['no-meter'] ? 'plain' : 'ftvm',
    depthLimit: values['depth-limit'] ? positiveInt('--depth-limit', values['depth-limit']) : undefined,
    memoryLimitPages: values['memory-limit-pages']
      ? positiveInt('--memory-limit-pages', values['memory-limit-pages'])
      : undefined,
    canonicalizeNaNs: values['canonicalize-nans'] ?? false,
    onProgress: progressReporter(process.stderr),
  };
  const env = parseEnv(values.env);
  const result: RunResult = runGuest(bytes, {
    args: [positionals[0]!, ...guestArgs],
    env,
    stdin: values.stdin ? new Uint8Array(readFileSync(values.stdin)) : undefined,
    fs: values.fs ? VirtualFs.fromHostDir(values.fs) : undefined,
    onStdout: (b) => process.stdout.write(b),
    onStderr: (b) => process.stderr.write(b),
    meter: meterOptions,
    deadline: values.deadline !== undefined ? BigInt(positiveInt('--deadline', values.deadline)) : undefined,
  });
  if (result.outcome === 'trap') process.stderr.write(`ftvm: guest trapped: ${result.trap}\n`);
  if (result.outcome === 'deadline') process.stderr.write(`ftvm: guest stopped at its deadline\n`);
  if (values.count && result.count !== null) process.stderr.write(`count ${result.count}\n`);
  if (result.outcome === 'trap') return 125;
  if (result.outcome === 'deadline') return 124;
  return result.exitCode ?? 0;
}

function loadGuest(nameOrPath: string): Uint8Array {
  return new Uint8Array(readFileSync(resolveGuest(nameOrPath)));
}

function cmdRecord(argv: string[]): number {
  const dash = argv.indexOf('--');
  const { values, positionals } = parseArgs({
    args: dash >= 0 ? argv.slice(0, dash) : argv,
    allowPositionals: true,
    options: {
      log: { type: 'string' },
      stdin: { type: 'string' },
      fs: { type: 'string' },
      messages: { type: 'string' },
      env: { type: 'string', multiple: true },
      'digest-every': { type: 'string' },
      'depth-limit': { type: 'string' },
      'memory-limit-pages': { type: 'string' },
      'canonicalize-nans': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(RECORD_HELP);
    return 0;
  }
  if (positionals.length !== 1 || !values.log) {
    process.stderr.write(RECORD_HELP);
    return 2;
  }
  const bytes = loadGuest(positionals[0]!);
  const fd = openSync(values.log, 'w');
  const log = new LogWriter((b) => writeSync(fd, b));
  try {
    const r = recordGuest(bytes, log, {
      args: [positionals[0]!, ...(dash >= 0 ? argv.slice(dash + 1) : [])],
      env: parseEnv(values.env),
      stdin: values.stdin ? new Uint8Array(readFileSync(values.stdin)) : undefined,
      fs: values.fs ? VirtualFs.fromHostDir(values.fs) : undefined,
      digestEvery: values['digest-every'] ? BigInt(positiveInt('--digest-every', values['digest-every']) || 1) : undefined,
      meter: {
        depthLimit: values['depth-limit'] ? positiveInt('--depth-limit', values['depth-limit']) : undefined,
        memoryLimitPages: values['memory-limit-pages'] ? positiveInt('--memory-limit-pages', values['memory-limit-pages']) : undefined,
        canonicalizeNaNs: values['canonicalize-nans'] ?? false,
      },
      onStdout: (b) => process.stdout.write(b),
      onStderr: (b) => process.stderr.write(b),
      interrupts: values.messages ? new MergedSources(new ScriptedMessages(parseMessages(values.messages)), new LiveTimer()) : undefined,
      onSend: printSend,
    });
    if (r.outcome === 'trap') process.stderr.write(`ftvm: guest trapped: ${r.trap}\n`);
    if (r.outcome === 'idle') process.stderr.write('ftvm: the guest waits for input and no more will come\n');
    process.stderr.write(`count ${r.count}\ndigest ${r.digest}\nlog ${values.log}: ${log.entries} entries, ${log.bytesWritten} bytes\n`);
    return r.outcome === 'trap' ? 125 : (r.exitCode ?? 0);
  } finally {
    closeSync(fd);
  }
}

function cmdReplay(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      log: { type: 'string' },
      until: { type: 'string' },
      memory: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(REPLAY_HELP);
    return 0;
  }
  if (positionals.length !== 1 || !values.log) {
    process.stderr.write(REPLAY_HELP);
    return 2;
  }
  let range: [number, number] | null = null;
  if (values.memory) {
    const m = /^(\d+):(\d+)$/.exec(values.memory);
    if (!m) throw new Error(`--memory expects OFFSET:LENGTH, got "${values.memory}"`);
    range = [Number(m[1]), Number(m[2])];
  }
  const bytes = loadGuest(positionals[0]!);
  const entries = readLog(new Uint8Array(readFileSync(values.log)));
  try {
    const r = replayGuest(bytes, entries, {
      until: values.until !== undefined ? BigInt(positiveInt('--until', values.until)) : undefined,
      onStdout: (b) => process.stdout.write(b),
      onStderr: (b) => process.stderr.write(b),
      onSend: printSend,
      inspect: (memory) => {
        if (!range) return;
        const [off, len] = range;
        if (off + len > memory.buffer.byteLength) throw new Error(`--memory ${off}:${len} is outside the guest's ${memory.buffer.byteLength} bytes`);
        const view = Buffer.from(memory.buffer, off, len);
        for (let i = 0; i < len; i += 16) {
          process.stdout.write(`${(off + i).toString(16).padStart(8, '0')}  ${view.subarray(i, Math.min(i + 16, len)).toString('hex').replace(/(..)/g, '$1 ').trim()}\n`);
        }
      },
    });
    if (r.stoppedAtUntil) process.stderr.write(`stopped at count ${r.count} (--until ${values.until})\n`);
    process.stderr.write(`count ${r.count}\ndigest ${r.digest}\nreplayed ${r.entriesReplayed} of ${entries.length} entries\n`);
    return 0;
  } catch (err) {
    if (err instanceof DivergenceError) {
      process.stderr.write(`ftvm: ${err.code}: ${err.message}\n`);
      return 3;
    }
    throw err;
  }
}

/** A message as one JSON line: text when it is valid UTF-8 without control characters other than newline and tab, else base64. */
function printSend(m: NicMessage): void {
  const text = Buffer.from(m.bytes).toString('utf8');
  const plain = Buffer.from(text, 'utf8').equals(Buffer.from(m.bytes)) && !/[\u0000-\u0008\u000b-\u001f]/.test(text);
  const body = m.eof ? { conn: m.conn, eof: true } : plain ? { conn: m.conn, data: text } : { conn: m.conn, base64: Buffer.from(m.bytes).toString('base64') };
  process.stdout.write(`${JSON.stringify({ send: body })}\n`);
}

/** The --messages file: JSON Lines of {conn, data | base64 | eof, count?}. */
function parseMessages(file: string): { count: bigint; msg: NicMessage }[] {
  const out: { count: bigint; msg: NicMessage }[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return;
      const where = `${file}:${i + 1}`;
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line) as Record<string, unknown>;
      } catch {
        throw new Error(`${where}: not a JSON object`);
      }
      const conn = o.conn;
      if (typeof conn !== 'number' || !Number.isInteger(conn) || conn < 0 || conn > 0xffff_ffff) throw new Error(`${where}: "conn" must be a u32`);
      const eof = o.eof === true;
      const bytes =
        typeof o.data === 'string' ? new Uint8Array(Buffer.from(o.data, 'utf8')) : typeof o.base64 === 'string' ? new Uint8Array(Buffer.from(o.base64, 'base64')) : new Uint8Array(0);
      if (eof ? bytes.length > 0 : bytes.length === 0) throw new Error(`${where}: a message has 1..${MAX_MESSAGE_BYTES} bytes of "data" or "base64", or is {"eof": true}`);
      if (bytes.length > MAX_MESSAGE_BYTES) throw new Error(`${where}: ${bytes.length} bytes is more than ${MAX_MESSAGE_BYTES}`);
      const count = o.count === undefined ? I64_MAX : typeof o.count === 'number' && Number.isSafeInteger(o.count) && o.count >= 0 ? BigInt(o.count) : null;
      if (count === null) throw new Error(`${where}: "count" must be a non-negative integer`);
      if (out.length && count < out.at(-1)!.count) throw new Error(`${where}: counts must not decrease`);
      out.push({ count, msg: { conn, bytes, eof } });
    });
  return out;
}

function parseEnv(list: string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of list ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--env expects K=V, got "${kv}"`);
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return env;
}

async function cmdBench(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what === '-h' || what === '--help' || what === undefined) {
    process.stdout.write(BENCH_HELP);
    return what === undefined ? 2 : 0;
  }
  if (what !== 'meter' && what !== 'replay' && what !== 'ft') {
    process.stderr.write(`ftvm bench: unknown benchmark "${what}" (available: meter, replay, ft)\n`);
    return 2;
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
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  if (what === 'ft') {
    const { benchFt, formatFtReport } = await import('../bench/ft.ts');
    const report = await benchFt({
      trials: values.trials ? positiveInt('--trials', values.trials) : undefined,
      seconds: values.seconds ? positiveInt('--seconds', values.seconds) : undefined,
      quick: values.quick,
      log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stdout.write((values.json ? JSON.stringify(report) : formatFtReport(report)) + '\n');
    return 0;
  }
  if (what === 'replay') {
    const { benchReplay, formatReplayReport } = await import('../bench/replay.ts');
    const report = benchReplay({
      runs: values.runs ? positiveInt('--runs', values.runs) : 5,
      warmup: values.warmup ? Number(values.warmup) : 1,
      guests: values.guests?.split(','),
      quick: values.quick,
      real: !values['no-real'],
      log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stdout.write((values.json ? JSON.stringify(report) : formatReplayReport(report)) + '\n');
    return 0;
  }
  const { benchMeter, formatMeterReport } = await import('../bench/meter.ts');
  const report = benchMeter({
    runs: values.runs ? positiveInt('--runs', values.runs) : 7,
    warmup: values.warmup ? Number(values.warmup) : 2,
    guests: values.guests?.split(','),
    quick: values.quick,
    real: !values['no-real'],
    log: (l) => process.stderr.write(`${l}\n`),
  });
  if (values.json) process.stdout.write(JSON.stringify(report) + '\n');
  else process.stdout.write(formatMeterReport(report) + '\n');
  return 0;
}

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${flag} expects a non-negative integer, got "${v}"`);
  return n;
}
