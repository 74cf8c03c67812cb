// The log file format: what is written reads back identically; a truncated,
// corrupted, foreign or out-of-order log is refused with an error naming the
// bad frame, never a crash or a silently shorter log.
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  FRAME_BYTES_MAX,
  START_FRAME_BYTES_MAX,
  HEADER_BYTES,
  LogFormatError,
  encodeFrame,
  encodeHeader,
  isComplete,
  readLog,
  type LogEntry,
} from '../host/log/format.ts';
import { LogWriter } from '../host/log/writer.ts';

function write(build: (w: LogWriter) => void): Uint8Array {
  const chunks: Uint8Array[] = [];
  const w = new LogWriter((b) => chunks.push(b));
  build(w);
  w.flush();
  return Buffer.concat(chunks);
}

function sample(): Uint8Array {
  return write((w) => {
    w.append('clock', 10n, { clock: 1, ns: 123456789n });
    w.append('random', 20n, new Uint8Array([1, 2, 3, 4]));
    w.flush();
    w.append('input', 20n, { fd: 0, bytes: new TextEncoder().encode('hello') });
    w.append('output', 99n, { fd: 1, bytes: new TextEncoder().encode('world\n') });
    w.append('digest', 1000n, new Uint8Array(32).fill(7));
    w.append('exit', 1001n, { code: 0, trap: null });
  });
}

/** Decoded bytes come back as Buffers (a Uint8Array subclass); compare contents. */
function plain(p: unknown): unknown {
  if (p instanceof Uint8Array) return new Uint8Array(p);
  if (typeof p === 'object' && p !== null) return Object.fromEntries(Object.entries(p).map(([k, v]) => [k, plain(v)]));
  return p;
}

function errorOf(bytes: Uint8Array): LogFormatError {
  try {
    readLog(bytes);
  } catch (e) {
    if (e instanceof LogFormatError) return e;
    throw e;
  }
  throw new Error('the log was accepted');
}

describe('log format', () => {
  it('round-trips every kind of entry, across frames', () => {
    const entries = readLog(sample());
    expect(entries.map((e) => [e.seq, e.count, e.kind])).toEqual([
      [0, 10n, 'clock'],
      [1, 20n, 'random'],
      [2, 20n, 'input'],
      [3, 99n, 'output'],
      [4, 1000n, 'digest'],
      [5, 1001n, 'exit'],
    ]);
    expect(entries[0]!.payload).toEqual({ clock: 1, ns: 123456789n });
    const out = entries[3] as Extract<LogEntry, { kind: 'output' }>;
    expect(Buffer.from(out.payload.bytes).toString()).toBe('world\n');
  });

  it('round-trips random logs (property, seeded)', () => {
    const kinds = fc.oneof(
      fc.record({ kind: fc.constant('clock' as const), payload: fc.record({ clock: fc.integer({ min: 0, max: 3 }), ns: fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }) }) }),
      fc.record({ kind: fc.constant('random' as const), payload: fc.uint8Array({ maxLength: 300 }) }),
      fc.record({ kind: fc.constant('input' as const), payload: fc.record({ fd: fc.nat(10), bytes: fc.uint8Array({ maxLength: 300 }) }) }),
      fc.record({ kind: fc.constant('output' as const), payload: fc.record({ fd: fc.nat(10), bytes: fc.uint8Array({ maxLength: 300 }) }) }),
      fc.record({
        kind: fc.constant('interrupt' as const),
        payload: fc.record({
          kind: fc.integer({ min: 1, max: 2 }),
          at: fc.constantFrom('check' as const, 'wait' as const, 'idle' as const),
          conn: fc.integer({ min: 0, max: 0xffff_ffff }),
          bytes: fc.uint8Array({ maxLength: 300 }),
          eof: fc.boolean(),
        }),
      }),
      fc.record({
        kind: fc.constant('send' as const),
        payload: fc.record({ conn: fc.integer({ min: 0, max: 0xffff_ffff }), bytes: fc.uint8Array({ maxLength: 300 }), eof: fc.boolean() }),
      }),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.bigInt({ min: 0n, max: 1000n }), kinds), { maxLength: 200 }), (items) => {
        let count = 0n;
        const expected: Array<[bigint, string, unknown]> = [];
        const bytes = write((w) => {
          for (const [step, { kind, payload }] of items) {
            count += step;
            w.append(kind, count, payload as never);
            expected.push([count, kind, payload]);
          }
        });
        const got = readLog(bytes);
        expect(got.map((e) => [e.count, e.kind, plain(e.payload)])).toEqual(expected);
        expect(got.map((e) => e.seq)).toEqual(expected.map((_, i) => i));
      }),
      { seed: 42, numRuns: 200 },
    );
  });

  it('every truncation is refused, except at a frame boundary, which reads as an incomplete log', () => {
    const good = sample();
    const full = readLog(good);
    expect(isComplete(full)).toBe(true);
    let boundaries = 0;
    for (let cut = 1; cut < good.length; cut++) {
      let entries: LogEntry[] | null = null;
      try {
        entries = readLog(good.subarray(0, cut));
      } catch (e) {
        expect(e).toBeInstanceOf(LogFormatError);
        expect((e as LogFormatError).code).toBe(cut < HEADER_BYTES ? 'FTVM_ERR_LOG_FOREIGN' : 'FTVM_ERR_LOG_TRUNCATED');
        continue;
      }
      boundaries++;
      expect(isComplete(entries)).toBe(false);
      expect(entries).toEqual(full.slice(0, entries.length));
    }
    // the header alone, and after the first of two frames
    expect(boundaries).toBe(2);
  });

  it('every flipped byte is refused, never silently accepted', () => {
    const good = sample();
    for (let i = 0; i < good.length; i++) {
      const bad = Buffer.from(good);
      bad[i]! ^= 0x41;
      const e = errorOf(bad);
      expect(e).toBeInstanceOf(LogFormatError);
      if (i >= HEADER_BYTES) expect(e.frame).toBeGreaterThanOrEqual(0);
    }
  });

  it('a foreign file, a future version and an oversized frame', () => {
    expect(errorOf(new TextEncoder().encode('#!/bin/sh\necho hi\n')).code).toBe('FTVM_ERR_LOG_FOREIGN');
    const future = Buffer.from(encodeHeader());
    future.writeUInt16LE(99, 8);
    future.writeUInt32LE(crc32(future.subarray(0, 12)), 12);
    expect(errorOf(future).code).toBe('FTVM_ERR_LOG_VERSION');
    // The first frame holds the start entry alone and may be larger (a command line's arguments), up to its own limit.
    const huge = Buffer.concat([encodeHeader(), Buffer.alloc(8)]);
    huge.writeUInt32LE(START_FRAME_BYTES_MAX + 1, HEADER_BYTES);
    const e = errorOf(huge);
    expect(e).toMatchObject({ code: 'FTVM_ERR_LOG_FRAME_SIZE', frame: 0, offset: HEADER_BYTES });
    const first = encodeFrame([{ seq: 0, count: 0n, kind: 'random', payload: new Uint8Array(1) }]);
    const second = Buffer.concat([encodeHeader(), first, Buffer.alloc(8)]);
    second.writeUInt32LE(FRAME_BYTES_MAX + 1, HEADER_BYTES + first.length);
    expect(errorOf(second)).toMatchObject({ code: 'FTVM_ERR_LOG_FRAME_SIZE', frame: 1, offset: HEADER_BYTES + first.length });
  });

  it('entries out of order are refused even when every checksum is right', () => {
    const frame = (entries: LogEntry[]) => encodeFrame(entries);
    const skipped = Buffer.concat([encodeHeader(), frame([{ seq: 1, count: 0n, kind: 'random', payload: new Uint8Array(1) }])]);
    expect(errorOf(skipped).message).toMatch(/seq 1 where 0 was expected/);
    const backwards = Buffer.concat([
      encodeHeader(),
      frame([
        { seq: 0, count: 10n, kind: 'random', payload: new Uint8Array(1) },
        { seq: 1, count: 9n, kind: 'random', payload: new Uint8Array(1) },
      ]),
    ]);
    expect(errorOf(backwards).message).toMatch(/count 9 is not a count at or after 10/);
  });

  it('the writer refuses an entry over the size limit and entries that go back in time', () => {
    const w = new LogWriter(() => {});
    expect(() => w.append('random', 0n, new Uint8Array(FRAME_BYTES_MAX))).toThrow(/exceeds/);
    w.append('random', 5n, new Uint8Array(1));
    expect(() => w.append('random', 4n, new Uint8Array(1))).toThrow(/invariant/);
  });

  it('large logs are cut into frames under the limit', () => {
    const bytes = write((w) => {
      for (let i = 0; i < 100; i++) w.append('output', BigInt(i), { fd: 1, bytes: new Uint8Array(50_000) });
    });
    const entries = readLog(bytes);
    expect(entries).toHaveLength(100);
    expect(bytes.length).toBeGreaterThan(5_000_000);
  });
});
