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
  /**
   * Sends the requests `unanswered()` names (their texts) every `everyMs`
   * until it names none, at most `ms`: a send may be refused
   * (FTVM_ERR_BUSY) or lost in a failover, so every request is retried.
   */
  private async untilAnswered(what: string, unanswered: () => string[], everyMs: number, ms: number): Promise<void> {
    let sentAt = -Infinity;
    await eventually(
      what,
      () => {
        const texts = unanswered();
        if (!texts.length) return true;
        if (performance.now() - sentAt >= everyMs) {
          sentAt = performance.now();
          for (const t of texts) this.client.send(this.vm, t);
        }
        return undefined;
      },
      ms,
    );
  }
  /** Retries what is unanswered until everything is. */
  async drain(ms = 20_000): Promise<void> {
    await this.untilAnswered('every write answered', () => [...this.pending.values()].map((p) => p.text), 150, ms);
  }
  /** Reads every acknowledged key back; returns the ones missing or wrong. */
  async verify(): Promise<string[]> {
    const bad: string[] = [];
    const keys = [...this.acked.keys()];
    for (let i = 0; i < keys.length; i += 200) {
      const batch = keys.slice(i, i + 200);
      await this.untilAnswered(`reads of ${batch.length} keys`, () => batch.filter((k) => !this.answers.has(`g-${k}`)).map((k) => `g-${k} GET ${k}`), 700, 30_000);
      for (const k of batch) if (this.answers.get(`g-${k}`) !== `g-${k} VALUE ${this.acked.get(k)}`) bad.push(k);
    }
    return bad;
  }
}

