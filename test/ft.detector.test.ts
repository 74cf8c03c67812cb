// The failure detector, on a clock the test moves.
import { describe, expect, it } from 'vitest';
import { FailureDetector } from '../host/ft/detector.ts';

describe('the failure detector', () => {
  it('takes a peer for alive while heard from within the timeout, and for dead after', () => {
    let now = 1000;
    const d = new FailureDetector(600, () => now);
    expect(d.alive('h2')).toBe(false);
    d.heard('h2');
    now += 599;
    expect(d.alive('h2')).toBe(true);
    now += 1;
    expect(d.alive('h2')).toBe(false);
    d.heard('h2');
    expect(d.alive('h2')).toBe(true);
    now += 250;
    expect(d.silentMs('h2')).toBe(250);
    d.forget('h2');
    expect(d.alive('h2')).toBe(false);
    expect(d.silentMs('h2')).toBe(Infinity);
  });

  it('gives a new pairing two timeouts before its silent partner counts as dead', () => {
    let now = 0;
    const d = new FailureDetector(600, () => now);
    const since = now;
    now = 1199;
    expect(d.partnerDead('h3', since)).toBe(false);
    now = 1200;
    expect(d.partnerDead('h3', since)).toBe(true);
    d.heard('h3');
    expect(d.partnerDead('h3', since)).toBe(false);
    now += 600;
    expect(d.partnerDead('h3', since)).toBe(true);
  });

  it('refuses a timeout that is not positive', () => {
    expect(() => new FailureDetector(0)).toThrow(RangeError);
  });
});
