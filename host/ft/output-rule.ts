// The Output Rule's bookkeeping (VMware FT, Scales et al. 2010, section 2.2):
// the primary may not let an output leave until the backup has acknowledged
// the log entry that produced it. The same holds for what the primary tells
// an ingress host about a client's input (host/cluster/ingress.ts): the ingress
// may forget input only once the backup has the log that delivered it.
//
// Both are queues ordered by log sequence number; an acknowledgement through
// sequence number `seq` lets go of everything at or before it.

import { invariant } from '../assert.ts';

/** Something the Output Rule holds until the backup acknowledges log entry `seq` (a sequence number). */
export interface Held {
  seq: number;
}

/**
 * Outputs held until the backup acknowledges their entries, and input
 * positions to report once it does. Sequence numbers must not decrease from
 * one `hold` (or `inputDelivered`) to the next: a decrease would release an
 * output before the entry that produced it is acknowledged, so it stops the
 * process (FTVM_ERR_INVARIANT, host/assert.ts). Bounded by the log the backup
 * has not acknowledged, which the primary bounds (it stalls at
 * `--unacked-log-max`).
 */
export class OutputRule<O extends Held & { bytes?: Uint8Array }> {
  private outputs: O[] = [];
  private outputBytes = 0;
  private inputs: { last: number; acks: [number, number][] }[] = [];

  /** Outputs held now. */
  get held(): number {
    return this.outputs.length;
  }

  /** The bytes of the outputs held now. */
  get heldBytes(): number {
    return this.outputBytes;
  }

  /** Holds outputs (in log order) until their entries are acknowledged. */
  hold(outputs: readonly O[]): void {
    for (const o of outputs) {
      const tail = this.outputs.at(-1);
      invariant(!tail || tail.seq <= o.seq, () => `Output Rule: output of log entry ${o.seq} held after one of entry ${tail!.seq}`);
      this.outputs.push(o);
      this.outputBytes += o.bytes?.length ?? 0;
    }
  }

  /**
   * A client's input was delivered by the log up to entry `last`: its
   * [conn, end] stream positions are reported once the backup acknowledges
   * `last` (see `acked`).
   */
  inputDelivered(last: number, acks: [number, number][]): void {
    const tail = this.inputs.at(-1);
    invariant(!tail || tail.last <= last, () => `Output Rule: input delivered by log entry ${last} after input of entry ${tail!.last}`);
    if (tail && tail.last === last) tail.acks.push(...acks);
    else this.inputs.push({ last, acks });
  }

  /** The backup acknowledged the log through `seq`: the outputs now released and the input positions now safe, in order. */
  acked(seq: number): { outputs: O[]; inputs: [number, number][] } {
    let i = 0;
    while (i < this.outputs.length && this.outputs[i]!.seq <= seq) i++;
    let j = 0;
    while (j < this.inputs.length && this.inputs[j]!.last <= seq) j++;
    const outputs = this.outputs.splice(0, i);
    for (const o of outputs) this.outputBytes -= o.bytes?.length ?? 0;
    return { outputs, inputs: this.inputs.splice(0, j).flatMap((x) => x.acks) };
  }

  /** There is no backup any more (the primary runs alone): everything held goes at once. */
  releaseAll(): { outputs: O[]; inputs: [number, number][] } {
    this.outputBytes = 0;
    return { outputs: this.outputs.splice(0), inputs: this.inputs.splice(0).flatMap((x) => x.acks) };
  }
}

/** An output as joinOutputs sees it: a write on fd 1 or 2 ('output') or anything else. */
export interface Joinable extends Held {
  kind: string;
  fd: number;
  bytes: Uint8Array;
}

/**
 * A frame's outputs (in log order) with every run of writes on the same fd
 * (kind 'output', nothing between them) joined into one carrying the run's
 * bytes and its last sequence number: a host holds and releases one output
 * per run, not one per write (a guest writing stdout in a tight loop made
 * hundreds of thousands). Each write stays its own log entry. The primary's
 * replica joins each frame's outputs, and a backup's host joins the same
 * frame's alike, so both hold the same outputs under the same numbers. The
 * Output Rule still holds: a run leaves once its last entry, and so every
 * entry of it, is acknowledged.
 */
export function joinOutputs<O extends Joinable>(outputs: O[]): O[] {
  if (outputs.length < 2) return outputs;
  const out: O[] = [];
  let run: O[] = [];
  const end = (): void => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length) out.push({ ...run.at(-1)!, bytes: Buffer.concat(run.map((o) => o.bytes)) });
    run = [];
  };
  for (const o of outputs) {
    if (o.kind === 'output' && (!run.length || run[0]!.fd === o.fd)) run.push(o);
    else {
      end();
      if (o.kind === 'output') run.push(o);
      else out.push(o);
    }
  }
  end();
  return out;
}
