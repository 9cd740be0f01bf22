/**
 * Reverse-mode gradients that free memory as the backward pass goes, like PyTorch's autograd.
 *
 * `tf.variableGrads` (tfjs-core 4.22 `engine.gradients`) keeps every tensor saved for the gradient AND every
 * intermediate gradient until the whole backward pass has ended, so its peak is all saved activations plus the
 * gradients of all of them: 2.3× PyTorch's peak for a ResEnc-L step (ADR 0008). `valueAndGrads` records the same tape
 * with the same gradient functions (the results are bit-identical), but walks it with two releases:
 *
 * - after a node's input gradients are computed, the gradients of its outputs are disposed (they have no other
 *   consumer: every consumer of an output comes later on the tape, so it was processed earlier in the backward walk),
 *   and so are the tensors that node saved for its gradient;
 * - nodes that do not lie between the variables and the loss (data preparation, masks) drop their saved tensors
 *   before the backward walk starts.
 *
 * Each node processes its gradients inside its own `tidy`, so zero-filled `dy`s and temporaries die with it.
 *
 * And one saving in the forward pass: the gradients of `Add`, `Sub`, `Reshape`, `PadV2`, `Slice`, `Concat`, `Mean`
 * and `Sum` read only the SHAPES of the tensors they save (checked in tfjs-core 4.22's gradient configs), yet tfjs
 * keeps the tensors, and with them their data: a conv's bias add kept the conv's whole output alive (~1 GiB of a
 * ResEnc-L step at 96³). While `f` runs, those kernels save a shape-only stand-in instead.
 *
 * It uses the engine's tape (`startTape`/`endTape`, `state.activeTape`): internal API of tfjs-core, pinned in
 * package.json; `backprop.test.ts` compares it against `tf.variableGrads` on every run so an upgrade that changes the
 * tape shows up as a failing test, not as wrong gradients. Nested use (inside another gradient computation) falls
 * back to `tf.variableGrads`.
 */
import * as tf from "@tensorflow/tfjs";

interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}

interface EngineInternals {
  state: { gradientDepth: number; activeTape: TapeNode[] | null };
  getTensorsForGradient(kernelName: string, inputs: unknown, outputs: tf.Tensor[]): tf.Tensor[];
  saveTensorsForBackwardMode(tensors: tf.Tensor[]): tf.Tensor[];
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
}

export interface ValueAndGrads {
  readonly value: tf.Scalar;
  /** Gradient per variable name; variables the loss does not depend on are absent (like `tf.variableGrads`). */
  readonly grads: Record<string, tf.Tensor>;
}

function engine(): EngineInternals {
  const e = tf.engine() as unknown as Partial<EngineInternals>;
  for (const m of [
    "startTape",
    "endTape",
    "scopedRun",
    "tidy",
    "getTensorsForGradient",
    "saveTensorsForBackwardMode",
  ] as const) {
    if (typeof e[m] !== "function")
      throw new Error(`valueAndGrads: this tfjs-core engine has no ${m}() (tfjs-core 4.x expected)`);
  }
  if (e.state === undefined)
    throw new Error("valueAndGrads: this tfjs-core engine has no state (tfjs-core 4.x expected)");
  return e as EngineInternals;
}

/** Kernels whose registered gradient reads only `.shape`/`.rank` of what it saved (tfjs-core 4.22). */
const SHAPE_ONLY_SAVES = new Set(["Add", "Sub", "Reshape", "PadV2", "Slice", "Concat", "Mean", "Sum"]);

const SHAPE_ONLY = Symbol("ssl3d.shapeOnly");

/** What a shape-only gradient sees of a saved tensor: its shape, never its data. */
function shapeOnly(t: tf.Tensor): tf.Tensor {
  const standIn = {
    shape: t.shape.slice(),
    rank: t.rank,
    size: t.size,
    dtype: t.dtype,
    [SHAPE_ONLY]: true,
    dispose: () => undefined,
  };
  return standIn as unknown as tf.Tensor;
}

function isShapeOnly(t: tf.Tensor): boolean {
  return (t as unknown as Record<symbol, unknown>)[SHAPE_ONLY] === true;
}

/** Run `f` with shape-only saving for SHAPE_ONLY_SAVES kernels; the engine's methods are restored afterwards. */
function withShapeOnlySaves<T>(e: EngineInternals, f: () => T): T {
  const getOwn = Object.getOwnPropertyDescriptor(e, "getTensorsForGradient");
  const saveOwn = Object.getOwnPropertyDescriptor(e, "saveTensorsForBackwardMode");
  const get = e.getTensorsForGradient.bind(e);
  const save = e.saveTensorsForBackwardMode.bind(e);
  e.getTensorsForGradient = (kernelName, inputs, outputs) => {
    const ts = get(kernelName, inputs, outputs);
    return SHAPE_ONLY_SAVES.has(kernelName) ? ts.map(shapeOnly) : ts;
  };
  e.saveTensorsForBackwardMode = (tensors) => {
    const real = save(tensors.filter((t) => !isShapeOnly(t)));
    let k = 0;
    return tensors.map((t) => (isShapeOnly(t) ? t : real[k++]!));
  };
  // the originals normally live on the prototype: put back an own property if there was one, else remove ours
  const restore = (
    name: "getTensorsForGradient" | "saveTensorsForBackwardMode",
    own: PropertyDescriptor | undefined,
  ): void => {
    if (own !== undefined) Object.defineProperty(e, name, own);
    else Reflect.deleteProperty(e, name);
  };
  try {
    return f();
  } finally {
    restore("getTensorsForGradient", getOwn);
    restore("saveTensorsForBackwardMode", saveOwn);
  }
}

/** Nodes on a path from one of `xs` to `y`, in tape order, with inputs not depending on `xs` pruned. */
function pathNodes(tape: readonly TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  for (const node of tape) {
    for (const name in node.inputs) {
      if (fromX.has(node.inputs[name]!.id)) {
        for (const o of node.outputs) fromX.add(o.id);
        nodeFromX.add(node.id);
        break;
      }
    }
  }
  const toY = new Set<number>([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const name in node.inputs) toY.add(node.inputs[name]!.id);
      nodeToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodeFromX.has(node.id) || !nodeToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const name in node.inputs) if (fromX.has(node.inputs[name]!.id)) inputs[name] = node.inputs[name]!;
    out.push({ ...node, inputs });
  }
  return out;
}

function disposeSaved(node: TapeNode): void {
  if (node.saved === undefined) return;
  for (const t of node.saved) t.dispose();
  node.saved.length = 0; // the gradient closure holds this same array
}

/**
 * `f()` and the gradients of its scalar result with respect to `vars` (trainable ones), releasing saved tensors and
 * intermediate gradients as the backward pass passes them. Same contract as `tf.variableGrads(f, vars)`.
 */
export function valueAndGrads(f: () => tf.Scalar, vars: readonly tf.Variable[]): ValueAndGrads {
  const trainable = vars.filter((v) => v.trainable);
  if (trainable.length === 0) throw new Error("valueAndGrads: none of the variables is trainable");
  const e = engine();
  if (e.state.gradientDepth !== 0) return tf.variableGrads(f, [...trainable]);

  let y: tf.Tensor | undefined;
  let tape: TapeNode[] = [];
  try {
    y = withShapeOnlySaves(e, () =>
      e.scopedRun(
        () => {
          e.startTape();
        },
        () => {
          e.endTape();
        },
        () => e.tidy("forward", f),
      ),
    );
    tape = e.state.activeTape ?? [];
    if (!(y instanceof tf.Tensor) || y.rank !== 0)
      throw new Error(
        `valueAndGrads: f must return a scalar tensor, got ${y instanceof tf.Tensor ? `rank ${y.rank}` : typeof y}`,
      );
    const path = pathNodes(tape, trainable, y);
    const yt = y;
    const onPath = new Set(path.map((n) => n.id));
    for (const node of tape) if (!onPath.has(node.id)) disposeSaved(node);
    const originals = new Map(tape.map((n) => [n.id, n]));

    const grads = e.tidy("backward", () => {
      const acc = new Map<number, tf.Tensor>([[yt.id, tf.onesLike(yt)]]);
      const stored = new Set<tf.Tensor>(acc.values());
      for (let i = path.length - 1; i >= 0; i--) {
        const node = path[i]!;
        const dys = node.outputs.map((o) => acc.get(o.id) ?? null);
        if (dys.every((d) => d === null)) {
          disposeSaved(originals.get(node.id)!);
          continue;
        }
        if (node.gradient === undefined)
          throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
        const names = Object.keys(node.inputs);
        const dxs = e.tidy(node.kernelName, () => {
          const fns = node.gradient!(dys);
          return names
            .map((name) => {
              const fn = fns[name];
              if (fn === undefined)
                throw new Error(
                  `Cannot backprop through input ${name} of ${node.kernelName}. Available gradients found: ${Object.keys(fns).join(",")}.`,
                );
              const dx = fn();
              const x = node.inputs[name]!;
              if (dx.dtype !== "float32")
                throw new Error(
                  `Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`,
                );
              if (!tf.util.arraysEqual(dx.shape, x.shape))
                throw new Error(
                  `Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape.join(",")}', which does not match the shape of the input '${x.shape.join(",")}'`,
                );
              return dx;
            })
            .map((dx, k, all) =>
              dys.includes(dx) || all.indexOf(dx) !== k || (node.saved?.includes(dx) ?? false) ? dx.clone() : dx,
            );
        });
        // (a gradient handed back as its own dy, twice, or as a saved tensor was cloned above: releasing those below
        // cannot free a stored gradient)
        // this node consumed its outputs' gradients: nothing later in the walk reads them
        for (const o of node.outputs) {
          const g = acc.get(o.id);
          if (g !== undefined) {
            acc.delete(o.id);
            stored.delete(g);
            g.dispose();
          }
        }
        disposeSaved(originals.get(node.id)!);
        names.forEach((name, k) => {
          const x = node.inputs[name]!;
          // a gradient function may hand back a dy or an already stored tensor: give each slot its own handle
          const dx = stored.has(dxs[k]!) ? dxs[k]!.clone() : dxs[k]!;
          const cur = acc.get(x.id);
          if (cur === undefined) {
            acc.set(x.id, dx);
            stored.add(dx);
          } else {
            const sum = tf.add(cur, dx);
            stored.delete(cur);
            cur.dispose();
            dx.dispose();
            acc.set(x.id, sum);
            stored.add(sum);
          }
        });
      }
      const out: Record<string, tf.Tensor> = {};
      for (const v of trainable) {
        const g = acc.get(v.id);
        if (g !== undefined) out[v.name] = g;
      }
      return out;
    });
    if (Object.keys(grads).length === 0) {
      throw new Error("Cannot find a connection between any variable and the result of the loss function y=f(x).");
    }
    return { value: yt as tf.Scalar, grads };
  } catch (err) {
    if (y instanceof tf.Tensor) y.dispose();
    throw err;
  } finally {
    // a throwing f leaves its partial tape in the engine
    for (const node of new Set([...tape, ...(e.state.activeTape ?? [])])) disposeSaved(node);
    e.state.activeTape = null;
  }
}
