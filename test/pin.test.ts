// What `ftvm bench ft` reads and sets on Linux to place replicas and count their
// CPU: a replica's worker thread can be found by its name, CPU time and run-queue
// wait read from /proc grow with work, and a thread that left is no error.
import { afterEach, describe, expect, it } from 'vitest';
import { ReplicaHandle } from '../host/cluster/replica-handle.ts';
import { affinityOf, cpuMs, pinThread, pinUnavailable, replicaThreads, schedMs } from '../host/bench/pin.ts';
import { meterOptions, moduleHash } from '../host/runtime/record.ts';
import { compileGuest } from '../host/runtime/guest.ts';
import { DEFAULT_DEPTH_LIMIT, DEFAULT_MEMORY_LIMIT_PAGES } from '../host/meter/index.ts';
import { sampleBytes, samples } from './helpers.ts';

const linux = process.platform === 'linux';
const handles: ReplicaHandle[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.terminate()));
});

async function until<T>(what: string, fn: () => T | undefined, ms = 10_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe.runIf(linux)('placement and CPU accounting', () => {
  it("a replica's worker thread names itself, and is found among its process's threads", async () => {
    const kv = sampleBytes(samples('service').find((g) => g.name === 'kv')!);
    const start = { module: moduleHash(kv), args: ['kv'], env: {}, digestEvery: 1_000_000n, depthLimit: DEFAULT_DEPTH_LIMIT, memoryLimitPages: DEFAULT_MEMORY_LIMIT_PAGES, canonicalizeNaNs: false };
    const before = new Set(replicaThreads(process.pid));
    const h = new ReplicaHandle({ vm: 'v', module: kv, compiled: compileGuest(kv, meterOptions(start)), start, role: 'primary' });
    handles.push(h);
    const tid = await until('the named thread', () => replicaThreads(process.pid).find((t) => !before.has(t)));
    expect(tid).not.toBe(process.pid);
    expect(schedMs(process.pid, tid)!.runMs).toBeGreaterThan(0);
    await h.terminate();
    // gone: placing it is not an error, and nothing is read
    await until('the thread left', () => (replicaThreads(process.pid).includes(tid) ? undefined : true));
    expect(pinThread(tid, 0)).toBe(false);
    expect(schedMs(process.pid, tid)).toBeNull();
  }, 60_000);

  it('CPU time (utime + stime) and run time grow with work, in ms', () => {
    const cpu0 = cpuMs(process.pid);
    const main0 = cpuMs(process.pid, process.pid);
    const run0 = schedMs(process.pid, process.pid)!.runMs;
    // compute until this thread has run 300 ms (schedstat, ns), at most 20 s of a busy machine
    const t0 = performance.now();
    let x = 0;
    while (schedMs(process.pid, process.pid)!.runMs - run0 < 300 && performance.now() - t0 < 20_000) {
      for (let i = 0; i < 100_000; i++) x += Math.sqrt(x + i);
    }
    expect(x).toBeGreaterThan(0);
    expect(schedMs(process.pid, process.pid)!.runMs - run0).toBeGreaterThanOrEqual(300);
    // the same work in clock ticks (10 ms): at least 300 less a tick or two
    expect(cpuMs(process.pid) - cpu0).toBeGreaterThanOrEqual(270);
    expect(cpuMs(process.pid, process.pid) - main0).toBeGreaterThanOrEqual(270);
    expect(cpuMs(2 ** 22 + 7)).toBeNaN();
  });

  it('says why placement cannot happen, or reads the affinity it would restore', () => {
    const why = pinUnavailable();
    if (why === null) expect(affinityOf(process.pid)).toMatch(/^[0-9,-]+$/);
    else expect(why).toMatch(/placement needs/);
  });
});
