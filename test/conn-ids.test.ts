// Connection ids come from blocks the arbiter hands out once per slot: a host
// never hands out an id its slot handed out before (within 2^23), also after a
// restart, and a connection never waits for the arbiter.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileArbiter } from '../host/cluster/arbiter.ts';
import { CONN_BLOCKS_PER_SLOT, ConnIds } from '../host/cluster/conn-ids.ts';
import { CONN_BLOCK_IDS } from '../host/limits.ts';
import { Cluster, linkedCluster } from './cluster.ts';

const dirs: string[] = [];
let c: Cluster | null = null;
afterEach(async () => {
  await c?.stop();
  c = null;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function arbiterDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ftvm-conn-ids-'));
  dirs.push(d);
  return d;
}

describe('connection ids', () => {
  it('a host hands out each id once, over several blocks and after a restart of the allocator', async () => {
    const arbiter = new FileArbiter(join(arbiterDir(), 'a'));
    const said: string[] = [];
    const ids = new Set<number>();
    const first = new ConnIds(() => arbiter.connBlock(7), (e) => said.push(e.message));
    await first.start();
    for (let i = 0; i < 3 * CONN_BLOCK_IDS; i++) {
      const id = first.id();
      expect(id).not.toBeNull();
      ids.add(id!);
      // the spare is taken in the background: give it its turn as a host's event loop would
      if (i % CONN_BLOCK_IDS === 0) await new Promise((r) => setImmediate(r));
    }
    expect(ids.size).toBe(3 * CONN_BLOCK_IDS);
    // a restarted host: a new allocator on the same slot starts after every block taken before
    const again = new ConnIds(() => arbiter.connBlock(7), (e) => said.push(e.message));
    await again.start();
    for (let i = 0; i < CONN_BLOCK_IDS; i++) expect(ids.has(again.id()!)).toBe(false);
    expect(said).toEqual([]);
    expect(CONN_BLOCKS_PER_SLOT * CONN_BLOCK_IDS).toBe(2 ** 23);
  });

  it('with the arbiter gone it hands out what it holds, then null, and says why; never an id twice', async () => {
    const dir = join(arbiterDir(), 'a');
    const arbiter = new FileArbiter(dir);
    const said: string[] = [];
    const alloc = new ConnIds(() => arbiter.connBlock(3), (e) => said.push(e.message));
    await alloc.start();
    rmSync(dir, { recursive: true, force: true });
    const ids = new Set<number>();
    let id: number | null;
    while ((id = alloc.id()) !== null) {
      expect(ids.has(id)).toBe(false);
      ids.add(id);
      await new Promise((r) => setImmediate(r));
    }
    // the block in use and the spare: nothing more without the arbiter
    expect(ids.size).toBe(2 * CONN_BLOCK_IDS);
    await new Promise((r) => setImmediate(r));
    expect(said.some((m) => /gone/.test(m))).toBe(true);
  });

  it('a host restarted under its id hands out none of the connection ids it handed out before', async () => {
    let api;
    ({ c, api } = await linkedCluster(['h1', 'h2']));
    const take = async (n: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await api('h1', 'POST', '/v1/connections')).json.conn);
      return out;
    };
    const before = await take(20);
    await c.kill('h1');
    await c.add('h1');
    const after = await take(20);
    expect(new Set([...before, ...after]).size).toBe(40);
    // the same slot (high byte), and low bits from blocks after the ones taken before
    expect(new Set([...before, ...after].map((id) => id >>> 24)).size).toBe(1);
    const block = (id: number) => Math.floor((id & 0x7fffff) / CONN_BLOCK_IDS);
    expect(Math.min(...after.map(block))).toBeGreaterThan(Math.max(...before.map(block)));
  }, 120_000);
});
