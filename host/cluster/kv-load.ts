// A key-value workload for the kv sample: unique-key writes at a steady rate,
// each retried with the same id until answered, and a read-back of every
// write the VM acknowledged. Used by the demo, the FT benchmark and the tests.

import type { FtClient } from './client.ts';
import { eventually } from './local.ts';

/** Unique-key writes at a steady rate, each retried (same id) until answered. */
export class KvLoad {
  private n = 0;
  private timer: NodeJS.Timeout | null = null;
  readonly pending = new Map<string, { text: string; key: string; value: string; sentAt: number }>();
  /** writes the VM acknowledged: key -> value */
  readonly acked = new Map<string, string>();
  readonly answers = new Map<string, string>();
  constructor(
    private readonly client: FtClient,
    private readonly vm: string,
  ) {
    client.on('recv', (r) => {
      const text = Buffer.from(r.data).toString();
      const id = text.split(' ')[0]!;
      const p = this.pending.get(id);
      this.answers.set(id, text);
      if (!this.answeredAt.has(id)) this.answeredAt.set(id, performance.now());
      if (!p) return;
      this.pending.delete(id);
      if (/^\S+ OK \d+$/.test(text)) this.acked.set(p.key, p.value);
    });
  }
  /** when each write was answered (ms, performance.now) */
  readonly answeredAt = new Map<string, number>();
  /** writes sent so far */
  get sent(): number {
    return this.n;
  }

  start(): void {
    this.timer = setInterval(() => {
      for (let k = 0; k < 3; k++) {
        const i = this.n++;
        const p = { text: `w${i} SET key${i} value${i}`, key: `key${i}`, value: `value${i}`, sentAt: Date.now() };
        this.pending.set(`w${i}`, p);
        this.client.send(this.vm, p.text);
      }
      const now = Date.now();
      for (const p of this.pending.values()) {
        if (now - p.sentAt > 700) {
          p.sentAt = now;
          this.client.send(this.vm, p.text);
        }
      }
    }, 5);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
  /** Retries what is unanswered until everything is. */
  async drain(ms = 20_000): Promise<void> {
    await eventually(
      'every write answered',
      async () => {
        for (const p of this.pending.values()) this.client.send(this.vm, p.text);
        await new Promise((r) => setTimeout(r, 150));
        return this.pending.size === 0 ? true : undefined;
      },
      ms,
    );
  }
  /** Reads every acknowledged key back; returns the ones missing or wrong. */
  async verify(): Promise<string[]> {
    const bad: string[] = [];
    const keys = [...this.acked.keys()];
    for (let i = 0; i < keys.length; i += 200) {
      const batch = keys.slice(i, i + 200);
      // a read is retried until answered, as every request is: a send may be refused (FTVM_ERR_BUSY) or lost in a failover
      let sentAt = 0;
      await eventually(
        `reads of ${batch.length} keys`,
        () => {
          const unanswered = batch.filter((k) => !this.answers.has(`g-${k}`));
          if (!unanswered.length) return true;
          if (performance.now() - sentAt >= 700) {
            sentAt = performance.now();
            for (const k of unanswered) this.client.send(this.vm, `g-${k} GET ${k}`);
          }
          return undefined;
        },
        30_000,
      );
      for (const k of batch) if (this.answers.get(`g-${k}`) !== `g-${k} VALUE ${this.acked.get(k)}`) bad.push(k);
    }
    return bad;
  }
}

