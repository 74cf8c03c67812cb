// One set of tampered logs through every way a log comes into the replay
// engine: `ftvm replay` (a child process reading the file), replayGuest in this
// process, and a backup replica on a worker thread fed the log's entries as
// if from a primary. This proves that the three reach the same verdict, with
// the same error code, for every kind of damage: the take-compare checks are
// one piece of code (host/runtime/replay/feed.ts), so a fix made once holds
// for every way in. A log cut inside its last frame is not an error but an
// incomplete log: the CLI says FTVM_ERR_LOG_INCOMPLETE, the in-process replay
// reports `incomplete`, the backup replays it all and waits for more.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLogPrefix, type EntryPayloads, type LogEntry } from '../host/log/format.ts';
import { LogWriter } from '../host/log/writer.ts';
import { meterOptions, recordGuest, replayGuest, type RecordOptions } from '../host/runtime/record.ts';
import { ScriptedMessages } from '../host/runtime/events.ts';
import { compileGuest } from '../host/runtime/guest.ts';
import { ReplicaHandle } from '../host/cluster/replica-handle.ts';
import type { FromReplica } from '../host/runtime/replay/engine.ts';
import { sampleBytes, samples } from './helpers.ts';
import { ftvm } from './ftvm-cli.ts';

const sample = (name: string) => sampleBytes([...samples(), ...samples('service')].find((g) => g.name === name)!);
const entropy = sample('entropy');
const kv = sample('kv');
const fib = sample('fib');
const enc = (s: string) => new TextEncoder().encode(s);

/** What a way in concluded: 'ok' (the log replayed to the guest's end), or an FTVM_ERR_* code. */
type Verdict = string;

/** The bytes of a log file holding `entries` (renumbered from 0, as a writer numbers them); `framePerEntry`: each entry a frame of its own. */
function logFile(entries: readonly LogEntry[], framePerEntry = false): Uint8Array {
  const chunks: Uint8Array[] = [];
  const w = new LogWriter((b) => chunks.push(b), framePerEntry ? { flushAfterMs: 0 } : {});
  for (const e of entries) w.append(e.kind, e.count, e.payload as never);
  w.flush();
  return new Uint8Array(Buffer.concat(chunks));
}

function record(bytes: Uint8Array, opts: RecordOptions): LogEntry[] {
  const chunks: Uint8Array[] = [];
  // a digest at every interval, however busy the machine: the tampered digest must be there
  recordGuest(bytes, new LogWriter((b) => chunks.push(b)), { digestBudget: Number.POSITIVE_INFINITY, meter: { cacheDir: null }, ...opts });
  return readLogPrefix(new Uint8Array(Buffer.concat(chunks))).entries;
}

/** `ftvm replay GUEST --log FILE` in a child process. */
async function throughCli(guest: string, file: string): Promise<Verdict> {
  const r = await ftvm(['replay', guest, '--log', file]);
  if (r.code === 0) return 'ok';
  return /^ftvm: (FTVM_ERR_\w+)/m.exec(r.stderr)?.[1] ?? `exit ${r.code}: ${r.stderr}`;
}

/** replayGuest in this process, on what the file holds up to any cut. */
function inProcess(bytes: Uint8Array, file: Uint8Array): Verdict {
  const { entries } = readLogPrefix(file);
  try {
    const r = replayGuest(bytes, entries, { acceptIncomplete: true, cacheDir: null });
    return r.incomplete ? 'FTVM_ERR_LOG_INCOMPLETE' : 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

const handles: ReplicaHandle[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.terminate()));
});

/**
 * A backup replica fed the file's entries (as a host feeds a primary's
 * frames): 'ok' when it replays to the guest's end, its error's code, or
 * FTVM_ERR_LOG_INCOMPLETE when it replayed every entry and waits for more.
 */
function throughBackup(bytes: Uint8Array, file: Uint8Array): Promise<Verdict> {
  const { entries } = readLogPrefix(file);
  const start = entries[0]!.payload as EntryPayloads['start'];
  const h = new ReplicaHandle({ vm: 'tampered', module: bytes, compiled: compileGuest(bytes, { ...meterOptions(start), cacheDir: null }), start, role: 'backup' });
  handles.push(h);
  const last = entries.at(-1)!.seq;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the backup gave no verdict within 60 s')), 60_000);
    const done = (v: Verdict): void => {
      clearTimeout(t);
      resolve(v);
    };
    h.on('message', (m: FromReplica) => {
      if (m.t === 'ended') done('ok');
      else if (m.t === 'error') done(m.code);
      // it took every entry and blocks for the next one
      else if (m.t === 'progress' && m.seq === last) done('FTVM_ERR_LOG_INCOMPLETE');
    });
    h.send({ t: 'entries', entries });
  });
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ftvm-tampered-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The index of the first entry that `test` accepts (the test fails when there is none). */
function indexOf(entries: readonly LogEntry[], test: (e: LogEntry) => boolean): number {
  const i = entries.findIndex(test);
  expect(i, 'the recording has the entry to tamper with').toBeGreaterThan(0);
  return i;
}

interface Case {
  name: string;
  /** the guest the log is replayed with: a sample's name */
  guest: string;
  /** the log file */
  file: () => Uint8Array;
  expected: Verdict;
}

describe('tampered logs: the same verdict through ftvm replay, replayGuest and a backup replica', () => {
  // A command guest that reads every input (stdin, clocks, random) and prints a mix of them.
  const computed = record(entropy, { args: ['entropy', '20'], stdin: enc('tampered logs'), digestEvery: 20_000n });
  // A reactor serving NIC messages: interrupts and sends.
  const served = record(kv, {
    args: ['kv'],
    interrupts: new ScriptedMessages([
      { count: 0n, msg: { conn: 7, bytes: enc('a SET x 1'), eof: false } },
      { count: 0n, msg: { conn: 8, bytes: enc('b SET x 2'), eof: false } },
      { count: 0n, msg: { conn: 7, bytes: enc('c GET x'), eof: false } },
    ]),
  });
  const edit = (entries: readonly LogEntry[], i: number, payload: unknown): LogEntry[] => entries.map((e, j) => (j === i ? ({ ...e, payload } as LogEntry) : e));

  const cases: Case[] = [
    { name: 'untouched (a command guest)', guest: 'entropy', file: () => logFile(computed), expected: 'ok' },
    { name: 'untouched (a reactor)', guest: 'kv', file: () => logFile(served), expected: 'ok' },
    {
      name: 'a changed clock value',
      guest: 'entropy',
      file: () => {
        const i = indexOf(computed, (e) => e.kind === 'clock');
        const p = computed[i]!.payload as EntryPayloads['clock'];
        return logFile(edit(computed, i, { ...p, ns: p.ns + 12_345n }));
      },
      expected: 'FTVM_ERR_DIVERGENCE',
    },
    {
      name: 'a dropped entry',
      guest: 'entropy',
      file: () => {
        const i = indexOf(computed, (e) => e.kind === 'random');
        return logFile(computed.filter((_, j) => j !== i));
      },
      expected: 'FTVM_ERR_DIVERGENCE',
    },
    {
      name: 'a reordered interrupt',
      guest: 'kv',
      file: () => {
        const i = indexOf(served, (e) => e.kind === 'interrupt');
        const j = indexOf(served, (e) => e.kind === 'interrupt' && e.seq > served[i]!.seq);
        const swapped = edit(edit(served, i, served[j]!.payload), j, served[i]!.payload);
        return logFile(swapped);
      },
      expected: 'FTVM_ERR_DIVERGENCE',
    },
    {
      name: 'a changed digest',
      guest: 'entropy',
      file: () => {
        const i = indexOf(computed, (e) => e.kind === 'digest');
        const d = (computed[i]!.payload as Uint8Array).slice();
        d[0] ^= 0xff;
        return logFile(edit(computed, i, d));
      },
      expected: 'FTVM_ERR_DIVERGENCE',
    },
    {
      name: 'a frame cut off while the guest ran (a recording that was killed)',
      guest: 'entropy',
      file: () => {
        // a frame per entry: the cut falls in the middle of the run
        const f = logFile(computed, true);
        return f.subarray(0, Math.floor(f.length / 2));
      },
      expected: 'FTVM_ERR_LOG_INCOMPLETE',
    },
    {
      name: 'a frame cut off before the guest started',
      guest: 'entropy',
      file: () => {
        // the start entry is a frame of its own; the rest is one frame, cut
        const f = logFile(computed);
        return f.subarray(0, f.length - 5);
      },
      expected: 'FTVM_ERR_LOG_INCOMPLETE',
    },
    { name: 'a foreign module', guest: 'fib', file: () => logFile(computed), expected: 'FTVM_ERR_DIVERGENCE' },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const file = c.file();
    const path = join(dir, `${c.name.replace(/\W+/g, '-')}.ftvmlog`);
    writeFileSync(path, file);
    const bytes = sample(c.guest);
    const verdicts = {
      cli: await throughCli(c.guest, path),
      replayGuest: inProcess(bytes, file),
      backup: await throughBackup(bytes, file),
    };
    expect(verdicts).toEqual({ cli: c.expected, replayGuest: c.expected, backup: c.expected });
  }, 120_000);

  it('the guests are what the cases say', () => {
    expect(fib.length).toBeGreaterThan(0);
    expect(computed.some((e) => e.kind === 'clock') && computed.some((e) => e.kind === 'random')).toBe(true);
    expect(served.filter((e) => e.kind === 'interrupt').length).toBeGreaterThanOrEqual(2);
  });
});
