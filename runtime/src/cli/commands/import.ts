/**
 * `ssl3d import CHECKPOINT.pth [--architecture KEY] [--options JSON] [--out FILE] [--non-strict]`: convert a PyTorch
 * checkpoint (nnssl `checkpoint_*.pth` or a bare state dict, torch.save zip format) into an ssl3d network file
 * (safetensors with `ssl3d.architecture`/`ssl3d.options`), usable by `ssl3d export`, `--pretrained-weights` and the
 * model registry. The architecture comes from the checkpoint's nnssl adaptation plan unless `--architecture` is given.
 * Strict by default: every parameter present with upstream's shape and no unknown keys (like
 * `load_state_dict(strict=True)`); `--non-strict` loads what matches and reports the rest.
 */
import type { Command } from "commander";
import { basename, dirname, join } from "node:path";
import type { CliCommand } from "../command.js";
import { ConfigError } from "../../errors.js";
import type { CreateNetworkOptions } from "../../models/architecture.js";
import { loadTorchStateDict } from "../../models/checkpoint-export.js";
import {
  architectureFromAdaptationPlan,
  loadMatchingWeights,
  networkFromFileSettings,
  readTorchCheckpoint,
} from "../../models/checkpoint-import.js";
import { saveNetwork } from "../../models/network-io.js";
import { createNetwork } from "../../models/registry.js";
import { log } from "../../observability/log.js";

export const importCommand: CliCommand = {
  name: "import",
  register(program: Command): void {
    program
      .command("import")
      .description("convert a PyTorch checkpoint (nnssl checkpoint_*.pth or a state dict) into an ssl3d network file")
      .argument("<checkpoint>", "torch.save file (.pth)")
      .option("--architecture <key>", "registry key (default: from the checkpoint's nnssl adaptation plan)")
      .option(
        "--options <json>",
        "architecture options as JSON, e.g. '{\"patchSize\":[160,160,160]}' (merged over what the plan gives)",
      )
      .option("--out <file>", "output file (default: beside the checkpoint, <name>.ssl3d.safetensors)")
      .option("--non-strict", "load the parameters that match by name and shape; report the rest")
      .action(
        async (file: string, o: { architecture?: string; options?: string; out?: string; nonStrict?: boolean }) => {
          let extra: CreateNetworkOptions = {};
          if (o.options !== undefined) {
            try {
              extra = JSON.parse(o.options) as CreateNetworkOptions;
            } catch (err) {
              throw new ConfigError(`not valid JSON: ${(err as Error).message}`, { field: "--options" });
            }
          }
          const ck = await readTorchCheckpoint(file);
          if (ck.kind === "ssl3d")
            throw new ConfigError("already an ssl3d file (use it directly, or `ssl3d export` to go to PyTorch)", {
              file,
            });
          let key = o.architecture;
          let options: CreateNetworkOptions = {};
          if (ck.adaptationPlan !== null) {
            const inferred = architectureFromAdaptationPlan(ck.adaptationPlan, ck.stateDict, file);
            options = inferred.options;
            key ??= inferred.key;
          }
          if (key === undefined)
            throw new ConfigError("the checkpoint has no nnssl adaptation plan: pass --architecture (and --options)", {
              file,
              field: "nnssl_adaptation_plan",
            });
          const fromPlan = ck.adaptationPlan !== null && o.architecture === undefined;
          const net = fromPlan
            ? networkFromFileSettings(
                () => createNetwork(key, { ...options, ...extra }),
                file,
                "nnssl_adaptation_plan.architecture_plans",
              )
            : createNetwork(key, { ...options, ...extra });
          try {
            if (o.nonStrict === true) {
              const r = loadMatchingWeights(net, ck.stateDict, file);
              log().warn({ loaded: r.loaded.length, skipped: r.skipped, unused: r.unused }, "non-strict import");
            } else {
              loadTorchStateDict(net, ck.stateDict, file);
            }
            const out = o.out ?? join(dirname(file), `${basename(file).replace(/\.(pth|pt)$/, "")}.ssl3d.safetensors`);
            const meta: Record<string, string> = { "ssl3d.imported_from": basename(file) };
            if (ck.trainerName !== null) meta["ssl3d.method"] = ck.trainerName;
            if (ck.epoch !== null) meta["ssl3d.epoch"] = String(ck.epoch);
            await saveNetwork(net, out, meta);
            log().info({ out, architecture: key, kind: ck.kind, trainer: ck.trainerName, epoch: ck.epoch }, "imported");
            process.stdout.write(`${out}\n`);
          } finally {
            net.dispose();
          }
        },
      );
  },
};
