// The `ftvm` command line.

import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { CliError, describeFailure, EXIT, fileError, onFile, usageError } from './errors.ts';
import { BENCH, BENCHMARKS, DEMO, intOption, LOG_FLUSH_MS, parseCommand, RECORD, REPLAY, RUN, USAGE, usageLine } from './commands.ts';
import { hostStderr, hostStdout, outputLost } from './host-output.ts';
import { LOG_HEADER_BYTES } from '../limits.ts';
import { I64_MAX } from '../meter/abi.ts';
import type { MeterOptions } from '../meter/cache.ts';
import type { RunResult } from '../runtime/instance.ts';
import type { ReplayedRun, ReplayOptions } from '../runtime/replay/recorder.ts';
import { progressReporter } from '../meter/progress.ts';
import { loadManifest, resolveGuest } from '../runtime/samples.ts';
import { MAX_MESSAGE_BYTES, type NicMessage } from '../runtime/nic.ts';
import { isListenAddr } from '../runtime/listen-addr.ts';

/**
 * Runs one `ftvm` command line (argv without the program name) and returns
 * the exit status (see errors.ts for the table). Every failure of `run`,
 * `record`, `replay`, `bench` and `conformance` is printed as one line
 * `ftvm: FTVM_ERR_X: message` on stderr, never as a stack trace, a wrong
 * command line as `ftvm CMD: FTVM_ERR_USAGE: message` (commands.ts parses
 * every command line); output that could not be written
 * (FTVM_ERR_OUTPUT_LOST) makes the status 1.
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
      case 'chaos': {
        const { chaosMain } = await import('../chaos/cli.ts');
        return await chaosMain(rest);
      }
      case 'demo': {
        const { operands, help } = parseCommand(DEMO, rest);
        if (help) {
          hostStdout.write(DEMO.help);
          return 0;
        }
        const say = (l: string): void => void hostStdout.write(`${l}\n`);
        if (operands[0] === 'meter') {
          // demo.ts compiles guests synchronously: the pass must be loaded first (runtime/guest.ts).
          const { demo } = await import('./demo.ts');
          return demo(say);
        }
        if (operands.length) {
          throw usageError(`unknown demo "${operands[0]}": ftvm demo, or ftvm demo meter (see ftvm demo --help)`);
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
    // a wrong command line names the command (when it is one): "ftvm run: FTVM_ERR_USAGE: ..."
    const known = cmd === 'run' || cmd === 'record' || cmd === 'replay' || cmd === 'bench' || cmd === 'conformance' || cmd === 'demo';
    const { line, status } = known ? usageLine(cmd, err) : describeFailure(err);
    hostStderr.write(`${line}\n`);
    return status;
  }
}

async function cmdRun(argv: string[]): Promise<number> {
  const { values, operands: positionals, guestArgs, help } = parseCommand(RUN, argv);
  if (help) {
    hostStdout.write(RUN.help);
    return 0;
  }
  const tcplisten = tcpListenOption(values.tcplisten);
  if (tcplisten !== null && values['no-meter']) throw usageError('--tcplisten runs the guest metered (connections arrive as interrupts at check points): drop --no-meter');
  if (tcplisten !== null && values.deadline !== undefined) throw usageError('--deadline is not available with --tcplisten');
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
    collectOutput: false,
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
  const { recordStart } = await import('../runtime/replay/recorder.ts');
  const { VirtualFs } = await import('../runtime/wasi.ts');
  const { meterOptions } = await import('../runtime/replay/core.ts');
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
  const { values, operands: positionals, guestArgs, help } = parseCommand(RECORD, argv);
  if (help) {
    hostStdout.write(RECORD.help);
    return 0;
  }
  if (!values.log) throw usageError('it needs --log FILE, where the log is written (see ftvm record --help)');
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
  const { recordStart } = await import('../runtime/replay/recorder.ts');
  const { VirtualFs } = await import('../runtime/wasi.ts');
  const { meterOptions } = await import('../runtime/replay/core.ts');
  const { recordInWorker } = await import('./record-worker.ts');
  const args = [positionals[0]!, ...guestArgs];
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
  const { values, operands: positionals, help } = parseCommand(REPLAY, argv);
  if (help) {
    hostStdout.write(REPLAY.help);
    return 0;
  }
  if (!values.log) throw usageError('it needs --log FILE, the log written by ftvm record (see ftvm replay --help)');
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
  const { replayModule, startOf } = await import('../runtime/replay/recorder.ts');
  const { DivergenceError, meterOptions, moduleHash } = await import('../runtime/replay/core.ts');
  const { compileGuestAsync } = await import('../runtime/compile.ts');
  const file = onFile('--log', logPath, 'read', () => new Uint8Array(readFileSync(logPath)));
  const { entries, cutAt } = readLogPrefix(file);
  if (entries.length === 0) {
    const why =
      file.length < LOG_HEADER_BYTES
        ? `it ends inside its ${LOG_HEADER_BYTES}-byte header, after ${file.length} bytes`
        : cutAt !== null
          ? `its first frame is cut off at byte ${cutAt}`
          : 'it has no entries';
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
      if (((e instanceof DivergenceError && e.entry === null) || (e as { code?: string }).code === 'FTVM_ERR_LOG_INCOMPLETE') && !isComplete(entries)) throw incompleteError('it ends before the guest started');
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
  const { values, operands, help } = parseCommand(BENCH, argv);
  if (help) {
    hostStdout.write(BENCH.help);
    return 0;
  }
  const what = operands[0]!;
  if (!(BENCHMARKS as readonly string[]).includes(what)) throw usageError(`unknown benchmark "${what}" (available: ${BENCHMARKS.join(', ')})`);
  // every number is checked before a benchmark is loaded
  for (const flag of ['runs', 'warmup', 'trials', 'seconds', 'minutes'] as const) if (values[flag] !== undefined) positiveInt(`--${flag}`, values[flag]);
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
  if (what === 'soak') return benchSoakCmd(values);
  if (what === 'recovery') {
    const { benchRecovery, formatRecoveryReport } = await import('../bench/recovery.ts');
    const minutes = values.minutes === undefined ? undefined : positiveInt('--minutes', values.minutes);
    if (minutes === 0) throw usageError('--minutes expects at least 1');
    if (values.trials === '0') throw usageError('--trials expects at least 1');
    const report = await benchRecovery({ minutes, quick: values.quick, trials: values.trials ? positiveInt('--trials', values.trials) : undefined, log: (l) => hostStderr.write(`${l}\n`) });
    hostStdout.write((values.json ? JSON.stringify(report) : formatRecoveryReport(report)) + '\n');
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

/** `ftvm bench soak` (host/bench/soak.ts): --seconds N (default 60), --hosts 2|3 (default 3), --json. */
async function benchSoakCmd(values: { seconds?: string; hosts?: string; guests?: string; json?: boolean }): Promise<number> {
  const { benchSoak, formatSoakReport, SOAK_GUESTS } = await import('../bench/soak.ts');
  const guests = values.guests?.split(',');
  for (const g of guests ?? []) if (!(SOAK_GUESTS as readonly string[]).includes(g)) throw usageError(`--guests expects some of ${SOAK_GUESTS.join(',')}, got "${g}"`);
  const hosts = values.hosts === undefined ? 3 : positiveInt('--hosts', values.hosts);
  if (hosts < 2 || hosts > 3) throw usageError(`--hosts expects 2 or 3, got "${values.hosts}"`);
  const report = await benchSoak({ seconds: values.seconds ? positiveInt('--seconds', values.seconds) : 60, hosts, guests: guests as ('deaf' | 'spam' | 'sender')[] | undefined, log: (l) => hostStderr.write(`${l}\n`) });
  hostStdout.write((values.json ? JSON.stringify(report) : formatSoakReport(report)) + '\n');
  return 0;
}

/** A non-negative integer option value (decimal digits only); FTVM_ERR_USAGE otherwise. */
function positiveInt(flag: string, v: string): number {
  return intOption(flag, v)!;
}
