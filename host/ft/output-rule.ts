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
export class OutputRule<O extends Held> {
  private outputs: O[] = [];
  private inputs: { last: number; acks: [number, number][] }[] = [];

  /** Outputs held now. */
  get held(): number {
    return this.outputs.length;
  }

  /** Holds outputs (in log order) until their entries are acknowledged. */
  hold(outputs: readonly O[]): void {
    for (const o of outputs) {
      const tail = this.outputs.at(-1);
      invariant(!tail || tail.seq <= o.seq, () => `Output Rule: output of log entry ${o.seq} held after one of entry ${tail!.seq}`);
      this.outputs.push(o);
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
    return { outputs: this.outputs.splice(0, i), inputs: this.inputs.splice(0, j).flatMap((x) => x.acks) };
  }

  /** There is no backup any more (the primary runs alone): everything held goes at once. */
  releaseAll(): { outputs: O[]; inputs: [number, number][] } {
    return { outputs: this.outputs.splice(0), inputs: this.inputs.splice(0).flatMap((x) => x.acks) };
  }
}
