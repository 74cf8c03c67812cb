// Record and replay of a WASI command guest.
//
// Recording runs the guest live and logs, at the exact count where each
// happens: what it was started with, its stdin, every clock reading, every
// random byte, every byte it writes, a digest of its state at fixed count
// intervals, and how it ended. Replay runs the same guest with the log as its
// only source of nondeterminism: each host call takes the next entry after
// checking its kind and count, outputs and digests are compared, and any
// mismatch stops the replay with a DivergenceError that names the entry.
// Replay never reads a real clock or random source.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { I64_MAX, DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES } from '../meter/abi.ts';
import type { MeterOptions } from '../meter/index.ts';
import type { EntryKind, EntryPayloads, LogEntry } from '../log/format.ts';
import type { LogWriter } from '../log/writer.ts';
import { compileGuest, runGuest, type GuestContext, type RunResult } from './guest.ts';
import { liveNondeterminism, VirtualFs, type Nondeterminism } from './wasi.ts';
import { INTERRUPT_NIC, LiveTimer, TIMER_TICK, type Interrupt, type InterruptSource, type Place } from './events.ts';
import { VirtualNic, type NicMessage } from './nic.ts';
import { CHUNK_BYTES, chunksOf, DivergenceError, interruptOf, interruptPayload, meterOptions, moduleHash, stateDigest } from './replay-core.ts';

export { CHUNK_BYTES, chunksOf, DivergenceError, interruptOf, interruptPayload, meterOptions, moduleHash, stateDigest } from './replay-core.ts';

export const DEFAULT_DIGEST_EVERY = 10_000_000n;

export interface RecordOptions {
  args: string[];
  env?: Record<string, string>;
  stdin?: Uint8Array;
  /** at most one digest per this many counts */
  digestEvery?: bigint;
  /** the largest share of the run's time that digests may take (default 0.02); 1 digests at every interval */
  digestBudget?: number;
  meter?: Pick<MeterOptions, 'depthLimit' | 'memoryLimitPages' | 'canonicalizeNaNs' | 'cacheDir'>;
  onStdout?: (bytes: Uint8Array) => void;
  onStderr?: (bytes: Uint8Array) => void;
  /** the live sources being recorded (default: the real clocks and randomness) */
  live?: Nondeterminism;
  /** the VM's filesystem at start (default: empty) */
  fs?: VirtualFs;
  /** where interrupts come from (default: a timer on the host's monotonic clock) */
  interrupts?: InterruptSource;
  /** while an interrupt can become due, the host looks at least every this many counts (default 100000) */
  pollEvery?: bigint;
  /** called with each message the guest sends on its NIC */
  onSend?: (msg: NicMessage) => void;
}

export interface RecordedRun extends RunResult {
  /** digest of the final state */
  digest: string;
}

/** The state at the end; a guest that trapped while being instantiated has none (all zeros). */
function finalDigest(ctx: GuestContext | null): Uint8Array {
  return ctx ? stateDigest(ctx) : new Uint8Array(32);
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export function recordGuest(bytes: Uint8Array, log: LogWriter, opts: RecordOptions): RecordedRun {
  const live = opts.live ?? liveNondeterminism;
  const source = opts.interrupts ?? new LiveTimer();
  let rearm = (): void => {};
  const env = opts.env ?? {};
  const stdin = opts.stdin ?? new Uint8Array(0);
  const start: EntryPayloads['start'] = {
    module: moduleHash(bytes),
    args: opts.args,
    env,
    digestEvery: opts.digestEvery ?? DEFAULT_DIGEST_EVERY,
    depthLimit: opts.meter?.depthLimit ?? DEFAULT_DEPTH_LIMIT,
    memoryLimitPages: opts.meter?.memoryLimitPages ?? DEFAULT_MEMORY_LIMIT_PAGES,
    canonicalizeNaNs: opts.meter?.canonicalizeNaNs ?? false,
  };
  const module = compileGuest(bytes, { ...meterOptions(start), cacheDir: opts.meter?.cacheDir });
  let ctx: GuestContext | null = null;
  const count = (): bigint => ctx?.meter?.count ?? 0n;
  log.append('start', 0n, start);
  // The filesystem is logged in canonical order and the run starts from what a
  // replay will rebuild from the log, so both assign the same inode numbers.
  const tree = fsTree(opts.fs ?? new VirtualFs());
  for (const node of tree) {
    if (node.dir) log.append('file', 0n, { path: node.path, dir: true, bytes: new Uint8Array(0) });
    else for (const bytes of chunksOf(node.bytes)) log.append('file', 0n, { path: node.path, dir: false, bytes });
  }
  const fs = fsFromTree(tree);
  // Large byte payloads span several entries at the same count (an entry's size is limited).
  for (const bytes of chunksOf(stdin)) log.append('input', 0n, { fd: 0, bytes });
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
  /** Logs and delivers, one at a time: what a handler does is logged after its interrupt. */
  const deliverAll = (c: GuestContext, due: Interrupt[], place: Place): void => {
    for (const i of due) {
      log.append('interrupt', count(), interruptPayload(i, place));
      c.deliver(i, place);
    }
  };
  const result = runGuest(module, {
    args: opts.args,
    env,
    stdin,
    fs,
    nic,
    wait: (c, place) => {
      const due = source.wait(count());
      deliverAll(c, due, place);
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
      // Where digests fall is the recorder's choice (the replay follows the log), so it
      // can keep their cost bounded: hashing a large memory at every interval would
      // dominate the run.
      const budget = opts.digestBudget ?? 0.02;
      const every = start.digestEvery;
      const pollEvery = opts.pollEvery ?? 100_000n;
      let nextDigest = every;
      let lastEnd = performance.now();
      let lastCost = 0;
      const arm = (): void => {
        const count = meter.count;
        meter.setDeadline(source.armed() && count + pollEvery < nextDigest ? count + pollEvery : nextDigest);
      };
      rearm = arm;
      meter.onCheck = (count) => {
        if (count >= nextDigest) {
          nextDigest = (count / every + 1n) * every;
          if (!(lastCost > 0 && lastCost > budget * (performance.now() - lastEnd))) {
            const t = performance.now();
            log.append('digest', count, stateDigest(c));
            lastEnd = performance.now();
            lastCost = lastEnd - t;
          }
        }
        // Interrupts wait while the handler runs (it is not re-entered).
        if (!c.masked()) deliverAll(c, source.poll(meter.count), 'check');
        arm();
      };
      arm();
    },
  });
  const digest = finalDigest(ctx);
  log.append('exit', result.count!, { code: result.exitCode, trap: result.trap });
  log.append('digest', result.count!, digest);
  log.flush();
  return { ...result, digest: hex(digest) };
}

interface TreeNode {
  path: string;
  dir: boolean;
  bytes: Uint8Array;
}

/** Every directory and file under the root, depth first in name order. */
function fsTree(fs: VirtualFs): TreeNode[] {
  const out: TreeNode[] = [];
  const walk = (dir: string): void => {
    for (const name of fs.list(dir) ?? []) {
      const path = dir ? `${dir}/${name}` : name;
      const bytes = fs.readFile(path);
      if (bytes) out.push({ path, dir: false, bytes });
      else {
        out.push({ path, dir: true, bytes: new Uint8Array(0) });
        walk(path);
      }
    }
  };
  walk('');
  return out;
}

function fsFromTree(tree: readonly TreeNode[]): VirtualFs {
  const fs = new VirtualFs();
  for (const n of tree) {
    if (n.dir) fs.mkdirp(n.path);
    else fs.writeFile(n.path, n.bytes);
  }
  return fs;
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
}

export interface ReplayedRun extends RunResult {
  digest: string;
  /** the replay stopped at --until before the guest ended */
  stoppedAtUntil: boolean;
  entriesReplayed: number;
}

export function replayGuest(bytes: Uint8Array, logged: readonly LogEntry[], opts: ReplayOptions = {}): ReplayedRun {
  // Progress markers only tell a following backup how far it may run.
  const entries = logged.filter((e) => e.kind !== 'progress');
  let at = 0;
  let ctx: GuestContext | null = null;
  const count = (): bigint => ctx?.meter?.count ?? 0n;
  const describe = (kind: string, c: bigint): string => `${kind} at count ${c}`;
  /** The next entry, which must be of `kind` at the current count. */
  const take = <K extends EntryKind>(kind: K, c: bigint = count()): Extract<LogEntry, { kind: K }> => {
    const e = entries[at] ?? null;
    if (!e || e.kind !== kind || e.count !== c) {
      throw new DivergenceError(e, e ? describe(e.kind, e.count) : 'no more entries', describe(kind, c));
    }
    at++;
    return e as Extract<LogEntry, { kind: K }>;
  };
  const start = take('start', 0n).payload;
  if (start.module !== moduleHash(bytes)) {
    throw new DivergenceError(entries[0]!, `module ${start.module}`, `module ${moduleHash(bytes)} (not the guest this log was recorded with)`);
  }
  /**
   * Consecutive entries of `kind` at count `c`, up to the first shorter than
   * CHUNK_BYTES, joined; `bytesOf` checks each entry's payload and picks its bytes.
   */
  const takeChunks = <K extends 'input' | 'output' | 'random' | 'file'>(
    kind: K,
    c: bigint,
    bytesOf: (e: Extract<LogEntry, { kind: K }>) => Uint8Array,
  ): Uint8Array => {
    const parts: Uint8Array[] = [];
    do parts.push(bytesOf(take(kind, c)));
    while (parts.at(-1)!.length === CHUNK_BYTES);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  };
  /** An input or output payload on `fd`. */
  const onFd = (fd: number) => (e: Extract<LogEntry, { kind: 'input' | 'output' }>): Uint8Array => {
    if (e.payload.fd !== fd) throw new DivergenceError(e, `${e.kind} on fd ${e.payload.fd}`, `${e.kind} on fd ${fd}`);
    return e.payload.bytes;
  };
  const tree: TreeNode[] = [];
  while (entries[at]?.kind === 'file') {
    const { path, dir } = (entries[at] as Extract<LogEntry, { kind: 'file' }>).payload;
    const bytes = dir
      ? take('file', 0n).payload.bytes
      : takeChunks('file', 0n, (e) => {
          if (e.payload.path !== path || e.payload.dir) throw new DivergenceError(e, `the rest of ${path}`, e.payload.path);
          return e.payload.bytes;
        });
    tree.push({ path, dir, bytes });
  }
  const fs = fsFromTree(tree);
  const stdinBytes = takeChunks('input', 0n, onFd(0));
  const replaying: Nondeterminism = {
    clockNs(clock) {
      const e = take('clock');
      if (e.payload.clock !== clock) throw new DivergenceError(e, `clock ${e.payload.clock}`, `clock ${clock}`);
      return e.payload.ns;
    },
    clockResolutionNs: (clock) => liveNondeterminism.clockResolutionNs(clock),
    randomFill(dest) {
      const e = entries[at] ?? null;
      const bytes = takeChunks('random', count(), (r) => r.payload);
      if (bytes.length !== dest.length) throw new DivergenceError(e, `${bytes.length} random bytes`, `${dest.length} random bytes`);
      dest.set(bytes);
    },
  };
  const output = (fd: number, user?: (b: Uint8Array) => void) => (b: Uint8Array) => {
    const e = entries[at] ?? null;
    const logged = takeChunks('output', count(), onFd(fd));
    if (Buffer.compare(logged, b) !== 0) {
      throw new DivergenceError(e, `${logged.length} bytes on fd ${fd}`, `${b.length} different bytes on fd ${fd}`);
    }
    user?.(b);
  };
  const until = opts.until ?? null;
  // What happened at check points and while the guest waited (the last digest
  // follows its exit): for each position in the log, the index of the next such entry.
  const exitAt = entries.findIndex((e) => e.kind === 'exit');
  const running = exitAt < 0 ? entries.length : exitAt;
  const nextEvent = new Int32Array(entries.length + 1).fill(-1);
  for (let i = running - 1; i >= 0; i--) {
    const k = entries[i]!.kind;
    nextEvent[i] = k === 'digest' || k === 'interrupt' ? i : nextEvent[i + 1]!;
  }
  const upcoming = (): LogEntry | null => {
    const i = nextEvent[at] ?? -1;
    return i >= 0 ? entries[i]! : null;
  };
  const placeOf = (e: LogEntry): Place | null => (e.kind === 'interrupt' ? e.payload.at : e.kind === 'digest' ? 'check' : null);
  /** The next entry, which must be an interrupt delivered at `place` now; delivers it. */
  const deliverNext = (c: GuestContext, place: Place): void => {
    const e = take('interrupt', count());
    if (e.payload.at !== place) throw new DivergenceError(e, `an interrupt delivered at ${e.payload.at}`, `an interrupt delivered at ${place}`);
    // The handler's own check points may hold the next event (a digest at this very count).
    if (place !== 'check') rearm();
    c.deliver(interruptOf(e.payload), place);
  };
  /** Stops at the check point of every logged digest and check-point interrupt, and at --until. */
  const followLog = (c: GuestContext): void => {
    const meter = c.meter!;
    const arm = (): void => {
      const e = upcoming();
      // An event the guest must wait for comes before any check point past its count.
      const d = e === null ? null : placeOf(e) === 'check' ? e.count : e.count + 1n;
      const target = d !== null && (until === null || d < until) ? d : until;
      meter.setDeadline(target ?? I64_MAX);
    };
    rearm = arm;
    meter.onCheck = () => {
      // Everything the recording did at this check point, in its order; a
      // handler moves the count on, and what follows must be at the new count.
      for (let e = upcoming(); e && meter.count >= e.count; e = upcoming()) {
        if (placeOf(e) !== 'check') {
          if (meter.count === e.count) break; // the guest waits for it further on, at this count
          throw new DivergenceError(e, `the guest to wait for input at count ${e.count}`, `a check point at count ${meter.count}`);
        }
        if (e.kind === 'digest') {
          const d = take('digest', meter.count);
          const mine = stateDigest(c);
          if (Buffer.compare(d.payload, mine) !== 0) throw new DivergenceError(d, `digest ${hex(d.payload)}`, `digest ${hex(mine)}`);
        } else {
          deliverNext(c, 'check');
        }
      }
      if (until !== null && meter.count >= until) return; // the deadline stays: the guest stops here
      arm();
    };
    arm();
  };
  let rearm = (): void => {};
  /** The guest waits: the interrupts the recording delivered there, each after what the previous one's handler did. */
  const wait = (c: GuestContext, place: Exclude<Place, 'check'>): boolean => {
    let delivered = 0;
    for (let e = entries[at]; e?.kind === 'interrupt' && e.payload.at === place && e.count === count(); e = entries[at]) {
      deliverNext(c, place);
      delivered++;
    }
    if (delivered === 0 && entries[at]?.kind !== 'exit') {
      const e = entries[at] ?? null;
      throw new DivergenceError(e, e ? describe(e.kind, e.count) : 'no more entries', `the guest waiting for input (${place}) at count ${count()}`);
    }
    rearm();
    return delivered > 0;
  };
  const nic = new VirtualNic((msg) => {
    const e = take('send');
    const p = e.payload;
    if (p.conn !== msg.conn || p.eof !== msg.eof || Buffer.compare(p.bytes, msg.bytes) !== 0) {
      throw new DivergenceError(e, `a message of ${p.bytes.length} bytes to ${p.conn}${p.eof ? ' (eof)' : ''}`, `${msg.bytes.length} bytes to ${msg.conn}${msg.eof ? ' (eof)' : ''}`);
    }
    opts.onSend?.(msg);
  });
  const module = compileGuest(bytes, { ...meterOptions(start), cacheDir: opts.cacheDir });
  const result = runGuest(module, {
    args: start.args,
    env: start.env,
    stdin: stdinBytes,
    fs,
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
  const digest = finalDigest(ctx);
  if (ctx) opts.inspect?.((ctx as GuestContext).memory);
  if (result.outcome === 'deadline') {
    return { ...result, digest: hex(digest), stoppedAtUntil: true, entriesReplayed: at };
  }
  const end = take('exit', result.count!);
  if (end.payload.code !== result.exitCode || end.payload.trap !== result.trap) {
    throw new DivergenceError(end, `exit ${JSON.stringify(end.payload)}`, `exit ${JSON.stringify({ code: result.exitCode, trap: result.trap })}`);
  }
  const last = take('digest', result.count!);
  if (Buffer.compare(last.payload, digest) !== 0) throw new DivergenceError(last, `final digest ${hex(last.payload)}`, `final digest ${hex(digest)}`);
  if (at !== entries.length) throw new DivergenceError(entries[at]!, 'the guest to go on', 'the guest ended');
  return { ...result, digest: hex(digest), stoppedAtUntil: false, entriesReplayed: at };
}
