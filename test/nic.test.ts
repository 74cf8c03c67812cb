// The virtual NIC and the network guests: messages arrive as interrupts at
// exact counts, the key-value samples answer them (raw NIC and WASI sockets),
// and a replay delivers every message at the recorded count and place.
import { describe, expect, it } from 'vitest';
import { LogWriter } from '../host/log/writer.ts';
import { readLog, type LogEntry } from '../host/log/format.ts';
import { DivergenceError, recordGuest, replayGuest, type RecordOptions } from '../host/runtime/record.ts';
import { ScriptedMessages } from '../host/runtime/events.ts';
import { runGuest, GuestLoadError } from '../host/runtime/guest.ts';
import type { NicMessage } from '../host/runtime/nic.ts';
import fc from 'fast-check';
import { MAX_MESSAGE_BYTES } from '../host/runtime/nic.ts';
import { INTERRUPT_NIC } from '../host/runtime/events.ts';
import { sampleBytes, samples, fixedNondeterminism, watBytes, watText } from './helpers.ts';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const service = (name: string) => sampleBytes(samples('service').find((g) => g.name === name)!);
const kv = service('kv');
const kvsock = service('kvsock');

type Script = { count: bigint; msg: NicMessage }[];
const msg = (count: bigint, conn: number, s: string): Script[number] => ({ count, msg: { conn, bytes: enc(s), eof: false } });
const eof = (count: bigint, conn: number): Script[number] => ({ count, msg: { conn, bytes: new Uint8Array(0), eof: true } });

function record(bytes: Uint8Array, script: Script, extra: Partial<RecordOptions> = {}) {
  const chunks: Uint8Array[] = [];
  const sent: NicMessage[] = [];
  const run = recordGuest(bytes, new LogWriter((b) => chunks.push(b)), {
    args: ['guest'],
    meter: { cacheDir: null },
    live: fixedNondeterminism(),
    interrupts: new ScriptedMessages(script),
    onSend: (m) => sent.push(m),
    ...extra,
  });
  return { run, sent, entries: readLog(Buffer.concat(chunks)) };
}

/** Responses per connection, as text. */
function replies(sent: NicMessage[]): Record<number, string> {
  const out: Record<number, string> = {};
  for (const m of sent) out[m.conn] = (out[m.conn] ?? '') + (m.eof ? '<eof>' : dec(m.bytes) + '|');
  return out;
}

describe('kv (reactor on the virtual NIC)', () => {
  it('answers each request message with one response on its connection', () => {
    const r = record(kv, [
      msg(0n, 7, 'a SET x hello world'),
      msg(0n, 8, 'b GET x'),
      msg(0n, 8, 'c GET nope'),
      msg(0n, 7, 'd DEL x'),
      msg(0n, 7, 'e GET x'),
      msg(0n, 9, 'f FROB x'),
      msg(0n, 9, 'g INFO'),
    ]);
    expect(r.run.outcome).toBe('idle');
    const rep = replies(r.sent);
    expect(rep[7]).toBe('a OK 1|d OK 2|e NOTFOUND|');
    expect(rep[8]).toBe('b VALUE hello world|c NOTFOUND|');
    expect(rep[9]).toMatch(/^f ERR unknown operation\|g INFO 0 2 \d+\|$/);
    // every message was delivered to the idle reactor and logged with its bytes
    const arrivals = r.entries.filter((e) => e.kind === 'interrupt');
    expect(arrivals.map((e) => e.kind === 'interrupt' && [e.payload.at, e.payload.conn, dec(e.payload.bytes)])).toEqual([
      ['idle', 7, 'a SET x hello world'],
      ['idle', 8, 'b GET x'],
      ['idle', 8, 'c GET nope'],
      ['idle', 7, 'd DEL x'],
      ['idle', 7, 'e GET x'],
      ['idle', 9, 'f FROB x'],
      ['idle', 9, 'g INFO'],
    ]);
    const sends = r.entries.filter((e) => e.kind === 'send');
    expect(sends.length).toBe(r.sent.length);
  });

  it('replays to the same responses, count and digest', () => {
    const r = record(kv, [msg(0n, 1, '1 SET k v1'), msg(0n, 2, '2 SET k v2'), msg(0n, 1, '3 GET k')]);
    const again: NicMessage[] = [];
    const p = replayGuest(kv, r.entries, { cacheDir: null, onSend: (m) => again.push(m) });
    expect(p.outcome).toBe('idle');
    expect(p.count).toBe(r.run.count);
    expect(p.digest).toBe(r.run.digest);
    expect(replies(again)).toEqual(replies(r.sent));
  });

  it("replays when a digest falls on the handler's first check point, at the count the message was delivered", () => {
    // A digest at every check point puts one at the handler's entry, at the very count of its idle delivery:
    // the replay must stop there too, before the handler runs on.
    const { run, entries } = record(kv, [msg(0n, 1, '1 SET a b'), msg(0n, 1, '2 GET a')], { digestEvery: 1n, digestBudget: Number.POSITIVE_INFINITY });
    const i = entries.findIndex((e) => e.kind === 'interrupt');
    expect(entries[i + 1]).toMatchObject({ kind: 'digest', count: entries[i]!.count });
    expect(replayGuest(kv, entries, { cacheDir: null }).digest).toBe(run.digest);
  });

  it('a changed message in the log is a divergence', () => {
    const r = record(kv, [msg(0n, 1, '1 SET k v1'), msg(0n, 1, '2 GET k')]);
    const copy = r.entries.map((e) => ({ ...e })) as LogEntry[];
    const i = copy.findIndex((e) => e.kind === 'interrupt');
    const e = copy[i] as Extract<LogEntry, { kind: 'interrupt' }>;
    copy[i] = { ...e, payload: { ...e.payload, bytes: enc('1 SET k v9') } };
    expect(() => replayGuest(kv, copy, { cacheDir: null })).toThrow(DivergenceError);
  });
});

describe('kvsock (WASI sockets on the virtual network)', () => {
  it('serves newline-terminated requests on accepted stream sockets, across message boundaries', () => {
    const r = record(kvsock, [
      msg(0n, 3, 'a SET color bl'),
      msg(0n, 4, 'x GET color\n'),
      msg(0n, 3, 'ue\nb GET color\nc DEL color\n'),
      msg(0n, 4, 'y GET color\n'),
      eof(0n, 3),
      msg(0n, 3, 'z GET color\n'), // after the peer closed: dropped
    ]);
    expect(r.run.outcome).toBe('idle'); // blocked in poll() with nothing left to come
    const rep = replies(r.sent);
    expect(rep[3]).toBe('a OK 1\n|b VALUE blue\n|c OK 2\n|<eof>');
    expect(rep[4]).toBe('x NOTFOUND\n|y NOTFOUND\n|');
    // the guest blocked in poll_oneoff and accept/recv: every message came while it waited
    expect(new Set(r.entries.filter((e) => e.kind === 'interrupt').map((e) => e.kind === 'interrupt' && e.payload.at))).toEqual(new Set(['wait']));
    const p = replayGuest(kvsock, r.entries, { cacheDir: null });
    expect(p.digest).toBe(r.run.digest);
    expect(p.count).toBe(r.run.count);
  });
});

describe('messages at check points (nicpoll)', () => {
  const nicpoll = watBytes('nicpoll');
  const arrival = fc.record({
    count: fc.bigInt({ min: 0n, max: 14_000_000n }),
    conn: fc.integer({ min: 0, max: 0xffff_ffff }),
    size: fc.integer({ min: 1, max: MAX_MESSAGE_BYTES }),
    fill: fc.integer({ min: 0, max: 255 }),
  });
  const scriptOf = (list: { count: bigint; conn: number; size: number; fill: number }[]): Script =>
    [...list]
      .sort((a, b) => (a.count < b.count ? -1 : a.count > b.count ? 1 : 0))
      .map((a, i) => ({ count: a.count, msg: { conn: a.conn, bytes: new Uint8Array(a.size).fill((a.fill + i) & 255), eof: false } }));

  it('replay delivers every message at its recorded count and ends in the same state (property, seeded)', () => {
    fc.assert(
      fc.property(fc.array(arrival, { maxLength: 10 }), (list) => {
        const script = scriptOf(list);
        const r = record(nicpoll, script);
        expect(r.run.outcome).toBe('exit');
        const got = r.entries.filter((e) => e.kind === 'interrupt') as Extract<LogEntry, { kind: 'interrupt' }>[];
        expect(got.length).toBe(script.length);
        got.forEach((e, i) => {
          // at a check point, no earlier than scheduled, with the message intact
          expect(e.payload).toMatchObject({ kind: INTERRUPT_NIC, at: 'check', conn: script[i]!.msg.conn });
          expect(Buffer.compare(e.payload.bytes, script[i]!.msg.bytes)).toBe(0);
          expect(e.count >= script[i]!.count).toBe(true);
        });
        // one answer per message, each with the message's size, in arrival order
        expect(r.sent.map((m) => [m.conn, new DataView(m.bytes.buffer, m.bytes.byteOffset).getUint32(0, true)])).toEqual(
          script.map((s) => [s.msg.conn, s.msg.bytes.length]),
        );
        const p = replayGuest(nicpoll, r.entries, { cacheDir: null });
        expect([p.count, p.exitCode, p.digest]).toEqual([r.run.count, r.run.exitCode, r.run.digest]);
      }),
      { seed: 11, numRuns: 12 },
    );
  });

  it('a message moved by one count in the log is a divergence', () => {
    const r = record(nicpoll, scriptOf([{ count: 3_000_000n, conn: 5, size: 100, fill: 1 }]));
    for (const delta of [-1n, 1n]) {
      const moved = r.entries.map((e) => (e.kind === 'interrupt' ? { ...e, count: e.count + delta } : e)) as LogEntry[];
      expect(() => replayGuest(nicpoll, moved, { cacheDir: null })).toThrow(DivergenceError);
    }
    expect(replayGuest(nicpoll, r.entries, { cacheDir: null }).digest).toBe(r.run.digest);
  });
});

describe('the ftvm_io NIC calls', () => {
  // Each call's result lands in memory at 256 + 4*i; conn at 0, buffers at 64.
  const probe = watText(`
(module
  (import "ftvm_io" "nic_recv" (func $recv (param i32 i32 i32) (result i32)))
  (import "ftvm_io" "nic_send" (func $send (param i32 i32 i32) (result i32)))
  (import "ftvm_io" "nic_close" (func $close (param i32) (result i32)))
  (import "ftvm_io" "wait" (func $wait))
  (memory (export "memory") 2)
  (func (export "_start")
    (i32.store (i32.const 256) (call $recv (i32.const 0) (i32.const 64) (i32.const 16)))     ;; nothing queued: -1
    (call $wait)
    (i32.store (i32.const 260) (call $recv (i32.const 0) (i32.const 64) (i32.const 4)))      ;; 10 bytes queued: -2
    (i32.store (i32.const 264) (call $recv (i32.const 131070) (i32.const 64) (i32.const 16))) ;; conn out of bounds: -3
    (i32.store (i32.const 268) (call $recv (i32.const 0) (i32.const 64) (i32.const 16)))     ;; 10
    (i32.store (i32.const 272) (call $recv (i32.const 0) (i32.const 64) (i32.const 16)))     ;; eof: 0
    (i32.store (i32.const 276) (call $send (i32.const 9) (i32.const 64) (i32.const 0)))      ;; empty: -2
    (i32.store (i32.const 280) (call $send (i32.const 9) (i32.const 0) (i32.const 65537)))   ;; too large: -2
    (i32.store (i32.const 284) (call $send (i32.const 9) (i32.const 131066) (i32.const 16))) ;; out of bounds: -3
    (i32.store (i32.const 288) (call $send (i32.const 9) (i32.const 64) (i32.const 3)))      ;; 0
    (i32.store (i32.const 292) (call $close (i32.const 9)))
    (call $wait)))                                                                           ;; nothing more: idle
`);

  it('report empty queues, small buffers, bad pointers and bad sizes, and a guest waiting for nothing ends idle', () => {
    const sent: NicMessage[] = [];
    const r = record(probe, [msg(0n, 12, '0123456789'), eof(0n, 12)]);
    for (const m of r.sent) sent.push(m);
    expect(r.run.outcome).toBe('idle');
    const p = replayGuest(probe, r.entries, {
      cacheDir: null,
      inspect: (mem) => {
        const v = new Int32Array(mem.buffer, 256, 10);
        expect([...v]).toEqual([-1, -2, -3, 10, 0, -2, -2, -3, 0, 0]);
        expect(new DataView(mem.buffer).getUint32(0, true)).toBe(12);
      },
    });
    expect(p.outcome).toBe('idle');
    expect(sent.map((m) => [m.conn, dec(m.bytes), m.eof])).toEqual([
      [9, '012', false],
      [9, '', true],
    ]);
    // both messages came in one wait, before the second recv
    expect(r.entries.filter((e) => e.kind === 'interrupt').map((e) => e.kind === 'interrupt' && e.payload.at)).toEqual(['wait', 'wait']);
  });

  it('a reactor must export its interrupt handler', () => {
    const noHandler = watText('(module (memory (export "memory") 1) (func (export "_initialize")))');
    expect(() => runGuest(noHandler, { meter: { cacheDir: null } })).toThrow(GuestLoadError);
    expect(() => runGuest(noHandler, { meter: { cacheDir: null } })).toThrow(/must export its interrupt handler "ftvm_interrupt"/);
    const neither = watText('(module (memory (export "memory") 1) (func (export "main")))');
    expect(() => runGuest(neither, { meter: { cacheDir: null } })).toThrow(/neither "_start".*nor "_initialize"/);
  });
});
