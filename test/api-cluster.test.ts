// The REST API across a real cluster of three `ftvm host` processes: every host
// describes every VM as its primary's host last said; test failover and backup
// restart asked of a host without the primary are forwarded to the one with it;
// DELETE through any host stops both replicas; a host that cannot reach the
// primary's host answers 503.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiOf, Cluster, eventually } from './cluster.ts';

// A failure timeout long enough that a request made just after a kill -9 meets
// the primary's host not yet replaced.
const cluster = new Cluster(['--fail-ms', '2000', '--heartbeat-ms', '50']);
const api = apiOf(cluster);

beforeAll(async () => {
  for (const id of ['h1', 'h2', 'h3']) await cluster.add(id);
  await cluster.linked();
}, 120_000);
afterAll(() => cluster.stop());

/** Sends one kv request through `host` and waits (bounded) for its answer. */
async function ask(host: string, conn: number, line: string): Promise<string> {
  expect((await api(host, 'POST', '/v1/vms/kv/messages', { conn, data: line })).status).toBe(202);
  const id = line.split(' ')[0]!;
  return eventually(`the answer to ${line}`, async () => {
    const r = await api(host, 'GET', `/v1/vms/kv/outputs?conn=${conn}&waitMs=1000`);
    return (r.json as { data: string }[]).map((o) => o.data).find((d) => d.startsWith(`${id} `));
  });
}

/** the host the second test kills (its VM's primary's: placement chooses it) */
let dead = 'h2';

describe('the REST API across a cluster', () => {
  it('every host describes the VM; failover and backup restart are forwarded to the primary; state survives both', async () => {
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' })).json).toMatchObject({ primary: 'h1', backup: 'h2', state: 'running' });
    // a second VM's primary goes to the host with the fewest replicas (h3), its backup to the next (h1 and h2 tie: h1)
    expect((await api('h1', 'POST', '/v1/vms', { name: 'spread', sample: 'kv' })).json).toMatchObject({ primary: 'h3', backup: 'h1' });
    expect((await api('h1', 'DELETE', '/v1/vms/spread')).status).toBe(204);
    const { conn } = (await api('h3', 'POST', '/v1/connections')).json as { conn: number };
    expect(await ask('h3', conn, 'a SET k 1')).toBe('a OK 1');
    // h3 runs no replica of kv, yet knows how it is doing
    const seen = await eventually('h3 sees the primary count and the log sent', async () => {
      const v = (await api('h3', 'GET', '/v1/vms/kv')).json;
      return BigInt(v.count) > 0n && v.logBytes > 0 && v.released >= 0 ? v : undefined;
    });
    expect(seen).toMatchObject({ name: 'kv', gen: 1, state: 'running', primary: 'h1', backup: 'h2', replica: null });
    expect(seen.ageMs).toBeGreaterThanOrEqual(0);

    // restart the backup through h3: forwarded to h1, which fences the old backup off and makes a new one
    expect((await api('h3', 'POST', '/v1/vms/kv/backup/restart')).status).toBe(202);
    const restarted = await eventually('a new backup', async () => {
      const v = (await api('h1', 'GET', '/v1/vms/kv')).json;
      return v.gen === 2 && v.state === 'running' && v.replica?.acked >= 0 ? v : undefined;
    });
    expect(restarted.primary).toBe('h1');
    expect(['h2', 'h3']).toContain(restarted.backup);
    expect(await ask('h3', conn, 'b SET k 2')).toBe('b OK 2');

    // a test failover through h3: forwarded to h1; the backup takes over and answers from the same state
    const before = restarted.backup as string;
    expect((await api('h3', 'POST', '/v1/vms/kv/failover')).status).toBe(202);
    const after = await eventually('the backup took over', async () => {
      const v = (await api('h3', 'GET', '/v1/vms/kv')).json;
      return v.primary === before && v.gen === 3 ? v : undefined;
    });
    expect(after.primary).toBe(before);
    expect(await ask('h3', conn, 'c GET k')).toBe('c VALUE 2');
    const metrics = await (await fetch(`${cluster.host(before).api}/metrics`, { headers: { authorization: `Bearer ${cluster.token}` } })).text();
    expect(metrics).toMatch(/^ftvm_failovers_total 1$/m);
    // the new primary makes itself a new backup
    await eventually('a backup again', async () => ((await api('h3', 'GET', '/v1/vms/kv')).json.state === 'running' ? true : undefined));
  }, 120_000);

  it('a request for a VM whose primary host is dead answers 503 until the backup takes over', async () => {
    expect((await api('h2', 'POST', '/v1/vms', { name: 'kv2', sample: 'kv' })).status).toBe(201);
    const placed = await eventually('kv2 has a backup', async () => {
      const v = (await api('h2', 'GET', '/v1/vms/kv2')).json;
      return v.state === 'running' ? v : undefined;
    });
    // placement may have put the primary on another host than h2: the third host is the one with no replica of kv2
    const other = ['h1', 'h2', 'h3'].find((h) => h !== placed.backup && h !== placed.primary)!;
    await eventually(`${other} knows kv2`, async () => ((await api(other, 'GET', '/v1/vms/kv2')).status === 200 ? true : undefined));
    dead = placed.primary;
    await cluster.kill(dead);
    const r = await api(other, 'POST', '/v1/vms/kv2/failover');
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('FTVM_ERR_UNAVAILABLE');
    const live = await eventually('the backup took over', async () => {
      const v = (await api(other, 'GET', '/v1/vms/kv2')).json;
      return v.primary === placed.backup && v.gen === 2 ? v : undefined;
    }, 30_000);
    expect(live.state).not.toBe('failing-over');
  }, 120_000);

  it('DELETE through a host without a replica stops both replicas everywhere', async () => {
    const hosts = ['h1', 'h2', 'h3'].filter((h) => h !== dead);
    // placement puts its replicas on the two live hosts, the primary on the one with fewer replicas
    const placed = (await api(hosts[0]!, 'POST', '/v1/vms', { name: 'kv3', sample: 'kv' })).json;
    expect([placed.primary, placed.backup].sort()).toEqual(hosts);
    await eventually(`${placed.backup} runs the backup`, async () => ((await api(placed.backup, 'GET', '/v1/vms/kv3')).json.replica?.role === 'backup' ? true : undefined));
    expect((await api(placed.backup, 'DELETE', '/v1/vms/kv3')).status).toBe(204);
    for (const h of hosts) {
      await eventually(`${h} forgot kv3`, async () => ((await api(h, 'GET', '/v1/vms/kv3')).status === 404 ? true : undefined));
      const m = await (await fetch(`${cluster.host(h).api}/metrics`, { headers: { authorization: `Bearer ${cluster.token}` } })).text();
      expect(m).not.toMatch(/vm="kv3"/);
    }
  }, 60_000);
});
