// A VM's replicas report the state digests they logged (the primary) and
// verified on replay (the backup) on their hosts' client-port status, at the
// period `ftvm host --digest-every` writes into the VM's start entry; the two
// replicas' digests agree at every count both report. A reactor whose every
// request is far shorter than the check-point period (kv: about 4,000 counts)
// still reaches its check points, and so its digests, as its requests add up.
// A period that is not a positive integer is a usage error.
import { afterEach, describe, expect, it } from 'vitest';
import { FtClient } from '../host/cluster/client.ts';
import type { DigestSeen } from '../host/cluster/host.ts';
import { VM_DIGESTS_KEPT_MAX } from '../host/limits.ts';
import { apiOf, Cluster, eventually } from './cluster.ts';
import { ftvm } from './ftvm-cli.ts';

let c: Cluster | null = null;
afterEach(async () => {
  await c?.stop();
  c = null;
});

/** The digests host `id` of `cluster` reports for VM `vm` (its client port's status). */
async function digestsOn(cluster: Cluster, id: string, vm: string): Promise<DigestSeen[]> {
  const client = new FtClient(cluster.host(id).client, { token: cluster.token, reconnect: false });
  try {
    await client.connect(10_000);
    const s = await client.request({ t: 'status' }, 10_000);
    return (s.vms as { name: string; digests: DigestSeen[] }[]).find((v) => v.name === vm)?.digests ?? [];
  } finally {
    client.close();
  }
}

describe("replicas' state digests", () => {
  it('are reported by both replicas at the period of --digest-every, and agree where both have one', async () => {
    const every = 20_000;
    c = new Cluster(['--fail-ms', '2000', '--heartbeat-ms', '50', '--digest-every', String(every)]);
    await Promise.all(['h1', 'h2'].map((id) => c!.add(id)));
    await c.linked();
    const api = apiOf(c);
    const started = await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
    expect(started.status, JSON.stringify(started.json)).toBe(201);
    const { primary, backup } = started.json as { primary: string; backup: string };
    await eventually('kv running', async () => ((await api(primary, 'GET', '/v1/vms/kv')).json?.state === 'running' ? true : undefined));
    // about 4,000 counts per request: each round of 50 passes two check points (every 100,000 counts)
    // and the period's multiples between; a digest is skipped while the last one took over 2% of the
    // time since (how many come is the machine's), so rounds go on until five counts have both
    let sent = 0;
    const both = await eventually(
      'five counts both replicas report a digest at',
      async () => {
        for (const end = sent + 50; sent < end; sent++) expect((await api(primary, 'POST', '/v1/vms/kv/messages', { conn: 1, data: `w${sent} SET k${sent % 5} v${sent}` })).status).toBe(202);
        const p = await digestsOn(c!, primary, 'kv');
        const b = await digestsOn(c!, backup, 'kv');
        const common = p.filter((d) => b.some((x) => x.count === d.count));
        return common.length >= 5 ? { p, b } : undefined;
      },
      60_000,
    );
    for (const d of [...both.p, ...both.b]) {
      expect(d.digest).toMatch(/^[0-9a-f]{64}$/);
      expect(d.gen).toBe(1);
    }
    expect(both.p.every((d) => !d.verified)).toBe(true);
    expect(both.b.every((d) => d.verified)).toBe(true);
    expect(both.p.length).toBeLessThanOrEqual(VM_DIGESTS_KEPT_MAX);
    // at the first check point at or past each multiple: never two in one period, counts rising
    const counts = both.p.map((d) => BigInt(d.count));
    for (let i = 1; i < counts.length; i++) expect(counts[i]! / BigInt(every)).toBeGreaterThan(counts[i - 1]! / BigInt(every));
    for (const d of both.b) {
      const mine = both.p.find((x) => x.count === d.count);
      if (mine) expect(d.digest).toBe(mine.digest);
    }
    // the state changes between digests (the writes are in it)
    expect(new Set(both.p.map((d) => d.digest)).size).toBeGreaterThan(1);
  }, 120_000);

  it('--digest-every takes a positive integer only, and names the range when one is too large', async () => {
    for (const bad of ['0', '-5', 'often', '1.5']) {
      const r = await ftvm(['host', '--id', 'x', '--secret', 's', '--dir', '/nonexistent', `--digest-every=${bad}`]);
      expect([r.code, r.stderr.trim()]).toEqual([2, `ftvm host: FTVM_ERR_USAGE: --digest-every expects a positive integer, got "${bad}" (see ftvm host --help)`]);
    }
    const huge = await ftvm(['host', '--id', 'x', '--secret', 's', '--dir', '/nonexistent', '--digest-every=99999999999999999999']);
    expect([huge.code, huge.stderr.trim()]).toEqual([2, `ftvm host: FTVM_ERR_USAGE: --digest-every expects an integer from 1 to ${Number.MAX_SAFE_INTEGER}, got "99999999999999999999" (see ftvm host --help)`]);
  }, 60_000);
});
