// Released outputs carry the generation that released them, and FtClient
// checks them: one output sequence number that comes with two payloads (two
// generations that disagree) is a divergence, counted and told, never a
// quiet duplicate.
import { createServer, type Server, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { FtClient, type Divergence, type Received } from '../host/cluster/client.ts';
import { mac, nonce, readMessages, send, CLIENT_FRAME_MAX } from '../host/cluster/wire.ts';
import { Cluster, eventually, linkedCluster } from './cluster.ts';

const KV = new Uint8Array(readFileSync(new URL('../guests/kv.wasm', import.meta.url)));
const TOKEN = 'a-token';

let c: Cluster | null = null;
let server: Server | null = null;
const clients: FtClient[] = [];
afterEach(async () => {
  for (const cl of clients.splice(0)) cl.close();
  await c?.stop();
  c = null;
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = null;
});

/** A client-port peer that authenticates a client as a host does, then plays `script` to it. */
async function scriptedHost(script: (sock: Socket) => void): Promise<string> {
  server = createServer((sock) => {
    sock.on('error', () => {});
    const mine = nonce();
    send(sock, { t: 'challenge', host: 'x1', nonce: mine });
    readMessages(sock, CLIENT_FRAME_MAX, (m) => {
      if (m.t !== 'auth') return;
      send(sock, { t: 'hello', conn: 77, host: 'x1', key: new Uint8Array(32), idleMs: 60_000, mac: mac(TOKEN, 'host', m.nonce as Uint8Array, mine) });
      script(sock);
    }, () => sock.destroy());
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

describe('generations on released outputs', () => {
  it('FtClient tells a duplicate (same payload, any generation) from a divergence (another payload)', async () => {
    const bytes = (s: string) => new TextEncoder().encode(s);
    const addr = await scriptedHost((sock) => {
      send(sock, { t: 'recv', vm: 'v', gen: 1, seq: 0, data: bytes('a OK 1'), eof: false });
      send(sock, { t: 'recv', vm: 'v', gen: 2, seq: 0, data: bytes('a OK 1'), eof: false }); // the new primary's copy
      send(sock, { t: 'recv', vm: 'v', gen: 1, seq: 1, data: bytes('b OK 2'), eof: false });
      send(sock, { t: 'recv', vm: 'v', gen: 2, seq: 1, data: bytes('b OK 9'), eof: false }); // disagrees
      send(sock, { t: 'recv', vm: 'v', gen: 2, seq: 2, data: bytes('c OK 3'), eof: false });
    });
    const client = new FtClient(addr, { token: TOKEN, reconnect: false });
    clients.push(client);
    const got: Received[] = [];
    const diverged: Divergence[] = [];
    client.on('recv', (r) => got.push(r));
    client.on('diverged', (d) => diverged.push(d));
    await client.connect();
    await eventually('the scripted outputs', () => (got.length === 3 ? true : undefined));
    expect(got.map((r) => [r.seq, r.gen])).toEqual([[0, 1], [1, 1], [2, 2]]);
    expect(client.duplicates).toBe(1);
    expect(client.divergences).toBe(1);
    expect(diverged).toEqual([{ vm: 'v', seq: 1, gens: [1, 2] }]);
  });

  it('a real failover: outputs say generation 1 before it and 2 after, and none diverges', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const client = await c.client('h3');
    const got: Received[] = [];
    client.on('recv', (r) => got.push(r));
    expect(await client.start('kv', KV)).toMatchObject({ gen: 1 });
    client.send('kv', 'a SET k 1');
    await eventually('the first answer', () => (got.length === 1 ? true : undefined));
    expect(got[0]!.gen).toBe(1);
    await client.request({ t: 'failover', vm: 'kv' });
    await eventually('the new primary', async () => ((await api('h3', 'GET', '/v1/vms/kv')).json?.gen === 2 ? true : undefined));
    client.send('kv', 'b GET k');
    await eventually('the second answer', () => (got.length === 2 ? true : undefined));
    expect(got[1]!.gen).toBe(2);
    expect(got[1]!.seq).toBeGreaterThan(got[0]!.seq);
    expect(new TextDecoder().decode(got[1]!.data)).toBe('b VALUE 1');
    expect(client.divergences).toBe(0);
  }, 120_000);
});
