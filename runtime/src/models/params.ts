/**
 * Parameter declarations: every architecture first declares its parameters as data (PyTorch name, tfjs shape,
 * how to permute to the PyTorch layout, initialiser), then instantiates them as tf.Variables. Parameter counts
 * come from the declarations without allocating tensors; the checkpoint exporter uses the permutations.
 */
import * as tf from "@tensorflow/tfjs";
import { limit } from "../config/limits.js";
import { ConfigError } from "../errors.js";
import { Rng } from "./rng.js";

export type Init =
  | { readonly kind: "uniform"; readonly bound: number }
  | { readonly kind: "normal"; readonly std: number }
  /** timm trunc_normal_(std, a, b): absolute bounds, default ±2. */
  | { readonly kind: "truncnormal"; readonly std: number; readonly a?: number; readonly b?: number }
  | { readonly kind: "const"; readonly value: number };

export interface ParamDecl {
  /** PyTorch state-dict key (primary name). */
  readonly name: string;
  /** Shape in our (channels-last) layout. */
  readonly shape: readonly number[];
  /** Permutation from our layout to PyTorch's (`torch = transpose(ours, perm)`), or null if identical. */
  readonly torchPerm: readonly number[] | null;
  readonly init: Init;
  /** A persistent buffer (in the state dict, not a parameter, not trained), e.g. Primus' `mask_token`. */
  readonly buffer?: boolean;
}

/** Our conv kernel [k,k,k,in,out] and transposed-conv kernel [k,k,k,out,in] both map to PyTorch by this perm. */
export const CONV_PERM = [4, 3, 0, 1, 2] as const;
/** Our linear weight [in,out] → PyTorch [out,in]. */
export const LINEAR_PERM = [1, 0] as const;

export function torchShape(d: ParamDecl): number[] {
  return d.torchPerm === null ? [...d.shape] : d.torchPerm.map((i) => d.shape[i]!);
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function countDecls(decls: readonly ParamDecl[]): number {
  return decls.reduce((a, d) => a + (d.buffer === true ? 0 : numel(d.shape)), 0);
}

let variableCounter = 0;

function hashName(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

function initValues(d: ParamDecl, rng: Rng): Float32Array {
  const n = numel(d.shape);
  switch (d.init.kind) {
    case "uniform":
      return rng.fillUniform(n, -d.init.bound, d.init.bound);
    case "normal":
      return rng.fillNormal(n, d.init.std);
    case "truncnormal":
      return rng.fillTruncNormal(n, d.init.std, d.init.a ?? -2, d.init.b ?? 2);
    case "const":
      return new Float32Array(n).fill(d.init.value);
  }
}

/**
 * Create the variables. Each parameter's values depend only on (seed, name), not on declaration order.
 * `postInit` may rescale values (e.g. Primus' depth-dependent rescale) before the variable is created.
 */
export function instantiate(
  decls: readonly ParamDecl[],
  seed: number,
  postInit?: (d: ParamDecl, v: Float32Array) => void,
): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const d of decls) {
    if (out.has(d.name)) throw new Error(`duplicate parameter ${d.name}`);
    const v = initValues(d, new Rng((seed * 2654435761) ^ hashName(d.name)));
    postInit?.(d, v);
    const t = tf.tensor(v, [...d.shape]);
    out.set(d.name, tf.variable(t, d.buffer !== true, `${d.name}#${++variableCounter}`));
    t.dispose();
  }
  return out;
}

/** PyTorch default init of Conv/ConvTranspose/Linear (kaiming_uniform a=√5 ⇒ U(±1/√fan_in); bias the same). */
export function torchDefaultBound(fanIn: number): number {
  return 1 / Math.sqrt(fanIn);
}

/**
 * Collects declarations. Bounded: settings read from files (adaptation plans, `ssl3d.options`) reach the
 * architectures unchecked, so declaring stops with a ConfigError as soon as the network exceeds
 * `SSL3D_MAX_NETWORK_TENSORS` tensors or `SSL3D_MAX_NETWORK_PARAMS` scalars, before anything is allocated and
 * before a loop over a million blocks per stage gets far.
 */
export class DeclBuilder {
  readonly decls: ParamDecl[] = [];
  private scalars = 0;
  private readonly maxTensors = limit("networkTensors");
  private readonly maxScalars = limit("networkParams");

  add(name: string, shape: readonly number[], torchPerm: readonly number[] | null, init: Init, buffer = false): void {
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new ConfigError(
        `parameter ${name} would have shape [${shape.join(",")}]: sizes must be non-negative integers`,
        { field: "architecture" },
      );
    this.scalars += numel(shape);
    if (this.decls.length >= this.maxTensors)
      throw new ConfigError(
        `network too large: more than ${this.maxTensors} parameter tensors (limit SSL3D_MAX_NETWORK_TENSORS)`,
        { field: "architecture" },
      );
    if (!(this.scalars <= this.maxScalars))
      throw new ConfigError(
        `network too large: more than ${this.maxScalars} parameters at ${name} (limit SSL3D_MAX_NETWORK_PARAMS)`,
        { field: "architecture" },
      );
    this.decls.push({ name, shape, torchPerm, init, ...(buffer ? { buffer: true } : {}) });
  }

  /** Conv3d(cin→cout, k) with PyTorch default init. fan_in = cin·k³. */
  conv(name: string, cin: number, cout: number, k: number, bias: boolean): void {
    const b = torchDefaultBound(cin * k * k * k);
    this.add(`${name}.weight`, [k, k, k, cin, cout], CONV_PERM, { kind: "uniform", bound: b });
    if (bias) this.add(`${name}.bias`, [cout], null, { kind: "uniform", bound: b });
  }

  /** ConvTranspose3d(cin→cout, k=s=f). PyTorch computes fan_in from weight dim 1 = cout: fan_in = cout·f³. */
  convT(name: string, cin: number, cout: number, f: number, bias: boolean): void {
    const b = torchDefaultBound(cout * f * f * f);
    this.add(`${name}.weight`, [f, f, f, cout, cin], CONV_PERM, { kind: "uniform", bound: b });
    if (bias) this.add(`${name}.bias`, [cout], null, { kind: "uniform", bound: b });
  }

  /** Norm affine parameters: weight 1, bias 0. */
  norm(name: string, c: number): void {
    this.add(`${name}.weight`, [c], null, { kind: "const", value: 1 });
    this.add(`${name}.bias`, [c], null, { kind: "const", value: 0 });
  }

  /** Linear(in→out): weight init given (default PyTorch), bias zero or PyTorch default. */
  linear(name: string, cin: number, cout: number, bias: boolean, init?: { weight: Init; bias: Init }): void {
    const b = torchDefaultBound(cin);
    this.add(`${name}.weight`, [cin, cout], LINEAR_PERM, init?.weight ?? { kind: "uniform", bound: b });
    if (bias) this.add(`${name}.bias`, [cout], null, init?.bias ?? { kind: "uniform", bound: b });
  }
}

/** Get a parameter or fail loudly (programming error: forward asks for an undeclared name). */
export function param<R extends tf.Rank>(weights: ReadonlyMap<string, tf.Variable>, name: string): tf.Tensor<R> {
  const v = weights.get(name);
  if (v === undefined) throw new Error(`missing parameter ${name}`);
  return v as unknown as tf.Tensor<R>;
}
