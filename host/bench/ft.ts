// `ftvm bench ft`: what fault tolerance costs and how fast it heals, measured
// on a local cluster of real host processes on loopback.
//
// Variants side by side: "ft" (three hosts, a primary and a backup) and
// "unreplicated" (one host, the same runtime with no backup: outputs leave at
// once). Measured:
//   - kv throughput under a closed-loop load, and its ratio;
//   - a CPU-bound guest's run time (hash), and its ratio;
//   - the same guest under CPU limits of 50% and 25% (run time ratios to 100%);
//   - output latency of one request at a time (p50, p99), and what FT adds;
//   - log bandwidth idle and under load, and the backup's lag (p50, p99);
//   - failover time from kill -9 of the primary's host to the first answer
//     of the new primary (p50, p99 over trials);
//   - backup re-creation time and the primary's pause for 16 and 64 MiB guests.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { cpus } from 'node:os';
import type { FtClient } from '../cluster/client.ts';
import { LocalCluster, eventually } from '../cluster/local.ts';
import { guestPath } from '../runtime/samples.ts';

export interface FtBenchOptions {
  /** seconds of load per throughput run (default 3) */
  seconds?: number;
  /** failover trials (default 7) */
  trials?: number;
  quick?: boolean;
  log?: (line: string) => void;
}

type VmInfo = { name: string; role: string; gen: number; partner: string | null; alone: boolean; acked: number; lagMs: number; logBytes: number; ended: boolean; recreate: { memoryBytes: number; pauseMs: number; ms: number | null } | null };

const quantile = (xs: number[], q: number): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

async function vmOn(c: FtClient, vm: string): Promise<VmInfo | undefined> {
  return ((await c.status()).vms as VmInfo[]).find((v) => v.name === vm);
}

async function cluster(n: number): Promise<LocalCluster> {
  const c = new LocalCluster(['--fail-ms', '400', '--heartbeat-ms', '40']);
  const ids = Array.from({ length: n }, (_, i) => `h${i + 1}`);
  await Promise.all(ids.map((id) => c.add(id)));
  await c.linked();
  return c;
}

/** Answers to requests by id: each request's text starts with its id. */
function answers(c: FtClient): Map<string, number> {
  const got = new Map<string, number>();
  c.on('recv', (r) => got.set(Buffer.from(r.data).toString().split(' ')[0]!, performance.now()));
  return got;
}

/** Closed loop: `window` requests in flight for `seconds`; requests answered per second. */
async function throughput(c: FtClient, vm: string, seconds: number, window = 32): Promise<number> {
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
  const rate = done / ((performance.now() - t0) / 1000);
  c.off('recv', onRecv);
  await new Promise((r) => setTimeout(r, 200)); // let the tail drain
  return rate;
}

/** One request at a time: round-trip times in ms. */
async function latencies(c: FtClient, vm: string, count: number): Promise<number[]> {
  const got = answers(c);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const id = `l${i}`;
    const t0 = performance.now();
    c.send(vm, `${id} GET key${i % 100}`);
    await eventually(`answer ${id}`, () => (got.has(id) ? true : undefined), 10_000);
    out.push(got.get(id)! - t0);
  }
  return out;
}

async function cpuBound(c: FtClient, vm: string, args: string[], cpuPercent = 100): Promise<number> {
  const hash = new Uint8Array(readFileSync(guestPath('hash.wasm')));
  const t0 = performance.now();
  await c.start(vm, hash, { args, cpuPercent });
  // the primary's status says when the guest ended
  await eventually('the CPU-bound guest ends', async () => ((await vmOn(c, vm))?.ended ? true : undefined), 120_000);
  return performance.now() - t0;
}

export async function benchFt(opts: FtBenchOptions = {}): Promise<Record<string, unknown>> {
  const say = opts.log ?? (() => {});
  const seconds = opts.quick ? 1 : (opts.seconds ?? 3);
  const trials = opts.quick ? 2 : (opts.trials ?? 7);
  const kv = new Uint8Array(readFileSync(guestPath('kv.wasm')));
  const hashArgs = opts.quick ? ['200'] : ['1500'];
  /** long enough that starting a VM and noticing its end weigh little against the run */
  const limitArgs = opts.quick ? ['400'] : ['4000'];
  const result: Record<string, unknown> = {};
  /** Output latency of one request at a time on the kv VM, then a CPU-bound guest's run time, named for the variant. */
  const latencyAndCpu = async (a: FtClient, variant: string): Promise<Record<string, number>> => {
    const lat = await latencies(a, 'kv', opts.quick ? 100 : 400);
    return {
      [`output_latency_ms_p50_${variant}`]: round(quantile(lat, 0.5), 3),
      [`output_latency_ms_p99_${variant}`]: round(quantile(lat, 0.99), 3),
      [`cpu_bound_ms_${variant}`]: round(await cpuBound(a, 'cpu', hashArgs)),
    };
  };

  // ---- unreplicated: one host ----
  say('unreplicated: one host');
  {
    const c = await cluster(1);
    try {
      const a = await c.client('h1');
      await a.start('kv', kv);
      result.kv_requests_per_s_unreplicated = round(await throughput(a, 'kv', seconds));
      Object.assign(result, await latencyAndCpu(a, 'unreplicated'));
    } finally {
      await c.stop();
    }
  }

  // ---- ft: three hosts ----
  say('ft: three hosts');
  {
    const c = await cluster(3);
    try {
      const a = await c.client('h1');
      await a.start('kv', kv);
      const before = (await vmOn(a, 'kv'))!.logBytes;
      await new Promise((r) => setTimeout(r, 1000));
      result.log_bytes_per_s_idle = round(((await vmOn(a, 'kv'))!.logBytes - before) / 1);
      const lags: number[] = [];
      const sampler = setInterval(() => void vmOn(a, 'kv').then((v) => v && lags.push(v.lagMs)), 50);
      const b0 = (await vmOn(a, 'kv'))!.logBytes;
      const t0 = performance.now();
      result.kv_requests_per_s_ft = round(await throughput(a, 'kv', seconds));
      result.log_bytes_per_s_load = round(((await vmOn(a, 'kv'))!.logBytes - b0) / ((performance.now() - t0) / 1000));
      clearInterval(sampler);
      result.lag_ms_p50 = round(quantile(lags, 0.5), 3);
      result.lag_ms_p99 = round(quantile(lags, 0.99), 3);
      Object.assign(result, await latencyAndCpu(a, 'ft'));
      // the CPU limit: the same guest with a share of one core, medians of 3 runs each
      for (const pct of [100, 50, 25]) {
        say(`cpu limit ${pct}%`);
        const runs: number[] = [];
        for (let r = 0; r < 3; r++) runs.push(await cpuBound(a, `cpu${pct}-${r}`, limitArgs, pct));
        result[`cpu_limit_${pct}_ms`] = round(quantile(runs, 0.5));
      }
      result.cpu_limit_50_time_ratio = round((result.cpu_limit_50_ms as number) / (result.cpu_limit_100_ms as number), 3);
      result.cpu_limit_25_time_ratio = round((result.cpu_limit_25_ms as number) / (result.cpu_limit_100_ms as number), 3);
    } finally {
      await c.stop();
    }
  }
  result.kv_throughput_ratio = round((result.kv_requests_per_s_ft as number) / (result.kv_requests_per_s_unreplicated as number), 3);
  result.cpu_bound_ratio = round((result.cpu_bound_ms_unreplicated as number) / (result.cpu_bound_ms_ft as number), 3);
  result.added_output_latency_ms_p50 = round((result.output_latency_ms_p50_ft as number) - (result.output_latency_ms_p50_unreplicated as number), 3);
  result.added_output_latency_ms_p99 = round((result.output_latency_ms_p99_ft as number) - (result.output_latency_ms_p99_unreplicated as number), 3);

  // ---- failover ----
  const failovers: number[] = [];
  for (let t = 0; t < trials; t++) {
    say(`failover trial ${t + 1}/${trials}`);
    const c = await cluster(3);
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

  // ---- backup re-creation of a large guest ----
  for (const mib of opts.quick ? [16] : [16, 64]) {
    say(`re-creation of a ${mib} MiB guest`);
    const c = await cluster(3);
    try {
      const a = await c.client('h1');
      await a.start('kv', kv);
      // fill memory with 60 KiB values
      const value = 'x'.repeat(60 * 1024);
      const n = Math.ceil((mib * 1024 * 1024) / value.length);
      const got = answers(a);
      for (let i = 0; i < n; i++) {
        a.send('kv', `f${i} SET big${i} ${value}`);
        if (i % 32 === 31) await eventually('fill', () => (got.has(`f${i}`) ? true : undefined), 30_000);
      }
      await eventually('fill', () => (got.has(`f${n - 1}`) ? true : undefined), 30_000);
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
  result.machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, node ${process.version}`;
  return result;
}

export function formatFtReport(r: Record<string, unknown>): string {
  const rows = Object.entries(r).map(([k, v]) => `| ${k} | ${String(v)} |`);
  return ['| quantity | value |', '|---|---|', ...rows].join('\n');
}
