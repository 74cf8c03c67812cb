// The Output Rule's bookkeeping, without processes: nothing leaves before the
// backup acknowledged the entry that produced it, and everything leaves once it did.
import { describe, expect, it } from 'vitest';
import { joinOutputs, OutputRule } from '../host/ft/output-rule.ts';

describe('the Output Rule', () => {
  it('releases outputs in log order, only through the acknowledged entry', () => {
    const r = new OutputRule<{ seq: number; tag: string }>();
    r.hold([{ seq: 3, tag: 'a' }, { seq: 5, tag: 'b' }]);
    r.hold([{ seq: 9, tag: 'c' }]);
    expect(r.held).toBe(3);
    expect(r.acked(2).outputs).toEqual([]);
    expect(r.acked(5).outputs.map((o) => o.tag)).toEqual(['a', 'b']);
    // an older acknowledgement arriving late releases nothing again
    expect(r.acked(4).outputs).toEqual([]);
    expect(r.held).toBe(1);
    expect(r.acked(9).outputs.map((o) => o.tag)).toEqual(['c']);
    expect(r.held).toBe(0);
  });

  it("reports a client's input positions once the log that delivered them is acknowledged, merging those of one entry", () => {
    const r = new OutputRule<{ seq: number }>();
    r.inputDelivered(4, [[7, 10]]);
    r.inputDelivered(4, [[8, 3]]);
    r.inputDelivered(6, [[7, 25]]);
    expect(r.acked(3).inputs).toEqual([]);
    expect(r.acked(4).inputs).toEqual([[7, 10], [8, 3]]);
    expect(r.acked(6).inputs).toEqual([[7, 25]]);
    expect(r.acked(100).inputs).toEqual([]);
  });

  it('lets everything go at once when the primary is left without a backup', () => {
    const r = new OutputRule<{ seq: number }>();
    r.hold([{ seq: 1 }, { seq: 2 }]);
    r.inputDelivered(2, [[1, 5]]);
    expect(r.releaseAll()).toEqual({ outputs: [{ seq: 1 }, { seq: 2 }], inputs: [[1, 5]] });
    expect(r.held).toBe(0);
  });
});

describe('joined outputs', () => {
  it("joins each run of writes on one fd into one output with the run's last sequence number, and keeps sends and order", () => {
    const w = (seq: number, fd: number, s: string) => ({ seq, kind: 'output', fd, bytes: new Uint8Array(Buffer.from(s)) });
    const send = (seq: number) => ({ seq, kind: 'send', fd: -1, bytes: new Uint8Array([seq]) });
    const joined = joinOutputs([w(1, 1, 'a'), w(2, 1, 'b'), w(3, 2, 'E'), w(4, 2, 'F'), send(5), w(6, 1, 'c'), w(7, 1, 'd')]);
    expect(joined.map((o) => [o.seq, o.kind, o.fd, Buffer.from(o.bytes).toString()])).toEqual([
      [2, 'output', 1, 'ab'],
      [4, 'output', 2, 'EF'],
      [5, 'send', -1, '\u0005'],
      [7, 'output', 1, 'cd'],
    ]);
    // the same bytes in the same order: a reader of the stream sees no difference
    const one = [w(1, 1, 'x')];
    expect(joinOutputs(one)).toBe(one);
  });

  it('counts the bytes it holds, and lets go of them with the outputs', () => {
    const r = new OutputRule<{ seq: number; bytes: Uint8Array }>();
    r.hold([{ seq: 1, bytes: new Uint8Array(10) }, { seq: 2, bytes: new Uint8Array(5) }]);
    expect(r.heldBytes).toBe(15);
    r.acked(1);
    expect(r.heldBytes).toBe(5);
    r.releaseAll();
    expect([r.held, r.heldBytes]).toEqual([0, 0]);
  });
});
