// Proves that a broken invariant of the FT bookkeeping stops the process with
// one line carrying FTVM_ERR_INVARIANT and exit status 70, before anything
// after it runs: a forbidden replica-state move, outputs or inputs held out of
// log order in the Output Rule, and a primary count that goes back in the lag
// meter. And that the allowed cases go on as before.

import { describe, expect, it } from 'vitest';
import { INVARIANT_EXIT_STATUS } from '../host/assert.ts';
import { runSnippet } from './helpers-invariant.ts';

/** Runs `body` after importing the ft modules; prints "went on" if the process was not stopped. */
async function broken(body: string) {
  const r = await runSnippet(`
    import { assertTransition } from './host/ft/replica-state.ts';
    import { OutputRule } from './host/ft/output-rule.ts';
    import { LagMeter } from './host/ft/lag.ts';
    import { invariant } from './host/assert.ts';
    ${body}
    process.stdout.write('went on\\n');`);
  return r;
}

function expectStopped(r: { status: number | null; stdout: string; stderr: string }, what: RegExp): void {
  expect(r.stdout, r.stderr).toBe('');
  expect(r.status).toBe(INVARIANT_EXIT_STATUS);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^ftvm: FTVM_ERR_INVARIANT: /);
  expect(lines[0]).toMatch(what);
}

describe('invariants stop the process', () => {
  it('allowed moves and ordered bookkeeping go on', async () => {
    const r = await broken(`
      assertTransition('v', 'following', 'going-live');
      assertTransition('v', 'recreating-backup', 'alone');
      const rule = new OutputRule();
      rule.hold([{ seq: 3 }, { seq: 3 }, { seq: 5 }]);
      rule.inputDelivered(4, [[1, 2]]);
      rule.inputDelivered(4, [[1, 3]]);
      const lag = new LagMeter(() => 0);
      lag.mark(5n); lag.mark(5n); lag.mark(9n);
      invariant(true, 'never said');`);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('went on\n');
    expect(r.status).toBe(0);
  });

  it('a replica-state move the protocol does not allow', async () => {
    expectStopped(await broken(`assertTransition('vm-7', 'following', 'live');`), /vm-7: a replica cannot go from following to live/);
    expectStopped(await broken(`assertTransition('v', 'stopped', 'following');`), /cannot go from stopped to following/);
  });

  it('an output held before one of an earlier log entry', async () => {
    expectStopped(await broken(`const r = new OutputRule(); r.hold([{ seq: 9 }]); r.hold([{ seq: 4 }]);`), /Output Rule: output of log entry 4 held after one of entry 9/);
  });

  it('an input delivered by an earlier log entry than the last', async () => {
    expectStopped(await broken(`const r = new OutputRule(); r.inputDelivered(6, [[1, 1]]); r.inputDelivered(5, [[1, 2]]);`), /input delivered by log entry 5 after input of entry 6/);
  });

  it("a primary's count that goes back in the lag meter", async () => {
    expectStopped(await broken(`const l = new LagMeter(() => 0); l.mark(10n); l.mark(7n);`), /count went back from 10 to 7/);
  });

  it('a message over several lines is said on one', async () => {
    expectStopped(await broken(`invariant(1 > 2, 'first\\n  second');`), /: first second$/);
  });
});
