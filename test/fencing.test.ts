// Fencing: a primary's host paused longer than the failure timeout (SIGSTOP, as
// a frozen machine or a long GC would) wakes to find its generation given to
// its backup. It must learn that within a bounded time, drop its replica, say
// so, and from then on pass its clients' requests to the new primary.
import { afterEach, describe, expect, it } from 'vitest';
import { askVm, Cluster, eventsOf, eventually, linkedCluster } from './cluster.ts';

let c: Cluster | null = null;
afterEach(async () => {
  await c?.stop(); // SIGKILL: a stopped host dies of it too
  c = null;
});

describe('fencing a paused primary', () => {
  it('a primary woken after a pause longer than the failure timeout drops its replica and forwards to the new primary, every time', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' })).status).toBe(201);
    const connOn = async (host: string): Promise<number> => (await api(host, 'POST', '/v1/connections')).json.conn;
    for (let round = 0; round < 4; round++) {
      const info = await eventually('a primary with a backup', async () => {
        const r = (await api('h3', 'GET', '/v1/vms/kv')).json;
        return r?.state === 'running' && r.backup ? r : undefined;
      }, 60_000);
      const paused: string = info.primary;
      const other = ['h1', 'h2', 'h3'].find((h) => h !== paused)!;
      // a write the pause must not lose, through the host about to be paused
      expect(await askVm(api, paused, 'kv', await connOn(paused), `w${round} SET k${round} v${round}`)).toMatch(new RegExp(`^w${round} OK \\d+$`));
      c.host(paused).proc.kill('SIGSTOP');
      try {
        await eventually('another host goes live', async () => {
          const r = (await api(other, 'GET', '/v1/vms/kv')).json;
          return r?.gen > info.gen && r.primary !== paused ? true : undefined;
        }, 30_000);
      } finally {
        c.host(paused).proc.kill('SIGCONT');
      }
      // bounded: the woken host hears of the new generation from its peers (or the arbiter) at once
      const after = await eventually('the woken host knows it is not the primary', async () => {
        const r = (await api(paused, 'GET', '/v1/vms/kv')).json;
        return r?.gen > info.gen && r.primary !== paused ? r : undefined;
      }, 10_000);
      expect(after.primary).not.toBe(paused);
      const dropped = (await eventsOf(c, paused, 'replica-dropped')).filter((e) => e.vm === 'kv' && e.role === 'primary');
      expect(dropped.at(-1)?.why).toMatch(/fenced off|lost the arbiter/);
      // its clients' requests go to the new primary, and nothing written is lost
      const conn = await connOn(paused);
      for (let k = 0; k <= round; k++) expect(await askVm(api, paused, 'kv', conn, `r${round}-${k} GET k${k}`)).toBe(`r${round}-${k} VALUE v${k}`);
    }
  }, 240_000);

  it('a host paused with no primary has no generation to check, and says nothing of one; with a primary it checks', async () => {
    let api;
    ({ c, api } = await linkedCluster(['h1', 'h2']));
    const pausedFor = (h: string): string[] => c!.host(h).log.filter((l) => /paused for \d+ ms/.test(l));
    // h2 holds nothing: a pause longer than the failure timeout (1 s) wakes it with nothing to check
    c.host('h2').proc.kill('SIGSTOP');
    await eventually('h1 takes h2 for dead', async () => ((await api('h1', 'GET', '/v1/hosts')).json.hosts.find((x: { id: string; alive: boolean }) => x.id === 'h2')?.alive === false ? true : undefined));
    c.host('h2').proc.kill('SIGCONT');
    await eventually('h1 hears h2 again', async () => ((await api('h1', 'GET', '/v1/hosts')).json.hosts.find((x: { id: string; alive: boolean }) => x.id === 'h2')?.alive === true ? true : undefined));
    // its own API answers, so its timers have run since it woke
    expect((await api('h2', 'GET', '/v1/vms')).status).toBe(200);
    expect(pausedFor('h2')).toEqual([]);
    // the same pause of a host with a primary on it: it asks the arbiter about that primary's generation
    const started = await api('h1', 'POST', '/v1/vms', { name: 'kv', sample: 'kv' });
    expect(started.status).toBe(201);
    const p: string = started.json.primary;
    const q = p === 'h1' ? 'h2' : 'h1';
    c.host(p).proc.kill('SIGSTOP');
    await eventually(`${q} takes ${p} for dead`, async () => ((await api(q, 'GET', '/v1/hosts')).json.hosts.find((x: { id: string; alive: boolean }) => x.id === p)?.alive === false ? true : undefined));
    c.host(p).proc.kill('SIGCONT');
    await eventually(`${p} says it checks its primary`, async () => (pausedFor(p).some((l) => l.includes('checking the generation of its primary')) ? true : undefined));
  }, 120_000);
});
