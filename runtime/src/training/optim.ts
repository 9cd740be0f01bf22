/**
 * Optimisers with PyTorch semantics, operating on `tf.Variable`s keyed by their PyTorch state-dict names.
 *
 * - `SgdNesterov`: `torch.optim.SGD(lr, momentum, nesterov=True, weight_decay)`: the weight decay is added to the
 *   gradient *before* the momentum buffer (L2 style), `buf = μ·buf + g` (dampening 0; PyTorch's first step
 *   `buf = g` is the same as starting from a zero buffer), update `p -= lr·(g + μ·buf)`.
 * - `AdamW`: `torch.optim.AdamW(lr, betas, eps=1e-8, weight_decay, amsgrad=False)`: decoupled decay
 *   `p *= 1 − lr·wd`, bias-corrected moments, `p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps)`.
 *
 * Every op runs inside `tf.tidy`; slot variables are owned by the optimiser and released by `dispose()`. The state
 * (step count, hyper-parameters, slots as plain Float32Arrays) is exported for checkpoints and imported on resume.
 */
import * as tf from "@tensorflow/tfjs";
import { TrainingError } from "../errors.js";

export interface SlotTensor {
  readonly shape: number[];
  readonly data: Float32Array;
}

export interface OptimizerState {
  readonly kind: "sgd-nesterov" | "adamw";
  readonly step: number;
  readonly lr: number;
  readonly hyper: Readonly<Record<string, number>>;
  /** slot name (e.g. `momentum_buffer`, `exp_avg`) → parameter name → values */
  readonly slots: Readonly<Record<string, Readonly<Record<string, SlotTensor>>>>;
}

export interface Optimizer {
  readonly kind: OptimizerState["kind"];
  /** Learning rate used by the next `step` (set by the schedule once per epoch). */
  lr: number;
  readonly stepCount: number;
  /** Apply one update. `grads` must hold a gradient for every name in `params` (missing gradient = zero update). */
  step(params: ReadonlyMap<string, tf.Variable>, grads: ReadonlyMap<string, tf.Tensor>): void;
  exportState(): Promise<OptimizerState>;
  importState(state: OptimizerState, params: ReadonlyMap<string, tf.Variable>): void;
  dispose(): void;
}

export interface SgdOptions {
  readonly lr?: number;
  readonly momentum?: number;
  readonly weightDecay?: number;
}

export interface AdamWOptions {
  readonly lr?: number;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  readonly weightDecay?: number;
}

abstract class SlotOptimizer implements Optimizer {
  abstract readonly kind: OptimizerState["kind"];
  lr: number;
  protected steps = 0;
  protected readonly slots = new Map<string, Map<string, tf.Variable>>();

  constructor(
    lr: number,
    private readonly slotNames: readonly string[],
  ) {
    this.lr = lr;
    for (const s of slotNames) this.slots.set(s, new Map());
  }

  get stepCount(): number {
    return this.steps;
  }

  protected abstract hyper(): Record<string, number>;
  protected abstract applyOne(p: tf.Variable, g: tf.Tensor, slot: (name: string) => tf.Variable): void;

  protected slot(slotName: string, paramName: string, p: tf.Variable): tf.Variable {
    const m = this.slots.get(slotName)!;
    let v = m.get(paramName);
    if (v === undefined) {
      v = tf.variable(
        tf.zerosLike(p),
        false,
        `${this.kind}/${slotName}/${paramName}/${Math.random().toString(36).slice(2)}`,
      );
      m.set(paramName, v);
    }
    return v;
  }

  step(params: ReadonlyMap<string, tf.Variable>, grads: ReadonlyMap<string, tf.Tensor>): void {
    this.steps += 1;
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (g === undefined) continue;
      tf.tidy(() => {
        this.applyOne(p, g, (s) => this.slot(s, name, p));
      });
    }
  }

  async exportState(): Promise<OptimizerState> {
    const slots: Record<string, Record<string, SlotTensor>> = {};
    for (const [s, m] of this.slots) {
      const out: Record<string, SlotTensor> = {};
      for (const [name, v] of m) out[name] = { shape: [...v.shape], data: (await v.data()) as Float32Array };
      slots[s] = out;
    }
    return { kind: this.kind, step: this.steps, lr: this.lr, hyper: this.hyper(), slots };
  }

  importState(state: OptimizerState, params: ReadonlyMap<string, tf.Variable>): void {
    if (state.kind !== this.kind) {
      throw new TrainingError(`checkpoint optimizer is ${state.kind}, the trainer uses ${this.kind}`, {
        field: "optimizer_state.kind",
      });
    }
    this.disposeSlots();
    this.steps = state.step;
    this.lr = state.lr;
    for (const s of this.slotNames) {
      const src = state.slots[s] ?? {};
      const m = this.slots.get(s)!;
      for (const [name, t] of Object.entries(src)) {
        const p = params.get(name);
        if (p === undefined)
          throw new TrainingError(`optimizer state has a slot for unknown parameter ${name}`, {
            field: `optimizer_state.slots.${s}`,
          });
        if (p.shape.join(",") !== t.shape.join(",")) {
          throw new TrainingError(
            `optimizer slot shape [${t.shape.join(",")}] does not match parameter [${p.shape.join(",")}]`,
            { field: `optimizer_state.slots.${s}.${name}` },
          );
        }
        m.set(
          name,
          tf.variable(
            tf.tensor(t.data, t.shape, "float32"),
            false,
            `${this.kind}/${s}/${name}/${Math.random().toString(36).slice(2)}`,
          ),
        );
      }
    }
  }

  private disposeSlots(): void {
    for (const m of this.slots.values()) {
      for (const v of m.values()) v.dispose();
      m.clear();
    }
  }

  dispose(): void {
    this.disposeSlots();
  }
}

export class SgdNesterov extends SlotOptimizer {
  readonly kind = "sgd-nesterov" as const;
  readonly momentum: number;
  readonly weightDecay: number;

  constructor(opts: SgdOptions = {}) {
    super(opts.lr ?? 1e-2, ["momentum_buffer"]);
    this.momentum = opts.momentum ?? 0.99;
    this.weightDecay = opts.weightDecay ?? 3e-5;
  }

  protected hyper(): Record<string, number> {
    return { momentum: this.momentum, weight_decay: this.weightDecay };
  }

  protected applyOne(p: tf.Variable, g: tf.Tensor, slot: (name: string) => tf.Variable): void {
    const buf = slot("momentum_buffer");
    const d = this.weightDecay === 0 ? g : tf.add(g, tf.mul(p, this.weightDecay));
    const nb = tf.add(tf.mul(buf, this.momentum), d);
    buf.assign(nb);
    const upd = tf.add(d, tf.mul(nb, this.momentum));
    p.assign(tf.sub(p, tf.mul(upd, this.lr)));
  }
}

export class AdamW extends SlotOptimizer {
  readonly kind = "adamw" as const;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;

  constructor(opts: AdamWOptions = {}) {
    super(opts.lr ?? 3e-4, ["exp_avg", "exp_avg_sq"]);
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.98;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 5e-2;
  }

  protected hyper(): Record<string, number> {
    return { beta1: this.beta1, beta2: this.beta2, eps: this.eps, weight_decay: this.weightDecay };
  }

  protected applyOne(p: tf.Variable, g: tf.Tensor, slot: (name: string) => tf.Variable): void {
    const m = slot("exp_avg");
    const v = slot("exp_avg_sq");
    const t = this.steps;
    const decayed = this.weightDecay === 0 ? p : tf.mul(p, 1 - this.lr * this.weightDecay);
    const nm = tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1));
    const nv = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
    m.assign(nm);
    v.assign(nv);
    const bc1 = 1 - Math.pow(this.beta1, t);
    const bc2 = 1 - Math.pow(this.beta2, t);
    const denom = tf.add(tf.div(tf.sqrt(nv), Math.sqrt(bc2)), this.eps);
    p.assign(tf.sub(decayed, tf.mul(tf.div(nm, denom), this.lr / bc1)));
  }
}

/**
 * Clip gradients by their global L2 norm like `torch.nn.utils.clip_grad_norm_(max_norm)`: every gradient is scaled
 * by `min(1, maxNorm / (norm + 1e-6))` (torch clamps the coefficient, so a norm within 1e-6 below `maxNorm` is
 * scaled too). Returns the new gradient map (caller disposes) and the pre-clipping norm (`Infinity`/`NaN`
 * propagate, which the non-finite guard catches).
 */
export function clipByGlobalNorm(
  grads: ReadonlyMap<string, tf.Tensor>,
  maxNorm: number | undefined,
): { grads: Map<string, tf.Tensor>; norm: number } {
  const names = [...grads.keys()];
  const normT = tf.tidy(() => {
    const sq = names.map((n) => tf.sum(tf.square(grads.get(n)!)));
    return sq.length === 0 ? tf.scalar(0) : tf.sqrt(tf.addN(sq));
  });
  const norm = normT.dataSync()[0]!;
  normT.dispose();
  const out = new Map<string, tf.Tensor>();
  const coef = maxNorm !== undefined && Number.isFinite(norm) ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
  for (const n of names) {
    const g = grads.get(n)!;
    out.set(n, coef === 1 ? tf.clone(g) : tf.tidy(() => tf.mul(g, coef)));
  }
  return { grads: out, norm };
}

/**
 * Non-finite guard: a step whose loss or gradient norm is NaN/Inf is skipped (no update), counted, and after
 * `maxConsecutive` such steps in a row training fails with a TrainingError.
 */
export class NonFiniteGuard {
  private consecutive = 0;
  total = 0;

  constructor(readonly maxConsecutive: number) {}

  /** Returns true if the step may be applied; false if it must be skipped. Throws after too many in a row. */
  check(loss: number, gradNorm: number, where: { epoch: number; step: number }): boolean {
    if (Number.isFinite(loss) && Number.isFinite(gradNorm)) {
      this.consecutive = 0;
      return true;
    }
    this.consecutive += 1;
    this.total += 1;
    if (this.consecutive >= this.maxConsecutive) {
      throw new TrainingError(
        `training diverged: ${this.consecutive} consecutive non-finite steps (loss=${loss}, grad norm=${gradNorm}) at epoch ${where.epoch}, step ${where.step}; lower the learning rate or check the data`,
      );
    }
    return false;
  }

  get consecutiveCount(): number {
    return this.consecutive;
  }
}
