// Determinism: the same guest with the same inputs gives the same count and
// the same output on every run, and a trapping guest traps at the same count.
import { describe, expect, it } from 'vitest';
import { compileGuest, runGuest } from '../host/runtime/guest.ts';
import { fixedNondeterminism, sampleBytes, samples, text } from './helpers.ts';

describe('every sample is deterministic', () => {
  it.each(samples().map((g) => [g.name, g] as const))('%s: two runs, same count and output', (_n, g) => {
    const args = [g.name, ...g.args_test];
    // Compiled separately each time, so nothing is shared between the runs but the bytes.
    const nondeterminism = fixedNondeterminism;
    const a = runGuest(compileGuest(sampleBytes(g), { cacheDir: null }), { args, nondeterminism: nondeterminism() });
    const b = runGuest(compileGuest(sampleBytes(g), { cacheDir: null }), { args, nondeterminism: nondeterminism() });
    expect(a.count).not.toBeNull();
    expect(a.count).toBeGreaterThan(1000n);
    expect(b.count).toBe(a.count);
    expect(text(b.stdout)).toBe(text(a.stdout));
    expect(b.outcome).toBe(a.outcome);
    expect(b.exitCode).toBe(a.exitCode);
  });

  it('a trapping guest traps at the same count every time, and later with more work', () => {
    const g = samples().find((s) => s.name === 'trap')!;
    const runs = [1, 2, 3].map(() => runGuest(sampleBytes(g), { args: ['trap', '1000'] }));
    for (const r of runs) {
      expect(r.outcome).toBe('trap');
      expect(r.trap).toMatch(/divide by zero/);
      expect(r.count).toBe(runs[0]!.count);
    }
    const more = runGuest(sampleBytes(g), { args: ['trap', '2000'] });
    expect(more.count).toBeGreaterThan(runs[0]!.count!);
  });

  it('the count grows with the workload (the counter is not a constant)', () => {
    const g = samples().find((s) => s.name === 'fib')!;
    const small = runGuest(sampleBytes(g), { args: ['fib', '10'] });
    const large = runGuest(sampleBytes(g), { args: ['fib', '15'] });
    expect(large.count! > small.count! * 5n).toBe(true);
  });
});
