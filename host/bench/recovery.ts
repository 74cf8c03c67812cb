// `ftvm bench recovery`: does a VM's cost on its hosts stay the same however
// long it has run? Two questions, answered on a local cluster of three real
// host processes on loopback:
//
//   (a) memory over a long run: the kv reactor serves a steady load through
//       FtClient (SETs over a fixed set of keys, so the guest's own memory
//       stops growing once every key exists) for `minutes`, while each host's
//       resident memory (/proc/PID/status VmRSS) is sampled every
//       `sampleEverySeconds`. Reported per host: first, last and largest
//       sample, and the slope (MiB per minute, least squares over the samples
//       from the end of the first minute, the hosts' and the guest's warm-up,
//       to the young VM's start below, whose replicas add their own memory;
//       over all samples before that start in a run of a minute);
//   (b) backup re-creation by age: a second kv VM of the same memory size is
//       started `youngMinutes` before the end, under the same load. At the
//       end, the backup of each VM is restarted through REST
//       (POST /v1/vms/:name/backup/restart), `trials` times, the two VMs in
//       turn: the time from the request to the new backup's first
//       acknowledgement as the primary's host measures it (its `recreate`
//       status: {memoryBytes, pauseMs, ms}), the time until the bench sees the
//       new backup in sync (its lag at most SYNC_LAG_MS), and the primary's
//       pause; medians, and the ratio old / young. A re-creation that depends
//       on the guest's memory and not on its history gives ratios near 1
//       while the log each VM wrote differs by `minutes / youngMinutes`.
//
// A table, or JSON with --json. Linux only (it reads /proc).

import { rssMiB } from './soak.ts';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { FtClient } from '../cluster/client.ts';
import { LocalCluster, eventually } from '../cluster/local.ts';
import { guestPath } from '../runtime/samples.ts';
import { markdownTable } from './table.ts';

/** The backup counts as in sync once the primary measures its lag at or under this, in ms. */
export const SYNC_LAG_MS = 50;

/** What `benchRecovery` runs. */
export interface RecoveryOptions {
  /** how long the old VM serves its load, in minutes (default 10; `quick`: 1) */
  minutes?: number;
  /** a smoke run: 1 minute, one trial (not a measurement) */
  quick?: boolean;
  /** the age of the young VM at the end, in minutes (default 1; at most a quarter of `minutes` when that is shorter) */
  youngMinutes?: number;
  /** the guest memory each VM is filled to before its load, in MiB (default 16) */
  memoryMiB?: number;
  /** requests per second of each VM's load (default 100) */
  rate?: number;
  /** keys the load writes, round and round (default 1000) */
  keys?: number;
  /** how often each host's RSS is read, in seconds (default 5) */
  sampleEverySeconds?: number;
  /** backup re-creations per VM at the end (default 3; `quick`: 1) */
  trials?: number;
  /** a directory (it must exist) where each host writes its whole log, as <id>.log (default: none) */
  logDir?: string;
  log?: (line: string) => void;
}

/** One host's resident memory over the run, in MiB. */
export interface RecoveryHostReport {
  id: string;
  rssMiB: { first: number; last: number; max: number };
  /** least-squares slope of the samples from the first minute to the young VM's start (from the first sample in a run of a minute), MiB per minute */
  slopeMiBPerMinute: number;
  /** the sample at the end of the first minute, and the last before the young VM started, MiB (the slope's window) */
  rssSettledMiB: { from: number; to: number };
}

/** One VM at the end of the run, and its backup re-creations (medians over the trials). */
export interface RecoveryVmReport {
  name: string;
  /** how long it had served its load when its backups were re-created, in minutes */
  ageMinutes: number;
  /** its primary's host (placement chose it) */
  primary: string;
  /** its history before the first re-creation: log bytes its primary sent to backups (the memory fill's too), and the last log entry acknowledged (entries are numbered from 0) */
  logBytes: number;
  logEntries: number;
  /** requests its load sent and got answered */
  sent: number;
  answered: number;
  /** guest memory shipped to the new backup, bytes (the last trial's) */
  memoryBytes: number;
  /** the primary's figure: request to the new backup's first acknowledgement, ms (median) */
  recreateMs: number;
  /** the bench's figure: REST request to the new backup in sync (lag <= SYNC_LAG_MS), ms (median) */
  syncMs: number;
  /** the primary's pause for the snapshot, ms (median) */
  pauseMs: number;
  /** every trial, in order */
  trials: { recreateMs: number; syncMs: number; pauseMs: number; memoryBytes: number }[];
  /** the most log bytes its backup had not acknowledged, and outputs held, at an RSS sample (what its primary keeps of its log) */
  unackedBytesMax: number;
  heldMax: number;
}

/** The report: `formatRecoveryReport` prints it as tables, `--json` as it is. */
export interface RecoveryReport {
  minutes: number;
  youngMinutes: number;
  memoryMiB: number;
  rate: number;
  hosts: RecoveryHostReport[];
  /** the old VM first, then the young one */
  vms: RecoveryVmReport[];
  /** old / young, of the medians */
  ratios: { recreateMs: number; syncMs: number; pauseMs: number; logBytes: number; logEntries: number };
  /** every host's RSS (MiB) at each sample; `t` in seconds from the old VM's load start */
  samples: { t: number; rssMiB: Record<string, number> }[];
  /** when the young VM was asked for, in seconds from the old VM's load start (samples from then on count its replicas too) */
  youngAskedS: number;
  machine: string;
}


/** Least-squares slope of (x, y) points; 0 with fewer than two. */
export function slope(points: readonly [number, number][]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const median = (xs: number[]): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

type VmStatusLite = {
  name: string;
  role: string;
  gen: number;
  state: string;
  partner: string | null;
  lagMs: number;
  acked: number;
  logBytes: number;
  unackedBytes: number;
  held: number;
  recreate: { memoryBytes: number; pauseMs: number; ms: number | null } | null;
};

/** A steady load of SETs over `keys` keys on one VM, `rate` a second, counting answers. */
class SteadyLoad {
  sent = 0;
  answered = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly value = 'v'.repeat(64);
  constructor(
    private readonly client: FtClient,
    private readonly vm: string,
    private readonly rate: number,
    private readonly keys: number,
  ) {
    client.on('recv', (r) => {
      if (r.vm === vm && Buffer.from(r.data).subarray(0, 1).toString() === 's') this.answered++;
    });
  }
  start(): void {
    const t0 = performance.now();
    // every 10 ms, as many as the rate owes by now (a late tick catches up)
    this.timer = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) / 1000) * this.rate);
      for (; this.sent < due; this.sent++) this.client.send(this.vm, `s${this.sent} SET k${this.sent % this.keys} ${this.value}`);
    }, 10);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

/**
 * Runs the benchmark (see the header). Every host it starts is killed before
 * it returns or throws. Throws when a host does not start, a VM does not
 * start or fill within 60 s, or a backup is not back in sync within 120 s.
 * Linux only (/proc).
 */
export async function benchRecovery(opts: RecoveryOptions = {}): Promise<RecoveryReport> {
  const minutes = opts.quick ? 1 : (opts.minutes ?? 10);
  const youngMinutes = Math.min(opts.youngMinutes ?? 1, minutes / 4);
  const memoryMiB = opts.memoryMiB ?? 16;
  const rate = opts.rate ?? 100;
  const keys = opts.keys ?? 1000;
  const everyS = opts.sampleEverySeconds ?? 5;
  const trials = opts.quick ? 1 : (opts.trials ?? 3);
  const log = opts.log ?? (() => {});
  const kv = new Uint8Array(readFileSync(guestPath('kv.wasm')));
  const ids = ['h1', 'h2', 'h3'];
  const c = new LocalCluster(['--fail-ms', '1000', '--heartbeat-ms', '50']);
  if (opts.logDir) c.logDir = opts.logDir;
  const loads: SteadyLoad[] = [];
  try {
    for (const id of ids) await c.add(id);
    await c.linked();
    const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
      const headers = { authorization: `Bearer ${c.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
      const r = await fetch(`${c.host('h1').api}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      return { status: r.status, json: text ? JSON.parse(text) : null };
    };
    // the load's client is on h1 (sends to a primary elsewhere are forwarded); the status comes from each VM's primary's host (placement chooses it)
    const client = await c.client('h1');
    const statusClients = new Map<string, FtClient>();
    for (const id of ids) statusClients.set(id, id === 'h1' ? client : await c.client(id));
    const primaryOf = new Map<string, string>();
    const statusOf = async (name: string): Promise<VmStatusLite | undefined> => {
      const host = primaryOf.get(name);
      if (!host) return undefined;
      return ((await statusClients.get(host)!.status()).vms as VmStatusLite[]).find((v) => v.name === name && v.role === 'primary');
    };
    const answered = new Set<string>();
    client.on('recv', (r) => {
      const id = Buffer.from(r.data.subarray(0, 16)).toString().split(' ')[0]!;
      if (id.startsWith('f')) answered.add(`${r.vm}/${id}`);
    });
    /** starts kv as `name` on h1, fills its memory with 60 KiB values, and starts its load */
    const startVm = async (name: string): Promise<{ load: SteadyLoad; startedAt: number; fillMs: number }> => {
      const asked = performance.now();
      const r = await api('POST', '/v1/vms', { name, module: Buffer.from(kv).toString('base64') });
      if (r.status !== 201) throw new Error(`starting ${name}: ${r.status} ${JSON.stringify(r.json)}`);
      const info = await api('GET', `/v1/vms/${name}`);
      if (typeof info.json?.primary !== 'string' || !ids.includes(info.json.primary)) throw new Error(`${name} has no primary: ${JSON.stringify(info.json)}`);
      primaryOf.set(name, info.json.primary);
      let seen: VmStatusLite | undefined;
      await eventually(`${name} has a backup`, async () => {
        seen = await statusOf(name);
        return seen && seen.partner && seen.state === 'live' ? true : undefined;
      }, 60_000).catch((e: Error) => {
        throw new Error(`${e.message} (its primary says ${JSON.stringify(seen ?? null)})`);
      });
      const value = 'x'.repeat(60 * 1024);
      const n = Math.ceil((memoryMiB * 1024 * 1024) / value.length);
      for (let i = 0; i < n; i++) {
        client.send(name, `f${i} SET big${i} ${value}`);
        if (i % 32 === 31 || i === n - 1) await eventually(`${name} filled`, () => (answered.has(`${name}/f${i}`) ? true : undefined), 60_000);
      }
      const load = new SteadyLoad(client, name, rate, keys);
      loads.push(load);
      load.start();
      return { load, startedAt: performance.now(), fillMs: performance.now() - asked };
    };

    const old = await startVm('old');
    const t0 = old.startedAt;
    log(`recovery: kv "old" (${memoryMiB} MiB) serves ${rate} requests/s for ${minutes} min; "young" starts ${youngMinutes} min before the end; RSS every ${everyS} s`);
    const samples: RecoveryReport['samples'] = [];
    const peaks = new Map<string, { unackedBytesMax: number; heldMax: number }>([['old', { unackedBytesMax: 0, heldMax: 0 }], ['young', { unackedBytesMax: 0, heldMax: 0 }]]);
    const endAt = t0 + minutes * 60_000;
    const youngAt = endAt - youngMinutes * 60_000;
    let young: { load: SteadyLoad; startedAt: number; fillMs: number } | null = null;
    let youngAskedS = minutes * 60;
    for (let k = 0; ; k++) {
      const next = t0 + k * everyS * 1000;
      if (next > endAt) break;
      // the young VM is started as long before its moment as the old one took to start and fill: its load begins about then
      if (!young && next >= youngAt - old.fillMs) {
        await sleep(youngAt - old.fillMs - performance.now());
        youngAskedS = round((performance.now() - t0) / 1000, 1);
        young = await startVm('young');
        log(`recovery: "young" started at ${round((young.startedAt - t0) / 60_000)} min`);
      }
      await sleep(next - performance.now());
      const rss = Object.fromEntries(ids.map((id) => [id, rssMiB(c.host(id).proc.pid!)]));
      samples.push({ t: round((performance.now() - t0) / 1000, 1), rssMiB: rss });
      for (const name of ['old', 'young']) {
        const v = await statusOf(name).catch(() => undefined);
        const p = peaks.get(name)!;
        if (v) {
          p.unackedBytesMax = Math.max(p.unackedBytesMax, v.unackedBytes);
          p.heldMax = Math.max(p.heldMax, v.held);
        }
      }
      if (k % Math.max(1, Math.round(60 / everyS)) === 0) log(`recovery ${round((performance.now() - t0) / 60_000, 1)} min: RSS ${JSON.stringify(rss)} MiB; old answered ${old.load.answered}/${old.load.sent}`);
    }
    if (!young) throw new Error('the young VM never started');

    // (b) backup re-creation of each VM in turn, `trials` times
    const vmTrials = new Map<string, RecoveryVmReport['trials']>([['old', []], ['young', []]]);
    const ages = new Map<string, number>([['old', (performance.now() - t0) / 60_000], ['young', (performance.now() - young.startedAt) / 60_000]]);
    const history = new Map<string, { logBytes: number; logEntries: number }>();
    for (let t = 0; t < trials; t++) {
      for (const name of t % 2 ? ['young', 'old'] : ['old', 'young']) {
        const before = await statusOf(name);
        if (!before) throw new Error(`no primary of ${name} on ${primaryOf.get(name)}`);
        if (!history.has(name)) history.set(name, { logBytes: before.logBytes, logEntries: before.acked + 1 });
        const asked = performance.now();
        const r = await api('POST', `/v1/vms/${name}/backup/restart`);
        if (r.status !== 202) throw new Error(`restarting the backup of ${name}: ${r.status} ${JSON.stringify(r.json)}`);
        let back: VmStatusLite | undefined;
        await eventually(
          `the new backup of ${name} in sync`,
          async () => {
            const v = await statusOf(name);
            if (!v || v.gen <= before.gen || v.state !== 'live' || !v.partner || v.recreate?.ms == null) return undefined;
            back ??= v;
            return v.lagMs <= SYNC_LAG_MS ? v : undefined;
          },
          120_000,
          10,
        );
        const syncMs = performance.now() - asked;
        const rc = back!.recreate!;
        vmTrials.get(name)!.push({ recreateMs: round(rc.ms!), syncMs: round(syncMs), pauseMs: round(rc.pauseMs, 3), memoryBytes: rc.memoryBytes });
        log(`recovery: ${name} backup back in ${round(rc.ms!)} ms, in sync in ${round(syncMs)} ms (pause ${round(rc.pauseMs, 3)} ms, ${rc.memoryBytes} bytes)`);
      }
    }
    for (const l of loads) l.stop();

    const hosts = ids.map((id) => {
      const all = samples.map((s) => s.rssMiB[id]!);
      const settled = samples.filter((s) => (s.t >= 60 || minutes <= 1) && s.t < youngAskedS);
      return {
        id,
        rssMiB: { first: all[0] ?? 0, last: all.at(-1) ?? 0, max: Math.max(...all) },
        slopeMiBPerMinute: round(slope(settled.map((s) => [s.t / 60, s.rssMiB[id]!])), 3),
        rssSettledMiB: { from: settled[0]?.rssMiB[id] ?? 0, to: settled.at(-1)?.rssMiB[id] ?? 0 },
      };
    });
    const vms = (['old', 'young'] as const).map((name): RecoveryVmReport => {
      const ts = vmTrials.get(name)!;
      const load = name === 'old' ? old.load : young!.load;
      return {
        name,
        ageMinutes: round(ages.get(name)!),
        primary: primaryOf.get(name) ?? '',
        logBytes: history.get(name)?.logBytes ?? 0,
        logEntries: history.get(name)?.logEntries ?? 0,
        sent: load.sent,
        answered: load.answered,
        memoryBytes: ts.at(-1)?.memoryBytes ?? 0,
        recreateMs: round(median(ts.map((x) => x.recreateMs))),
        syncMs: round(median(ts.map((x) => x.syncMs))),
        pauseMs: round(median(ts.map((x) => x.pauseMs)), 3),
        trials: ts,
        ...peaks.get(name)!,
      };
    });
    const [o, y] = vms as [RecoveryVmReport, RecoveryVmReport];
    const ratio = (a: number, b: number): number => round(b > 0 ? a / b : NaN);
    return {
      minutes,
      youngMinutes,
      memoryMiB,
      rate,
      hosts,
      vms,
      ratios: { recreateMs: ratio(o.recreateMs, y.recreateMs), syncMs: ratio(o.syncMs, y.syncMs), pauseMs: ratio(o.pauseMs, y.pauseMs), logBytes: ratio(o.logBytes, y.logBytes), logEntries: ratio(o.logEntries, y.logEntries) },
      samples,
      youngAskedS,
      machine: `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, node ${process.version}`,
    };
  } finally {
    for (const l of loads) l.stop();
    await c.stop();
  }
}

/** The report as tables. */
export function formatRecoveryReport(r: RecoveryReport): string {
  const out = [`ftvm bench recovery: kv (${r.memoryMiB} MiB) at ${r.rate} requests/s for ${r.minutes} min, 3 hosts (${r.machine})`, ''];
  out.push(
    ...markdownTable(
      ['host', 'RSS first MiB', 'RSS last MiB', 'RSS max MiB', 'RSS at 1 min / before young MiB', 'slope MiB/min'],
      r.hosts.map((h) => [h.id, String(h.rssMiB.first), String(h.rssMiB.last), String(h.rssMiB.max), `${h.rssSettledMiB.from} / ${h.rssSettledMiB.to}`, String(h.slopeMiBPerMinute)]),
    ),
  );
  out.push(`(slope: least squares from ${r.minutes > 1 ? '1 min' : 'the start'} to the young VM's start at ${round(r.youngAskedS / 60)} min)`);
  out.push('');
  out.push(
    ...markdownTable(
      ['vm', 'primary', 'age min', 'log entries', 'log bytes', 'answered / sent', 'memory bytes', 're-creation ms', 'in sync ms', 'primary pause ms', 'unacked log max', 'held max'],
      r.vms.map((v) => [v.name, v.primary, String(v.ageMinutes), String(v.logEntries), String(v.logBytes), `${v.answered} / ${v.sent}`, String(v.memoryBytes), String(v.recreateMs), String(v.syncMs), String(v.pauseMs), String(v.unackedBytesMax), String(v.heldMax)]),
    ),
  );
  out.push('');
  out.push(`old / young: re-creation ${r.ratios.recreateMs}x, in sync ${r.ratios.syncMs}x, pause ${r.ratios.pauseMs}x, while its log is ${r.ratios.logEntries}x the entries and ${r.ratios.logBytes}x the bytes (medians of ${r.vms[0]?.trials.length ?? 0} trials each)`);
  return out.join('\n');
}
