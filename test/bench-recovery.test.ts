// `ftvm bench recovery` in miniature (seconds, not minutes; 2 MiB guests):
// the report has its shape, every figure is a measurement (RSS of three real
// host processes, a re-creation of each VM's backup through REST timed by the
// primary's host and by the bench), the old VM wrote more log than the young
// one, and the table prints every row. It measures nothing: the README's
// figures come from the 10-minute run.
import { describe, expect, it } from 'vitest';
import { benchRecovery, formatRecoveryReport, slope } from '../host/bench/recovery.ts';

describe('ftvm bench recovery', () => {
  it('the slope is the least-squares one', () => {
    expect(slope([[0, 1], [1, 3], [2, 5]])).toBeCloseTo(2);
    expect(slope([[0, 7]])).toBe(0);
  });

  it('reports RSS per host and the re-creation of an old and a young VM of the same memory', async () => {
    const r = await benchRecovery({ minutes: 0.3, youngMinutes: 0.1, memoryMiB: 2, rate: 50, trials: 1, sampleEverySeconds: 2 });
    expect(r.hosts.map((h) => h.id)).toEqual(['h1', 'h2', 'h3']);
    for (const h of r.hosts) {
      expect(h.rssMiB.first).toBeGreaterThan(10);
      expect(h.rssMiB.max).toBeGreaterThanOrEqual(Math.max(h.rssMiB.first, h.rssMiB.last));
      expect(Number.isFinite(h.slopeMiBPerMinute)).toBe(true);
    }
    expect(r.samples.length).toBeGreaterThanOrEqual(5);
    expect(r.vms.map((v) => v.name)).toEqual(['old', 'young']);
    const [old, young] = r.vms as [(typeof r.vms)[0], (typeof r.vms)[0]];
    expect(old.ageMinutes).toBeGreaterThan(young.ageMinutes);
    expect(old.logEntries).toBeGreaterThan(young.logEntries);
    for (const v of r.vms) {
      expect(v.trials).toHaveLength(1);
      expect(v.memoryBytes).toBeGreaterThanOrEqual(2 * 1024 * 1024);
      expect(v.recreateMs).toBeGreaterThan(0);
      expect(v.syncMs).toBeGreaterThanOrEqual(v.recreateMs);
      expect(v.pauseMs).toBeGreaterThan(0);
      expect(v.answered).toBeGreaterThan(0);
      expect(v.answered).toBeLessThanOrEqual(v.sent);
    }
    expect(Number.isFinite(r.ratios.recreateMs)).toBe(true);
    expect(r.ratios.logEntries).toBeGreaterThan(1);
    const text = formatRecoveryReport(r);
    expect(text).toMatch(/^\| h1 /m);
    expect(text).toMatch(/^\| old /m);
    expect(text).toMatch(/^\| young /m);
    expect(text).toMatch(/old \/ young: re-creation [\d.]+x/);
  }, 180_000);
});
