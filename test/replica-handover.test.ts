// A live replica's part of a planned switch (live migration): told to hand
// over, it flushes its log, gives back the client messages its guest had not
// taken, and pauses; its backup, given that log, goes live in the same state,
// and the messages given back are answered there, each once. Told to resume
// instead, it goes on as before.
import { afterEach, describe, expect, it } from 'vitest';
import { decodeFrame, EntryChecker, type LogEntry } from '../host/log/format.ts';
import { ReplicaHandle } from '../host/cluster/replica-handle.ts';
import type { FromReplica, Output } from '../host/runtime/replay/engine.ts';
import { meterOptions } from '../host/runtime/record.ts';
import { compileGuest } from '../host/runtime/guest.ts';
import { replicaStartOf, sampleBytes, samples } from './helpers.ts';

const kv = sampleBytes(samples('service').find((g) => g.name === 'kv')!);
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const handles: ReplicaHandle[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.terminate()));
});

/** A replica of the kv sample, what it said, its log decoded in order (fed to `to` when given), and its outputs. */
function replica(role: 'primary' | 'backup', to: () => ReplicaHandle | null = () => null) {
  const start = replicaStartOf(kv);
  const h = new ReplicaHandle({ vm: 'v', module: kv, start, role, compiled: compileGuest(kv, meterOptions(start)) });
  handles.push(h);
  const said: FromReplica[] = [];
  // (a backup that went live logs from where it went live)
  let check: EntryChecker | null = null;
  const entries: LogEntry[] = [];
  const outputs: Output[] = [];
  h.on('message', (m) => {
    said.push(m);
    if (m.t !== 'log') return;
    check ??= new EntryChecker(m.first);
    const got = decodeFrame(m.frame, check);
    entries.push(...got);
    outputs.push(...m.outputs);
    to()?.send({ t: 'entries', entries: got });
  });
  const until = async <T extends FromReplica['t']>(t: T, ms = 20_000): Promise<Extract<FromReplica, { t: T }>> => {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
      const m = said.find((x) => x.t === t);
      if (m) return m as Extract<FromReplica, { t: T }>;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`no ${t} within ${ms} ms; got ${said.map((m) => m.t).join(',')}`);
  };
  const answers = async (n: number, ms = 20_000): Promise<string[]> => {
    const t0 = Date.now();
    while (Date.now() - t0 < ms && outputs.length < n) await new Promise((r) => setTimeout(r, 5));
    return outputs.map((o) => dec(o.bytes));
  };
  return { h, said, entries, outputs, until, answers };
}

const request = (h: ReplicaHandle, text: string) => h.send({ t: 'msg', msg: { conn: 1, bytes: enc(text), eof: false } });

describe('a planned switch, on the replicas', () => {
  it('hands over: the log is whole, the messages not taken come back, and the backup answers them from the same state', async () => {
    let backup: ReplicaHandle | null = null;
    const p = replica('primary', () => backup);
    const b = replica('backup');
    backup = b.h;
    for (let i = 0; i < 10; i++) request(p.h, `a${i} SET k${i} v${i}`);
    expect((await p.answers(10)).at(-1)).toBe('a9 OK 10');
    // a burst, with the handover right behind it: the guest takes some, the rest come back
    for (let i = 10; i < 60; i++) request(p.h, `a${i} SET k${i} v${i}`);
    p.h.send({ t: 'handover' });
    const over = await p.until('handed-over');
    // every frame came before it: the log through `seq` is all there is
    expect(over.seq).toBe(p.entries.at(-1)!.seq);
    const back = over.inbox.map((m) => dec(m.msg.bytes));
    const answered = p.outputs.map((o) => dec(o.bytes).split(' ')[0]!);
    expect([...answered, ...back.map((t) => t.split(' ')[0]!)].sort()).toEqual(Array.from({ length: 60 }, (_, i) => `a${i}`).sort());
    expect(p.h.inboxed).toEqual({ messages: 0, bytes: 0 });
    // paused: a message now is not taken (its host holds them; one that reaches it waits in its inbox, unlogged)
    const logged = p.entries.length;
    request(p.h, 'late SET late 1');
    // the backup has the whole log and goes live where it ends
    b.h.send({ t: 'golive' });
    const live = await b.until('live');
    expect(live.seq).toBe(over.seq + 1);
    // the messages given back, answered by the new primary, once each and in order, after the others
    const outsBefore = b.outputs.length;
    for (const m of over.inbox) b.h.send({ t: 'msg', ...m });
    request(b.h, 'g GET k0');
    const bAnswers = await b.answers(outsBefore + back.length + 1);
    const fresh = bAnswers.slice(outsBefore);
    expect(fresh.map((t) => t.split(' ')[0])).toEqual([...back.map((t) => t.split(' ')[0]!), 'g']);
    expect(fresh.at(-1)).toBe('g VALUE v0');
    // every SET applied once across the two: write counts 1..60
    const writes = [...p.outputs.map((o) => dec(o.bytes)), ...fresh.slice(0, -1)].map((t) => Number(t.split(' ')[2]));
    expect(writes.sort((x, y) => x - y)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    // meanwhile the paused primary logged nothing and answered nothing
    expect(p.entries.length).toBe(logged);
    expect(p.outputs.some((o) => dec(o.bytes).startsWith('late '))).toBe(false);
    expect([...p.said, ...b.said].some((m) => m.t === 'error')).toBe(false);
  }, 60_000);

  it('resumes: a switch called off leaves the primary where it was, taking messages again', async () => {
    const p = replica('primary');
    request(p.h, 'a SET k 1');
    expect((await p.answers(1))[0]).toBe('a OK 1');
    p.h.send({ t: 'handover' });
    const over = await p.until('handed-over');
    expect(over.inbox).toEqual([]);
    p.h.send({ t: 'resume' });
    request(p.h, 'b GET k');
    request(p.h, 'c SET k 2');
    expect((await p.answers(3)).slice(1)).toEqual(['b VALUE 1', 'c OK 2']);
    expect(p.said.some((m) => m.t === 'error')).toBe(false);
  }, 60_000);
});
