// Run by `ftvm bench meter` in a child process: meters one module with no
// cache and prints, as one JSON line, the pass's time and the process's peak
// resident memory, so that the memory figure belongs to the pass alone.
// usage: node --import tsx host/bench/pass-child.ts MODULE.wasm

import { readFileSync } from 'node:fs';
import { meterWithReport } from '../meter/index.ts';

/**
 * This process's peak resident memory, in MiB: VmHWM, which belongs to this
 * process's own address space. getrusage's maxRSS does not: Linux carries
 * the parent's resident size over fork and exec into it, so a child of a
 * large parent would report the parent's size.
 */
function peakRssMb(): number {
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return hwm ? Number(hwm[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

const bytes = new Uint8Array(readFileSync(process.argv[2]!));
const rssBefore = peakRssMb();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const steps: Record<string, number> = {};
let last = 0;
meterWithReport(bytes, {
  onProgress: (p) => {
    if (p.step === 'instrument' && p.done) return;
    steps[p.step] = Math.round(p.elapsed_ms);
    last = p.elapsed_ms;
  },
});
const cpu = process.cpuUsage(cpu0);
process.stdout.write(
  JSON.stringify({
    pass_s: (performance.now() - t0) / 1000,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    steps_ms: steps,
    last_ms: last,
    rss_before_mb: rssBefore,
    peak_rss_mb: peakRssMb(),
  }) + '\n',
);
