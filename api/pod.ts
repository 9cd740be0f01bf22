/**
 * The pod contract between the operator and the runtime: the environment and the command line of a training rank,
 * built by one function for both the operator's attempt Job and the local runner (`ssl3d run`). What differs
 * between the two is only the *layout* (where volumes are, how a node learns its rank, the rendezvous address),
 * passed in as data; names, order and every other value are the same. See docs/decisions/0061-contract-module.md.
 *
 * Pure zod/TypeScript: no Kubernetes client, no TensorFlow.
 */
import type { PretrainRunSpec } from "./v1alpha1/pretrain-run.js";

/** Environment variable names of the contract (runtime readers: runtime/src/distributed/env.ts, training/run.ts). */
export const ENV = {
  nnodes: "PET_NNODES",
  nprocPerNode: "PET_NPROC_PER_NODE",
  nodeRank: "PET_NODE_RANK",
  masterAddr: "PET_MASTER_ADDR",
  masterPort: "PET_MASTER_PORT",
  run: "SSL3D_RUN",
  runUid: "SSL3D_RUN_UID",
  attempt: "SSL3D_ATTEMPT",
  checkpointDir: "SSL3D_CHECKPOINT_DIR",
  resume: "SSL3D_RESUME",
  metricsPort: "SSL3D_METRICS_PORT",
  metricsAddress: "SSL3D_METRICS_ADDRESS",
  terminationLog: "SSL3D_TERMINATION_LOG",
  runSecretFile: "SSL3D_RUN_SECRET_FILE",
  preprocessed: "nnssl_preprocessed",
  results: "nnssl_results",
} as const;

export const MASTER_PORT = 29500;
/** UID and GID of the runtime image's user (Dockerfile `USER 65532:65532`). */
export const IMAGE_UID = 65532;
export const IMAGE_GID = 65532;

/** In-pod paths of the operator's volumes. */
export const POD_PATHS = {
  data: "/data/preprocessed",
  checkpoints: "/checkpoints",
  runSecretDir: "/var/run/ssl3d/run-secret",
  tmp: "/tmp",
  shm: "/dev/shm",
  terminationLog: "/dev/termination-log",
} as const;
/** Key of the per-run Secret that carries the rendezvous token. */
export const RUN_SECRET_KEY = "token";

/** Names the operator sets itself (the contract above plus what the launcher derives); user env may not use them. */
export const RESERVED_ENV =
  /^(PET_|SSL3D_|MASTER_ADDR$|MASTER_PORT$|WORLD_SIZE$|RANK$|LOCAL_RANK$|CUDA_VISIBLE_DEVICES$|nnssl_)/;
/**
 * Variables that make Node, the dynamic loader or the runtime's native libraries load other code: refused in
 * spec.env (CRD rule and local runner) because they turn a manifest into code execution inside the training image.
 */
export const CODE_INJECTION_ENV =
  /^(NODE_OPTIONS|NODE_PATH|NODE_EXTRA_CA_CERTS|NODE_REPL_EXTERNAL_MODULE|NODE_V8_COVERAGE|NODE_DEBUG_NATIVE|NODE_PRESERVE_SYMLINKS|NODE_ICU_DATA|LD_[A-Z_]*|DYLD_[A-Z_]*|TF_CPP_[A-Z_]*|BASH_ENV|ENV|PYTHONSTARTUP|PYTHONPATH|PYTHONHOME|GCONV_PATH|MALLOC_[A-Z_]*|UV_THREADPOOL_SIZE)$/;
/** The same list as a CEL-compatible regular expression (RE2 has the same syntax for these patterns). */
export const CODE_INJECTION_ENV_RE2 = CODE_INJECTION_ENV.source;
export const RESERVED_ENV_RE2 = RESERVED_ENV.source;

export function envNameProblem(name: string): string | undefined {
  if (RESERVED_ENV.test(name))
    return `${name} is reserved for the operator (PET_*, SSL3D_*, nnssl_*, MASTER_*, RANK, WORLD_SIZE, LOCAL_RANK, CUDA_VISIBLE_DEVICES)`;
  if (CODE_INJECTION_ENV.test(name))
    return `${name} would inject code into the runtime (NODE_OPTIONS, NODE_PATH, LD_*, ... are refused)`;
  return undefined;
}

/** A container environment variable (Kubernetes shape). */
export type EnvVar = { name: string; value: string } | { name: string; valueFrom: Record<string, unknown> };

/** Where things are for one rank: the only part that differs between a pod and a local child process. */
export interface PodLayout {
  /** The checkpoint volume (pod: /checkpoints; local: the claim's folder). */
  checkpointsRoot: string;
  /** nnssl_preprocessed. */
  preprocessed: string;
  terminationLog: string;
  /** How the node rank is given: a literal (local) or the Job completion index (pod). */
  nodeRank: { value: string } | { valueFrom: Record<string, unknown> };
  masterAddr: string;
  /** Metrics port, or undefined for no endpoint (local `--metrics-port 0`). */
  metricsPort: number | undefined;
  /** Bind address of the metrics endpoint: 0.0.0.0 in pods (scraped from outside), 127.0.0.1 locally. */
  metricsAddress: string;
  /** File with the run's rendezvous token (pods: the mounted per-run Secret). */
  runSecretFile: string | undefined;
  /** Separator of paths (posix in pods). */
  join: (...parts: string[]) => string;
}

/** What identifies a run: name and uid (the local runner keeps a uid in its state folder). */
export interface RunIdentity {
  name: string;
  uid: string;
}

/** The per-run checkpoint folder inside the checkpoint volume: `storage.checkpoints.folder`, else `<name>-<uid>`. */
export function runFolder(spec: Pick<PretrainRunSpec, "storage">, run: RunIdentity): string {
  return spec.storage.checkpoints.folder ?? `${run.name}-${run.uid}`;
}

/**
 * The run's own folders inside the checkpoint volume: `<run folder>/checkpoints` (SSL3D_CHECKPOINT_DIR) and
 * `<run folder>/results` (the rank's nnssl_results, below which the runtime lays out
 * `<Dataset>/<Trainer>__<Plans>__<Config>/`: runtime/src/config/layout.ts). The one definition for the operator's
 * pods and the local runner.
 */
export function runFolders(
  spec: Pick<PretrainRunSpec, "storage">,
  run: RunIdentity,
  layout: Pick<PodLayout, "checkpointsRoot" | "join">,
): { checkpoints: string; results: string } {
  const folder = layout.join(layout.checkpointsRoot, runFolder(spec, run));
  return { checkpoints: layout.join(folder, "checkpoints"), results: layout.join(folder, "results") };
}

export function checkpointDir(
  spec: Pick<PretrainRunSpec, "storage">,
  run: RunIdentity,
  layout: Pick<PodLayout, "checkpointsRoot" | "join">,
): string {
  return runFolders(spec, run, layout).checkpoints;
}

/**
 * The environment of a training rank, in order: the contract, then the user's `spec.env` (whose names may not
 * collide with the contract, so order never decides a value).
 */
export function podEnv(spec: PretrainRunSpec, run: RunIdentity, attempt: number, layout: PodLayout): EnvVar[] {
  const folders = runFolders(spec, run, layout);
  const env: EnvVar[] = [
    { name: ENV.nnodes, value: String(spec.numNodes) },
    { name: ENV.nprocPerNode, value: String(spec.nprocPerNode) },
    { name: ENV.nodeRank, ...layout.nodeRank },
    { name: ENV.masterAddr, value: layout.masterAddr },
    { name: ENV.masterPort, value: String(MASTER_PORT) },
    { name: ENV.run, value: run.name },
    { name: ENV.runUid, value: run.uid },
    { name: ENV.attempt, value: String(attempt) },
    { name: ENV.checkpointDir, value: folders.checkpoints },
    // Every attempt, the first included: a Job deleted by hand or re-admitted by a queue continues, never overwrites.
    { name: ENV.resume, value: spec.runPolicy.resume === "Latest" ? "latest" : "none" },
  ];
  if (layout.metricsPort !== undefined) {
    env.push(
      { name: ENV.metricsPort, value: String(layout.metricsPort) },
      { name: ENV.metricsAddress, value: layout.metricsAddress },
    );
  }
  env.push({ name: ENV.terminationLog, value: layout.terminationLog });
  // Empty locally: a loopback-only run needs no rendezvous secret.
  env.push({ name: ENV.runSecretFile, value: layout.runSecretFile ?? "" });
  env.push({ name: ENV.preprocessed, value: layout.preprocessed }, { name: ENV.results, value: folders.results });
  for (const e of spec.env ?? []) {
    if (e.valueFrom !== undefined) env.push({ name: e.name, valueFrom: e.valueFrom });
    else env.push({ name: e.name, value: e.value ?? "" });
  }
  return env;
}

/** What the train command needs from the Plan. */
export interface TrainInputs {
  dataset: string;
  configuration: string;
  plansName: string | undefined;
}

/** `ssl3d train` arguments of a run (without the leading `ssl3d`). */
export function trainArgs(spec: Pick<PretrainRunSpec, "training">, plan: TrainInputs): string[] {
  const t = spec.training;
  const args = ["train", plan.dataset, plan.configuration, "-tr", t.trainer];
  if (plan.plansName !== undefined) args.push("-p", plan.plansName);
  if (t.epochs !== undefined) args.push("--epochs", String(t.epochs));
  if (t.preflight) args.push("--preflight");
  if (t.modalities !== undefined) args.push("--modalities", t.modalities.join(","));
  args.push(...(t.args ?? []));
  return args;
}

/** The container command of a rank: `spec.command` when set, else `ssl3d train ...`. */
export function trainCommand(spec: Pick<PretrainRunSpec, "training" | "command">, plan: TrainInputs): string[] {
  return spec.command ?? ["ssl3d", ...trainArgs(spec, plan)];
}
