// `ftvm bench meter`: what metering costs, side by side in one run.
//
// For every compute guest: unmetered (through the same binaryen
// read/optimize/write pipeline as the metered module), metered by ftvm, the
// classic per-block global counter (wasmer / wasm-instrument scheme), ewasm's
// wasm-metering from npm where it can parse the guest, Asyncify on top of ftvm
// (limited to blocking imports, and in full), and ftvm with NaN
// canonicalization. Runs are interleaved round-robin after warm-up so that
// drift on a shared machine hits every variant alike; medians are reported.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileModule, EXPORT_START, meter, type MeterOptions } from '../meter/index.ts';
import { VirtualFs, WASI_MODULE, WasiExit, WasiHost } from '../runtime/wasi.ts';
import { codeSectionBytes, PASS_MODULES, REAL_GUESTS, realGuestBytes, realGuestPath } from './real-guests.ts';
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
  { key: 'asyncify_input', label: 'ftvm+asyncify(input calls)', build: (b) => meter(b, { variant: 'ftvm', asyncify: 'input-calls' }).binary },
  { key: 'nan', label: 'ftvm+nan-canon', build: (b) => meter(b, { variant: 'ftvm', canonicalizeNaNs: true }).binary },
];

interface Timed {
  ms: number;
  stdout: string;
  count: bigint | null;
  /** sha256 of the file the guest wrote, when asked for one */
  file: string | null;
}

/** One run of a compiled variant: instantiate, run _start, return wall time of _start only. */
function runOnce(module: WebAssembly.Module, args: string[], outputFile: string | null = null): Timed {
  const out: Uint8Array[] = [];
  const fs = new VirtualFs();
  const wasi = new WasiHost({ args, env: {}, stdout: (b) => out.push(b), stderr: () => {}, fs });
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
  let file: string | null = null;
  if (outputFile) {
    const bytes = fs.readFile(outputFile);
    if (!bytes) throw new Error(`the guest did not write ${outputFile}`);
    file = createHash('sha256').update(bytes).digest('hex');
  }
  return { ms, stdout: Buffer.concat(out).toString(), count: metered ? mh.count : null, file };
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
  /** also run the real modules (REAL_GUESTS) and measure the pass on PASS_MODULES (default true) */
  real?: boolean;
  log?: (line: string) => void;
}

/** A real module run unmetered and metered by ftvm (the other variants are for the small guests). */
export interface RealRow {
  name: string;
  module_mb: number;
  code_mb: number;
  count: string;
  unmetered_ms: number;
  metered_ms: number;
  ratio: number;
  /** metered with Asyncify at the input calls (what a cluster runs a command guest as, for its snapshots): ms, and the ratio to metered */
  asyncify_input_ms: number;
  asyncify_input_over_metered: number;
}

/** The metering pass itself on one module, and whole `ftvm run`s against node:wasi. */
export interface PassRow {
  name: string;
  module_mb: number;
  /** code section size, MB (10^6 bytes) */
  code_mb: number;
  /** wall time of one metering with no cache, in a fresh process, seconds */
  pass_s: number;
  /** CPU time of that metering, seconds */
  pass_cpu_s: number;
  /** pass_cpu_s per MB of code */
  cpu_s_per_code_mb: number;
  /** when each step began, ms from the start (parse, instrument, optimize, weigh, emit, done) */
  steps_ms: Record<string, number>;
  /** peak resident memory of that process, MB (the process holds about this much before metering) */
  peak_rss_mb: number;
  rss_before_mb: number;
  /** medians of whole `ftvm run` commands (a fresh cache each, then the cached module), and of node:wasi's whole run; null where not run */
  run_cold_s: number | null;
  run_cached_s: number | null;
  node_wasi_s: number | null;
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
  /** Asyncify limited to the calls that wait for input (what command guests' snapshots use): ms, ratio to unmetered, and to ftvm's metered run */
  asyncify_input_ms: number;
  asyncify_input_ratio: number;
  asyncify_input_over_metered: number;
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
  asyncify_input_geomean_ratio: number;
  /** geomean and worst of asyncify_input_over_metered: what a command guest pays for snapshots over metering alone */
  asyncify_input_over_metered_geomean: number;
  asyncify_input_over_metered_max: number;
  nan_geomean_ratio: number;
  ewasm_refused: string[];
  /** real modules (empty when their packages are not installed, or with real: false) */
  real: RealRow[];
  pass: PassRow[];
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
      asyncify_input_ms: round3(med('asyncify_input')),
      asyncify_input_ratio: round3(med('asyncify_input') / base),
      asyncify_input_over_metered: round3(med('asyncify_input') / med('metered')),
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
    asyncify_input_geomean_ratio: gm((r) => r.asyncify_input_ratio),
    asyncify_input_over_metered_geomean: gm((r) => r.asyncify_input_over_metered),
    asyncify_input_over_metered_max: Math.max(...rows.map((r) => r.asyncify_input_over_metered)),
    nan_geomean_ratio: gm((r) => r.nan_ratio),
    ewasm_refused: refused,
    // The real modules take minutes (the pass alone spends about 150 CPU seconds on
    // esbuild): a run limited to some guests, or a quick smoke run, leaves them out.
    real: realWanted(opts) ? benchReal(opts, log) : [],
    pass: realWanted(opts) ? benchPass(opts, log) : [],
  };
}

const MB = 1e6;

/** Whether a run measures the real modules: not with `real: false`, a `guests` filter or `quick`. */
function realWanted(opts: BenchMeterOptions): boolean {
  return opts.real !== false && !opts.guests && !opts.quick;
}

function benchReal(opts: BenchMeterOptions, log: (l: string) => void): RealRow[] {
  const rows: RealRow[] = [];
  for (const g of REAL_GUESTS) {
    const bytes = realGuestBytes(g);
    if (!bytes) {
      log(`${g.name}: ${g.package} is not installed, skipped`);
      continue;
    }
    log(`${g.name}: instrumenting`);
    const unmetered = compileModule(plain(bytes));
    const metered = compileModule(meter(bytes, { variant: 'ftvm' }).binary);
    const input = compileModule(meter(bytes, { variant: 'ftvm', asyncify: 'input-calls' }).binary);
    const times = { unmetered: [] as number[], metered: [] as number[], input: [] as number[] };
    let reference: Timed | null = null;
    let count = '';
    for (let round = 0; round < opts.warmup + opts.runs; round++) {
      for (const [k, m] of [['unmetered', unmetered], ['metered', metered], ['input', input]] as const) {
        const t = runOnce(m, g.args, g.outputFile);
        reference ??= t;
        if (t.stdout !== reference.stdout || t.file !== reference.file) throw new Error(`${g.name}: ${k} run's output differs`);
        if (t.count !== null) count = String(t.count);
        if (round >= opts.warmup) times[k].push(t.ms);
      }
      log(`${g.name}: round ${round + 1}/${opts.warmup + opts.runs}`);
    }
    const u = median(times.unmetered);
    const m = median(times.metered);
    const a = median(times.input);
    rows.push({
      name: g.name,
      module_mb: round3(bytes.length / MB),
      code_mb: round3(codeSectionBytes(bytes) / MB),
      count,
      unmetered_ms: round3(u),
      metered_ms: round3(m),
      ratio: round3(m / u),
      asyncify_input_ms: round3(a),
      asyncify_input_over_metered: round3(a / m),
    });
  }
  return rows;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function timedSpawn(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 64 << 20 });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited with ${r.status}: ${r.stderr.toString().slice(-400)}`);
  return s;
}

/** node:wasi running a module as a command with "/" preopened at `dir` (the peer's whole run). */
const NODE_WASI = `
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';
const [file, dir, ...args] = process.argv.slice(1);
const wasi = new WASI({ version: 'preview1', args, env: {}, preopens: { '/': dir }, returnOnExit: true });
const { instance } = await WebAssembly.instantiate(readFileSync(file), wasi.getImportObject());
process.exitCode = wasi.start(instance);
`;

function benchPass(opts: BenchMeterOptions, log: (l: string) => void): PassRow[] {
  const rows: PassRow[] = [];
  // The built child when there is one (ftvm runs from dist/): under tsx the
  // child's own resident memory starts 1.5 GB higher, which would swamp the
  // pass's figure.
  const built = fileURLToPath(new URL('./pass-child.js', import.meta.url));
  const child = existsSync(built) ? [built] : ['--import', 'tsx', fileURLToPath(new URL('./pass-child.ts', import.meta.url))];
  for (const g of PASS_MODULES) {
    const path = realGuestPath(g);
    if (!path) {
      log(`${g.name}: ${g.package} is not installed, skipped`);
      continue;
    }
    const bytes = new Uint8Array(readFileSync(path));
    log(`${g.name}: metering in a child process`);
    const r = spawnSync(process.execPath, [...child, path], { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 << 20 });
    if (r.status !== 0) throw new Error(`${g.name}: metering failed: ${r.stderr.slice(-400)}`);
    const p = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      pass_s: number;
      cpu_s: number;
      steps_ms: Record<string, number>;
      peak_rss_mb: number;
      rss_before_mb: number;
    };
    const code_mb = codeSectionBytes(bytes) / MB;
    const row: PassRow = {
      name: g.name,
      module_mb: round3(bytes.length / MB),
      code_mb: round3(code_mb),
      pass_s: round3(p.pass_s),
      pass_cpu_s: round3(p.cpu_s),
      cpu_s_per_code_mb: round3(p.cpu_s / code_mb),
      steps_ms: p.steps_ms,
      peak_rss_mb: Math.round(p.peak_rss_mb),
      rss_before_mb: Math.round(p.rss_before_mb),
      run_cold_s: null,
      run_cached_s: null,
      node_wasi_s: null,
    };
    const real = REAL_GUESTS.find((x) => x.name === g.name);
    if (real) {
      // Whole commands, side by side: ftvm run with a fresh cache, ftvm run
      // with the module cached, and node:wasi, interleaved.
      const cold: number[] = [];
      const cached: number[] = [];
      const peer: number[] = [];
      const cache = mkdtempSync(join(tmpdir(), 'ftvm-bench-cache-'));
      const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-dir-'));
      try {
        const ftvm = ['host/cli/ftvm.mjs', 'run', path, '--fs', dir, '--', ...real.args.slice(1)];
        const rounds = opts.quick ? 1 : Math.max(1, Math.min(opts.runs, 3));
        for (let i = 0; i < rounds; i++) {
          rmSync(cache, { recursive: true, force: true });
          cold.push(timedSpawn(ftvm, { ...process.env, FTVM_CACHE_DIR: cache }));
          cached.push(timedSpawn(ftvm, { ...process.env, FTVM_CACHE_DIR: cache }));
          peer.push(timedSpawn(['--no-warnings', '--input-type=module', '-e', NODE_WASI, path, dir, ...real.args], process.env));
          log(`${g.name}: whole runs ${i + 1}/${rounds}`);
        }
      } finally {
        rmSync(cache, { recursive: true, force: true });
        rmSync(dir, { recursive: true, force: true });
      }
      row.run_cold_s = round3(median(cold));
      row.run_cached_s = round3(median(cached));
      row.node_wasi_s = round3(median(peer));
    }
    rows.push(row);
  }
  return rows;
}

function table(head: string[], lines: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]): string => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  return [row(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...lines.map(row)].join('\n');
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

const fmt = (x: number | null, d = 2): string => (x === null ? '-' : x.toFixed(d));

/** The human-readable table. */
export function formatMeterReport(r: BenchMeterReport): string {
  const head = ['guest', 'unmetered ms', 'ftvm ms', 'ftvm x', 'classic x', 'wasm-metering x', 'asyncify x', 'asyncify(all) x', 'asyncify(input calls) x', 'input calls / ftvm', 'nan-canon x'];
  const lines = r.guests.map((g) => [
    g.name,
    fmt(g.unmetered_ms, 1),
    fmt(g.metered_ms, 1),
    fmt(g.ratio),
    fmt(g.classic_ratio),
    g.ewasm_ratio === null ? 'refused' : fmt(g.ewasm_ratio),
    fmt(g.asyncify_ratio),
    fmt(g.asyncify_full_ratio),
    fmt(g.asyncify_input_ratio),
    fmt(g.asyncify_input_over_metered),
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
    fmt(r.asyncify_input_geomean_ratio),
    fmt(r.asyncify_input_over_metered_geomean),
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
  if (r.real.length) {
    out.push('', 'real modules (unmetered = the same binaryen pipeline without the counter):');
    out.push(
      table(
        ['module', 'MB', 'code MB', 'count', 'unmetered ms', 'ftvm ms', 'ftvm x', 'asyncify(input calls) ms', 'input calls / ftvm'],
        r.real.map((g) => [g.name, fmt(g.module_mb, 1), fmt(g.code_mb, 2), g.count, fmt(g.unmetered_ms, 1), fmt(g.metered_ms, 1), fmt(g.ratio), fmt(g.asyncify_input_ms, 1), fmt(g.asyncify_input_over_metered)]),
      ),
    );
  }
  if (r.pass.length) {
    out.push('', 'the metering pass (one fresh process each; whole commands are medians, side by side):');
    out.push(
      table(
        ['module', 'MB', 'code MB', 'pass s', 'pass CPU s', 'CPU s/MB code', 'peak RSS MB', 'ftvm run cold s', 'ftvm run cached s', 'node:wasi s'],
        r.pass.map((p) => [
          p.name,
          fmt(p.module_mb, 1),
          fmt(p.code_mb, 2),
          fmt(p.pass_s, 1),
          fmt(p.pass_cpu_s, 1),
          fmt(p.cpu_s_per_code_mb, 2),
          String(p.peak_rss_mb),
          fmt(p.run_cold_s, 1),
          fmt(p.run_cached_s, 1),
          fmt(p.node_wasi_s, 2),
        ]),
      ),
    );
  }
  out.push(`machine: ${r.machine.cpu}, ${r.machine.cores} cores, node ${r.machine.node}`);
  return out.join('\n');
}
