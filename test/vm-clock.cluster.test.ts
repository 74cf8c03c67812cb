// What this proves: on real hosts whose monotonic clocks differ (h2 runs in a
// Linux time namespace 1500 s behind, h3 in one 900 s ahead, as machines booted
// at other times would be), a guest's clocks never jump, across every kind of
// switch: a test failover to h2 and a fail-back, a backup restarted from a
// snapshot that then goes live, kill -9 of the primary's host, and a test
// failover onto the backup made after it (every host is primary once). The guest
// (wasm-src/wat/clockecho.wat) answers each message with its monotonic, CPU
// and realtime clocks. Between two consecutive answers:
//   - no clock goes back;
//   - the monotonic clock moves with realtime, the clock every host shares:
//     |Δmonotonic - Δrealtime| < 1 s. A go-live adds the realtime since the
//     last reading (ms resolution) and then counts the host's monotonic time,
//     so the two differ by a few ms; 1 s leaves room for a loaded machine, and
//     is 1500 times smaller than the jump a host's own clock would make;
//   - the CPU clock moves no more than the monotonic one (+ 50 ms: a
//     scheduler tick of granularity, and the work between the two readings):
//     one thread cannot compute longer than the time that passed.
// Needs root (unshare -T makes time namespaces); skipped without it.
import { afterEach, describe, expect, it } from 'vitest';
import { apiOf, Cluster, eventually } from './cluster.ts';
import type { FtClient } from '../host/cluster/client.ts';
import { watBytes } from './helpers.ts';

const GUEST = watBytes('clockecho');
const VM = 'clk';
/** each host's monotonic and boot clock offset, in s (0: the root namespace's clocks) */
const OFFSETS: Record<string, number> = { h1: 0, h2: -1500, h3: 900 };
const MS = 1_000_000n;
const root = process.getuid?.() === 0;

let cluster: Cluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

interface Reading {
  step: string;
  primary: string;
  mono: bigint;
  cpu: bigint;
  real: bigint;
}

describe('clocks across every kind of switch, on hosts with different monotonic clocks', () => {
  it.skipIf(!root)('never go back and never jump: test failover and back, live migration, backup restart then failover, kill -9 of the primary', async () => {
    const c = new Cluster();
    cluster = c;
    await Promise.all(
      Object.entries(OFFSETS).map(([id, off]) =>
        c.add(id, [], off ? { wrap: ['unshare', '-T', '--fork', '--kill-child', `--monotonic=${off}`, `--boottime=${off}`] } : {}),
      ),
    );
    await c.linked();
    const api = apiOf(c);
    const alive = new Set(Object.keys(OFFSETS));
    const vmState = async (): Promise<{ gen: number; state: string; primary: string; backup: string | null }> => {
      for (const id of alive) {
        try {
          const r = await api(id, 'GET', `/v1/vms/${VM}`);
          if (r.status === 200) return r.json;
        } catch {
          /* that host is going down: ask another */
        }
      }
      throw new Error('no host answers');
    };
    /** waits until the VM runs with a backup in a generation past `gen` */
    const running = (gen: number) =>
      eventually(`${VM} running with a backup past generation ${gen}`, async () => {
        const v = await vmState();
        return v.state === 'running' && v.gen > gen && v.backup ? v : undefined;
      }, 60_000, 100);

    const admin = await c.client('h1');
    await admin.start(VM, GUEST);
    let v = await running(0);

    const client: FtClient = await c.clientOf(['h1', 'h2', 'h3']);
    const answers = new Map<string, string>();
    client.on('recv', (m: { vm: string; data: Uint8Array }) => {
      const text = Buffer.from(m.data).toString();
      if (m.vm === VM && answers.size < 10_000) answers.set(text.split(' ')[0]!, text);
    });
    const readings: Reading[] = [];
    /** one reading: a message (sent again under a new id every 3 s until one is answered: a failover may drop what was not acknowledged) */
    const read = async (step: string): Promise<void> => {
      const primary = (await vmState()).primary;
      let tries = 0;
      let sentAt = 0;
      const text = await eventually(`an answer at ${step}`, () => {
        for (let t = 0; t < tries; t++) {
          const a = answers.get(`${step}.${t}`);
          if (a) return a;
        }
        if (Date.now() - sentAt > 3000) {
          client.send(VM, `${step}.${tries++}`);
          sentAt = Date.now();
        }
        return undefined;
      }, 60_000, 20);
      const [, mono, cpu, real] = text.split(' ');
      readings.push({ step, primary, mono: BigInt(mono!), cpu: BigInt(cpu!), real: BigInt(real!) });
    };
    const few = async (step: string): Promise<void> => {
      for (let i = 0; i < 3; i++) await read(`${step}${i}`);
    };

    await few('boot');
    // a test failover to the backup, then back
    for (const step of ['failover', 'failback']) {
      expect((await api(v.primary, 'POST', `/v1/vms/${VM}/failover`)).status).toBe(202);
      v = await running(v.gen);
      await few(step);
    }
    // a live migration of the primary to the host that has no replica: a backup made there
    // from a snapshot, then a planned switch to it
    const free = ['h1', 'h2', 'h3'].find((h) => h !== v.primary && h !== v.backup)!;
    const moved = await api(v.primary, 'POST', `/v1/vms/${VM}/migrate`, { to: free });
    expect(moved.status, JSON.stringify(moved.json)).toBe(200);
    v = await running(v.gen);
    expect(v.primary).toBe(free);
    await few('migrated');
    // a new backup made from a snapshot, which then goes live with no reading between:
    // where the clocks stand comes from the snapshot alone (shipped to its host with the memory)
    expect((await api(v.primary, 'POST', `/v1/vms/${VM}/backup/restart`)).status).toBe(202);
    v = await running(v.gen);
    expect((await api(v.primary, 'POST', `/v1/vms/${VM}/failover`)).status).toBe(202);
    v = await running(v.gen);
    await few('restored');
    // kill -9 of the primary's host: the backup goes live, a new one is made on the host left
    const dead = v.primary;
    alive.delete(dead);
    await c.kill(dead);
    v = await running(v.gen);
    await few('killed');
    // and a test failover to the new backup, made on the host left (h3, 900 s ahead, when h2 was the one killed)
    expect((await api(v.primary, 'POST', `/v1/vms/${VM}/failover`)).status).toBe(202);
    v = await running(v.gen);
    await few('last');

    // the switches went through hosts of different clocks, the one 1500 s behind among them
    const primaries = readings.map((r) => r.primary).filter((p, i, a) => i === 0 || a[i - 1] !== p);
    expect(primaries.length).toBeGreaterThanOrEqual(6);
    expect(primaries).toContain('h2');
    expect(new Set(primaries).size).toBe(3);

    const problems: string[] = [];
    for (let i = 1; i < readings.length; i++) {
      const a = readings[i - 1]!;
      const b = readings[i]!;
      const dMono = b.mono - a.mono;
      const dReal = b.real - a.real;
      const dCpu = b.cpu - a.cpu;
      const at = `${a.step} (${a.primary}) -> ${b.step} (${b.primary})`;
      if (dMono < 0n) problems.push(`${at}: monotonic went back ${-dMono} ns`);
      if (dReal < 0n) problems.push(`${at}: realtime went back ${-dReal} ns`);
      if (dCpu < 0n) problems.push(`${at}: CPU time went back ${-dCpu} ns`);
      const drift = dMono - dReal;
      if (drift > 1000n * MS || drift < -1000n * MS) problems.push(`${at}: monotonic moved ${dMono} ns, realtime ${dReal} ns`);
      if (dCpu > dMono + 50n * MS) problems.push(`${at}: CPU time moved ${dCpu} ns in ${dMono} ns`);
    }
    expect(problems, readings.map((r) => `${r.step} on ${r.primary}: monotonic ${r.mono}, CPU ${r.cpu}, realtime ${r.real}`).join('\n')).toEqual([]);
  }, 300_000);
});
