/**
 * `ssl3d train DATASET CONFIG -tr TRAINER -p PLANS [...]` (alias `nnssl_train`): pre-train with a registered
 * trainer. nnssl flags: `-tr`, `-p`, `--c` (= `--resume`), `-num_gpus N` (= `--nproc-per-node N`: N local
 * data-parallel processes, as upstream spawns one per GPU) and `-device` (accepted; the backend is `--backend`).
 */
import type { Command } from "commander";
import { checkCount, COUNTS, type CountCheck } from "../../config/limits.js";
import { ConfigError } from "../../errors.js";
import { log } from "../../observability/log.js";
import { trainerKeys } from "../../training/registry.js";
import { runTrainingCli } from "../../training/run.js";
import type { CliCommand } from "../command.js";
import { runPreflight } from "./doctor.js";
import { envString } from "../../config/settings.js";

/** A count bounded in config/limits.ts (docs/limits-and-safety.md): checked while the command line is parsed. */
function count(c: CountCheck) {
  return (v: string): number => checkCount(c, v);
}

/** An integer in a fixed range (a port, a 32-bit seed): a ConfigError naming the option otherwise. */
function ranged(name: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
      throw new ConfigError(`must be an integer from ${min} to ${max}, got ${JSON.stringify(v.slice(0, 40))}`, {
        field: name,
      });
    return Number(v);
  };
}

/** `--batch-size`: at least 1 and a safe integer; whether it fits memory is checked with the patch (training/memory-check.ts). */
const batchSize = ranged("--batch-size", 1, Number.MAX_SAFE_INTEGER);

/** `--modalities T1w,T2w,FLAIR`: a comma-separated list of BIDS-style modality names. */
function modalities(v: string): string[] {
  const list = v.split(",").map((m) => m.trim());
  if (list.length === 0 || list.some((m) => m === ""))
    throw new ConfigError("must be a comma-separated list of modality names (e.g. T1w,T2w,FLAIR)", {
      field: "--modalities",
    });
  return list;
}

/** `--patch-size 32` (cube) or `--patch-size 256,256,64`. */
function patchSize(v: string): number | [number, number, number] {
  const side = (p: string | undefined): boolean => p !== undefined && Number.isSafeInteger(Number(p)) && Number(p) >= 1;
  if (/^\d+$/.test(v) && side(v)) return Number(v);
  const m = /^(\d+),(\d+),(\d+)$/.exec(v);
  if (m !== null && [m[1], m[2], m[3]].every(side)) return [Number(m[1]), Number(m[2]), Number(m[3])];
  throw new ConfigError(`must be a positive integer or three (x,y,z), got ${JSON.stringify(v.slice(0, 40))}`, {
    field: "--patch-size",
  });
}

interface TrainOpts {
  trainer: string;
  plans: string;
  resume?: boolean;
  epochs?: number;
  itersPerEpoch?: number;
  valIters?: number;
  patchSize?: number | [number, number, number];
  batchSize?: number;
  archPreset?: string;
  pretrainedWeights?: string;
  seed?: number;
  metricsPort?: number;
  metricsAddress?: string;
  backend?: string;
  workers?: number;
  modalities?: string[];
  nprocPerNode?: number;
  device?: string;
  preflight?: boolean;
}

export const trainCommand: CliCommand = {
  name: "train",
  aliases: ["nnssl_train"],
  legacyFlags: {
    "-tr": "--trainer",
    "-p": "--plans",
    "--c": "--resume",
    "-num_gpus": "--nproc-per-node",
    "-device": "--device",
    "-pretrained_weights": "--pretrained-weights",
  },
  register(program: Command): void {
    program
      .command("train")
      .description("pre-train a network on a preprocessed dataset (nnssl_train)")
      .argument("<dataset>", "dataset ID or DatasetNNN_Name")
      .argument("<configuration>", "preprocessed configuration (e.g. onemmiso)")
      .requiredOption(
        "--trainer <name>",
        `trainer: ${trainerKeys().join(", ")}, or nnssl names (BaseMAETrainer_BS8, SimMIMEvaTrainer, ModelGenesisTrainer_ANON, VoCoTrainer, SimCLRTrainer, ...)`,
      )
      .option("--plans <name>", "plans identifier", "nnsslPlans")
      .option("--resume", "continue from checkpoint_final/latest/best if present (also SSL3D_RESUME=latest)")
      .option("--epochs <n>", "number of epochs", count(COUNTS.epochs))
      .option("--iters-per-epoch <n>", "training iterations per epoch", count(COUNTS.itersPerEpoch))
      .option("--val-iters <n>", "validation iterations per epoch", count(COUNTS.valIters))
      .option(
        "--patch-size <n|x,y,z>",
        "patch size: a cube side or x,y,z (trainer default: 160, VoCo 256,256,64, SimCLR 192,192,64)",
        patchSize,
      )
      .option("--batch-size <n>", "total batch size", batchSize)
      .option("--arch-preset <name>", "architecture preset of the trainer's family (e.g. resenc-xs, primus-xs)")
      .option("--seed <n>", "random seed", ranged("--seed", 0, 2 ** 32 - 1))
      .option(
        "--pretrained-weights <file>",
        "initialise from a checkpoint (nnssl .pth, state dict, or ssl3d file): matching names and shapes, seg layers skipped",
      )
      .option(
        "--metrics-port <n>",
        "serve Prometheus /metrics on this port (also SSL3D_METRICS_PORT)",
        ranged("--metrics-port", 0, 65535),
      )
      .option(
        "--metrics-address <ip>",
        "interface of the metrics endpoint (also SSL3D_METRICS_ADDRESS; default 127.0.0.1, pods 0.0.0.0)",
      )
      .option(
        "--backend <name>",
        "tfjs backend: auto (node-gpu if TensorFlow sees a GPU, else cpu + native kernels, wasm, cpu), node-gpu, node (TensorFlow on the CPU), wasm, cpu (also SSL3D_BACKEND)",
      )
      .option("--workers <n>", "data loader worker threads", count(COUNTS.workers))
      .option(
        "--modalities <list>",
        "train only on images of these modalities, comma-separated (e.g. T1w,T2w,FLAIR; the trainer option modalities)",
        modalities,
      )
      .option(
        "--nproc-per-node <n>",
        "data-parallel processes on this node (torchrun-style; also PET_NPROC_PER_NODE)",
        count(COUNTS.nprocPerNode),
      )
      .option("--device <d>", "accepted for nnssl compatibility (use --backend)")
      .option(
        "--preflight",
        "first run `ssl3d doctor --gpu` (once per node): fail at once unless TensorFlow computes correctly on a GPU",
      )
      .action(async (dataset: string, configuration: string, o: TrainOpts) => {
        if (o.preflight === true && envString("RANK") === undefined) runPreflight();
        await runTrainingCli(
          {
            dataset,
            configuration,
            trainer: o.trainer,
            plans: o.plans,
            ...(o.resume === undefined ? {} : { resume: o.resume }),
            ...(o.epochs === undefined ? {} : { epochs: o.epochs }),
            ...(o.itersPerEpoch === undefined ? {} : { itersPerEpoch: o.itersPerEpoch }),
            ...(o.valIters === undefined ? {} : { valIters: o.valIters }),
            ...(o.patchSize === undefined ? {} : { patchSize: o.patchSize }),
            ...(o.batchSize === undefined ? {} : { batchSize: o.batchSize }),
            ...(o.archPreset === undefined ? {} : { archPreset: o.archPreset }),
            ...(o.seed === undefined ? {} : { seed: o.seed }),
            ...(o.pretrainedWeights === undefined ? {} : { pretrainedWeights: o.pretrainedWeights }),
            ...(o.metricsPort === undefined ? {} : { metricsPort: o.metricsPort }),
            ...(o.metricsAddress === undefined ? {} : { metricsAddress: o.metricsAddress }),
            ...(o.backend === undefined ? {} : { backend: o.backend }),
            ...(o.workers === undefined ? {} : { workers: o.workers }),
            ...(o.modalities === undefined ? {} : { modalities: o.modalities }),
            ...(o.nprocPerNode === undefined ? {} : { nprocPerNode: o.nprocPerNode }),
          },
          log(),
        );
      });
  },
};
