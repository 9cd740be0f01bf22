/**
 * `ssl3d report RESULTS_DIR [-o report.html] [--checkpoints DIR] [--no-preview] [--backend B]`: one self-contained
 * HTML page of a training run (configuration, loss / learning-rate / throughput curves, checkpoints, the method's
 * pictures of validation patches from the newest checkpoint); prints the page's path. RESULTS_DIR is the run's
 * `<Trainer>__<Plans>__<Config>/` folder or its `fold_all/`.
 */
import type { Command } from "commander";
import { resolve } from "node:path";
import { log } from "../../observability/log.js";
import { writeRunReport } from "../../report/report.js";
import type { CliCommand } from "../command.js";

interface ReportOpts {
  out?: string;
  checkpoints?: string;
  preview: boolean;
  backend?: string;
}

export const reportCommand: CliCommand = {
  name: "report",
  register(program: Command): void {
    program
      .command("report")
      .description(
        "write a self-contained HTML report of a training run (curves, configuration, checkpoints, validation pictures)",
      )
      .argument(
        "<results-dir>",
        "the run's results folder ($nnssl_results/DatasetNNN_Name/<Trainer>__<Plans>__<Config>) or its fold_all/",
      )
      .option("-o, --out <file>", "output HTML file (default: <results-dir>/report.html)")
      .option(
        "--checkpoints <dir>",
        "checkpoint folder (default: fold_all/, else the SSL3D_CHECKPOINT_DIR recorded in fold_all/run_info.json)",
      )
      .option("--no-preview", "skip the validation pictures (no network forward pass, no preprocessed data needed)")
      .option("--backend <name>", "tfjs backend of the validation pictures (as for train; also SSL3D_BACKEND)")
      .action(async (dir: string, o: ReportOpts) => {
        const file = await writeRunReport(dir, log(), {
          preview: o.preview,
          ...(o.out === undefined ? {} : { out: o.out }),
          ...(o.checkpoints === undefined ? {} : { checkpointDir: resolve(o.checkpoints) }),
          ...(o.backend === undefined ? {} : { backend: o.backend }),
        });
        process.stdout.write(`${file}\n`);
      });
  },
};
