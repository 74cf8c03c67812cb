// Record and replay: a replay reproduces the recorded run exactly (outputs,
// final count, final digest), takes every nondeterministic value from the log,
// and stops loudly, naming the entry, when the log and the guest disagree.
import { describe, expect, it } from 'vitest';
import { LogWriter } from '../host/log/writer.ts';
import { encodeFrame, encodeHeader, readLog, type LogEntry } from '../host/log/format.ts';
import { DivergenceError, recordGuest, replayGuest, type RecordOptions } from '../host/runtime/record.ts';
import type { Nondeterminism } from '../host/runtime/wasi.ts';
import { sampleBytes, samples } from './helpers.ts';

function record(bytes: Uint8Array, opts: RecordOptions) {
  const chunks: Uint8Array[] = [];
  const out: Uint8Array[] = [];
  const log = new LogWriter((b) => chunks.push(b));
  // digestBudget Infinity: a digest at every interval, whatever it costs and however busy the machine (the tests count them)
  const run = recordGuest(bytes, log, { digestBudget: Number.POSITIVE_INFINITY, ...opts, onStdout: (b) => out.push(b), meter: { cacheDir: null } });
  return { run, entries: readLog(Buffer.concat(chunks)), stdout: Buffer.concat(out).toString() };
}

/** Rewrites a log with `edit` applied to its entries (checksums recomputed: the damage is in the meaning). */
function edited(entries: LogEntry[], edit: (e: LogEntry[]) => void): LogEntry[] {
  const copy = entries.map((e) => ({ ...e }) as LogEntry);
  edit(copy);
  return readLog(Buffer.concat([encodeHeader(), encodeFrame(copy)]));
}

const entropy = samples().find((g) => g.name === 'entropy');

describe('record then replay', () => {
  it.each(samples().map((g) => [g.name, g] as const))('%s: same output, final count and final digest', (_n, g) => {
    const bytes = sampleBytes(g);
    const every = 5_000n;
    const { run, entries, stdout } = record(bytes, { args: [g.name, ...g.args_test], digestEvery: every });
    const out: Uint8Array[] = [];
    const replay = replayGuest(bytes, entries, { onStdout: (b) => out.push(b), cacheDir: null });
    expect(Buffer.concat(out).toString()).toBe(stdout);
    expect(replay).toMatchObject({ outcome: run.outcome, exitCode: run.exitCode, count: run.count, trap: run.trap, digest: run.digest });
    expect(replay.entriesReplayed).toBe(entries.length);
    // at most one digest per interval (a stretch without check points can cross several), and the final one
    const digests = entries.filter((e) => e.kind === 'digest').length;
    expect(digests).toBeGreaterThan(1);
    expect(digests).toBeLessThanOrEqual(Number(run.count! / every) + 1);
  }, 60_000);

  it.each(['entropy', 'asclock'])('%s (reads clocks and random in a loop; C and AssemblyScript) replays bit for bit', (name) => {
    const g = samples().find((s) => s.name === name)!;
    const bytes = sampleBytes(g);
    const stdin = new TextEncoder().encode('the quick brown fox\n');
    const a = record(bytes, { args: [name, '50'], stdin });
    const b = record(bytes, { args: [name, '50'], stdin });
    // Live runs differ (that is the point of the program) ...
    expect(a.stdout).not.toBe(b.stdout);
    expect(a.entries.filter((e) => e.kind === 'clock').length).toBeGreaterThanOrEqual(100);
    expect(a.entries.filter((e) => e.kind === 'random').length).toBeGreaterThanOrEqual(1);
    // ... and each replays exactly.
    for (const r of [a, b]) {
      const out: Uint8Array[] = [];
      const replay = replayGuest(bytes, r.entries, { onStdout: (x) => out.push(x), cacheDir: null });
      expect(Buffer.concat(out).toString()).toBe(r.stdout);
      expect(replay.digest).toBe(r.run.digest);
    }
  });

  it('replay takes clocks and randomness only from the log', () => {
    const g = entropy ?? samples()[0]!;
    const bytes = sampleBytes(g);
    let liveCalls = 0;
    const counting: Nondeterminism = {
      clockNs: () => BigInt(++liveCalls),
      clockResolutionNs: () => 1n,
      randomFill: (d) => {
        liveCalls++;
        d.fill(7);
      },
    };
    const r = record(bytes, { args: [g.name, ...g.args_test], live: counting });
    const before = liveCalls;
    replayGuest(bytes, r.entries, { cacheDir: null });
    expect(liveCalls).toBe(before);
  });

  it('--until stops at a check point and matches the digest the recording logged there', () => {
    const g = samples().find((s) => s.name === 'interp')!;
    const bytes = sampleBytes(g);
    const { run, entries } = record(bytes, { args: [g.name, ...g.args_test], digestEvery: 100_000n });
    // the digests before the end (the last one is the final digest, at the exit)
    const digests = entries.filter((e) => e.kind === 'digest' && e.count < run.count!);
    expect(digests.length).toBeGreaterThan(1);
    const target = digests[Math.floor(digests.length / 2)]!;
    const stop = replayGuest(bytes, entries, { until: target.count, cacheDir: null });
    expect(stop.stoppedAtUntil).toBe(true);
    expect(stop.count).toBe(target.count);
    expect(stop.digest).toBe(Buffer.from(target.payload as Uint8Array).toString('hex'));
    expect(stop.count! < run.count!).toBe(true);
  });
});

describe('divergence is detected, never replayed through', () => {
  const g = samples().find((s) => s.name === 'hash')!;
  const bytes = sampleBytes(g);
  const recorded = record(bytes, { args: [g.name, ...g.args_test], digestEvery: 20_000n });

  it('a digest entry moved by one count', () => {
    const log = edited(recorded.entries, (es) => {
      const i = es.findIndex((e) => e.kind === 'digest');
      es[i] = { ...es[i]!, count: es[i]!.count + 1n } as LogEntry;
    });
    expect(() => replayGuest(bytes, log, { cacheDir: null })).toThrow(DivergenceError);
    try {
      replayGuest(bytes, log, { cacheDir: null });
    } catch (e) {
      expect((e as DivergenceError).entry?.kind).toBe('digest');
      expect((e as Error).message).toMatch(/entry \d+ \(digest at count \d+\)/);
    }
  });

  it('a changed output byte, a changed digest, a missing tail', () => {
    const outputChanged = edited(recorded.entries, (es) => {
      const o = es.find((e) => e.kind === 'output')! as Extract<LogEntry, { kind: 'output' }>;
      o.payload = { fd: 1, bytes: new TextEncoder().encode('something else\n') };
    });
    expect(() => replayGuest(bytes, outputChanged, { cacheDir: null })).toThrow(/diverged.*output/);
    const digestChanged = edited(recorded.entries, (es) => {
      const d = es.find((e) => e.kind === 'digest')! as Extract<LogEntry, { kind: 'digest' }>;
      d.payload = new Uint8Array(32);
    });
    expect(() => replayGuest(bytes, digestChanged, { cacheDir: null })).toThrow(/expected digest 0000/);
    expect(() => replayGuest(bytes, recorded.entries.slice(0, -3), { cacheDir: null })).toThrow(/no more entries/);
  });

  it('a different stdin, or another guest', () => {
    const stdinChanged = edited(recorded.entries, (es) => {
      (es.find((e) => e.kind === 'input') as Extract<LogEntry, { kind: 'input' }>).payload = { fd: 0, bytes: new Uint8Array([1]) };
    });
    // hash does not read stdin, but stdin is part of the device state in every digest.
    expect(() => replayGuest(bytes, stdinChanged, { cacheDir: null })).toThrow(DivergenceError);
    const other = sampleBytes(samples().find((s) => s.name === 'fib')!);
    expect(() => replayGuest(other, recorded.entries, { cacheDir: null })).toThrow(/not the guest this log was recorded with/);
  });
});

it('the stdout bytes of a recording are the guest output', () => {
  const g = samples().find((s) => s.name === 'fib')!;
  const { stdout } = record(sampleBytes(g), { args: ['fib', '20'] });
  expect(stdout).toBe('fib(20) = 6765\n');
});

it('a recording made in a worker thread replays identically on the main thread', async () => {
  const { recordGuestInWorker } = await import('../host/runtime/worker.ts');
  const g = entropy ?? samples().find((s) => s.name === 'interp')!;
  const bytes = sampleBytes(g);
  const { result, log } = await recordGuestInWorker(bytes, { args: [g.name, ...g.args_test], stdin: new Uint8Array([1, 2, 3]) });
  const out: Uint8Array[] = [];
  const replay = replayGuest(bytes, readLog(log), { onStdout: (b) => out.push(b), cacheDir: null });
  expect(Buffer.concat(out)).toEqual(Buffer.from(result.stdout));
  expect(replay).toMatchObject({ count: result.count, digest: result.digest, outcome: result.outcome });
}, 180_000);

it('large stdin and large writes span several entries and replay exactly, at every size around a chunk', async () => {
  const { CHUNK_BYTES } = await import('../host/runtime/record.ts');
  const g = samples().find((s) => s.name === 'entropy')!;
  const bytes = sampleBytes(g);
  for (const size of [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES]) {
    const stdin = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
    const r = record(bytes, { args: ['entropy', '3'], stdin });
    expect(r.entries.filter((e) => e.kind === 'input').length).toBe(Math.floor(size / CHUNK_BYTES) + 1);
    const replay = replayGuest(bytes, r.entries, { cacheDir: null });
    expect(replay.digest).toBe(r.run.digest);
  }
});

it('one large write spans several output entries and replays exactly', async () => {
  const { CHUNK_BYTES } = await import('../host/runtime/record.ts');
  const { watText } = await import('./helpers.ts');
  // fd_write(1, iovs=[{buf: 16, len: 600000}], 1, nwritten=8) from 10 pages of memory
  const bytes = watText(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 10)
    (func (export "_start")
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const 600000))
      (memory.fill (i32.const 16) (i32.const 65) (i32.const 600000))
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);
  const r = record(bytes, { args: ['big'] });
  expect(r.stdout.length).toBe(600000);
  expect(r.entries.filter((e) => e.kind === 'output').length).toBe(Math.floor(600000 / CHUNK_BYTES) + 1);
  const out: Uint8Array[] = [];
  const replay = replayGuest(bytes, r.entries, { onStdout: (b) => out.push(b), cacheDir: null });
  expect(Buffer.concat(out).toString()).toBe(r.stdout);
  expect(replay.digest).toBe(r.run.digest);
});

it('the filesystem is part of the log: a guest that reads and writes files replays from the log alone', async () => {
  const { VirtualFs } = await import('../host/runtime/wasi.ts');
  const g = samples().find((s) => s.name === 'fsdemo')!;
  const bytes = sampleBytes(g);
  const big = new Uint8Array(600_000).map((_, i) => i & 0xff);
  const fs = VirtualFs.fromEntries({ 'input.txt': 'hello\n', 'data/big.bin': big });
  fs.mkdirp('empty/dir');
  const r = record(bytes, { args: ['fsdemo'], fs });
  expect(r.stdout).toMatch(/input=6:/);
  const files = r.entries.filter((e) => e.kind === 'file');
  expect(files.map((e) => (e as Extract<LogEntry, { kind: 'file' }>).payload.path)).toContain('empty/dir');
  const out: Uint8Array[] = [];
  const replay = replayGuest(bytes, r.entries, { onStdout: (b) => out.push(b), cacheDir: null });
  expect(Buffer.concat(out).toString()).toBe(r.stdout);
  expect(replay.digest).toBe(r.run.digest);
  // A different file in the log is a different VM: the final digest says so.
  const changed = edited(r.entries, (es) => {
    const f = es.find((e) => e.kind === 'file' && e.payload.path === 'input.txt') as Extract<LogEntry, { kind: 'file' }>;
    f.payload = { ...f.payload, bytes: new TextEncoder().encode('HELLO\n') };
  });
  expect(() => replayGuest(bytes, changed, { cacheDir: null })).toThrow(DivergenceError);
});

it('a guest that traps while being instantiated is recorded and replayed too', async () => {
  const { watText } = await import('./helpers.ts');
  // an active data segment past the end of memory traps at instantiation
  const bytes = watText(`(module (memory (export "memory") 1) (data (i32.const 70000) "x") (func (export "_start")))`);
  const r = record(bytes, { args: ['bad'] });
  expect(r.run.outcome).toBe('trap');
  const replay = replayGuest(bytes, r.entries, { cacheDir: null });
  expect(replay).toMatchObject({ outcome: 'trap', trap: r.run.trap, digest: r.run.digest });
});

it('a version-2 log (no stdin mode, preopens or listen flag in its start entry, files without preopen) still replays', async () => {
  const { VirtualFs } = await import('../host/runtime/wasi.ts');
  const g = samples().find((s) => s.name === 'fsdemo')!;
  const bytes = sampleBytes(g);
  const r = record(bytes, { args: ['fsdemo'], fs: VirtualFs.fromEntries({ 'input.txt': 'hello\n' }), stdin: new TextEncoder().encode('in') });
  // What version 2 wrote: the same entries without the new fields, under a version-2 header.
  const old = r.entries.map((e) => {
    if (e.kind === 'start') {
      const { stdin: _s, preopens: _p, listen: _l, ...rest } = e.payload;
      return { ...e, payload: rest };
    }
    if (e.kind === 'file') {
      const { preopen: _p, mtimeNs: _m, ...rest } = e.payload;
      return { ...e, payload: rest };
    }
    return e;
  }) as LogEntry[];
  const header = Buffer.from(encodeHeader());
  header.writeUInt16LE(2, 8);
  const { crc32 } = await import('node:zlib');
  header.writeUInt32LE(crc32(header.subarray(0, 12)), 12);
  const entries = readLog(Buffer.concat([header, encodeFrame(old)]));
  expect(entries[0]!.kind === 'start' && entries[0]!.payload.preopens).toBeUndefined();
  const out: Uint8Array[] = [];
  const replay = replayGuest(bytes, entries, { onStdout: (b) => out.push(b), cacheDir: null });
  expect(Buffer.concat(out).toString()).toBe(r.stdout);
  expect(replay.digest).toBe(r.run.digest);
});
