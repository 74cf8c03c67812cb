// Record and replay of a WASI command guest, given an already compiled
// (metered) module. Nothing here loads binaryen: the command line compiles
// through compileGuestAsync (compile.ts), which loads the pass only when the
// metering cache does not have the module. record.ts wraps these two for
// callers that hand over the guest's bytes only.
//
// Both run the replicas' engine (engine.ts runEngine), on the
// calling thread: a recording is a live primary whose entries go to a
// LogWriter instead of to a backup, with its interrupts from an
// InterruptSource; a replay is a backup fed the whole log, which ends where
// the log ends. What they share with every replica is in this folder: the
// take-compare feed (feed.ts), the log's preamble (preamble.ts), the digest
// schedule (digests.ts) and the divergence error and digests (core.ts).
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

import { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES } from '../../meter/abi.ts';
import type { MeterOptions } from '../../meter/cache.ts';
import type { EntryPayloads, LogEntry } from '../../log/format.ts';
import type { LogWriter } from '../../log/writer.ts';
import type { Preopen, RunResult } from '../instance.ts';
import { liveNondeterminism, VirtualFs, type Nondeterminism } from '../wasi.ts';
import type { InterruptSource } from '../events.ts';
import type { NicMessage } from '../nic.ts';
import { MessageChannel } from 'node:worker_threads';
import { runEngine, SIGNAL_SLOTS } from './engine.ts';
import { DivergenceError, moduleHash } from './core.ts';
import { preopenTrees } from './preamble.ts';

export const DEFAULT_DIGEST_EVERY = 10_000_000n;

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
  const start = recordStart(bytes, opts);
  // Each tree is logged in canonical order and the run starts from what a
  // replay will rebuild from the log, so both assign the same inode numbers.
  const given = opts.preopens ?? [{ name: '/', fs: opts.fs ?? new VirtualFs() }];
  // A live replica whose log goes to the writer instead of a backup. It runs
  // here, on this thread; its port and signals carry nothing.
  const channel = new MessageChannel();
  try {
    const end = runEngine(
      {
        vm: 'record',
        module: bytes,
        compiled: module,
        start,
        role: 'primary',
        stdin: opts.stdin,
        preopens: preopenTrees(given),
        signal: new SharedArrayBuffer(SIGNAL_SLOTS * Int32Array.BYTES_PER_ELEMENT),
        port: channel.port1,
        digestBudget: opts.digestBudget,
        // a recording's digests are bounded by their share of the run only (the guest has no clients to keep waiting)
        digestPauseMsMax: Number.POSITIVE_INFINITY,
        pollEvery: opts.pollEvery,
      },
      () => {},
      {
        log,
        interrupts: opts.interrupts,
        stdinRead: opts.stdinRead,
        live: opts.live ?? liveNondeterminism,
        atCheckPoint: opts.atCheckPoint,
        onOutput: (fd, b) => (fd === 1 ? opts.onStdout : opts.onStderr)?.(b),
        onSend: opts.onSend,
      },
    )!;
    return { ...end.result, digest: hex(end.digest), preopens: end.preopens ?? [] };
  } finally {
    channel.port1.close();
    channel.port2.close();
  }
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
 * core.ts meterOptions); a DivergenceError when the log does not begin
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
  // The log's start entry says how the VM was started (the engine checks the module against it).
  const start = startOf(logged.filter((e) => e.kind !== 'progress'));
  // A replica whose primary is the file: a backup that ends at the log's end.
  // It runs here, on this thread; its port and signals carry nothing.
  const channel = new MessageChannel();
  try {
    const end = runEngine(
      {
        vm: 'replay',
        module: bytes,
        compiled: module,
        start,
        role: 'backup',
        signal: new SharedArrayBuffer(SIGNAL_SLOTS * Int32Array.BYTES_PER_ELEMENT),
        port: channel.port1,
        log: { entries: logged, until: opts.until, acceptIncomplete: opts.acceptIncomplete },
      },
      () => {},
      {
        onOutput: (fd, b) => (fd === 1 ? opts.onStdout : opts.onStderr)?.(b),
        onSend: opts.onSend,
        inspect: opts.inspect,
        // a recording's clock resolutions (not logged: the same function on both sides)
        live: liveNondeterminism,
      },
    )!;
    return { ...end.result, digest: hex(end.digest), stoppedAtUntil: end.stoppedAtUntil, incomplete: end.incomplete, entriesReplayed: end.entriesTaken, preopens: end.preopens ?? [] };
  } finally {
    channel.port1.close();
    channel.port2.close();
  }
}
