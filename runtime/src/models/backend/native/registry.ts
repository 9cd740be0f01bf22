/**
 * Registers the native kernels on tfjs's `cpu` backend under their standard names (and the fused ssl3d kernels),
 * and restores the stock ones. The kernel list is the generated table of native/kernels.json; every entry must be
 * implemented by its family module (checked at load).
 */
import * as tf from "@tensorflow/tfjs";
import { nativeAddon, type NativeAddon } from "./addon.js";
import * as conv from "./conv.js";
import * as elementwise from "./elementwise.js";
import * as fused from "./fused.js";
import { kernelConfig, saveStockKernels, stockKernel, type NativeKernel } from "./kernel.js";
import { FUSED_KERNEL_NAMES, KERNEL_FAMILY, NATIVE_KERNEL_NAMES } from "./kernels.generated.js";
import * as layout from "./layout.js";
import * as matmul from "./matmul.js";
import * as reduce from "./reduce.js";

/** The family modules, by the `family` names of native/kernels.json. */
const FAMILY_MODULES: Readonly<Record<string, (a: NativeAddon) => NativeKernel[]>> = {
  conv: conv.kernels,
  matmul: matmul.kernels,
  elementwise: elementwise.kernels,
  reduce: reduce.kernels,
  layout: layout.kernels,
  fused: fused.kernels,
};

/** Every kernel of the table, from its family module; throws when the table and the modules disagree. */
export function nativeKernels(a: NativeAddon): NativeKernel[] {
  const built = Object.entries(FAMILY_MODULES).flatMap(([family, make]) => make(a).map((k) => ({ family, k })));
  const byName = new Map(built.map(({ family, k }) => [k.name as string, { family, k }]));
  const table = [...NATIVE_KERNEL_NAMES, ...FUSED_KERNEL_NAMES];
  for (const name of table) {
    const entry = byName.get(name);
    if (entry === undefined)
      throw new Error(`native kernels: ${name} is in native/kernels.json but no module implements it`);
    if (entry.family !== KERNEL_FAMILY[name]) {
      throw new Error(
        `native kernels: ${name} is implemented by ${entry.family}.ts, native/kernels.json says ${KERNEL_FAMILY[name]}`,
      );
    }
  }
  if (built.length !== table.length) {
    const extra = built.map(({ k }) => k.name as string).filter((n) => !(table as string[]).includes(n));
    throw new Error(`native kernels: not in native/kernels.json: ${extra.join(", ")}`);
  }
  return built.map(({ k }) => k);
}

let loaded = false;
let configs: tf.KernelConfig[] | undefined;
let loadedAddon: NativeAddon | null = null;

/**
 * Registers the native kernels on the `cpu` backend. Idempotent. Returns false (after one log line) when the
 * addon is disabled or absent; tfjs then keeps its stock kernels.
 */
export function loadNativeKernels(): boolean {
  if (loaded) return true;
  const a = nativeAddon();
  if (a === null) return false;
  saveStockKernels([...NATIVE_KERNEL_NAMES, ...matmul.ACTIVATION_STOCK_KERNELS]);
  configs ??= nativeKernels(a).map(kernelConfig);
  fused.registerFusedGradients();
  for (const k of configs) {
    if (tf.getKernel(k.kernelName, "cpu") as tf.KernelConfig | undefined) tf.unregisterKernel(k.kernelName, "cpu");
    tf.registerKernel(k);
  }
  loadedAddon = a;
  loaded = true;
  return true;
}

/** Restores tfjs's stock cpu kernels (tests and benchmarks compare against them in the same process). */
export function unloadNativeKernels(): void {
  if (!loaded) return;
  for (const name of FUSED_KERNEL_NAMES) tf.unregisterKernel(name, "cpu");
  for (const name of NATIVE_KERNEL_NAMES) {
    tf.unregisterKernel(name, "cpu");
    tf.registerKernel(stockKernel(name));
  }
  loaded = false;
}

/** True while the native kernels are registered. */
export function nativeKernelsLoaded(): boolean {
  return loaded;
}

/**
 * Whether the loaded addon has the fused attention kernels (an addon built from older sources lacks them; the
 * install hook rebuilds when sources change, but a copied or pinned build may be stale): callers fall back to the
 * composed ops.
 */
export function fusedAttentionAvailable(): boolean {
  return loaded && typeof loadedAddon?.attention === "function" && typeof loadedAddon.attentionGrad === "function";
}

/**
 * Whether the loaded addon has the fused sparse instance norm kernels (SparK); stale addons lack them and
 * `ops/sparse-norm.ts` then keeps its composed form.
 */
export function fusedSparseNormAvailable(): boolean {
  return (
    loaded &&
    typeof loadedAddon?.sparseInstanceNorm === "function" &&
    typeof loadedAddon.sparseInstanceNormGrad === "function"
  );
}
