// Connection ids a host hands out (client-port connections, REST API
// connections, TCP connections through published ports): a u32 whose high
// byte is the host's slot, bit 23 STREAM_CONN_BIT for TCP connections, and the
// low 23 bits taken from blocks the arbiter gives this slot (Arbiter.connBlock),
// each block at most once. A restarted host, or a host that took over a slot,
// never hands out an id its slot handed out in the last 2^23 ids (8,388,608
// connections): only then do the low bits come round again. VMs keep state
// under connection ids (their NIC's connections, outputs kept to resend), so
// an id handed out twice would join two clients' streams.

import { CONN_BLOCK_IDS } from '../limits.ts';
import { STREAM_CONN_BIT } from './ingress.ts';

/** Blocks of CONN_BLOCK_IDS in the 23 low bits of a connection id. */
export const CONN_BLOCKS_PER_SLOT = STREAM_CONN_BIT / CONN_BLOCK_IDS;

/**
 * The low 23 bits of this host's next connection ids. `take` asks the
 * arbiter for the slot's next block (its number; rejects with
 * FTVM_ERR_ARBITER); `said` hears of a take that failed. It keeps one block
 * in use and one spare, and takes the next spare as soon as it starts on one,
 * so a connection never waits for the arbiter.
 */
export class ConnIds {
  private next = 0;
  private end = 0;
  private spare: number | null = null;
  private taking: Promise<void> | null = null;

  constructor(
    private readonly take: () => Promise<number>,
    private readonly said: (e: Error) => void,
  ) {}

  /** Takes the first block and a spare (rejects with FTVM_ERR_ARBITER if the arbiter cannot give them). */
  async start(): Promise<void> {
    this.use(await this.take());
    this.spare = await this.take();
  }

  /** The low 23 bits of a new connection id, or null when none is left (the arbiter could not be reached for a while). */
  id(): number | null {
    if (this.next === this.end) {
      if (this.spare === null) {
        this.refill();
        return null;
      }
      this.use(this.spare);
      this.spare = null;
      this.refill();
    }
    return this.next++;
  }

  private use(block: number): void {
    this.next = (block % CONN_BLOCKS_PER_SLOT) * CONN_BLOCK_IDS;
    this.end = this.next + CONN_BLOCK_IDS;
  }

  /** Takes a new spare block in the background (one take at a time). */
  private refill(): void {
    if (this.taking || this.spare !== null) return;
    this.taking = this.take().then(
      (b) => {
        this.spare = b;
      },
      (e: Error) => this.said(e),
    ).finally(() => {
      this.taking = null;
    });
  }
}
