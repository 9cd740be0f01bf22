/**
 * The local runner behind `ssl3d run -f manifests.yaml`: what the operator does with pods, done with child
 * processes of this machine's `ssl3d`, with the same commands and the same environment contract
 * (nnssl_* roots, PET_*, SSL3D_*; see README.md "Environment variables" and docs/delivery.md):
 *   Collection  -> `ssl3d collection-summary -d DATASET --json`        (status: summary, contentHash)
 *   Plan        -> `ssl3d plan-and-preprocess -d DATASET [-c ..] ...`   (status: outputs; skipped when up to date)
 *   PretrainRun -> `ssl3d train DATASET CONFIG -tr TRAINER ...`         (attempts, restarts, resume from latest)
 * PersistentVolumeClaims become folders (`<state>/volumes/<claimName>[/<subPath>]`, or `--volume CLAIM=DIR`).
 * Status, logs and termination messages live under the state folder, so a re-run skips finished steps and a
 * PretrainRun resumes from its latest checkpoint.
 */
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { randomUUID } from "node:crypto";
import { FailureMessageSchema, parseTerminationJson } from "../../../api/termination.js";
import { ENV as POD_ENV, podEnv, runFolders, trainArgs as apiTrainArgs, type PodLayout } from "../../../api/pod.js";
import { ConfigError, Ssl3dError } from "../errors.js";
import { findResultsFolder } from "../training/run-info.js";
import { PARENT_PID_ENV } from "./parent-watch.js";
import { writeJsonAtomic } from "../io/atomic.js";
import { forPeople } from "../observability/log.js";
import { childEnv } from "../config/settings.js";
import {
  LOCAL_DEMO_ANNOTATION,
  type CollectionManifest,
  type Manifests,
  type PlanManifest,
  type PretrainRunManifest,
  type PvcMount,
} from "./manifests.js";

/** `ssl3d train` arguments of `--quick` (CI): a couple of short epochs; they replace the manifest's values. */
export const QUICK_TRAIN_ARGS: readonly string[] = ["--epochs", "2", "--iters-per-epoch", "4"];

export interface RunnerOptions {
  readonly manifests: Manifests;
  readonly stateDir: string;
  readonly quick: boolean;
  /** Overrides every PretrainRun's spec.metrics.port (0 disables the endpoint). */
  readonly metricsPort?: number | undefined;
  /** claimName -> folder; claims not listed live under `<state>/volumes/<claimName>`. */
  readonly volumes: Readonly<Record<string, string>>;
  /** How to start `ssl3d` (default: this Node running this checkout's bin/ssl3d.mjs). */
  readonly ssl3d?: readonly string[];
  /** Base environment of the children (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Progress lines (default: stdout). Children's output goes to stderr and to log files. */
  readonly print?: (line: string) => void;
  /** Where children's output is mirrored (default: process.stderr). */
  readonly childOutput?: NodeJS.WritableStream;
  /**
   * Mirror children's JSON log lines as short readable lines and leave out their JSON summary lines (the runner
   * prints those as sentences); default: when the mirror is a TTY and `--log-format json` was not given.
   */
  readonly prettyChildLogs?: boolean;
}

/** A child step failed; carries the child's exit code (2 config, 3 data, 4 training, 1 other). */
export class StepFailedError extends Ssl3dError {
  readonly exitCode: number;
  constructor(message: string, exitCode: number, file: string) {
    super(message, { file });
    this.exitCode = exitCode >= 1 && exitCode <= 4 ? exitCode : 1;
  }
}

export interface CollectionStatus {
  phase: "Ready" | "Failed";
  dataset: string;
  summary?: Record<string, unknown>;
  contentHash?: string;
  message?: string;
  time: string;
}
export interface PlanStatus {
  phase: "Ready" | "Failed";
  collectionHash?: string;
  specHash: string;
  outputs?: PreprocessOutputs;
  message?: string;
  time: string;
}
export interface PreprocessOutputs {
  images: number;
  valid: number;
  failed: number;
  configurations: string[];
  plansFile: string;
  preprocessedDir: string;
}
export interface RunStatus {
  phase: "Running" | "Succeeded" | "Failed" | "Interrupted";
  attempt: number;
  restarts: number;
  /** The run's identity (metadata.uid, else generated on the first invocation and kept). */
  uid: string;
  checkpointDir: string;
  message?: string;
  startTime: string;
  completionTime?: string;
}

/** Process groups of running children, stopped when the runner exits however it exits (short of SIGKILL). */
const liveChildren = new Set<number>();
let exitHookInstalled = false;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pid of liveChildren) killGroup(pid, "SIGTERM");
  });
}

const PACKAGE_ROOT = resolve(import.meta.dirname, "..", "..", "..");
const DEFAULT_SSL3D = [process.execPath, join(PACKAGE_ROOT, "bin", "ssl3d.mjs")];

export function volumePath(stateDir: string, volumes: Readonly<Record<string, string>>, pvc: PvcMount): string {
  const base = volumes[pvc.claimName] ?? join(stateDir, "volumes", pvc.claimName);
  return resolve(pvc.subPath === undefined || pvc.subPath === "" ? base : join(base, pvc.subPath));
}

/** The DatasetNNN_Name folder of a dataset ID or name below a root, if it exists. */
export function findDatasetFolder(root: string, dataset: string): string | undefined {
  if (!existsSync(root)) return undefined;
  if (dataset.startsWith("Dataset")) return existsSync(join(root, dataset)) ? dataset : undefined;
  const prefix = `Dataset${dataset.padStart(3, "0")}_`;
  return readdirSync(root).find((n) => n.startsWith(prefix));
}

/** The local layout of a rank: volumes are folders, one node, metrics on loopback (api/pod.ts PodLayout). */
export function localLayout(o: {
  checkpointsRoot: string;
  preprocessed: string;
  metricsPort: number;
  terminationLog: string;
}): PodLayout {
  return {
    checkpointsRoot: o.checkpointsRoot,
    preprocessed: o.preprocessed,
    terminationLog: o.terminationLog,
    nodeRank: { value: "0" },
    masterAddr: "127.0.0.1",
    // port 0 means "no endpoint" here (for the trainer, 0 would mean a random port)
    metricsPort: o.metricsPort > 0 ? o.metricsPort : undefined,
    metricsAddress: "127.0.0.1",
    runSecretFile: undefined,
    join,
  };
}

/**
 * Environment of a `ssl3d train` child: the base environment, then exactly what the operator puts into a rank's
 * pod (api/pod.ts podEnv), with the local layout. valueFrom sources (Secrets, pod fields) exist only in a cluster.
 */
export function trainEnv(o: {
  base: NodeJS.ProcessEnv;
  run: PretrainRunManifest;
  uid: string;
  attempt: number;
  layout: PodLayout;
  file?: string;
}): NodeJS.ProcessEnv {
  const { SSL3D_METRICS_PORT: _inherited, ...base } = o.base;
  const env: NodeJS.ProcessEnv = { ...base };
  for (const [i, e] of podEnv(o.run.spec, { name: o.run.name, uid: o.uid }, o.attempt, o.layout).entries()) {
    if ("valueFrom" in e) {
      const idx = (o.run.spec.env ?? []).findIndex((x) => x.name === e.name);
      throw new ConfigError(
        `PretrainRun/${o.run.name}: ${e.name} takes its value from the cluster (valueFrom), which the local runner cannot resolve; give a value`,
        { file: o.file, field: idx >= 0 ? `spec.env[${idx}].valueFrom` : `env[${i}]` },
      );
    }
    env[e.name] = e.value;
  }
  return env;
}

/** The `ssl3d train` arguments of a run (api/pod.ts trainArgs, the operator's default command minus `ssl3d`). */
export function trainArgs(
  run: PretrainRunManifest,
  plan: PlanManifest,
  dataset: string,
  configuration: string,
  quick: boolean,
): string[] {
  const args = apiTrainArgs(run.spec, { dataset, configuration, plansName: plan.spec.plansName });
  if (!quick) return args;
  // drop the options --quick sets (`--opt value` and `--opt=value` forms), then append the quick values
  const quickFlags = new Set(QUICK_TRAIN_ARGS.filter((a) => a.startsWith("--")));
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (quickFlags.has(a)) i++;
    else if (!quickFlags.has(a.split("=")[0]!)) kept.push(a);
  }
  return [...kept, ...QUICK_TRAIN_ARGS];
}

const LEVELS: Readonly<Record<number, string>> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

/** One pino JSON line as `  HH:MM:SS level msg k=v ...` (other lines unchanged). The log file keeps the JSON. */
export function prettyLogLine(line: string): string {
  if (!line.startsWith("{")) return line;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof o.msg !== "string") return line;
  const { level, time, msg, pid: _pid, hostname: _host, name: _name, ...rest } = o;
  const t = typeof time === "number" ? new Date(time).toISOString().slice(11, 19) : "";
  const lv = typeof level === "number" ? (LEVELS[level] ?? String(level)) : "";
  const fields = Object.entries(rest).map(
    ([k, v]) =>
      `${k}=${typeof v === "number" ? String(Number(v.toPrecision(5))) : typeof v === "string" ? v : JSON.stringify(v)}`,
  );
  return `  ${t} ${lv} ${msg}${fields.length > 0 ? ` ${fields.join(" ")}` : ""}`;
}

/** A child's JSON summary on stdout (collection-summary --json, plan-and-preprocess): an object that is not a log line. */
export function isSummaryLine(line: string): boolean {
  if (!line.startsWith("{")) return false;
  try {
    const o = JSON.parse(line) as unknown;
    return typeof o === "object" && o !== null && !Array.isArray(o) && !("msg" in o);
  } catch {
    return false;
  }
}

function now(): string {
  return new Date().toISOString();
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
}

/** Last JSON object line of a termination log (or of stdout). */
function lastJsonLine(text: string): Record<string, unknown> | undefined {
  const line = text
    .trim()
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("{"))
    .at(-1);
  if (line === undefined) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

export class LocalRunner {
  private readonly print: (line: string) => void;
  private readonly ssl3d: readonly string[];
  private readonly env: NodeJS.ProcessEnv;
  private readonly stateDir: string;
  private current: ReturnType<typeof spawn> | undefined;
  private interrupted: NodeJS.Signals | undefined;

  constructor(private readonly o: RunnerOptions) {
    this.print = o.print ?? ((l) => process.stdout.write(`${l}\n`));
    this.ssl3d = o.ssl3d ?? DEFAULT_SSL3D;
    this.env = o.env ?? childEnv();
    this.stateDir = resolve(o.stateDir);
    installExitHook();
  }

  private statusFile(kind: string, name: string): string {
    return join(this.stateDir, "status", `${kind.toLowerCase()}-${name}.json`);
  }

  private volume(pvc: PvcMount): string {
    const p = volumePath(this.stateDir, this.o.volumes, pvc);
    mkdirSync(p, { recursive: true });
    return p;
  }

  /**
   * Stop the running child's process group with SIGTERM on SIGINT or SIGTERM (the trainer checkpoints and exits on
   * SIGTERM; the child is in its own group, so a terminal's Ctrl-C reaches only this runner), then stop.
   */
  interrupt(signal: NodeJS.Signals): void {
    this.interrupted = signal;
    if (this.current?.pid !== undefined) killGroup(this.current.pid, "SIGTERM");
  }

  /** Run one `ssl3d` child; resolves to its exit code (signals map to 128+n). Output is teed to the log file. */
  private async child(
    args: readonly string[],
    env: NodeJS.ProcessEnv,
    log: string,
  ): Promise<{ code: number; stdout: string }> {
    mkdirSync(dirname(log), { recursive: true });
    const file = createWriteStream(log, { flags: "a" });
    file.write(`# ${now()} ssl3d ${args.join(" ")}\n`);
    const [cmd, ...pre] = this.ssl3d;
    // Children run in the package folder (every path they get is absolute): worker threads that load TypeScript
    // through tsx resolve it from the working directory.
    // Each child leads its own process group (so a signal reaches it and everything it started) and knows this
    // process as its parent: if the runner dies, even by SIGKILL, the child stops itself (local/parent-watch.ts).
    const child = spawn(cmd!, [...pre, ...args], {
      cwd: PACKAGE_ROOT,
      env: { ...env, [PARENT_PID_ENV]: String(process.pid) },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    this.current = child;
    if (child.pid !== undefined) liveChildren.add(child.pid);
    const mirror = this.o.childOutput ?? process.stderr;
    const pretty = this.o.prettyChildLogs ?? forPeople(mirror as { isTTY?: boolean });
    const pending = { out: "", err: "" };
    const show = (b: Buffer, from: "out" | "err"): void => {
      if (!pretty) {
        mirror.write(b);
        return;
      }
      pending[from] += b.toString();
      const lines = pending[from].split("\n");
      pending[from] = lines.pop() ?? "";
      for (const l of lines) if (from === "err" || !isSummaryLine(l)) mirror.write(`${prettyLogLine(l)}\n`);
    };
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
      file.write(b);
      show(b, "out");
    });
    child.stderr.on("data", (b: Buffer) => {
      file.write(b);
      show(b, "err");
    });
    const code = await new Promise<number>((res) => {
      child.on("error", (err) => {
        file.write(`spawn error: ${err.message}\n`);
        res(127);
      });
      child.on("close", (c, sig) => {
        res(c ?? (sig === "SIGINT" ? 130 : 143));
      });
    });
    if (child.pid !== undefined) liveChildren.delete(child.pid);
    this.current = undefined;
    if (pending.err !== "") mirror.write(`${prettyLogLine(pending.err)}\n`);
    if (pending.out !== "" && !isSummaryLine(pending.out)) mirror.write(`${pending.out}\n`);
    await new Promise((r) => file.end(r));
    return { code, stdout };
  }

  /** `ssl3d report` of a finished run, path printed; a failed report is said, the run stays Succeeded. */
  private async report(
    step: string,
    what: string,
    env: NodeJS.ProcessEnv,
    resultsRoot: string,
    checkpointDir: string,
    log: string,
  ): Promise<void> {
    const dir = findResultsFolder(resultsRoot, checkpointDir);
    if (dir === undefined) {
      this.print(`${step} ${what}: no results folder of ${checkpointDir} under ${resultsRoot}; no report`);
      return;
    }
    const r = await this.child(["report", dir, "--checkpoints", checkpointDir], env, log);
    const file = r.stdout.trim().split("\n").at(-1) ?? "";
    this.print(
      r.code === 0 && file !== ""
        ? `${step} ${what}: report ${file}`
        : `${step} ${what}: 'ssl3d report ${dir}' exited ${r.code} (log: ${log})`,
    );
  }

  private fail(
    what: string,
    args: readonly string[],
    code: number,
    terminationLog: string | undefined,
    log: string,
  ): StepFailedError {
    const text = terminationLog !== undefined && existsSync(terminationLog) ? readFileSync(terminationLog, "utf8") : "";
    const parsed = parseTerminationJson(text, FailureMessageSchema);
    const msg = parsed.ok ? parsed.value.message : (text.trim().split("\n").at(-1) ?? "");
    return new StepFailedError(
      `${what}: 'ssl3d ${args.join(" ")}' exited ${code}${msg === "" ? "" : `: ${msg}`} (log: ${log})`,
      code,
      this.o.manifests.source,
    );
  }

  async runAll(): Promise<void> {
    const m = this.o.manifests;
    const total = m.collections.length + m.plans.length + m.runs.length;
    let i = 0;
    const step = (): string => `[${++i}/${total}]`;
    this.print(
      `ssl3d run: ${total} manifest(s) from ${m.source}; state in ${this.stateDir}${this.o.quick ? " (quick)" : ""}`,
    );
    const collections = new Map<string, CollectionStatus & { root: string }>();
    for (const c of m.collections) collections.set(c.name, await this.collection(c, step()));
    const plans = new Map<string, PlanStatus>();
    for (const p of m.plans) plans.set(p.name, await this.plan(p, collections.get(p.spec.collectionRef.name)!, step()));
    for (const r of m.runs) {
      const plan = m.plans.find((p) => p.name === r.spec.planRef.name)!;
      const col = collections.get(plan.spec.collectionRef.name)!;
      await this.pretrainRun(r, plan, plans.get(plan.name)!, col, step());
    }
    this.print(`ssl3d run: done (status in ${join(this.stateDir, "status")}, logs in ${join(this.stateDir, "logs")})`);
  }

  private checkInterrupted(what: string): void {
    if (this.interrupted !== undefined)
      throw new StepFailedError(
        `${what}: interrupted by ${this.interrupted}; run the same command again to resume`,
        1,
        this.o.manifests.source,
      );
  }

  async collection(c: CollectionManifest, step: string): Promise<CollectionStatus & { root: string }> {
    const what = `Collection/${c.name}`;
    const root = this.volume(c.spec.source.pvc);
    const base = { ...this.env, nnssl_raw: root };
    if (c.annotations[LOCAL_DEMO_ANNOTATION] === "true" && findDatasetFolder(root, c.spec.dataset) === undefined) {
      this.print(`${step} ${what}: generating the demo collection into ${root}`);
      const args = [
        "demo",
        "--no-preprocess",
        "--out",
        join(this.stateDir, "demo"),
        ...(this.o.quick ? ["--quick"] : []),
      ];
      const log = join(this.stateDir, "logs", `collection-${c.name}-demo.log`);
      const r = await this.child(args, base, log);
      this.checkInterrupted(what);
      if (r.code !== 0) throw this.fail(what, args, r.code, undefined, log);
    }
    const term = join(this.stateDir, "termination", `collection-${c.name}`);
    mkdirSync(dirname(term), { recursive: true });
    const args = ["collection-summary", "-d", c.spec.dataset, "--json"];
    const log = join(this.stateDir, "logs", `collection-${c.name}.log`);
    this.print(`${step} ${what}: ssl3d ${args.join(" ")}`);
    const r = await this.child(args, { ...base, SSL3D_TERMINATION_LOG: term }, log);
    this.checkInterrupted(what);
    if (r.code !== 0) {
      await writeJsonAtomic(this.statusFile("Collection", c.name), {
        phase: "Failed",
        dataset: c.spec.dataset,
        message: `exit ${r.code}`,
        time: now(),
      } satisfies CollectionStatus);
      throw this.fail(what, args, r.code, term, log);
    }
    const summary = lastJsonLine(existsSync(term) ? readFileSync(term, "utf8") : r.stdout);
    if (summary === undefined || typeof summary.contentHash !== "string")
      throw this.fail(`${what}: no summary JSON`, args, 1, term, log);
    const status: CollectionStatus = {
      phase: "Ready",
      dataset: c.spec.dataset,
      summary,
      contentHash: summary.contentHash,
      time: now(),
    };
    await writeJsonAtomic(this.statusFile("Collection", c.name), status);
    this.print(
      `${step} ${what}: Ready: ${String(summary.images)} image(s), ${String(summary.subjects)} subject(s), ${summary.contentHash.slice(0, 19)}…`,
    );
    return { ...status, root };
  }

  async plan(p: PlanManifest, col: CollectionStatus & { root: string }, step: string): Promise<PlanStatus> {
    const what = `Plan/${p.name}`;
    const specHash = JSON.stringify(p.spec);
    const prior = readJson(this.statusFile("Plan", p.name)) as PlanStatus | undefined;
    if (prior?.phase === "Ready" && prior.collectionHash === col.contentHash && prior.specHash === specHash) {
      this.print(`${step} ${what}: up to date (${String(prior.outputs?.valid ?? "?")} image(s) preprocessed); skipped`);
      return prior;
    }
    const out = this.volume(p.spec.output.pvc);
    const args = ["plan-and-preprocess", "-d", col.dataset];
    for (const c of p.spec.configurations ?? []) args.push("-c", c);
    if (p.spec.plansName !== undefined) args.push("-p", p.spec.plansName);
    if (p.spec.numProcesses !== undefined) args.push("-np", String(p.spec.numProcesses));
    args.push(...(p.spec.extraArgs ?? []));
    const term = join(this.stateDir, "termination", `plan-${p.name}`);
    mkdirSync(dirname(term), { recursive: true });
    const log = join(this.stateDir, "logs", `plan-${p.name}.log`);
    this.print(`${step} ${what}: ssl3d ${args.join(" ")}  (nnssl_preprocessed=${out})`);
    const r = await this.child(
      args,
      { ...this.env, nnssl_raw: col.root, nnssl_preprocessed: out, SSL3D_TERMINATION_LOG: term },
      log,
    );
    this.checkInterrupted(what);
    if (r.code !== 0) {
      await writeJsonAtomic(this.statusFile("Plan", p.name), {
        phase: "Failed",
        specHash,
        message: `exit ${r.code}`,
        time: now(),
      } satisfies PlanStatus);
      throw this.fail(what, args, r.code, term, log);
    }
    const outputs = lastJsonLine(existsSync(term) ? readFileSync(term, "utf8") : "") as PreprocessOutputs | undefined;
    if (outputs === undefined || !Array.isArray(outputs.configurations))
      throw this.fail(`${what}: no preprocessing summary`, args, 1, term, log);
    const status: PlanStatus = {
      phase: "Ready",
      ...(col.contentHash === undefined ? {} : { collectionHash: col.contentHash }),
      specHash,
      outputs,
      time: now(),
    };
    await writeJsonAtomic(this.statusFile("Plan", p.name), status);
    this.print(
      `${step} ${what}: Ready: ${outputs.valid}/${outputs.images} image(s) preprocessed (${outputs.configurations.join(", ")})${outputs.failed > 0 ? `, ${outputs.failed} failed` : ""} in ${outputs.preprocessedDir}`,
    );
    return status;
  }

  async pretrainRun(
    r: PretrainRunManifest,
    plan: PlanManifest,
    planStatus: PlanStatus,
    col: CollectionStatus & { root: string },
    step: string,
  ): Promise<RunStatus> {
    const what = `PretrainRun/${r.name}`;
    const file = this.statusFile("PretrainRun", r.name);
    const prior = readJson(file) as RunStatus | undefined;
    if (prior?.phase === "Succeeded") {
      this.print(
        `${step} ${what}: already Succeeded (checkpoints in ${prior.checkpointDir}); remove ${file} to train again`,
      );
      return prior;
    }
    if (r.spec.numNodes > 1 || r.spec.nprocPerNode > 1) {
      this.print(
        `${step} ${what}: numNodes=${r.spec.numNodes} x nprocPerNode=${r.spec.nprocPerNode} runs locally as 1 node x 1 process`,
      );
    }
    const configuration =
      r.spec.training.configuration ?? plan.spec.configurations?.[0] ?? planStatus.outputs?.configurations[0];
    if (configuration === undefined)
      throw new ConfigError(`${what}: no configuration to train (set spec.training.configuration)`, {
        file: this.o.manifests.source,
        field: "spec.training.configuration",
      });
    const checkpoints = this.volume(r.spec.storage.checkpoints);
    const preprocessed =
      r.spec.storage.data === undefined ? this.volume(plan.spec.output.pvc) : this.volume(r.spec.storage.data);
    const uid = r.uid ?? prior?.uid ?? randomUUID();
    const folders = runFolders(r.spec, { name: r.name, uid }, { checkpointsRoot: checkpoints, join });
    const checkpointDir = folders.checkpoints;
    const metricsPort = this.o.metricsPort ?? r.spec.metrics.port;
    const args = trainArgs(r, plan, col.dataset, configuration, this.o.quick);
    let attempt = prior?.attempt ?? 0;
    let restarts = prior?.restarts ?? 0;
    // The restart budget is per invocation: running `ssl3d run` again after a failure is a deliberate retry.
    let budgetUsed = 0;
    const startTime = prior?.startTime ?? now();
    for (;;) {
      attempt++;
      const term = join(this.stateDir, "termination", `pretrainrun-${r.name}-a${attempt}`);
      mkdirSync(dirname(term), { recursive: true });
      const log = join(this.stateDir, "logs", `pretrainrun-${r.name}-a${attempt}.log`);
      const running: RunStatus = { phase: "Running", attempt, restarts, uid, checkpointDir, startTime };
      await writeJsonAtomic(file, running);
      const resume =
        r.spec.runPolicy.resume === "Latest" ? ", resuming from the latest checkpoint if there is one" : "";
      this.print(`${step} ${what}: attempt ${attempt}${resume}: ssl3d ${args.join(" ")}`);
      this.print(
        `${step} ${what}: checkpoints in ${checkpointDir}${metricsPort > 0 ? `, metrics on http://127.0.0.1:${metricsPort}/metrics` : ""}, log ${log}`,
      );
      const env = trainEnv({
        base: this.env,
        run: r,
        uid,
        attempt,
        layout: localLayout({ checkpointsRoot: checkpoints, preprocessed, metricsPort, terminationLog: term }),
        file: this.o.manifests.source,
      });
      const res = await this.child(args, env, log);
      if (this.interrupted !== undefined) {
        await writeJsonAtomic(file, {
          ...running,
          phase: "Interrupted",
          message: `interrupted by ${this.interrupted}`,
        } satisfies RunStatus);
        this.checkInterrupted(what);
      }
      if (res.code === 0) {
        const done: RunStatus = { ...running, phase: "Succeeded", completionTime: now() };
        await writeJsonAtomic(file, done);
        this.print(
          `${step} ${what}: Succeeded after ${attempt} attempt(s), ${restarts} restart(s); checkpoints in ${checkpointDir}`,
        );
        // the run's own results folder (nnssl_results of the contract: <checkpoints>/<folder>/results)
        await this.report(step, what, env, env[POD_ENV.results] ?? folders.results, checkpointDir, log);
        return done;
      }
      // Configuration and data errors fail the same way on every attempt: like a ValidationFailed run, no restart.
      const terminal = res.code === 2 || res.code === 3;
      if (terminal || budgetUsed >= r.spec.runPolicy.maxRestarts) {
        const err = this.fail(what, args, res.code, term, log);
        await writeJsonAtomic(file, {
          ...running,
          phase: "Failed",
          message: err.message,
          completionTime: now(),
        } satisfies RunStatus);
        throw err;
      }
      restarts++;
      budgetUsed++;
      this.print(
        `${step} ${what}: attempt ${attempt} exited ${res.code}; restart ${budgetUsed}/${r.spec.runPolicy.maxRestarts}`,
      );
    }
  }
}
