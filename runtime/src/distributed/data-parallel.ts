/**
 * What the training loop needs from a data-parallel group, over any `ProcessGroup`: one all-reduce per step of the
 * gradients, the loss and the stop flag; the validation-loss reduction; the epoch-boundary stop vote; and the weight
 * broadcast that makes every rank start from rank 0's weights. Each rank's contribution is weighted by its share of
 * the global batch (`perRankBatch / globalBatch`), so the sums are the global batch's means and all ranks apply the
 * same update (ADR 0009). With a single process every method is the identity (no copies).
 */
import * as tf from "@tensorflow/tfjs";
import { scaleInto } from "./float32.js";
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

/**
 * The step's one buffer, [grads · share ..., loss · share, stop flag], gradients in `names` order (every tensor fused
 * into one collective: one ring pass per step, not per tensor), written into `into` when it has the right length.
 * The gradients are disposed once copied.
 */
export function packStep(
  names: readonly string[],
  grads: ReadonlyMap<string, tf.Tensor>,
  share: number,
  loss: number,
  stop: boolean,
  into?: Float32Array,
): Float32Array {
  const total = names.reduce((a, n) => a + grads.get(n)!.size, 0);
  const buf = into?.length === total + 2 ? into : new Float32Array(total + 2);
  let off = 0;
  for (const n of names) {
    const g = grads.get(n)!;
    scaleInto(buf.subarray(off, off + g.size), g.dataSync() as Float32Array, share);
    off += g.size;
    g.dispose();
  }
  buf[total] = loss * share;
  buf[total + 1] = stop ? 1 : 0;
  return buf;
}

/**
 * New tensors over consecutive ranges of `buf` (of `sizes`) in `names` order, of the shape in `shapes` (else the packed tensor's
 * size). They are views of `buf` where the backend keeps a typed array as it is given (cpu, and tfjs-node until
 * first use), so `buf` may be written again only once the backend has released every one of them (`released`).
 */
export function unpackGradients(
  buf: Float32Array,
  names: readonly string[],
  sizes: readonly number[],
  shapes: ReadonlyMap<string, readonly number[]>,
): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  let off = 0;
  for (const [i, n] of names.entries()) {
    const size = sizes[i]!;
    out.set(n, tf.tensor(buf.subarray(off, off + size), [...(shapes.get(n) ?? [size])]));
    off += size;
  }
  return out;
}

/** Whether the backend has let go of the data of every tensor in `views` (disposed, and no clone or reshape left). */
export function released(views: readonly tf.Tensor[]): boolean {
  const backend = tf.engine().backend;
  return views.every((t) => backend.refCount(t.dataId) === 0);
}

/** The data-parallel view of `group`; `share` = per-rank batch / global batch. */
export function dataParallel(group: ProcessGroup, share: number): DataParallel {
  return new GroupDataParallel(group, share);
}

class GroupDataParallel implements DataParallel {
  /**
   * Last step's buffer and the tensors that view it: reused when they are all released (the usual case: the loop
   * disposes the step's gradients after the update), which spares a fresh allocation of the whole gradient set and
   * its page faults every step.
   */
  private last: { buf: Float32Array; views: tf.Tensor[] } | undefined;

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
    const names = [...grads.keys()];
    const sizes = names.map((n) => grads.get(n)!.size);
    const spare = this.last !== undefined && released(this.last.views) ? this.last.buf : undefined;
    this.last = undefined;
    const buf = packStep(names, grads, this.share, loss, stop, spare);
    await this.group.allReduceSum(buf);
    const total = buf.length - 2;
    const reduced = unpackGradients(buf, names, sizes, shapes);
    this.last = { buf, views: [...reduced.values()] };
    return { grads: reduced, loss: buf[total]!, stop: buf[total + 1]! > 0 };
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
