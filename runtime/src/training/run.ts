/**
 * `ssl3d train` orchestration: resolve the dataset, plan and configuration; list the preprocessed images; split
 * subjects (splits_final.json); build the network (models registry) and the method; lay out the results folder
 * (nnssl `AbstractBaseTrainer.__init__` in `src/nnssl/training/nnsslTrainer/AbstractTrainer.py`:
 * `$nnssl_results/DatasetNNN_Name/<Trainer>__<Plans>__<Config>/` with `plans.json`, `adaptation_plan.json`, and
 * `fold_all/`); serve metrics; install the SIGTERM/SIGUSR1 handlers; run the loop.
 */
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { requireRoot, resolveDatasetName } from "../config/env.js";
import { ConfigError, DataError, EnvironmentError, Ssl3dError } from "../errors.js";
import { writeJsonAtomic } from "../io/atomic.js";
import { lockFolder, type FolderLock } from "../io/folder-lock.js";
import { checkSafeName, childPath } from "../io/safe-path.js";
import { loadOrCreateSplit } from "../data/split.js";
import { DEFAULT_READER_MODULE, filterImages, type TrainingImage, type VolumeReaderModule } from "../data/source.js";
import { getMethod } from "../methods/registry.js";
import { adaptationPlan, UPSTREAM_DOWNSTREAM_PATCH } from "../models/checkpoint-export.js";
import { parseBackendRequest, selectBackend, tfjsNodeMissing } from "../models/backend/select.js";
import { architectureKeys, createNetwork, getArchitecture } from "../models/registry.js";
import { loadMatchingWeights, readTorchCheckpoint } from "../models/checkpoint-import.js";
import type { Logger } from "../observability/log.js";
import { METRICS_ADDRESS_ENV, TrainingMetrics, metricsHost, serveMetrics, type MetricsServer } from "../observability/training-metrics.js";
import { ENV, distributedConfigFromEnv, perRankBatchSize } from "../distributed/env.js";
import { launchLocalRanks } from "../distributed/launch.js";
import { claimCheckpointFolder } from "./run-marker.js";
import { ENV as POD_ENV } from "../../../api/pod.js";
import { checkRanksFitGpus, visibleGpuCount } from "../distributed/gpus.js";
import { initProcessGroup } from "../distributed/process-group.js";
import { train, type StopSignal, type TrainingResult } from "./loop.js";
import { resolveTrainer, upstreamDifferences } from "./registry.js";
import { RUN_INFO, type RunInfo } from "./run-info.js";
import { checkBatchMemory } from "./memory-check.js";
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
  readonly onStep?: (s: { epoch: number; iteration: number; globalStep: number; loss: number; skipped: boolean }) => void;
}

interface ListModule {
  listPreprocessedImages(datasetName: string, config: string, plansName: string): Promise<TrainingImage[]> | TrainingImage[];
}

export async function listImages(datasetName: string, config: string, plansName: string): Promise<TrainingImage[]> {
  const spec = new URL("../preprocessing/dataset.js", import.meta.url).href;
  let mod: ListModule;
  try {
    mod = (await import(spec)) as ListModule;
  } catch (err) {
    throw new EnvironmentError(`the preprocessed-store module is not available in this build (${(err as Error).message.split("\n")[0] ?? ""})`);
  }
  return await mod.listPreprocessedImages(datasetName, config, plansName);
}

function readPlan(file: string, configuration: string): { plan: Record<string, unknown>; cfg: Record<string, unknown> } {
  if (!existsSync(file)) throw new EnvironmentError(`plans file not found; run 'ssl3d plan-and-preprocess' first`, { file });
  let plan: Record<string, unknown>;
  try {
    plan = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`invalid JSON: ${(err as Error).message}`, { file });
  }
  const configs = plan.configurations as Record<string, Record<string, unknown>> | undefined;
  const cfg = configs?.[configuration];
  if (cfg === undefined) throw new ConfigError(`configuration "${configuration}" not in the plan (has: ${Object.keys(configs ?? {}).join(", ")})`, { file, field: `configurations.${configuration}` });
  return { plan, cfg };
}

/** The process exits with a given code (stopped by a signal: 128 + signal number; a failed local rank: its code). */
export class ExitError extends Ssl3dError {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/**
 * Entry of `ssl3d train`: with more than one local process per node (and no RANK yet), act as the local launcher
 * (one child per rank, torchrun-style environment); otherwise train as this rank.
 */
export async function runTrainingCli(a: TrainArgs, logger: Logger): Promise<void> {
  const cfg = distributedConfigFromEnv();
  const nproc = a.nprocPerNode ?? cfg.nprocPerNode;
  if (nproc > 1 && (process.env.RANK === undefined || process.env.RANK === "")) {
    const backend = a.backend !== undefined && a.backend !== "" ? parseBackendRequest(a.backend, "--backend") : parseBackendRequest(process.env.SSL3D_BACKEND, "SSL3D_BACKEND");
    checkRanksFitGpus(nproc, backend, visibleGpuCount(), tfjsNodeMissing("@tensorflow/tfjs-node-gpu") === undefined);
    logger.info({ nprocPerNode: nproc, nnodes: cfg.nnodes, nodeRank: cfg.nodeRank }, "Launching local ranks");
    const code = await launchLocalRanks({
      cfg, nprocPerNode: nproc, command: process.execPath, args: [...process.execArgv, process.argv[1]!, ...process.argv.slice(2)],
      env: { ...process.env, [ENV.nprocPerNode]: String(nproc) },
    });
    if (code !== 0) throw new ExitError(`a local rank failed (exit code ${code})`, code);
    return;
  }
  await runTraining(a, logger);
}

export async function runTraining(a: TrainArgs, rootLogger: Logger, stop: StopSignal = { requested: false }): Promise<TrainingResult> {
  const dist = distributedConfigFromEnv();
  const logger = dist.worldSize > 1 ? rootLogger.child({ rank: dist.rank }) : rootLogger;
  const datasetName = resolveDatasetName(a.dataset);
  const preRoot = requireRoot("nnssl_preprocessed");
  const resultsRoot = requireRoot("nnssl_results");
  checkSafeName(a.plans, `plans name ${JSON.stringify(a.plans)}`, { field: "--plans" });
  checkSafeName(a.configuration, `configuration name ${JSON.stringify(a.configuration)}`, { field: "CONFIGURATION" });
  const plansFile = join(preRoot, datasetName, `${a.plans}.json`);
  const { plan, cfg } = readPlan(plansFile, a.configuration);

  const overrides: Record<string, unknown> = {};
  if (a.epochs !== undefined) overrides.numEpochs = a.epochs;
  if (a.itersPerEpoch !== undefined) overrides.itersPerEpoch = a.itersPerEpoch;
  if (a.valIters !== undefined) overrides.valIters = a.valIters;
  if (a.patchSize !== undefined) overrides.patchSize = typeof a.patchSize === "number" ? [a.patchSize, a.patchSize, a.patchSize] : [...a.patchSize];
  if (a.batchSize !== undefined) overrides.batchSize = a.batchSize;
  if (a.archPreset !== undefined) overrides.architecture = a.archPreset;
  if (a.seed !== undefined) overrides.seed = a.seed;
  if (a.workers !== undefined) overrides.loaderWorkers = a.workers;
  if (a.modalities !== undefined) overrides.modalities = [...a.modalities];
  const trainer = resolveTrainer(a.trainer, overrides, (key) => {
    try {
      return getArchitecture(key).family;
    } catch {
      return undefined;
    }
  });
  const o = trainer.options;
  if (dist.rank === 0) for (const d of upstreamDifferences(trainer)) logger.warn(d);
  const methodEntry = getMethod(o.method);
  const method = methodEntry.create(o.methodOptions, trainer.entry.family);
  const archKey = methodEntry.architectureFor?.(o.architecture, (k) => architectureKeys().includes(k)) ?? o.architecture;

  // absurd sizes fail here, before any data is read or a network built
  checkBatchMemory({
    batchSize: Math.ceil(o.batchSize / dist.worldSize), imagesPerSample: method.data?.imagesPerSample ?? 1,
    loadedPatch: o.augment ? initialPatchSize(o.patchSize) : o.patchSize, prefetch: o.prefetch,
  });
  const all = await listImages(datasetName, a.configuration, a.plans);
  if (all.length === 0) throw new DataError(`no preprocessed images for ${a.plans}_${a.configuration}; run 'ssl3d plan-and-preprocess' first`, { file: join(preRoot, datasetName) });
  const splitFile = join(preRoot, datasetName, "splits_final.json");
  const { split, created, persisted } = await loadOrCreateSplit(splitFile, all.map((i) => i.uniqueSubjectId));
  logger.info({ file: splitFile, created, persisted, train: split.train.length, val: split.val.length }, persisted ? "Subject split" : "Subject split (read-only data folder: computed, not written)");
  const filter = { modalities: o.modalities };
  const trainImages = filterImages(all, new Set(split.train), filter);
  const valImages = filterImages(all, new Set(split.val), filter);
  if (trainImages.length === 0) throw new DataError(`no training images left after the split and modality filter`, { file: splitFile });

  const globalBatch = o.batchSize;
  const perRank = perRankBatchSize(globalBatch, dist.worldSize, dist.rank);
  const backend = await selectBackend(a.backend); // logs the one-line choice

  const reader = (await import(DEFAULT_READER_MODULE)) as VolumeReaderModule;
  const inChannels = (await reader.openZarrVolume(trainImages[0]!.image)).shape[0] ?? 1;
  // methods that feed the network sub-crops (VoCo, SimCLR) build it for, and record in the plans, the crop size
  const netPatch = methodEntry.networkPatchSize?.(o.patchSize, o.methodOptions) ?? o.patchSize;
  const network = createNetwork(archKey, { ...methodEntry.architectureOptions?.(archKey), inChannels, outChannels: method.outChannels(inChannels), patchSize: netPatch, seed: o.seed });

  const baseDir = childPath(resultsRoot, [datasetName, `${trainer.name}__${a.plans}__${a.configuration}`], { field: "trainer, plans and configuration names" });
  const foldDir = join(baseDir, "fold_all");
  const checkpointDir = process.env.SSL3D_CHECKPOINT_DIR !== undefined && process.env.SSL3D_CHECKPOINT_DIR !== "" ? process.env.SSL3D_CHECKPOINT_DIR : foldDir;
  // one writer per folder: a second trainer on the same results (or checkpoint) folder stops here
  const locks = dist.rank === 0 ? lockTrainingFolders(baseDir, checkpointDir) : [];
  try {
    const usedPlan = { ...plan, configurations: { [a.configuration]: { ...cfg, patch_size: [...o.patchSize] } } };
    // upstream's adaptation plan: the plan with only the trained configuration, its patch the network's input (VoCo,
    // SimCLR: the crop), and upstream's constant recommended downstream patch
    const adaptation = adaptationPlan(network.config, { ...plan, configurations: { [a.configuration]: { ...cfg, patch_size: [...netPatch] } } }, UPSTREAM_DOWNSTREAM_PATCH);
    await writeJsonAtomic(join(baseDir, "plans.json"), usedPlan, 4);
    await writeJsonAtomic(join(baseDir, "adaptation_plan.json"), adaptation, 4);
    if (dist.rank === 0) {
      const info: RunInfo = {
        dataset: datasetName, plans: a.plans, configuration: a.configuration, trainer: trainer.name, trainer_key: trainer.entry.key, method: o.method,
        architecture: archKey, parameters: network.parameterCount(), patch_size: [...o.patchSize], network_patch_size: [...netPatch], batch_size: globalBatch,
        world_size: dist.worldSize, epochs: o.numEpochs, iters_per_epoch: o.itersPerEpoch, val_iters: o.valIters, modalities: o.modalities ?? null,
        train_images: trainImages.length, val_images: valImages.length, train_subjects: split.train.length, val_subjects: split.val.length,
        checkpoint_dir: checkpointDir, started_at: new Date().toISOString(),
      };
      await writeJsonAtomic(join(foldDir, RUN_INFO), info, 2);
    }

    // Before anyone resumes or writes: the checkpoint folder must be this run's (or nobody's yet).
    await claimCheckpointFolder(checkpointDir, { run: process.env[POD_ENV.run] ?? "", uid: process.env[POD_ENV.runUid] ?? "" }, dist.rank === 0);
    const group = await initProcessGroup(dist);
    if (dist.worldSize > 1) logger.info({ rank: dist.rank, worldSize: dist.worldSize, perRankBatch: perRank, globalBatch }, "Joined the data-parallel group");
    const metrics = new TrainingMetrics();
    const port = a.metricsPort ?? (process.env.SSL3D_METRICS_PORT !== undefined && process.env.SSL3D_METRICS_PORT !== "" ? Number(process.env.SSL3D_METRICS_PORT) : undefined);
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new ConfigError(`invalid metrics port ${String(port)}`, { field: "--metrics-port" });
    let server: MetricsServer | undefined;
    if (port !== undefined && dist.localRank === 0) {
      server = await serveMetrics(metrics, port, { host: metricsHost(a.metricsAddress === undefined ? process.env : { [METRICS_ADDRESS_ENV]: a.metricsAddress }) });
      logger.info({ host: server.host, port: server.port }, "Serving /metrics");
    }

    if (a.pretrainedWeights !== undefined) {
      // nnssl `src/nnssl/run/load_pretrained_weights.py`: matching names and shapes are loaded into the fresh network,
      // segmentation layers skipped
      const ck = await readTorchCheckpoint(a.pretrainedWeights);
      const r = loadMatchingWeights(network, ck.stateDict, a.pretrainedWeights);
      logger.info({ file: a.pretrainedWeights, loaded: r.loaded.length, skipped: r.skipped.length, unusedKeys: r.unused.length, firstSkipped: r.skipped.slice(0, 5) }, "Pretrained weights loaded");
    }

    const signals: NodeJS.Signals[] = ["SIGTERM", "SIGUSR1"];
    let signalNo = 0;
    const handler = (sig: NodeJS.Signals) => {
      stop.requested = true;
      stop.reason = sig;
      signalNo = sig === "SIGTERM" ? 15 : 10;
      logger.warn({ signal: sig }, "Stop requested; finishing the current step");
    };
    for (const s of signals) process.on(s, handler);
    const resume = a.resume === true || process.env.SSL3D_RESUME === "latest";
    logger.info({ trainer: trainer.name, key: trainer.entry.key, architecture: archKey, params: network.parameterCount(), patch: o.patchSize, batchSize: o.batchSize, epochs: o.numEpochs, itersPerEpoch: o.itersPerEpoch, trainImages: trainImages.length, valImages: valImages.length, output: foldDir, checkpointDir, resume }, "Training");
    try {
      const result = await train({
        trainerName: trainer.name,
        runName: `${datasetName} · ${trainer.name}__${a.plans}__${a.configuration}`,
        options: { ...o, batchSize: perRank },
        globalBatchSize: globalBatch,
        group,
        network,
        method,
        trainImages,
        valImages,
        outputDir: foldDir,
        checkpointDir,
        resume,
        initArgs: { dataset_name: datasetName, plans_name: a.plans, configuration_name: a.configuration, fold: "all", trainer_options: o, backend: backend.name },
        adaptationPlan: adaptation,
        metrics,
        logger,
        progressBar: a.progress ?? process.stderr.isTTY,
        stop,
        ...(a.onStep === undefined ? {} : { onStep: a.onStep }),
      });
      if (result.status === "stopped") {
        throw new ExitError(`stopped by ${stop.reason ?? "request"} after step ${result.globalStep}; checkpoint_latest written to ${checkpointDir}; continue with --resume`, 128 + signalNo);
      }
      logger.info({ epochs: result.epochsCompleted, steps: result.globalStep, trainLoss: result.finalTrainLoss, valLoss: result.finalValLoss }, "Training finished");
      return result;
    } finally {
      for (const s of signals) process.off(s, handler);
      await server?.close();
      await group.close();
      network.dispose();
    }
  } finally {
    for (const l of locks) l.release();
  }
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
