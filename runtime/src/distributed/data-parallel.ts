/**
 * What the training loop needs from a data-parallel group, over any `ProcessGroup`: one all-reduce per step of the
 * gradients, the loss and the stop flag; the validation-loss reduction; the epoch-boundary stop vote; and the weight
 * broadcast that makes every rank start from rank 0's weights. Each rank's contribution is weighted by its share of
 * the global batch (`perRankBatch / globalBatch`), so the sums are the global batch's means and all ranks apply the
 * same update (ADR 0009). With a single process every method is the identity (no copies).
 */
import * as tf from "@tensorflow/tfjs";
import type { ProcessGroup } from "./process-group.js";

export interface StepReduction {
  /** The all-reduced gradients by name (new tensors when reduced across ranks; the caller disposes them). */
  readonly grads: Map<string, tf.Tensor>;
  readonly loss: number;
  /** Whether any rank asked to stop. */
  readonly stop: boolean;
}

export interface DataParallel {
  readonly rank: number;
  readonly worldSize: number;
  /** This rank's weight in the all-reduced sums (its share of the global batch). */
  readonly share: number;
  /**
   * Sum `grads · share`, `loss · share` and the stop flags of all ranks in one collective. Takes ownership of
   * `grads`: with several ranks they are disposed and replaced by new tensors of `shapes` (by name).
   */
  reduceStep(
    grads: Map<string, tf.Tensor>,
    loss: number,
    stop: boolean,
    shapes: ReadonlyMap<string, readonly number[]>,
  ): Promise<StepReduction>;
  /** The global batch's value of a per-rank mean (validation loss). */
  reduceValue(v: number): Promise<number>;
  /** True on every rank when any rank votes true. */
  anyRank(vote: boolean): Promise<boolean>;
  /** Overwrite every variable with rank 0's values. */
  broadcastWeights(vars: readonly tf.Variable[]): Promise<void>;
  barrier(): Promise<void>;
}

/** The data-parallel view of `group`; `share` = per-rank batch / global batch. */
export function dataParallel(group: ProcessGroup, share: number): DataParallel {
  return new GroupDataParallel(group, share);
}

class GroupDataParallel implements DataParallel {
  constructor(
    private readonly group: ProcessGroup,
    readonly share: number,
  ) {}

  get rank(): number {
    return this.group.rank;
  }

  get worldSize(): number {
    return this.group.worldSize;
  }

  async reduceStep(
    grads: Map<string, tf.Tensor>,
    loss: number,
    stop: boolean,
    shapes: ReadonlyMap<string, readonly number[]>,
  ): Promise<StepReduction> {
    if (this.group.worldSize === 1) return { grads, loss, stop };
    // one buffer per step: [grads · share ..., loss · share, stop flag]
    const names = [...grads.keys()];
    const sizes = names.map((n) => grads.get(n)!.size);
    const total = sizes.reduce((a, b) => a + b, 0);
    const buf = new Float32Array(total + 2);
    let off = 0;
    names.forEach((n, i) => {
      const g = grads.get(n)!;
      const d = g.dataSync();
      for (let k = 0; k < d.length; k++) buf[off + k] = d[k]! * this.share;
      off += sizes[i]!;
      g.dispose();
    });
    buf[total] = loss * this.share;
    buf[total + 1] = stop ? 1 : 0;
    await this.group.allReduceSum(buf);
    const reduced = new Map<string, tf.Tensor>();
    off = 0;
    names.forEach((n, i) => {
      reduced.set(n, tf.tensor(buf.subarray(off, off + sizes[i]!), [...(shapes.get(n) ?? [sizes[i]!])]));
      off += sizes[i]!;
    });
    return { grads: reduced, loss: buf[total], stop: buf[total + 1]! > 0 };
  }

  async reduceValue(v: number): Promise<number> {
    const buf = Float32Array.of(v * this.share);
    await this.group.allReduceSum(buf);
    return buf[0]!;
  }

  async anyRank(vote: boolean): Promise<boolean> {
    const flag = Float32Array.of(vote ? 1 : 0);
    await this.group.allReduceSum(flag);
    return flag[0]! > 0;
  }

  async broadcastWeights(vars: readonly tf.Variable[]): Promise<void> {
    if (this.group.worldSize === 1) return;
    const total = vars.reduce((a, v) => a + v.size, 0);
    const buf = new Float32Array(total);
    let off = 0;
    for (const v of vars) {
      buf.set(v.dataSync(), off);
      off += v.size;
    }
    await this.group.broadcast(buf, 0);
    off = 0;
    for (const v of vars) {
      const t = tf.tensor(buf.subarray(off, off + v.size), v.shape);
      v.assign(t);
      t.dispose();
      off += v.size;
    }
  }

  barrier(): Promise<void> {
    return this.group.barrier();
  }
}
