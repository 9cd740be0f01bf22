/** `ssl3d fingerprint -d ID [-np N] [--clean]` (alias `nnssl_extract_fingerprint`). */
import type { Command } from "commander";
import { extractFingerprint } from "../../planning/fingerprint.js";
import { COUNTS } from "../../config/limits.js";
import type { CliCommand } from "../command.js";
import { defaultProcesses, parseCounts, parseDatasets, parseOnError } from "./preprocessing-options.js";

export const fingerprintCommand: CliCommand = {
  name: "fingerprint",
  aliases: ["nnssl_extract_fingerprint"],
  legacyFlags: { "-np": "--num-processes" },
  register(program: Command): void {
    program
      .command("fingerprint")
      .description("read every image of $nnssl_raw/<Dataset>/pretrain_data.json and write dataset_fingerprint.json")
      .requiredOption("-d, --dataset <ids...>", "dataset ID or DatasetNNN_Name")
      .option("--num-processes <n>", "worker threads (legacy -np); default $nnUNet_def_n_proc or min(8, CPUs)")
      .option("--clean", "recompute even if a fingerprint exists")
      .option("--on-error <mode>", "an unreadable image: fail (default) the run, or skip it and list it under failed")
      .action(async (o: { dataset: string[]; numProcesses?: string; clean?: boolean; onError?: string }) => {
        const np = parseCounts(COUNTS.numProcesses, o.numProcesses, defaultProcesses())[0]!;
        for (const ds of parseDatasets(o.dataset)) {
          const r = await extractFingerprint(ds, { np, clean: o.clean === true, onError: parseOnError(o.onError) });
          process.stdout.write(
            `${r.file}: ${r.fingerprint.images.length} images, ${r.fingerprint.failed.length} failed${r.reused ? " (reused)" : ""}\n`,
          );
        }
      });
  },
};
