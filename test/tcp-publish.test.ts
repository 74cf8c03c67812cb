// Published ports: plain TCP clients reach a VM through any live host, and a
// failover of the VM's primary is invisible to a connection through a host
// that stays alive (every answer once, in order; every request applied once).
import { readFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { apiOf, Cluster, eventsOf, eventually, freePort, linkedCluster } from './cluster.ts';
import { LineClient } from './line-client.ts';
import { freePorts } from './etcd.ts';
import { Proxy } from './proxy.ts';
import { INFO_EVERY_MS } from '../host/limits.ts';
import { watText } from './helpers.ts';
import { INGRESS_CONNS_PER_VM_MAX, INGRESS_UNACKED_BYTES_MAX } from '../host/cluster/ingress.ts';
import { NIC_UNREAD_BYTES_MAX } from '../host/runtime/replay/engine.ts';

let c: Cluster | null = null;
const sockets: Socket[] = [];
const proxies: Proxy[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await c?.stop();
  for (const p of proxies.splice(0)) await p.close();
  c = null;
});


describe('published ports (TCP into a VM through every live host)', () => {
  it('serves plain TCP clients through each host, lists the endpoints, and keeps each connection its own', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    const start = await api('h1', 'POST', '/v1/vms', { name: 'kvt', sample: 'kvsock', publish: [port] });
    expect(start.status, JSON.stringify(start.json)).toBe(201);
    const info = await eventually('three endpoints', async () => {
      const r = await api('h2', 'GET', '/v1/vms/kvt');
      return r.json.endpoints?.length === 3 && r.json.state === 'running' ? r.json : undefined;
    });
    expect(info.publish).toEqual([port]);
    const hosts = ['h1', 'h2', 'h3'].map((id) => `${c!.host(id).public}:${port}`);
    expect([...info.endpoints].sort()).toEqual([...hosts].sort());
    // the same store through every host, each connection answered on its own
    const clients = await Promise.all(hosts.map((e) => LineClient.open(sockets, e)));
    clients.forEach((cl, i) => cl.send(`a${i} SET k${i} v${i}`));
    for (const [i, cl] of clients.entries()) expect((await cl.answers(1))[0]).toMatch(new RegExp(`^a${i} OK \\d+$`));
    clients.forEach((cl, i) => cl.send(`b${i} GET k${(i + 1) % 3}`));
    for (const [i, cl] of clients.entries()) expect((await cl.answers(2))[1]).toBe(`b${i} VALUE v${(i + 1) % 3}`);
    // a client that closes its side: the guest sees end-of-stream and closes too
    clients[0]!.sock.end();
    await eventually('the guest closed its side', () => (clients[0]!.closed ? true : undefined));
    // a bad start: ports out of range are refused with a stable code
    const bad = await api('h1', 'POST', '/v1/vms', { name: 'kvbad', sample: 'kvsock', publish: [0] });
    expect(bad.status).toBe(400);
    const taken = await api('h1', 'POST', '/v1/vms', { name: 'kvtwo', sample: 'kvsock', publish: [port] });
    expect(taken.status).toBe(409);
    expect(taken.json.error.code).toBe('FTVM_ERR_CONFLICT');
  });

  it("kill -9 of the primary's host: a connection through a surviving host sees every answer once, in order, and every request applied once", async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kvf', sample: 'kvsock', publish: [port] })).status).toBe(201);
    const info = await eventually('a backup', async () => {
      const r = await api('h1', 'GET', '/v1/vms/kvf');
      return r.json.state === 'running' && r.json.endpoints?.length === 3 ? r.json : undefined;
    });
    expect(info.primary).toBe('h1');
    const survivors = ['h2', 'h3'];
    // one connection through the backup's host, one through the third host
    const clients = await Promise.all(survivors.map((id) => LineClient.open(sockets, `${c!.host(id).public}:${port}`)));
    const TOTAL = 600;
    const WINDOW = 32;
    const sent = clients.map(() => 0);
    const pump = (k: number): void => {
      const cl = clients[k]!;
      while (sent[k]! < TOTAL && sent[k]! - cl.lines.length < WINDOW) {
        const i = sent[k]!++;
        cl.send(`c${k}-${i} SET key${k}-${i} v${i}`);
      }
    };
    const timer = setInterval(() => clients.forEach((_, k) => pump(k)), 2);
    try {
      await Promise.all(clients.map((cl) => cl.answers(TOTAL / 4)));
      await c.kill('h1');
      const all = await Promise.all(clients.map((cl) => cl.answers(TOTAL, 60_000)));
      for (const [k, lines] of all.entries()) {
        // every answer once, in order
        expect(lines.map((l) => l.split(' ')[0])).toEqual(Array.from({ length: TOTAL }, (_, i) => `c${k}-${i}`));
      }
      // every SET applied once: the store's write counts are 1..2*TOTAL, each seen once
      const writes = all.flat().map((l) => Number(l.split(' ')[2]));
      expect(writes.every((w) => Number.isInteger(w))).toBe(true);
      expect([...writes].sort((a, b) => a - b)).toEqual(Array.from({ length: 2 * TOTAL }, (_, i) => i + 1));
      expect(clients.every((cl) => !cl.closed)).toBe(true);
    } finally {
      clearInterval(timer);
    }
    const after = await api('h2', 'GET', '/v1/vms/kvf');
    expect(after.json.primary).not.toBe('h1');
    expect(after.json.endpoints).not.toContain(`${c.host('h1').public}:${port}`);
  });

  it('connections through a host that dies end in the guest too: a server with 64 connection slots, all taken through that host, serves new clients after it', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kvs', sample: 'kvsock', publish: [port] })).status).toBe(201);
    await eventually('a backup on h2', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/kvs')).json;
      return r.state === 'running' && r.backup === 'h2' ? true : undefined;
    });
    // kvsock serves at most 64 connections at once (MAX_CONNS): take them all through h3, then lose h3
    const through3 = await Promise.all(Array.from({ length: 64 }, () => LineClient.open(sockets, `${c!.host('h3').public}:${port}`)));
    through3.forEach((cl, i) => cl.send(`t${i} SET k${i} v`));
    await Promise.all(through3.map((cl) => cl.answers(1)));
    const extra = await LineClient.open(sockets, `${c.host('h1').public}:${port}`);
    extra.send('x GET k1');
    // the 65th is closed unanswered while the 64 hold their slots
    await eventually('the 65th connection closed', () => (extra.closed ? true : undefined));
    expect(extra.lines).toEqual([]);
    await c.kill('h3');
    // once the primary's host takes h3 for dead, its connections end in the guest: their slots are free again
    // (until then a new client is closed unanswered, and comes again)
    const answer = await eventually('a new client answered', async () => {
      const later = await LineClient.open(sockets, `${c!.host('h2').public}:${port}`);
      later.send('y GET k1');
      await eventually('an answer or the close', () => (later.lines.length || later.closed ? true : undefined));
      later.sock.destroy();
      return later.lines[0];
    }, 30_000);
    expect(answer).toBe('y VALUE v');
  });

  it('a connection stays open across a test failover, and a client that resets mid-request disturbs no other', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kvh', sample: 'kvsock', publish: [port] })).status).toBe(201);
    await eventually('a backup', async () => ((await api('h1', 'GET', '/v1/vms/kvh')).json.state === 'running' ? true : undefined));
    // through every host: the old primary's host stays up, so its connections survive too
    const clients = await Promise.all(['h1', 'h2', 'h3'].map((id) => LineClient.open(sockets, `${c!.host(id).public}:${port}`)));
    clients.forEach((cl, k) => cl.send(`p${k} SET k${k} before`));
    await Promise.all(clients.map((cl) => cl.answers(1)));
    const rude = await LineClient.open(sockets, `${c.host('h3').public}:${port}`);
    rude.sock.write('r SET half');
    const failover = await api('h2', 'POST', '/v1/vms/kvh/failover');
    expect(failover.status, JSON.stringify(failover.json)).toBe(202);
    rude.sock.resetAndDestroy();
    clients.forEach((cl, k) => cl.send(`q${k} GET k${k}`));
    for (const [k, cl] of clients.entries()) expect((await cl.answers(2))[1]).toBe(`q${k} VALUE before`);
    const info = await eventually('h3 hears of the new primary', async () => {
      const r = (await api('h3', 'GET', '/v1/vms/kvh')).json;
      return r.gen === 2 ? r : undefined;
    });
    expect(info.primary).toBe('h2');
    // the reset connection's half line was never a request
    clients[2]!.send('x GET half');
    clients[2]!.send('y INFO');
    const [x, y] = (await clients[2]!.answers(4)).slice(2);
    expect(x).toBe('x NOTFOUND');
    expect(y).toMatch(/^y INFO 3 3 \d+$/);
    expect(clients.every((cl) => !cl.closed)).toBe(true);
  });

  it('a connection through the old primary\'s host stays open while a slow new primary takes over', async () => {
    // the backup's host hears everything late (its peer port behind a proxy): the old primary's host
    // goes on for several of its publishing rounds (INFO_EVERY_MS) knowing no primary of the VM but its dropped one
    c = new Cluster(['--fail-ms', '4000', '--heartbeat-ms', '50']);
    const [peer2] = await freePorts(1);
    const p2 = new Proxy(`127.0.0.1:${peer2}`);
    proxies.push(p2);
    await p2.start();
    await Promise.all([c.add('h1'), c.add('h2', ['--peer-port', String(peer2), '--advertise-peer', p2.addr])]);
    await c.linked();
    const api = apiOf(c);
    const port = await freePort();
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kvl', sample: 'kvsock', publish: [port] })).status).toBe(201);
    await eventually('a backup on h2', async () => {
      const r = (await api('h1', 'GET', '/v1/vms/kvl')).json;
      return r.state === 'running' && r.primary === 'h1' && r.backup === 'h2' ? true : undefined;
    });
    const cl = await LineClient.open(sockets, `${c.host('h1').public}:${port}`);
    cl.send('a SET k before');
    expect((await cl.answers(1))[0]).toMatch(/^a OK \d+$/);
    const delayMs = 4 * INFO_EVERY_MS;
    p2.delayMs = delayMs;
    const asked = Date.now();
    expect((await api('h1', 'POST', '/v1/vms/kvl/failover')).status).toBe(202);
    cl.send('b GET k');
    expect((await cl.answers(2))[1]).toBe('b VALUE before');
    expect(Date.now() - asked).toBeGreaterThanOrEqual(delayMs); // the new primary did take over late
    expect(cl.closed).toBe(false);
    expect((await api('h1', 'GET', '/v1/vms/kvl')).json).toMatchObject({ primary: 'h2', gen: 2 });
  });
});

/** A WASI command that accepts one connection on its listening socket (fd 3) and then never reads it: it sleeps. */
function acceptingGuest(): Uint8Array {
  return watText(`(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $sleep (param $ns i64)
    ;; a clock subscription at 0 (monotonic, relative), its event at 64, the count at 128
    (i64.store (i32.const 0) (i64.const 0))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (local.get $ns))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
  (func (export "_start")
    (block $got
      (loop $again
        (br_if $got (i32.eqz (call $accept (i32.const 3) (i32.const 0) (i32.const 132))))
        (call $sleep (i64.const 5000000))
        (br $again)))
    (loop $forever
      (call $sleep (i64.const 3600000000000))
      (br $forever))))`);
}

const stats = async (id: string) => ((await (await c!.client(id)).status()) as unknown as { ingress: { conns: number; live: number; halfClosed: number; refused: number; bytesIn: number; bytesOut: number; pauses: number; slowReaderResets: number; windowMoves: number } }).ingress;
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

describe('published ports: a reactor across backup re-creation', () => {
  it('a connection stays open across a backup restart and a test failover to the backup made from the snapshot', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kvr', sample: 'kv', publish: [port] })).status).toBe(201);
    const running = async () => {
      const r = (await api('h3', 'GET', '/v1/vms/kvr')).json;
      return r.state === 'running' ? r : undefined;
    };
    await eventually('a backup', running);
    // the kv reactor reads each message as one request and answers it without a newline: one request at a time
    const cl = await LineClient.open(sockets, `${c.host('h3').public}:${port}`);
    let got = '';
    cl.sock.removeAllListeners('data');
    cl.sock.on('data', (d: string) => (got += d));
    const ask = async (req: string, answer: RegExp): Promise<string> => {
      got = '';
      cl.sock.write(req);
      return eventually(`an answer to ${req}`, () => (answer.test(got) ? got : undefined));
    };
    expect(await ask('a SET x 1', /^a OK \d+$/)).toBe('a OK 1');
    const restart = await api('h1', 'POST', '/v1/vms/kvr/backup/restart');
    expect(restart.status, JSON.stringify(restart.json)).toBe(202);
    const again = await eventually('a new backup from a snapshot', async () => {
      const r = await running();
      return r && r.gen === 2 ? r : undefined;
    });
    expect(await ask('b SET y 2', /^b OK \d+$/)).toBe('b OK 2');
    const failover = await api('h3', 'POST', '/v1/vms/kvr/failover');
    expect(failover.status, JSON.stringify(failover.json)).toBe(202);
    await eventually('the new backup is the primary', async () => ((await api('h3', 'GET', '/v1/vms/kvr')).json.primary === again.backup ? true : undefined));
    expect(await ask('c GET x', /^c /)).toBe('c VALUE 1');
    expect(await ask('d SET z 3', /^d OK \d+$/)).toBe('d OK 3');
    expect(cl.closed).toBe(false);
  });
});

describe('published ports: bounded buffers', () => {

  it("a guest that never reads: its client's TCP window closes, and no host takes more than the bounds", async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    const module = Buffer.from(acceptingGuest()).toString('base64');
    expect((await api('h1', 'POST', '/v1/vms', { name: 'sink', module, publish: [port] })).status).toBe(201);
    await eventually('a backup', async () => ((await api('h1', 'GET', '/v1/vms/sink')).json.state === 'running' ? true : undefined));
    const cl = await LineClient.open(sockets, `${c.host('h3').public}:${port}`);
    const TOTAL = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    for (let n = 0; n < TOTAL; n += chunk.length) cl.sock.write(chunk);
    await eventually('the ingress host stops reading the socket', async () => ((await stats('h3')).pauses >= 1 ? true : undefined), 60_000);
    // the client can push no more once the kernel's buffers are full: the window is closed
    let last = -1;
    await eventually('the client stops getting bytes out', async () => {
      const out = TOTAL - cl.sock.writableLength;
      const still = out === last;
      last = out;
      await new Promise((r) => setTimeout(r, 200));
      return still ? true : undefined;
    }, 60_000);
    const taken = (await stats('h3')).bytesIn;
    // what the hosts took: at most the ingress bound, the guest's unread bound, and a read or message each beyond them
    expect(taken).toBeLessThanOrEqual(INGRESS_UNACKED_BYTES_MAX + NIC_UNREAD_BYTES_MAX + 4 * 65536);
    expect(TOTAL - cl.sock.writableLength).toBeLessThan(TOTAL / 2);
    const rss = ['h1', 'h2', 'h3'].map((id) => rssMiB(c!.host(id).proc.pid!));
    process.stderr.write(`a guest that never reads: ${taken} bytes taken by the hosts, RSS MiB ${rss.map((r) => r.toFixed(0)).join(' ')}\n`);
  });

  it('a VM whose connections are never closed uses up its own share of a host only: the host goes on accepting for other VMs', async () => {
    let api;
    ({ c, api } = await linkedCluster(['h1', 'h2']));
    const [portA, portB] = [await freePort(), await freePort()];
    expect((await api('h1', 'POST', '/v1/vms', { name: 'hold', module: Buffer.from(acceptingGuest()).toString('base64'), publish: [portA] })).status).toBe(201);
    expect((await api('h1', 'POST', '/v1/vms', { name: 'kvo', sample: 'kvsock', publish: [portB] })).status).toBe(201);
    const first = await LineClient.open(sockets, `${c.host('h2').public}:${portA}`);
    const rest = await Promise.all(Array.from({ length: INGRESS_CONNS_PER_VM_MAX + 20 }, () =>
      new Promise<Socket>((resolve) => {
        const s = connect({ host: c!.host('h2').public, port: portA });
        sockets.push(s);
        s.on('error', () => {});
        s.once('connect', () => resolve(s));
        s.once('close', () => resolve(s));
      }),
    ));
    await eventually('the share is used up', async () => ((await stats('h2')).refused >= 20 ? true : undefined));
    expect((await stats('h2')).live).toBe(INGRESS_CONNS_PER_VM_MAX);
    const other = await LineClient.open(sockets, `${c.host('h2').public}:${portB}`);
    other.send('a SET k v');
    expect((await other.answers(1))[0]).toBe('a OK 1');
    // ended by their clients, they leave the share at once (each waits a while, half-closed, for the guest's end)
    for (const s of [first.sock, ...rest]) s.destroy();
    await eventually('the share is free again', async () => ((await stats('h2')).live <= 1 ? true : undefined));
    const again = await LineClient.open(sockets, `${c.host('h2').public}:${portA}`);
    const refused = (await stats('h2')).refused;
    await eventually('a new client of the VM is taken', async () => ((await stats('h2')).live === 2 ? true : undefined));
    expect((await stats('h2')).refused).toBe(refused);
    expect(again.closed).toBe(false);
  });

  it('a port another program holds on a host is not listed as that host\'s endpoint, and the host says why', async () => {
    let api;
    ({ c, api } = await linkedCluster(['h1', 'h2']));
    const port = await freePort();
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(port, c!.host('h2').public, r));
    try {
      expect((await api('h1', 'POST', '/v1/vms', { name: 'kvb', sample: 'kvsock', publish: [port] })).status).toBe(201);
      const failed = await eventually('h2 says it could not bind', async () => (await eventsOf(c!, 'h2', 'publish-failed')).find((e) => e.vm === 'kvb'));
      expect(failed).toMatchObject({ port, address: c.host('h2').public, error: 'EADDRINUSE' });
      for (const h of ['h1', 'h2']) {
        const ends = await eventually(`${h} lists h1 only`, async () => {
          const r = (await api(h, 'GET', '/v1/vms/kvb')).json;
          return r.endpoints?.length === 1 ? r.endpoints : undefined;
        });
        expect(ends).toEqual([`${c.host('h1').public}:${port}`]);
      }
    } finally {
      await new Promise((r) => squatter.close(r));
    }
    // freed, the port is bound at the next try and listed again
    await eventually('h2 listed again', async () => ((await api('h1', 'GET', '/v1/vms/kvb')).json.endpoints?.length === 2 ? true : undefined), 30_000);
  });

  it('a guest that ends closes its ports as a process that exits does: its clients are reset, new ones refused, and another VM may publish them', async () => {
    let api;
    ({ c, api } = await linkedCluster(['h1', 'h2']));
    const port = await freePort();
    // accepts one connection, then returns from _start
    const once = watText(`(module
      (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (block $got
          (loop $again
            (br_if $got (i32.eqz (call $accept (i32.const 3) (i32.const 0) (i32.const 132))))
            (i64.store (i32.const 24) (i64.const 5000000))
            (i32.store (i32.const 16) (i32.const 1))
            (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
            (br $again)))))`);
    expect((await api('h1', 'POST', '/v1/vms', { name: 'once', module: Buffer.from(once).toString('base64'), publish: [port] })).status).toBe(201);
    const cl = await LineClient.open(sockets, `${c.host('h2').public}:${port}`);
    await eventually('the guest ended', async () => ((await api('h2', 'GET', '/v1/vms/once')).json.state === 'ended' ? true : undefined));
    await eventually('its client is cut off', () => (cl.closed ? true : undefined));
    for (const id of ['h1', 'h2']) {
      await eventually(`${id} refuses new clients`, () =>
        new Promise<true | undefined>((resolve) => {
          const s = connect({ host: c!.host(id).public, port });
          s.once('connect', () => (s.destroy(), resolve(undefined)));
          s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED' ? true : undefined));
        }),
      );
    }
    // the port is free for another VM, and the ended VM's name is still taken
    const again = await api('h2', 'POST', '/v1/vms', { name: 'once', sample: 'kvsock', publish: [port] });
    expect(again.json.error?.code).toBe('FTVM_ERR_EXISTS');
    const other = await api('h2', 'POST', '/v1/vms', { name: 'next', sample: 'kvsock', publish: [port] });
    expect(other.status, JSON.stringify(other.json)).toBe(201);
    const next = await LineClient.open(sockets, `${c.host('h1').public}:${port}`);
    next.send('n SET k v');
    expect((await next.answers(1))[0]).toMatch(/^n OK \d+$/);
  });

  it('a VM that is lost closes its ports on the hosts left, as one that ended: its clients are reset and new ones refused', async () => {
    let api;
    ({ c, api } = await linkedCluster());
    const port = await freePort();
    const started = await api('h1', 'POST', '/v1/vms', { name: 'kvt', sample: 'kvsock', publish: [port] });
    expect(started.status, JSON.stringify(started.json)).toBe(201);
    const { primary, backup } = started.json as { primary: string; backup: string };
    const witness = ['h1', 'h2', 'h3'].find((h) => h !== primary && h !== backup)!;
    await eventually('served by every host', async () => ((await api(witness, 'GET', '/v1/vms/kvt')).json.endpoints?.length === 3 ? true : undefined));
    const cl = await LineClient.open(sockets, `${c.host(witness).public}:${port}`);
    cl.send('a SET k v');
    await eventually('an answer', () => (cl.lines.length ? true : undefined));
    await c.kill(backup);
    await c.kill(primary);
    const info = await eventually('lost', async () => {
      const r = (await api(witness, 'GET', '/v1/vms/kvt')).json;
      return r.state === 'lost' ? r : undefined;
    });
    expect(info.endpoints).toEqual([]);
    await eventually('its client is cut off', () => (cl.closed ? true : undefined));
    await eventually(`${witness} refuses new clients`, () =>
      new Promise<true | undefined>((resolve) => {
        const s = connect({ host: c!.host(witness).public, port });
        s.once('connect', () => (s.destroy(), resolve(undefined)));
        s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED' ? true : undefined));
      }),
    );
  });

  it("a client that does not read stalls only its own connection: the send window closes, nothing is reset, other clients are served, and every byte arrives once it reads", async () => {
    let api;
    ({ c, api } = await linkedCluster(['h1', 'h2']));
    const port = await freePort();
    expect((await api('h1', 'POST', '/v1/vms', { name: 'web', sample: 'http', publish: [port] })).status).toBe(201);
    await eventually('a backup', async () => ((await api('h1', 'GET', '/v1/vms/web')).json.state === 'running' ? true : undefined));
    const pids = ['h1', 'h2'].map((id) => c!.host(id).proc.pid!);
    const before = pids.map(rssMiB);
    const slow = await LineClient.open(sockets, `${c.host('h2').public}:${port}`);
    let got = 0;
    let text = '';
    slow.sock.removeAllListeners('data');
    slow.sock.setEncoding('latin1');
    slow.sock.on('data', (d: string) => {
      got += d.length;
      if (text.length < 4096) text += d.slice(0, 4096);
    });
    slow.sock.pause();
    const N = 100;
    slow.sock.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(N));
    // the window closes: the ingress host stops getting the guest's output for it
    let last = -1;
    await eventually('the output to the slow client stops', async () => {
      const out = (await stats('h2')).bytesOut;
      const still = out === last && out > 0;
      last = out;
      await new Promise((r) => setTimeout(r, 300));
      return still ? true : undefined;
    }, 60_000);
    expect(last).toBeLessThan(N * 1_000_000 / 4);
    // another client is served meanwhile, through either host
    const other = await LineClient.open(sockets, `${c.host('h1').public}:${port}`);
    other.sock.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await eventually('the other client is answered', () => (other.lines.some((l) => l.startsWith('HTTP/1.1 200')) ? true : undefined));
    const grown = pids.map((p, i) => rssMiB(p) - before[i]!);
    process.stderr.write(`a client that does not read: ${last} bytes out before the window closed, host RSS grew ${grown.map((g) => g.toFixed(0)).join(' / ')} MiB\n`);
    expect(Math.max(...grown)).toBeLessThan(128);
    // it reads at last: every answer, whole
    slow.sock.resume();
    await eventually('every answer', () => (got >= N * 1_000_060 ? true : undefined), 120_000);
    expect(text.startsWith('HTTP/1.1 200')).toBe(true);
    const s = await stats('h2');
    expect(s.slowReaderResets).toBe(0);
    expect(s.windowMoves).toBeGreaterThan(N);
    expect(slow.closed).toBe(false);
    // the backup replayed every window move at its count: it never diverged, and the VM keeps its backup
    for (const id of ['h1', 'h2']) expect(await eventsOf(c, id, 'replica-failed')).toEqual([]);
    expect((await api('h2', 'GET', '/v1/vms/web')).json.state).toBe('running');
  });
});
