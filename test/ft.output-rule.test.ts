// The Output Rule's bookkeeping, without processes: nothing leaves before the
// backup acknowledged the entry that produced it, and everything leaves once it did.
import { describe, expect, it } from 'vitest';
import { OutputRule } from '../host/ft/output-rule.ts';

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
