// The live replica holds its own log to the bound on what the backup has not
// acknowledged: at each flush it adds what its host published as unacknowledged
// to what it posted and the host has not taken yet, so a burst of input that
// the host thread has not caught up with still stops within one flush of the
// bound. Here the test plays the host: it publishes the frames it took
// (ReplicaHandle.setUnackedLog), acknowledges nothing until it says so, and is
// busy (its thread blocked) while the burst arrives.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeFrame, EntryChecker, type EntryPayloads } from '../host/log/format.ts';
import { ReplicaHandle } from '../host/cluster/replica-handle.ts';
import type { Output } from '../host/runtime/replay/engine.ts';
import { meterOptions } from '../host/runtime/record.ts';
import { compileGuest } from '../host/runtime/guest.ts';
import { REPLICA_BATCH_FLUSH_BYTES, REPLICA_FRAME_FLUSH_BYTES } from '../host/limits.ts';
import { FtHost } from '../host/cluster/host.ts';
import { FileArbiter } from '../host/cluster/arbiter.ts';
import { replicaStartOf, sampleBytes, samples } from './helpers.ts';

const kv = sampleBytes(samples('service').find((g) => g.name === 'kv')!);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const start: EntryPayloads['start'] = replicaStartOf(kv);

const handles: ReplicaHandle[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.terminate()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Polls `test` every 5 ms until it holds, for at most `ms`. */
async function until(what: string, test: () => boolean, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!test()) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Blocks this thread (the "host thread") for `ms`, as a busy event loop would. */
const busy = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

describe('the live replica stalls on its log', () => {
  it('within one flush of the bound though the host thread took none of the burst, resumes at half, and never stalls alone', async () => {
    const BOUND = 4 * REPLICA_BATCH_FLUSH_BYTES;
    const h = new ReplicaHandle({ vm: 'v', module: kv, compiled: compileGuest(kv, meterOptions(start)), start, role: 'primary' });
    handles.push(h);
    let bound = BOUND;
    h.setUnackedLog(0, bound);
    const check = new EntryChecker(0);
    const outputs: Output[] = [];
    /** bytes of the frames taken since the last acknowledgement */
    let unacked = 0;
    let frameMax = 0;
    /** per frame taken while the bound was in force: the log unacknowledged before it */
    const before: number[] = [];
    h.on('message', (m) => {
      if (m.t !== 'log') return;
      decodeFrame(m.frame, check);
      outputs.push(...m.outputs);
      if (bound) before.push(unacked);
      frameMax = Math.max(frameMax, m.frame.length);
      unacked += m.frame.length;
      // as the host does: published before the handle takes the frame out of the posted count
      h.setUnackedLog(unacked, bound);
    });
    const value = 'x'.repeat(4000);
    for (let i = 0; i < 200; i++) h.sendInput({ msg: { conn: 1, bytes: new TextEncoder().encode(`w${i} SET k${i} ${value}`), eof: false } });
    // the worker takes the burst while this thread takes none of its frames
    busy(500);
    await until('a stall on the log', () => h.logStalls === 1);
    // the stalled worker posts nothing more: once this thread took what it had posted, the log stands still
    await until('the frames posted taken', () => h.posted.frames === 0);
    const replies = (): number => outputs.filter((o) => dec(o.bytes).startsWith('w')).length;
    expect(replies()).toBeLessThan(200);
    expect(unacked).toBeGreaterThan(BOUND);
    // every frame was posted with at most the bound unacknowledged: the log stays within one flush of it
    expect(Math.max(...before)).toBeLessThanOrEqual(BOUND);
    expect(unacked).toBeLessThanOrEqual(BOUND + frameMax);
    expect(frameMax).toBeLessThanOrEqual(REPLICA_FRAME_FLUSH_BYTES + REPLICA_BATCH_FLUSH_BYTES);
    // acks under half of the bound: the guest goes on, to the next stall
    const at = replies();
    unacked = 0;
    h.setUnackedLog(0, bound);
    await until('a second stall', () => h.logStalls === 2);
    await until('the frames posted taken', () => h.posted.frames === 0);
    expect(replies()).toBeGreaterThan(at);
    expect(Math.max(...before)).toBeLessThanOrEqual(BOUND);
    expect(unacked).toBeGreaterThan(BOUND);
    expect(unacked).toBeLessThanOrEqual(BOUND + frameMax);
    // the VM is left without a backup: no bound, the guest runs to the end of the burst without another stall
    bound = 0;
    h.setUnackedLog(unacked, 0);
    await until('every write answered', () => replies() === 200);
    expect(h.logStalls).toBe(2);
    // nothing lost or reordered: the writes were answered in order, each counted once
    const answers = outputs.map((o) => dec(o.bytes)).filter((t) => t.startsWith('w'));
    expect(answers).toEqual(Array.from({ length: 200 }, (_, i) => `w${i} OK ${i + 1}`));
  }, 60_000);
});

describe('the bound on the unacknowledged log', () => {
  it('is refused with FTVM_ERR_USAGE unless it fits the Int32 slot the worker reads it from (and is not 0)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-stall-'));
    dirs.push(dir);
    const opts = { id: 'u1', secret: 's', arbiter: new FileArbiter(join(dir, 'arbiter')), dataDir: join(dir, 'data') };
    for (const unackedLogMax of [0, -1, 1.5, 2 ** 31 - 1, 2 ** 32]) {
      let err: unknown;
      try {
        new FtHost({ ...opts, unackedLogMax });
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string })?.code, String(unackedLogMax)).toBe('FTVM_ERR_USAGE');
    }
  });
});
