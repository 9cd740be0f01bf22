/**
 * Seeded pseudo-random numbers with a serialisable state (sfc32, 128-bit state, period ~2^128), seeded through
 * splitmix32. `deriveSeed(seed, ...labels)` gives independent streams, e.g. one per (run seed, "train", batch index),
 * which makes the data loader deterministic regardless of which worker builds which batch.
 */

export type RngState = readonly [number, number, number, number];

function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Hash a seed and any number of integer or string labels into a new 32-bit seed. */
export function deriveSeed(seed: number, ...labels: readonly (number | string)[]): number {
  let h = splitmix32(seed >>> 0);
  for (const l of labels) {
    if (typeof l === "number") {
      h = splitmix32((h ^ (l >>> 0)) >>> 0);
      h = splitmix32((h ^ Math.floor(l / 2 ** 32)) >>> 0);
    } else {
      for (let i = 0; i < l.length; i++) h = splitmix32((h ^ l.charCodeAt(i)) >>> 0);
    }
  }
  return h;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = splitmix32(seed >>> 0);
    this.b = splitmix32(this.a ^ 0x1234567);
    this.c = splitmix32(this.b ^ 0x7654321);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  static fromState(s: RngState): Rng {
    const r = new Rng(0);
    [r.a, r.b, r.c, r.d] = s;
    return r;
  }

  state(): RngState {
    return [this.a, this.b, this.c, this.d];
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  float(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Uniform integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number {
    if (hi < lo) throw new RangeError(`empty integer range [${lo}, ${hi}]`);
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** k distinct indices of [0, n) chosen uniformly without replacement (partial Fisher-Yates), in draw order. */
  sample(n: number, k: number): number[] {
    if (k > n) throw new RangeError(`cannot sample ${k} of ${n}`);
    const idx = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < k; i++) {
      const j = this.int(i, n - 1);
      const t = idx[i]!;
      idx[i] = idx[j]!;
      idx[j] = t;
    }
    return idx.slice(0, k);
  }
}
