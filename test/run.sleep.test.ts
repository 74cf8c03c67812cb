// Sleeping: a guest that sleeps 200 ms the way wasi-libc's nanosleep does
// (poll_oneoff on a relative monotonic clock) used to wake at once with its
// clock showing 0 ms passed. Under `ftvm run` and `ftvm record` the wait is
// real (the guest's own clock, and the logged readings, show >= 200 ms); the
// replay does not sleep and gives the same output, count and digest; a NIC
// message arriving while the guest sleeps wakes a poll that also watches the
// listening socket, and the replay delivers it at the same place.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { readLog, type LogEntry } from '../host/log/format.ts';
import { ftvm, scratch } from './ftvm-cli.ts';
import { watBytes } from './helpers.ts';

const tmp = scratch();
afterAll(() => tmp.done());
const sleep = `${tmp.dir}/sleep.wasm`;
writeFileSync(sleep, watBytes('sleep'));
const sleepOrMessage = `${tmp.dir}/sleep_or_message.wasm`;
writeFileSync(sleepOrMessage, watBytes('sleep_or_message'));
const MONOTONIC = 1;
const line = (s: string, k: string) => new RegExp(`^${k} (\\S+)$`, 'm').exec(s)?.[1];
const clocks = (entries: LogEntry[]) =>
  entries.filter((e): e is Extract<LogEntry, { kind: 'clock' }> => e.kind === 'clock' && e.payload.clock === MONOTONIC).map((e) => e.payload.ns);

describe('a 200 ms sleep', () => {
  it('ftvm run really sleeps: the guest sees 200 ms pass on its monotonic clock', async () => {
    const r = await ftvm(['run', sleep]);
    // exit 0: the guest's own check that its clock moved >= 200 ms (1: less)
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('slept\n');
    expect(r.ms).toBeGreaterThanOrEqual(200);
  }, 120_000);

  it('ftvm record sleeps and logs clock readings 200 ms apart; ftvm replay gives the same output, count and digest', async () => {
    const log = `${tmp.dir}/sleep.log`;
    const rec = await ftvm(['record', sleep, '--log', log]);
    expect(rec.code).toBe(0);
    expect(rec.stdout).toBe('slept\n');
    const entries = readLog(readFileSync(log));
    const ns = clocks(entries);
    // the guest's first and last readings (the host's own reading for the wait lies between)
    expect(ns.length).toBeGreaterThanOrEqual(2);
    expect(ns.at(-1)! - ns[0]!).toBeGreaterThanOrEqual(200_000_000n);
    // nothing interrupted the sleep
    expect(entries.some((e) => e.kind === 'interrupt')).toBe(false);
    const rep = await ftvm(['replay', sleep, '--log', log]);
    expect(rep.code).toBe(0);
    expect(rep.stdout).toBe('slept\n');
    expect(line(rep.stderr, 'count')).toBe(line(rec.stderr, 'count'));
    expect(line(rep.stderr, 'digest')).toBe(line(rec.stderr, 'digest'));
    expect(rep.stderr).toMatch(/^exit 0$/m);
  }, 120_000);
});

describe('a message during a long sleep', () => {
  it('wakes a poll that also watches the listening socket (record --messages), and the replay delivers it at the same place', async () => {
    const messages = `${tmp.dir}/m.jsonl`;
    writeFileSync(messages, `${JSON.stringify({ conn: 1, data: 'wake up' })}\n`);
    const log = `${tmp.dir}/wake.log`;
    const rec = await ftvm(['record', sleepOrMessage, '--log', log, '--messages', messages]);
    // exit 0: the socket's event came first and less than the 60 s passed (1: the clock fired; 4: 60 s passed)
    expect(rec.code).toBe(0);
    const entries = readLog(readFileSync(log));
    const start = entries[0]!;
    expect(start.kind === 'start' && [start.payload.preopens, start.payload.listen]).toEqual([[], true]);
    const wake = entries.find((e): e is Extract<LogEntry, { kind: 'interrupt' }> => e.kind === 'interrupt');
    expect(wake?.payload).toMatchObject({ kind: 2, at: 'wait', conn: 1 });
    const ns = clocks(entries);
    expect(ns.at(-1)! - ns[0]!).toBeLessThan(60_000_000_000n);
    const rep = await ftvm(['replay', sleepOrMessage, '--log', log]);
    expect(rep.code).toBe(0);
    expect(rep.stderr).toMatch(/^exit 0$/m);
    expect(line(rep.stderr, 'digest')).toBe(line(rec.stderr, 'digest'));
  }, 120_000);
});
