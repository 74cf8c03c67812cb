// Record and replay of a WASI command guest, given an already compiled
// (metered) module. Nothing here loads binaryen: the command line compiles
// through compileGuestAsync (compile.ts), which loads the pass only when the
// metering cache does not have the module. record.ts wraps these two for
// callers that hand over the guest's bytes only.
//
// Recording runs the guest live and logs, at the exact count where each
// happens: what it was started with (arguments, environment, the names of its
// preopened directories, whether it has the listening socket, how stdin is
// given), the files of each preopened directory, its stdin (whole at start,
// or as it reads it), every clock reading, every random byte, every byte it
// writes, every interrupt, a digest of its state at fixed count intervals,
// and how it ended (the full u32 exit status). Replay runs the same guest
// with the log as its only source of nondeterminism: each host call takes the
// next entry after checking its kind and count, outputs and digests are
// compared, and any mismatch stops the replay with a DivergenceError that
// names the entry. Replay never reads a real clock or random source, and
// never sleeps: a timed wait (poll_oneoff with a clock) that the recording
// ended without an interrupt ends at once, the logged clock readings keep
// what the guest sees exact.
//
// A recording that is stopped before the guest ends (a signal, a crash)
// leaves a log of what was written so far: the recorder ends the current
// frame before every blocking wait (stdin, sleep, waiting for a message) and,
// when the LogWriter has a time bound, visits a check point at least every
// FLUSH_POLL_COUNTS counts to let it flush, logging a `progress` entry at
// that count so the log says how far the guest got. Replaying such a log
// (no exit entry, or none of the entries that follow it) reproduces the guest
// up to the log's end and reports `incomplete`.

import { I64_MAX, DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES } from '../../meter/abi.ts';
import type { MeterOptions } from '../../meter/cache.ts';
import type { EntryPayloads, LogEntry } from '../../log/format.ts';
import type { LogWriter } from '../../log/writer.ts';
import { runModule, type GuestContext, type Preopen, type RunResult } from '../instance.ts';
import { liveNondeterminism, VirtualFs, type Nondeterminism } from '../wasi.ts';
import { LiveTimer, sleepNs, type Interrupt, type InterruptSource, type Place } from '../events.ts';
import { VirtualNic, type NicMessage } from '../nic.ts';
import { CHUNK_BYTES, chunksOf, DivergenceError, interruptOf, interruptPayload, LogIncompleteError, moduleHash, stateDigest } from './core.ts';
import { DigestSchedule } from './digests.ts';
import { describeEntry, Feed, placeOf } from './feed.ts';
import { logPreamble, preopenTrees, readPreamble, type Preamble } from './preamble.ts';

export const DEFAULT_DIGEST_EVERY = 10_000_000n;
/** While recording, a check point is visited at least every this many counts, so the log's time bound holds during long computations. */
const FLUSH_POLL_COUNTS = 1_000_000n;

export interface RecordOptions {
  args: string[];
  env?: Record<string, string>;
  /** stdin given whole: logged at start (mode 'whole'); ignored when `stdinRead` is given */
  stdin?: Uint8Array;
  /**
   * Streamed stdin (mode 'stream'): the live source, called with at most
   * CHUNK_BYTES - 1 and the guest's request (> 0); returns at most that many
   * bytes, empty at end of file. Each read is logged as one `input` entry at
   * the count of the read.
   */
  stdinRead?: (maxBytes: number) => Uint8Array;
  /** at most one digest per this many counts */
  digestEvery?: bigint;
  /** the largest share of the run's time that digests may take (default 0.02): a digest is skipped while the last one took longer than this share of the time since; Infinity digests at every interval */
  digestBudget?: number;
  meter?: Pick<MeterOptions, 'depthLimit' | 'memoryLimitPages' | 'canonicalizeNaNs' | 'cacheDir'>;
  onStdout?: (bytes: Uint8Array) => void;
  onStderr?: (bytes: Uint8Array) => void;
  /** the live sources being recorded (default: the real clocks and randomness) */
  live?: Nondeterminism;
  /** the VM's filesystem at start, preopened as "/" (default: empty); ignored when `preopens` is given */
  fs?: VirtualFs;
  /**
   * The preopened directories, at fds 3, 4, ... (at most PREOPENS_MAX of
   * log/format.ts). Their trees are logged at start and the guest runs on
   * copies rebuilt from the log (the caller's trees are never changed); the
   * final trees are in the result. Default: `fs` (or an empty tree) as "/".
   */
  preopens?: Preopen[];
  /** give the guest the NIC's listening socket (default true) */
  listen?: boolean;
  /** where interrupts come from (default: a timer on the host's monotonic clock) */
  interrupts?: InterruptSource;
  /** while an interrupt can become due, the host looks at least every this many counts (default 100000) */
  pollEvery?: bigint;
  /** called with each message the guest sends on its NIC */
  onSend?: (msg: NicMessage) => void;
  /**
   * Called with the log at every check point the recorder visits (at least
   * every FLUSH_POLL_COUNTS counts), and before the guest blocks (stdin, a
   * wait), between host calls: nothing is half logged there. `ftvm record`
   * uses it to end a recording on a signal (it flushes the log and never
   * returns).
   */
  atCheckPoint?: (log: LogWriter) => void;
}

export interface RecordedRun extends RunResult {
  /** digest of the final state, hex */
  digest: string;
  /** the VM's preopened directories as the guest left them, in fd order */
  preopens: Preopen[];
}

/** The state at the end; a guest that trapped while being instantiated has none (all zeros). */
function finalDigest(ctx: GuestContext | null): Uint8Array {
  return ctx ? stateDigest(ctx) : new Uint8Array(32);
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The start entry a recording of `bytes` with `opts` begins with; its meter options are what `module` must be compiled with. */
export function recordStart(bytes: Uint8Array, opts: RecordOptions): EntryPayloads['start'] {
  return {
    module: moduleHash(bytes),
    args: opts.args,
    env: opts.env ?? {},
    digestEvery: opts.digestEvery ?? DEFAULT_DIGEST_EVERY,
    depthLimit: opts.meter?.depthLimit ?? DEFAULT_DEPTH_LIMIT,
    memoryLimitPages: opts.meter?.memoryLimitPages ?? DEFAULT_MEMORY_LIMIT_PAGES,
    canonicalizeNaNs: opts.meter?.canonicalizeNaNs ?? false,
    stdin: opts.stdinRead ? 'stream' : 'whole',
    preopens: (opts.preopens ?? [{ name: '/', fs: opts.fs ?? new VirtualFs() }]).map((p) => p.name),
    listen: opts.listen ?? true,
  };
}

/**
 * Records a guest: `module` is `bytes` compiled (metered) with the meter
 * options of `recordStart(bytes, opts)`. Throws what the guest's run throws
 * (GuestLoadError with its FTVM_ERR_* code); the log then ends without an
 * exit entry.
 */
export function recordModule(bytes: Uint8Array, module: WebAssembly.Module, log: LogWriter, opts: RecordOptions): RecordedRun {
  const live = opts.live ?? liveNondeterminism;
  const source: InterruptSource = opts.interrupts ?? new LiveTimer();
  let rearm = (): void => {};
  const start = recordStart(bytes, opts);
  const stdin = opts.stdin ?? new Uint8Array(0);
  let ctx: GuestContext | null = null;
  const count = (): bigint => ctx?.meter?.count ?? 0n;
  // Each tree is logged in canonical order and the run starts from what a
  // replay will rebuild from the log, so both assign the same inode numbers.
  const given = opts.preopens ?? [{ name: '/', fs: opts.fs ?? new VirtualFs() }];
  const preopens = logPreamble((kind, c, payload) => log.append(kind, c, payload), start, preopenTrees(given), stdin)!;
  const liveRead = opts.stdinRead;
  const stdinRead = liveRead
    ? (maxBytes: number): Uint8Array => {
        log.flush(); // the read may block for ever: what was logged reaches the file first
        opts.atCheckPoint?.(log);
        const bytes = liveRead(Math.min(maxBytes, CHUNK_BYTES - 1));
        if (bytes.length > maxBytes) throw new RangeError(`stdin gave ${bytes.length} bytes for a read of ${maxBytes}`);
        log.append('input', count(), { fd: 0, bytes: bytes.slice() });
        return bytes;
      }
    : undefined;
  const recording: Nondeterminism = {
    clockNs(clock) {
      const ns = live.clockNs(clock);
      log.append('clock', count(), { clock, ns });
      return ns;
    },
    clockResolutionNs: (clock) => liveNondeterminism.clockResolutionNs(clock),
    randomFill(dest) {
      live.randomFill(dest);
      for (const bytes of chunksOf(dest.slice())) log.append('random', count(), bytes);
    },
  };
  const output = (fd: number, user?: (b: Uint8Array) => void) => (b: Uint8Array) => {
    for (const bytes of chunksOf(b)) log.append('output', count(), { fd, bytes });
    user?.(b);
  };
  const nic = new VirtualNic((msg) => {
    log.append('send', count(), msg);
    opts.onSend?.(msg);
  });
  source.attach?.(nic);
  /** Logs and delivers, one at a time: what a handler does is logged after its interrupt. */
  const deliverAll = (c: GuestContext, due: Interrupt[], place: Place): void => {
    for (const i of due) {
      log.append('interrupt', count(), interruptPayload(i, place));
      c.deliver(i, place);
    }
  };
  const result = runModule(module, {
    args: start.args,
    env: start.env,
    stdin: start.stdin === 'whole' ? stdin : undefined,
    stdinRead,
    preopens,
    listen: start.listen,
    nic,
    wait: (c, place, timeoutNs) => {
      // A timed wait really sleeps, but no longer than until an interrupt comes.
      const end = timeoutNs === null ? null : process.hrtime.bigint() + timeoutNs;
      log.flush(); // the guest may wait long: what was logged reaches the file first
      opts.atCheckPoint?.(log);
      const due = source.wait(count(), timeoutNs);
      deliverAll(c, due, place);
      if (!due.length && end !== null) sleepNs(end - process.hrtime.bigint());
      rearm();
      return due.length > 0;
    },
    nondeterminism: recording,
    onStdout: output(1, opts.onStdout),
    onStderr: output(2, opts.onStderr),
    io: {
      timer_set: (periodNs: bigint) => {
        source.timerSet(periodNs);
        rearm(); // a newly armed timer needs the check points visited from now on
      },
    },
    onStart: (c) => {
      ctx = c;
      const meter = c.meter!;
      const digests = new DigestSchedule(start.digestEvery, { budget: opts.digestBudget });
      const pollEvery = opts.pollEvery ?? 100_000n;
      const arm = (): void => {
        const count = meter.count;
        let next = count + FLUSH_POLL_COUNTS < digests.next ? count + FLUSH_POLL_COUNTS : digests.next;
        if (source.armed() && count + pollEvery < next) next = count + pollEvery;
        meter.setDeadline(next);
      };
      rearm = arm;
      meter.onCheck = (count) => {
        const digest = digests.take(count, c);
        if (digest) log.append('digest', count, digest);
        // Interrupts wait while the handler runs (it is not re-entered).
        if (!c.masked()) deliverAll(c, source.poll(meter.count), 'check');
        log.flushIfDue(meter.count);
        opts.atCheckPoint?.(log);
        arm();
      };
      arm();
    },
  });
  const digest = finalDigest(ctx);
  log.append('exit', result.count!, { code: result.exitCode, trap: result.trap });
  log.append('digest', result.count!, digest);
  log.flush();
  return { ...result, digest: hex(digest), preopens };
}

export interface ReplayOptions {
  /** stop at the first check point at or past this count */
  until?: bigint;
  onStdout?: (bytes: Uint8Array) => void;
  onStderr?: (bytes: Uint8Array) => void;
  cacheDir?: string | null;
  /** called with the guest's memory when the replay stops (time-travel inspection) */
  inspect?: (memory: WebAssembly.Memory) => void;
  /** called with each message the guest sends on its NIC (the same as recorded) */
  onSend?: (msg: NicMessage) => void;
  /**
   * An incomplete log (no exit entry, or nothing after it: a recording that
   * was stopped) is reproduced up to its end and the result says
   * `incomplete`. Default false: the replay then fails with a DivergenceError
   * at the end of the log, as for any log that lacks what the guest asks for.
   */
  acceptIncomplete?: boolean;
}

export interface ReplayedRun extends RunResult {
  digest: string;
  /** the replay stopped at --until before the guest ended */
  stoppedAtUntil: boolean;
  /**
   * the log ends before the guest did (a recording that was stopped): the
   * replay reproduced every entry and stopped at the log's end (at the count
   * of its last entry, or where the guest asked for an entry the log does not
   * have); `outcome` is then 'deadline'
   */
  incomplete: boolean;
  entriesReplayed: number;
  /** the VM's preopened directories as the guest left them (or as they were at --until), in fd order */
  preopens: Preopen[];
}

/**
 * The start entry of a log (what its module must be compiled with, see
 * replay-core.ts meterOptions); a DivergenceError when the log does not begin
 * with one.
 */
export function startOf(logged: readonly LogEntry[]): EntryPayloads['start'] {
  const e = logged[0] ?? null;
  if (e?.kind !== 'start' || e.count !== 0n) throw new DivergenceError(e, e ? `${e.kind} at count ${e.count}` : 'no more entries', 'start at count 0');
  return e.payload;
}

/**
 * Replays a log: `module` is `bytes` compiled with the meter options of the
 * log's start entry. Throws DivergenceError (FTVM_ERR_DIVERGENCE) naming the
 * entry where the guest and the log disagree.
 */
export function replayModule(bytes: Uint8Array, module: WebAssembly.Module, logged: readonly LogEntry[], opts: ReplayOptions = {}): ReplayedRun {
  // Progress markers only tell a following backup how far it may run.
  const entries = logged.filter((e) => e.kind !== 'progress');
  // A complete log has the guest's exit and the final digest after it.
  const exitAt = entries.findIndex((e) => e.kind === 'exit');
  // Without acceptIncomplete every log is held to the guest's end, as a complete one.
  const complete = (exitAt >= 0 && exitAt < entries.length - 1) || opts.acceptIncomplete !== true;
  /** How far an incomplete log got: its last entry's count (a progress entry says where the guest was computing). */
  const endCount = logged.at(-1)?.count ?? 0n;
  let rearm = (): void => {};
  let ctx: GuestContext | null = null;
  const count = (): bigint => ctx?.meter?.count ?? 0n;
  // The whole log is there: its end is the end (a DivergenceError naming it).
  const feed: Feed = new Feed({
    count,
    more: () => false,
    end: 'end',
    // The last entry of an incomplete log: from here the guest runs to the log's end count only.
    afterTake: () => {
      if (!complete && feed.drained) rearm();
    },
  });
  for (const e of entries) feed.push(e);
  const start = feed.take('start', 0n)!.payload;
  if (start.module !== moduleHash(bytes)) {
    throw new DivergenceError(entries[0]!, `module ${start.module}`, `module ${moduleHash(bytes)} (not the guest this log was recorded with)`);
  }
  let preamble: Preamble;
  try {
    preamble = readPreamble(feed, start);
  } catch (e) {
    // Every way in says the same of a log cut here (a backup waits for the rest).
    if (e instanceof DivergenceError && e.entry === null && !complete) throw new LogIncompleteError('the log ends before the guest started');
    throw e;
  }
  const { stdinMode, stdin: stdinBytes, preopens, listen } = preamble;
  const stdinRead = stdinMode === 'stream' ? (maxBytes: number): Uint8Array => feed.takeStdinRead(maxBytes)! : undefined;
  const replaying: Nondeterminism = {
    clockNs: (clock) => feed.takeClock(clock)!.payload.ns,
    clockResolutionNs: (clock) => liveNondeterminism.clockResolutionNs(clock),
    randomFill: (dest) => void feed.takeRandom(dest),
  };
  const output = (fd: number, user?: (b: Uint8Array) => void) => (b: Uint8Array) => {
    feed.compareOutput(fd, b);
    user?.(b);
  };
  const until = opts.until ?? null;
  /** Where the replay stops at a check point: --until, or (an incomplete log, every entry taken) the log's end count. */
  const stopAt = (): bigint | null => {
    const end = !complete && feed.drained ? endCount : null;
    return until === null ? end : end === null || until < end ? until : end;
  };
  /** The next entry, which must be an interrupt delivered at `place` now; delivers it. */
  const deliverNext = (c: GuestContext, place: Place): void => {
    const e = feed.take('interrupt', count())!;
    if (e.payload.at !== place) throw new DivergenceError(e, `an interrupt delivered at ${e.payload.at}`, `an interrupt delivered at ${place}`);
    // The handler's own check points may hold the next event (a digest at this very count).
    if (place !== 'check') rearm();
    c.deliver(interruptOf(e.payload), place);
  };
  /** Stops at the check point of every logged digest and check-point interrupt, and at --until. */
  const followLog = (c: GuestContext): void => {
    const meter = c.meter!;
    const arm = (): void => {
      const e = feed.nextEvent();
      // An event the guest must wait for comes before any check point past its count.
      const d = e === null ? null : placeOf(e) === 'check' ? e.count : e.count + 1n;
      const stop = stopAt();
      const target = d !== null && (stop === null || d < stop) ? d : stop;
      meter.setDeadline(target ?? I64_MAX);
    };
    rearm = arm;
    meter.onCheck = () => {
      // Everything the recording did at this check point, in its order; a
      // handler moves the count on, and what follows must be at the new count.
      for (let e = feed.nextEvent(); e && meter.count >= e.count; e = feed.nextEvent()) {
        if (placeOf(e) !== 'check') {
          if (meter.count === e.count) break; // the guest waits for it further on, at this count
          throw new DivergenceError(e, `the guest to wait for input at count ${e.count}`, `a check point at count ${meter.count}`);
        }
        if (e.kind === 'digest') feed.checkDigest(meter.count, stateDigest(c));
        else deliverNext(c, 'check');
      }
      const stop = stopAt();
      if (stop !== null && meter.count >= stop) return; // the deadline stays: the guest stops here
      arm();
    };
    arm();
  };
  /**
   * The guest waits: the interrupts the recording delivered there, each after
   * what the previous one's handler did. A timed wait with none logged here
   * ended by its clock: it returns false at once.
   */
  const wait = (c: GuestContext, place: Exclude<Place, 'check'>, timeoutNs: bigint | null): boolean => {
    let delivered = 0;
    for (let e = feed.peekNow(); e?.kind === 'interrupt' && e.payload.at === place && e.count === count(); e = feed.peekNow()) {
      deliverNext(c, place);
      delivered++;
    }
    if (delivered === 0 && timeoutNs === null && feed.peekNow()?.kind !== 'exit') {
      const e = feed.peekNow();
      throw new DivergenceError(e, e ? describeEntry(e.kind, e.count) : 'no more entries', `the guest waiting for input (${place}) at count ${count()}`);
    }
    rearm();
    return delivered > 0;
  };
  const nic = new VirtualNic((msg) => {
    feed.compareSend(msg);
    opts.onSend?.(msg);
  });
  const ended = (result: RunResult, incomplete: boolean): ReplayedRun => {
    const digest = finalDigest(ctx);
    if (ctx) opts.inspect?.((ctx as GuestContext).memory);
    if (incomplete || result.outcome === 'deadline') {
      const stoppedAtUntil = !incomplete && until !== null && result.count !== null && result.count >= until;
      return { ...result, outcome: 'deadline', digest: hex(digest), stoppedAtUntil, incomplete: !stoppedAtUntil, entriesReplayed: feed.taken, preopens };
    }
    feed.checkExit(result.count!, result, digest);
    if (!feed.drained) throw new DivergenceError(feed.peekNow(), 'the guest to go on', 'the guest ended');
    return { ...result, digest: hex(digest), stoppedAtUntil: false, incomplete: false, entriesReplayed: feed.taken, preopens };
  };
  try {
    const result = runModule(module, {
      args: start.args,
      env: start.env,
      stdin: stdinBytes ?? undefined,
      stdinRead,
      preopens,
      listen,
      // The timer's ticks come from the log; programming it changes nothing here.
      io: { timer_set: () => {} },
      nic,
      wait,
      nondeterminism: replaying,
      onStdout: output(1, opts.onStdout),
      onStderr: output(2, opts.onStderr),
      onStart: (c) => {
        ctx = c;
        followLog(c);
      },
    });
    return ended(result, false);
  } catch (e) {
    // The guest asked for an entry past the end of an incomplete log: everything it had was reproduced.
    if (!(e instanceof DivergenceError) || e.entry !== null || complete) throw e;
    const c = ctx as GuestContext | null;
    return ended({ outcome: 'deadline', exitCode: null, count: c?.meter?.count ?? 0n, trap: null, stdout: new Uint8Array(0), stderr: new Uint8Array(0) }, true);
  }
}
