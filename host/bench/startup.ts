// The start-up benchmark: how long `ftvm` takes to start and do a small thing
// (print its help, list a host's VMs, run a cached guest), side by side with
// `node -e 0`, Node's own start, in one run. Each command is a real child
// process; the runs are interleaved (one round runs every command once, in
// an order that rotates), so a machine that speeds up or slows down during
// the run moves every command alike, and each ratio to `node -e 0` is the
// median of the per-round ratios. With a baseline checkout (--baseline DIR,
// e.g. a clone of an older commit), its entry runs the same commands in the
// same rounds.
//
// Every child is started with a small preloaded module (--import) that, at
// its exit, writes the process's own CPU time (user + system) and peak
// resident memory to a file: Node does not report a child's resource usage.
// Wall time is measured from spawn to exit. Also measured: what the entry's
// staleness check (host/build.mjs buildIsCurrent) costs, in process.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { markdownTable } from './table.ts';

/** The entry of this checkout. */
const FTVM = fileURLToPath(new URL('../cli/ftvm.mjs', import.meta.url));
/** The build script of this checkout (the staleness check lives there). */
const BUILD = new URL('../build.mjs', import.meta.url).href;

/** Writes {cpu_ms, rss_kb} of the main thread's process at exit to $FTVM_STARTUP_PROBE. */
const PROBE = `data:text/javascript,${encodeURIComponent(
  `import{appendFileSync}from'node:fs';import{isMainThread}from'node:worker_threads';` +
    `if(isMainThread&&process.env.FTVM_STARTUP_PROBE){const f=process.env.FTVM_STARTUP_PROBE;delete process.env.FTVM_STARTUP_PROBE;` +
    `process.on('exit',()=>{const u=process.cpuUsage();appendFileSync(f,JSON.stringify({cpu_ms:(u.user+u.system)/1000,rss_kb:process.resourceUsage().maxRSS})+'\\n')})}`,
)}`;

/** What benchStartup measures and how many times; every field is optional. */
export interface StartupOptions {
  /** measured rounds (default 7) */
  runs?: number;
  /** rounds not counted, first (default 1; the first also meters fib into the cache) */
  warmup?: number;
  /** another checkout whose host/cli/ftvm.mjs runs the same commands, side by side */
  baseline?: string;
  /** `ftvm vm ls` against this API (with `token`); absent: a local one-host cluster is started for it */
  api?: string;
  token?: string;
  /** progress lines (to stderr) */
  log?: (line: string) => void;
}

/** One command's figures, medians over the measured rounds. */
export interface StartupRow {
  /** e.g. "ftvm --help", "ftvm --help (baseline)", "node -e 0" */
  name: string;
  argv: string[];
  wall_ms_median: number;
  wall_ms_min: number;
  wall_ms_max: number;
  cpu_ms_median: number;
  rss_mb_median: number;
  /** median over rounds of this command's wall time / node -e 0's in the same round */
  wall_ratio_to_node: number;
  /** the same for CPU time */
  cpu_ratio_to_node: number;
  /** exit codes seen (a command that failed is still timed, and shows here) */
  exit_codes: number[];
}

/** The benchmark's result, printed as JSON by `ftvm bench startup --json` (times in ms, memory in MB). */
export interface StartupReport {
  runs: number;
  warmup: number;
  baseline: string | null;
  rows: StartupRow[];
  /** the entry's staleness check: files under host/ and the median time of one check, in process */
  check: { source_files: number; ms_median: number };
  machine: { cpu: string; cores: number; node: string };
}

interface Timed {
  wall_ms: number;
  cpu_ms: number;
  rss_kb: number;
  code: number;
}

/** Runs `argv` (after the node binary) once with the probe; output is discarded. */
function timeOnce(argv: string[], probeFile: string): Promise<Timed> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, ['--import', PROBE, ...argv], {
      env: { ...process.env, FTVM_STARTUP_PROBE: probeFile, FTVM_TRACE_START: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr!.setEncoding('utf8').on('data', (d: string) => void (err = (err + d).slice(-2000)));
    p.once('error', fail);
    p.once('close', (code) => {
      const wall_ms = performance.now() - t0;
      let line: { cpu_ms: number; rss_kb: number } | undefined;
      try {
        line = JSON.parse(readFileSync(probeFile, 'utf8').split('\n')[0]!) as { cpu_ms: number; rss_kb: number };
      } catch {
        return fail(new Error(`node ${argv.join(' ')} left no figures (exit ${code}): ${err}`));
      }
      rmSync(probeFile, { force: true });
      done({ wall_ms, cpu_ms: line.cpu_ms, rss_kb: line.rss_kb, code: code ?? -1 });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Measures start-up (see the header). Returns medians in ms and MB; throws
 * when a command cannot be started or leaves no figures, or when the local
 * cluster for `vm ls` does not come up (30 s bound).
 */
export async function benchStartup(opts: StartupOptions = {}): Promise<StartupReport> {
  const runs = opts.runs ?? 7;
  const warmup = opts.warmup ?? 1;
  const log = opts.log ?? (() => {});
  const { buildIsCurrent, sourceFiles } = (await import(BUILD)) as { buildIsCurrent: () => boolean; sourceFiles: () => Map<string, unknown> };
  const checkMs: number[] = [];
  for (let i = 0; i < 21; i++) {
    const t0 = performance.now();
    buildIsCurrent();
    checkMs.push(performance.now() - t0);
  }
  let cluster: { stop(): Promise<void> } | null = null;
  let api = opts.api;
  let token = opts.token;
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-startup-'));
  try {
    if (!api) {
      log('starting a one-host local cluster for `ftvm vm ls`');
      const { LocalCluster } = await import('../cluster/local.ts');
      const c = new LocalCluster();
      cluster = c;
      api = (await c.add('h1')).api;
      token = c.token;
    }
    const ftvmCommands: [string, string[]][] = [
      ['ftvm --help', ['--help']],
      ['ftvm vm --help', ['vm', '--help']],
      ['ftvm vm ls', ['vm', 'ls', '--api', api, ...(token ? ['--token', token] : [])]],
      ['ftvm run fib -- 20', ['run', 'fib', '--', '20']],
    ];
    const commands: { name: string; argv: string[] }[] = [{ name: 'node -e 0', argv: ['-e', '0'] }];
    for (const [name, a] of ftvmCommands) {
      commands.push({ name, argv: [FTVM, ...a] });
      if (opts.baseline) commands.push({ name: `${name} (baseline)`, argv: [resolve(opts.baseline, 'host/cli/ftvm.mjs'), ...a] });
    }
    const samples = commands.map(() => [] as Timed[]);
    for (let round = 0; round < warmup + runs; round++) {
      log(`round ${round + 1} of ${warmup + runs}${round < warmup ? ' (warm-up)' : ''}`);
      for (let k = 0; k < commands.length; k++) {
        const i = (k + round) % commands.length;
        const t = await timeOnce(commands[i]!.argv, join(dir, `probe-${round}-${i}`));
        if (round >= warmup) samples[i]!.push(t);
      }
    }
    const node = samples[0]!;
    const rows: StartupRow[] = commands.map((c, i) => {
      const s = samples[i]!;
      const wall = s.map((t) => t.wall_ms);
      return {
        name: c.name,
        argv: c.argv,
        wall_ms_median: median(wall),
        wall_ms_min: Math.min(...wall),
        wall_ms_max: Math.max(...wall),
        cpu_ms_median: median(s.map((t) => t.cpu_ms)),
        rss_mb_median: median(s.map((t) => t.rss_kb / 1024)),
        wall_ratio_to_node: median(s.map((t, r) => t.wall_ms / node[r]!.wall_ms)),
        cpu_ratio_to_node: median(s.map((t, r) => t.cpu_ms / node[r]!.cpu_ms)),
        exit_codes: [...new Set(s.map((t) => t.code))],
      };
    });
    return {
      runs,
      warmup,
      baseline: opts.baseline ? resolve(opts.baseline) : null,
      rows,
      check: { source_files: sourceFiles().size, ms_median: median(checkMs) },
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version },
    };
  } finally {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The report as a table, one row per command, then how it was measured. */
export function formatStartupReport(r: StartupReport): string {
  const head = ['command', 'wall ms', 'min-max', 'x node', 'cpu ms', 'cpu x node', 'peak MB', 'exit'];
  const lines = r.rows.map((x) => [
    x.name,
    x.wall_ms_median.toFixed(0),
    `${x.wall_ms_min.toFixed(0)}-${x.wall_ms_max.toFixed(0)}`,
    x.wall_ratio_to_node.toFixed(2),
    x.cpu_ms_median.toFixed(0),
    x.cpu_ratio_to_node.toFixed(2),
    x.rss_mb_median.toFixed(0),
    x.exit_codes.join(','),
  ]);
  return [
    ...markdownTable(head, lines),
    '',
    `medians of ${r.runs} interleaved rounds after ${r.warmup} warm-up; ratios are medians of per-round ratios to node -e 0` +
      (r.baseline ? `; baseline: ${r.baseline}` : ''),
    `staleness check of the build: ${r.check.ms_median.toFixed(2)} ms for ${r.check.source_files} files under host/ (median of 21, in process)`,
    `machine: ${r.machine.cpu}, ${r.machine.cores} cores, node ${r.machine.node}`,
  ].join('\n');
}
