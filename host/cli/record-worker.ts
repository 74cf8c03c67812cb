// `ftvm record` runs the guest in a worker thread, so that the main thread's
// event loop stays free to take SIGINT and SIGTERM while the guest computes
// (a guest on the main thread would hold it until the guest ends).
//
// Stopping on a signal: the main thread sets `stop[0]` and waits (at most
// STOP_WAIT_MS) for `stop[1]`. The worker looks at `stop[0]` at every check
// point the recorder visits (at least every million counts) and before the
// guest blocks, always between host calls; there it writes what the log
// holds to the file, sets `stop[1]` and never goes on. The main thread then
// raises the signal again with its default action, so ftvm ends with the
// usual signal status (130 for SIGINT, 143 for SIGTERM in a shell). A worker
// that does not answer in time is blocked (reading stdin, sleeping): it wrote
// its log before it blocked. What the guest printed is exactly what the log
// holds, so the replay of such a log prints the same.
//
// Only plain data crosses the thread boundary (the compiled module is
// structured-cloneable); the worker writes the log, the guest's output and
// the summary itself, and answers with the exit status.

import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { MeterOptions } from '../meter/cache.ts';
import type { NicMessage } from '../runtime/nic.ts';
import type { LiveConnectionsWire } from '../runtime/tcp-listen.ts';
import type { DirSpec } from './guest-io.ts';
import { RECORD_STOP_WAIT_MS as STOP_WAIT_MS } from '../limits.ts';


/** What the worker needs to record one guest: plain data only. */
export interface RecordJob {
  /** the guest compiled with the meter options of its start entry */
  module: WebAssembly.Module;
  bytes: Uint8Array;
  args: string[];
  env: Record<string, string>;
  /** --stdin FILE's bytes; absent: the process's stdin, streamed when it is a pipe or a file */
  stdin?: Uint8Array;
  dirs: DirSpec[];
  listen: boolean;
  digestEvery?: bigint;
  meter: Pick<MeterOptions, 'depthLimit' | 'memoryLimitPages' | 'canonicalizeNaNs'>;
  messages: { count: bigint; msg: NicMessage }[] | null;
  /** real TCP connections as NIC connections (--tcplisten, tcp-listen.ts); its port is transferred to the worker */
  tcp?: LiveConnectionsWire;
  /** the log file, open for writing, and its name for messages; null: the log is discarded (`ftvm run --tcplisten`) */
  logFd: number | null;
  logPath: string;
  /** LogWriterOptions.flushAfterMs */
  flushAfterMs: number;
  dirWriteback: boolean;
  out?: string;
  /** what is printed at the end: `ftvm record`'s summary (count, digest, log), or `ftvm run`'s (the count with --count) */
  summary: 'record' | 'run';
  /** `ftvm run --count` */
  printCount?: boolean;
}

interface WorkerData {
  kind: 'ftvm-record';
  job: RecordJob;
  /** Int32Array view: [0] a stop was asked, [1] the worker wrote its log and stopped */
  stop: SharedArrayBuffer;
}

/** Atomics.waitAsync (Node 16+; not in this TypeScript lib). */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number, timeoutMs: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

type Reply = { ok: true; status: number } | { ok: false; code: string | null; message: string; exitStatus: number | null };

/** An error the worker raised, carried over with its code and exit status (see errors.ts describeFailure). */
class RecordFailure extends Error {
  constructor(
    readonly code: string | undefined,
    message: string,
    readonly exitStatus: number | undefined,
  ) {
    super(message);
    this.name = 'RecordFailure';
  }
}

/**
 * Records `job` in a worker thread and returns ftvm's exit status (the
 * guest's, see guest-io.ts exitStatus; 1 when output was lost). While it
 * runs, SIGINT and SIGTERM stop the recording with its log written (see the
 * header). Errors: what the recording raised, with its FTVM_ERR_* code.
 */
export function recordInWorker(job: RecordJob): Promise<number> {
  const stopBuffer = new SharedArrayBuffer(8);
  const stop = new Int32Array(stopBuffer);
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./record-worker-entry.mjs', import.meta.url), {
      workerData: { kind: 'ftvm-record', job, stop: stopBuffer } satisfies WorkerData,
      transferList: job.tcp ? [job.tcp.port] : [],
    });
    let stopping: NodeJS.Signals | null = null;
    const end = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      process.kill(process.pid, signal);
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return end(signal); // a second signal: now
      stopping = signal;
      Atomics.store(stop, 0, 1);
      const w = waitAsync(stop, 1, 0, STOP_WAIT_MS);
      void Promise.resolve(w.value).then(() => end(signal));
    };
    process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
    const done = (): void => void process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    worker.once('message', (reply: Reply) => {
      if (stopping) return;
      done();
      if (reply.ok) resolve(reply.status);
      else reject(new RecordFailure(reply.code ?? undefined, reply.message, reply.exitStatus ?? undefined));
    });
    worker.once('error', (err) => {
      if (stopping) return;
      done();
      reject(err);
    });
    // After its answer or an error this changes nothing (a promise settles once).
    worker.once('exit', (code) => {
      if (stopping) return;
      done();
      reject(new Error(`the recording's worker thread ended (exit code ${code}) without an answer`));
    });
  });
}

/** The worker's side: records the job, writes what `ftvm record` prints, and answers with the exit status. */
async function work(data: WorkerData): Promise<Reply> {
  const { job } = data;
  const stop = new Int32Array(data.stop);
  const io = await import('./guest-io.ts');
  const { hostStderr, hostStdout, outputLost } = await import('./host-output.ts');
  const { CliError, fileError } = await import('./errors.ts');
  const { recordModule } = await import('../runtime/replay/recorder.ts');
  const { LiveTimer, MergedSources, ScriptedMessages } = await import('../runtime/events.ts');
  const { LiveConnections } = await import('../runtime/tcp-listen.ts');
  const { LogWriter } = await import('../log/writer.ts');
  const { writeSync } = await import('node:fs');
  const logFd = job.logFd;
  const sink = (b: Uint8Array): void => {
    if (logFd === null) return;
    try {
      for (let at = 0; at < b.length; ) at += writeSync(logFd, b, at, b.length - at);
    } catch (e) {
      const f = fileError(e, '--log', job.logPath, 'write');
      throw new CliError('FTVM_ERR_LOG_WRITE', `${f.message}; the log is incomplete`);
    }
  };
  const initial = io.loadPreopens(job.dirs);
  const log = new LogWriter(sink, { flushAfterMs: job.flushAfterMs });
  const live = job.tcp ? new LiveConnections(job.tcp) : null;
  const interrupts = live ?? (job.messages ? new MergedSources(new ScriptedMessages(job.messages), new LiveTimer()) : undefined);
  let r: Awaited<ReturnType<typeof recordModule>>;
  try {
    r = recordModule(job.bytes, job.module, log, {
      args: job.args,
      env: job.env,
      stdin: job.stdin,
      stdinRead: job.stdin ? undefined : (io.processStdin() ?? undefined),
      preopens: initial,
      listen: job.listen,
      digestEvery: job.digestEvery,
      meter: job.meter,
      onStdout: hostStdout.sink,
      onStderr: hostStderr.sink,
      interrupts,
      onSend: live ? (m) => live.send(m) : io.printSend,
      atCheckPoint: (l) => {
        if (Atomics.load(stop, 0) === 0) return;
        l.flush();
        Atomics.store(stop, 1, 1);
        Atomics.notify(stop, 1);
        // The main thread ends the process now; nothing more is logged or printed.
        for (;;) Atomics.wait(stop, 1, 1);
      },
    });
  } finally {
    live?.end();
  }
  const status = io.exitStatus(r);
  if (status.message) hostStderr.write(`${status.message}\n`);
  if (job.summary === 'run') {
    if (job.printCount && r.count !== null) hostStderr.write(`count ${r.count}\n`);
  } else {
    if (r.outcome === 'idle') hostStderr.write('ftvm: the guest waits for input and no more will come\n');
    hostStderr.write(`count ${r.count}\ndigest ${r.digest}\nlog ${job.logPath}: ${log.entries} entries, ${log.bytesWritten} bytes\n`);
  }
  if (job.dirWriteback) for (const l of io.writeBack(job.dirs, initial, r.preopens)) hostStderr.write(`${l}\n`);
  if (job.out !== undefined) io.writeOut(job.out, r.preopens);
  return { ok: true, status: outputLost() ? 1 : status.code };
}

if (!isMainThread && (workerData as WorkerData | null)?.kind === 'ftvm-record') {
  work(workerData as WorkerData).then(
    (reply) => parentPort!.postMessage(reply),
    (err: unknown) => {
      const e = err as Error & { code?: unknown; exitStatus?: unknown };
      parentPort!.postMessage({
        ok: false,
        code: typeof e?.code === 'string' ? e.code : null,
        message: e instanceof Error ? e.message : String(err),
        exitStatus: typeof e?.exitStatus === 'number' ? e.exitStatus : null,
      } satisfies Reply);
    },
  );
}
