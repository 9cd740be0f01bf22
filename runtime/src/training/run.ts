/**
 * `ssl3d train` orchestration: resolve the dataset, plan and configuration; list the preprocessed images; split
 * subjects (splits_final.json); build the network (models registry) and the method; lay out the results folder
 * (config/layout.ts; nnssl `AbstractBaseTrainer.__init__` in `src/nnssl/training/nnsslTrainer/AbstractTrainer.py`:
 * `$nnssl_results/DatasetNNN_Name/<Trainer>__<Plans>__<Config>/` with `plans.json`, `adaptation_plan.json`, and
 * `fold_all/`); serve metrics; install the SIGTERM/SIGUSR1 handlers; run the loop.
 */
import { isAbsolute, relative, resolve } from "node:path";
import { requireRoot, resolveDatasetName } from "../config/env.js";
import { ConfigError, DataError, EnvironmentError, Ssl3dError } from "../errors.js";
import { writeJsonAtomic } from "../io/atomic.js";
import { lockFolder, type FolderLock } from "../io/folder-lock.js";
import {
  checkConfigurationName,
  checkPlansName,
  foldDir as foldDirOf,
  foldFile,
  plansFile as plansFileOf,
  preprocessedDatasetDir,
  resultsFile,
  resultsRunDir,
  splitsFile,
} from "../config/layout.js";
import { planConfiguration, readPlansDocument, type PlansDocument } from "../config/plans.js";
import { childEnv, envString } from "../config/settings.js";
import { loadOrCreateSplit } from "../data/split.js";
import { DEFAULT_READER_MODULE, filterImages, type TrainingImage, type VolumeReaderModule } from "../data/source.js";
import { getMethod } from "../methods/registry.js";
import { adaptationPlan, UPSTREAM_DOWNSTREAM_PATCH } from "../models/checkpoint-export.js";
import { parseBackendRequest, selectBackend, tfjsNodeMissing } from "../models/backend/select.js";
import { architectureKeys, createNetwork, getArchitecture } from "../models/registry.js";
import { loadMatchingWeights, readTorchCheckpoint } from "../models/checkpoint-import.js";
import type { Logger } from "../observability/log.js";
import {
  METRICS_ADDRESS_ENV,
  TrainingMetrics,
  metricsHost,
  serveMetrics,
  type MetricsServer,
} from "../observability/training-metrics.js";
import { ENV, distributedConfigFromEnv, perRankBatchSize, type DistributedConfig } from "../distributed/env.js";
import { launchLocalRanks } from "../distributed/launch.js";
import { claimCheckpointFolder } from "./run-marker.js";
import { ENV as POD_ENV } from "../../../api/pod.js";
import { checkRanksFitGpus, visibleGpuCount } from "../distributed/gpus.js";
import { initProcessGroup } from "../distributed/process-group.js";
import { train, type StopSignal, type TrainingResult, type TrainingRun } from "./loop.js";
import { describeStop } from "./stop.js";
import { resolveTrainer, upstreamDifferences, type ResolvedTrainer } from "./registry.js";
import type { RunInfo } from "./run-info.js";
import { checkBatchMemory } from "./memory-check.js";
import { checkCount, COUNTS } from "../config/limits.js";
import { initialPatchSize } from "../data/patch.js";

export interface TrainArgs {
  readonly dataset: string;
  readonly configuration: string;
  readonly trainer: string;
  readonly plans: string;
  readonly resume?: boolean;
  readonly epochs?: number;
  readonly itersPerEpoch?: number;
  readonly valIters?: number;
  /** A cube side or [x, y, z]. */
  readonly patchSize?: number | readonly [number, number, number];
  readonly batchSize?: number;
  readonly archPreset?: string;
  /** nnssl's -pretrained_weights: a .pth (nnssl checkpoint or state dict) or ssl3d network/checkpoint file. */
  readonly pretrainedWeights?: string;
  readonly seed?: number;
  readonly metricsPort?: number;
  /** Interface of the metrics endpoint (default SSL3D_METRICS_ADDRESS, else 127.0.0.1). */
  readonly metricsAddress?: string;
  readonly backend?: string;
  readonly workers?: number;
  /** Keep only images of these modalities (`--modalities`; the trainer option `modalities`). */
  readonly modalities?: readonly string[];
  readonly progress?: boolean;
  /** Local data-parallel processes on this node (torchrun's --nproc-per-node); default PET_NPROC_PER_NODE or 1. */
  readonly nprocPerNode?: number;
  /** Called after every training step (tests, embedding). */
  readonly onStep?: (s: {
    epoch: number;
    iteration: number;
    globalStep: number;
    loss: number;
    skipped: boolean;
  }) => void;
}

interface ListModule {
  listPreprocessedImages(
    datasetName: string,
    config: string,
    plansName: string,
  ): Promise<TrainingImage[]> | TrainingImage[];
}

export async function listImages(datasetName: string, config: string, plansName: string): Promise<TrainingImage[]> {
  const spec = new URL("../preprocessing/dataset.js", import.meta.url).href;
  let mod: ListModule;
  try {
    mod = (await import(spec)) as ListModule;
  } catch (err) {
    throw new EnvironmentError(
      `the preprocessed-store module is not available in this build (${(err as Error).message.split("\n")[0] ?? ""})`,
    );
  }
  return await mod.listPreprocessedImages(datasetName, config, plansName);
}

/** The process exits with a given code (stopped by a signal: 128 + signal number; a failed local rank: its code). */
export class ExitError extends Ssl3dError {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/**
 * Entry of `ssl3d train`: with more than one local process per node (and no RANK yet), act as the local launcher
 * (one child per rank, torchrun-style environment); otherwise train as this rank.
 */
export async function runTrainingCli(a: TrainArgs, logger: Logger): Promise<void> {
  const cfg = distributedConfigFromEnv();
  // PET_NPROC_PER_NODE is bounded like --nproc-per-node before any rank is started
  const nproc = a.nprocPerNode ?? checkCount({ ...COUNTS.nprocPerNode, flag: ENV.nprocPerNode }, cfg.nprocPerNode);
  if (nproc > 1 && envString("RANK") === undefined) {
    const backend =
      a.backend !== undefined && a.backend !== ""
        ? parseBackendRequest(a.backend, "--backend")
        : parseBackendRequest(envString("SSL3D_BACKEND"), "SSL3D_BACKEND");
    checkRanksFitGpus(nproc, backend, visibleGpuCount(), tfjsNodeMissing("@tensorflow/tfjs-node-gpu") === undefined);
    logger.info({ nprocPerNode: nproc, nnodes: cfg.nnodes, nodeRank: cfg.nodeRank }, "Launching local ranks");
    const code = await launchLocalRanks({
      cfg,
      nprocPerNode: nproc,
      command: process.execPath,
      args: [...process.execArgv, process.argv[1]!, ...process.argv.slice(2)],
      env: childEnv({ [ENV.nprocPerNode]: String(nproc) }),
    });
    if (code !== 0) throw new ExitError(`a local rank failed (exit code ${code})`, code);
    return;
  }
  await runTraining(a, logger);
}

export async function runTraining(
  a: TrainArgs,
  rootLogger: Logger,
  stop: StopSignal = { requested: false },
): Promise<TrainingResult> {
  const dist = distributedConfigFromEnv();
  const logger = dist.worldSize > 1 ? rootLogger.child({ rank: dist.rank }) : rootLogger;
  const datasetName = resolveDatasetName(a.dataset);
  const ppDataset = preprocessedDatasetDir(datasetName);
  const resultsRoot = requireRoot("nnssl_results");
  checkPlansName(a.plans, "--plans");
  checkConfigurationName(a.configuration, "CONFIGURATION");
  const plansFile = plansFileOf(ppDataset, a.plans);
  const plan = readPlansDocument(plansFile);
  const cfg = planConfiguration(plan, a.configuration, plansFile);
  const trainer = resolveRunTrainer(a);
  const o = trainer.options;
  if (dist.rank === 0) for (const d of upstreamDifferences(trainer)) logger.warn(d);
  const methodEntry = getMethod(o.method);
  const method = methodEntry.create(o.methodOptions, trainer.entry.family);
  const archKey =
    methodEntry.architectureFor?.(o.architecture, (k) => architectureKeys().includes(k)) ?? o.architecture;

  // absurd sizes fail here, before any data is read or a network built
  checkBatchMemory({
    batchSize: Math.ceil(o.batchSize / dist.worldSize),
    imagesPerSample: method.data?.imagesPerSample ?? 1,
    loadedPatch: o.augment ? initialPatchSize(o.patchSize) : o.patchSize,
    prefetch: o.prefetch,
  });
  const data = await loadRunImages(datasetName, ppDataset, a, o.modalities, logger);
  const backend = await selectBackend(a.backend); // logs the one-line choice

  const reader = (await import(DEFAULT_READER_MODULE)) as VolumeReaderModule;
  const inChannels = (await reader.openZarrVolume(data.trainImages[0]!.image)).shape[0] ?? 1;
  // methods that feed the network sub-crops (VoCo, SimCLR) build it for, and record in the plans, the crop size
  const netPatch = methodEntry.networkPatchSize?.(o.patchSize, o.methodOptions) ?? o.patchSize;
  const network = createNetwork(archKey, {
    ...methodEntry.architectureOptions?.(archKey),
    inChannels,
    outChannels: method.outChannels(inChannels),
    patchSize: netPatch,
    seed: o.seed,
  });

  const runDir = `${trainer.name}__${a.plans}__${a.configuration}`;
  const baseDir = resultsRunDir(resultsRoot, datasetName, trainer.name, a.plans, a.configuration);
  const foldDir = foldDirOf(baseDir);
  const checkpointDir = envString("SSL3D_CHECKPOINT_DIR") ?? foldDir;
  // one writer per folder: a second trainer on the same results (or checkpoint) folder stops here
  const locks = dist.rank === 0 ? lockTrainingFolders(baseDir, checkpointDir) : [];
  try {
    const adaptation = await writeRunPlans(
      a.configuration,
      plan,
      cfg,
      { train: o.patchSize, network: netPatch },
      baseDir,
      network.config,
    );
    if (dist.rank === 0) {
      const facts = { datasetName, trainer, archKey, parameters: network.parameterCount(), netPatch, checkpointDir };
      await writeJsonAtomic(foldFile(foldDir, "runInfo"), runInfo(a, facts, dist.worldSize, data), 2);
    }
    // Before anyone resumes or writes: the checkpoint folder must be this run's (or nobody's yet).
    await claimCheckpointFolder(
      checkpointDir,
      { run: envString(POD_ENV.run) ?? "", uid: envString(POD_ENV.runUid) ?? "" },
      dist.rank === 0,
    );
    const run: Omit<TrainingRun, "group" | "metrics" | "stop"> = {
      trainerName: trainer.name,
      runName: `${datasetName} · ${runDir}`,
      options: { ...o, batchSize: perRankBatchSize(o.batchSize, dist.worldSize, dist.rank) },
      globalBatchSize: o.batchSize,
      network,
      method,
      trainImages: data.trainImages,
      valImages: data.valImages,
      outputDir: foldDir,
      checkpointDir,
      resume: a.resume === true || envString("SSL3D_RESUME") === "latest",
      initArgs: {
        dataset_name: datasetName,
        plans_name: a.plans,
        configuration_name: a.configuration,
        fold: "all",
        trainer_options: o,
        backend: backend.name,
      },
      adaptationPlan: adaptation,
      logger,
      progressBar: a.progress ?? process.stderr.isTTY,
      ...(a.onStep === undefined ? {} : { onStep: a.onStep }),
    };
    logger.info(
      {
        ...{ trainer: trainer.name, key: trainer.entry.key, architecture: archKey, params: network.parameterCount() },
        ...{ patch: o.patchSize, batchSize: o.batchSize, epochs: o.numEpochs, itersPerEpoch: o.itersPerEpoch },
        ...{ trainImages: data.trainImages.length, valImages: data.valImages.length },
        ...{ output: foldDir, checkpointDir, resume: run.resume },
      },
      "Training",
    );
    return await trainAsRank(a, run, dist, stop);
  } finally {
    for (const l of locks) l.release();
  }
}

/**
 * The run's plans file (the trained configuration with the training patch) and upstream's adaptation plan (only the
 * trained configuration, its patch the network's input — VoCo, SimCLR: the crop — and upstream's constant
 * recommended downstream patch), both in the run's results folder. Returns the adaptation plan.
 */
async function writeRunPlans(
  configuration: string,
  plan: PlansDocument,
  cfg: PlansDocument["configurations"][string],
  patch: { train: readonly number[]; network: readonly number[] },
  baseDir: string,
  networkConfig: Parameters<typeof adaptationPlan>[0],
): Promise<ReturnType<typeof adaptationPlan>> {
  const withPatch = (p: readonly number[]) => ({
    ...plan,
    configurations: { [configuration]: { ...cfg, patch_size: [...p] } },
  });
  const adaptation = adaptationPlan(networkConfig, withPatch(patch.network), UPSTREAM_DOWNSTREAM_PATCH);
  await writeJsonAtomic(resultsFile(baseDir, "plans"), withPatch(patch.train), 4);
  await writeJsonAtomic(resultsFile(baseDir, "adaptationPlan"), adaptation, 4);
  return adaptation;
}

/** `fold_all/run_info.json`: what this run trains, on what, and where its checkpoints go. */
function runInfo(
  a: TrainArgs,
  f: {
    datasetName: string;
    trainer: ResolvedTrainer;
    archKey: string;
    parameters: number;
    netPatch: readonly number[];
    checkpointDir: string;
  },
  worldSize: number,
  data: Awaited<ReturnType<typeof loadRunImages>>,
): RunInfo {
  const o = f.trainer.options;
  return {
    dataset: f.datasetName,
    plans: a.plans,
    configuration: a.configuration,
    trainer: f.trainer.name,
    trainer_key: f.trainer.entry.key,
    method: o.method,
    architecture: f.archKey,
    parameters: f.parameters,
    patch_size: [...o.patchSize],
    network_patch_size: [...f.netPatch],
    batch_size: o.batchSize,
    world_size: worldSize,
    epochs: o.numEpochs,
    iters_per_epoch: o.itersPerEpoch,
    val_iters: o.valIters,
    modalities: o.modalities ?? null,
    train_images: data.trainImages.length,
    val_images: data.valImages.length,
    train_subjects: data.trainSubjects,
    val_subjects: data.valSubjects,
    checkpoint_dir: f.checkpointDir,
    started_at: new Date().toISOString(),
  };
}

/** The trainer with the command line's overrides of its options. */
function resolveRunTrainer(a: TrainArgs): ResolvedTrainer {
  const overrides: Record<string, unknown> = {};
  if (a.epochs !== undefined) overrides.numEpochs = a.epochs;
  if (a.itersPerEpoch !== undefined) overrides.itersPerEpoch = a.itersPerEpoch;
  if (a.valIters !== undefined) overrides.valIters = a.valIters;
  if (a.patchSize !== undefined)
    overrides.patchSize = typeof a.patchSize === "number" ? [a.patchSize, a.patchSize, a.patchSize] : [...a.patchSize];
  if (a.batchSize !== undefined) overrides.batchSize = a.batchSize;
  if (a.archPreset !== undefined) overrides.architecture = a.archPreset;
  if (a.seed !== undefined) overrides.seed = a.seed;
  if (a.workers !== undefined) overrides.loaderWorkers = a.workers;
  if (a.modalities !== undefined) overrides.modalities = [...a.modalities];
  return resolveTrainer(a.trainer, overrides, (key) => {
    try {
      return getArchitecture(key).family;
    } catch {
      return undefined;
    }
  });
}

/** The preprocessed images, split by subject (splits_final.json) and filtered by modality. */
async function loadRunImages(
  datasetName: string,
  ppDataset: string,
  a: TrainArgs,
  modalities: readonly string[] | undefined,
  logger: Logger,
) {
  const all = await listImages(datasetName, a.configuration, a.plans);
  if (all.length === 0)
    throw new DataError(
      `no preprocessed images for ${a.plans}_${a.configuration}; run 'ssl3d plan-and-preprocess' first`,
      { file: ppDataset },
    );
  const splitFile = splitsFile(ppDataset);
  const { split, created, persisted } = await loadOrCreateSplit(
    splitFile,
    all.map((i) => i.uniqueSubjectId),
  );
  logger.info(
    { file: splitFile, created, persisted, train: split.train.length, val: split.val.length },
    persisted ? "Subject split" : "Subject split (read-only data folder: computed, not written)",
  );
  const filter = { modalities };
  const trainImages = filterImages(all, new Set(split.train), filter);
  const valImages = filterImages(all, new Set(split.val), filter);
  if (trainImages.length === 0)
    throw new DataError(`no training images left after the split and modality filter`, { file: splitFile });
  return { trainImages, valImages, trainSubjects: split.train.length, valSubjects: split.val.length };
}

/**
 * Join the data-parallel group, serve /metrics, load pretrained weights, turn SIGTERM/SIGUSR1 into stop requests and
 * train; a stopped run ends in an ExitError (128 + signal number) after checkpoint_latest is written.
 */
async function trainAsRank(
  a: TrainArgs,
  run: Omit<TrainingRun, "group" | "metrics" | "stop">,
  dist: DistributedConfig,
  stop: StopSignal,
): Promise<TrainingResult> {
  const logger = run.logger;
  const group = await initProcessGroup(dist);
  if (dist.worldSize > 1)
    logger.info(
      {
        rank: dist.rank,
        worldSize: dist.worldSize,
        perRankBatch: run.options.batchSize,
        globalBatch: run.globalBatchSize,
      },
      "Joined the data-parallel group",
    );
  const metrics = new TrainingMetrics();
  const signals = new StopSignals(stop, logger);
  let server: MetricsServer | undefined;
  try {
    server = await startMetricsServer(a, metrics, dist.localRank, logger);
    if (a.pretrainedWeights !== undefined) {
      // matching names and shapes are loaded into the fresh network, segmentation layers skipped
      const ck = await readTorchCheckpoint(a.pretrainedWeights);
      const r = loadMatchingWeights(run.network, ck.stateDict, a.pretrainedWeights);
      logger.info(
        {
          file: a.pretrainedWeights,
          loaded: r.loaded.length,
          skipped: r.skipped.length,
          unusedKeys: r.unused.length,
          firstSkipped: r.skipped.slice(0, 5),
        },
        "Pretrained weights loaded",
      );
    }
    signals.install();
    const result = await train({ ...run, group, metrics, stop });
    if (result.status === "stopped") {
      const why = result.stopReason === undefined ? "request" : describeStop(result.stopReason);
      throw new ExitError(
        `stopped by ${why} after step ${result.globalStep}; checkpoint_latest written to ${run.checkpointDir}; continue with --resume`,
        128 + signals.signalNo,
      );
    }
    logger.info(
      {
        epochs: result.epochsCompleted,
        steps: result.globalStep,
        trainLoss: result.finalTrainLoss,
        valLoss: result.finalValLoss,
      },
      "Training finished",
    );
    return result;
  } finally {
    signals.remove();
    await server?.close();
    await group.close();
    run.network.dispose();
  }
}

/** SIGTERM and SIGUSR1 as stop requests (the loop finishes its step and writes checkpoint_latest). */
class StopSignals {
  signalNo = 0;
  private readonly signals: NodeJS.Signals[] = ["SIGTERM", "SIGUSR1"];
  private readonly handler = (sig: NodeJS.Signals): void => {
    this.stop.requested = true;
    this.stop.reason = sig;
    this.signalNo = sig === "SIGTERM" ? 15 : 10;
    this.logger.warn({ signal: sig }, "Stop requested; finishing the current step");
  };

  constructor(
    private readonly stop: StopSignal,
    private readonly logger: Logger,
  ) {}

  install(): void {
    for (const s of this.signals) process.on(s, this.handler);
  }

  remove(): void {
    for (const s of this.signals) process.off(s, this.handler);
  }
}

/** The /metrics endpoint of this node (local rank 0), when a port is given (`--metrics-port`, SSL3D_METRICS_PORT). */
async function startMetricsServer(
  a: TrainArgs,
  metrics: TrainingMetrics,
  localRank: number,
  logger: Logger,
): Promise<MetricsServer | undefined> {
  const envPort = envString("SSL3D_METRICS_PORT");
  const port = a.metricsPort ?? (envPort !== undefined ? Number(envPort) : undefined);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535))
    throw new ConfigError(`invalid metrics port ${String(port)}`, { field: "--metrics-port" });
  if (port === undefined || localRank !== 0) return undefined;
  const server = await serveMetrics(metrics, port, {
    host: metricsHost(a.metricsAddress === undefined ? undefined : { [METRICS_ADDRESS_ENV]: a.metricsAddress }),
  });
  logger.info({ host: server.host, port: server.port }, "Serving /metrics");
  return server;
}

/** The results folder's lock and, when checkpoints go elsewhere (SSL3D_CHECKPOINT_DIR), that folder's. */
function lockTrainingFolders(baseDir: string, checkpointDir: string): FolderLock[] {
  const locks = [lockFolder(baseDir, { owner: "ssl3d train" })];
  const rel = relative(resolve(baseDir), resolve(checkpointDir));
  if (rel.startsWith("..") || isAbsolute(rel)) {
    try {
      locks.push(lockFolder(checkpointDir, { owner: "ssl3d train" }));
    } catch (err) {
      locks[0]!.release();
      throw err;
    }
  }
  return locks;
}
