// What this proves: replicas on worker threads (one process) give the guest
// the VM's clocks. A backup that goes live, and a backup made from a
// snapshot that goes live, continue the monotonic clock by the real time that
// passed, never back; realtime never goes back; the CPU clocks count the VM's
// own thread only (another thread of the same process computing is not the
// VM's time). The clock state follows from the log alone: a backup that
// replayed it ends where the primary was, and its snapshot says the same.
import { afterEach, describe, expect, it } from 'vitest';
import type { LogEntry } from '../host/log/format.ts';
import { ReplicaHandle } from '../host/cluster/replica-handle.ts';
import { sealSnapshot, type FromReplica, type Output } from '../host/runtime/replay/engine.ts';
import { meterOptions } from '../host/runtime/record.ts';
import { compileGuest } from '../host/runtime/guest.ts';
import { stream } from './replica-stream.ts';
import { replicaStartOf, watBytes } from './helpers.ts';

const guest = watBytes('clockecho');
const start = replicaStartOf(guest, ['clockecho']);
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const handles: ReplicaHandle[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.terminate()));
});

function replica(init: Omit<ConstructorParameters<typeof ReplicaHandle>[0], 'compiled' | 'vm' | 'module' | 'start'>) {
  const h = new ReplicaHandle({ vm: 'c', module: guest, start, ...init, compiled: compileGuest(guest, meterOptions(start)) });
  handles.push(h);
  const said: FromReplica[] = [];
  h.on('message', (m) => said.push(m));
  const until = async (test: (m: FromReplica) => boolean, ms = 20_000): Promise<FromReplica> => {
    const t0 = Date.now();
    for (;;) {
      const found = said.find(test);
      if (found) return found;
      if (Date.now() - t0 > ms) throw new Error(`no such message within ${ms} ms; got ${said.map((m) => m.t).join(',')}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { h, said, until };
}

interface Reading {
  mono: bigint;
  cpu: bigint;
  real: bigint;
}

/** Asks replica `h` for its clocks (message `id`) and waits for the reply in `log`. */
async function ask(h: ReplicaHandle, log: { outputs: Output[] }, id: string): Promise<Reading> {
  h.send({ t: 'msg', msg: { conn: 1, bytes: enc(id), eof: false } });
  const t0 = Date.now();
  while (Date.now() - t0 < 20_000) {
    const o = log.outputs.find((x) => dec(x.bytes).startsWith(`${id} `));
    if (o) {
      const [, mono, cpu, real] = dec(o.bytes).split(' ');
      return { mono: BigInt(mono!), cpu: BigInt(cpu!), real: BigInt(real!) };
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`no reply to ${id}`);
}

const MS = 1_000_000n;
/** time passes while nothing runs: the gap a failover leaves */
const GAP_MS = 300;

/** The monotonic clock moved with realtime between `a` and `b` (within 100 ms: two readings' ms realtime, and a loaded machine may preempt the thread between the reads of one answer), and neither went back. */
function continued(a: Reading, b: Reading): void {
  expect(b.mono).toBeGreaterThanOrEqual(a.mono);
  expect(b.real).toBeGreaterThanOrEqual(a.real);
  const drift = b.mono - a.mono - (b.real - a.real);
  expect(drift < 0n ? -drift : drift).toBeLessThan(100n * MS);
}

async function snapshotOf(r: ReturnType<typeof replica>, id: number) {
  r.h.send({ t: 'snapshot', id });
  return sealSnapshot((await r.until((m) => m.t === 'snapshot' && m.id === id)) as Extract<FromReplica, { t: 'snapshot' }>);
}

describe('the clocks of replicas', () => {
  it('a backup that goes live continues them, and replaying the log put it where the primary was', async () => {
    let backup: ReplicaHandle | null = null;
    const p = replica({ role: 'primary' });
    const b = replica({ role: 'backup' });
    backup = b.h;
    const log = stream(p, () => backup);
    const first = await ask(p.h, log, 'a0');
    // the VM's uptime, not the host's: it started at 0 a moment ago
    expect(first.mono).toBeLessThan(10_000n * MS);
    let last = first;
    for (let i = 1; i < 5; i++) {
      const r = await ask(p.h, log, `a${i}`);
      continued(last, r);
      last = r;
    }
    const snapP = await snapshotOf(p, 1);
    expect(snapP.clocks).toMatchObject({ monoNs: last.mono, realNs: last.real, cpuNs: last.cpu });
    const end = log.entries.at(-1)!;
    await b.until((m) => m.t === 'progress' && m.seq >= end.seq && m.count >= end.count);
    await p.h.terminate();
    await new Promise((r) => setTimeout(r, GAP_MS));
    b.h.send({ t: 'golive' });
    const live = (await b.until((m) => m.t === 'live')) as Extract<FromReplica, { t: 'live' }>;
    backup = null;
    const after = stream(b, () => null, live.seq);
    // before the guest reads anything, the backup's clock state is the primary's: it followed the log
    expect((await snapshotOf(b, 2)).clocks).toEqual(snapP.clocks);
    const next = await ask(b.h, after, 'b0');
    continued(last, next);
    expect(next.mono - last.mono).toBeGreaterThanOrEqual(BigInt(GAP_MS) * MS);
    // the backup's replay is not counted; what the guest did since is a few ms at most
    expect(next.cpu).toBeGreaterThanOrEqual(last.cpu);
    expect(next.cpu - last.cpu).toBeLessThan(100n * MS);
    // the readings went through the log with their realtime, and only the monotonic one has it
    const clocks = after.entries.filter((e): e is Extract<LogEntry, { kind: 'clock' }> => e.kind === 'clock');
    expect(clocks.map((e) => [e.payload.clock, e.payload.wall !== undefined])).toEqual([[1, true], [2, false], [0, false]]);
    expect(b.said.filter((m) => m.t === 'error')).toEqual([]);
  }, 60_000);

  it('a backup made from a snapshot, going live with no reading since, continues them from the snapshot', async () => {
    let backup: ReplicaHandle | null = null;
    const p = replica({ role: 'primary' });
    const log = stream(p, () => backup);
    let last = await ask(p.h, log, 'a0');
    for (let i = 1; i < 3; i++) last = await ask(p.h, log, `a${i}`);
    const snap = await snapshotOf(p, 1);
    const b = replica({ role: 'backup', snapshot: snap });
    backup = b.h;
    await b.until((m) => m.t === 'progress');
    await p.h.terminate();
    await new Promise((r) => setTimeout(r, GAP_MS));
    b.h.send({ t: 'golive' });
    const live = (await b.until((m) => m.t === 'live')) as Extract<FromReplica, { t: 'live' }>;
    const after = stream(b, () => null, live.seq);
    const next = await ask(b.h, after, 'b0');
    continued(last, next);
    expect(next.mono - last.mono).toBeGreaterThanOrEqual(BigInt(GAP_MS) * MS);
    expect(next.cpu).toBeGreaterThanOrEqual(last.cpu);
    expect(next.cpu - last.cpu).toBeLessThan(100n * MS);
  }, 60_000);

  it("the CPU clocks count the VM's thread, not another thread of its host computing", async () => {
    const p = replica({ role: 'primary' });
    const log = stream(p, () => null);
    const a = await ask(p.h, log, 'a');
    // this thread computes 300 ms: the host process's CPU time grows by that much
    const before = process.cpuUsage();
    const until = performance.now() + 300;
    let x = 0;
    while (performance.now() < until) x += Math.sqrt(x + 1);
    const spent = process.cpuUsage(before);
    expect(spent.user + spent.system).toBeGreaterThan(200_000);
    const b = await ask(p.h, log, 'b');
    expect(b.cpu).toBeGreaterThanOrEqual(a.cpu);
    expect(b.cpu - a.cpu).toBeLessThan(100n * MS);
    expect(x).toBeGreaterThan(0);
  }, 60_000);
});
