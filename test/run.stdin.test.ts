// stdin as `ftvm run` and `ftvm record` give it: the process's stdin, when it
// is a pipe or a file, is streamed to the guest as it reads it (before, a
// guest run as `ftvm run shell.wasm < script.sql` read nothing); a recording
// logs each read as an `input` entry at the count of the read (an empty one
// at end of file) and marks the log's start entry 'stream'; the replay needs
// no stdin, and a moved or altered input entry stops it with
// FTVM_ERR_DIVERGENCE. `--stdin FILE` still gives the file whole.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeFrame, encodeHeader, readLog, type LogEntry } from '../host/log/format.ts';
import { LogWriter } from '../host/log/writer.ts';
import { DivergenceError, recordGuest, replayGuest } from '../host/runtime/record.ts';
import { ftvm, scratch } from './ftvm-cli.ts';
import { watBytes } from './helpers.ts';

const tmp = scratch();
afterAll(() => tmp.done());
const echo = watBytes('stdin_echo');
const guest = `${tmp.dir}/stdin_echo.wasm`;
writeFileSync(guest, echo);
const INPUT = 'SELECT 1;\nSELECT name FROM t WHERE id = 42;\n'.repeat(20);

/** A stdin source that hands out `text` in reads of the size asked, then end of file. */
function streamOf(text: string): (max: number) => Uint8Array {
  const bytes = Buffer.from(text);
  let at = 0;
  return (max) => {
    const out = new Uint8Array(bytes.subarray(at, at + max));
    at += out.length;
    return out;
  };
}

function recordStream(text: string) {
  const chunks: Uint8Array[] = [];
  const out: Uint8Array[] = [];
  const run = recordGuest(echo, new LogWriter((b) => chunks.push(b)), {
    args: ['echo'],
    stdinRead: streamOf(text),
    preopens: [],
    listen: false,
    onStdout: (b) => out.push(b),
    meter: { cacheDir: null },
  });
  return { run, entries: readLog(Buffer.concat(chunks)), stdout: Buffer.concat(out).toString() };
}

describe('streamed stdin, in process', () => {
  it('each read is an input entry at its count, the last empty; the replay returns them and needs nothing else', () => {
    const r = recordStream(INPUT);
    expect(r.stdout).toBe(INPUT);
    const start = r.entries[0]!;
    expect(start.kind === 'start' && start.payload.stdin).toBe('stream');
    const inputs = r.entries.filter((e): e is Extract<LogEntry, { kind: 'input' }> => e.kind === 'input');
    // reads of at most 5 bytes, then one empty read at end of file
    expect(inputs.length).toBe(Math.ceil(INPUT.length / 5) + 1);
    expect(inputs.every((e) => e.payload.fd === 0 && e.payload.bytes.length <= 5 && e.count > 0n)).toBe(true);
    expect(inputs.at(-1)!.payload.bytes.length).toBe(0);
    expect(Buffer.concat(inputs.map((e) => e.payload.bytes)).toString()).toBe(INPUT);
    for (let i = 1; i < inputs.length; i++) expect(inputs[i]!.count).toBeGreaterThan(inputs[i - 1]!.count);
    const out: Uint8Array[] = [];
    const replay = replayGuest(echo, r.entries, { onStdout: (b) => out.push(b), cacheDir: null });
    expect(Buffer.concat(out).toString()).toBe(INPUT);
    expect(replay).toMatchObject({ outcome: 'exit', exitCode: 0, count: r.run.count, digest: r.run.digest });
  });

  it('an input entry moved to another count, or with other bytes, is a divergence', () => {
    const r = recordStream(INPUT);
    const edit = (f: (e: LogEntry[]) => void): LogEntry[] => {
      const copy = r.entries.map((e) => ({ ...e }) as LogEntry);
      f(copy);
      return readLog(Buffer.concat([encodeHeader(), encodeFrame(copy)]));
    };
    const third = r.entries.findIndex((e, i) => e.kind === 'input' && r.entries.slice(0, i).filter((x) => x.kind === 'input').length === 2);
    const moved = edit((c) => {
      // one count later: still in order (the next entry is further on), but not where the read is
      c[third] = { ...c[third]!, count: c[third]!.count + 1n } as LogEntry;
    });
    expect(() => replayGuest(echo, moved, { cacheDir: null })).toThrow(DivergenceError);
    expect(() => replayGuest(echo, moved, { cacheDir: null })).toThrow(/input at count/);
    const altered = edit((c) => {
      const e = c[third] as Extract<LogEntry, { kind: 'input' }>;
      c[third] = { ...e, payload: { fd: 0, bytes: new Uint8Array(Buffer.from('XXXXX')) } };
    });
    expect(() => replayGuest(echo, altered, { cacheDir: null })).toThrow(/diverged.*output/);
    const longer = edit((c) => {
      const e = c[third] as Extract<LogEntry, { kind: 'input' }>;
      c[third] = { ...e, payload: { fd: 0, bytes: new Uint8Array(6) } };
    });
    expect(() => replayGuest(echo, longer, { cacheDir: null })).toThrow(/a read of 6 bytes/);
  });
});

describe('streamed stdin, through the command line', () => {
  it('ftvm run reads a pipe and a file given as stdin; --stdin FILE still works', async () => {
    const piped = await ftvm(['run', guest], INPUT);
    expect(piped.code).toBe(0);
    expect(piped.stdout).toBe(INPUT);
    const file = `${tmp.dir}/script.sql`;
    writeFileSync(file, INPUT);
    const redirected = await ftvm(['run', guest], { file });
    expect(redirected.code).toBe(0);
    expect(redirected.stdout).toBe(INPUT);
    const whole = await ftvm(['run', guest, '--stdin', file], 'not this');
    expect(whole.stdout).toBe(INPUT);
  }, 180_000);

  it('ftvm record logs the reads; ftvm replay gives the same output, count and digest without stdin; a moved input diverges', async () => {
    const log = `${tmp.dir}/echo.log`;
    const rec = await ftvm(['record', guest, '--log', log], INPUT);
    expect(rec.code).toBe(0);
    expect(rec.stdout).toBe(INPUT);
    const entries = readLog(readFileSync(log));
    expect(entries[0]!.kind === 'start' && entries[0]!.payload.stdin).toBe('stream');
    expect(entries.filter((e) => e.kind === 'input').length).toBeGreaterThan(10);
    const rep = await ftvm(['replay', guest, '--log', log], 'ignored');
    expect(rep.code).toBe(0);
    expect(rep.stdout).toBe(INPUT);
    const line = (s: string, k: string) => new RegExp(`^${k} (\\S+)$`, 'm').exec(s)?.[1];
    expect(line(rep.stderr, 'count')).toBe(line(rec.stderr, 'count'));
    expect(line(rep.stderr, 'digest')).toBe(line(rec.stderr, 'digest'));
    const i = entries.findIndex((e) => e.kind === 'input');
    const moved = entries.map((e, j) => (j === i ? ({ ...e, count: e.count + 1n } as LogEntry) : e));
    writeFileSync(log, Buffer.concat([encodeHeader(), encodeFrame(moved)]));
    const bad = await ftvm(['replay', guest, '--log', log]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/FTVM_ERR_DIVERGENCE/);
  }, 180_000);
});
