// The ring a VM's released stdout and stderr are kept in: offsets from the
// stream's start, a bound with a count of bytes dropped, and an image that
// seeds another replica's ring.
import { describe, expect, it } from 'vitest';
import { OutputRing } from '../host/cluster/output-ring.ts';

const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s));
const t = (u: Uint8Array): string => Buffer.from(u).toString('utf8');

describe('OutputRing', () => {
  it('reads from any offset, and from the last next only what came after', () => {
    const r = new OutputRing(16);
    r.append(b('hello '));
    r.append(b('world\n'));
    expect(r.length).toBe(12);
    expect(t(r.read(0).bytes)).toBe('hello world\n');
    const s = r.read(3);
    expect(s).toMatchObject({ from: 3, next: 12, dropped: 0 });
    expect(t(s.bytes)).toBe('lo world\n');
    expect(r.read(12).bytes.length).toBe(0);
    expect(r.read(99)).toMatchObject({ from: 12, next: 12 });
    expect(t(r.read(0, 4).bytes)).toBe('hell');
  });

  it('keeps only the last capacity bytes and counts what it dropped', () => {
    const r = new OutputRing(10);
    for (let i = 0; i < 5; i++) r.append(b(`line${i}\n`)); // 30 bytes
    expect(r.length).toBe(30);
    expect(r.dropped).toBe(20);
    const s = r.read(0);
    expect(s).toMatchObject({ from: 20, next: 30, dropped: 20 });
    expect(t(s.bytes)).toBe('ne3\nline4\n');
    // one write larger than the ring keeps its tail
    r.append(b('0123456789abcdef'));
    expect(r.dropped).toBe(36);
    expect(t(r.read(0).bytes)).toBe('6789abcdef');
  });

  it('an image restores the same offsets in another ring, which continues the stream', () => {
    const a = new OutputRing(8);
    a.append(b('abcdefghij'));
    const c = new OutputRing(8);
    c.restore(a.image());
    c.append(b('kl'));
    a.append(b('kl'));
    expect(c.read(0)).toEqual(a.read(0));
    expect(t(c.read(10).bytes)).toBe('kl');
  });
});

describe('OutputRing against a plain copy of the stream', () => {
  it('random writes of any size read back as the last capacity bytes, from any offset', () => {
    let seed = 7;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
    for (const cap of [1, 5, 64, 5000]) {
      const r = new OutputRing(cap);
      let all = Buffer.alloc(0);
      for (let k = 0; k < 300; k++) {
        const w = Buffer.from(Array.from({ length: rand(k % 50 === 0 ? 3 * cap + 1 : 40) }, () => rand(256)));
        r.append(w);
        all = Buffer.concat([all, w]);
        const start = Math.max(0, all.length - cap);
        expect(r.length).toBe(all.length);
        expect(r.dropped).toBe(start);
        const from = rand(all.length + 2);
        const s = r.read(from);
        const at = Math.min(Math.max(from, start), all.length);
        expect(s.from).toBe(at);
        expect(Buffer.from(s.bytes).equals(all.subarray(at))).toBe(true);
      }
    }
  });
});
