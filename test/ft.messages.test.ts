// The peer messages' union is checked once, where a frame is decoded: every
// type with its fields right passes; a missing or mistyped field, or an
// unknown type, is refused with FTVM_ERR_BAD_MESSAGE.
import { describe, expect, it } from 'vitest';
import { parsePeerMessage, PeerMessageError, type PeerMessage } from '../host/ft/messages.ts';
import type { WireMessage } from '../host/cluster/wire.ts';

const b = new Uint8Array([1, 2, 3]);
const valid: PeerMessage[] = [
  { t: 'hb' },
  { t: 'snapchunk', vm: 'v', gen: 1, at: 0, total: 3, bytes: b },
  { t: 'rings', vm: 'v', gen: 1, rings: { stdout: { start: 0, bytes: b } } },
  { t: 'backup', vm: 'v', gen: 2, moduleHash: 'a', meteredHash: 'b', start: { module: 'a', args: [], env: {}, digestEvery: 1n, depthLimit: 1, memoryLimitPages: 1, canonicalizeNaNs: false }, primary: 'h1', snapshot: null, cpuPercent: 100, publish: [8080] },
  { t: 'log', vm: 'v', gen: 1, first: 0, last: 3, frame: b, released: -1 },
  { t: 'ack', vm: 'v', gen: 1, seq: -1, count: 0n },
  { t: 'mod-offer', id: 1, items: [{ hash: 'h', kind: 'metered', bytes: 3 }] },
  { t: 'mod-need', id: 1, need: ['h'] },
  { t: 'mod-chunk', hash: 'h', at: 0, bytes: b },
  { t: 'fwd', vm: 'v', conn: 0x1800001, data: b, eof: false, hops: 1, off: 10 },
  { t: 'out', vm: 'v', conn: 7, seq: 4, data: b, eof: true },
  { t: 'in-ack', acks: [[0x1800001, 10]] },
  { t: 'in-resend', vm: 'v', conn: 0x1800001, from: 3 },
  { t: 'primary', vm: 'v', gen: 2, host: 'h2', publish: [80, 443] },
  { t: 'adopt', vm: 'v', conn: 7, after: -1, owner: 'h3' },
  { t: 'conn-owner', conn: 7, owner: 'h3' },
  { t: 'backup-failed', vm: 'v', gen: 1 },
  { t: 'failover', vm: 'v', gen: 1 },
  { t: 'stop', vm: 'v', gen: 3 },
  { t: 'vminfo', info: { name: 'v', gen: 1, primary: 'h1', state: 'running' } },
  { t: 'admin', id: 1, vm: 'v', op: 'failover' },
  { t: 'out-read', id: 2, vm: 'v', stream: 'stderr', from: 0, waitMs: 100 },
  { t: 'out-res', id: 2, read: null, code: 'FTVM_ERR_UNAVAILABLE', message: 'gone' },
  { t: 'admin-res', id: 1, code: null, message: null },
  { t: 'start-fwd', id: 3, vm: 'v', moduleHash: 'a' },
  { t: 'start-res', id: 3, gen: 1, primary: 'h2', backup: null, code: null, message: null },
];

const wire = (m: unknown) => m as WireMessage;

describe('peer messages', () => {
  it('takes every type with its fields right', () => {
    for (const m of valid) expect(parsePeerMessage(wire(m))).toBe(m);
    expect(new Set(valid.map((m) => m.t)).size).toBe(valid.length);
  });

  it('refuses each required field missing or of another type, naming it', () => {
    for (const m of valid) {
      for (const field of Object.keys(m).filter((k) => k !== 't' && k !== 'off' && k !== 'publish' || (m.t === 'backup' && k === 'publish'))) {
        const missing = { ...m } as Record<string, unknown>;
        delete missing[field];
        expect(() => parsePeerMessage(wire(missing)), `${m.t} without ${field}`).toThrow(PeerMessageError);
        const value = (m as unknown as Record<string, unknown>)[field];
        const wrong = { ...m, [field]: typeof value === 'string' || value === null ? 5 : 'wrong' };
        let err: unknown = null;
        try {
          parsePeerMessage(wire(wrong));
        } catch (e) {
          err = e;
        }
        expect(err, `${m.t} with a wrong ${field}`).toBeInstanceOf(PeerMessageError);
        expect((err as PeerMessageError).code).toBe('FTVM_ERR_BAD_MESSAGE');
        expect((err as Error).message).toContain(`"${field}"`);
      }
    }
  });

  it('refuses an unknown type, a count that is not a bigint, a port out of range and an out-of-range connection id', () => {
    expect(() => parsePeerMessage(wire({ t: 'toString' }))).toThrow(/unknown message type/);
    expect(() => parsePeerMessage(wire({ t: 'ack', vm: 'v', gen: 1, seq: 0, count: 5 }))).toThrow(/"count"/);
    expect(() => parsePeerMessage(wire({ t: 'primary', vm: 'v', gen: 1, host: 'h', publish: [70000] }))).toThrow(/"publish"/);
    expect(() => parsePeerMessage(wire({ t: 'conn-owner', conn: 2 ** 32, owner: 'h' }))).toThrow(/"conn"/);
    expect(() => parsePeerMessage(wire({ t: 'log', vm: 'v', gen: 1, first: 0, last: 1, frame: b, released: -2 }))).toThrow(/"released"/);
  });
});
