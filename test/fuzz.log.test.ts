// Proves that a log file, whatever its bytes, is either read or refused with a
// LogFormatError carrying one of the log's codes: never another exception
// (a TypeError, a RangeError from msgpackr, an allocation failure). Seeded
// properties: random bytes; valid logs mutated (bytes flipped, cut, spliced,
// frames duplicated) with their checksums made right again, so the damage
// reaches the decoder and the entry checks behind them; frames of arbitrary
// msgpack values; and entries of the right shape whose fields are arbitrary.

import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { encodeFrame, encodeHeader, FRAME_HEADER_BYTES, HEADER_BYTES, LogFormatError, readLog, readLogPrefix, type LogEntry } from '../host/log/format.ts';
import { LogWriter } from '../host/log/writer.ts';

// a fixed seed and number of runs keep the suite fast and repeatable; a longer hunt:
// FTVM_FUZZ_RUNS=20000 FTVM_FUZZ_SEED=$RANDOM npx vitest run test/fuzz.log.test.ts
const RUNS = Number(process.env.FTVM_FUZZ_RUNS ?? 200);
const SEED = Number(process.env.FTVM_FUZZ_SEED ?? 1414);
const CODES = new Set(['FTVM_ERR_LOG_FOREIGN', 'FTVM_ERR_LOG_VERSION', 'FTVM_ERR_LOG_HEADER', 'FTVM_ERR_LOG_TRUNCATED', 'FTVM_ERR_LOG_FRAME_SIZE', 'FTVM_ERR_LOG_CHECKSUM', 'FTVM_ERR_LOG_DECODE', 'FTVM_ERR_LOG_ENTRY']);

/** Reads `bytes` both ways; fails the property on any exception that is not a LogFormatError with a known code. */
function readsOrRefuses(bytes: Uint8Array): void {
  for (const read of [readLog, readLogPrefix]) {
    try {
      read(bytes);
    } catch (e) {
      if (!(e instanceof LogFormatError) || !CODES.has(e.code)) throw new Error(`not a LogFormatError: ${String((e as Error)?.stack ?? e)}`);
      expect(e.message).not.toMatch(/\n/);
    }
  }
}

function validLog(): Uint8Array {
  const chunks: Uint8Array[] = [];
  const w = new LogWriter((b) => chunks.push(b));
  w.append('start', 0n, { module: 'abc', args: ['a', 'b'], env: { A: '1' }, digestEvery: 10n, depthLimit: 100, memoryLimitPages: 10, canonicalizeNaNs: false, stdin: 'whole', preopens: ['/'], listen: false });
  w.flush();
  w.append('clock', 10n, { clock: 1, ns: 123456789n });
  w.append('random', 20n, new Uint8Array([1, 2, 3, 4]));
  w.flush();
  w.append('input', 20n, { fd: 0, bytes: new TextEncoder().encode('hello') });
  w.append('interrupt', 30n, { kind: 2, at: 'check', conn: 7, bytes: new Uint8Array([9]), eof: false, window: 100 });
  w.append('send', 31n, { conn: 7, bytes: new Uint8Array([1]), eof: true });
  w.flush();
  w.append('output', 99n, { fd: 1, bytes: new TextEncoder().encode('world\n') });
  w.append('digest', 1000n, new Uint8Array(32).fill(7));
  w.append('exit', 1001n, { code: 0, trap: null });
  w.flush();
  return Buffer.concat(chunks);
}

/** Makes every frame's checksum (and the header's) right again, as far as the frame lengths allow. */
function fixChecksums(bytes: Uint8Array): Uint8Array {
  const b = Buffer.from(bytes);
  if (b.length >= HEADER_BYTES) b.writeUInt32LE(crc32(b.subarray(0, 12)), 12);
  let at = HEADER_BYTES;
  while (at + FRAME_HEADER_BYTES <= b.length) {
    const length = b.readUInt32LE(at);
    if (length === 0 || at + FRAME_HEADER_BYTES + length > b.length) break;
    b.writeUInt32LE(crc32(b.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length)), at + 4);
    at += FRAME_HEADER_BYTES + length;
  }
  return b;
}

/** Arbitrary msgpack-able values, with the keys the log reader looks at and keys that are traps for plain objects. */
const keys = fc.constantFrom('seq', 'count', 'kind', 'payload', 'module', 'args', 'env', 'bytes', 'fd', 'conn', 'toString', 'valueOf', '__proto__', 'constructor', 'hasOwnProperty', 'length', 'x');
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -1, 1.5, NaN, 2 ** 53, -(2 ** 63), '', 'check', 'start', 'exit'),
    fc.integer(),
    fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }),
    fc.double(),
    fc.string({ maxLength: 20 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(keys, tie('v'), { maxKeys: 5 }),
  ),
})).v;

const KINDS = ['start', 'file', 'clock', 'random', 'input', 'output', 'interrupt', 'send', 'progress', 'digest', 'exit', 'nope'];

describe('fuzzed log files', () => {
  it('random bytes, and random bytes behind a valid header', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.uint8Array({ maxLength: 2048 }), (header, tail) => {
        readsOrRefuses(header ? fixChecksums(Buffer.concat([encodeHeader(), tail])) : tail);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('valid logs mutated, with their checksums made right again', () => {
    const log = validLog();
    expect(readLog(log).length).toBe(9);
    const mutation = fc.oneof(
      fc.record({ t: fc.constant('flip' as const), at: fc.nat(log.length - 1), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ t: fc.constant('cut' as const), at: fc.nat(log.length) }),
      fc.record({ t: fc.constant('splice' as const), at: fc.nat(log.length), bytes: fc.uint8Array({ maxLength: 64 }) }),
      fc.record({ t: fc.constant('copy' as const), from: fc.nat(log.length), len: fc.nat(200), to: fc.nat(log.length) }),
    );
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.boolean(), (ms, fix) => {
        let b = Buffer.from(log);
        for (const m of ms) {
          if (m.t === 'flip' && m.at < b.length) b[m.at] = m.byte;
          else if (m.t === 'cut') b = b.subarray(0, m.at);
          else if (m.t === 'splice') b = Buffer.concat([b.subarray(0, m.at), m.bytes, b.subarray(m.at)]);
          else if (m.t === 'copy') b = Buffer.concat([b.subarray(0, m.to), b.subarray(m.from, m.from + m.len), b.subarray(m.to)]);
        }
        readsOrRefuses(fix ? fixChecksums(b) : b);
      }),
      // found by a longer hunt: a kind that gains a newline made a two-line error message
      { seed: SEED, numRuns: RUNS * 2, examples: [[[{ t: 'flip', at: 242, byte: 10 }], true]] },
    );
  });

  it('frames holding arbitrary msgpack values', () => {
    const plain = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' });
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 3 }), (frames) => {
        const parts: Uint8Array[] = [encodeHeader()];
        for (const v of frames) {
          const payload = plain.pack(v);
          const h = Buffer.alloc(FRAME_HEADER_BYTES);
          h.writeUInt32LE(payload.length, 0);
          h.writeUInt32LE(crc32(payload), 4);
          parts.push(h, payload);
        }
        readsOrRefuses(Buffer.concat(parts));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('entries of the right structure with arbitrary fields', () => {
    const entry = fc.record({
      seq: fc.oneof(fc.constant('next' as const), value),
      count: fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), value),
      kind: fc.oneof(fc.constantFrom(...KINDS), value),
      payload: value,
    });
    fc.assert(
      fc.property(fc.array(fc.array(entry, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 3 }), (frames) => {
        let seq = 0;
        const parts: Uint8Array[] = [encodeHeader()];
        for (const f of frames) {
          const entries = f.map((e) => ({ ...e, seq: e.seq === 'next' ? seq++ : e.seq })) as unknown as LogEntry[];
          parts.push(encodeFrame(entries, 1 << 20));
        }
        readsOrRefuses(Buffer.concat(parts));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });
});
