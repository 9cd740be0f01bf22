/**
 * `ssl3d export CHECKPOINT --format safetensors|pth-compatible [--out PATH]`: write PyTorch-loadable weights
 * (exact dynamic-network-architectures state-dict keys and layouts, upstream aliases included) plus
 * `adaptation_plan.json` beside them. CHECKPOINT is an ssl3d network or training checkpoint file (safetensors with
 * `ssl3d.architecture`/`ssl3d.options` metadata) or a directory holding `checkpoint_{final,latest,best}.safetensors`
 * (first found, nnssl's order) or `network.safetensors`.
 */
import type { Command } from "commander";
import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { CliCommand } from "../command.js";
import { ConfigError } from "../../errors.js";
import { exportNetwork, type ExportFormat } from "../../models/checkpoint-export.js";
import { loadNetwork } from "../../models/network-io.js";
import { log } from "../../observability/log.js";

async function resolveCheckpoint(p: string): Promise<string> {
  let s;
  try {
    s = await stat(p);
  } catch {
    throw new ConfigError("checkpoint not found", { file: p });
  }
  if (!s.isFile() && !s.isDirectory()) throw new ConfigError("checkpoint is neither a file nor a directory", { file: p });
  if (s.isFile()) return p;
  // a training output directory: nnssl's resume order (final, latest, best), then a bare network file
  for (const name of CHECKPOINT_NAMES) {
    const f = join(p, name);
    if (existsSync(f)) return f;
  }
  throw new ConfigError(`no checkpoint in directory (looked for ${CHECKPOINT_NAMES.join(", ")})`, { file: p });
}

const CHECKPOINT_NAMES = ["checkpoint_final.safetensors", "checkpoint_latest.safetensors", "checkpoint_best.safetensors", "network.safetensors"];

export const exportCommand: CliCommand = {
  name: "export",
  register(program: Command): void {
    program
      .command("export")
      .description("export network weights for PyTorch / nnU-Net (safetensors or torch.save-compatible .pth) + adaptation_plan.json")
      .argument("<checkpoint>", "ssl3d checkpoint/network file (.safetensors) or a directory with checkpoint_{final,latest,best}.safetensors or network.safetensors")
      .option("--format <format>", "safetensors | pth-compatible", "safetensors")
      .option("--out <path>", "output file (default: beside the checkpoint, <name>.export.{safetensors|pth})")
      .option("--plans <file>", "nnssl plans JSON to embed as pretrain_plan in the adaptation plan")
      .action(async (checkpoint: string, o: { format: string; out?: string; plans?: string }) => {
        if (o.format !== "safetensors" && o.format !== "pth-compatible") throw new ConfigError(`unknown format "${o.format}" (safetensors | pth-compatible)`, { field: "--format" });
        const format: ExportFormat = o.format;
        const src = await resolveCheckpoint(checkpoint);
        let plan: unknown = null;
        if (o.plans !== undefined) {
          const { readFile } = await import("node:fs/promises");
          try {
            plan = JSON.parse(await readFile(o.plans, "utf8")) as unknown;
          } catch (err) {
            throw new ConfigError(`cannot read plans: ${(err as Error).message}`, { file: o.plans });
          }
        }
        const { net, metadata } = await loadNetwork(src);
        try {
          const out = o.out ?? join(dirname(src), `${basename(src).replace(/\.safetensors$/, "")}.export.${format === "safetensors" ? "safetensors" : "pth"}`);
          const epoch = Number(metadata["ssl3d.epoch"] ?? 0);
          const written = await exportNetwork(net, out, { format, pretrainPlan: plan, currentEpoch: Number.isFinite(epoch) ? epoch : 0, trainerName: metadata["ssl3d.method"] ?? "ssl3d" });
          log().info({ ...written, architecture: net.config.name }, "exported");
          process.stdout.write(`${written.weights}\n${written.plan}\n`);
        } finally {
          net.dispose();
        }
      });
  },
};
