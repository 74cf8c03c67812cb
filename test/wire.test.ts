// The framing of the channels between hosts and with clients: what one call
// to send() puts on a real TCP socket, and how the other end cuts it back.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { FrameDecoder, encodeMessage, readMessages, send, type WireMessage, PEER_FRAME_MAX } from '../host/cluster/wire.ts';

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** A server on port 0 that collects the messages it reads, and a socket connected to it. */
async function pair(): Promise<{ sock: Socket; got: WireMessage[] }> {
  const got: WireMessage[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    readMessages(s, PEER_FRAME_MAX, (m) => got.push(m), (e) => got.push({ t: 'bad', message: e.message }));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const sock = connect(port, '127.0.0.1');
  sockets.push(sock);
  await new Promise<void>((r) => sock.once('connect', r));
  return { sock, got };
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('send', () => {
  it('messages sent in one turn of the event loop leave in one write, in order, and arrive whole', async () => {
    // One system call for a burst (the answers one ack releases) instead of one per message.
    const { sock, got } = await pair();
    const s = sock as Socket & { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
    let writes = 0;
    const w = s._write.bind(s);
    const wv = s._writev.bind(s);
    s._write = (...a: unknown[]) => (writes++, w(...a));
    s._writev = (...a: unknown[]) => (writes++, wv(...a));
    for (let i = 0; i < 20; i++) send(sock, { t: 'recv', seq: i, data: new Uint8Array(100).fill(i) });
    await until('20 messages', () => got.length >= 20);
    expect(writes).toBe(1);
    expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect([...(got[7]!.data as Uint8Array)]).toEqual(new Array(100).fill(7));
    // the next turn writes again (the socket was uncorked)
    send(sock, { t: 'recv', seq: 20, data: new Uint8Array(1) });
    await until('the 21st message', () => got.length >= 21);
    expect(writes).toBe(2);
  });

  it('a destroyed socket takes nothing and says so', async () => {
    const { sock } = await pair();
    sock.destroy();
    expect(send(sock, { t: 'hb' })).toBe(false);
  });
});

describe('FrameDecoder limit', () => {
  it('a limit given as a function is asked per frame: a frame too large before it grows is refused, the same frame after is taken', () => {
    let limit = 64;
    const big = encodeMessage({ t: 'x', pad: 'p'.repeat(200) });
    expect(() => new FrameDecoder(() => limit).push(big)).toThrow(/at most 64/);
    const dec = new FrameDecoder(() => limit);
    expect(dec.push(encodeMessage({ t: 'auth' })).map((m) => m.t)).toEqual(['auth']);
    limit = 1024;
    expect(dec.push(big).map((m) => m.t)).toEqual(['x']);
  });
});
