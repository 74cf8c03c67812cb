// The host thread's side of one replica worker.

import { EventEmitter } from 'node:events';
import { MessageChannel, Worker } from 'node:worker_threads';
import { invariant } from '../assert.ts';
import { SIGNAL_SLOTS, SIGNAL_INBOX_SIZE, SIGNAL_INBOX_MESSAGES, SIGNAL_POSTED_SIZE, SIGNAL_POSTED_FRAMES, SIGNAL_UNACKED_SIZE, SIGNAL_UNACKED_BOUND, SIGNAL_LOG_STALLS, SIGNAL_SLOT_MAX, type FromReplica, type NicInput, type ReplicaInit, type ToReplica } from '../runtime/replay/engine.ts';

const ENTRY = new URL('./replica-entry.mjs', import.meta.url);

export interface ReplicaHandleEvents {
  message: [FromReplica];
  /** the worker is gone (it ended, failed, or was terminated) */
  exit: [number];
}

export class ReplicaHandle extends EventEmitter<ReplicaHandleEvents> {
  private readonly worker: Worker;
  private readonly port;
  private readonly signal: Int32Array;
  private gone = false;

  constructor(init: Omit<ReplicaInit, 'signal' | 'port'>, opts: { stackSizeMb?: number } = {}) {
    super();
    const { port1, port2 } = new MessageChannel();
    const sab = new SharedArrayBuffer(SIGNAL_SLOTS * Int32Array.BYTES_PER_ELEMENT);
    this.signal = new Int32Array(sab);
    this.port = port1;
    const data: ReplicaInit = { ...init, signal: sab, port: port2 };
    const transfer: ArrayBuffer[] = [];
    if (init.snapshot) transfer.push(init.snapshot.memory.buffer as ArrayBuffer);
    this.worker = new Worker(ENTRY, {
      workerData: data,
      transferList: [port2, ...transfer],
      resourceLimits: { stackSizeMb: opts.stackSizeMb ?? 8 },
    });
    this.worker.on('message', (m: FromReplica) => {
      if (m.t !== 'log') {
        this.emit('message', m);
        return;
      }
      try {
        // the listener counts the frame in the unacknowledged log (setUnackedLog) first ...
        this.emit('message', m);
      } finally {
        // ... then it leaves the posted count, so that the worker's sum of the two never dips (replay/engine.ts SIGNAL_UNACKED_SIZE);
        // the frame left the port's queue: the worker may post more (see replay/engine.ts flush)
        Atomics.sub(this.signal, SIGNAL_POSTED_FRAMES, 1);
        Atomics.sub(this.signal, SIGNAL_POSTED_SIZE, m.frame.length);
        Atomics.notify(this.signal, SIGNAL_POSTED_FRAMES);
      }
    });
    this.worker.on('error', (e) => this.emit('message', { t: 'error', code: 'FTVM_ERR_REPLICA', message: e.message }));
    this.worker.on('exit', (code) => {
      this.gone = true;
      this.port.close();
      this.emit('exit', code);
    });
  }

  get alive(): boolean {
    return !this.gone;
  }

  /**
   * Posts to the worker and wakes it if it waits. The bump of `signal[0]` is
   * immediate (a worker about to wait sees it and does not); the wake-up
   * (a futex call) is made once per turn of the event loop, after every
   * message of that turn (a read of many client messages, a frame of many
   * entries) was posted, and only when the worker said it waits
   * (`signal[3]`, see replay/engine.ts).
   */
  send(m: ToReplica, transfer: ArrayBuffer[] = []): void {
    if (this.gone) return;
    if (m.t === 'msg') {
      // counted until the worker puts it in the guest's NIC or drops it (see `inboxed`)
      Atomics.add(this.signal, SIGNAL_INBOX_MESSAGES, 1);
      Atomics.add(this.signal, SIGNAL_INBOX_SIZE, m.msg.bytes.length);
    }
    this.port.postMessage(m, transfer);
    Atomics.add(this.signal, 0, 1);
    if (this.wakePending) return;
    this.wakePending = true;
    queueMicrotask(this.wake);
  }

  private wakePending = false;
  private readonly wake = (): void => {
    this.wakePending = false;
    if (Atomics.load(this.signal, 3) === 1) Atomics.notify(this.signal, 0);
  };

  /**
   * Hands a client message to a live replica, counted in its inbox until the
   * replica puts it in the guest's NIC or drops it (see `inboxed`).
   */
  sendInput(m: NicInput): void {
    this.send({ t: 'msg', ...m });
  }

  /** Client messages handed to the replica and not yet in the guest's NIC (or dropped), and their bytes. */
  get inboxed(): { messages: number; bytes: number } {
    return { messages: Atomics.load(this.signal, SIGNAL_INBOX_MESSAGES), bytes: Atomics.load(this.signal, SIGNAL_INBOX_SIZE) };
  }

  /** Microseconds the primary sleeps at each poll (0: full speed). */
  setThrottle(us: number): void {
    Atomics.store(this.signal, 1, Math.max(0, Math.round(us)));
  }

  /**
   * Stops the primary at its next log flush until released (the outputs its
   * host holds for the Output Rule are past their bounds). Called with every
   * ack: only a change touches the worker. Returns whether it changed.
   */
  setStall(on: boolean): boolean {
    if (on === this.stalled) return false;
    this.stalled = on;
    Atomics.store(this.signal, 2, on ? 1 : 0);
    if (!on) Atomics.notify(this.signal, 2);
    return true;
  }

  private stalled = false;

  /**
   * Publishes the log the backup has not acknowledged, `bytes` (the host's
   * count of the frames it took), and the bound the primary's worker holds it
   * to with the frames not taken yet, `maxBytes` (0: none, the VM has no
   * backup), for the worker's stall at each flush (replay/engine.ts logStall).
   * Called whenever either changes; a frame taken is published before
   * it leaves the posted count (see the 'message' listener). `bytes` above
   * 2^31 - 1 is published as that (the slot is an Int32; no bound may reach
   * it: FtHost refuses such an `unackedLogMax`). Wakes a stalled worker when
   * the figure falls or the bound changes.
   */
  setUnackedLog(bytes: number, maxBytes: number): void {
    invariant(Number.isSafeInteger(maxBytes) && maxBytes >= 0 && maxBytes < SIGNAL_SLOT_MAX, () => `the unacknowledged log's bound ${maxBytes} fits an Int32 signal slot`);
    const figure = Math.min(Math.max(0, bytes), SIGNAL_SLOT_MAX);
    const before = Atomics.exchange(this.signal, SIGNAL_UNACKED_SIZE, figure);
    const maxBefore = Atomics.exchange(this.signal, SIGNAL_UNACKED_BOUND, maxBytes);
    if (figure < before || maxBytes !== maxBefore) Atomics.notify(this.signal, SIGNAL_UNACKED_SIZE);
  }

  /** Log frames the worker posted that this thread has not taken from the port yet, and their bytes. */
  get posted(): { frames: number; bytes: number } {
    return { frames: Atomics.load(this.signal, SIGNAL_POSTED_FRAMES), bytes: Atomics.load(this.signal, SIGNAL_POSTED_SIZE) };
  }

  /** How often the worker stalled its guest on the log's bound (replay/engine.ts logStall). */
  get logStalls(): number {
    return Atomics.load(this.signal, SIGNAL_LOG_STALLS);
  }

  get throttle(): number {
    return Atomics.load(this.signal, 1);
  }

  /** Stops the worker at once. */
  async terminate(): Promise<void> {
    if (this.gone) return;
    await this.worker.terminate();
  }
}
