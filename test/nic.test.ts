// The virtual NIC and the network guests: messages arrive as interrupts at
// exact counts, the key-value samples answer them (raw NIC and WASI sockets),
// and a replay delivers every message at the recorded count and place.
import { describe, expect, it } from 'vitest';
import { LogWriter } from '../host/log/writer.ts';
import { readLog, type LogEntry } from '../host/log/format.ts';
import { DivergenceError, recordGuest, replayGuest } from '../host/runtime/record.ts';
import { ScriptedMessages } from '../host/runtime/events.ts';
import { runGuest, GuestLoadError } from '../host/runtime/guest.ts';
import type { NicMessage } from '../host/runtime/nic.ts';
import { sampleBytes, samples, fixedNondeterminism } from './helpers.ts';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const service = (name: string) => sampleBytes(samples('service').find((g) => g.name === name)!);
const kv = service('kv');
const kvsock = service('kvsock');

type Script = { count: bigint; msg: NicMessage }[];
const msg = (count: bigint, conn: number, s: string): Script[number] => ({ count, msg: { conn, bytes: enc(s), eof: false } });
const eof = (count: bigint, conn: number): Script[number] => ({ count, msg: { conn, bytes: new Uint8Array(0), eof: true } });

function record(bytes: Uint8Array, script: Script) {
  const chunks: Uint8Array[] = [];
  const sent: NicMessage[] = [];
  const run = recordGuest(bytes, new LogWriter((b) => chunks.push(b)), {
    args: ['guest'],
    meter: { cacheDir: null },
    live: fixedNondeterminism(),
    interrupts: new ScriptedMessages(script),
    onSend: (m) => sent.push(m),
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

  it('a changed message in the log is a divergence', () => {
    const r = record(kv, [msg(0n, 1, '1 SET k v1'), msg(0n, 1, '2 GET k')]);
    const copy = r.entries.map((e) => ({ ...e })) as LogEntry[];
    const i = copy.findIndex((e) => e.kind === 'interrupt');
    const e = copy[i] as Extract<LogEntry, { kind: 'interrupt' }>;
    copy[i] = { ...e, payload: { ...e.payload, bytes: enc('1 SET k v9') } };
    expect(() => replayGuest(kv, copy, { cacheDir: null })).toThrow(DivergenceError);
  });

  it('a reactor without an interrupt handler is refused', () => {
    const wat = new TextEncoder().encode('');
    expect(wat.length).toBe(0);
  });
});
