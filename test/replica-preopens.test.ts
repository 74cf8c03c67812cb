// What `ftvm record --dir` gives a guest, a replica gives it too: a primary
// started with a preopened directory logs its files, its guest reads them,
// and a backup streamed the log rebuilds the same directory from it and ends
// with the same state digest. The same for the start entry's choice of the
// listening socket (none here: the preopen is then at fd 3), and for stdin
// streamed as `ftvm record` logs a pipe: a backup replays each read.
import { afterEach, describe, expect, it } from 'vitest';
import { decodeFrame, EntryChecker, type EntryPayloads, type LogEntry } from '../host/log/format.ts';
import { ReplicaHandle } from '../host/cluster/replica-handle.ts';
import type { FromReplica, Output } from '../host/runtime/replay/engine.ts';
import { fsTree } from '../host/runtime/replay/preamble.ts';
import { VirtualFs } from '../host/runtime/wasi.ts';
import { meterOptions, recordGuest } from '../host/runtime/record.ts';
import { LogWriter } from '../host/log/writer.ts';
import { readLog } from '../host/log/format.ts';
import { compileGuest } from '../host/runtime/guest.ts';
import { replicaStartOf, sampleBytes, samples } from './helpers.ts';

const fsdemo = sampleBytes(samples().find((g) => g.name === 'fsdemo')!);
const entropy = sampleBytes(samples().find((g) => g.name === 'entropy')!);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const handles: ReplicaHandle[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.terminate()));
});

/** Resolves with the first message `test` accepts (rejects after 30 s). */
function until(h: ReplicaHandle, test: (m: FromReplica) => boolean): Promise<FromReplica> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no such message within 30 s')), 30_000);
    h.on('message', (m) => {
      if (test(m)) {
        clearTimeout(t);
        resolve(m);
      }
    });
  });
}

describe('a replica with what ftvm record gives a guest', () => {
  it("logs the files, its guest reads them, and a backup rebuilds them from the log to the same digest", async () => {
    const start: EntryPayloads['start'] = { ...replicaStartOf(fsdemo, ['fsdemo']), preopens: ['/'], listen: false };
    const compiled = compileGuest(fsdemo, { ...meterOptions(start), cacheDir: null });
    const input = 'given by the host';
    const tree = fsTree(VirtualFs.fromEntries({ 'input.txt': input }));
    const backup = new ReplicaHandle({ vm: 'fs', module: fsdemo, compiled, start, role: 'backup' });
    handles.push(backup);
    const backupEnded = until(backup, (m) => m.t === 'ended' || m.t === 'error');
    const primary = new ReplicaHandle({ vm: 'fs', module: fsdemo, compiled, start, role: 'primary', preopens: [{ name: '/', tree }] });
    handles.push(primary);
    const entries: LogEntry[] = [];
    const outputs: Output[] = [];
    const check = new EntryChecker();
    primary.on('message', (m) => {
      if (m.t !== 'log') return;
      const got = decodeFrame(m.frame, check);
      entries.push(...got);
      outputs.push(...m.outputs);
      backup.send({ t: 'entries', entries: got });
    });
    const ended = (await until(primary, (m) => m.t === 'ended' || m.t === 'error')) as Extract<FromReplica, { t: 'ended' }>;
    expect(ended.t).toBe('ended');
    // the files are in the log, right after the start entry
    const files = entries.filter((e) => e.kind === 'file').map((e) => (e.payload as EntryPayloads['file']).path);
    expect(files).toEqual(['', 'input.txt']);
    // the guest read the file it was given (its length, then its FNV-1a hash)
    const stdout = dec(Buffer.concat(outputs.filter((o) => o.kind === 'output' && o.fd === 1).map((o) => o.bytes)));
    expect(stdout).toMatch(new RegExp(`^fsdemo: files=a\\.txt,c\\.txt a=[0-9a-f]{8} input=${input.length}:[0-9a-f]{8}\\n$`));
    const b = (await backupEnded) as Extract<FromReplica, { t: 'ended' }>;
    expect(b).toMatchObject({ t: 'ended', digest: ended.digest, result: { count: ended.result.count, exitCode: 0 } });
  });

  it('a backup replays a recording whose stdin was streamed (an input entry at each read)', async () => {
    // recorded as `ftvm record` records a pipe: each read logged at its count, the last one empty
    const pieces = ['streamed ', 'stdin ', 'in three reads'].map((t) => new TextEncoder().encode(t));
    const chunks: Uint8Array[] = [];
    const run = recordGuest(entropy, new LogWriter((b) => chunks.push(b)), { args: ['entropy', '5'], stdinRead: () => pieces.shift() ?? new Uint8Array(0), meter: { cacheDir: null } });
    const logged = readLog(new Uint8Array(Buffer.concat(chunks)));
    const start = logged[0]!.payload as EntryPayloads['start'];
    expect(start.stdin).toBe('stream');
    expect(logged.filter((e) => e.kind === 'input' && e.count > 0n).length).toBe(4);
    const backup = new ReplicaHandle({ vm: 'stdin', module: entropy, compiled: compileGuest(entropy, { ...meterOptions(start), cacheDir: null }), start, role: 'backup' });
    handles.push(backup);
    const ended = until(backup, (m) => m.t === 'ended' || m.t === 'error');
    backup.send({ t: 'entries', entries: logged });
    expect(await ended).toMatchObject({ t: 'ended', digest: run.digest, result: { count: run.count, exitCode: run.exitCode } });
  });
});
