// `ftvm bench ft`: what fault tolerance costs and how fast it heals, measured
// on a local cluster of real host processes on loopback.
//
// Variants side by side: "ft" (three hosts, a primary and a backup) and
// "unreplicated" (one host, the same runtime with no backup: outputs leave at
// once). Measured:
//   - kv throughput under a closed-loop load, and its ratio (median of 3);
//   - the primary host's CPU time per kv request (/proc/PID/stat), and the
//     share of it its main thread spends (the rest is the replica's thread);
//   - a CPU-bound guest's run time (hash, median of 3), and its ratio;
//   - the same guest under CPU limits of 50% and 25% (run time ratios to 100%);
//   - output latency of one request at a time (p50, p99), and what FT adds;
//   - log bandwidth idle and under load, and the backup's lag (p50, p99);
//   - failover time from kill -9 of the primary's host to the first answer
//     of the new primary (p50, p99 over trials);
//   - backup re-creation time and the primary's pause for 16 and 64 MiB guests;
//   - live migration of the primary of 16 and 64 MiB guests (medians over
//     trials): to a host without a replica (a backup made there from a
//     snapshot, then the planned switch), the primary's pause for the
//     snapshot and for the switch, and the whole migration; to its backup's
//     host (the switch alone), the switch's pause.
//
// Placement (host/bench/pin.ts): on Linux with 2 cores or more, the live
// replica runs on core 0 and everything else on core 1, in both variants:
// with `pin: 'process'` (the default) the primary's whole host process is on
// core 0; with 'thread' only the replica's worker thread is, and its host's
// main thread is with the other processes. Measured on 2 cores, 'process' is
// the better of the two: with 'thread', core 1 carries the backup's replay,
// both hosts' main threads and the client, the backup falls behind and the
// primary is throttled to its pace (README, "Fault tolerance"). The failover
// and re-creation runs are not placed: their hosts may use every core.

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { cpus } from 'node:os';
import type { FtClient } from '../cluster/client.ts';
import { LocalCluster, eventually, freePort } from '../cluster/local.ts';
import { guestPath } from '../runtime/samples.ts';
import { markdownTable } from './table.ts';
import { affinityOf, cpuMs, pinProcess, pinThread, pinUnavailable, replicaThreads, restoreAffinity, schedMs, type PinMode } from './pin.ts';

const execFileP = promisify(execFile);

export interface FtBenchOptions {
  /** seconds of load per throughput run (default 3) */
  seconds?: number;
  /** failover trials (default 7) */
  trials?: number;
  quick?: boolean;
  /** where the live replica runs (default 'process'; see the header) */
  pin?: PinMode;
  /** the CPU-bound guest's rounds (hash N; default 15000, about 1.3 s on the README's machine) */
  hashRounds?: number;
  /** runs of the CPU-bound guest and of the kv load per variant, medians reported (default 3) */
  runs?: number;
  /** which parts to run (default all) */
  parts?: ('ratios' | 'limits' | 'failover' | 'recreate' | 'migrate')[];
  /** a directory: the primary's host runs under `node --cpu-prof` and writes its profile there */
  profileDir?: string;
  log?: (line: string) => void;
}

type VmInfo = { name: string; role: string; gen: number; partner: string | null; alone: boolean; acked: number; lagMs: number; logBytes: number; ended: boolean; recreate: { memoryBytes: number; pauseMs: number; ms: number | null } | null };

const quantile = (xs: number[], q: number): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const median = (xs: number[]): number => quantile(xs, 0.5);
const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

async function vmOn(c: FtClient, vm: string): Promise<VmInfo | undefined> {
  return ((await c.status()).vms as VmInfo[]).find((v) => v.name === vm);
}

/** Polls `fn` every `everyMs` (finer than `eventually`, for timing a run's end), at most `ms`. */
async function until<T>(what: string, fn: () => Promise<T | undefined>, ms: number, everyMs = 10): Promise<T> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

/** A local cluster of `n` hosts; h1, where the bench starts its VMs, holds the live replicas. */
class Bench {
  constructor(
    readonly c: LocalCluster,
    readonly pin: PinMode,
  ) {}

  /**
   * `free`: a CPU list every host may use instead (the failover and
   * re-creation runs measure healing, where the survivors should not be
   * held on one core while the other idles).
   */
  static async up(n: number, pin: PinMode, profileDir?: string, free?: string | null): Promise<Bench> {
    const c = new LocalCluster(['--fail-ms', '400', '--heartbeat-ms', '40']);
    const ids = Array.from({ length: n }, (_, i) => `h${i + 1}`);
    // the bench process is on core 1 already: every host starts there
    await Promise.all(ids.map((id) => c.add(id, [], id === 'h1' && profileDir ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profileDir] } : {})));
    if (free) {
      for (const h of c.hosts.values()) restoreAffinity(h.proc.pid!, free);
      pin = 'none';
    }
    if (pin === 'process') pinProcess(c.host('h1').proc.pid!, 0);
    await c.linked();
    return new Bench(c, pin);
  }

  get pid(): number {
    return this.c.host('h1').proc.pid!;
  }

  /** h1's replica threads now: pass to placeNew after starting a VM. */
  replicas(): Set<number> {
    return new Set(replicaThreads(this.pid));
  }

  /**
   * After a VM started on h1: waits (bounded) for its replica's thread to
   * appear (it names itself once its worker loads) and returns its task id;
   * with 'thread', moves it to core 0 (it was made by the main thread, on core 1).
   */
  async placeNew(before: Set<number>): Promise<number | undefined> {
    const tid = await until('the replica thread', async () => replicaThreads(this.pid).find((t) => !before.has(t)), 5_000, 1).catch(() => undefined);
    if (tid !== undefined && this.pin === 'thread') pinThread(tid, 0);
    return tid;
  }

  /**
   * CPU ms of h1's whole process (every thread, ended ones included) and of its
   * main thread alone (the task whose id is the process's: the event loop that
   * handles heartbeats, log frames, acks and client traffic).
   */
  cpu(): { all: number; main: number } {
    return { all: cpuMs(this.pid), main: cpuMs(this.pid, this.pid) };
  }

  async stop(profiled: boolean): Promise<void> {
    if (profiled) await this.c.terminate('h1');
    await this.c.stop();
  }
}

/**
 * A way to load the kv VM. The bench needs two things of it: a closed-loop
 * load for `seconds` (how many requests were answered, in how many ms) and
 * the round-trip times of one request at a time. FtClient's implementation
 * is below; another client (redis-benchmark against a published port, say)
 * fits by implementing the same two calls for a host:port.
 */
export interface KvDriver {
  load(seconds: number): Promise<{ answered: number; ms: number }>;
  latencies(count: number): Promise<number[]>;
}

/** The kv load over ftvm's own client protocol: `window` SETs in flight, each answered request replaced by the next. */
export function ftClientKv(c: FtClient, vm: string, window = 32): KvDriver {
  return {
    async load(seconds) {
      let n = 0;
      let done = 0;
      const sendOne = (): void => {
        const i = n++;
        c.send(vm, `t${i} SET key${i % 1000} value${i}`);
      };
      const onRecv = (): void => {
        done++;
        sendOne();
      };
      c.on('recv', onRecv);
      for (let i = 0; i < window; i++) sendOne();
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const answered = done;
      const ms = performance.now() - t0;
      c.off('recv', onRecv);
      // let the tail drain (bounded) before anything else is measured
      const inFlight = n - done;
      let tail = 0;
      const onTail = (): void => void tail++;
      c.on('recv', onTail);
      await eventually('the load drains', () => (tail >= inFlight ? true : undefined), 10_000).catch(() => undefined);
      c.off('recv', onTail);
      return { answered, ms };
    },
    async latencies(count) {
      const out: number[] = [];
      for (let i = 0; i < count; i++) {
        const id = `l${i}`;
        const t0 = performance.now();
        const at = await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => {
            c.off('recv', onRecv);
            reject(new Error(`no answer to ${id} within 10 s`));
          }, 10_000);
          const onRecv = (r: { data: Uint8Array }): void => {
            if (Buffer.from(r.data).toString().split(' ')[0] !== id) return;
            const t = performance.now();
            clearTimeout(timer);
            c.off('recv', onRecv);
            resolve(t);
          };
          c.on('recv', onRecv);
          c.send(vm, `${id} GET key${i % 100}`);
        });
        out.push(at - t0);
      }
      return out;
    },
  };
}

/**
 * Debian's redis-benchmark against host:port: its CSV line for one test
 * (requests per second and latency quantiles in ms, as the client saw them).
 * Errors: an Error naming the exit status and stderr when it fails.
 */
async function redisBenchmark(addr: string, port: number, args: string[]): Promise<{ rps: number; p50Ms: number; p99Ms: number }> {
  const { stdout } = await execFileP('redis-benchmark', ['-h', addr, '-p', String(port), '--csv', '-q', ...args], { timeout: 300_000 }).catch((e: Error & { stderr?: string }) => {
    throw new Error(`redis-benchmark ${args.join(' ')}: ${e.message} ${e.stderr ?? ''}`);
  });
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  const row = stdout.trim().split('\n').at(-1)!.split(',').map((x) => x.replace(/"/g, ''));
  return { rps: Number(row[1]), p50Ms: Number(row[4]), p99Ms: Number(row[6]) };
}


/** Fills the kv VM's memory to about `mib` MiB with 60 KiB values, 32 requests in flight at most, and waits for every answer. */
async function fillKv(a: FtClient, mib: number): Promise<void> {
  const value = 'x'.repeat(60 * 1024);
  const n = Math.ceil((mib * 1024 * 1024) / value.length);
  const got = answers(a);
  for (let i = 0; i < n; i++) {
    a.send('kv', `f${i} SET big${i} ${value}`);
    if (i % 32 === 31) await eventually('fill', () => (got.has(`f${i}`) ? true : undefined), 30_000);
  }
  await eventually('fill', () => (got.has(`f${n - 1}`) ? true : undefined), 30_000);
}

/** Answers to requests by id: each request's text starts with its id. */
function answers(c: FtClient): Map<string, number> {
  const got = new Map<string, number>();
  c.on('recv', (r) => got.set(Buffer.from(r.data).toString().split(' ')[0]!, performance.now()));
  return got;
}

/**
 * Starts the CPU-bound guest and times it from the start request to the
 * primary's status saying it ended, in ms; with how long its replica's thread
 * ran and how long it waited for its core (runnable, another task on it), the
 * last the bench saw before the thread left (NaN without schedstats), and the
 * same of the backup's replica thread (NaN when there is no backup).
 */
async function cpuBound(
  b: Bench,
  c: FtClient,
  vm: string,
  args: string[],
  cpuPercent = 100,
): Promise<{ ms: number; startedMs: number; runMs: number; waitMs: number; backup: { runMs: number; waitMs: number } }> {
  const hash = new Uint8Array(readFileSync(guestPath('hash.wasm')));
  const before = b.replicas();
  const others = [...b.c.hosts.values()].filter((h) => h.id !== 'h1').map((h) => ({ pid: h.proc.pid!, before: new Set(replicaThreads(h.proc.pid!)) }));
  const t0 = performance.now();
  // on h1, whose replica thread the bench watches: placement would pick a host without the kv VM's primary
  await c.start(vm, hash, { args, cpuPercent, host: 'h1' });
  const tid = await b.placeNew(before);
  const startedMs = performance.now() - t0;
  let sched = { runMs: NaN, waitMs: NaN };
  let backup: { pid: number; tid: number } | null = null;
  let backupSched = { runMs: NaN, waitMs: NaN };
  await until(
    'the CPU-bound guest ends',
    async () => {
      const s = tid === undefined ? null : schedMs(b.pid, tid);
      if (s) sched = s;
      if (!backup) {
        for (const o of others) {
          const t = replicaThreads(o.pid).find((x) => !o.before.has(x));
          if (t !== undefined) backup = { pid: o.pid, tid: t };
        }
      }
      const bs = backup ? schedMs(backup.pid, backup.tid) : null;
      if (bs) backupSched = bs;
      return (await vmOn(c, vm))?.ended ? true : undefined;
    },
    120_000,
  );
  return { ms: performance.now() - t0, startedMs, ...sched, backup: backupSched };
}

/**
 * Runs the parts asked for (default all) on fresh local clusters and returns
 * every quantity by name (the README's table and `formatFtReport` list
 * them): times in ms (`_ms`), rates per second, CPU in µs per request or ms
 * per second, shares in [0, 1], ratios FT / unreplicated (throughput) and
 * unreplicated / FT (time), plus `placement` and `machine` as text. Kills
 * every host it started, and gives the bench process its CPU list back,
 * whatever happens. Throws the first error of a cluster (a host that does
 * not start within 30 s, a guest that does not end within 120 s).
 */
export async function benchFt(opts: FtBenchOptions = {}): Promise<Record<string, unknown>> {
  const say = opts.log ?? (() => {});
  const seconds = opts.quick ? 1 : (opts.seconds ?? 3);
  const trials = opts.quick ? 2 : (opts.trials ?? 7);
  const runs = opts.quick ? 1 : (opts.runs ?? 3);
  const parts = new Set(opts.parts ?? ['ratios', 'limits', 'failover', 'recreate', 'migrate']);
  const kv = new Uint8Array(readFileSync(guestPath('kv.wasm')));
  const kvresp = new Uint8Array(readFileSync(guestPath('kvresp.wasm')));
  /** redis-benchmark is there (Debian's redis-tools; `make redis-tools`): the kv load through TCP too */
  const tcpClients = await execFileP('redis-benchmark', ['--version']).then(() => true, () => false);
  if (!tcpClients) say('no redis-benchmark (make redis-tools): the kv load through TCP is left out');
  const hashArgs = [String(opts.hashRounds ?? (opts.quick ? 1000 : 15000))];
  /** long enough that starting a VM and noticing its end weigh little against the run */
  const limitArgs = opts.quick ? ['400'] : ['4000'];
  const result: Record<string, unknown> = {};

  // ---- placement: the bench and every host on core 1; the live replica (or its host) goes to core 0 ----
  let pin: PinMode = opts.pin ?? 'process';
  const why = pin === 'none' ? null : pinUnavailable();
  if (why) {
    say(`no placement: ${why}`);
    pin = 'none';
  }
  result.placement =
    pin === 'thread'
      ? 'thread: the live replica worker on core 0; its host main thread, the other hosts and the client on core 1'
      : pin === 'process'
        ? 'process: the live replica host process on core 0; the other hosts and the client on core 1'
        : `none${why ? ` (${why})` : ''}: the kernel schedules`;
  const ownAffinity = pin === 'none' ? null : affinityOf(process.pid);
  if (pin !== 'none') pinProcess(process.pid, 1);
  try {
    if (parts.has('ratios')) await ratios();
    if (parts.has('limits')) await limits();
    if (parts.has('failover')) await failover();
    if (parts.has('recreate')) await recreate();
    if (parts.has('migrate')) await migrate();
  } finally {
    if (ownAffinity) restoreAffinity(process.pid, ownAffinity);
  }
  result.machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, node ${process.version}`;
  return result;

  /** kv load, latency and the CPU-bound guest, on one host and on three. */
  async function ratios(): Promise<void> {
    for (const [variant, n] of [['unreplicated', 1], ['ft', 3]] as const) {
      say(`${variant}: ${n} host${n > 1 ? 's' : ''}`);
      const b = await Bench.up(n, pin, opts.profileDir);
      try {
        const a = await b.c.client('h1');
        const before = b.replicas();
        await a.start('kv', kv);
        await b.placeNew(before);
        const driver = ftClientKv(a, 'kv');
        if (variant === 'ft') {
          const before = (await vmOn(a, 'kv'))!.logBytes;
          await new Promise((r) => setTimeout(r, 1000));
          result.log_bytes_per_s_idle = round(((await vmOn(a, 'kv'))!.logBytes - before) / 1);
        }
        const lags: number[] = [];
        const sampler = variant === 'ft' ? setInterval(() => void vmOn(a, 'kv').then((v) => v && lags.push(v.lagMs)), 50) : null;
        const rates: number[] = [];
        const usPerRequest: number[] = [];
        const mainShare: number[] = [];
        const logRates: number[] = [];
        for (let r = 0; r < runs; r++) {
          const b0 = variant === 'ft' ? (await vmOn(a, 'kv'))!.logBytes : 0;
          const cpu0 = b.cpu();
          const { answered, ms } = await driver.load(seconds);
          const cpu1 = b.cpu();
          if (variant === 'ft') logRates.push(((await vmOn(a, 'kv'))!.logBytes - b0) / (ms / 1000));
          rates.push(answered / (ms / 1000));
          usPerRequest.push(((cpu1.all - cpu0.all) * 1000) / answered);
          mainShare.push((cpu1.main - cpu0.main) / (cpu1.all - cpu0.all));
        }
        if (sampler) clearInterval(sampler);
        result[`kv_requests_per_s_${variant}`] = round(median(rates));
        result[`primary_cpu_us_per_request_${variant}`] = round(median(usPerRequest), 1);
        result[`primary_main_thread_cpu_share_${variant}`] = round(median(mainShare), 3);
        if (variant === 'ft') {
          result.log_bytes_per_s_load = round(median(logRates));
          result.lag_ms_p50 = round(quantile(lags, 0.5), 3);
          result.lag_ms_p99 = round(quantile(lags, 0.99), 3);
        }
        const lat = await driver.latencies(opts.quick ? 100 : 400);
        result[`output_latency_ms_p50_${variant}`] = round(quantile(lat, 0.5), 3);
        result[`output_latency_ms_p99_${variant}`] = round(quantile(lat, 0.99), 3);
        // the same through TCP with a real client: redis-benchmark against kvresp on a published port of h1
        if (tcpClients) {
          const port = await freePort();
          const before = b.replicas();
          await a.start('kvresp', kvresp, { publish: [port] });
          await b.placeNew(before);
          const addr = b.c.host('h1').public;
          await until('the published port', async () => (await redisBenchmark(addr, port, ['-t', 'ping', '-n', '10']).then(() => true, () => undefined)), 10_000, 100);
          const tput: number[] = [];
          const tcpLat: { p50Ms: number; p99Ms: number }[] = [];
          for (let r = 0; r < runs; r++) {
            tput.push((await redisBenchmark(addr, port, ['-t', 'set', '-n', String(opts.quick ? 20_000 : 200_000), '-P', '16', '-c', '8'])).rps);
            tcpLat.push(await redisBenchmark(addr, port, ['-t', 'get', '-n', String(opts.quick ? 500 : 4000), '-P', '1', '-c', '1']));
          }
          result[`kv_tcp_requests_per_s_${variant}`] = round(median(tput));
          result[`kv_tcp_latency_ms_p50_${variant}`] = round(median(tcpLat.map((x) => x.p50Ms)), 3);
          result[`kv_tcp_latency_ms_p99_${variant}`] = round(median(tcpLat.map((x) => x.p99Ms)), 3);
          // (kvresp stays, idle: it waits for clients and computes nothing while the rest is measured)
        }
        const times: number[] = [];
        const mainMsPerS: number[] = [];
        const waitShare: number[] = [];
        const sleepShare: number[] = [];
        const replicaRunMs: number[] = [];
        const startMs: number[] = [];
        const backupRunMs: number[] = [];
        const backupWaitShare: number[] = [];
        for (let r = 0; r < runs; r++) {
          const cpu0 = b.cpu();
          const { ms, startedMs, runMs, waitMs, backup } = await cpuBound(b, a, `cpu${r}`, hashArgs);
          startMs.push(startedMs);
          backupRunMs.push(backup.runMs);
          backupWaitShare.push(backup.waitMs / ms);
          const cpu1 = b.cpu();
          times.push(ms);
          waitShare.push(waitMs / ms);
          sleepShare.push(Math.max(0, 1 - (runMs + waitMs) / ms));
          replicaRunMs.push(runMs);
          // the host's main thread while the guest computes: progress entries, frames, acks
          mainMsPerS.push((cpu1.main - cpu0.main) / (ms / 1000));
        }
        result[`cpu_bound_ms_${variant}`] = round(median(times));
        // from the start request until the live replica's thread is there: a VM's start, not its run
        result[`cpu_bound_start_ms_${variant}`] = round(median(startMs));
        // the live replica's own CPU time for the run: its work, whatever else the cores did
        result[`primary_replica_cpu_ms_cpu_bound_${variant}`] = round(median(replicaRunMs), 1);
        result[`primary_main_thread_cpu_ms_per_s_cpu_bound_${variant}`] = round(median(mainMsPerS), 1);
        if (variant === 'ft') {
          // the backup replays on core 1 with everything else: the primary waits for it (the lag target)
          result.backup_replica_cpu_ms_cpu_bound = round(median(backupRunMs), 1);
          result.backup_replica_runq_wait_share_cpu_bound = round(median(backupWaitShare), 3);
        }
        // the live replica's time runnable but off its core: other tasks on core 0 (another user of the machine, or its own host)
        result[`primary_replica_runq_wait_share_cpu_bound_${variant}`] = round(median(waitShare), 3);
        // neither running nor runnable: throttled for the backup's lag, stalled, or (briefly) starting and ending
        result[`primary_replica_asleep_share_cpu_bound_${variant}`] = round(median(sleepShare), 3);
      } finally {
        await b.stop(!!opts.profileDir);
      }
    }
    result.cpu_bound_rounds = Number(hashArgs[0]);
    result.kv_throughput_ratio = round((result.kv_requests_per_s_ft as number) / (result.kv_requests_per_s_unreplicated as number), 3);
    result.cpu_bound_ratio = round((result.cpu_bound_ms_unreplicated as number) / (result.cpu_bound_ms_ft as number), 3);
    result.added_output_latency_ms_p50 = round((result.output_latency_ms_p50_ft as number) - (result.output_latency_ms_p50_unreplicated as number), 3);
    result.added_output_latency_ms_p99 = round((result.output_latency_ms_p99_ft as number) - (result.output_latency_ms_p99_unreplicated as number), 3);
    if (tcpClients) {
      result.kv_tcp_throughput_ratio = round((result.kv_tcp_requests_per_s_ft as number) / (result.kv_tcp_requests_per_s_unreplicated as number), 3);
      result.added_tcp_latency_ms_p50 = round((result.kv_tcp_latency_ms_p50_ft as number) - (result.kv_tcp_latency_ms_p50_unreplicated as number), 3);
    }
  }

  /** The CPU limit: the same guest with a share of one core, medians of 3 runs each, under FT. */
  async function limits(): Promise<void> {
    const b = await Bench.up(3, pin);
    try {
      const a = await b.c.client('h1');
      for (const pct of [100, 50, 25]) {
        say(`cpu limit ${pct}%`);
        const times: number[] = [];
        for (let r = 0; r < 3; r++) times.push((await cpuBound(b, a, `cpu${pct}-${r}`, limitArgs, pct)).ms);
        result[`cpu_limit_${pct}_ms`] = round(median(times));
      }
      result.cpu_limit_50_time_ratio = round((result.cpu_limit_50_ms as number) / (result.cpu_limit_100_ms as number), 3);
      result.cpu_limit_25_time_ratio = round((result.cpu_limit_25_ms as number) / (result.cpu_limit_100_ms as number), 3);
    } finally {
      await b.stop(false);
    }
  }

  async function failover(): Promise<void> {
    const failovers: number[] = [];
    for (let t = 0; t < trials; t++) {
      say(`failover trial ${t + 1}/${trials}`);
      const b = await Bench.up(3, pin, undefined, ownAffinity);
      const { c } = b;
      try {
        const a = await c.client('h1');
        await a.start('kv', kv);
        const client = await c.client('h3');
        const got = answers(client);
        let i = 0;
        const ping = setInterval(() => client.send('kv', `p${i++} SET key value`), 2);
        await eventually('pings answered', () => (got.size > 20 ? true : undefined));
        await c.kill('h1');
        const killedAt = performance.now();
        const firstAfter = i;
        // the first answer to a request sent after the kill comes from the new primary
        const first = await eventually(
          'an answer from the new primary',
          () => {
            let best = Infinity;
            for (const [id, at] of got) if (Number(id.slice(1)) >= firstAfter && at < best) best = at;
            return best < Infinity ? best : undefined;
          },
          20_000,
        );
        clearInterval(ping);
        failovers.push(first - killedAt);
      } finally {
        await c.stop();
      }
    }
    result.failover_trials = failovers.length;
    result.failover_ms_p50 = round(quantile(failovers, 0.5));
    result.failover_ms_p99 = round(quantile(failovers, 0.99));
  }

  async function recreate(): Promise<void> {
    for (const mib of opts.quick ? [16] : [16, 64]) {
      say(`re-creation of a ${mib} MiB guest`);
      const b = await Bench.up(3, pin, undefined, ownAffinity);
      const { c } = b;
      try {
        const a = await c.client('h1');
        await a.start('kv', kv);
        await fillKv(a, mib);
        await c.kill('h2');
        const v = await eventually(
          'a new backup',
          async () => {
            const x = await vmOn(a, 'kv');
            return x?.recreate?.ms != null ? x : undefined;
          },
          60_000,
        );
        result[`recreate_${mib}mib_memory_bytes`] = v.recreate!.memoryBytes;
        result[`recreate_${mib}mib_ms`] = round(v.recreate!.ms!);
        result[`recreate_${mib}mib_primary_pause_ms`] = round(v.recreate!.pauseMs, 3);
      } finally {
        await c.stop();
      }
    }
  }

  async function migrate(): Promise<void> {
    const moves = opts.quick ? 1 : 3;
    for (const mib of opts.quick ? [16] : [16, 64]) {
      say(`live migration of a ${mib} MiB guest`);
      const b = await Bench.up(3, 'none', undefined, ownAffinity);
      const { c } = b;
      try {
        const a = await c.client('h1');
        await a.start('kv', kv);
        await fillKv(a, mib);
        const ask = async (to: string): Promise<Migrated> => {
          // a migration starts from a VM running with its backup in place: asked again while the last one's new backup comes up
          return eventually(
            `a migration of the primary to ${to}`,
            async () => {
              const r = await fetch(`${c.host('h1').api}/v1/vms/kv/migrate`, { method: 'POST', headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ to }) });
              const j = (await r.json()) as Migrated & { error?: { code: string; message: string } };
              if (r.status === 200) return j;
              if (j.error?.code !== 'FTVM_ERR_CONFLICT') throw new Error(`migration to ${to}: ${r.status} ${JSON.stringify(j)}`);
              return undefined;
            },
            120_000,
            50,
          );
        };
        let where = (await vmOn(a, 'kv'))!;
        await eventually('a backup in place', async () => ((where = (await vmOn(a, 'kv'))!).partner && !where.alone && where.acked >= 0 ? true : undefined), 60_000);
        let primary = 'h1';
        let backup = where.partner!;
        const far: Migrated[] = [];
        const swap: Migrated[] = [];
        for (let t = 0; t < moves; t++) {
          // to the host with no replica: a backup from a snapshot there, then the switch
          const third = ['h1', 'h2', 'h3'].find((h) => h !== primary && h !== backup)!;
          const m = await ask(third);
          far.push(m);
          primary = m.primary;
          backup = m.backup ?? backup;
          // to the backup's host: the switch alone (the two swap)
          const s = await ask(backup);
          swap.push(s);
          [primary, backup] = [s.primary, s.backup ?? primary];
        }
        result[`migrate_${mib}mib_trials`] = moves;
        result[`migrate_${mib}mib_ms_p50`] = round(median(far.map((m) => m.ms)));
        result[`migrate_${mib}mib_snapshot_pause_ms_p50`] = round(median(far.map((m) => m.snapshotPauseMs)), 3);
        result[`migrate_${mib}mib_switch_pause_ms_p50`] = round(median(far.map((m) => m.switchPauseMs)), 3);
        result[`migrate_${mib}mib_primary_pause_ms_p50`] = round(median(far.map((m) => m.snapshotPauseMs + m.switchPauseMs)), 3);
        result[`migrate_swap_${mib}mib_switch_pause_ms_p50`] = round(median(swap.map((m) => m.switchPauseMs)), 3);
      } finally {
        await c.stop();
      }
    }
  }
}

/** What POST /v1/vms/:name/migrate answers (host/cluster/host.ts MigrateResult), the fields the bench reads. */
type Migrated = { primary: string; backup: string | null; ms: number; snapshotPauseMs: number; switchPauseMs: number };

const num = (r: Record<string, unknown>, k: string): string => (r[k] === undefined ? '' : String(r[k]));

/**
 * The report as a Markdown table in the README's layout (quantity,
 * unreplicated, FT, ratio or note), with the goals, followed by every
 * quantity as one line of JSON.
 */
export function formatFtReport(r: Record<string, unknown>): string {
  const goal = (k: string, ok: (x: number) => boolean, text: string): string => (r[k] === undefined ? '' : `${text}: ${ok(r[k] as number) ? 'met' : 'not met'}`);
  const pair = (a: string, b: string): string => (r[a] === undefined ? '' : `${num(r, a)} / ${num(r, b)}`);
  const rows: string[][] = [];
  if (r.kv_requests_per_s_ft !== undefined) {
    rows.push(
      ['kv throughput, requests/s (32 in flight)', num(r, 'kv_requests_per_s_unreplicated'), num(r, 'kv_requests_per_s_ft'), `ratio ${num(r, 'kv_throughput_ratio')} (${goal('kv_throughput_ratio', (x) => x >= 0.8, 'goal >= 0.8')})`],
      ['primary host CPU per kv request, µs', num(r, 'primary_cpu_us_per_request_unreplicated'), num(r, 'primary_cpu_us_per_request_ft'), `main thread's share ${num(r, 'primary_main_thread_cpu_share_unreplicated')} / ${num(r, 'primary_main_thread_cpu_share_ft')}`],
      [`CPU-bound guest (hash ${num(r, 'cpu_bound_rounds')}), ms`, num(r, 'cpu_bound_ms_unreplicated'), num(r, 'cpu_bound_ms_ft'), `ratio ${num(r, 'cpu_bound_ratio')} (${goal('cpu_bound_ratio', (x) => x >= 0.95, 'goal >= 0.95')})`],
      ['of which starting the VM (until its replica thread runs), ms', num(r, 'cpu_bound_start_ms_unreplicated'), num(r, 'cpu_bound_start_ms_ft'), ''],
      ['live replica thread CPU time for the run, ms', num(r, 'primary_replica_cpu_ms_cpu_bound_unreplicated'), num(r, 'primary_replica_cpu_ms_cpu_bound_ft'), `backup's replay: ${num(r, 'backup_replica_cpu_ms_cpu_bound')} ms, waiting for its core ${num(r, 'backup_replica_runq_wait_share_cpu_bound')} of the run`],
      ['primary host main thread while the guest computes, CPU ms/s', num(r, 'primary_main_thread_cpu_ms_per_s_cpu_bound_unreplicated'), num(r, 'primary_main_thread_cpu_ms_per_s_cpu_bound_ft'), ''],
      ['live replica waiting for its core / asleep while the guest computes, share of the run', pair('primary_replica_runq_wait_share_cpu_bound_unreplicated', 'primary_replica_asleep_share_cpu_bound_unreplicated'), pair('primary_replica_runq_wait_share_cpu_bound_ft', 'primary_replica_asleep_share_cpu_bound_ft'), 'asleep: throttled for the lag'],
      ['output latency p50 / p99, ms', pair('output_latency_ms_p50_unreplicated', 'output_latency_ms_p99_unreplicated'), pair('output_latency_ms_p50_ft', 'output_latency_ms_p99_ft'), `added ${pair('added_output_latency_ms_p50', 'added_output_latency_ms_p99')} (${goal('added_output_latency_ms_p50', (x) => x <= 0.5, 'goal p50 <= 0.5')})`],
      ...(r.kv_tcp_requests_per_s_ft === undefined
        ? []
        : [
            ['kv through TCP (redis-benchmark SET -P 16 -c 8, kvresp), requests/s', num(r, 'kv_tcp_requests_per_s_unreplicated'), num(r, 'kv_tcp_requests_per_s_ft'), `ratio ${num(r, 'kv_tcp_throughput_ratio')} (${goal('kv_tcp_throughput_ratio', (x) => x >= 0.8, 'goal >= 0.8')})`],
            ['kv through TCP, client-side latency p50 / p99 (GET, one at a time), ms', pair('kv_tcp_latency_ms_p50_unreplicated', 'kv_tcp_latency_ms_p99_unreplicated'), pair('kv_tcp_latency_ms_p50_ft', 'kv_tcp_latency_ms_p99_ft'), `added p50 ${num(r, 'added_tcp_latency_ms_p50')} (${goal('added_tcp_latency_ms_p50', (x) => x <= 0.5, 'goal <= 0.5')})`],
          ]),
      ['log bandwidth idle / under load, bytes/s', '', pair('log_bytes_per_s_idle', 'log_bytes_per_s_load'), ''],
      ['backup lag p50 / p99, ms', '', pair('lag_ms_p50', 'lag_ms_p99'), goal('lag_ms_p99', (x) => x <= 100, 'goal p99 <= 100')],
    );
  }
  if (r.failover_ms_p50 !== undefined) {
    rows.push(['failover, kill -9 to first answer, p50 / p99 ms', '', pair('failover_ms_p50', 'failover_ms_p99'), `${num(r, 'failover_trials')} trials, --fail-ms 400 (${goal('failover_ms_p50', (x) => x <= 1000, 'goal p50 <= 1000')})`]);
  }
  for (const mib of [16, 64]) {
    if (r[`recreate_${mib}mib_ms`] === undefined) continue;
    rows.push([`backup re-creation, ${mib} MiB: total / primary pause ms`, '', pair(`recreate_${mib}mib_ms`, `recreate_${mib}mib_primary_pause_ms`), mib === 64 ? 'goal <= 2000 / <= 100' : '']);
  }
  for (const mib of [16, 64]) {
    if (r[`migrate_${mib}mib_ms_p50`] === undefined) continue;
    rows.push([
      `live migration of the primary, ${mib} MiB, to a host without a replica: total / primary pause (snapshot + switch) ms, medians`,
      '',
      `${num(r, `migrate_${mib}mib_ms_p50`)} / ${num(r, `migrate_${mib}mib_primary_pause_ms_p50`)} (${num(r, `migrate_${mib}mib_snapshot_pause_ms_p50`)} + ${num(r, `migrate_${mib}mib_switch_pause_ms_p50`)})`,
      `${num(r, `migrate_${mib}mib_trials`)} trials${mib === 64 ? ` (${goal(`migrate_${mib}mib_primary_pause_ms_p50`, (x) => x <= 100, 'goal pause <= 100')})` : ''}`,
    ]);
    rows.push([`live migration of the primary, ${mib} MiB, to its backup's host: switch pause ms, median`, '', num(r, `migrate_swap_${mib}mib_switch_pause_ms_p50`), '']);
  }
  if (r.cpu_limit_50_time_ratio !== undefined) {
    rows.push(['hash 4000 under a CPU limit of 50% / 25%: time ratio to 100%', '', pair('cpu_limit_50_time_ratio', 'cpu_limit_25_time_ratio'), '(2 / 4 for the run itself)']);
  }
  return [`placement: ${String(r.placement)}`, `machine: ${String(r.machine)}`, '', ...markdownTable(['quantity', 'unreplicated', 'FT', ''], rows), '', JSON.stringify(r)].join('\n');
}
