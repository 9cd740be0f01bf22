/**
 * Backend selection at start-up. `auto` (the default): tfjs-node-gpu when TensorFlow registered a GPU device, else
 * cpu with the native kernel addon → wasm → stock cpu, the first that loads wins. TensorFlow on the CPU (`node`) is
 * never picked by `auto`: the native kernels are several times faster than TensorFlow's CPU conv3d (ADR 0008,
 * docs/decisions/0059-libtensorflow-from-pypi.md); `--backend node` forces it (the CPU test of the binding the GPU
 * image uses). `SSL3D_NATIVE=0` or an unbuilt addon falls through to wasm.
 * Overridable by `--backend NAME` (callers pass it as `requested`) or `SSL3D_BACKEND`. Names: `node-gpu`, `node`,
 * `wasm`, `cpu`, or `auto`. The tfjs-node packages are optionalDependencies whose bindings are built by
 * `npm run setup:tensorflow` (against TensorFlow 2.21 from PyPI; DEVELOPERS.md), so they are imported dynamically and
 * their absence is not an error unless explicitly requested. `--backend node-gpu` without a GPU device runs
 * TensorFlow on the CPU and says so.
 * On `cpu`, the native kernel addon (`./native.ts`) is loaded when present; it registers fast kernels under the
 * standard tfjs kernel names, so the op layer needs no special path for it.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { EnvironmentError, ConfigError } from "../../errors.js";
import { log } from "../../observability/log.js";
import { loadNativeKernels } from "./native.js";
import { withWasmThreads } from "./wasm-threads.js";
import { envString, setProcessDefault } from "../../config/settings.js";

export const BACKEND_NAMES = ["auto", "node-gpu", "node", "wasm", "cpu"] as const;
export type BackendRequest = (typeof BACKEND_NAMES)[number];

export interface BackendChoice {
  /** What was chosen (`node-gpu`, `node`, `wasm`, `cpu`). */
  readonly name: Exclude<BackendRequest, "auto">;
  /** The tfjs backend name now active (`tensorflow`, `wasm`, `cpu`). */
  readonly tfBackend: string;
  /** cpu only: the native addon's kernels are registered. */
  readonly nativeKernels: boolean;
  /** wasm only: XNNPACK threads in use. */
  readonly wasmThreads?: number;
  /** Why the earlier candidates were skipped. */
  readonly skipped: readonly string[];
  /** Why this backend: the request, or the `auto` rule that picked it. */
  readonly reason: string;
  /** node / node-gpu: the libtensorflow version the binding runs (e.g. 2.21.0). */
  readonly tfVersion?: string;
  /** node / node-gpu: TensorFlow registered a GPU device and computes on it. */
  readonly gpu?: boolean;
}

export function parseBackendRequest(value: string | undefined, source: string): BackendRequest {
  if (value === undefined || value === "") return "auto";
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendRequest;
  throw new ConfigError(`unknown backend "${value}" (one of ${BACKEND_NAMES.join(", ")})`, { field: source });
}

/** Directory holding the wasm binaries (with trailing slash). */
export function wasmBinaryDir(): string {
  const req = createRequire(import.meta.url);
  const main = req.resolve("@tensorflow/tfjs-backend-wasm");
  return `${dirname(main)}/`;
}

export const TFJS_NODE_PACKAGES = { "node-gpu": "@tensorflow/tfjs-node-gpu", node: "@tensorflow/tfjs-node" } as const;

/** The package folder of a tfjs-node package, or undefined when it is not installed. */
export function tfjsNodePackageDir(pkg: string): string | undefined {
  try {
    return dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`));
  } catch {
    return undefined;
  }
}

/** Undefined when `pkg`'s binding is built, else why not (the packages install without it, see setup:tensorflow). */
export function tfjsNodeMissing(pkg: string): string | undefined {
  const dir = tfjsNodePackageDir(pkg);
  const variant = pkg.endsWith("-gpu") ? "gpu" : "cpu";
  if (dir === undefined)
    return `${pkg}: not installed (npm ci installs it; then npm run setup:tensorflow -- --variant ${variant})`;
  if (!existsSync(join(dir, "lib", "napi-v8", "tfjs_binding.node")))
    return `${pkg}: binding not built (npm run setup:tensorflow -- --variant ${variant})`;
  return undefined;
}

interface NodeBackendInfo {
  readonly tfVersion: string;
  readonly gpu: boolean;
}

async function tryNode(pkg: string): Promise<{ why?: string; info?: NodeBackendInfo }> {
  const missing = tfjsNodeMissing(pkg);
  if (missing !== undefined) return { why: missing };
  // TensorFlow's C++ INFO lines (CPU feature banner, ...) are noise here; warnings (why a GPU was not used) stay
  setProcessDefault("TF_CPP_MIN_LOG_LEVEL", "1");
  try {
    await import(pkg);
  } catch (err) {
    return { why: `${pkg}: ${(err as Error).message.split("\n")[0] ?? "import failed"}` };
  }
  if (!(await tf.setBackend("tensorflow")))
    return { why: `${pkg}: imported but backend "tensorflow" did not initialise` };
  const b = tf.backend() as unknown as { isUsingGpuDevice?: boolean; binding?: { TF_Version?: string } };
  return { info: { tfVersion: b.binding?.TF_Version ?? "unknown", gpu: b.isUsingGpuDevice === true } };
}

const NO_GPU =
  "TensorFlow registered no GPU device (no driver or device, or a CUDA library did not load; `ssl3d doctor --gpu` says which)";

/** `SSL3D_WASM_THREADS=N` (N ≥ 2) turns on the threaded-SIMD wasm build (see wasm-threads.ts); default 1. */
export function wasmThreadsRequested(): number {
  const v = envString("SSL3D_WASM_THREADS");
  if (v === undefined) return 1;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new ConfigError(`must be an integer 1..64, got "${v}"`, { field: "SSL3D_WASM_THREADS" });
  return n;
}

async function tryWasm(): Promise<string | undefined> {
  try {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(wasmBinaryDir());
    const threads = wasmThreadsRequested();
    const ok =
      threads > 1
        ? await withWasmThreads(threads, wasm.setThreadsCount, () => tf.setBackend("wasm"))
        : await tf.setBackend("wasm");
    if (!ok) return "wasm: backend did not initialise";
    await tf.ready();
    return undefined;
  } catch (err) {
    return `wasm: ${(err as Error).message}`;
  }
}

/** Registers the native kernels (false when the addon is not built or cannot load). */
function tryNative(): boolean {
  try {
    return loadNativeKernels();
  } catch {
    return false;
  }
}

/**
 * Select and initialise the backend. `requested` (e.g. from `--backend`) beats `SSL3D_BACKEND`, which beats
 * `auto`. An explicitly requested backend that cannot load is an EnvironmentError. `announce: false` (a helper
 * computation such as the report's validation pictures, after the training said its choice) logs the choice at debug.
 */
export async function selectBackend(requested?: string, o: { announce?: boolean } = {}): Promise<BackendChoice> {
  const req =
    requested !== undefined && requested !== ""
      ? parseBackendRequest(requested, "--backend")
      : parseBackendRequest(envString("SSL3D_BACKEND"), "SSL3D_BACKEND");
  type Candidate = Exclude<BackendRequest, "auto"> | "cpu-native";
  const order: Candidate[] = req === "auto" ? ["node-gpu", "cpu-native", "wasm", "cpu"] : [req];
  const skipped: string[] = [];
  for (const candidate of order) {
    let why: string | undefined;
    let info: NodeBackendInfo | undefined;
    const name = candidate === "cpu-native" ? "cpu" : candidate;
    if (candidate === "cpu-native") {
      why =
        (await tf.setBackend("cpu")) && tryNative()
          ? undefined
          : "cpu-native: the native kernel addon is not available";
    } else if (name === "node-gpu" || name === "node") {
      ({ why, info } = await tryNode(TFJS_NODE_PACKAGES[name]));
      // auto wants TensorFlow only for a GPU: on the CPU the native kernels are faster
      if (why === undefined && req === "auto" && info?.gpu !== true) why = `node-gpu: ${NO_GPU}`;
    } else if (name === "wasm") why = await tryWasm();
    else why = (await tf.setBackend("cpu")) ? undefined : "cpu: did not initialise";
    if (why !== undefined) {
      skipped.push(why);
      continue;
    }
    await tf.ready();
    const nativeKernels = name === "cpu" ? tryNative() : false;
    // tfjs's cpu backend prints a banner recommending tfjs-node on its first tensor; with the native kernels that
    // advice is wrong (and tfjs-node is what is missing here), so the backend is marked as already greeted
    if (nativeKernels) (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
    const wasmThreads = name === "wasm" ? await wasmThreadCount() : undefined;
    const reason = choiceReason(req, name, info, nativeKernels);
    const current: BackendChoice = {
      name,
      tfBackend: tf.getBackend(),
      nativeKernels,
      skipped,
      reason,
      ...(wasmThreads === undefined ? {} : { wasmThreads }),
      ...(info === undefined ? {} : { tfVersion: info.tfVersion, gpu: info.gpu }),
    };
    // one line naming the backend and why; the probes' error messages only at debug level
    if (skipped.length > 0) log().debug({ skipped }, "tfjs backend probes");
    const fields = {
      backend: name,
      tfBackend: current.tfBackend,
      nativeKernels,
      wasmThreads,
      tfVersion: info?.tfVersion,
      gpu: info?.gpu,
      reason,
    };
    const message = describeChoice(
      current,
      req === "auto" ? "auto" : requested !== undefined && requested !== "" ? "--backend" : "SSL3D_BACKEND",
    );
    if (name === "node-gpu" && info?.gpu !== true) log().warn(fields, `${message}: on the CPU: ${NO_GPU}`);
    else if (o.announce === false) log().debug(fields, message);
    else log().info(fields, message);
    return current;
  }
  throw new EnvironmentError(`backend "${req}" is not available: ${skipped.join("; ")}`, { field: "--backend" });
}

function choiceReason(
  req: BackendRequest,
  name: Exclude<BackendRequest, "auto">,
  info: NodeBackendInfo | undefined,
  nativeKernels: boolean,
): string {
  const tfOn = info === undefined ? "" : ` (TensorFlow ${info.tfVersion} on the ${info.gpu ? "GPU" : "CPU"})`;
  if (req !== "auto") return `requested${tfOn}`;
  if (name === "node-gpu") return `auto: TensorFlow registered a GPU device${tfOn}`;
  if (nativeKernels) return "auto: no GPU device; the native kernels are the fastest CPU path";
  return `auto: no GPU device and no native kernel addon; ${name} is the first that loads`;
}

/** A skipped candidate's probe message as a few words ("@tensorflow/tfjs-node not installed"). */
export function shortSkipReason(why: string): string {
  const i = why.indexOf(": ");
  const who = i < 0 ? why : why.slice(0, i);
  const msg = i < 0 ? "" : why.slice(i + 2);
  if (/Cannot find (package|module)/.test(msg)) return `${who} not installed`;
  if (who === "cpu-native") return "native kernel addon not built";
  return `${who} failed (${msg.length > 80 ? `${msg.slice(0, 77)}...` : msg})`;
}

/** The one-line log message of a selection: the backend and why (`auto` skipped candidates, or who requested it). */
/** What `describeChoice` reads of a choice. */
export type ChoiceSummary = Pick<BackendChoice, "name" | "tfBackend" | "nativeKernels" | "wasmThreads" | "skipped">;

export function describeChoice(c: ChoiceSummary, source: "auto" | "--backend" | "SSL3D_BACKEND"): string {
  const what =
    c.name === "cpu" && c.nativeKernels
      ? "cpu with the native kernels"
      : c.name === "wasm" && (c.wasmThreads ?? 1) > 1
        ? `wasm (${c.wasmThreads} threads)`
        : c.name;
  if (source !== "auto") return `tfjs backend: ${what} (requested by ${source})`;
  const why = c.skipped.length === 0 ? "the first choice" : c.skipped.map(shortSkipReason).join(", ");
  return `tfjs backend: ${what} (auto: ${why})`;
}

async function wasmThreadCount(): Promise<number | undefined> {
  try {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    return wasm.getThreadsCount();
  } catch {
    return undefined;
  }
}
