// Runs one guest in a worker thread, so the calling thread's event loop keeps
// turning while the guest computes. Only plain data crosses the thread boundary.

import { Worker, parentPort, workerData, isMainThread } from 'node:worker_threads';
import { runGuest, type RunResult } from './guest.ts';
import type { MeterOptions } from '../meter/index.ts';

export interface WorkerRunOptions {
  args?: string[];
  env?: Record<string, string>;
  stdin?: Uint8Array;
  meter?: MeterOptions;
  deadline?: bigint;
  /** native stack of the worker thread, in MiB (V8's default applies when absent) */
  stackSizeMb?: number;
}

interface Request {
  bytes: Uint8Array;
  opts: WorkerRunOptions;
}

type Reply = { ok: true; result: RunResult } | { ok: false; name: string; code?: string; message: string };

/** Runs a guest to its end in a fresh worker thread. */
export function runGuestInWorker(bytes: Uint8Array, opts: WorkerRunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), {
      workerData: { bytes, opts } satisfies Request,
      resourceLimits: opts.stackSizeMb ? { stackSizeMb: opts.stackSizeMb } : undefined,
    });
    let settled = false;
    worker.once('message', (reply: Reply) => {
      settled = true;
      void worker.terminate();
      if (reply.ok) resolve(reply.result);
      else reject(Object.assign(new Error(reply.message), { name: reply.name, code: reply.code }));
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`guest worker exited with code ${code} before replying`));
    });
  });
}

if (!isMainThread && parentPort && (workerData as Request | undefined)?.bytes) {
  const { bytes, opts } = workerData as Request;
  let reply: Reply;
  try {
    reply = { ok: true, result: runGuest(bytes, opts) };
  } catch (err) {
    const e = err as Error & { code?: string };
    reply = { ok: false, name: e.name, code: e.code, message: e.message };
  }
  parentPort.postMessage(reply);
}
