// `ftvm bench replay`: what recording and replaying cost, side by side in one
// run, against the plain metered run of the same guest. Runs are interleaved
// round-robin after warm-up; medians are reported.

import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { meter } from '../meter/index.ts';
import { readLog } from '../log/format.ts';
import { LogWriter } from '../log/writer.ts';
import { runGuest } from '../runtime/guest.ts';
import { DEFAULT_DIGEST_EVERY, recordGuest, replayGuest } from '../runtime/record.ts';
import { guestPath, loadManifest } from '../runtime/samples.ts';
import { REAL_GUESTS, realGuestBytes } from './real-guests.ts';
import { markdownTable } from './table.ts';

export interface ReplayRow {
  name: string;
  count: string;
  metered_ms: number;
  record_ms: number;
  replay_ms: number;
  record_ratio: number;
  replay_ratio: number;
  /** replay time / record time */
  replay_vs_record: number;
  log_bytes: number;
  log_entries: number;
  host_calls: number;
  log_bytes_per_host_call: number | null;
  log_bytes_per_second: number;
}

export interface ReplayReport {
  machine: { cpu: string; cores: number; node: string };
  runs: number;
  warmup: number;
  digest_every: string;
  guests: ReplayRow[];
  record_geomean_ratio: number;
  replay_geomean_ratio: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const geomean = (xs: number[]): number => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

/**
 * Records and replays every compute guest, entropy, and (unless `real` is
 * false) the real modules of REAL_GUESTS that are installed, against the
 * plain metered run. Throws if a replay does not match its recording.
 */
export function benchReplay(opts: {
  runs: number;
  warmup: number;
  guests?: string[];
  quick?: boolean;
  real?: boolean;
  log?: (l: string) => void;
}): ReplayReport {
  const log = opts.log ?? (() => {});
  const rows: ReplayRow[] = [];
  // The compute guests and entropy, which calls the host in a loop (any guest by name with --guests).
  const guests: Array<{ name: string; bytes: () => Uint8Array | null; args: string[] }> = loadManifest()
    .guests.filter((g) => (opts.guests ? opts.guests.includes(g.name) : g.kind === 'compute' || g.name === 'entropy'))
    .map((g) => ({
      name: g.name,
      bytes: () => new Uint8Array(readFileSync(guestPath(g.wasm))),
      args: [g.name, ...(opts.quick ? g.args_test : g.args_bench)],
    }));
  if (opts.real !== false) {
    // Real modules write their output into the VM's in-memory filesystem, which the digests cover.
    for (const g of REAL_GUESTS) {
      if (!opts.guests || opts.guests.includes(g.name)) guests.push({ name: g.name, bytes: () => realGuestBytes(g), args: g.args });
    }
  }
  if (guests.length === 0) throw new Error('no guests selected');
  for (const g of guests) {
    const bytes = g.bytes();
    if (!bytes) {
      log(`${g.name}: not installed, skipped`);
      continue;
    }
    const args = g.args;
    meter(bytes); // instrument once, outside the timings
    const times = { metered: [] as number[], record: [] as number[], replay: [] as number[] };
    let logBytes = new Uint8Array(0);
    let hostCalls = 0;
    let count = 0n;
    for (let round = 0; round < opts.warmup + opts.runs; round++) {
      const keep = round >= opts.warmup;
      let t = performance.now();
      let calls = 0;
      const plain = runGuest(bytes, { args, onHostCall: () => calls++ });
      if (keep) times.metered.push(performance.now() - t);
      const chunks: Uint8Array[] = [];
      t = performance.now();
      const rec = recordGuest(bytes, new LogWriter((b) => chunks.push(b)), { args });
      if (keep) times.record.push(performance.now() - t);
      logBytes = Buffer.concat(chunks);
      const entries = readLog(logBytes);
      t = performance.now();
      const rep = replayGuest(bytes, entries);
      if (keep) times.replay.push(performance.now() - t);
      if (rec.count !== plain.count || rep.digest !== rec.digest) throw new Error(`${g.name}: replay does not match the recording`);
      hostCalls = calls;
      count = rec.count!;
      log(`${g.name}: round ${round + 1}/${opts.warmup + opts.runs}`);
    }
    const m = median(times.metered);
    const rc = median(times.record);
    const rp = median(times.replay);
    rows.push({
      name: g.name,
      count: String(count),
      metered_ms: r3(m),
      record_ms: r3(rc),
      replay_ms: r3(rp),
      record_ratio: r3(rc / m),
      replay_ratio: r3(rp / m),
      replay_vs_record: r3(rp / rc),
      log_bytes: logBytes.length,
      log_entries: readLog(logBytes).length,
      host_calls: hostCalls,
      log_bytes_per_host_call: hostCalls ? r3(logBytes.length / hostCalls) : null,
      log_bytes_per_second: Math.round(logBytes.length / (rc / 1000)),
    });
  }
  return {
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version },
    runs: opts.runs,
    warmup: opts.warmup,
    digest_every: String(DEFAULT_DIGEST_EVERY),
    guests: rows,
    record_geomean_ratio: r3(geomean(rows.map((r) => r.record_ratio))),
    replay_geomean_ratio: r3(geomean(rows.map((r) => r.replay_ratio))),
  };
}

export function formatReplayReport(r: ReplayReport): string {
  const head = ['guest', 'metered ms', 'record x', 'replay x', 'replay/record', 'log bytes', 'entries', 'host calls', 'log B/s'];
  const lines = r.guests.map((g) => [
    g.name,
    g.metered_ms.toFixed(1),
    g.record_ratio.toFixed(3),
    g.replay_ratio.toFixed(3),
    g.replay_vs_record.toFixed(3),
    String(g.log_bytes),
    String(g.log_entries),
    String(g.host_calls),
    String(g.log_bytes_per_second),
  ]);
  lines.push(['geomean', '', r.record_geomean_ratio.toFixed(3), r.replay_geomean_ratio.toFixed(3), '', '', '', '', '']);
  return [
    ...markdownTable(head, lines),
    '',
    `ratios are medians of ${r.runs} runs after ${r.warmup} warm-up, relative to the metered run; digests every ${r.digest_every} counts`,
    `machine: ${r.machine.cpu}, ${r.machine.cores} cores, node ${r.machine.node}`,
  ].join('\n');
}
