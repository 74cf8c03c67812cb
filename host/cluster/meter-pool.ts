// Metering jobs of a host, on worker threads (meter-worker.ts), so the host's
// event loop keeps answering heartbeats, the log channel and the API while a
// large module is metered (tens of seconds for a 20 MB module).
//
// Two lanes, so a small guest never waits behind a large one:
//   light  modules of at most `lightBytesMax` bytes (default 1 MiB): one job
//          at a time; its worker is started at the first job and kept for the
//          next (it ends after `idleMs` unused, or 100 jobs), since small jobs
//          are many and mostly cache hits that take milliseconds once the
//          worker has loaded its code. A host that never meters (it only runs
//          backups) never starts one: a thread loading code competes with the
//          host's own for the CPU;
//   heavy  larger modules: at most `jobsMax` jobs at a time (default 1); each
//          job has a fresh worker that ends with it, so the memory binaryen took
//          for a large module is given back at once.
// Each lane queues at most `queueMax` jobs (FTVM_ERR_UNAVAILABLE beyond);
// the same module with the same options is metered once for every caller
// waiting for it; a job longer than `jobTimeoutMs` is stopped.

import { Worker } from 'node:worker_threads';
import type { MeterOptions } from '../meter/cache.ts';
import { METER_STACK_MB } from '../meter/thread.ts';
import { GuestLoadError } from '../runtime/instance.ts';
import type { FtvmErrorCode } from '../errors.ts';
import { METER_JOBS_PER_WORKER as JOBS_PER_WORKER } from '../limits.ts';

const ENTRY = new URL('./meter-entry.mjs', import.meta.url);

/** The host thread to a metering worker: meter `bytes` with `opts`. */
export interface MeterRequest {
  id: number;
  bytes: Uint8Array;
  opts: MeterOptions;
}

/** A metering worker's answer: the metered module (bytes and compiled), or why not. */
export type MeterReply =
  | { t: 'done'; id: number; metered: Uint8Array; meteredHash: string; module: WebAssembly.Module }
  | { t: 'error'; id: number; /** a GuestLoadError: the module is refused */ load: boolean; code: FtvmErrorCode; message: string };

/** A guest metered by the pool: the metered module, as bytes (to ship to other hosts), their SHA-256 (hex), and compiled. */
export interface MeteredGuest {
  metered: Uint8Array;
  meteredHash: string;
  module: WebAssembly.Module;
}

export type MeterPoolErrorCode = Extract<FtvmErrorCode, 'FTVM_ERR_UNAVAILABLE' | 'FTVM_ERR_INTERNAL'>;

/** A metering job that could not be done (not the module's fault), with a stable code. */
export class MeterPoolError extends Error {
  constructor(
    readonly code: MeterPoolErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MeterPoolError';
  }
}

export interface MeterPoolOptions {
  /** heavy jobs metered at once (default 1) */
  jobsMax?: number;
  /** jobs waiting per lane (default 16) */
  queueMax?: number;
  /** the largest module of the light lane, in bytes (default 1 MiB) */
  lightBytesMax?: number;
  /** an idle light-lane worker ends after this long (default 10 min) */
  idleMs?: number;
  /** start the light lane's worker with the pool, not at the first job (default false) */
  prewarm?: boolean;
  /** a job running this long is stopped, FTVM_ERR_UNAVAILABLE (default 30 min) */
  jobTimeoutMs?: number;
  /** native stack of a metering worker, in MiB (default METER_STACK_MB, see meter/thread.ts) */
  stackSizeMb?: number;
}

/** How a metering job is doing, for GET /v1/modules/:hash. */
export interface MeterJobInfo {
  /** the module's SHA-256, hex */
  hash: string;
  state: 'queued' | 'metering';
  /** ms since it was queued or since it started */
  ms: number;
  /** jobs ahead of it in its lane's queue (0 when metering) */
  ahead: number;
  memoryLimitPages: number | null;
}

interface Job {
  key: string;
  hash: string;
  bytes: Uint8Array;
  opts: MeterOptions;
  state: 'queued' | 'metering';
  since: number;
  waiters: { resolve: (g: MeteredGuest) => void; reject: (e: Error) => void }[];
}

interface Slot {
  worker: Worker;
  job: Job | null;
  done: number;
  /** the id of the request the worker is working on */
  reqId: number;
  idleTimer: NodeJS.Timeout | null;
  timeout: NodeJS.Timeout | null;
}

interface Lane {
  name: 'light' | 'heavy';
  max: number;
  keep: boolean;
  queue: Job[];
  slots: Set<Slot>;
}


export class MeterPool {
  private readonly light: Lane;
  private readonly heavy: Lane;
  private readonly jobs = new Map<string, Job>();
  private readonly o: Required<MeterPoolOptions>;
  private ids = 0;
  private closed = false;

  constructor(opts: MeterPoolOptions = {}) {
    this.o = { jobsMax: 1, queueMax: 16, lightBytesMax: 1024 * 1024, idleMs: 10 * 60_000, prewarm: false, jobTimeoutMs: 30 * 60_000, stackSizeMb: METER_STACK_MB, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) };
    if (!(Number.isInteger(this.o.jobsMax) && this.o.jobsMax >= 1)) throw new Error('jobsMax must be an integer >= 1');
    this.light = { name: 'light', max: 1, keep: true, queue: [], slots: new Set() };
    this.heavy = { name: 'heavy', max: this.o.jobsMax, keep: false, queue: [], slots: new Set() };
    if (this.o.prewarm) this.idle(this.light, this.spawn(this.light));
  }

  /**
   * Checks and meters `bytes` (whose SHA-256 is `hash`) with `opts` on a
   * worker thread. Give `bytes` on a SharedArrayBuffer and the worker reads
   * them in place (else they are copied, on this thread, for each job). Rejects with GuestLoadError (the module is refused: its
   * code says why), or MeterPoolError (FTVM_ERR_UNAVAILABLE: the lane's queue
   * is full, the job took too long, or the pool is closed; FTVM_ERR_INTERNAL:
   * the worker failed).
   */
  compile(hash: string, bytes: Uint8Array, opts: MeterOptions): Promise<MeteredGuest> {
    if (this.closed) return Promise.reject(new MeterPoolError('FTVM_ERR_UNAVAILABLE', 'the host is closing'));
    const key = `${hash}/${JSON.stringify(opts, Object.keys(opts).sort())}`;
    return new Promise((resolve, reject) => {
      const same = this.jobs.get(key);
      if (same) {
        same.waiters.push({ resolve, reject });
        return;
      }
      const lane = bytes.length <= this.o.lightBytesMax ? this.light : this.heavy;
      if (lane.queue.length >= this.o.queueMax) {
        reject(new MeterPoolError('FTVM_ERR_UNAVAILABLE', `${lane.queue.length} modules wait to be metered on this host already; try again later`));
        return;
      }
      const job: Job = { key, hash, bytes, opts, state: 'queued', since: performance.now(), waiters: [{ resolve, reject }] };
      this.jobs.set(key, job);
      lane.queue.push(job);
      this.pump(lane);
    });
  }

  /** The jobs queued or metering (of one module, when `hash` is given). */
  status(hash?: string): MeterJobInfo[] {
    const now = performance.now();
    const out: MeterJobInfo[] = [];
    for (const lane of [this.light, this.heavy]) {
      for (const s of lane.slots) if (s.job) out.push(this.info(s.job, now, 0));
      lane.queue.forEach((j, i) => out.push(this.info(j, now, i)));
    }
    return hash === undefined ? out : out.filter((j) => j.hash === hash);
  }

  private info(j: Job, now: number, ahead: number): MeterJobInfo {
    return { hash: j.hash, state: j.state, ms: Math.round(now - j.since), ahead, memoryLimitPages: j.opts.memoryLimitPages ?? null };
  }

  /** Stops every worker; jobs not done are rejected (FTVM_ERR_UNAVAILABLE). */
  async close(): Promise<void> {
    this.closed = true;
    const gone = new MeterPoolError('FTVM_ERR_UNAVAILABLE', 'the host is closing');
    const stops: Promise<unknown>[] = [];
    for (const lane of [this.light, this.heavy]) {
      for (const j of lane.queue.splice(0)) this.finish(j, null, gone);
      for (const s of lane.slots) {
        if (s.job) this.finish(s.job, null, gone);
        stops.push(this.retire(lane, s));
      }
    }
    await Promise.all(stops);
  }

  /** Starts queued jobs while the lane has room. */
  private pump(lane: Lane): void {
    while (!this.closed && lane.queue.length) {
      let slot = [...lane.slots].find((s) => s.job === null);
      if (!slot) {
        if (lane.slots.size >= lane.max) return;
        slot = this.spawn(lane);
      }
      const job = lane.queue.shift()!;
      this.run(lane, slot, job);
    }
  }

  private spawn(lane: Lane): Slot {
    const worker = new Worker(ENTRY, { resourceLimits: { stackSizeMb: this.o.stackSizeMb } });
    worker.unref();
    const slot: Slot = { worker, job: null, done: 0, reqId: 0, idleTimer: null, timeout: null };
    lane.slots.add(slot);
    worker.on('message', (r: MeterReply) => {
      const job = slot.job;
      // an answer to a job this pool gave up on (timed out) is dropped
      if (!job || r.id !== slot.reqId) return;
      if (slot.timeout) clearTimeout(slot.timeout);
      slot.timeout = null;
      slot.job = null;
      slot.done++;
      if (r.t === 'done') this.finish(job, { metered: r.metered, meteredHash: r.meteredHash, module: r.module }, null);
      else this.finish(job, null, r.load ? new GuestLoadError(r.code, r.message) : new MeterPoolError('FTVM_ERR_INTERNAL', `metering failed: ${r.code}: ${r.message}`));
      if (!lane.keep || slot.done >= JOBS_PER_WORKER) void this.retire(lane, slot);
      else this.idle(lane, slot);
      this.pump(lane);
    });
    const lost = (why: string): void => {
      if (!lane.slots.has(slot)) return;
      lane.slots.delete(slot);
      if (slot.timeout) clearTimeout(slot.timeout);
      if (slot.idleTimer) clearTimeout(slot.idleTimer);
      if (slot.job) this.finish(slot.job, null, new MeterPoolError('FTVM_ERR_INTERNAL', `the metering worker failed: ${why}`));
      slot.job = null;
      this.pump(lane);
    };
    worker.on('error', (e) => lost(e.message));
    worker.on('exit', (code) => lost(`it exited (${code})`));
    return slot;
  }

  /** A kept worker waits for the next job, and ends if none comes within idleMs. */
  private idle(lane: Lane, slot: Slot): void {
    slot.idleTimer = setTimeout(() => void this.retire(lane, slot), this.o.idleMs);
    slot.idleTimer.unref();
  }

  private run(lane: Lane, slot: Slot, job: Job): void {
    if (slot.idleTimer) clearTimeout(slot.idleTimer);
    slot.idleTimer = null;
    slot.job = job;
    job.state = 'metering';
    job.since = performance.now();
    const req: MeterRequest = { id: ++this.ids, bytes: job.bytes, opts: job.opts };
    slot.reqId = req.id;
    slot.timeout = setTimeout(() => {
      if (slot.job !== job) return;
      slot.job = null;
      this.finish(job, null, new MeterPoolError('FTVM_ERR_UNAVAILABLE', `metering took more than ${Math.round(this.o.jobTimeoutMs / 1000)} s and was stopped`));
      void this.retire(lane, slot);
      this.pump(lane);
    }, this.o.jobTimeoutMs);
    slot.worker.postMessage(req);
  }

  private async retire(lane: Lane, slot: Slot): Promise<void> {
    lane.slots.delete(slot);
    if (slot.idleTimer) clearTimeout(slot.idleTimer);
    if (slot.timeout) clearTimeout(slot.timeout);
    await slot.worker.terminate();
  }

  private finish(job: Job, ok: MeteredGuest | null, err: Error | null): void {
    if (this.jobs.get(job.key) === job) this.jobs.delete(job.key);
    for (const w of job.waiters.splice(0)) {
      if (ok) w.resolve(ok);
      else w.reject(err!);
    }
  }
}
