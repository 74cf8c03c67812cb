// Proves that a host's TCP doors survive whatever a stranger sends: random
// bytes, frames with bad lengths, checksums or versions, and well-formed
// frames of random msgpack, on the peer port before the HMAC handshake and on
// the client port before and after it authenticates. The host answers with
// frames that decode, every refusal on the client port carries a stable
// FTVM_ERR_* code, or it closes the connection; it never dies, it goes on
// serving other clients, and a VM started before answers from the same state
// on the same generation afterwards (nothing failed over).
// Seeded: a failure names its seed and the shrunk input; a longer hunt:
// FTVM_FUZZ_RUNS=2000 FTVM_FUZZ_SEED=$RANDOM npx vitest run test/fuzz.wire.test.ts

import { crc32 } from 'node:zlib';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameDecoder, mac, nonce, WIRE_VERSION, WireError, type WireMessage } from '../host/cluster/wire.ts';
import { CLIENT_FRAME_BYTES_MAX, PEER_FRAME_BYTES_MAX } from '../host/limits.ts';
import { apiOf, askVm, Cluster, eventually } from './cluster.ts';

const RUNS = Number(process.env.FTVM_FUZZ_RUNS ?? 200);
const SEED = Number(process.env.FTVM_FUZZ_SEED ?? 1414);
const KEEPER = 'keeper';
/** How long a run waits for the host to answer or close before it closes the connection itself, ms (a bound, not a sleep). */
const SETTLE_MS = 150;

const cluster = new Cluster(['--fail-ms', '2000', '--heartbeat-ms', '50']);
const api = apiOf(cluster);
const HOSTS = ['h1', 'h2'];
/** msgpack as the wire writes it (host/cluster/wire.ts) */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint', moreTypes: false });

/** A wire frame around `body`: its length and CRC-32 right, or (for the fuzzing) made wrong. */
function frame(body: Uint8Array, damage: 'none' | 'crc' | 'length-short' | 'length-huge' | 'length-zero' = 'none'): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(damage === 'length-huge' ? 0xffff_fff0 : damage === 'length-zero' ? 0 : damage === 'length-short' ? Math.max(0, body.length - 1) : body.length, 0);
  h.writeUInt32LE(damage === 'crc' ? (crc32(body) ^ 1) >>> 0 : crc32(body), 4);
  return Buffer.concat([h, body]);
}

const junkValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(null, true, false, 0, -1, 2 ** 32, 2 ** 53, 1.5, '', 'keeper', 'fz1', 'hello', 'auth'),
    fc.integer(),
    fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }),
    fc.string({ maxLength: 20 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom('toString', 'valueOf', '__proto__', 'constructor', 't', 'id', 'x'), tie('v'), { maxKeys: 3 }),
  ),
})).v;

/** A message body: the fields a door looks at, each right-typed or junk. */
function message(types: string[], fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Record<string, unknown>> {
  const rec: Record<string, fc.Arbitrary<unknown>> = { t: fc.oneof({ arbitrary: fc.constantFrom(...types), weight: 4 }, { arbitrary: junkValue, weight: 1 }), v: fc.oneof({ arbitrary: fc.constant(WIRE_VERSION), weight: 6 }, { arbitrary: junkValue, weight: 1 }) };
  for (const [k, a] of Object.entries(fields)) rec[k] = fc.oneof({ arbitrary: a, weight: 3 }, { arbitrary: junkValue, weight: 1 });
  return fc.record(rec, { requiredKeys: ['t', 'v'] });
}

/** What one run writes: chunks of random bytes, damaged frames, and frames of random messages (packed, or a non-map). */
function chunks(msg: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<Buffer[]> {
  const chunk: fc.Arbitrary<Buffer> = fc.oneof(
    { arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b)), weight: 2 },
    { arbitrary: msg.map((m) => frame(packr.pack(m))), weight: 6 },
    { arbitrary: fc.tuple(msg, fc.constantFrom('crc' as const, 'length-short' as const, 'length-huge' as const, 'length-zero' as const)).map(([m, d]) => frame(packr.pack(m), d)), weight: 1 },
    { arbitrary: junkValue.map((v) => frame(packr.pack(v))), weight: 1 },
  );
  return fc.array(chunk, { minLength: 1, maxLength: 4 });
}

interface Conn {
  sock: Socket;
  /** frames the host sent, decoded (or the decoding error) */
  got: WireMessage[];
  bad: string[];
  closed: Promise<void>;
  isClosed: () => boolean;
}

/** Opens a TCP connection to `addr` ("ip:port") and decodes what comes back. */
async function open(addr: string, limit: number): Promise<Conn> {
  const c = addr.lastIndexOf(':');
  const sock = connect({ host: addr.slice(0, c), port: Number(addr.slice(c + 1)) });
  sock.on('error', () => {});
  const got: WireMessage[] = [];
  const bad: string[] = [];
  const dec = new FrameDecoder(limit);
  sock.on('data', (d: Buffer) => {
    try {
      got.push(...dec.push(d));
    } catch (e) {
      bad.push((e as Error).message);
    }
  });
  let closedNow = false;
  const closed = new Promise<void>((r) => sock.once('close', () => ((closedNow = true), r())));
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  return { sock, got, bad, closed, isClosed: () => closedNow };
}

/**
 * A client connection ready for requests: the client port's handshake
 * (wire.ts: the host's challenge, the client's HMAC of it keyed by the API
 * token, the host's hello) done here, and only here.
 */
async function openClient(host: string): Promise<Conn> {
  const c = await open(cluster.host(host).client, CLIENT_FRAME_BYTES_MAX);
  const challenge = await eventually(`${host}'s challenge`, () => c.got.find((m) => m.t === 'challenge') ?? (c.isClosed() ? Promise.reject(new Error('closed before the challenge')) : undefined), 10_000);
  const mine = nonce();
  c.sock.write(frame(packr.pack({ t: 'auth', nonce: mine, mac: mac(cluster.token, 'client', challenge.nonce as Uint8Array, mine), v: WIRE_VERSION })));
  await eventually(`${host}'s hello`, () => (c.got.some((m) => m.t === 'hello') ? true : c.isClosed() ? Promise.reject(new Error('closed before hello')) : undefined), 10_000);
  return c;
}

/** Waits (at most `ms`) until `cond` holds or the connection closes. */
async function settle(c: Conn, cond: () => boolean, ms = SETTLE_MS): Promise<void> {
  const until = Date.now() + ms;
  while (!c.isClosed() && !cond() && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
}

/** Sends one kv request to the keeper through `host` and waits (bounded) for its answer. */
const ask = (host: string, conn: number, line: string): Promise<string> => askVm(api, host, KEEPER, conn, line);

function hostsAlive(what: string): void {
  for (const id of HOSTS) expect(cluster.host(id).proc.exitCode, `host ${id} ended after ${what}`).toBeNull();
}

const shown = (bufs: Buffer[]) => bufs.map((b) => b.toString('hex').slice(0, 120)).join(' | ');

let conn = 0;
let before: any;

beforeAll(async () => {
  for (const id of HOSTS) await cluster.add(id);
  await cluster.linked();
  expect((await api('h1', 'POST', '/v1/vms', { name: KEEPER, sample: 'kv' })).status).toBe(201);
  conn = ((await api('h2', 'POST', '/v1/connections')).json as { conn: number }).conn;
  expect(await ask('h2', conn, 'a SET k 1')).toBe('a OK 1');
  before = (await api('h1', 'GET', `/v1/vms/${KEEPER}`)).json;
}, 120_000);
afterAll(() => cluster.stop());

describe('fuzzed TCP doors', () => {
  it('the frame decoder: whatever the bytes, messages or a WireError with its code', () => {
    const codes = ['FTVM_ERR_FRAME_SIZE', 'FTVM_ERR_FRAME_CHECKSUM', 'FTVM_ERR_FRAME_DECODE', 'FTVM_ERR_FRAME_VERSION'];
    const msg = message(['hello', 'status', 'log'], { id: junkValue, data: junkValue });
    fc.assert(
      fc.property(chunks(msg), fc.nat(64), (bufs, cut) => {
        // the same bytes, cut into reads at another place
        const all = Buffer.concat(bufs);
        const dec = new FrameDecoder(CLIENT_FRAME_BYTES_MAX);
        try {
          for (const part of [all.subarray(0, cut), all.subarray(cut)]) if (part.length) dec.push(part);
        } catch (e) {
          if (!(e instanceof WireError) || !codes.includes(e.code)) throw new Error(`not a WireError: ${String((e as Error)?.stack ?? e)}`);
        }
      }),
      // a version {"toString": 0} threw a TypeError (seen while fuzzing; random maps reach it rarely)
      { seed: SEED, numRuns: RUNS * 5, examples: [[[frame(packr.pack({ t: 'status', v: { toString: 0 } }))], 0]] },
    );
  });

  it('the peer port, before the handshake: refused or closed, never a crash', async () => {
    const msg = message(['hello', 'auth', 'challenge', 'welcome', 'log', 'ack', 'backup'], {
      id: fc.oneof(fc.constantFrom('h1', 'h2', 'h9'), fc.string({ maxLength: 70 })),
      nonce: fc.uint8Array({ maxLength: 32 }),
      mac: fc.uint8Array({ maxLength: 32 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...HOSTS), chunks(msg), async (host, bufs) => {
        const c = await open(cluster.host(host).peer, PEER_FRAME_BYTES_MAX);
        try {
          for (const b of bufs) if (!c.isClosed()) c.sock.write(b);
          await settle(c, () => false);
          const what = `${shown(bufs)} to ${host}'s peer port`;
          expect(c.bad, what).toEqual([]);
          // a stranger learns at most the challenge (which proves nothing without the secret)
          for (const m of c.got) expect(['challenge'], `${what}: answered ${fc.stringify(m.t)}`).toContain(m.t);
          hostsAlive(what);
          await expectServed(host, what);
        } finally {
          c.sock.destroy();
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
    await stillServing();
  });

  it('the client port, before and after authentication: answers with codes or closes, never a crash', async () => {
    const msg = message(['auth', 'ping', 'status', 'send', 'start', 'stop', 'failover', 'resume', 'nope'], {
      id: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.string({ maxLength: 8 })),
      // never the keeper: stopping or failing it over is what an authenticated client may do
      vm: fc.constantFrom('fz1', 'fz2', 'nope', ''),
      data: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.string({ maxLength: 64 })),
      eof: fc.boolean(),
      module: fc.uint8Array({ maxLength: 64 }),
      moduleHash: fc.string({ maxLength: 64 }),
      args: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
      env: fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
      seen: fc.dictionary(fc.constantFrom('fz1', 'x'), fc.integer()),
      conn: fc.integer({ min: 0x7f000000, max: 0x7fffffff }),
      nonce: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      mac: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      key: fc.uint8Array({ maxLength: 32 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...HOSTS), fc.boolean(), chunks(msg), async (host, authed, bufs) => {
        const c = authed ? await openClient(host) : await open(cluster.host(host).client, CLIENT_FRAME_BYTES_MAX);
        try {
          for (const b of bufs) if (!c.isClosed()) c.sock.write(b);
          // then a request that must still be answered if the host kept the connection: its answer ends the wait
          if (!c.isClosed()) c.sock.write(frame(packr.pack({ t: 'status', id: 'probe', v: WIRE_VERSION })));
          // (a partial frame before it leaves the host waiting for more bytes: then the bound ends the wait)
          await settle(c, () => c.got.some((m) => m.id === 'probe'));
          const what = `${authed ? 'after' : 'before'} authentication, ${shown(bufs)} to ${host}'s client port`;
          expect(c.bad, what).toEqual([]);
          for (const m of c.got.filter((x) => x.t === 'error')) {
            expect(String(m.code), `${what}: an error without a code: ${fc.stringify(m)}`).toMatch(/^FTVM_ERR_[A-Z_]+$/);
          }
          hostsAlive(what);
          // whatever this connection did, another client is served at once
          await expectServed(host, what);
        } finally {
          c.sock.destroy();
          for (const name of ['fz1', 'fz2']) await api('h1', 'DELETE', `/v1/vms/${name}`).catch(() => undefined);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
    await stillServing();
  });
});

/** A new client of `host` gets an answer to a status request (bounded). */
async function expectServed(host: string, what: string): Promise<void> {
  const c = await openClient(host);
  try {
    c.sock.write(frame(packr.pack({ t: 'status', id: 'other', v: WIRE_VERSION })));
    await settle(c, () => c.got.some((m) => m.id === 'other'), 10_000);
    expect(c.got.find((m) => m.id === 'other')?.t, `another client of ${host} after ${what}`).toBe('status');
  } finally {
    c.sock.destroy();
  }
}

/** Both hosts answer, a new client is served, and the keeper answers from the same state on the same generation. */
async function stillServing(): Promise<void> {
  for (const id of HOSTS) expect((await fetch(`${cluster.host(id).api}/healthz`)).status).toBe(200);
  for (const id of HOSTS) await expectServed(id, 'the fuzzing');
  expect(await ask('h2', conn, `c${Date.now()} GET k`)).toMatch(/ VALUE 1$/);
  const after = (await api('h1', 'GET', `/v1/vms/${KEEPER}`)).json;
  expect(after).toMatchObject({ name: KEEPER, gen: before.gen, primary: before.primary, backup: before.backup, state: 'running' });
}
