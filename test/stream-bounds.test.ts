// A VM's per-connection bookkeeping on its hosts does not grow with the
// clients it served: the raw kv reactor, published on a TCP port, answers
// STREAMS_DONE_MAX + 300 clients that each send one request and end their
// side (the reactor never closes its side). Its primary's and its backup's
// hosts keep the output offsets of the newest STREAMS_DONE_MAX ended
// connections only (and of the one still open), a backup made from a
// snapshot keeps the same, and the connection still open goes on across the
// backup restart and a failover to that backup with every answer in place.
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, freePort, linkedCluster, type Cluster } from './cluster.ts';
import { STREAMS_DONE_MAX } from '../host/limits.ts';

let c: Cluster | null = null;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await c?.stop();
  c = null;
});

/** Connects to ADDR:PORT, trying again while it is refused (a host opens a VM's port once it hears of the VM). */
async function open(endpoint: string): Promise<Socket> {
  const i = endpoint.lastIndexOf(':');
  const sock = await eventually(`a connection to ${endpoint}`, () =>
    new Promise<Socket | undefined>((resolve) => {
      const s = connect({ host: endpoint.slice(0, i), port: Number(endpoint.slice(i + 1)) });
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    }),
  );
  sock.on('error', () => {});
  sockets.push(sock);
  return sock;
}

/** Sends one request on `sock` and waits for its answer (the kv reactor answers each message whole, without a newline). */
async function ask(sock: Socket, req: string, answer: RegExp): Promise<string> {
  let got = '';
  const on = (d: Buffer): void => {
    got += d.toString();
  };
  sock.on('data', on);
  sock.write(req);
  try {
    return await eventually(`an answer to ${req}`, () => (answer.test(got) ? got : undefined), 30_000);
  } finally {
    sock.off('data', on);
  }
}

describe('published ports: bookkeeping bounded by the connections open, not by those served', () => {
  it(`keeps the output offsets of at most STREAMS_DONE_MAX ended connections on the primary's and the backup's hosts`, async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kvc', sample: 'kv', publish: [port] })).status).toBe(201);
    const info = await eventually('a backup', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/kvc')).json;
      return r.state === 'running' ? r : undefined;
    });
    const endpoint = `${c.host('h3').public}:${port}`;
    const kept = await open(endpoint);
    expect(await ask(kept, 'a SET x 1', /^a OK \d+$/)).toBe('a OK 1');

    // many short clients, 32 at a time: a request, its answer, the end of the client's side
    const n = STREAMS_DONE_MAX + 300;
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < n; i = next++) {
        const s = await open(endpoint);
        await ask(s, `s${i} SET k${i % 50} v`, new RegExp(`^s${i} OK \\d+$`));
        s.end();
        sockets.splice(sockets.indexOf(s), 1);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));

    const streamsOn = async (host: string, role: string): Promise<number | undefined> => {
      const cl = await c!.client(host);
      try {
        const v = ((await cl.status()).vms as { name: string; role: string; streams: number }[]).find((x) => x.name === 'kvc' && x.role === role);
        return v?.streams;
      } finally {
        cl.close();
      }
    };
    // every end delivered and its frame acknowledged: both hosts agree, within the bound (the open connection besides)
    const both = await eventually('the primary and the backup agree', async () => {
      const p = await streamsOn(info.primary, 'primary');
      const b = await streamsOn(info.backup, 'backup');
      // the newest STREAMS_DONE_MAX ended connections, and the one still open
      return p === STREAMS_DONE_MAX + 1 && b === p ? p : undefined;
    }, 60_000).catch(async (e: Error) => {
      throw new Error(`${e.message}: primary ${await streamsOn(info.primary, 'primary')}, backup ${await streamsOn(info.backup, 'backup')} connections kept after ${n} served`);
    });
    expect(both).toBe(STREAMS_DONE_MAX + 1);
    expect(await ask(kept, 'b GET x', /^b /)).toBe('b VALUE 1');

    // a backup made from a snapshot keeps the same, and the open connection goes on through a failover to it
    expect((await api('h1', 'POST', '/v1/vms/kvc/backup/restart')).status).toBe(202);
    const again = await eventually('a new backup from a snapshot', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/kvc')).json;
      return r.state === 'running' && r.gen > info.gen ? r : undefined;
    });
    const p = await streamsOn(again.primary, 'primary');
    await eventually('the new backup keeps as many as its primary', async () => ((await streamsOn(again.backup, 'backup')) === p ? true : undefined));
    expect((await api('h1', 'POST', '/v1/vms/kvc/failover')).status).toBe(202);
    await eventually('the new backup is the primary', async () => ((await api('h1', 'GET', '/v1/vms/kvc')).json.primary === again.backup ? true : undefined));
    expect(await ask(kept, 'c GET x', /^c /)).toBe('c VALUE 1');
    expect(await ask(kept, 'd SET y 2', /^d OK \d+$/)).toMatch(/^d OK \d+$/);
  }, 300_000);
});
