// No VM disturbs another: a backup restart of a large reactor streams its
// snapshot without silencing its host (no failover of the small VMs beside it,
// no long silence in any failure detector), and new VMs' primaries spread over
// the hosts whichever host takes the start requests. Real host processes on
// loopback; the large reactor is written byte by byte (host/bench/isolation.ts).
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, connect, type Socket } from 'node:net';
import type { FtClient } from '../host/cluster/client.ts';
import { drained } from '../host/cluster/wire.ts';
import { FailureDetector } from '../host/ft/detector.ts';
import { reactorModule } from '../host/bench/isolation.ts';
import { Cluster, eventsOf, eventually } from './cluster.ts';

const KV = new Uint8Array(readFileSync(new URL('../guests/kv.wasm', import.meta.url)));
const FAIL_MS = 1000;

let cluster: Cluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

async function threeHosts(): Promise<Cluster> {
  const c = new Cluster(['--fail-ms', String(FAIL_MS), '--heartbeat-ms', '50']);
  cluster = c;
  await Promise.all(['h1', 'h2', 'h3'].map((id) => c.add(id)));
  await c.linked();
  return c;
}

type Status = {
  gaps: { peer: string; atMs: number; gapMs: number }[];
  loop: { atMs: number; maxMs: number }[];
  vms: { name: string; role: string; alone: boolean; partner: string | null; recreate: { memoryBytes: number; pauseMs: number; ms: number | null } | null }[];
};
const statusOf = async (c: FtClient): Promise<Status> => (await c.status()) as unknown as Status;
const start = (c: FtClient, vm: string, module: Uint8Array, opts: Record<string, unknown> = {}) => c.request({ t: 'start', vm, module, ...opts }, 120_000);

describe('isolation', () => {
  it('drained() resolves at a later turn of the event loop even when nothing is queued, so a chunk loop lets timers run', async () => {
    const srv = createServer((s) => s.resume());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const sock: Socket = connect((srv.address() as { port: number }).port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    try {
      let turned = false;
      setImmediate(() => (turned = true));
      await drained(sock, 1024);
      expect(turned).toBe(true);
    } finally {
      sock.destroy();
      await new Promise((r) => srv.close(r));
    }
  });

  it('the failure detector remembers silences of at least gapNoteMs, and the longest one per peer', () => {
    let now = 0;
    const d = new FailureDetector(1000, () => now, 100);
    d.heard('h2');
    now = 50;
    d.heard('h2');
    now = 400;
    d.heard('h2');
    now = 450;
    d.heard('h2');
    expect(d.maxGapMs('h2')).toBe(350);
    expect(d.gapsSince(0)).toEqual([{ peer: 'h2', at: 400, gapMs: 350 }]);
    expect(d.gapsSince(401)).toEqual([]);
    expect(d.maxGapMs('h3')).toBe(0);
  });

  it('restarting the backup of a 256 MiB reactor silences no host and fails over none of the small VMs beside it', async () => {
    const c = await threeHosts();
    const a = await c.client('h1');
    const small = ['kv1', 'kv2'];
    for (const vm of small) await start(a, vm, KV, { host: 'h1' });
    const memoryMiB = 256;
    await start(a, 'big', reactorModule({ growPages: memoryMiB * 16 - 17, functions: 1, seed: 1 }), { memoryMiB, host: 'h1' });
    await eventually(
      'every VM with its backup',
      async () => ((await statusOf(a)).vms.filter((v) => v.role === 'primary' && v.partner && !v.alone).length === 3 ? true : undefined),
      120_000,
    );
    // a light load on the small VMs: each answers within the test's bounds throughout
    const answered = new Set<string>();
    a.on('recv', (r: { data: Uint8Array }) => void answered.add(Buffer.from(r.data).toString().split(' ')[0]!));
    let n = 0;
    const load = setInterval(() => {
      for (const vm of small) a.send(vm, `q${n++} GET k`);
    }, 20);
    try {
      await eventually('the load answered', () => (answered.size > 10 ? true : undefined), 20_000);
      const t0 = Date.now();
      const r = await fetch(`${c.host('h1').api}/v1/vms/big/backup/restart`, { method: 'POST', headers: { authorization: `Bearer ${c.token}` } });
      expect(r.status).toBe(202);
      const rec = await eventually(
        'the new backup acknowledged',
        async () => {
          const v = (await statusOf(a)).vms.find((x) => x.name === 'big');
          return v?.recreate?.ms != null && v.recreate.memoryBytes > 0 && v.partner && !v.alone ? v.recreate : undefined;
        },
        120_000,
      );
      // a second past the new backup's first ack: the receiver restored and checked the memory meanwhile
      await new Promise((r) => setTimeout(r, 1000));
      expect(rec.memoryBytes).toBeGreaterThan((memoryMiB - 2) * 1024 * 1024);
      expect(rec.pauseMs).toBeGreaterThan(0);
      const following = (await Promise.all(['h2', 'h3'].map((id) => eventsOf(c, id, 'backup-following')))).flat();
      expect(following).toContainEqual(expect.objectContaining({ vm: 'big', primary: 'h1', from: 'snapshot' }));
      for (const id of ['h1', 'h2', 'h3']) {
        const events = await eventsOf(c, id);
        const mine = events.filter((e) => small.includes(e.vm));
        expect(mine.filter((e) => e.event === 'partner-silent' || e.event === 'generation-won'), `${id}: small VMs' failovers`).toEqual([]);
        // no failure detector went without hearing from a peer for half the failure timeout
        // (the benchmark's goal is a quarter; half leaves room for a machine shared with other work)
        const gaps = (await statusOf(await c.client(id))).gaps.filter((g) => g.atMs >= t0);
        expect(Math.max(0, ...gaps.map((g) => g.gapMs)), `${id}: longest silence of a peer`).toBeLessThan(FAIL_MS / 2);
      }
    } finally {
      clearInterval(load);
    }
  }, 300_000);

  it('six VMs started through one host of three get their primaries on all three, each backup on another host', async () => {
    const c = await threeHosts();
    const a = await c.client('h1');
    const placed: { primary: string; backup: string | null }[] = [];
    for (let i = 0; i < 6; i++) placed.push((await start(a, `kv${i}`, KV)) as unknown as { primary: string; backup: string | null });
    expect(new Set(placed.map((p) => p.primary))).toEqual(new Set(['h1', 'h2', 'h3']));
    for (const p of placed) expect(p.backup).not.toBe(p.primary);
    // as every host sees it, and each VM answers through the host that took its start
    const answers = new Map<string, string>();
    a.on('recv', (r: { vm: string; data: Uint8Array }) => void answers.set(r.vm, Buffer.from(r.data).toString()));
    for (let i = 0; i < 6; i++) a.send(`kv${i}`, `w${i} SET k v${i}`);
    await eventually('every VM answered', () => (answers.size === 6 ? true : undefined), 20_000);
    for (let i = 0; i < 6; i++) expect(answers.get(`kv${i}`)).toMatch(new RegExp(`^w${i} OK`));
    const counts = new Map<string, number>();
    for (const p of placed) {
      counts.set(p.primary, (counts.get(p.primary) ?? 0) + 1);
      if (p.backup) counts.set(p.backup, (counts.get(p.backup) ?? 0) + 1);
    }
    // twelve replicas, four on each host
    expect([...counts.values()].sort()).toEqual([4, 4, 4]);
  }, 180_000);

  it('a host hint places the primary there, and a hint naming no live host is refused with FTVM_ERR_UNAVAILABLE', async () => {
    const c = await threeHosts();
    const a = await c.client('h1');
    expect(await start(a, 'pinned', KV, { host: 'h3' })).toMatchObject({ primary: 'h3' });
    await expect(start(a, 'nowhere', KV, { host: 'h9' })).rejects.toThrow(/FTVM_ERR_UNAVAILABLE|not a live member/);
  }, 120_000);
});
