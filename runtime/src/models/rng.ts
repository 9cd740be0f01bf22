/**
 * Deterministic random numbers for weight initialisation, drop path and token masking (mulberry32 + Box-Muller).
 * Not bit-identical to PyTorch's generator (impossible across frameworks); the distributions are the same.
 */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
  }

  /** U[0,1). */
  uniform(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** N(0,1). */
  normal(): number {
    let u = this.uniform();
    while (u <= 1e-12) u = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** A child generator with an independent stream (for per-parameter init that does not depend on order). */
  fork(salt: number): Rng {
    return new Rng((this.uniform() * 4294967296) ^ Math.imul(salt, 0x85ebca6b));
  }

  fillUniform(n: number, lo: number, hi: number): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * this.uniform();
    return a;
  }

  fillNormal(n: number, std: number): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = std * this.normal();
    return a;
  }

  /** timm trunc_normal_(std, a=-2, b=2): N(0,std²) restricted to [a,b] (absolute bounds) by rejection. */
  fillTruncNormal(n: number, std: number, a = -2, b = 2): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let v = std * this.normal();
      while (v < a || v > b) v = std * this.normal();
      out[i] = v;
    }
    return out;
  }
}
