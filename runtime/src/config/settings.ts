/**
 * Every environment variable the runtime honours, in one typed table, and the only module of runtime/src that
 * touches `process.env` (ESLint enforces it). Readers ask for a variable by its name, typed as `SettingName`, so a
 * variable that is not listed here cannot be read; the README's environment table is generated from `SETTINGS`
 * (`scripts/gen-env-table.ts`, drift-checked by scripts/verify-generated.sh). Parsing that belongs to a feature
 * (dataset roots, torchrun's rank variables, limits) stays with the feature and reads its raw values here.
 *
 * Variables of the operator process and of the test tooling are not read by the runtime and are documented next to
 * the generated table. Leaf module (no imports beyond errors.ts): the operator and api/ consumers may import it.
 */
import { ConfigError } from "../errors.js";

export type Env = Readonly<Record<string, string | undefined>>;

export const SETTING_GROUPS = {
  paths: "Data roots (nnssl)",
  runtime: "Logging, processes and locks",
  training: "ssl3d train",
  distributed: "Data-parallel training (torchrun's contract; the operator or `--nproc-per-node` sets these)",
  backend: "TensorFlow.js backends and native kernels",
  limits: "Limits on untrusted input (docs/limits-and-safety.md)",
} as const;
export type SettingGroup = keyof typeof SETTING_GROUPS;

export interface SettingSpec {
  readonly group: SettingGroup;
  /** One line for the README table (Markdown). */
  readonly description: string;
  /** The default as a reader sees it (Markdown); absent: unset means off / none. */
  readonly default?: string;
}

const LIMITS_DOC = "machine-dependent or fixed, see docs/limits-and-safety.md";

/** Every variable the runtime reads, with its meaning; the order is the README's. */
export const SETTINGS = {
  nnssl_raw: { group: "paths", description: "root holding `DatasetNNN_Name/pretrain_data.json`" },
  nnssl_preprocessed: { group: "paths", description: "root of fingerprints, plans, preprocessed data, splits" },
  nnssl_results: {
    group: "paths",
    description: "root of training outputs (`DatasetNNN_Name/<Trainer>__<Plans>__<Config>/`)",
  },
  rocket_preprocessed: {
    group: "paths",
    description: "if set, overrides `nnssl_preprocessed` (with a warning), as in nnssl",
  },
  nnUNet_def_n_proc: {
    group: "paths",
    description: "default worker count of fingerprint/preprocess",
    default: "min(8, CPUs)",
  },

  SSL3D_LOG_LEVEL: { group: "runtime", description: "pino log level", default: "`info`" },
  SSL3D_TERMINATION_LOG: {
    group: "runtime",
    description:
      "file receiving the one-line error on failure, and the summary JSON of `collection-summary --json` and `plan-and-preprocess`",
    default: "`/dev/termination-log` when present",
  },
  CI: { group: "runtime", description: "when set, no interactive progress bar even on a terminal" },
  SSL3D_LOCK_STALE_SECONDS: {
    group: "runtime",
    description:
      "a folder lock made on another host is stale after this long without a refresh ([docs/limits-and-safety.md](docs/limits-and-safety.md#locks))",
    default: "60",
  },
  SSL3D_PARENT_PID: {
    group: "runtime",
    description: "set by `ssl3d run` in its children: a child stops when this process is no longer its parent",
  },

  SSL3D_CHECKPOINT_DIR: {
    group: "training",
    description: "write/read checkpoints here instead of `fold_all/` (the operator sets the run's folder)",
  },
  SSL3D_RESUME: {
    group: "training",
    description: "`latest` resumes from the newest checkpoint if any (same as `--resume`); `none`",
    default: "`none`",
  },
  SSL3D_METRICS_PORT: {
    group: "training",
    description: "serve Prometheus `/metrics` on this port (same as `--metrics-port`)",
  },
  SSL3D_METRICS_ADDRESS: {
    group: "training",
    description:
      "interface of the metrics endpoint (same as `--metrics-address`); the operator sets `0.0.0.0` in pods ([docs/limits-and-safety.md](docs/limits-and-safety.md#metrics-endpoint))",
    default: "`127.0.0.1`",
  },
  SSL3D_MEMORY_LIMIT_BYTES: {
    group: "training",
    description: "memory the up-front batch-size check allows",
    default: "cgroup limit, else physical memory",
  },
  SSL3D_RUN: {
    group: "training",
    description:
      "name of the PretrainRun (operator, `ssl3d run`): claims the checkpoint folder, identifies the rendezvous",
  },
  SSL3D_RUN_UID: { group: "training", description: "uid of the PretrainRun: claims the checkpoint folder" },
  SSL3D_ATTEMPT: { group: "training", description: "attempt number of the run: identifies the rendezvous" },

  PET_NNODES: { group: "distributed", description: "nodes of the run", default: "1" },
  PET_NODE_RANK: { group: "distributed", description: "this node's rank", default: "0" },
  PET_NPROC_PER_NODE: { group: "distributed", description: "processes per node (`--nproc-per-node`)", default: "1" },
  PET_MASTER_ADDR: { group: "distributed", description: "rendezvous address (rank 0's node)", default: "`127.0.0.1`" },
  PET_MASTER_PORT: { group: "distributed", description: "rendezvous port", default: "29500" },
  RANK: { group: "distributed", description: "global rank (set by the local launcher; wins over the `PET_*` values)" },
  LOCAL_RANK: { group: "distributed", description: "rank on this node (local launcher)", default: "0" },
  WORLD_SIZE: {
    group: "distributed",
    description: "processes of the run (local launcher)",
    default: "nodes x processes per node",
  },
  MASTER_ADDR: {
    group: "distributed",
    description: "rendezvous address (local launcher; wins over `PET_MASTER_ADDR`)",
  },
  MASTER_PORT: { group: "distributed", description: "rendezvous port (local launcher; wins over `PET_MASTER_PORT`)" },
  SSL3D_DIST_TIMEOUT_S: {
    group: "distributed",
    description: "seconds a data-parallel rank waits for its peers before failing with exit code 5",
    default: "1500",
  },
  SSL3D_RUN_SECRET_FILE: {
    group: "distributed",
    description:
      "file with the run's rendezvous token (the operator mounts a per-run Secret); empty: loopback-only run without a token",
  },
  CUDA_VISIBLE_DEVICES: {
    group: "distributed",
    description: "GPUs a rank may use; the local launcher gives each rank one of them",
  },
  NVIDIA_VISIBLE_DEVICES: {
    group: "distributed",
    description: "the container runtime's GPU list (`all`: one GPU per local rank)",
  },

  SSL3D_BACKEND: {
    group: "backend",
    description:
      "tfjs backend: `auto` (node-gpu when TensorFlow registered a GPU, else cpu with the native kernels → wasm → stock cpu), `node-gpu`, `node` (TensorFlow 2.21 on the CPU), `wasm`, `cpu`; `--backend` overrides; `ssl3d doctor` shows what loads (DEVELOPERS.md, [docs/gpu.md](docs/gpu.md))",
    default: "`auto`",
  },
  SSL3D_WASM_THREADS: {
    group: "backend",
    description:
      "`N` ≥ 2 turns on the multithreaded SIMD wasm build with N XNNPACK threads (opt-in patch, `runtime/src/models/backend/wasm-threads.ts`)",
    default: "single-threaded",
  },
  SSL3D_NATIVE: {
    group: "backend",
    description: "`0` disables the native cpu kernels (build and load)",
    default: "on when the addon built",
  },
  SSL3D_NATIVE_THREADS: { group: "backend", description: "threads of the native kernels", default: "all cores" },
  SSL3D_NATIVE_BLAS: {
    group: "backend",
    description: "`1` uses the linked OpenBLAS (single-threaded) for matMul instead of the addon's own GEMM",
  },
  SSL3D_NATIVE_GEMM: {
    group: "backend",
    description: "`own` makes the addon use its own GEMM instead of oneDNN's sgemm (read by the addon itself)",
  },
  SSL3D_NATIVE_ADDON: { group: "backend", description: "path of a specific `ssl3d_native.node` to load" },
  OMP_WAIT_POLICY: {
    group: "backend",
    description:
      "OpenMP waiting of the native kernels (spinning stalls shared cores); ssl3d sets the default unless `GOMP_SPINCOUNT` is set",
    default: "`passive`",
  },
  GOMP_SPINCOUNT: {
    group: "backend",
    description: "OpenMP spin count; when set, ssl3d leaves `OMP_WAIT_POLICY` alone",
  },
  TF_CPP_MIN_LOG_LEVEL: {
    group: "backend",
    description: "TensorFlow's C++ log level; ssl3d sets the default (INFO off, warnings on)",
    default: "1",
  },
  TF_FORCE_GPU_ALLOW_GROWTH: {
    group: "backend",
    description: "TensorFlow allocates GPU memory as needed; `ssl3d doctor --gpu` sets the default",
    default: "`true` in `ssl3d doctor`",
  },
  NVIDIA_TF32_OVERRIDE: {
    group: "backend",
    description: "`ssl3d doctor --gpu` sets `0` (TF32 off) for its GPU-vs-CPU parity check",
  },

  SSL3D_CHECKPOINT_MAX_BYTES: {
    group: "limits",
    description:
      "bytes the PyTorch/safetensors checkpoint reader may hold: the file, inflated zip records and decoded float32 tensors together",
    default: LIMITS_DOC,
  },
  SSL3D_PICKLE_MAX_NODES: {
    group: "limits",
    description:
      "values a pickle traversal (adaptation plan, error messages) may visit; memo references count every time they are reached",
    default: LIMITS_DOC,
  },
  SSL3D_PICKLE_MAX_DEPTH: {
    group: "limits",
    description: "nesting depth of pickled containers a traversal follows",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_NETWORK_PARAMS: {
    group: "limits",
    description:
      "scalar parameters of a network built from settings in a file (adaptation plan, ssl3d.options) or options",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_NETWORK_TENSORS: {
    group: "limits",
    description: "parameter tensors of such a network (blocks x layers)",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_VOXELS: {
    group: "limits",
    description: "voxels x channels of one image in memory, as read and after resampling",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_CHANNELS: {
    group: "limits",
    description: "volumes along a NIfTI's 4th dimension loaded as channels",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_VOX_OFFSET: {
    group: "limits",
    description:
      "bytes between the start of a NIfTI file and its voxel data (header + extensions); skipped, never buffered",
    default: LIMITS_DOC,
  },
  SSL3D_JSON_MAX_DEPTH: {
    group: "limits",
    description: "nesting depth of objects/arrays in pretrain_data.json",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_THREADS: {
    group: "limits",
    description:
      "worker threads or concurrent jobs one command starts: data loader `--workers`, preprocessing `--num-processes` / `-np`, fingerprint `-npfp`, `convert --jobs`",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_LOCAL_PROCESSES: {
    group: "limits",
    description:
      "data-parallel training processes on one node: `--nproc-per-node` / `-num_gpus` / `PET_NPROC_PER_NODE`",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_EPOCHS: {
    group: "limits",
    description: "training epochs (`--epochs`, trainer option numEpochs)",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_ITERS_PER_EPOCH: {
    group: "limits",
    description: "training or validation iterations per epoch (`--iters-per-epoch`, `--val-iters`)",
    default: LIMITS_DOC,
  },
  SSL3D_MAX_DOCUMENT_BYTES: {
    group: "limits",
    description:
      "bytes of a JSON or YAML document read whole: pretrain_data.json, manifests (`ssl3d run -f`), plans files",
    default: LIMITS_DOC,
  },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;

export function isSettingName(name: string): name is SettingName {
  return Object.hasOwn(SETTINGS, name);
}

/** The environment of this process. The only read of `process.env` in runtime/src. */
export function processEnv(): Env {
  return process.env;
}

/** The environment a child process inherits, with `extra` on top. */
export function childEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  return { ...process.env, ...extra };
}

/** Set a variable of this process unless it is set already: for native libraries that read it themselves. */
export function setProcessDefault(name: SettingName, value: string): void {
  process.env[name] ??= value;
}

/** Set a variable of this process (what native libraries read at load time). */
export function setProcessValue(name: SettingName, value: string): void {
  process.env[name] = value;
}

/** The value of a variable exactly as set (empty included: for variables where empty means something). */
export function envRaw(name: SettingName, env: Env = processEnv()): string | undefined {
  return env[name];
}

/** The raw value of a variable; undefined when unset or empty. */
export function envString(name: SettingName, env: Env = processEnv()): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** An integer variable >= `min`, else `fallback` when unset; a ConfigError naming the variable when malformed. */
export function envInt(name: SettingName, fallback: number, min: number, env: Env = processEnv()): number {
  const raw = envString(name, env);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min)
    throw new ConfigError(`must be an integer >= ${min}, got ${JSON.stringify(raw)}`, {
      field: `environment variable ${name}`,
    });
  return v;
}

/**
 * A variable a collection file names in a path (`$VAR/rest`, upstream's semantics: any variable). The one read of
 * a variable that is not in `SETTINGS`, because the user's file chooses it.
 */
export function collectionPathVariable(name: string, env: Env = processEnv()): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** The README's environment-variable table (Markdown), one section per group. */
export function settingsMarkdown(): string {
  const lines: string[] = [];
  for (const [group, title] of Object.entries(SETTING_GROUPS)) {
    lines.push(`**${title}**`, "", "| variable | meaning | default |", "| --- | --- | --- |");
    for (const [name, spec] of Object.entries(SETTINGS) as [SettingName, SettingSpec][]) {
      if (spec.group !== group) continue;
      lines.push(`| \`${name}\` | ${spec.description} | ${spec.default ?? "–"} |`);
    }
    lines.push("");
  }
  return lines.join("\n");
}
