// Runs one guest in a worker thread, so the calling thread's event loop keeps
// turning while the guest computes. Only plain data crosses the thread boundary.

import { Worker, parentPort, workerData, isMainThread } from 'node:worker_threads';
import { runGuest, type RunResult } from './guest.ts';
import type { MeterOptions } from '../meter/index.ts';
import { recordGuest, type RecordedRun } from './record.ts';
import { LogWriter } from '../log/writer.ts';

export interface WorkerRunOptions {
  args?: string[];
  env?: Record<string, string>;
  stdin?: Uint8Array;
  meter?: MeterOptions;
  deadline?: bigint;
  /** native stack of the worker thread, in MiB (V8's default applies when absent) */
  stackSizeMb?: number;
  /** terminate the worker and reject if the guest has not ended after this many milliseconds */
  timeoutMs?: number;
}

interface Request {
  bytes: Uint8Array;
  opts: WorkerRunOptions;
  /** 'record': run live and return the log too */
  mode: 'run' | 'record';
}

/** A recording made in a worker: how it ran, and its log file's bytes. */
export interface WorkerRecording {
  result: RecordedRun;
  log: Uint8Array;
}

type Reply =
  | { ok: true; result: RunResult | RecordedRun; log?: Uint8Array }
  | { ok: false; name: string; code?: string; message: string };

/** Runs a guest to its end in a fresh worker thread. */
export async function runGuestInWorker(bytes: Uint8Array, opts: WorkerRunOptions = {}): Promise<RunResult> {
  return (await inWorker(bytes, opts, 'run')).result;
}

/** Records a guest (see recordGuest) in a fresh worker thread. */
export async function recordGuestInWorker(bytes: Uint8Array, opts: WorkerRunOptions = {}): Promise<WorkerRecording> {
  const reply = await inWorker(bytes, opts, 'record');
  return { result: reply.result as RecordedRun, log: reply.log! };
}

function inWorker(bytes: Uint8Array, opts: WorkerRunOptions, mode: Request['mode']): Promise<Extract<Reply, { ok: true }>> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), {
      workerData: { bytes, opts, mode } satisfies Request,
      resourceLimits: opts.stackSizeMb ? { stackSizeMb: opts.stackSizeMb } : undefined,
    });
    let settled = false;
    const timer =
      opts.timeoutMs === undefined
        ? null
        : setTimeout(() => {
            settled = true;
            void worker.terminate();
            reject(Object.assign(new Error(`guest worker did not finish within ${opts.timeoutMs} ms`), { code: 'FTVM_ERR_WORKER_TIMEOUT' }));
          }, opts.timeoutMs);
    worker.once('message', (reply: Reply) => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      if (reply.ok) resolve(reply);
      else reject(Object.assign(new Error(reply.message), { name: reply.name, code: reply.code }));
    });
    worker.once('error', (err) => {
      if (settled) return;
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (timer) clearTimeout(timer);
      if (!settled) reject(new Error(`guest worker exited with code ${code} before replying`));
    });
  });
}

if (!isMainThread && parentPort && (workerData as Request | undefined)?.bytes) {
  const { bytes, opts, mode } = workerData as Request;
  let reply: Reply;
  try {
    if (mode === 'record') {
      const chunks: Uint8Array[] = [];
      const result = recordGuest(bytes, new LogWriter((b) => chunks.push(b)), { args: opts.args ?? ['guest'], env: opts.env, stdin: opts.stdin, meter: opts.meter });
      reply = { ok: true, result, log: Buffer.concat(chunks) };
    } else {
      reply = { ok: true, result: runGuest(bytes, opts) };
    }
  } catch (err) {
    const e = err as Error & { code?: string };
    reply = { ok: false, name: e.name, code: e.code, message: e.message };
  }
  parentPort.postMessage(reply);
}
