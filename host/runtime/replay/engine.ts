// One replica of a fault-tolerant VM, run on a worker thread so that the
// host's event loop (heartbeats, acks, client traffic) never waits for a
// guest that computes.
//
// A replica is in one of two modes and changes only from the first to the
// second:
//   - replay (a backup): the log streamed from the primary is its only source
//     of nondeterminism. It runs no further than the count of the last entry
//     it received (the primary's `progress` entries move that horizon while
//     the guest computes without host calls), and blocks for more.
//   - live (the primary): clocks, randomness, client messages and timer ticks
//     are real; each becomes a log entry, batched into frames and posted to
//     the host thread, which streams them to the backup and releases each
//     output once the backup has acknowledged its entry.
// Going live happens wherever the replay ran out of log after the host told it
// so (`golive`): inside a host call, at a check point, or while waiting.
//
// The same engine (runEngine) runs `ftvm record` and `ftvm replay` in process:
// a recording is a live primary whose entries go to a LogWriter instead of
// frames for a backup (EngineHooks.log), its interrupts from an
// InterruptSource; a replay is a backup fed a whole log (ReplicaInit.log)
// that ends at the log's end instead of blocking for more. The take-compare
// steps, the log's preamble and the digest schedule are runtime/replay/'s.
//
// The host thread talks to the worker through a MessagePort read synchronously
// (receiveMessageOnPort) at check points and whenever the guest waits; after
// each post it bumps `signal[0]` and notifies, which wakes a blocked worker.
// `signal[1]` is the throttle: microseconds the primary sleeps per poll;
// `signal[2]` is the host's stall: while it is 1 (the outputs it holds for
// the Output Rule are past their bounds), the primary waits after posting a
// frame. The log's own bound is the worker's to enforce, at each flush, from
// figures it reads at once (SIGNAL_UNACKED_*, SIGNAL_POSTED_SIZE): the host
// thread learns of a frame only when it takes it from the port, and a burst
// of flushes may post many before it does.
// `signal[3]` is 1 while the worker blocks on `signal[0]`: the host makes the
// wake-up call only then. It is set before the wait, which compares
// `signal[0]` with the value read before the worker took its messages, so a
// message posted in between is never slept through.

import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { I64_MAX } from '../../meter/abi.ts';
import { encodeFrame, type EntryKind, type EntryPayloads, type LogEntry, type StdinMode } from '../../log/format.ts';
import { runModule, snapshotGlobals, UnwindNow, type GuestContext, type Preopen, type ResumePoint, type RunResult } from '../instance.ts';
import { liveNondeterminism, type Nondeterminism } from '../wasi.ts';
import { hostClocks, VmClock, vmClockResolutionNs, vmClockStateOf, type VmClockState } from '../vm-clock.ts';
import { INTERRUPT_NIC, LiveTimer, sleepNs, TIMER_TICK, type Interrupt, type InterruptSource, type Place } from '../events.ts';
import type { LogWriter } from '../../log/writer.ts';
import { GUEST_UNREAD_BYTES_MAX, NIC_QUEUE_BYTES_MAX, NIC_QUEUE_MAX, VirtualNic, type NicMessage } from '../nic.ts';
import { isStreamConn } from '../../cluster/ingress.ts';
import { joinOutputs } from '../../ft/output-rule.ts';
import { CHUNK_BYTES, chunksOf, digestTail, DivergenceError, interruptOf, interruptPayload, LogIncompleteError, moduleHash, stateDigest } from './core.ts';
import { DigestSchedule } from './digests.ts';
import { describeEntry, Feed, placeOf } from './feed.ts';
import { logPreamble, readPreamble, type Preamble, type PreopenTree } from './preamble.ts';
import { VM_DIGEST_PAUSE_MS_MAX as DIGEST_PAUSE_MS_MAX, REPLICA_FRAME_FLUSH_BYTES as FRAME_FLUSH_BYTES, REPLICA_BATCH_FLUSH_BYTES as BATCH_FLUSH_BYTES, STREAMS_DONE_MAX, OUTPUT_FLUSH_MS, POSTED_BYTES_MAX, POSTED_FRAMES_MAX } from '../../limits.ts';

/** What the host hands a new replica (structured-clonable, plus the port). */
export interface ReplicaInit {
  vm: string;
  module: Uint8Array;
  /** the module as compileGuest made it (metered), compiled by the host thread: a worker never loads binaryen */
  compiled: WebAssembly.Module;
  /** how the VM was started (the first log entry) */
  start: EntryPayloads['start'];
  /** the VM's stdin, logged at start (a primary at boot only) */
  stdin?: Uint8Array;
  /**
   * the VM's preopened directories at boot, in fd order, named as in
   * `start.preopens` (a primary at boot only): logged at start, and the guest
   * runs on what a replay rebuilds from the log (replay/preamble.ts). Absent:
   * no files are logged and the guest has an empty "/"
   */
  preopens?: PreopenTree[];
  role: 'primary' | 'backup';
  /** a backup made from a snapshot of the running primary, instead of from boot */
  snapshot?: Snapshot;
  signal: SharedArrayBuffer;
  port: MessagePort;
  /** the largest share of run time state digests may take (default 0.02) */
  digestBudget?: number;
  /** replay this whole log, in process, and end at its end (role 'backup'; see WholeLog) */
  log?: WholeLog;
  /**
   * a live replica skips a state digest whose hashing would pause the guest
   * longer than this, in ms, estimated from the memory's size at the rate the
   * last digest hashed (1 GB/s before any; default VM_DIGEST_PAUSE_MS_MAX)
   */
  digestPauseMsMax?: number;
  /**
   * a live replica logs a progress entry when it computed this long with
   * nothing else logged (default 5 ms). Each one costs a frame to the backup, an ack back, and a
   * wake-up of a backup that caught up; the backup's lag grows by about this much.
   */
  progressEveryMs?: number;
  /** a live replica looks for messages at least every this many counts (default 100000) */
  pollEvery?: bigint;
  /** the share of one core a live replica may compute, in percent (default 100: no limit) */
  cpuPercent?: number;
}

/**
 * A whole log to replay (`ftvm replay`, replayGuest): every entry is there
 * from the start, and the replay ends where the log ends instead of waiting
 * for more or going live. The replica is then a backup whose primary is a
 * file.
 */
export interface WholeLog {
  /** the log's entries in seq order (progress entries only move the end of an incomplete log) */
  entries: readonly LogEntry[];
  /** stop at the first check point at or past this count */
  until?: bigint;
  /**
   * an incomplete log (no exit entry, or nothing after it: a recording that
   * was stopped) is reproduced up to its end, which is then reported as
   * `incomplete`; otherwise the replay fails with a DivergenceError at the
   * end of the log, as for any log that lacks what the guest asks for
   */
  acceptIncomplete?: boolean;
}

/**
 * What an in-process caller of runEngine gives and hears as the guest runs
 * (functions: never sent to a worker thread). With `log`, a live run is a
 * recording (`ftvm record`): its entries go to the writer instead of frames
 * posted to a host, its interrupts come from `interrupts`, and its outputs go
 * out at once (there is no backup to wait for).
 */
export interface EngineHooks {
  /** bytes the guest wrote on fd 1 or 2 (replaying: once they matched the log; recording: once logged) */
  onOutput?(fd: number, bytes: Uint8Array): void;
  /** a message the guest sent on its NIC (replaying: once it matched the log; recording: once logged) */
  onSend?(msg: NicMessage): void;
  /** a recording: where a live run's log goes */
  log?: LogWriter;
  /** a recording: where interrupts come from (default: a timer on the host's monotonic clock) */
  interrupts?: InterruptSource;
  /**
   * a recording with streamed stdin (start.stdin 'stream'): the live source,
   * called with at most CHUNK_BYTES - 1 and the guest's request (> 0); returns
   * at most that many bytes, empty at end of file
   */
  stdinRead?: (maxBytes: number) => Uint8Array;
  /**
   * the live clocks and randomness, and the clocks' resolutions (a recording,
   * and the replay of one); default: the VM's clocks over the host's
   * (vm-clock.ts), the host's randomness
   */
  live?: Nondeterminism;
  /**
   * a recording: called with the log at every check point the engine visits
   * (at least every FLUSH_POLL_COUNTS counts) and before the guest blocks
   * (stdin, a wait), between host calls: nothing is half logged there
   */
  atCheckPoint?: (log: LogWriter) => void;
  /** the guest's memory when a whole log's replay stops (time-travel inspection) */
  inspect?(memory: WebAssembly.Memory): void;
}

/** How a run of the engine ended (runEngine). */
export interface EngineEnd {
  /** outcome 'deadline' when a whole log's replay stopped at `until` or at the log's end */
  result: RunResult;
  /** the state digest at the end (zeros: the guest trapped while it was instantiated) */
  digest: Uint8Array;
  /** a whole log: the replay stopped at `until` before the guest ended */
  stoppedAtUntil: boolean;
  /** a whole log: it ends before the guest did, and every entry it has was reproduced */
  incomplete: boolean;
  /** log entries taken (progress entries not counted) */
  entriesTaken: number;
  /** the VM's preopened directories as the guest left them, in fd order (null: restored from a snapshot) */
  preopens: Preopen[] | null;
}

/** A VM's state at a snapshot (an idle reactor's, or a command guest's at the entry of an input call, with its stack) and its place in the log. */
export interface Snapshot extends ResumePoint {
  /** the first log entry that follows the snapshot */
  seq: number;
  timerPeriodNs: bigint;
  /** the state digest at the snapshot, checked by the replica restored from it */
  digest: Uint8Array;
  /** per TCP connection through a published port (ingress.ts): the stream offset after the last input delivered */
  inputEnds?: [number, number][];
  /** and after the last byte the guest sent (the primary's host adds it: it numbers the sends as they leave) */
  outputEnds?: [number, number][];
  /** where the VM's clocks stand: their last readings in the log before `seq` (vm-clock.ts; absent: none read) */
  clocks?: VmClockState;
  /** the newest stream connections whose input ended, oldest first, at most STREAMS_DONE_MAX (the primary's host adds it: see FtHost.streamEnded) */
  streamsEnded?: number[];
}

/** A client message for the guest's NIC. `off`: the message's offset in its connection's byte stream (TCP connections through published ports only) */
export interface NicInput {
  msg: NicMessage;
  off?: number;
}

/**
 * The snapshot a replica posted, with its state digest: SHA-256 of the memory
 * then `digestTail` (stateDigest's order). FtHost.shipSnapshot computes the
 * same digest chunk by chunk as it streams the memory; this is the one-step
 * form, for a snapshot that goes nowhere (tests, a local backup).
 */
export function sealSnapshot(m: { snapshot: Omit<Snapshot, 'digest'>; digestTail: Uint8Array }): Snapshot {
  const digest = new Uint8Array(createHash('sha256').update(m.snapshot.memory).update(m.digestTail).digest());
  return { ...m.snapshot, digest };
}

/** Host thread → worker. */
export type ToReplica =
  | { t: 'entries'; entries: LogEntry[] }
  | { t: 'golive' }
  /** sent with ReplicaHandle.sendInput, which counts it in `signal[SIGNAL_INBOX_*]` */
  | ({ t: 'msg' } & NicInput)
  | { t: 'snapshot'; id: number }
  /**
   * The host with this slot (the high byte of its connection ids) is gone:
   * its TCP connections through published ports died with it, so each one
   * still open ends (an end-of-stream at its offset), as a reset would end it
   */
  | { t: 'slot-gone'; slot: number }
  | { t: 'stop' }
  /**
   * A planned switch (live migration, host.ts migrateVm): at its next check
   * point or wait, a live replica flushes its log, hands back the client
   * messages not yet in the guest's NIC (`handed-over`), and pauses, taking no
   * input, until `resume` (the switch was called off) or `stop`.
   */
  | { t: 'handover' }
  | { t: 'resume' };

/** An output a live replica produced, released by the host once its entry is acknowledged. */
export interface Output {
  seq: number;
  /** 'send': a NIC message; 'output': bytes on fd 1 or 2 */
  kind: 'send' | 'output';
  conn: number;
  fd: number;
  bytes: Uint8Array;
  eof: boolean;
  /** a send on a TCP connection through a published port: its offset in the connection's outgoing stream (set by the host) */
  off?: number;
}

/** Worker → host thread. */
export type FromReplica =
  /** `inputs`: [conn, end] of stream connections whose delivered input grew in this frame; `ended`: those whose end-of-stream it delivered, in log order */
  | { t: 'log'; frame: Uint8Array; first: number; last: number; count: bigint; outputs: Output[]; inputs?: [number, number][]; ended?: number[] }
  /** a stream connection's input at an offset this replica delivered already: it has it through `end` (once the backup has the log so far) */
  | { t: 'input-end'; conn: number; end: number }
  /** a stream connection's input arrived past `end`, the offset this replica delivered to: the ingress sends it again from there */
  | { t: 'input-gap'; conn: number; end: number }
  | { t: 'progress'; count: bigint; seq: number }
  | { t: 'live'; seq: number; count: bigint }
  /**
   * A live replica paused for a planned switch (ToReplica 'handover'): `seq`
   * is the last entry it logged (every frame through it was posted before
   * this), `inbox` the client-port and REST messages it had not delivered
   * (no longer counted in SIGNAL_INBOX_*; a TCP stream's input stays, its
   * ingress sends it again to the next primary).
   */
  | { t: 'handed-over'; seq: number; inbox: NicInput[] }
  /**
   * The state digest (SHA-256, 32 bytes) at `count`: logged by this replica
   * as the primary (`verified` false), or logged by the primary and found
   * equal to this replica's own state on replay (`verified` true).
   */
  | { t: 'digest'; count: bigint; digest: Uint8Array; verified: boolean }
  /**
   * A reactor's state at an idle moment. `snapshot` has no digest: the host
   * computes it as it streams the memory (SHA-256 of the memory, then
   * `digestTail`), so the guest is paused only while its memory is copied;
   * `pauseMs` is that pause.
   */
  | { t: 'snapshot'; id: number; snapshot: Omit<Snapshot, 'digest'>; digestTail: Uint8Array; pauseMs: number }
  | { t: 'ended'; result: Omit<RunResult, 'stdout' | 'stderr'>; digest: string; cpu: { ranMs: number; restedMs: number } }
  | { t: 'error'; code: string; message: string }
  | { t: 'stopped' };

class Stopped extends Error {}

/**
 * The name a replica's worker thread gives itself on Linux
 * (/proc/PID/task/TID/comm, at most 15 bytes), so tools such as `ftvm bench ft`
 * can find it among its host's threads and place it on a core of its own.
 */
export const REPLICA_THREAD_NAME = 'ftvm-replica';

/** Names the calling thread REPLICA_THREAD_NAME where the system allows it (Linux); elsewhere does nothing. */
export function nameReplicaThread(): void {
  if (process.platform !== 'linux') return;
  try {
    writeFileSync('/proc/thread-self/comm', REPLICA_THREAD_NAME);
  } catch {
    // a name is a convenience for tools: a system without /proc/thread-self runs the replica all the same
  }
}

const SIGNAL = 0;
const THROTTLE = 1;
const STALL = 2;
const WAITING = 3;
/** Client messages the host handed the worker (ReplicaHandle.send) not yet in the guest's NIC or dropped; the host adds, the worker subtracts. */
export const SIGNAL_INBOX_MESSAGES = 4;
/** and their bytes */
export const SIGNAL_INBOX_SIZE = 5;
/** Log frames the worker posted that the host thread has not taken from the port yet; the worker adds, the host subtracts. */
export const SIGNAL_POSTED_FRAMES = 6;
/** and their bytes */
export const SIGNAL_POSTED_SIZE = 7;
/**
 * Bytes of log frames the host thread took and the backup has not
 * acknowledged (the host's `unackedBytes`, at most 2^31 - 1: a larger figure
 * is stored as that, past any bound a slot holds). The host stores it each
 * time it changes, and stores a larger one before it subtracts the frame
 * from SIGNAL_POSTED_SIZE, so that this slot plus that one never falls below
 * the log the backup lacks; the worker reads SIGNAL_POSTED_SIZE first.
 */
export const SIGNAL_UNACKED_SIZE = 8;
/**
 * The bound in force on that sum, in bytes (the host's `--unacked-log-max`),
 * or 0 while the VM has no backup: a primary alone never stalls on its log.
 */
export const SIGNAL_UNACKED_BOUND = 9;
/** Times the worker stalled its guest on the log's bound (see flush); the worker adds, the host reads. */
export const SIGNAL_LOG_STALLS = 10;
/** While recording, a check point is visited at least every this many counts, so the log's time bound holds during long computations. */
const FLUSH_POLL_COUNTS = 1_000_000n;
/** Int32 slots of the shared signal buffer. */
export const SIGNAL_SLOTS = 11;
/** The largest value an Int32 signal slot holds. */
export const SIGNAL_SLOT_MAX = 2 ** 31 - 1;
/** Unread bytes a stream connection may have in the guest's NIC before its next messages wait in the inbox (and the client's TCP window closes). */
export const NIC_UNREAD_BYTES_MAX = GUEST_UNREAD_BYTES_MAX;

/**
 * Runs one replica until its guest ends or it is stopped, posting what it
 * says to the host (FromReplica) and ending with 'ended' or 'stopped'.
 * Throws what the guest's run throws: DivergenceError (FTVM_ERR_DIVERGENCE)
 * when a replay disagrees with the log, GuestLoadError.
 */
export function runReplica(init: ReplicaInit, post: (m: FromReplica, transfer?: ArrayBuffer[]) => void): void {
  const end = runEngine(init, post);
  if (!end) return;
  const { stdout: _o, stderr: _e, ...rest } = end.result;
  post({ t: 'ended', result: rest, digest: hex(end.digest), cpu: end.cpu });
}

/**
 * The engine of record, replay and the replicas: runs `init` (a live
 * primary, a backup fed a streamed log, or with `init.log` a replay of a
 * whole log in process) and returns how it ended, or null when it was stopped
 * ('stopped' posted). Errors: DivergenceError (FTVM_ERR_DIVERGENCE) naming
 * the entry where guest and log disagree; LogIncompleteError
 * (FTVM_ERR_LOG_INCOMPLETE) for a whole log that ends before the guest
 * started, with acceptIncomplete; what the guest's run throws.
 */
export function runEngine(init: ReplicaInit, post: (m: FromReplica, transfer?: ArrayBuffer[]) => void, hooks: EngineHooks = {}): (EngineEnd & { cpu: { ranMs: number; restedMs: number } }) | null {
  const signal = new Int32Array(init.signal);
  const start = init.start;
  const module = init.compiled;
  // the same error as a replay of a log recorded with another guest
  if (moduleHash(init.module) !== start.module) {
    throw new DivergenceError({ seq: 0, count: 0n, kind: 'start', payload: start }, `module ${start.module}`, `module ${moduleHash(init.module)} (not the guest this log was recorded with)`);
  }
  if (init.preopens && JSON.stringify(init.preopens.map((p) => p.name)) !== JSON.stringify(start.preopens ?? ['/'])) {
    throw new Error(`the preopened directories ${JSON.stringify(init.preopens.map((p) => p.name))} are not the start entry's ${JSON.stringify(start.preopens ?? ['/'])}`);
  }

  let mode: 'replay' | 'live' = init.role === 'primary' ? 'live' : 'replay';
  let ctx: GuestContext | null = null;
  const count = (): bigint => ctx?.meter?.count ?? 0n;

  // ---- a recording (ftvm record): the log goes to a file, interrupts come from a source ----
  const fileLog = hooks.log ?? null;
  const source: InterruptSource | null = fileLog ? (hooks.interrupts ?? new LiveTimer()) : null;
  if (fileLog && init.role !== 'primary') throw new Error('a recording is a live run: role primary');

  // ---- the inbox ----
  // A whole log (ftvm replay): all there, and its end is the end.
  const whole = init.log ?? null;
  const wholeEntries = whole ? whole.entries.filter((e) => e.kind !== 'progress') : [];
  const wholeExitAt = wholeEntries.findIndex((e) => e.kind === 'exit');
  /** a whole log has the guest's exit and the final digest after it; without acceptIncomplete every log is held to that */
  const complete = (wholeExitAt >= 0 && wholeExitAt < wholeEntries.length - 1) || whole?.acceptIncomplete !== true;
  /** how far an incomplete whole log got: its last entry's count (a progress entry says where the guest was computing) */
  const endCount = whole?.entries.at(-1)?.count ?? 0n;
  // The log streamed from the primary (replay/feed.ts): take-compare blocks for
  // more, and ends once the replica goes live.
  const feed: Feed = new Feed({
    count,
    more: () => {
      if (whole || mode === 'live') return false;
      if (goLive) {
        switchLive();
        return false;
      }
      report(true);
      pump(Infinity);
      return true;
    },
    end: whole ? 'end' : 'live',
    // a replay that never blocks still says how far it got (its host holds acks while it is far behind)
    onPeek: whole
      ? undefined
      : () => {
          if (mode === 'replay') report();
        },
    // the last entry of an incomplete whole log: from here the guest runs to the log's end count only
    afterTake: () => {
      if (whole && !complete && feed.drained && ctx?.meter) replayCheckArm(ctx);
    },
    // consumed entries are not needed any more
    compactAt: whole ? undefined : 4096,
  });
  for (const e of wholeEntries) feed.push(e);
  /** the count of the last entry received: the replay may run up to it */
  let horizon = init.snapshot ? init.snapshot.count : whole ? endCount : -1n;
  /** the seq of the last entry received (progress entries included) */
  let lastSeq = init.snapshot ? init.snapshot.seq - 1 : (whole?.entries.at(-1)?.seq ?? -1);
  let goLive = false;
  let exitSeen = wholeExitAt >= 0;
  /** client messages not yet in the NIC; `counted`: in the host's count of them (SIGNAL_INBOX_*) */
  const inbox: { msg: NicMessage; off?: number; counted: boolean }[] = [];
  /** slots of hosts gone whose connections are still to be ended */
  const slotsGone: number[] = [];
  let snapshotWanted: number | null = null;
  /** a planned switch was asked for ('handover'), and the replica pauses for it (until 'resume' or 'stop') */
  let handoverWanted = false;
  let handoverPaused = false;

  const handle = (m: ToReplica): void => {
    switch (m.t) {
      case 'entries':
        for (const e of m.entries) {
          if (e.seq !== lastSeq + 1) throw new Error(`log entry ${e.seq} arrived after ${lastSeq}`);
          lastSeq = e.seq;
          if (e.count > horizon) horizon = e.count;
          if (e.kind === 'exit') exitSeen = true;
          if (e.kind !== 'progress') feed.push(e);
        }
        break;
      case 'golive':
        goLive = true;
        break;
      case 'msg':
        inbox.push({ msg: m.msg, off: m.off, counted: true });
        break;
      case 'snapshot':
        snapshotWanted = m.id;
        break;
      case 'handover':
        if (mode === 'live') handoverWanted = true;
        break;
      case 'resume':
        handoverWanted = false;
        handoverPaused = false;
        break;
      case 'slot-gone':
        // ended once live, from the offsets the replay reached (drainInbox)
        if (!slotsGone.includes(m.slot) && slotsGone.length < 256) slotsGone.push(m.slot);
        break;
      case 'stop':
        stopping = true;
        throw new Stopped();
    }
  };
  /** a stop was taken: the last flush posts what is pending and waits for no ack */
  let stopping = false;
  /** `signal[0]` when the port was last emptied: the host bumps it after each post. */
  let pumped = -1;
  /**
   * Takes every message posted so far; with `blockMs` (Infinity: no limit),
   * waits for one when none is there. Without `blockMs`, a counter that has
   * not moved means nothing was posted: the port is not asked (a live
   * replica pumps at every check point, and asking costs more than the load).
   */
  const pump = (blockMs = 0): boolean => {
    const seen = Atomics.load(signal, SIGNAL);
    if (blockMs <= 0 && seen === pumped) return false;
    pumped = seen;
    let got = false;
    for (let r = receiveMessageOnPort(init.port); r; r = receiveMessageOnPort(init.port)) {
      handle(r.message as ToReplica);
      got = true;
    }
    if (got || blockMs <= 0) return got;
    Atomics.store(signal, WAITING, 1);
    Atomics.wait(signal, SIGNAL, seen, blockMs === Infinity ? undefined : blockMs);
    Atomics.store(signal, WAITING, 0);
    for (let r = receiveMessageOnPort(init.port); r; r = receiveMessageOnPort(init.port)) {
      handle(r.message as ToReplica);
      got = true;
    }
    return got;
  };

  // ---- the log a live replica writes ----
  let nextSeq = init.snapshot ? init.snapshot.seq : 0;
  let pending: LogEntry[] = [];
  let pendingBytes = 0;
  let outputs: Output[] = [];
  /**
   * True while the live replica delivers the interrupts that were due at once
   * (the client messages of one wake-up): their outputs go in one frame,
   * posted when the last handler returns, so a burst of N requests costs one
   * frame, one message to the host thread, one write to the backup and one
   * ack instead of N. A handler that computes long still flushes at its check
   * points with the progress entries (every `progressEveryMs`), and a batch
   * flushes whenever it holds BATCH_FLUSH_BYTES.
   */
  let batching = false;
  // ---- input offsets of TCP connections through published ports (ingress.ts) ----
  // They follow from the log alone, so every replica has the same: a new primary
  // knows how far each stream was delivered and drops what an ingress host sends again.
  // (The output offsets are the hosts' to count: host.ts streamOffset.)
  /** per stream connection: the offset after the last input delivered to the guest (end-of-stream counts one) */
  const inputEnds = new Map<number, number>(init.snapshot?.inputEnds ?? []);
  const streamsDone = new Set<number>();
  /** input ends that grew since the last frame, for the host to acknowledge to the ingress once the backup has the frame */
  let inputsGrown = new Map<number, number>();
  /** stream connections whose end-of-stream was delivered since the last frame, in log order (at most one frame's entries) */
  let endedGrown: number[] = [];
  const noteInput = (msg: NicMessage): void => {
    if (!isStreamConn(msg.conn)) return;
    // a move of the send window is no input (only an opening, the first message, counts: as zero bytes)
    if (!msg.eof && !msg.bytes.length && (inputEnds.has(msg.conn) || streamsDone.has(msg.conn))) return;
    const end = (inputEnds.get(msg.conn) ?? 0) + (msg.eof ? 1 : msg.bytes.length);
    if (msg.eof) {
      inputEnds.delete(msg.conn);
      streamsDone.add(msg.conn);
      if (streamsDone.size > STREAMS_DONE_MAX) streamsDone.delete(streamsDone.values().next().value!);
    } else inputEnds.set(msg.conn, end);
    // (a recording has no host to tell how far a backup has the streams' input)
    if (mode === 'live' && !fileLog) inputsGrown.set(msg.conn, end);
    if (mode === 'live' && !fileLog && msg.eof) endedGrown.push(msg.conn);
  };
  /**
   * The log the backup lacks, in bytes, against the bound in force: what the
   * host thread took and the backup has not acknowledged (SIGNAL_UNACKED_SIZE)
   * plus what was posted and not taken yet (SIGNAL_POSTED_SIZE), read in that
   * order's reverse so that a frame the host takes in between is counted
   * once or twice, never missed. `max` 0: no backup, no bound.
   */
  const unackedLog = (): { bytes: number; max: number } => {
    const posted = Atomics.load(signal, SIGNAL_POSTED_SIZE);
    const unacked = Atomics.load(signal, SIGNAL_UNACKED_SIZE);
    return { bytes: unacked + posted, max: Atomics.load(signal, SIGNAL_UNACKED_BOUND) };
  };
  /**
   * After a flush: past the bound, the guest waits until the backup's acks
   * bring the log under half of it (UNACKED_LOG_BYTES_MAX), or the VM is left
   * without a backup; a stop still gets through. Decided here, at once, so the
   * log is never more than one flush past the bound however far the host
   * thread is behind the port. Only when the guest waits changes, never what
   * is logged.
   */
  const logStall = (): void => {
    const first = unackedLog();
    if (stopping || first.max === 0 || first.bytes <= first.max) return;
    Atomics.add(signal, SIGNAL_LOG_STALLS, 1);
    for (;;) {
      const u = Atomics.load(signal, SIGNAL_UNACKED_SIZE);
      const { bytes, max } = unackedLog();
      if (max === 0 || bytes < max / 2) return;
      // the host notifies when an ack lowers the figure, or the bound changes
      Atomics.wait(signal, SIGNAL_UNACKED_SIZE, u, 50);
      pump(0);
    }
  };
  let lastFlush = performance.now();
  const flush = (): void => {
    if (fileLog) return fileLog.flush();
    if (!pending.length) return;
    const frame = encodeFrame(pending);
    const inputs = inputsGrown.size ? [...inputsGrown] : undefined;
    const ended = endedGrown.length ? endedGrown : undefined;
    Atomics.add(signal, SIGNAL_POSTED_FRAMES, 1);
    Atomics.add(signal, SIGNAL_POSTED_SIZE, frame.length);
    post({ t: 'log', frame, first: pending[0]!.seq, last: pending.at(-1)!.seq, count: pending.at(-1)!.count, outputs: joinOutputs(outputs), inputs, ended }, [frame.buffer as ArrayBuffer]);
    lastFlush = performance.now();
    if (inputs) inputsGrown = new Map();
    if (ended) endedGrown = [];
    pending = [];
    pendingBytes = 0;
    outputs = [];
    // Held outputs past their bounds stall the primary (the host says so); a stop still gets through.
    while (Atomics.load(signal, STALL) === 1) {
      Atomics.wait(signal, STALL, 1, 50);
      pump(0);
    }
    logStall();
    // The host thread has not taken what was posted: wait for it (a stop still gets through).
    for (let n = Atomics.load(signal, SIGNAL_POSTED_FRAMES); n > POSTED_FRAMES_MAX || Atomics.load(signal, SIGNAL_POSTED_SIZE) > POSTED_BYTES_MAX; n = Atomics.load(signal, SIGNAL_POSTED_FRAMES)) {
      Atomics.wait(signal, SIGNAL_POSTED_FRAMES, n, 50);
      pump(0);
    }
  };
  const append = <K extends EntryKind>(kind: K, c: bigint, payload: EntryPayloads[K]): LogEntry => {
    if (kind !== 'interrupt') readSincePoint++;
    if (fileLog) return fileLog.append(kind, c, payload);
    const e = { seq: nextSeq++, count: c, kind, payload } as LogEntry;
    pending.push(e);
    lastLogged = performance.now();
    pendingBytes += 32 + (payload instanceof Uint8Array ? payload.length : ((payload as { bytes?: Uint8Array } | null)?.bytes?.length ?? 0));
    if (pendingBytes >= (batching ? BATCH_FLUSH_BYTES : FRAME_FLUSH_BYTES)) flush();
    return e;
  };
  /**
   * Entries other than interrupts logged since the command guest's current
   * input call began (-1 before any): an unwind from inside the call needs
   * none. Interrupts are fine: made again from its start after the rewind,
   * the call finds them in the NIC and waits as the call that went on would
   * have, so even a replay of the whole log sees the same.
   */
  let readSincePoint = -1;
  let lastProgress = performance.now();
  /** when the last entry of any kind was logged */
  let lastLogged = performance.now();

  // ---- the replay side ----
  let lastReport = 0;
  let reported = '';
  /** Tells the host how far the replay got: before it blocks (`now`), or at most every 2 ms when asked without `now`. */
  const report = (now = false): void => {
    const t = performance.now();
    if (!now && t - lastReport < 2) return;
    const next = feed.peekNow();
    const seq = next ? next.seq - 1 : lastSeq;
    const key = `${count()}/${seq}`;
    if (key === reported) return;
    lastReport = t;
    reported = key;
    post({ t: 'progress', count: count(), seq });
  };
  /** The next entry, which must be of `kind` at `c`; null once live. */
  const take = <K extends EntryKind>(kind: K, c: bigint = count()): Extract<LogEntry, { kind: K }> | null => feed.take(kind, c);

  // ---- the timer (device state on both sides; ticks only live) ----
  let timerPeriod = init.snapshot?.timerPeriodNs ?? 0n;
  let timerNext = 0n;
  const nowNs = (): bigint => process.hrtime.bigint();
  const timerArm = (): void => {
    timerNext = timerPeriod > 0n ? nowNs() + timerPeriod : 0n;
  };
  const timerDue = (): Interrupt[] => {
    if (!timerPeriod || nowNs() < timerNext) return [];
    timerNext = nowNs() + timerPeriod;
    return [TIMER_TICK];
  };
  if (mode === 'live') timerArm();

  // ---- nondeterminism ----
  const live: Nondeterminism = liveNondeterminism;
  // The guest's clocks are the VM's (vm-clock.ts): they follow the log while
  // replaying, and go on from where it left them once live.
  const vmClock = new VmClock(hostClocks, vmClockStateOf(init.snapshot?.clocks));
  if (mode === 'live') vmClock.goLive();
  const nd: Nondeterminism = {
    clockNs(clock) {
      const e = feed.takeClock(clock);
      if (e) {
        readSincePoint++; // read from the log as from the host (see readSincePoint)
        vmClock.observe(clock, e.payload.ns, e.payload.wall);
        return e.payload.ns;
      }
      if (hooks.live) {
        const ns = hooks.live.clockNs(clock);
        append('clock', count(), { clock, ns });
        return ns;
      }
      const { ns, wall } = vmClock.read(clock);
      append('clock', count(), wall === undefined ? { clock, ns } : { clock, ns, wall });
      return ns;
    },
    // not logged: each side's are the same function of the clock
    clockResolutionNs: hooks.live ? (clock) => hooks.live!.clockResolutionNs(clock) : vmClockResolutionNs,
    randomFill(dest) {
      if (feed.takeRandom(dest)) {
        readSincePoint++;
        return;
      }
      (hooks.live ?? live).randomFill(dest);
      for (const b of chunksOf(dest.slice())) append('random', count(), b);
    },
  };
  const output = (fd: number) => (b: Uint8Array): void => {
    if (feed.compareOutput(fd, b)) {
      hooks.onOutput?.(fd, b);
      return;
    }
    for (const bytes of chunksOf(b)) {
      const entry = append('output', count(), { fd, bytes });
      if (!fileLog) outputs.push({ seq: entry.seq, kind: 'output', conn: 0, fd, bytes, eof: false });
    }
    // a recording has no backup to wait for: its output goes out once logged
    if (fileLog) return void hooks.onOutput?.(fd, b);
    if (!batching && performance.now() - lastFlush >= OUTPUT_FLUSH_MS) flush();
  };
  const nic = new VirtualNic((msg) => {
    if (feed.compareSend(msg)) {
      hooks.onSend?.(msg);
      return;
    }
    const entry = append('send', count(), msg);
    if (fileLog) return void hooks.onSend?.(msg);
    outputs.push({ seq: entry.seq, kind: 'send', conn: msg.conn, fd: -1, bytes: msg.bytes, eof: msg.eof });
    if (!batching) flush();
  });

  // a recording's interrupt source delivers to the guest's NIC (tcp-listen.ts LiveConnections)
  source?.attach?.(nic);

  // ---- check points ----
  // the live side's digests (replay/digests.ts): a share of the run's time, and a bounded pause
  const digests = new DigestSchedule(start.digestEvery, { budget: init.digestBudget ?? 0.02, pauseMsMax: init.digestPauseMsMax ?? DIGEST_PAUSE_MS_MAX });
  const pollEvery = init.pollEvery ?? 100_000n;
  const progressEveryMs = init.progressEveryMs ?? 5;
  /** The next digest or interrupt received. */
  const nextEvent = (): LogEntry | null => feed.nextEvent();
  const exitReceived = (): boolean => exitSeen;
  const deliver = (c: GuestContext, i: Interrupt, place: Place): void => {
    append('interrupt', count(), interruptPayload(i, place));
    deliverLogged(c, i, place);
  };
  /** Delivers an interrupt (live, once logged; or replayed from the log). */
  const deliverLogged = (c: GuestContext, i: Interrupt, place: Place): void => {
    if (i.kind === INTERRUPT_NIC) noteInput(i.msg);
    c.deliver(i, place);
  };
  /**
   * The message of the inbox to deliver now, or why not: a stream
   * connection's input is delivered once, in order, from the offset the guest
   * has (a copy sent again after a failover is trimmed or dropped, a piece
   * past a gap is dropped and asked for again), and waits while the guest
   * has NIC_UNREAD_BYTES_MAX of that connection unread.
   */
  const admit = (m: { msg: NicMessage; off?: number }, held: Set<number>): NicMessage | null | 'hold' => {
    const { msg, off } = m;
    if (off === undefined || !isStreamConn(msg.conn)) {
      // a client-port or REST message: the guest's queue is bounded (its sender is refused past the inbox's bound)
      // (the queue in all waits for the guest; one connection full waits alone, the others go on)
      if (held.has(RAW_HELD) || held.has(msg.conn)) return 'hold';
      if (nic.queued >= NIC_QUEUE_MAX || nic.queuedBytes >= NIC_QUEUE_BYTES_MAX) {
        held.add(RAW_HELD);
        return 'hold';
      }
      if (!msg.eof && nic.unread(msg.conn) >= GUEST_UNREAD_BYTES_MAX) return 'hold';
      return msg;
    }
    if (held.has(msg.conn)) return 'hold';
    const known = inputEnds.has(msg.conn) || streamsDone.has(msg.conn);
    const end = inputEnds.get(msg.conn) ?? (streamsDone.has(msg.conn) ? Number.MAX_SAFE_INTEGER : 0);
    const len = msg.eof ? 1 : msg.bytes.length;
    // the opening of a connection (no bytes yet): once
    if (len === 0) {
      if (!known) return msg;
      post({ t: 'input-end', conn: msg.conn, end });
      return null;
    }
    if (off + len <= end) {
      post({ t: 'input-end', conn: msg.conn, end });
      return null;
    }
    if (off > end) {
      post({ t: 'input-gap', conn: msg.conn, end });
      return null;
    }
    if (!msg.eof && nic.unread(msg.conn) >= NIC_UNREAD_BYTES_MAX) return 'hold';
    return off === end ? msg : { conn: msg.conn, bytes: msg.bytes.subarray(end - off), eof: msg.eof };
  };
  /** In `held` of drainInbox: a client-port or REST message waits, and so do the ones after it (they keep their order). */
  const RAW_HELD = -1;
  /** Delivers what the inbox may deliver now; returns how many were delivered. */
  const drainInbox = (c: GuestContext, place: Place): number => {
    for (const slot of slotsGone.splice(0)) for (const [conn, end] of inputEnds) if (conn >>> 24 === slot) inbox.push({ msg: { conn, bytes: new Uint8Array(0), eof: true }, off: end, counted: false });
    if (!inbox.length) return 0;
    const held = new Set<number>();
    const keep: typeof inbox = [];
    let n = 0;
    let leftMessages = 0;
    let leftBytes = 0;
    for (const m of inbox.splice(0)) {
      const msg = admit(m, held);
      if (msg === 'hold') {
        held.add(m.msg.conn);
        keep.push(m);
        continue;
      }
      if (m.counted) {
        leftMessages++;
        leftBytes += m.msg.bytes.length;
      }
      if (msg) {
        deliver(c, { kind: INTERRUPT_NIC, msg }, place);
        n++;
      }
    }
    if (leftMessages) {
      Atomics.sub(signal, SIGNAL_INBOX_MESSAGES, leftMessages);
      Atomics.sub(signal, SIGNAL_INBOX_SIZE, leftBytes);
    }
    // what arrived while the handlers ran comes after what waits
    inbox.unshift(...keep);
    return n;
  };

  const replayCheck = (c: GuestContext): void => {
    const meter = c.meter!;
    for (;;) {
      const e = nextEvent();
      if (e && meter.count >= e.count) {
        if (placeOf(e) !== 'check') {
          if (meter.count === e.count) {
            if (whole) break; // the guest waits for it further on, at this count
            meter.setDeadline(e.count + 1n);
            return;
          }
          throw new DivergenceError(e, `the guest to wait for input at count ${e.count}`, `a check point at count ${meter.count}`);
        }
        if (e.kind === 'digest') {
          const mine = stateDigest(c);
          feed.checkDigest(meter.count, mine);
          post({ t: 'digest', count: meter.count, digest: mine, verified: true });
        } else {
          const i = take('interrupt', meter.count)!;
          deliverLogged(c, interruptOf(i.payload), 'check');
        }
        continue;
      }
      if (whole) break;
      if (e) {
        meter.setDeadline(placeOf(e) === 'check' ? e.count : e.count + 1n);
        return;
      }
      if (exitReceived()) {
        meter.setDeadline(I64_MAX);
        return;
      }
      if (horizon > meter.count) {
        meter.setDeadline(horizon);
        return;
      }
      // Nothing is known past this point yet.
      if (goLive && feed.drained) {
        switchLive();
        liveCheck(c);
        return;
      }
      report(true);
      pump(Infinity);
    }
    // A whole log: the guest stops at --until, and at an incomplete log's end.
    const stop = wholeStop();
    if (stop !== null && meter.count >= stop) return; // the deadline stays: the guest stops here
    replayCheckArm(c);
  };
  /** Where a whole log's replay stops at a check point: --until, or (an incomplete log, every entry taken) the log's end count. */
  const wholeStop = (): bigint | null => {
    const until = whole?.until ?? null;
    const end = !complete && feed.drained ? endCount : null;
    return until === null ? end : end === null || until < end ? until : end;
  };

  /**
   * The live replica's part of a planned switch: everything logged goes out,
   * the client messages not delivered go back to the host, and the guest
   * waits here (no entry is logged, no input taken) until the host resumes
   * it or stops it. Called only where the guest may stop: a check point or a
   * wait, never inside a host call.
   */
  const handOver = (): void => {
    handoverWanted = false;
    flush();
    const back: NicInput[] = [];
    const keep: typeof inbox = [];
    let messages = 0;
    let bytes = 0;
    for (const m of inbox.splice(0)) {
      if (isStreamConn(m.msg.conn)) {
        keep.push(m);
        continue;
      }
      back.push({ msg: m.msg, off: m.off });
      if (m.counted) {
        messages++;
        bytes += m.msg.bytes.length;
      }
    }
    inbox.push(...keep);
    if (messages) {
      Atomics.sub(signal, SIGNAL_INBOX_MESSAGES, messages);
      Atomics.sub(signal, SIGNAL_INBOX_SIZE, bytes);
    }
    post({ t: 'handed-over', seq: nextSeq - 1, inbox: back });
    handoverPaused = true;
    while (handoverPaused) pump(Infinity);
    // the clocks went on while it paused: timer ticks due meanwhile are delivered late, as after any stall
    ranSince = performance.now();
  };

  /**
   * A recording's deadline: the next digest, at least every
   * FLUSH_POLL_COUNTS (the log's time bound holds during long computations),
   * and every pollEvery while an interrupt can become due.
   */
  const recordArm = (c: GuestContext): void => {
    const meter = c.meter!;
    const now = meter.count;
    let next = now + FLUSH_POLL_COUNTS < digests.next ? now + FLUSH_POLL_COUNTS : digests.next;
    if (source!.armed() && now + pollEvery < next) next = now + pollEvery;
    meter.setDeadline(next);
  };
  /** A recording's check point: its digest, the interrupts due, the log's time bound. */
  const recordCheck = (c: GuestContext): void => {
    const meter = c.meter!;
    const d = digests.take(meter.count, c);
    if (d) append('digest', meter.count, d);
    // Interrupts wait while the handler runs (it is not re-entered).
    if (!c.masked()) for (const i of source!.poll(meter.count)) deliver(c, i, 'check');
    fileLog!.flushIfDue(meter.count);
    hooks.atCheckPoint?.(fileLog!);
    recordArm(c);
  };

  const liveCheck = (c: GuestContext): void => {
    if (fileLog) return recordCheck(c);
    const meter = c.meter!;
    if (handoverWanted) handOver();
    const now = meter.count;
    const d = digests.take(now, c);
    if (d) {
      append('digest', now, d);
      post({ t: 'digest', count: now, digest: d, verified: false });
    }
    pump(0);
    // Interrupts wait while the handler runs (it is not re-entered), and while a
    // snapshot waits for the reactor to be idle.
    if (!c.masked()) {
      if (snapshotWanted === null) drainInbox(c, 'check');
      for (const i of timerDue()) deliver(c, i, 'check');
    }
    const t = performance.now();
    if (t - lastProgress >= progressEveryMs) {
      lastProgress = t;
      // The log moves at least every progressEveryMs while the guest computes: a progress
      // entry only when nothing else moved it (a reactor's requests do, and an entry each
      // would cost a frame, an ack and a wake-up of the backup for nothing).
      if (t - lastLogged >= progressEveryMs && (!pending.length || pending.at(-1)!.count !== meter.count)) append('progress', meter.count, null);
      flush();
    }
    const throttle = Atomics.load(signal, THROTTLE);
    if (throttle > 0) sleepNs(BigInt(throttle) * 1000n);
    cpuQuota();
    meter.setDeadline(meter.count + pollEvery);
  };

  // The CPU limit: for every millisecond the guest computed, it rests (100 - p) / p ms.
  const cpuShare = Math.min(100, Math.max(1, init.cpuPercent ?? 100)) / 100;
  let ranSince = performance.now();
  let owedMs = 0;
  /** time the live guest computed and rested under the CPU limit */
  const cpu = { ranMs: 0, restedMs: 0 };
  const cpuQuota = (): void => {
    if (cpuShare >= 1) return;
    const t = performance.now();
    cpu.ranMs += t - ranSince;
    owedMs += ((t - ranSince) * (1 - cpuShare)) / cpuShare;
    if (owedMs >= 1) {
      sleepNs(BigInt(Math.round(owedMs * 1e6)));
      owedMs = 0;
    }
    ranSince = performance.now();
    cpu.restedMs += ranSince - t;
  };

  const takeSnapshot = (c: GuestContext, id: number, stack?: Uint8Array): void => {
    flush();
    // The guest is paused from here until its memory is copied (and its
    // globals and devices read): how long is part of the message. The
    // memory's digest is the host's to compute, off this thread's pause.
    const t0 = performance.now();
    const snapshot: Omit<Snapshot, 'digest'> = {
      seq: nextSeq,
      count: count(),
      memory: new Uint8Array(c.memory.buffer).slice(),
      globals: snapshotGlobals(c.instance),
      devices: c.wasi.image(),
      timerPeriodNs: timerPeriod,
      inputEnds: [...inputEnds],
      clocks: vmClock.state(),
      ...(stack ? { stack } : {}),
    };
    const tail = digestTail(c);
    post({ t: 'snapshot', id, snapshot, digestTail: tail, pauseMs: performance.now() - t0 }, [snapshot.memory.buffer as ArrayBuffer]);
  };

  const switchLive = (): void => {
    mode = 'live';
    nextSeq = lastSeq + 1;
    vmClock.goLive();
    timerArm();
    lastProgress = performance.now();
    digests.restartAt(count());
    post({ t: 'live', seq: nextSeq, count: count() });
  };

  // ---- waiting ----
  /**
   * The guest waits (RunOptions.wait). Replaying, it gets the interrupts the
   * primary delivered in this wait; a timed wait (`timeoutNs` set) with none
   * ended by its clock and returns false at once, as soon as the log shows
   * the primary went on (an entry, or a progress past this count). Live, it
   * takes client messages and timer ticks as they come, for at most
   * `timeoutNs` when set.
   */
  const wait = (c: GuestContext, place: Exclude<Place, 'check'>, timeoutNs: bigint | null): boolean => {
    while (mode === 'replay') {
      if (timeoutNs !== null) {
        while (!whole && feed.drained && horizon <= count() && !goLive) {
          report(true);
          pump(Infinity);
        }
        if (feed.drained && (whole || horizon > count())) return false;
      }
      const e = feed.peek();
      if (!e) {
        if (whole) throw new DivergenceError(null, 'no more entries', `the guest waiting for input (${place}) at count ${count()}`);
        break; // went live
      }
      if (!(e.kind === 'interrupt' && e.payload.at === place && e.count === count())) {
        if (timeoutNs !== null || e.kind === 'exit') return false;
        throw new DivergenceError(e, describeEntry(e.kind, e.count), `the guest waiting for input (${place}) at count ${count()}`);
      }
      // Every interrupt the primary delivered in this one wait, each after what the previous handler did.
      for (let n: LogEntry | null = e; n; ) {
        feed.take('interrupt', count());
        // The handler's own check points may hold the next event (a digest at this very count).
        if (c.meter) replayCheckArm(c);
        deliverLogged(c, interruptOf((n as Extract<LogEntry, { kind: 'interrupt' }>).payload), place);
        if (mode !== 'replay') return true;
        // Another one follows only at this count: the log shows it, or shows the primary went past.
        while (!whole && feed.drained && horizon <= count() && !goLive) {
          report(true);
          pump(Infinity);
        }
        const m = feed.peekNow();
        n = m && m.kind === 'interrupt' && m.payload.at === place && m.count === count() ? m : null;
      }
      if (c.meter) replayCheckArm(c);
      return true;
    }
    if (fileLog) {
      // A recording: the source says what comes; a timed wait really sleeps, but no longer than until an interrupt comes.
      const end = timeoutNs === null ? null : nowNs() + timeoutNs;
      fileLog.flush(); // the guest may wait long: what was logged reaches the file first
      hooks.atCheckPoint?.(fileLog);
      const due = source!.wait(count(), timeoutNs);
      for (const i of due) deliver(c, i, place);
      if (!due.length && end !== null) sleepNs(end - nowNs());
      if (c.meter) recordArm(c);
      return due.length > 0;
    }
    const end = timeoutNs === null ? null : nowNs() + timeoutNs;
    for (;;) {
      if (handoverWanted) handOver();
      if (place === 'idle' && snapshotWanted !== null) {
        takeSnapshot(c, snapshotWanted);
        snapshotWanted = null;
      }
      // A command guest blocked in an input call that has read nothing but interrupts
      // unwinds from it for the snapshot, and makes the call again after.
      if (place === 'wait' && snapshotWanted !== null && readSincePoint === 0 && c.atSnapshotPoint()) throw new UnwindNow();
      batching = true;
      let delivered: number;
      let due: Interrupt[];
      try {
        delivered = drainInbox(c, place);
        due = timerDue();
        for (const i of due) deliver(c, i, place);
      } finally {
        batching = false;
      }
      if (delivered || due.length) {
        flush();
        // The next check point stays at most pollEvery counts on: a reactor
        // whose every request is shorter than that still reaches its check
        // points (and its state digests) as the requests add up.
        if (c.meter && c.meter.currentDeadline > c.meter.count + pollEvery) c.meter.setDeadline(c.meter.count + pollEvery);
        ranSince = performance.now();
        return true;
      }
      flush();
      const t = nowNs();
      if (end !== null && t >= end) {
        // Sleeping is not computing: the CPU limit counts from here.
        ranSince = performance.now();
        return false;
      }
      const untilTick = timerPeriod ? Number(timerNext - t) / 1e6 : Infinity;
      const untilEnd = end === null ? Infinity : Number(end - t) / 1e6;
      pump(Math.max(Math.min(untilTick, untilEnd), 0.05));
    }
  };
  /** After the replay delivered at a wait, the next deadline follows the log. */
  const replayCheckArm = (c: GuestContext): void => {
    const e = nextEvent();
    const meter = c.meter!;
    if (whole) {
      // an event the guest must wait for comes before any check point past its count
      const d = e === null ? null : placeOf(e) === 'check' ? e.count : e.count + 1n;
      const stop = wholeStop();
      meter.setDeadline((d !== null && (stop === null || d < stop) ? d : stop) ?? I64_MAX);
      return;
    }
    if (e) meter.setDeadline(placeOf(e) === 'check' ? e.count : e.count + 1n);
    else if (exitReceived()) meter.setDeadline(I64_MAX);
    else meter.setDeadline(horizon > meter.count ? horizon : meter.count);
  };

  // ---- the run ----
  // What the VM starts with (replay/preamble.ts): the files of its preopened
  // directories, its stdin (whole, or streamed: each read logged at its
  // count), whether it has the NIC's listening socket. A replica restored
  // from a snapshot has them in the snapshot's devices.
  let stdin = init.stdin ?? new Uint8Array(0);
  let stdinMode: StdinMode = start.stdin ?? 'whole';
  let listen = start.listen ?? true;
  let preopens: Preopen[] | undefined;
  if (!init.snapshot) {
    // A backup told to go live before the primary logged anything boots the VM itself.
    const s = mode === 'replay' ? take('start', 0n) : null;
    if (s) {
      if (s.payload.module !== start.module) throw new DivergenceError(s, `module ${s.payload.module}`, `module ${start.module}`);
      // the primary logged its start, files and stdin before the guest ran
      let pre: Preamble;
      try {
        pre = readPreamble(feed, s.payload);
      } catch (e) {
        // a whole log cut here: every way in says the same (a backup waits for the rest)
        if (whole && !complete && e instanceof DivergenceError && e.entry === null) throw new LogIncompleteError('the log ends before the guest started');
        throw e;
      }
      stdin = pre.stdin ?? new Uint8Array(0);
      stdinMode = pre.stdinMode;
      listen = pre.listen;
      preopens = pre.preopens;
    } else {
      preopens = logPreamble(append, start, init.preopens, stdin);
      flush();
    }
  }
  /**
   * Streamed stdin (start.stdin 'stream', a recording's log): replaying, each
   * read returns what the log holds; live, a VM has no stdin stream, so it
   * ends there (an empty read, logged at its count).
   */
  const stdinRead =
    stdinMode === 'stream'
      ? (maxBytes: number): Uint8Array => {
          const got = feed.takeStdinRead(maxBytes);
          if (got) return got;
          const liveRead = hooks.stdinRead;
          if (!liveRead) {
            const bytes = new Uint8Array(0);
            append('input', count(), { fd: 0, bytes });
            return bytes;
          }
          flush(); // the read may block for ever: what was logged reaches the file first
          if (fileLog) hooks.atCheckPoint?.(fileLog);
          const bytes = liveRead(Math.min(maxBytes, CHUNK_BYTES - 1));
          if (bytes.length > maxBytes) throw new RangeError(`stdin gave ${bytes.length} bytes for a read of ${maxBytes}`);
          append('input', count(), { fd: 0, bytes: bytes.slice() });
          return bytes;
        }
      : undefined;
  let result: RunResult;
  try {
    result = runModule(module, {
      args: start.args,
      env: start.env,
      stdin,
      stdinRead,
      preopens,
      listen,
      nic,
      nondeterminism: nd,
      onStdout: output(1),
      onStderr: output(2),
      // every chunk goes to the log and the host's rings: none is kept here (a guest may write for ever);
      // a whole log's replay returns what the guest wrote, as a run does
      collectOutput: whole || fileLog ? undefined : false,
      io: {
        timer_set: (ns: bigint) => {
          timerPeriod = ns > 0n ? ns : 0n;
          if (source && mode === 'live') {
            source.timerSet(ns);
            // a newly armed timer needs the check points visited from now on
            if (ctx?.meter) recordArm(ctx);
          } else if (mode === 'live') timerArm();
        },
      },
      wait,
      resume: init.snapshot,
      // a command guest's snapshot: at the entry of its next input call, or while one waits (see wait)
      unwind: {
        wanted: () => {
          readSincePoint = 0;
          return mode === 'live' && snapshotWanted !== null;
        },
        onUnwound: (c, stack) => {
          if (snapshotWanted !== null) takeSnapshot(c, snapshotWanted, stack);
          snapshotWanted = null;
        },
      },
      onStart: (c) => {
        ctx = c;
        if (init.snapshot) {
          const mine = stateDigest(c);
          if (Buffer.compare(mine, init.snapshot.digest) !== 0) {
            throw new Error(`the state restored from the snapshot has digest ${hex(mine)}, not ${hex(init.snapshot.digest)}`);
          }
        }
        c.meter!.onCheck = () => (mode === 'replay' ? replayCheck(c) : liveCheck(c));
        if (mode === 'replay') replayCheckArm(c);
        else if (fileLog) recordArm(c);
        else c.meter!.setDeadline(pollEvery);
      },
    });
  } catch (e) {
    if (e instanceof Stopped) {
      flush();
      post({ t: 'stopped' });
      return null;
    }
    // The guest asked for an entry past the end of an incomplete whole log: everything it had was reproduced.
    if (whole && !complete && e instanceof DivergenceError && e.entry === null) return wholeEnd(null, true);
    throw e;
  }
  if (whole) {
    try {
      return wholeEnd(result, false);
    } catch (e) {
      if (!complete && e instanceof DivergenceError && e.entry === null) return wholeEnd(null, true);
      throw e;
    }
  }
  const digest = ctx ? stateDigest(ctx) : new Uint8Array(32);
  if (mode === 'replay') feed.checkExit(result.count!, result, digest);
  if (mode === 'live') {
    append('exit', result.count!, { code: result.exitCode, trap: result.trap });
    append('digest', result.count!, digest);
    flush();
  }
  return { result, digest, stoppedAtUntil: false, incomplete: false, entriesTaken: feed.taken, preopens: preopens ?? null, cpu };

  /**
   * The end of a whole log's replay: `result` null when the log ran out
   * (incomplete), else how the guest's run ended, checked against the log
   * (its exit, its final digest, nothing after them) unless it stopped at a
   * check point (--until, or an incomplete log's end).
   */
  function wholeEnd(ran: RunResult | null, incomplete: boolean): EngineEnd & { cpu: typeof cpu } {
    const c = ctx as GuestContext | null;
    const r: RunResult = ran ?? { outcome: 'deadline', exitCode: null, count: c?.meter?.count ?? 0n, trap: null, stdout: new Uint8Array(0), stderr: new Uint8Array(0) };
    const digest = c ? stateDigest(c) : new Uint8Array(32);
    if (c) hooks.inspect?.(c.memory);
    const base = { digest, entriesTaken: feed.taken, preopens: preopens ?? null, cpu };
    if (incomplete || r.outcome === 'deadline') {
      const until = whole?.until ?? null;
      const stoppedAtUntil = !incomplete && until !== null && r.count !== null && r.count >= until;
      return { ...base, result: { ...r, outcome: 'deadline' }, stoppedAtUntil, incomplete: !stoppedAtUntil };
    }
    feed.checkExit(r.count!, r, digest);
    if (!feed.drained) throw new DivergenceError(feed.peekNow(), 'the guest to go on', 'the guest ended');
    return { ...base, entriesTaken: feed.taken, result: r, stoppedAtUntil: false, incomplete: false };
  }
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

