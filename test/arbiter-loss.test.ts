// Losing the arbiter stops progress, never state: with the file arbiter's
// directory removed under a running cluster, no VM is started, deleted or
// failed over, no running VM is dropped, and a host started afterwards (which
// makes a new, empty cluster there) is refused by the hosts of the old one, so
// no slot or connection id can be held twice among linked hosts. A pair
// whose partner fell silent while the arbiter was away, and is heard again
// before it is back, goes on as it was: serving, and with no claim left to
// make a needless failover once the arbiter returns.
import { renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { apiOf, askVm, Cluster, eventually, linkedCluster } from './cluster.ts';

let c: Cluster | null = null;
afterEach(async () => {
  await c?.stop();
  c = null;
});

describe('a lost arbiter', () => {
  it('a pair silent for a while with the arbiter away resumes when the partner is heard again, and claims nothing later', async () => {
    // a failure timeout well above the silences a busy machine makes on its own: the only silence is the pause
    c = new Cluster(['--fail-ms', '3000', '--heartbeat-ms', '50']);
    await Promise.all(['h1', 'h2'].map((id) => c!.add(id)));
    await c.linked();
    const api = apiOf(c);
    const started = await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
    expect(started.status).toBe(201);
    const { primary, backup } = started.json as { primary: string; backup: string };
    await eventually('a backup', async () => ((await api(primary, 'GET', '/v1/vms/kv')).json?.state === 'running' ? true : undefined));
    const conn = (await api(primary, 'POST', '/v1/connections')).json.conn;
    expect(await askVm(api, primary, 'kv', conn, 'w1 SET k v1')).toMatch(/^w1 OK \d+$/);
    const arbiter = join(c.dir, 'arbiter');
    renameSync(arbiter, `${arbiter}.away`);
    // the primary's host paused past the failure timeout: each side takes the other for dead and cannot claim
    c.host(primary).proc.kill('SIGSTOP');
    await eventually('the backup tries to go live', async () => (c!.host(backup).log.some((l) => l.includes('kv: arbiter unreachable')) ? true : undefined));
    c.host(primary).proc.kill('SIGCONT');
    const resumed = (h: string): boolean => c!.host(h).log.some((l) => l.includes('kv: ') && l.includes('is heard again and the arbiter was not reached'));
    // (a message sent while its primary still claims is not taken: a client would send it again)
    for (const h of [backup, primary]) await eventually(`${h} goes on as before`, async () => (resumed(h) ? true : undefined));
    // serving again, with the arbiter still away: the backup acknowledges the log, so the answer is released
    expect(await askVm(api, primary, 'kv', conn, 'w2 SET k v2')).toMatch(/^w2 OK \d+$/);
    renameSync(`${arbiter}.away`, arbiter);
    expect(await askVm(api, backup, 'kv', (await api(backup, 'POST', '/v1/connections')).json.conn, 'r1 GET k')).toBe('r1 VALUE v2');
    // every host's report comes back to running at generation 1 (the primary says so every 250 ms)
    for (const h of [primary, backup]) {
      await eventually(`${h} reports the pair running`, async () => {
        const r = (await api(h, 'GET', '/v1/vms/kv')).json;
        return r?.state === 'running' && r.gen === 1 && r.primary === primary ? true : undefined;
      });
    }
    for (const h of [primary, backup]) expect(c.host(h).log.filter((l) => l.includes('generation-won') || l.includes('won generation'))).toEqual([]);
  }, 120_000);

  it('a primary whose backup died while the arbiter is away is reported failing-over, and goes on alone once it is back', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const started = await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
    const { primary, backup } = started.json as { primary: string; backup: string };
    const spare = ['h1', 'h2', 'h3'].find((h) => h !== primary && h !== backup)!;
    await eventually('a backup', async () => ((await api(primary, 'GET', '/v1/vms/kv')).json?.state === 'running' ? true : undefined));
    const arbiter = join(c.dir, 'arbiter');
    renameSync(arbiter, `${arbiter}.away`);
    await c.kill(backup);
    // not "running": its outputs wait for a claim the arbiter cannot answer
    for (const h of [primary, spare]) {
      await eventually(`${h} reports it failing over`, async () => ((await api(h, 'GET', '/v1/vms/kv')).json?.state === 'failing-over' ? true : undefined));
    }
    renameSync(`${arbiter}.away`, arbiter);
    const after = await eventually('alone at the next generation, then a new backup', async () => {
      const r = (await api(spare, 'GET', '/v1/vms/kv')).json;
      return r?.state === 'running' && r.gen === 2 ? r : undefined;
    }, 30_000);
    expect([after.primary, after.backup]).toEqual([primary, spare]);
  }, 120_000);

  it('stops starts, deletes and claims, drops no running VM, and keeps a host of a cluster made again out', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' })).status).toBe(201);
    const before = await eventually('a backup', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/kv')).json;
      return r?.state === 'running' ? r : undefined;
    });
    const conn = (await api(before.primary, 'POST', '/v1/connections')).json.conn;
    expect(await askVm(api, before.primary, 'kv', conn, 'w1 SET k v1')).toMatch(/^w1 OK \d+$/);

    rmSync(join(c.dir, 'arbiter'), { recursive: true, force: true });
    // no new VM, no second VM of the same name, no delete: each refused with the arbiter's code
    const fresh = await api('h2', 'POST', '/v1/vms', { name: 'other', sample: 'kv' });
    expect(fresh.status, JSON.stringify(fresh.json)).toBe(503);
    expect(fresh.json.error.code).toBe('FTVM_ERR_ARBITER');
    const again = await api('h3', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
    expect(again.status).toBeGreaterThanOrEqual(400);
    const del = await api('h1', 'DELETE', '/v1/vms/kv');
    expect(del.status).toBe(503);
    expect(del.json.error.code).toBe('FTVM_ERR_ARBITER');
    // the running VM goes on, with what it held
    expect(await askVm(api, before.primary, 'kv', conn, 'r1 GET k')).toBe('r1 VALUE v1');
    expect(await askVm(api, before.primary, 'kv', conn, 'w2 SET k v2')).toMatch(/^w2 OK \d+$/);
    for (const h of ['h1', 'h2', 'h3']) expect((await api(h, 'GET', '/v1/vms/kv')).json).toMatchObject({ gen: before.gen, primary: before.primary, state: 'running' });

    // a host restarted under its id while the arbiter's state is gone refuses to start: it remembers the cluster it was in
    const spare = ['h1', 'h2', 'h3'].find((h) => h !== before.primary && h !== before.backup)!;
    const oldPeerPort = c.host(spare).peer.slice(c.host(spare).peer.lastIndexOf(':') + 1);
    await c.kill(spare);
    await expect(c.add(spare, ['--peer-port', oldPeerPort])).rejects.toThrow(/FTVM_ERR_ARBITER.*held this host's cluster/);
    // one started with a new data directory makes a new cluster in the empty place (at its old peer address,
    // which the others still dial: their registry cannot be read any more), and the others will not link with it
    await c.add(spare, ['--peer-port', oldPeerPort, '--data-dir', join(c.dir, `${spare}-new`)]);
    // (the old hosts dial it; it sees their cluster id in their hello and refuses them)
    for (const h of [before.primary, before.backup]) {
      await eventually(`${spare} refuses ${h}`, () => (c!.host(spare).log.some((l) => l.includes(`peer ${h} belongs to another cluster`)) ? true : undefined));
    }
    const status = await (await c.client(before.primary)).status();
    expect((status.peers as { id: string; linked: boolean }[]).find((p) => p.id === spare)?.linked ?? false).toBe(false);
    expect(await askVm(api, before.primary, 'kv', conn, 'r2 GET k')).toBe('r2 VALUE v2');
  }, 120_000);
});
