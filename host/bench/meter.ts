// `ftvm bench meter`: what metering costs, side by side in one run.
//
// For every compute guest: unmetered (through the same binaryen
// read/optimize/write pipeline as the metered module), metered by ftvm, the
// classic per-block global counter (wasmer / wasm-instrument scheme), ewasm's
// wasm-metering from npm where it can parse the guest, Asyncify on top of ftvm
// (limited to blocking imports, and in full), and ftvm with NaN
// canonicalization. Runs are interleaved round-robin after warm-up so that
// drift on a shared machine hits every variant alike; medians are reported.

import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { createRequire } from 'node:module';
import { compileModule, EXPORT_START, meter, type MeterOptions } from '../meter/index.ts';
import { WASI_MODULE, WasiExit, WasiHost } from '../runtime/wasi.ts';
import { MeterHost } from '../runtime/meter-host.ts';
import { loadManifest, guestPath } from '../runtime/samples.ts';

const require = createRequire(import.meta.url);

interface VariantDef {
  key: string;
  label: string;
  build(bytes: Uint8Array): Uint8Array;
}

const plain = (bytes: Uint8Array): Uint8Array => meter(bytes, { variant: 'plain' }).binary;

function ewasm(bytes: Uint8Array): Uint8Array {
  const lib = require('wasm-metering') as { meterWASM(b: Buffer, o: object): Buffer };
  const out = lib.meterWASM(Buffer.from(bytes), { meterType: 'i32' });
  // Same pipeline as every other variant after metering.
  return plain(new Uint8Array(out));
}

const VARIANTS: VariantDef[] = [
  { key: 'unmetered', label: 'unmetered', build: plain },
  { key: 'metered', label: 'ftvm', build: (b) => meter(b, { variant: 'ftvm' }).binary },
  { key: 'classic', label: 'classic', build: (b) => meter(b, { variant: 'classic' }).binary },
  { key: 'ewasm', label: 'wasm-metering', build: ewasm },
  { key: 'asyncify', label: 'ftvm+asyncify', build: (b) => meter(b, { variant: 'ftvm', asyncify: 'blocking' }).binary },
  {
    key: 'asyncify_full',
    label: 'ftvm+asyncify(all)',
    build: (b) => meter(b, { variant: 'ftvm', asyncify: 'full' }).binary,
  },
  { key: 'nan', label: 'ftvm+nan-canon', build: (b) => meter(b, { variant: 'ftvm', canonicalizeNaNs: true }).binary },
];

interface Timed {
  ms: number;
  stdout: string;
  count: bigint | null;
}

/** One run of a compiled variant: instantiate, run _start, return wall time of _start only. */
function runOnce(module: WebAssembly.Module, args: string[]): Timed {
  const out: Uint8Array[] = [];
  const wasi = new WasiHost({ args, env: {}, stdout: (b) => out.push(b), stderr: () => {} });
  const mh = new MeterHost();
  // wasm-metering's counter: a host call per basic block is its design, and its cost.
  let gas = 0;
  const imports: WebAssembly.Imports = {
    [WASI_MODULE]: wasi.imports,
    ftvm: mh.imports,
    metering: {
      usegas: (g: number) => {
        gas += g;
      },
    },
  };
  const instance = new WebAssembly.Instance(module, imports);
  wasi.bindMemory(instance.exports.memory as WebAssembly.Memory);
  const metered = 'ftvm_fuel' in instance.exports;
  if (metered) mh.bind(instance);
  const start = instance.exports._start as () => void;
  const init = instance.exports[EXPORT_START] as (() => void) | undefined;
  const t0 = performance.now();
  let code = 0;
  try {
    init?.();
    start();
  } catch (e) {
    if (!(e instanceof WasiExit)) throw e;
    code = e.code;
  }
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`guest exited with ${code}`);
  return { ms, stdout: Buffer.concat(out).toString(), count: metered ? mh.count : null };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function geomean(xs: number[]): number {
  return Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
}

export interface BenchMeterOptions {
  runs: number;
  warmup: number;
  guests?: string[];
  /** use each guest's small test workload instead of the bench workload (for smoke tests) */
  quick?: boolean;
  log?: (line: string) => void;
}

export interface GuestRow {
  name: string;
  count: string;
  unmetered_ms: number;
  metered_ms: number;
  ratio: number;
  classic_ms: number;
  classic_ratio: number;
  ewasm_ms: number | null;
  ewasm_ratio: number | null;
  ewasm_error: string | null;
  asyncify_ms: number;
  asyncify_ratio: number;
  asyncify_full_ms: number;
  asyncify_full_ratio: number;
  nan_ms: number;
  nan_ratio: number;
  module_bytes: { unmetered: number; metered: number; classic: number; asyncify: number };
}

export interface BenchMeterReport {
  machine: { cpu: string; cores: number; node: string; v8: string };
  runs: number;
  warmup: number;
  guests: GuestRow[];
  geomean_ratio: number;
  max_ratio: number;
  classic_geomean_ratio: number;
  /** classic geomean / ftvm geomean: how many times cheaper ftvm's counter is */
  speedup_vs_classic: number;
  asyncify_geomean_ratio: number;
  asyncify_full_geomean_ratio: number;
  nan_geomean_ratio: number;
  ewasm_refused: string[];
}

export function benchMeter(opts: BenchMeterOptions): BenchMeterReport {
  const log = opts.log ?? (() => {});
  const manifest = loadManifest();
  const guests = manifest.guests.filter((g) => g.kind === 'compute' && (!opts.guests || opts.guests.includes(g.name)));
  if (guests.length === 0) throw new Error('no compute guests selected');
  const rows: GuestRow[] = [];
  const refused: string[] = [];
  for (const g of guests) {
    const bytes = new Uint8Array(readFileSync(guestPath(g.wasm)));
    const args = [g.name, ...(opts.quick ? g.args_test : g.args_bench)];
    log(`${g.name}: instrumenting`);
    const built = new Map<string, { module: WebAssembly.Module; size: number }>();
    let ewasmError: string | null = null;
    for (const v of VARIANTS) {
      try {
        const bin = v.build(bytes);
        built.set(v.key, { module: compileModule(bin), size: bin.length });
      } catch (e) {
        if (v.key !== 'ewasm') throw e;
        ewasmError = (e as Error).message.split('\n')[0]!.slice(0, 160);
        refused.push(g.name);
      }
    }
    const times = new Map<string, number[]>();
    let reference: Timed | null = null;
    for (let round = 0; round < opts.warmup + opts.runs; round++) {
      for (const v of VARIANTS) {
        const b = built.get(v.key);
        if (!b) continue;
        const t = runOnce(b.module, args);
        if (!reference) reference = t;
        if (t.stdout !== reference.stdout) {
          throw new Error(`${g.name}: variant ${v.label} printed ${JSON.stringify(t.stdout)}, expected ${JSON.stringify(reference.stdout)}`);
        }
        if (round >= opts.warmup) times.set(v.key, [...(times.get(v.key) ?? []), t.ms]);
        if (v.key === 'metered' && reference.count === null) reference.count = t.count;
      }
      log(`${g.name}: round ${round + 1}/${opts.warmup + opts.runs}`);
    }
    const med = (k: string): number => median(times.get(k) ?? [NaN]);
    const base = med('unmetered');
    const ew = built.has('ewasm') ? med('ewasm') : null;
    rows.push({
      name: g.name,
      count: String(reference?.count ?? ''),
      unmetered_ms: round3(base),
      metered_ms: round3(med('metered')),
      ratio: round3(med('metered') / base),
      classic_ms: round3(med('classic')),
      classic_ratio: round3(med('classic') / base),
      ewasm_ms: ew === null ? null : round3(ew),
      ewasm_ratio: ew === null ? null : round3(ew / base),
      ewasm_error: ewasmError,
      asyncify_ms: round3(med('asyncify')),
      asyncify_ratio: round3(med('asyncify') / base),
      asyncify_full_ms: round3(med('asyncify_full')),
      asyncify_full_ratio: round3(med('asyncify_full') / base),
      nan_ms: round3(med('nan')),
      nan_ratio: round3(med('nan') / base),
      module_bytes: {
        unmetered: built.get('unmetered')!.size,
        metered: built.get('metered')!.size,
        classic: built.get('classic')!.size,
        asyncify: built.get('asyncify')!.size,
      },
    });
  }
  const gm = (f: (r: GuestRow) => number): number => round3(geomean(rows.map(f)));
  const geomean_ratio = gm((r) => r.ratio);
  const classic_geomean_ratio = gm((r) => r.classic_ratio);
  return {
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, v8: process.versions.v8 },
    runs: opts.runs,
    warmup: opts.warmup,
    guests: rows,
    geomean_ratio,
    max_ratio: Math.max(...rows.map((r) => r.ratio)),
    classic_geomean_ratio,
    speedup_vs_classic: round3(classic_geomean_ratio / geomean_ratio),
    asyncify_geomean_ratio: gm((r) => r.asyncify_ratio),
    asyncify_full_geomean_ratio: gm((r) => r.asyncify_full_ratio),
    nan_geomean_ratio: gm((r) => r.nan_ratio),
    ewasm_refused: refused,
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

const fmt = (x: number | null, d = 2): string => (x === null ? '-' : x.toFixed(d));

/** The human-readable table. */
export function formatMeterReport(r: BenchMeterReport): string {
  const head = ['guest', 'unmetered ms', 'ftvm ms', 'ftvm x', 'classic x', 'wasm-metering x', 'asyncify x', 'asyncify(all) x', 'nan-canon x'];
  const lines = r.guests.map((g) => [
    g.name,
    fmt(g.unmetered_ms, 1),
    fmt(g.metered_ms, 1),
    fmt(g.ratio),
    fmt(g.classic_ratio),
    g.ewasm_ratio === null ? 'refused' : fmt(g.ewasm_ratio),
    fmt(g.asyncify_ratio),
    fmt(g.asyncify_full_ratio),
    fmt(g.nan_ratio),
  ]);
  lines.push([
    'geomean',
    '',
    '',
    fmt(r.geomean_ratio),
    fmt(r.classic_geomean_ratio),
    '',
    fmt(r.asyncify_geomean_ratio),
    fmt(r.asyncify_full_geomean_ratio),
    fmt(r.nan_geomean_ratio),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]): string => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  const out = [row(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...lines.map(row)];
  out.push('');
  out.push(
    `ratios are medians of ${r.runs} runs after ${r.warmup} warm-up, relative to unmetered; ` +
      `ftvm is ${r.speedup_vs_classic.toFixed(2)}x cheaper than the classic per-block counter (geomean)`,
  );
  if (r.ewasm_refused.length) out.push(`wasm-metering refused: ${r.ewasm_refused.join(', ')}`);
  out.push(`machine: ${r.machine.cpu}, ${r.machine.cores} cores, node ${r.machine.node}`);
  return out.join('\n');
}
