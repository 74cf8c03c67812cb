// Framing for the TCP channels between hosts (the log channel) and between
// clients and hosts.
//
// Frame (integers little-endian):
//   0   4   body length L, 1 <= L <= limit
//   4   4   CRC-32 of the body
//   8   L   body: one msgpack map { v: WIRE_VERSION, t: type, ...fields }
// A frame that is too large, fails its checksum, does not decode, or carries
// another version ends the connection with a WireError; nothing it carried is
// acted on.
//
// Peers prove they know the cluster secret before anything else flows:
//   dialer   -> { t: 'hello', id, nonce: A, cluster, boot }
//   listener -> { t: 'challenge', id, nonce: B, mac: HMAC(secret, 'listener' A B), cluster, boot }
//   dialer   -> { t: 'auth', mac: HMAC(secret, 'dialer' B A) }
//   listener -> { t: 'welcome' }
// Each side checks the other's MAC; a peer that sends anything else first, or
// a wrong MAC, is disconnected. `cluster` is the id the side's arbiter holds
// (Arbiter.open): a peer whose arbiter is another one (a removed directory made
// again by a host started later) is disconnected too, so that no two linked
// hosts can hold the same slot. `boot` is the side's process id, as in its
// heartbeats: a peer that restarted is known as such before the link is up.
//
// Clients prove they know the API token (the REST API's bearer token) before
// any request, and the token never crosses the wire:
//   host   -> { t: 'challenge', host, nonce: B }          at once on accept
//   client -> { t: 'auth', nonce: A, mac: HMAC(token, 'client' B A) }
//   host   -> { t: 'hello', conn, host, key, idleMs, mac: HMAC(token, 'host' A B) }
// `key` = HMAC(cluster secret, 'conn' conn) (resumeKey): the client presents it
// with { t: 'resume', conn, key, seen } on another host after a failure, and
// every host can check it, so no other client can take the connection id over.
// `idleMs`: an authenticated connection silent this long is closed; FtClient
// sends { t: 'ping' } (no answer) well within it. A wrong or missing
// credential, or none within CLIENT_AUTH_MS, gets one { t: 'error', id: null,
// code: 'FTVM_ERR_UNAUTHORIZED', message } and the connection is closed; so
// does a connection past a cap, with code FTVM_ERR_TOO_MANY_CONNECTIONS.
// Until it is authenticated a client may send frames of CLIENT_AUTH_FRAME_MAX
// bytes at most.
// Errors answering a request: { t: 'error', id, code?, message }.
//
// Modules go to a peer once, in chunks (FtHost.shipModules):
//   sender   -> { t: 'mod-offer', id, items: [{ hash, kind, bytes }] }
//   receiver -> { t: 'mod-need', id, need: [hash...] }  or  { ..., refused: why }
//   sender   -> { t: 'mod-chunk', hash, at, bytes }     MODULE_CHUNK_BYTES at most,
//                                                      in order, for each needed hash
//   sender   -> { t: 'backup', ..., moduleHash, meteredHash }
// The receiver checks the SHA-256 of each module when its last chunk arrives.
// A module and its metered form of at most 1 MiB together skip the offer and
// ride in the 'backup' request itself ('module', 'metered' bytes).

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { Socket } from 'node:net';
import { Packr } from 'msgpackr';
import type { FtvmErrorCode } from '../errors.ts';
import { WIRE_HEADER_BYTES as WIRE_HEADER, PEER_FRAME_BYTES_MAX as PEER_FRAME_MAX, CLIENT_FRAME_BYTES_MAX as CLIENT_FRAME_MAX, CLIENT_AUTH_FRAME_BYTES_MAX as CLIENT_AUTH_FRAME_MAX, CLIENT_AUTH_MS, MODULE_CHUNK_BYTES } from '../limits.ts';
export { WIRE_HEADER, PEER_FRAME_MAX, CLIENT_FRAME_MAX, CLIENT_AUTH_FRAME_MAX, CLIENT_AUTH_MS, MODULE_CHUNK_BYTES };

export const WIRE_VERSION = 1;

export class WireError extends Error {
  constructor(
    readonly code: Extract<FtvmErrorCode, 'FTVM_ERR_FRAME_SIZE' | 'FTVM_ERR_FRAME_CHECKSUM' | 'FTVM_ERR_FRAME_DECODE' | 'FTVM_ERR_FRAME_VERSION' | 'FTVM_ERR_AUTH'>,
    message: string,
  ) {
    super(message);
    this.name = 'WireError';
  }
}

/** What a host's client port refuses, with its stable code. */
export type ClientErrorCode = Extract<FtvmErrorCode, 'FTVM_ERR_UNAUTHORIZED' | 'FTVM_ERR_TOO_MANY_CONNECTIONS'>;

/**
 * An error of the client port, with a stable code: raised by the host for a
 * refused credential or connection (sent as { t: 'error', code, message }), and
 * by FtClient for any error frame that carries a code (`code` is then that
 * frame's code, which may be any FTVM_ERR_*).
 */
export class ClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ClientError';
  }
}

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, moreTypes: false });

export type WireMessage = { t: string } & Record<string, unknown>;

/**
 * A value as msgpack bytes, encoded as a frame's body is (bigints kept), for
 * state streamed in chunks instead of riding in one frame (a snapshot's
 * devices). unpackValue reads it back.
 */
export function packValue(v: unknown): Uint8Array {
  return packr.pack(v);
}

/** The value packValue encoded. Errors: whatever msgpackr throws on bytes it did not write (callers refuse the snapshot). */
export function unpackValue(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

export function encodeMessage(m: WireMessage): Buffer {
  const body = packr.pack({ ...m, v: WIRE_VERSION });
  const frame = Buffer.allocUnsafe(WIRE_HEADER + body.length);
  frame.writeUInt32LE(body.length, 0);
  frame.writeUInt32LE(crc32(body), 4);
  body.copy(frame, WIRE_HEADER);
  return frame;
}

/** Cuts a byte stream into messages, checking each frame. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  /** reads that came after `buf` while a large frame is incomplete, joined once it is whole */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** `limit`: the largest body in bytes, or a function giving it for the next frame (it may grow, e.g. after authentication) */
  constructor(private readonly limitOf: number | (() => number)) {}

  private get limit(): number {
    return typeof this.limitOf === 'number' ? this.limitOf : this.limitOf();
  }

  /** The messages completed by `chunk`; throws WireError at the first bad frame. */
  push(chunk: Buffer): WireMessage[] {
    if (this.buf.length >= WIRE_HEADER) {
      // A frame is incomplete: collect reads until it is whole, and copy once
      // (joining at each read costs the square of a large frame's size).
      const need = WIRE_HEADER + this.buf.readUInt32LE(0);
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.buf.length + this.pendingBytes < need && need <= WIRE_HEADER + this.limit) return [];
      chunk = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: WireMessage[] = [];
    while (this.buf.length >= WIRE_HEADER) {
      const len = this.buf.readUInt32LE(0);
      if (len === 0 || len > this.limit) throw new WireError('FTVM_ERR_FRAME_SIZE', `frame of ${len} bytes (at most ${this.limit})`);
      if (this.buf.length < WIRE_HEADER + len) break;
      const body = this.buf.subarray(WIRE_HEADER, WIRE_HEADER + len);
      if (crc32(body) !== this.buf.readUInt32LE(4)) throw new WireError('FTVM_ERR_FRAME_CHECKSUM', 'frame checksum mismatch');
      let m: unknown;
      try {
        m = packr.unpack(body);
      } catch (e) {
        throw new WireError('FTVM_ERR_FRAME_DECODE', `frame does not decode: ${(e as Error).message}`);
      }
      if (typeof m !== 'object' || m === null || Array.isArray(m) || typeof (m as WireMessage).t !== 'string') {
        throw new WireError('FTVM_ERR_FRAME_DECODE', 'a frame holds a map with a string "t"');
      }
      const v = (m as { v?: unknown }).v;
      // (a version that is not a number is named by its type: String() of a map whose toString is not a function throws)
      if (v !== WIRE_VERSION) throw new WireError('FTVM_ERR_FRAME_VERSION', `frame version ${typeof v === 'number' ? v : typeof v} (this host speaks ${WIRE_VERSION})`);
      out.push(m as WireMessage);
      this.buf = this.buf.subarray(WIRE_HEADER + len);
    }
    if (!this.buf.length) this.buf = Buffer.alloc(0);
    return out;
  }
}

/** Reads messages from a socket; a bad frame destroys the socket and is reported once. `limit` as FrameDecoder's. */
export function readMessages(sock: Socket, limit: number | (() => number), onMessage: (m: WireMessage) => void, onBadFrame: (e: WireError) => void): void {
  const dec = new FrameDecoder(limit);
  sock.on('data', (chunk: Buffer) => {
    let msgs: WireMessage[];
    try {
      msgs = dec.push(chunk);
    } catch (e) {
      onBadFrame(e as WireError);
      sock.destroy();
      return;
    }
    for (const m of msgs) {
      if (sock.destroyed) return;
      onMessage(m);
    }
  });
}

/**
 * Writes one message. Messages sent to one socket in the same turn of the
 * event loop leave in one write (the socket is corked until the next tick):
 * the answers one ack releases, the frames and acks of one read, cost one
 * system call, not one each. Returns what Socket.write returns (false: the
 * socket's buffer is over its high-water mark), false if it is destroyed.
 */
export function send(sock: Socket, m: WireMessage): boolean {
  if (sock.destroyed) return false;
  if (!corked.has(sock)) {
    corked.add(sock);
    sock.cork();
    process.nextTick(uncork, sock);
  }
  return sock.write(encodeMessage(m));
}

/** Sockets send() corked in this tick (each is uncorked, and leaves the set, at the next). */
const corked = new Set<Socket>();
const uncork = (sock: Socket): void => {
  corked.delete(sock);
  sock.uncork();
};

/**
 * Resolves once `sock` has at most `below` bytes queued to write, or once it
 * closes (the caller checks which), and always at a later turn of the event
 * loop (setImmediate), never in the same one: a loop that writes a chunk per
 * call lets timers (heartbeats) and reads (acks) run between chunks even when
 * the kernel takes every write at once, as on loopback. ('drain' fires from
 * the write's callback, so resolving there would chain the next chunk through
 * microtasks and starve the event loop for the whole transfer.)
 */
export function drained(sock: Socket, below: number): Promise<void> {
  return new Promise((resolve) => {
    const later = (): void => void setImmediate(resolve);
    if (sock.destroyed || sock.writableLength <= below) return later();
    const done = (): void => {
      sock.off('drain', done);
      sock.off('close', done);
      later();
    };
    sock.on('drain', done);
    sock.on('close', done);
  });
}

// ---- authentication ----

export const nonce = (): Buffer => randomBytes(16);

/**
 * HMAC-SHA-256 over `role`, `a`, `b`: the peer handshake's MACs ('listener',
 * 'dialer', keyed by the cluster secret) and the client port's ('client', 'host',
 * keyed by the API token).
 */
export function mac(secret: string, role: 'listener' | 'dialer' | 'client' | 'host', a: Uint8Array, b: Uint8Array): Buffer {
  return createHmac('sha256', secret).update(role).update(a).update(b).digest();
}

export function macOk(expected: Buffer, got: unknown): boolean {
  return got instanceof Uint8Array && got.length === expected.length && timingSafeEqual(expected, got);
}

/**
 * The key that lets a client resume connection `conn` (a u32) on any host:
 * HMAC-SHA-256(cluster secret, 'conn' ++ conn as u32 LE), 32 bytes.
 */
export function resumeKey(secret: string, conn: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(conn >>> 0, 0);
  return createHmac('sha256', secret).update('conn').update(b).digest();
}
