/**
 * `ssl3d export CHECKPOINT [--format pth-compatible|safetensors] [--out PATH] [--plans FILE]`: write PyTorch-loadable
 * weights (exact dynamic-network-architectures state-dict keys and layouts, upstream aliases included) plus
 * `adaptation_plan.json` beside them. CHECKPOINT is an ssl3d network or training checkpoint file (safetensors with
 * `ssl3d.architecture`/`ssl3d.options` metadata), a directory holding `checkpoint_{final,latest,best}.safetensors`
 * (first found, nnssl's order) or `network.safetensors`, or a results folder `<Trainer>__<Plans>__<Config>` with
 * them in `fold_all/`. Without flags the output is what nnU-Net's fine-tuning loads: an nnssl `.pth` checkpoint
 * whose adaptation plan carries the pre-training plan the training checkpoint recorded (docs/checkpoints.md).
 */
import type { Command } from "commander";
import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { CliCommand } from "../command.js";
import { ConfigError } from "../../errors.js";
import {
  exportNetwork,
  exportedNetwork,
  pretrainPlanFor,
  recordedPlan,
  type ExportFormat,
} from "../../models/checkpoint-export.js";
import { loadNetwork } from "../../models/network-io.js";
import { log } from "../../observability/log.js";
import { readPlansDocument } from "../../config/plans.js";
import { CHECKPOINT_SEARCH_ORDER, foldDir } from "../../config/layout.js";

async function resolveCheckpoint(p: string): Promise<string> {
  let s;
  try {
    s = await stat(p);
  } catch {
    throw new ConfigError("checkpoint not found", { file: p });
  }
  if (!s.isFile() && !s.isDirectory())
    throw new ConfigError("checkpoint is neither a file nor a directory", { file: p });
  if (s.isFile()) return p;
  // a training output directory: nnssl's resume order (final, latest, best), then a bare network file; a results
  // folder (<Trainer>__<Plans>__<Config>) holds them in fold_all/
  for (const d of [p, foldDir(p)]) {
    for (const name of CHECKPOINT_SEARCH_ORDER) {
      const f = join(d, name);
      if (existsSync(f)) return f;
    }
  }
  throw new ConfigError(
    `no checkpoint in directory or its fold_all/ (looked for ${CHECKPOINT_SEARCH_ORDER.join(", ")})`,
    { file: p },
  );
}

export const exportCommand: CliCommand = {
  name: "export",
  register(program: Command): void {
    program
      .command("export")
      .description(
        "export network weights for PyTorch / nnU-Net (safetensors or torch.save-compatible .pth) + adaptation_plan.json",
      )
      .argument(
        "<checkpoint>",
        "ssl3d checkpoint/network file (.safetensors) or a directory with checkpoint_{final,latest,best}.safetensors or network.safetensors",
      )
      .option(
        "--format <format>",
        "pth-compatible (an nnssl checkpoint, what nnU-Net loads) | safetensors",
        "pth-compatible",
      )
      .option("--out <path>", "output file (default: beside the checkpoint, <name>.export.{pth|safetensors})")
      .option(
        "--plans <file>",
        "nnssl plans JSON for pretrain_plan (default: the plan the training checkpoint recorded)",
      )
      .action(async (checkpoint: string, o: { format: string; out?: string; plans?: string }) => {
        if (o.format !== "safetensors" && o.format !== "pth-compatible")
          throw new ConfigError(`unknown format "${o.format}" (pth-compatible | safetensors)`, { field: "--format" });
        const format: ExportFormat = o.format;
        const src = await resolveCheckpoint(checkpoint);
        const plans = o.plans === undefined ? undefined : readPlansDocument(o.plans);
        const { net, metadata } = await loadNetwork(src);
        try {
          const recorded = recordedPlan(metadata);
          const patch = exportedNetwork(net).config.patchSize;
          const pretrainPlan =
            plans !== undefined
              ? pretrainPlanFor(plans, recorded.configuration, patch, o.plans!)
              : recorded.pretrainPlan;
          if (pretrainPlan === null)
            log().warn(
              { file: src },
              "no pre-training plan recorded in the checkpoint and no --plans: pretrain_plan is null, which nnU-Net's nnssl fine-tuning cannot read",
            );
          const out =
            o.out ??
            join(
              dirname(src),
              `${basename(src).replace(/\.safetensors$/, "")}.export.${format === "safetensors" ? "safetensors" : "pth"}`,
            );
          const epoch = Number(metadata["ssl3d.epoch"] ?? 0);
          const written = await exportNetwork(net, out, {
            format,
            pretrainPlan,
            ...(recorded.recommended === undefined ? {} : { recommended: recorded.recommended }),
            currentEpoch: Number.isFinite(epoch) ? epoch : 0,
            trainerName: metadata["ssl3d.method"] ?? "ssl3d",
          });
          log().info({ ...written, architecture: net.config.name }, "exported");
          process.stdout.write(`${written.weights}\n${written.plan}\n`);
        } finally {
          net.dispose();
        }
      });
  },
};
