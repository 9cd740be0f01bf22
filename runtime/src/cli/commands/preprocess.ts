/** `ssl3d preprocess -d ID [-c CONFIG...] [-np N...] [--part P --total-parts N]` (alias `nnssl_preprocess`). */
import type { Command } from "commander";
import { runPreprocess } from "../../preprocessing/preprocess.js";
import { COUNTS } from "../../config/limits.js";
import type { CliCommand } from "../command.js";
import {
  defaultProcesses,
  parseConfigs,
  parseCount,
  parseCounts,
  parseDatasets,
  parseOnError,
} from "./preprocessing-options.js";

export const preprocessCommand: CliCommand = {
  name: "preprocess",
  aliases: ["nnssl_preprocess"],
  legacyFlags: {
    "-np": "--num-processes",
    "-part": "--part",
    "-total_parts": "--total-parts",
    "-plans_name": "--plans-name",
  },
  register(program: Command): void {
    program
      .command("preprocess")
      .description(
        "crop, normalise and resample every image into the Zarr store (resumable; needs fingerprint and plan)",
      )
      .requiredOption("-d, --dataset <ids...>", "dataset ID or DatasetNNN_Name")
      .option("-c, --configurations <names...>", "onemmiso | median | noresample", ["onemmiso"])
      .option("--num-processes <n...>", "worker threads, one number or one per configuration (legacy -np)")
      .option("--part <p>", "this part (0-based) when split into --total-parts jobs", "0")
      .option("--total-parts <n>", "number of parts the image list is split into", "1")
      .option("--plans-name <name>", "plans identifier", "nnsslPlans")
      .option(
        "--on-error <mode>",
        "an image that fails: fail (default) the run, or skip it and list it in failed_imgs.json",
      )
      .action(
        async (o: {
          dataset: string[];
          configurations: string[];
          numProcesses?: string[];
          part: string;
          totalParts: string;
          plansName: string;
          onError?: string;
        }) => {
          const configs = parseConfigs(o.configurations);
          const np = parseCounts(COUNTS.numProcesses, o.numProcesses, defaultProcesses());
          const part = parseCount("--part")(o.part);
          const totalParts = parseCount("--total-parts")(o.totalParts);
          for (const ds of parseDatasets(o.dataset)) {
            const s = await runPreprocess(ds, configs, {
              np,
              part,
              totalParts,
              plansName: o.plansName,
              onError: parseOnError(o.onError),
            });
            for (const c of s.perConfiguration)
              process.stdout.write(
                `${c.dataDir}: ${c.done} preprocessed, ${c.skipped} already done, ${c.failed.length} failed\n`,
              );
          }
        },
      );
  },
};
