// `ftvm bench isolation`: whether one VM's heavy moments disturb the others,
// measured on a local cluster of three real host processes on loopback.
//
// Several small VMs (the kv sample, primaries on host h1) answer a light load
// (one request in flight per VM, one every 20 ms), while on h1:
//   - "meter": a large new module (a reactor of many functions, never seen
//     before, so not in the metering cache) is metered and started;
//   - "restart": the backup of a large reactor (`memoryMiB`, default 1024, its
//     memory grown and written to nearly all of it at start) is restarted
//     (POST /v1/vms/:name/backup/restart): the primary pauses for a snapshot,
//     whose memory is streamed to a new backup on another host.
// A "quiet" phase before them is the baseline. Per phase, measured:
//   - the longest silence of h1 the other hosts saw (their failure detectors:
//     status().gaps, silences of at least twice the heartbeat period), and the
//     longest silence between any two hosts;
//   - the largest event-loop delay on h1 and on the other hosts (status().loop);
//   - failovers and partners taken for silent among the small VMs (GET /v1/events);
//   - the largest answer time the load saw;
//   - for "restart": the primary's pause and the time until the new backup
//     acknowledged (the 'backup-recreated' event, status().vms[].recreate).
// Each phase runs `runs` times; the table shows medians (and the worst run for
// failovers). The goal (ISSUE 14): no failover, silences under failMs / 4.

import { performance } from 'node:perf_hooks';
import { cpus, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import type { FtClient } from '../cluster/client.ts';
import { LocalCluster, eventually } from '../cluster/local.ts';
import { guestPath } from '../runtime/samples.ts';
import { markdownTable } from './table.ts';
import { name, s32, u32, vec } from './wasm-bytes.ts';

export interface IsolationBenchOptions {
  /** rounds of the three phases (default 3) */
  runs?: number;
  /** the large reactor's memory, MiB (default 1024) */
  memoryMiB?: number;
  /** small kv VMs under load (default 4) */
  smallVms?: number;
  /** functions of the module metered in the "meter" phase (default 60000) */
  functions?: number;
  /** the hosts' failure timeout, ms (default 1000) */
  failMs?: number;
  /** the hosts' heartbeat period, ms (default 50) */
  heartbeatMs?: number;
  quick?: boolean;
  log?: (line: string) => void;
}

/** One phase of one run, as measured. */
export interface PhaseResult {
  phase: 'quiet' | 'meter' | 'restart';
  ms: number;
  /** the longest silence of h1 seen by another host, ms (0: none of at least 2 heartbeat periods) */
  gap_from_primary_host_ms_max: number;
  /** the longest silence between any two hosts, ms (same floor) */
  gap_any_ms_max: number;
  loop_delay_primary_host_ms_max: number;
  loop_delay_other_hosts_ms_max: number;
  /** generations won by backups of the small VMs (failovers) */
  failovers: number;
  /** partners taken for silent among the small VMs */
  partner_silent: number;
  answer_ms_max: number;
  /** restart only: the large VM's primary pause and the time to the new backup's first ack */
  pause_ms?: number;
  recreate_ms?: number;
  memory_bytes?: number;
}

// ---- the guests, written byte by byte (WebAssembly core spec 1.0, section 5.5) ----

const section = (id: number, body: number[]): number[] => [id, ...u32(body.length), ...body];

/**
 * A reactor with no imports: `_initialize` grows its memory by `growPages`
 * pages of 64 KiB and fills all of it with 0x5a (memory.fill), so every page
 * is really there; `ftvm_interrupt` does nothing. `functions` more functions
 * (small loops, kept alive by a table; each with its own constant from
 * `seed`) give the metering pass work in proportion.
 */
export function reactorModule(opts: { growPages: number; functions: number; seed: number }): Uint8Array {
  const n = Math.max(1, opts.functions);
  const parts: number[][] = [[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]];
  // types: 0 () -> (); 1 (i32) -> (); 2 (i32) -> i32
  parts.push(section(1, vec([[0x60, 0, 0], [0x60, 1, 0x7f, 0], [0x60, 1, 0x7f, 1, 0x7f]])));
  parts.push(section(3, [...u32(n + 2), 0, 1, ...new Array<number>(n).fill(2)]));
  parts.push(section(4, vec([[0x70, 0x00, ...u32(n)]])));
  parts.push(section(5, vec([[0x00, 1]])));
  parts.push(section(7, vec([[...name('memory'), 0x02, 0], [...name('_initialize'), 0x00, 0], [...name('ftvm_interrupt'), 0x00, 1]])));
  const elems: number[] = [];
  for (let i = 0; i < n; i++) elems.push(...u32(2 + i));
  parts.push(section(9, [1, 0x00, 0x41, 0, 0x0b, ...u32(n), ...elems]));
  const bodies: number[][] = [];
  // _initialize: drop(memory.grow(growPages)); memory.fill(0, 0x5a, memory.size << 16)
  bodies.push([0, 0x41, ...s32(opts.growPages), 0x40, 0x00, 0x1a, 0x41, 0, 0x41, ...s32(0x5a), 0x3f, 0x00, 0x41, 16, 0x74, 0xfc, 0x0b, 0x00, 0x0b]);
  bodies.push([0, 0x0b]);
  for (let i = 0; i < n; i++) {
    // (param x) (local acc): loop { acc = acc*31 + x + k; x = x - 1; br_if x > 0 }; acc
    const k = (opts.seed * 2654435761 + i) | 0;
    bodies.push([1, 1, 0x7f, 0x03, 0x40, 0x20, 1, 0x41, 31, 0x6c, 0x20, 0, 0x6a, 0x41, ...s32(k), 0x6a, 0x21, 1, 0x20, 0, 0x41, 1, 0x6b, 0x22, 0, 0x41, 0, 0x4a, 0x0d, 0, 0x0b, 0x20, 1, 0x0b]);
  }
  const code = [...u32(bodies.length), ...bodies.flatMap((b) => [...u32(b.length), ...b])];
  parts.push(section(10, code));
  return Uint8Array.from(parts.flat());
}

// ---- measuring ----

type Status = {
  gaps: { peer: string; atMs: number; gapMs: number }[];
  loop: { atMs: number; maxMs: number }[];
  vms: { name: string; role: string; alone: boolean; partner: string | null; recreate: { memoryBytes: number; pauseMs: number; ms: number | null } | null }[];
};

const median = (xs: number[]): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};
const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;

/** A light load: per VM one request in flight, one every `everyMs`; the longest answer time since `reset()`. */
class LightLoad {
  private timer: NodeJS.Timeout | null = null;
  private readonly inFlight = new Map<string, { id: string; at: number }>();
  private n = 0;
  answerMsMax = 0;
  answered = 0;
  constructor(
    private readonly client: FtClient,
    private readonly vms: string[],
    private readonly everyMs = 20,
  ) {
    client.on('recv', (r: { vm: string; data: Uint8Array }) => {
      const f = this.inFlight.get(r.vm);
      if (!f || !Buffer.from(r.data).toString().startsWith(`${f.id} `)) return;
      this.answerMsMax = Math.max(this.answerMsMax, performance.now() - f.at);
      this.answered++;
      this.inFlight.delete(r.vm);
    });
  }
  start(): void {
    this.timer = setInterval(() => {
      const now = performance.now();
      for (const vm of this.vms) {
        const f = this.inFlight.get(vm);
        // one unanswered for long counts as it stands (and is sent again, same id)
        if (f) {
          this.answerMsMax = Math.max(this.answerMsMax, now - f.at);
          if (now - f.at > 1000) this.client.send(vm, `${f.id} GET k${vm}`);
          continue;
        }
        const id = `q${this.n++}`;
        this.inFlight.set(vm, { id, at: now });
        this.client.send(vm, this.n % 2 ? `${id} SET k${vm} v${this.n}` : `${id} GET k${vm}`);
      }
    }, this.everyMs);
  }
  reset(): void {
    this.answerMsMax = 0;
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/** Runs the benchmark; returns { machine, options, phases (every run), medians }. */
export async function benchIsolation(opts: IsolationBenchOptions = {}): Promise<Record<string, unknown>> {
  const say = opts.log ?? (() => {});
  const runs = Math.max(1, opts.runs ?? (opts.quick ? 1 : 3));
  const memoryMiB = opts.memoryMiB ?? (opts.quick ? 256 : 1024);
  const smallVms = opts.smallVms ?? 4;
  const functions = opts.functions ?? (opts.quick ? 20_000 : 60_000);
  const failMs = opts.failMs ?? 1000;
  const heartbeatMs = opts.heartbeatMs ?? 50;
  const c = new LocalCluster(['--fail-ms', String(failMs), '--heartbeat-ms', String(heartbeatMs)]);
  // FTVM_BENCH_LOG_DIR: a directory where each host writes its whole log (<id>.log)
  if (process.env.FTVM_BENCH_LOG_DIR) c.logDir = process.env.FTVM_BENCH_LOG_DIR;
  const phases: PhaseResult[] = [];
  let load: LightLoad | null = null;
  try {
    for (const id of ['h1', 'h2', 'h3']) await c.add(id);
    await c.linked();
    const a = await c.client('h1');
    const clients = new Map<string, FtClient>();
    for (const id of ['h1', 'h2', 'h3']) clients.set(id, await c.client(id));
    const status = async (id: string): Promise<Status> => (await clients.get(id)!.status()) as unknown as Status;
    const api = async (id: string, method: string, path: string): Promise<unknown> => {
      const r = await fetch(`${c.host(id).api}${path}`, { method, headers: { authorization: `Bearer ${c.token}` } });
      const body = r.status === 204 ? null : await r.json();
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(body)}`);
      return body;
    };
    const eventsSince = async (after: Map<string, number>): Promise<{ host: string; e: Record<string, unknown> }[]> => {
      const out: { host: string; e: Record<string, unknown> }[] = [];
      for (const id of ['h1', 'h2', 'h3']) {
        const r = (await api(id, 'GET', `/v1/events?after=${after.get(id) ?? 0}`)) as { events: Record<string, unknown>[]; next: number };
        after.set(id, r.next);
        for (const e of r.events) out.push({ host: id, e });
      }
      return out;
    };
    const kv = new Uint8Array(readFileSync(guestPath('kv.wasm')));
    const small = Array.from({ length: smallVms }, (_, i) => `kv${i + 1}`);
    say(`starting ${smallVms} kv VMs and a ${memoryMiB} MiB reactor, primaries on h1`);
    for (const vm of small) await a.start(vm, kv, { host: 'h1' } as object);
    const bigPages = memoryMiB * 16 - 16; // all but 1 MiB of its limit
    const big = reactorModule({ growPages: bigPages - 1, functions: 1, seed: 1 });
    await a.request({ t: 'start', vm: 'big', module: big, memoryMiB, host: 'h1' }, 120_000);
    const settled = async (what: string): Promise<void> => {
      await eventually(
        what,
        async () => {
          const s = await status('h1');
          const mine = s.vms.filter((v) => v.role === 'primary');
          return mine.length >= smallVms + 1 && mine.every((v) => !v.alone && v.partner) ? true : undefined;
        },
        60_000,
      );
    };
    await settled('every VM with its backup');
    load = new LightLoad(a, small);
    load.start();
    await eventually('the load answered', () => (load!.answered > smallVms * 5 ? true : undefined), 30_000);
    const after = new Map<string, number>();
    await eventsSince(after);

    const measure = async (phase: PhaseResult['phase'], t0: number, t1: number): Promise<PhaseResult> => {
      const st = new Map<string, Status>();
      for (const id of ['h1', 'h2', 'h3']) st.set(id, await status(id));
      const inWin = (atMs: number, slackMs = 0): boolean => atMs >= t0 && atMs <= t1 + slackMs;
      let fromPrimary = 0;
      let any = 0;
      for (const [id, s] of st) {
        for (const g of s.gaps) {
          if (!inWin(g.atMs)) continue;
          any = Math.max(any, g.gapMs);
          if (id !== 'h1' && g.peer === 'h1') fromPrimary = Math.max(fromPrimary, g.gapMs);
        }
      }
      const loopMax = (ids: string[]): number => Math.max(0, ...ids.flatMap((id) => st.get(id)!.loop.filter((l) => inWin(l.atMs, 1000)).map((l) => l.maxMs)));
      const evs = await eventsSince(after);
      const isSmall = (e: Record<string, unknown>): boolean => small.includes(String(e.vm));
      return {
        phase,
        ms: round(t1 - t0),
        gap_from_primary_host_ms_max: round(fromPrimary),
        gap_any_ms_max: round(any),
        loop_delay_primary_host_ms_max: round(loopMax(['h1'])),
        loop_delay_other_hosts_ms_max: round(loopMax(['h2', 'h3'])),
        failovers: evs.filter(({ e }) => e.event === 'generation-won' && e.role === 'backup' && isSmall(e)).length,
        partner_silent: evs.filter(({ e }) => e.event === 'partner-silent' && isSmall(e)).length,
        answer_ms_max: round(load!.answerMsMax),
      };
    };

    for (let run = 0; run < runs; run++) {
      // quiet: the load alone
      say(`run ${run + 1}/${runs}: quiet`);
      load.reset();
      let t0 = Date.now();
      await new Promise((r) => setTimeout(r, 3000));
      phases.push(await measure('quiet', t0, Date.now()));

      say(`run ${run + 1}/${runs}: metering a new module of ${functions} functions`);
      const mod = reactorModule({ growPages: 0, functions, seed: Date.now() % 1_000_000_007 + run });
      load.reset();
      t0 = Date.now();
      await a.request({ t: 'start', vm: `m${run}`, module: mod, host: 'h1' }, 300_000);
      await new Promise((r) => setTimeout(r, 1000));
      phases.push({ ...(await measure('meter', t0, Date.now())) });
      await api('h1', 'DELETE', `/v1/vms/m${run}`).catch(() => {});

      say(`run ${run + 1}/${runs}: restarting the backup of the ${memoryMiB} MiB reactor`);
      load.reset();
      t0 = Date.now();
      await api('h1', 'POST', '/v1/vms/big/backup/restart');
      const done = await eventually(
        'the new backup of the large reactor',
        async () => {
          const v = (await status('h1')).vms.find((x) => x.name === 'big');
          return v && !v.alone && v.partner && v.recreate?.ms != null && v.recreate.memoryBytes > 0 ? v.recreate : undefined;
        },
        300_000,
      );
      await new Promise((r) => setTimeout(r, 1000));
      const p = await measure('restart', t0, Date.now());
      phases.push({ ...p, pause_ms: round(done.pauseMs, 2), recreate_ms: round(done.ms!), memory_bytes: done.memoryBytes });
      try {
        await settled('every VM with its backup again');
      } catch (e) {
        // what was measured stands; the next run would not start from the same place
        say(`stopping after run ${run + 1}: ${(e as Error).message}`);
        break;
      }
    }
  } finally {
    load?.stop();
    await c.stop();
  }
  const medians: Record<string, Record<string, number>> = {};
  for (const phase of ['quiet', 'meter', 'restart'] as const) {
    const ps = phases.filter((p) => p.phase === phase);
    const m: Record<string, number> = {};
    for (const k of Object.keys(ps[0] ?? {}) as (keyof PhaseResult)[]) {
      if (k === 'phase') continue;
      const xs = ps.map((p) => p[k]).filter((x): x is number => typeof x === 'number');
      if (xs.length) m[k] = median(xs);
    }
    m.failovers_worst_run = Math.max(0, ...ps.map((p) => p.failovers));
    medians[phase] = m;
  }
  return {
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? '', memoryGiB: round(totalmem() / 2 ** 30), node: process.version },
    options: { runs, memoryMiB, smallVms, functions, failMs, heartbeatMs },
    goal: { failovers: 0, gap_ms_below: failMs / 4 },
    phases,
    medians,
  };
}

/** The report as a Markdown table (one column per phase, medians), then the whole report as one line of JSON. */
export function formatIsolationReport(r: Record<string, unknown>): string {
  const m = r.medians as Record<string, Record<string, number>>;
  const o = r.options as { runs: number; memoryMiB: number; failMs: number; heartbeatMs: number; smallVms: number; functions: number };
  const floor = 2 * o.heartbeatMs;
  const gap = (x: number | undefined): string => (x === undefined ? '' : x === 0 ? `< ${floor}` : String(x));
  const v = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '' : String(x));
  const row = (label: string, f: (p: Record<string, number>) => string): string[] => [label, f(m.quiet ?? {}), f(m.meter ?? {}), f(m.restart ?? {})];
  const rows = [
    row(`longest silence of h1 seen by h2/h3, ms (goal < ${o.failMs / 4})`, (p) => gap(p.gap_from_primary_host_ms_max)),
    row('longest silence between any two hosts, ms', (p) => gap(p.gap_any_ms_max)),
    row('event-loop delay on h1, max ms', (p) => v(p.loop_delay_primary_host_ms_max)),
    row('event-loop delay on h2/h3, max ms', (p) => v(p.loop_delay_other_hosts_ms_max)),
    row('failovers of the small VMs (median / worst run; goal 0)', (p) => (p.failovers === undefined ? '' : `${p.failovers} / ${p.failovers_worst_run}`)),
    row('partners taken for silent (small VMs)', (p) => v(p.partner_silent)),
    row('longest answer time of the load, ms', (p) => v(p.answer_ms_max)),
    row('phase length, ms', (p) => v(p.ms)),
    row(`primary pause of the ${o.memoryMiB} MiB reactor, ms`, (p) => v(p.pause_ms)),
    row('until the new backup acknowledged, ms', (p) => v(p.recreate_ms)),
  ];
  const mc = r.machine as { cpus: number; cpu: string; memoryGiB: number; node: string };
  return [
    `isolation: ${o.smallVms} kv VMs under light load, primaries on h1 (3 hosts, failMs ${o.failMs}, heartbeat ${o.heartbeatMs} ms); medians of ${o.runs} runs`,
    `machine: ${mc.cpus} × ${mc.cpu}, ${mc.memoryGiB} GiB, node ${mc.node}`,
    ...markdownTable(['', 'quiet', `meter (${o.functions} functions)`, `restart backup (${o.memoryMiB} MiB)`], rows),
    JSON.stringify(r),
  ].join('\n');
}
