// The body of a metering thread (see thread.ts): meters the job it was
// started with, posts progress and the answer, and ends.

import { parentPort, workerData } from 'node:worker_threads';
import type { MeterThreadJob, MeterThreadReply } from './thread.ts';

// binaryen prints its own last words ("Aborted()") through console.error
// when it stops; the answer below says what happened, with a stable code.
console.error = (): void => {};
const { MeterError } = await import('./errors.ts');
const { meter } = await import('./index.ts');

const port = parentPort!;
const job = workerData as MeterThreadJob;
let reply: MeterThreadReply;
try {
  const { binary } = meter(job.bytes, { ...job.opts, onProgress: (p) => port.postMessage({ t: 'progress', p } satisfies MeterThreadReply) });
  reply = { t: 'done', binary };
} catch (e) {
  reply = { t: 'error', code: e instanceof MeterError ? e.code : null, message: (e as Error).message };
}
port.postMessage(reply);
