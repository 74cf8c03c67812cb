// A VM whose replicas are all gone is reported lost, never running, on every
// host, also after the hosts that held it restart under their old ids; DELETE
// frees its name. A host that restarts faster than the failure timeout is
// known restarted as soon as it links again (its handshake says its boot id): its partners act at once.
// After every host restarted, none remembers the VM but the arbiter holds it:
// each host, asked by name, reports it lost, and any of them deletes it.
import { afterEach, describe, expect, it } from 'vitest';
import { apiOf, askVm, Cluster, eventsOf, eventually, linkedCluster } from './cluster.ts';

let c: Cluster | null = null;
afterEach(async () => {
  await c?.stop();
  c = null;
});

describe('a VM with no replica left', () => {
  it('is reported lost, not failing-over or running, before and after its hosts restart; DELETE frees the name', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const started = (await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' })).json;
    const { primary, backup } = started as { primary: string; backup: string };
    const witness = ['h1', 'h2', 'h3'].find((h) => h !== primary && h !== backup)!;
    await eventually('running, seen by the third host', async () => ((await api(witness, 'GET', '/v1/vms/kv')).json?.state === 'running' ? true : undefined));
    await c.kill(backup);
    await c.kill(primary);
    await eventually('lost, on the third host', async () => ((await api(witness, 'GET', '/v1/vms/kv')).json?.state === 'lost' ? true : undefined), 20_000);
    // both come back under their old ids, holding nothing
    await Promise.all([c.add(primary), c.add(backup)]);
    await c.linked();
    const seen = (await api(witness, 'GET', '/v1/vms/kv')).json;
    expect(seen.state, JSON.stringify(seen)).toBe('lost');
    const again = await api(primary, 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
    expect(again.status).toBe(409);
    expect(again.json.error.message).toMatch(/lost/);
    expect((await api(witness, 'DELETE', '/v1/vms/kv')).status).toBe(204);
    const reborn = await api(primary, 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
    expect(reborn.status, JSON.stringify(reborn.json)).toBe(201);
    await eventually('the new kv runs', async () => ((await api(witness, 'GET', '/v1/vms/kv')).json?.state === 'running' ? true : undefined));
  }, 120_000);

  it('after every host restarted, each reports it lost when asked by name, and any of them can delete it', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const { primary, backup } = (await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' })).json as { primary: string; backup: string };
    await eventually('running, seen by its backup', async () => ((await api(backup, 'GET', '/v1/vms/kv')).json?.state === 'running' ? true : undefined));
    // its replicas gone, then the third host restarted too: no host remembers the VM, the arbiter still holds it
    await c.kill(backup);
    await c.kill(primary);
    const witness = ['h1', 'h2', 'h3'].find((h) => h !== primary && h !== backup)!;
    await c.kill(witness);
    await Promise.all(['h1', 'h2', 'h3'].map((id) => c!.add(id)));
    await c.linked();
    for (const h of ['h1', 'h2', 'h3']) {
      const seen = await eventually(`lost, on ${h}`, async () => {
        const r = await api(h, 'GET', '/v1/vms/kv');
        return r.status === 200 && r.json.state === 'lost' ? r.json : undefined;
      });
      expect([seen.gen, seen.primary]).toEqual([1, primary]);
    }
    const again = await api(witness, 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
    expect([again.status, again.json.error.code]).toEqual([409, 'FTVM_ERR_EXISTS']);
    expect(again.json.error.message).toMatch(/lost/);
    // deleted through a host that never ran it
    expect((await api(witness, 'DELETE', '/v1/vms/kv')).status).toBe(204);
    expect((await api(primary, 'GET', '/v1/vms/kv')).status).toBe(404);
    expect((await api(primary, 'DELETE', '/v1/vms/kv')).status).toBe(404);
    const reborn = await api(backup, 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
    expect(reborn.status, JSON.stringify(reborn.json)).toBe(201);
    await eventually('the new kv runs', async () => ((await api(witness, 'GET', '/v1/vms/kv')).json?.state === 'running' ? true : undefined));
  }, 120_000);

  it('a primary\'s host restarted within the failure timeout: its backup goes live as soon as the restarted host links again', async () => {
    // a failure timeout longer than the restart takes: only the new boot id can tell the backup
    c = new Cluster(['--fail-ms', '30000', '--heartbeat-ms', '50']);
    await Promise.all(['h1', 'h2', 'h3'].map((id) => c!.add(id)));
    await c.linked();
    const api = apiOf(c);
    const { primary, backup } = (await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' })).json as { primary: string; backup: string };
    await eventually('running', async () => ((await api(backup, 'GET', '/v1/vms/kv')).json?.state === 'running' ? true : undefined));
    const conn = (await api(backup, 'POST', '/v1/connections')).json.conn;
    expect(await askVm(api, backup, 'kv', conn, 'w SET k v')).toMatch(/^w OK \d+$/);
    await c.kill(primary);
    await c.add(primary);
    const live = await eventually('the backup went live', async () => {
      const r = (await api(backup, 'GET', '/v1/vms/kv')).json;
      return r?.gen === 2 && r.primary === backup ? r : undefined;
    }, 25_000); // under the 30 s failure timeout: the boot id, not a silence, told it
    expect(live.state).not.toBe('lost');
    expect(c.host(backup).log.some((l) => l.includes(`${primary} restarted`))).toBe(true);
    expect((await eventsOf(c, backup, 'partner-silent')).some((e) => e.vm === 'kv' && e.partner === primary)).toBe(true);
    expect(await askVm(api, backup, 'kv', conn, 'r GET k')).toBe('r VALUE v');
  }, 120_000);
});
