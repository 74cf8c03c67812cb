// Where the benchmark's processes and threads run, and how much CPU they used.
// Linux only (`taskset`, /proc); elsewhere, or on fewer than two cores, the
// placement is a no-op and says so.
//
// The FT benchmark puts the live replica on core 0 and everything else (the
// backup's host, the third host, the benchmark's own client) on core 1, so a
// ratio of FT to unreplicated measures what FT costs the primary, not how the
// machine shares two cores between four processes.

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { REPLICA_THREAD_NAME } from '../runtime/replay/engine.ts';

/**
 * How the bench places the live replica:
 * - 'process': the whole host process of the live replica on core 0;
 * - 'thread': the replica's worker thread alone on core 0; its host's main
 *   thread (heartbeats, log frames, acks, client traffic) on core 1;
 * - 'none': no placement (the kernel schedules).
 */
export type PinMode = 'thread' | 'process' | 'none';


/** Why placement cannot happen here (null: it can). */
export function pinUnavailable(): string | null {
  if (process.platform !== 'linux') return `placement needs Linux (this is ${process.platform})`;
  if (availableParallelism() < 2) return `placement needs 2 cores (${availableParallelism()} here)`;
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
  } catch {
    return 'placement needs taskset (util-linux)';
  }
  return null;
}

/** Pins every thread of process `pid` to `cpu` (threads it makes later inherit it). */
export function pinProcess(pid: number, cpu: number): void {
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

/** Pins one thread (a Linux task id) to `cpu`; false if the thread is gone. */
export function pinThread(tid: number, cpu: number): boolean {
  try {
    execFileSync('taskset', ['-p', '-c', String(cpu), String(tid)], { stdio: 'ignore' });
    return true;
  } catch (e) {
    // a replica whose guest ended leaves: its thread may go between the listing and the call
    if (!existsSync(`/proc/${tid}`)) return false;
    throw e;
  }
}

/** The CPU list process `pid` may run on, as taskset prints it ("0,1", "0-1"). */
export function affinityOf(pid: number): string {
  return execFileSync('taskset', ['-c', '-p', String(pid)], { encoding: 'utf8' }).split(':').at(-1)!.trim();
}

/** Restores a CPU list taken by affinityOf to every thread of `pid`. */
export function restoreAffinity(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

/** The task ids of process `pid`'s replica worker threads (those named REPLICA_THREAD_NAME). */
export function replicaThreads(pid: number): number[] {
  const dir = `/proc/${pid}/task`;
  if (!existsSync(dir)) return [];
  const out: number[] = [];
  for (const t of readdirSync(dir)) {
    try {
      if (readFileSync(`${dir}/${t}/comm`, 'utf8').trim() === REPLICA_THREAD_NAME) out.push(Number(t));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

let clockTicksPerS: number | null = null;
const ticksPerS = (): number => {
  if (clockTicksPerS === null) {
    try {
      clockTicksPerS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicksPerS = 100;
    }
  }
  return clockTicksPerS;
};

/**
 * CPU time, in ms, user plus system, of process `pid` (all its threads, the
 * ones that ended included) or of one of its threads `tid`, from
 * /proc/PID/stat (fields 14 utime and 15 stime, in clock ticks: 10 ms
 * resolution at the usual 100 Hz). NaN when it cannot be read.
 */
export function cpuMs(pid: number, tid?: number): number {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    // the command name, in parentheses, may hold spaces: count fields after it (field 3 is index 0)
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / ticksPerS();
  } catch {
    return NaN;
  }
}

/**
 * How long, in ms, thread `tid` of `pid` has run and has waited on a run
 * queue (runnable, but its core busy with another task), from
 * /proc/PID/task/TID/schedstat (ns). Null when it cannot be read (the thread
 * is gone, or the kernel keeps no schedstats).
 */
export function schedMs(pid: number, tid: number): { runMs: number; waitMs: number } | null {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
    return { runMs: run! / 1e6, waitMs: wait! / 1e6 };
  } catch {
    return null;
  }
}
