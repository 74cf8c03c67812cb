// The campaign's one source of randomness: a seeded PRNG, so that the same
// seed draws the same schedule of faults and the same client operations'
// kinds and keys (what happens at run time still depends on timing).
//
// The generator is mulberry32 (Tommy Ettinger's 32-bit state mixer, public
// domain): small, fast, and good enough to pick faults. It is written here
// rather than taken from npm because the one well-kept generator in
// node_modules (pure-rand) is only a development dependency of fast-check.

/** A seeded pseudo-random generator; `seed` is any integer (its low 32 bits are used). */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max] (both included). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** One element of a non-empty array. */
  pick<T>(xs: readonly T[]): T {
    if (!xs.length) throw new Error('Prng.pick of an empty array');
    return xs[Math.floor(this.next() * xs.length)]!;
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** The elements of `xs` in a random order (a copy). */
  shuffle<T>(xs: readonly T[]): T[] {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
}
