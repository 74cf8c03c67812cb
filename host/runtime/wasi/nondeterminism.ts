/**
 * The one door through which a guest observes the outside world's time and
 * randomness. A recorder wraps it (logging every answer) and a replayer
 * stands in for it (answering from the log), so a run is reproducible.
 */
import { randomFillSync } from 'node:crypto';
import { CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME, CLOCK_REALTIME, CLOCK_THREAD_CPUTIME } from './abi.ts';

/** Every nondeterministic value the guest can observe comes through this interface, so that a recorder/replayer can stand in. */
export interface Nondeterminism {
  /** The clock's current value in ns. clockId: realtime=0, monotonic=1, process_cputime=2, thread_cputime=3 (RangeError otherwise). */
  clockNs(clockId: number): bigint;
  /** The clock's resolution in ns (same ids). */
  clockResolutionNs(clockId: number): bigint;
  /** Fills `dest` with random bytes. */
  randomFill(dest: Uint8Array): void;
}

function cpuTimeNs(): bigint {
  const u = process.cpuUsage();
  return BigInt(u.user + u.system) * 1000n;
}

/**
 * Live sources: realtime from Date.now() (ms resolution, in ns), monotonic from
 * process.hrtime.bigint(), CPU time from process.cpuUsage() (µs resolution; the
 * thread clock reports process CPU time, as Node runs the guest on one thread),
 * randomness from crypto.randomFillSync. Unknown clock ids throw RangeError.
 * `ftvm run` and `ftvm record` use these; a cluster VM's replicas give the
 * guest the VM's own clocks instead (host/runtime/vm-clock.ts).
 */
export const liveNondeterminism: Nondeterminism = {
  clockNs(clockId: number): bigint {
    switch (clockId) {
      case CLOCK_REALTIME:
        return BigInt(Date.now()) * 1_000_000n;
      case CLOCK_MONOTONIC:
        return process.hrtime.bigint();
      case CLOCK_PROCESS_CPUTIME:
      case CLOCK_THREAD_CPUTIME:
        return cpuTimeNs();
      default:
        throw new RangeError(`unknown WASI clock id ${clockId}`);
    }
  },
  clockResolutionNs(clockId: number): bigint {
    switch (clockId) {
      case CLOCK_REALTIME:
        return 1_000_000n;
      case CLOCK_MONOTONIC:
        return 1n;
      case CLOCK_PROCESS_CPUTIME:
      case CLOCK_THREAD_CPUTIME:
        return 1_000n;
      default:
        throw new RangeError(`unknown WASI clock id ${clockId}`);
    }
  },
  randomFill(dest: Uint8Array): void {
    randomFillSync(dest);
  },
};
