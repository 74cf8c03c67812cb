// The clocks a VM's guest reads: the VM's own, not its host's.
//
// A VM moves between hosts (a failover, a backup restored from a snapshot
// that later goes live, a migration), and hosts' clocks differ: CLOCK_MONOTONIC
// counts from each machine's boot (a Linux time namespace offsets it too), and
// a process's CPU time counts every VM the process runs. What the guest reads
// instead, on whichever host it is live:
//
//   monotonic  The VM's uptime: 0 at its first go-live (its boot), then the
//              host's monotonic time elapsed since the replica went live,
//              added to where the clock stood at that go-live. At a go-live
//              the clock stands at the last reading in the log, plus the
//              realtime elapsed since that reading was taken (each monotonic
//              reading is logged with the host's realtime at that moment,
//              `wall`), at least 0: realtime is the one clock every host shares
//              (NTP keeps machines within milliseconds; a time namespace cannot
//              offset it), so the clock advances by about the real time that
//              passed, and never goes back.
//   realtime   The host's Date.now(), but never earlier than the last reading:
//              max(last, now). A host whose realtime is behind shows the same
//              value until its clock passes the last one.
//   CPU time   process_cputime and thread_cputime are one clock: the CPU time
//              of the replica's own thread (the guest's only thread) since it
//              went live, added to the last reading in the log. Time the
//              previous primary computed after its last reading is not known
//              to anyone and is not counted; the clock never goes back.
//
// The state these rules need is the last reading of each clock (and the
// realtime of the last monotonic one): a pure function of the log, so a backup
// that replays the log (`observe`) holds the same state as the primary that
// wrote it (`read`), and a snapshot carries it (`state`) for a backup made
// from it. What the guest reads is always a logged value: live, `read` makes
// it and the replica logs it; replaying, the log gives it and `observe` only
// follows. Nothing here changes what a replay returns.
//
// Thread CPU time: Node 20 has no per-thread CPU clock (process.cpuUsage is
// the whole process's; process.threadCpuUsage comes with Node 23.9). Linux
// gives a thread's time on the CPU in ns in /proc/thread-self/schedstat (its
// first field, sum_exec_runtime); the kernel updates it at each context switch
// and scheduler tick, so readings move in steps of up to one tick (measured:
// 0.01 to 4.2 ms on a HZ=250 kernel, median 0.6 ms on a busy thread; reading
// it costs about 8 µs). It is chosen over /proc/thread-self/stat (the same
// time in clock ticks of 10 ms), over the metered count turned into ns (exact
// and deterministic, but a count is not time: a guest timing its own work
// would read a made-up figure) and over the worker's event-loop utilization
// (the guest blocks the worker's event loop, which then measures nothing).
// The guest's CPU clocks read only live, a few times per request at most, so
// the 8 µs do not show. Elsewhere (no /proc), the process's CPU time stands
// in, as it did before.

import { readFileSync } from 'node:fs';
import { CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME, CLOCK_REALTIME, CLOCK_THREAD_CPUTIME } from './wasi/abi.ts';
import { VM_CPU_CLOCK_RESOLUTION_US } from '../limits.ts';
import type { FtvmErrorCode } from '../errors.ts';

/** The host's own clocks a VmClock reads while live (a test gives clocks it moves). All in ns. */
export interface HostClocks {
  /** the host's monotonic clock (any origin; a time namespace may offset it) */
  monoNs(): bigint;
  /** the host's realtime: ns since the Unix epoch */
  wallNs(): bigint;
  /** CPU time of the calling thread (the replica's), any origin, never decreasing */
  cpuNs(): bigint;
}

/**
 * Where a VM's clocks stand: the last reading of each in the log, null when
 * the guest never read it. Carried by a snapshot (replay/engine.ts `Snapshot.clocks`).
 */
export interface VmClockState {
  /** the last monotonic reading, ns of VM uptime */
  monoNs: bigint | null;
  /** the realtime (ns since the epoch) of the host that took that reading, when it took it */
  monoWallNs: bigint | null;
  /** the last realtime reading, ns since the epoch */
  realNs: bigint | null;
  /** the last CPU-time reading (either CPU clock), ns */
  cpuNs: bigint | null;
}

/** A reading made live: what the guest gets (`ns`) and, for the monotonic clock, the host's realtime then (`wall`), both to be logged. */
export interface VmClockReading {
  ns: bigint;
  wall?: bigint;
}

/** The state of a VM that has read no clock yet. */
export const VM_CLOCK_BOOT: Readonly<VmClockState> = Object.freeze({ monoNs: null, monoWallNs: null, realNs: null, cpuNs: null });

const max = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const isNsOrNull = (x: unknown): x is bigint | null => x === null || (typeof x === 'bigint' && x >= 0n && x < 1n << 64n);

/**
 * Checks a state that came from elsewhere (a snapshot from a peer). Returns
 * the state; throws VmClockError (FTVM_ERR_SNAPSHOT) naming the bad field.
 * A snapshot without one (absent) is a VM that read no clock.
 */
export function vmClockStateOf(x: unknown): VmClockState {
  if (x === undefined || x === null) return { ...VM_CLOCK_BOOT };
  if (typeof x !== 'object') throw new VmClockError(`the snapshot's clocks are ${typeof x}, not a map`);
  const s = x as Record<string, unknown>;
  for (const k of ['monoNs', 'monoWallNs', 'realNs', 'cpuNs'] as const) {
    if (!isNsOrNull(s[k])) throw new VmClockError(`the snapshot's clocks.${k} is not null or an unsigned 64-bit count of ns`);
  }
  if ((s.monoNs === null) !== (s.monoWallNs === null)) throw new VmClockError("the snapshot's clocks.monoNs and clocks.monoWallNs are not both set");
  return { monoNs: s.monoNs as bigint | null, monoWallNs: s.monoWallNs as bigint | null, realNs: s.realNs as bigint | null, cpuNs: s.cpuNs as bigint | null };
}

/** A snapshot's clock state that does not check (FTVM_ERR_SNAPSHOT). */
export class VmClockError extends Error {
  readonly code = 'FTVM_ERR_SNAPSHOT' satisfies FtvmErrorCode;
  constructor(message: string) {
    super(message);
    this.name = 'VmClockError';
  }
}

/**
 * One VM's clocks on one replica. Replaying, `observe` follows each logged
 * reading; `goLive` fixes where the clocks stand from the state and the host's
 * clocks; live, `read` gives each reading (to be logged) and follows it.
 * Clock ids are WASI's (realtime 0, monotonic 1, process_cputime 2,
 * thread_cputime 3); another id throws RangeError.
 */
export class VmClock {
  private s: VmClockState;
  private live = false;
  /** live: the VM's monotonic time at go-live, and the host's monotonic time then */
  private monoBase = 0n;
  private hostMonoAtLive = 0n;
  /** live: the VM's CPU time at go-live, and the thread's CPU time then */
  private cpuBase = 0n;
  private hostCpuAtLive = 0n;

  constructor(
    private readonly host: HostClocks = hostClocks,
    state: VmClockState = VM_CLOCK_BOOT,
  ) {
    this.s = { ...state };
  }

  /** The last readings, as a snapshot carries them (a copy). */
  state(): VmClockState {
    return { ...this.s };
  }

  /** Whether goLive was called. */
  get isLive(): boolean {
    return this.live;
  }

  /**
   * A logged reading, replayed: the state follows it. `wall` absent on a
   * monotonic reading (a log of an older ftvm): this host's realtime now
   * stands in, which a replay that keeps up takes within milliseconds of it.
   */
  observe(clock: number, ns: bigint, wall?: bigint): void {
    switch (clock) {
      case CLOCK_REALTIME:
        this.s.realNs = ns;
        return;
      case CLOCK_MONOTONIC:
        this.s.monoNs = ns;
        this.s.monoWallNs = wall ?? this.host.wallNs();
        return;
      case CLOCK_PROCESS_CPUTIME:
      case CLOCK_THREAD_CPUTIME:
        this.s.cpuNs = ns;
        return;
      default:
        throw new RangeError(`unknown WASI clock id ${clock}`);
    }
  }

  /**
   * The replica goes live here: the monotonic clock stands at its last
   * reading plus the realtime elapsed since (at least 0; 0 at boot), the CPU
   * clock at its last reading (0 at boot), and both count on from this
   * host's clocks. Called once.
   */
  goLive(): void {
    if (this.live) throw new Error('VmClock.goLive called twice');
    this.live = true;
    const s = this.s;
    this.hostMonoAtLive = this.host.monoNs();
    this.monoBase = s.monoNs === null ? 0n : s.monoNs + max(0n, this.host.wallNs() - s.monoWallNs!);
    this.hostCpuAtLive = this.host.cpuNs();
    this.cpuBase = s.cpuNs ?? 0n;
  }

  /** A live reading of clock `clock`, which the caller logs (with `wall` when set). Throws Error before goLive. */
  read(clock: number): VmClockReading {
    if (!this.live) throw new Error('VmClock.read before goLive');
    const s = this.s;
    switch (clock) {
      case CLOCK_REALTIME: {
        const now = this.host.wallNs();
        const ns = s.realNs === null ? now : max(s.realNs, now);
        s.realNs = ns;
        return { ns };
      }
      case CLOCK_MONOTONIC: {
        const t = this.monoBase + max(0n, this.host.monoNs() - this.hostMonoAtLive);
        const ns = s.monoNs === null ? t : max(s.monoNs, t);
        const wall = this.host.wallNs();
        s.monoNs = ns;
        s.monoWallNs = wall;
        return { ns, wall };
      }
      case CLOCK_PROCESS_CPUTIME:
      case CLOCK_THREAD_CPUTIME: {
        const t = this.cpuBase + max(0n, this.host.cpuNs() - this.hostCpuAtLive);
        const ns = s.cpuNs === null ? t : max(s.cpuNs, t);
        s.cpuNs = ns;
        return { ns };
      }
      default:
        throw new RangeError(`unknown WASI clock id ${clock}`);
    }
  }
}

/**
 * The resolution the VM's clocks report (clock_res_get), in ns: realtime 1 ms
 * (Date.now()), monotonic 1 ns (process.hrtime), the CPU clocks
 * VM_CPU_CLOCK_RESOLUTION_US (see the header). Constants, so a replay answers
 * the same. Unknown ids throw RangeError.
 */
export function vmClockResolutionNs(clock: number): bigint {
  switch (clock) {
    case CLOCK_REALTIME:
      return 1_000_000n;
    case CLOCK_MONOTONIC:
      return 1n;
    case CLOCK_PROCESS_CPUTIME:
    case CLOCK_THREAD_CPUTIME:
      return BigInt(VM_CPU_CLOCK_RESOLUTION_US) * 1000n;
    default:
      throw new RangeError(`unknown WASI clock id ${clock}`);
  }
}

let schedstat: boolean | null = null;

/**
 * The calling thread's CPU time in ns: /proc/thread-self/schedstat's
 * sum_exec_runtime on Linux, else the process's CPU time (process.cpuUsage,
 * µs). Never throws.
 */
export function threadCpuNs(): bigint {
  if (schedstat !== false) {
    try {
      const text = readFileSync('/proc/thread-self/schedstat', 'latin1');
      const ns = BigInt(text.slice(0, text.indexOf(' ')));
      schedstat = true;
      return ns;
    } catch {
      schedstat = false;
    }
  }
  const u = process.cpuUsage();
  return BigInt(u.user + u.system) * 1000n;
}

/** The host's clocks: process.hrtime, Date.now() (ms, in ns), threadCpuNs. */
export const hostClocks: HostClocks = {
  monoNs: () => process.hrtime.bigint(),
  wallNs: () => BigInt(Date.now()) * 1_000_000n,
  cpuNs: threadCpuNs,
};
