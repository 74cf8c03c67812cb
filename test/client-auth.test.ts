// The client port is a front door: it takes no request from a connection that
// has not proved it knows the API token, a connection id is resumed only with
// the key its owner got, connections are capped per address and per host (a
// flood of idle connections neither locks real clients out nor stops the REST
// API), and connections that never authenticate, or fall silent, are closed.
// Real host processes on loopback (test/cluster.ts), raw TCP for the intruders;
// the idle timeout with an in-process host whose timeout is short.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArbiter } from '../host/cluster/arbiter.ts';
import { FtClient } from '../host/cluster/client.ts';
import { CLIENT_CONNS_MAX, CLIENT_CONNS_PER_ADDRESS_MAX, FtHost } from '../host/cluster/host.ts';
import { CLIENT_AUTH_MS, CLIENT_FRAME_MAX, ClientError, mac, nonce, readMessages, resumeKey, send, type WireMessage } from '../host/cluster/wire.ts';
import { Cluster, apiOf, eventually } from './cluster.ts';

const KV = new Uint8Array(readFileSync(new URL('../guests/kv.wasm', import.meta.url)));

/** A raw connection to a client port: every message it received, and waits on them. */
class Raw {
  readonly msgs: WireMessage[] = [];
  closed = false;
  readonly sock: Socket;
  readonly ready: Promise<void>;
  private readonly wakers = new Set<() => void>();

  constructor(addr: string, localAddress?: string) {
    const c = addr.lastIndexOf(':');
    this.sock = connect({ host: addr.slice(0, c), port: Number(addr.slice(c + 1)), ...(localAddress ? { localAddress } : {}) });
    this.sock.on('error', () => {});
    this.ready = new Promise((resolve, reject) => {
      this.sock.once('connect', () => resolve());
      this.sock.once('error', reject);
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    readMessages(
      this.sock,
      CLIENT_FRAME_MAX,
      (m) => {
        this.msgs.push(m);
        this.wake();
      },
      () => {},
    );
  }

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  /** The first message received that `pred` accepts, waited for at most `ms`. */
  async next(pred: (m: WireMessage) => boolean, ms = 10_000): Promise<WireMessage> {
    const t0 = Date.now();
    for (;;) {
      const m = this.msgs.find(pred);
      if (m) return m;
      if (this.closed) throw new Error(`closed without the message (got ${JSON.stringify(this.msgs.map((x) => x.t))})`);
      if (Date.now() - t0 > ms) throw new Error(`no such message within ${ms} ms (got ${JSON.stringify(this.msgs.map((x) => x.t))})`);
      await new Promise<void>((r) => {
        const done = (): void => {
          clearTimeout(t);
          this.wakers.delete(done);
          r();
        };
        const t = setTimeout(done, 200);
        this.wakers.add(done);
      });
    }
  }

  /** Resolves once the host has closed the connection, at most `ms`. */
  async untilClosed(ms = 10_000): Promise<void> {
    const t0 = Date.now();
    while (!this.closed) {
      if (Date.now() - t0 > ms) throw new Error(`still open after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Does the handshake with `token`; resolves with the hello. */
  async auth(token: string): Promise<WireMessage> {
    const ch = await this.next((m) => m.t === 'challenge');
    const mine = nonce();
    send(this.sock, { t: 'auth', nonce: mine, mac: mac(token, 'client', ch.nonce as Uint8Array, mine) });
    return this.next((m) => m.t === 'hello');
  }

  close(): void {
    this.sock.destroy();
  }
}

const errorOf = (m: WireMessage): { code: unknown; id: unknown } => ({ code: m.code, id: m.id });

describe('the client port with real hosts', { timeout: 180_000 }, () => {
  let c: Cluster;
  let api: ReturnType<typeof apiOf>;
  const raws: Raw[] = [];
  const raw = (addr: string, localAddress?: string): Raw => {
    const r = new Raw(addr, localAddress);
    raws.push(r);
    return r;
  };

  beforeAll(async () => {
    c = new Cluster();
    await Promise.all(['h1', 'h2'].map((id) => c.add(id)));
    await c.linked();
    api = apiOf(c);
  }, 120_000);
  afterAll(async () => {
    for (const r of raws) r.close();
    await c?.stop();
  });

  it('a connection that sends no credentials is closed within the authentication time, with FTVM_ERR_UNAUTHORIZED', async () => {
    const r = raw(c.host('h1').client);
    const ch = await r.next((m) => m.t === 'challenge');
    expect(ch.host).toBe('h1');
    const t0 = Date.now();
    const err = await r.next((m) => m.t === 'error', CLIENT_AUTH_MS + 10_000);
    expect(errorOf(err)).toEqual({ code: 'FTVM_ERR_UNAUTHORIZED', id: null });
    await r.untilClosed();
    expect(Date.now() - t0).toBeGreaterThan(CLIENT_AUTH_MS - 1000);
    expect(r.msgs.map((m) => m.t)).toEqual(['challenge', 'error']);
  });

  it('a request before authentication is refused with FTVM_ERR_UNAUTHORIZED and not answered', async () => {
    const r = raw(c.host('h1').client);
    await r.next((m) => m.t === 'challenge');
    send(r.sock, { t: 'status', id: 1 });
    send(r.sock, { t: 'stop', id: 2, vm: 'anything' });
    const err = await r.next((m) => m.t === 'error');
    expect(errorOf(err)).toEqual({ code: 'FTVM_ERR_UNAUTHORIZED', id: null });
    await r.untilClosed();
    expect(r.msgs.map((m) => m.t)).toEqual(['challenge', 'error']);
  });

  it('a frame over 1 KiB before authentication ends the connection at once (nothing large is buffered for a stranger)', async () => {
    const r = raw(c.host('h1').client);
    await r.next((m) => m.t === 'challenge');
    // a header announcing 16 MiB, and the first KiB of it
    const head = Buffer.alloc(8);
    head.writeUInt32LE(16 * 1024 * 1024, 0);
    r.sock.write(Buffer.concat([head, Buffer.alloc(1024)]));
    const t0 = Date.now();
    await r.untilClosed(CLIENT_AUTH_MS + 10_000);
    expect(Date.now() - t0).toBeLessThan(CLIENT_AUTH_MS - 1000); // not the authentication timeout
    expect(r.msgs.map((m) => m.t)).toEqual(['challenge']);
  });

  it('a client with a wrong token is refused with FTVM_ERR_UNAUTHORIZED; with the right one it gets in', async () => {
    const wrong = new FtClient(c.host('h1').client, { token: 'not-the-token' });
    const e = await wrong.connect().then(
      () => null,
      (x: unknown) => x,
    );
    wrong.close();
    expect(e).toBeInstanceOf(ClientError);
    expect((e as ClientError).code).toBe('FTVM_ERR_UNAUTHORIZED');
    // a raw connection with a wrong MAC gets the error frame, then the close
    const r = raw(c.host('h1').client);
    const ch = await r.next((m) => m.t === 'challenge');
    const mine = nonce();
    send(r.sock, { t: 'auth', nonce: mine, mac: mac('not-the-token', 'client', ch.nonce as Uint8Array, mine) });
    expect(errorOf(await r.next((m) => m.t === 'error'))).toEqual({ code: 'FTVM_ERR_UNAUTHORIZED', id: null });
    await r.untilClosed();
    const right = await c.client('h1');
    expect((await right.status()).host).toBe('h1');
  });

  it('a client refuses a host that does not know the token (the host proves it too)', async () => {
    const fake = createServer((s) => {
      s.on('error', () => {});
      send(s, { t: 'challenge', host: 'fake', nonce: nonce() });
      readMessages(s, 1024, () => send(s, { t: 'hello', conn: 1, host: 'fake', key: randomBytes(32), idleMs: 60_000, mac: randomBytes(32) }), () => {});
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    try {
      const cl = new FtClient(`127.0.0.1:${(fake.address() as { port: number }).port}`, { token: c.token });
      const e = await cl.connect().then(
        () => null,
        (x: unknown) => x,
      );
      cl.close();
      expect((e as ClientError).code).toBe('FTVM_ERR_UNAUTHORIZED');
      expect((e as Error).message).toMatch(/does not know the API token/);
    } finally {
      await new Promise((r) => fake.close(r));
    }
  });

  it("another client cannot resume a connection id without its key, on any host; the owner keeps getting its outputs", async () => {
    const admin = await c.client('h1');
    await admin.start('kv-resume', KV);
    const owner = await c.client('h1');
    const got: string[] = [];
    owner.on('recv', (r) => got.push(Buffer.from(r.data).toString()));
    owner.send('kv-resume', 'o1 SET a 1');
    await eventually('the owner gets its first answer', () => (got.some((g) => g.startsWith('o1')) ? true : undefined));
    const conn = owner.conn!;
    for (const host of ['h1', 'h2']) {
      const intruder = raw(c.host(host).client);
      await intruder.auth(c.token);
      send(intruder.sock, { t: 'resume', id: 1, conn, seen: { 'kv-resume': -1 } });
      send(intruder.sock, { t: 'resume', id: 2, conn, key: randomBytes(32), seen: { 'kv-resume': -1 } });
      send(intruder.sock, { t: 'resume', id: 3, conn, key: resumeKey(c.secret, conn ^ 1), seen: { 'kv-resume': -1 } });
      for (const id of [1, 2, 3]) expect(errorOf(await intruder.next((m) => m.t === 'error' && m.id === id))).toEqual({ code: 'FTVM_ERR_UNAUTHORIZED', id });
      // the owner still gets what it asks for, and the intruder nothing
      owner.send('kv-resume', `o-${host} GET a`);
      await eventually(`the owner gets its answer after the attempt on ${host}`, () => (got.some((g) => g.startsWith(`o-${host}`)) ? true : undefined));
      expect(intruder.msgs.filter((m) => m.t === 'recv' || m.t === 'resumed')).toEqual([]);
      expect(intruder.closed).toBe(false); // it is a client that knows the token: only its resume is refused
    }
    // with the key (which only the owner was given) the resume is taken: the refusals above were for the key alone
    const holder = raw(c.host('h2').client);
    await holder.auth(c.token);
    // what a resume names is bounded: more VMs than a host keeps track of for one connection is refused
    const many = Object.fromEntries(Array.from({ length: 4097 }, (_, i) => [`vm${i}`, 0]));
    send(holder.sock, { t: 'resume', id: 8, conn, key: resumeKey(c.secret, conn), seen: many });
    expect(errorOf(await holder.next((m) => m.t === 'error' && m.id === 8))).toEqual({ code: 'FTVM_ERR_BAD_REQUEST', id: 8 });
    send(holder.sock, { t: 'resume', id: 9, conn, key: resumeKey(c.secret, conn), seen: { 'kv-resume': -1 } });
    expect((await holder.next((m) => m.id === 9)).t).toBe('resumed');
    const recv = await holder.next((m) => m.t === 'recv');
    expect(Buffer.from(recv.data as Uint8Array).toString()).toMatch(/^o1 /);
    owner.close();
    admin.close();
  });

  it('connections past the per-address cap are refused with FTVM_ERR_TOO_MANY_CONNECTIONS; a flood of idle connections past the host cap does not lock out clients or the REST API', async () => {
    const addr = c.host('h1').client;
    // the per-address cap, filled with authenticated connections from 127.0.0.2 (nothing to give way)
    const authed: Raw[] = [];
    for (let i = 0; i < CLIENT_CONNS_PER_ADDRESS_MAX; i++) authed.push(raw(addr, '127.0.0.2'));
    await Promise.all(authed.map((r) => r.auth(c.token)));
    const over = raw(addr, '127.0.0.2');
    expect(errorOf(await over.next((m) => m.t === 'error'))).toEqual({ code: 'FTVM_ERR_TOO_MANY_CONNECTIONS', id: null });
    await over.untilClosed();
    expect(over.msgs.map((m) => m.t)).toEqual(['error']);
    // a flood of connections that never authenticate, from four more addresses, past the host cap
    const flood: Raw[] = [];
    const floodPer = Math.ceil((CLIENT_CONNS_MAX - CLIENT_CONNS_PER_ADDRESS_MAX + 100) / 4);
    expect(floodPer).toBeLessThanOrEqual(CLIENT_CONNS_PER_ADDRESS_MAX);
    for (let a = 3; a <= 6; a++) for (let i = 0; i < floodPer; i++) flood.push(raw(addr, `127.0.0.${a}`));
    await Promise.all(flood.map((r) => r.ready));
    // the oldest of them gave way to the newest, each with the code
    await eventually('flooding connections past the host cap are displaced', () => (flood.filter((r) => r.msgs.some((m) => m.t === 'error' && m.code === 'FTVM_ERR_TOO_MANY_CONNECTIONS')).length >= 100 ? true : undefined));
    // the host is full now: the REST API answers, and a real client gets in (in the place of one that has not authenticated)
    const rest = await api('h1', 'GET', '/v1/vms');
    expect(rest.status).toBe(200);
    const client = new FtClient(addr, { token: c.token });
    await client.connect();
    expect((await client.status()).host).toBe('h1');
    client.close();
    // and the authenticated connections are untouched
    expect(authed.every((r) => !r.closed && !r.msgs.some((m) => m.t === 'error'))).toBe(true);
    send(authed[0]!.sock, { t: 'status', id: 5 });
    expect((await authed[0]!.next((m) => m.t === 'status')).host).toBe('h1');
    // the flood ends by itself: what never authenticated is closed within the authentication time
    await eventually('the flood is closed', () => (flood.every((r) => r.closed) ? true : undefined), CLIENT_AUTH_MS + 15_000);
    for (const r of authed) r.close();
  });
});

describe('the idle timeout of an in-process host', { timeout: 60_000 }, () => {
  let dir: string;
  let host: FtHost;
  const token = 'idle-token';
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ftvm-client-auth-'));
    host = new FtHost({ id: 'i1', secret: 's', token, clientIdleMs: 1000, arbiter: new FileArbiter(join(dir, 'arbiter')), dataDir: join(dir, 'data') });
    await host.start();
  });
  afterAll(async () => {
    await host.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an authenticated connection silent for the idle time is closed (FTVM_ERR_UNAVAILABLE); FtClient, silent as long, stays (its pings)', async () => {
    const client = new FtClient(host.clientAddr, { token });
    await client.connect();
    let cut = false;
    client.on('close', () => (cut = true));
    const silent = new Raw(host.clientAddr);
    const hello = await silent.auth(token);
    expect(hello.idleMs).toBe(1000);
    const t0 = Date.now();
    const err = await silent.next((m) => m.t === 'error', 10_000);
    expect(errorOf(err)).toEqual({ code: 'FTVM_ERR_UNAVAILABLE', id: null });
    await silent.untilClosed();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    // the client stays silent (no request of its own) through another idle time, measured by a
    // second silent connection that the host cuts in turn
    const silent2 = new Raw(host.clientAddr);
    await silent2.auth(token);
    expect(errorOf(await silent2.next((m) => m.t === 'error', 10_000))).toEqual({ code: 'FTVM_ERR_UNAVAILABLE', id: null });
    await silent2.untilClosed();
    expect(cut).toBe(false);
    expect((await client.status()).host).toBe('i1');
    client.close();
  });
});
