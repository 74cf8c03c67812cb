// Speaking the peer protocol from a test (host/cluster/wire.ts frames,
// host.ts's handshake from the dialer's side), as a host that knows the
// cluster secret would.
import { crc32 } from 'node:zlib';
import { connect, type Socket } from 'node:net';
import { Packr } from 'msgpackr';
import { FrameDecoder, mac, nonce, WIRE_VERSION, type WireMessage } from '../host/cluster/wire.ts';
import { PEER_FRAME_BYTES_MAX } from '../host/limits.ts';
import { eventually, type Cluster } from './cluster.ts';

/** msgpack as the wire writes it (host/cluster/wire.ts) */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint', moreTypes: false });

/** One wire frame: length and CRC-32 (little-endian u32 each), then the msgpack body of `m`. */
export function frame(m: unknown): Buffer {
  const body = packr.pack(m);
  const h = Buffer.alloc(8);
  h.writeUInt32LE(body.length, 0);
  h.writeUInt32LE(crc32(body), 4);
  return Buffer.concat([h, body]);
}

/** An authenticated peer connection: its socket, what came on it, and whether it closed. */
export interface Peer {
  sock: Socket;
  got: WireMessage[];
  isClosed: () => boolean;
}

/**
 * A connection to host `host`'s peer port of `cluster`, authenticated as
 * peer `id` (with boot id `boot` in its hello, when given). Rejects when the
 * host closes it or does not answer within 10 s.
 */
export async function openPeer(cluster: Cluster, host: string, id: string, boot?: string): Promise<Peer> {
  const addr = cluster.host(host).peer;
  const c = addr.lastIndexOf(':');
  const sock = connect({ host: addr.slice(0, c), port: Number(addr.slice(c + 1)) });
  sock.on('error', () => {});
  const got: WireMessage[] = [];
  const dec = new FrameDecoder(PEER_FRAME_BYTES_MAX);
  sock.on('data', (d: Buffer) => got.push(...dec.push(d)));
  let closed = false;
  sock.once('close', () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  const mine = nonce();
  sock.write(frame({ t: 'hello', id, nonce: mine, v: WIRE_VERSION, ...(boot !== undefined ? { boot } : {}) }));
  const challenge = await eventually(`${host}'s challenge`, () => got.find((m) => m.t === 'challenge') ?? (closed ? Promise.reject(new Error('closed')) : undefined), 10_000);
  sock.write(frame({ t: 'auth', mac: mac(cluster.secret, 'dialer', challenge.nonce as Uint8Array, mine), v: WIRE_VERSION }));
  await eventually(`${host}'s welcome`, () => (got.some((m) => m.t === 'welcome') ? true : closed ? Promise.reject(new Error('closed before welcome')) : undefined), 10_000);
  return { sock, got, isClosed: () => closed };
}
