/**
 * `ssl3d plan-and-preprocess -d ID [-c CONFIG...] [-np N] [-p PLANS]` (alias `nnssl_plan_and_preprocess`): fingerprint ->
 * plan -> preprocess. On success prints the preprocessing summary as one JSON line (as a sentence on a terminal,
 * unless `--log-format json`) and writes the JSON to the termination log (what the operator's Plan stage reads).
 */
import type { Command } from "commander";
import { extractFingerprint } from "../../planning/fingerprint.js";
import { runPlan } from "../../planning/plan-stage.js";
import { checkPlansName, lockDataset, preprocessedDatasetDir } from "../../config/layout.js";
import { runPreprocess } from "../../preprocessing/preprocess.js";
import { forPeople } from "../../observability/log.js";
import { COUNTS } from "../../config/limits.js";
import type { CliCommand } from "../command.js";
import { writeTerminationLog } from "../termination-log.js";
import {
  checkPlanner,
  defaultProcesses,
  parseConfigs,
  parseCounts,
  parseDatasets,
  parseOnError,
} from "./preprocessing-options.js";

export interface PreprocessingSummaryLine {
  images: number;
  valid: number;
  failed: number;
  configurations: string[];
  plansFile: string;
  preprocessedDir: string;
}

/** The summary line as a sentence (for a terminal). */
export function formatPreprocessingSummary(s: PreprocessingSummaryLine): string {
  if (s.configurations.length === 0) return `Planned: ${s.plansFile} (preprocessing skipped)`;
  const failed = s.failed > 0 ? `, ${s.failed} failed (see the log)` : "";
  return `Preprocessed ${s.valid} of ${s.images} image(s) for ${s.configurations.join(", ")}${failed} into ${s.preprocessedDir}; plans: ${s.plansFile}`;
}

export const planAndPreprocessCommand: CliCommand = {
  name: "plan-and-preprocess",
  aliases: ["nnssl_plan_and_preprocess"],
  legacyFlags: {
    "-np": "--num-processes",
    "-npfp": "--num-processes-fingerprint",
    "--no_pp": "--no-pp",
    "-pl": "--planner",
    "-overwrite_plans_name": "--plans-name",
    "-plans_name": "--plans-name",
  },
  register(program: Command): void {
    program
      .command("plan-and-preprocess")
      .description("fingerprint, plan and preprocess a dataset in one go")
      .requiredOption("-d, --dataset <ids...>", "dataset ID or DatasetNNN_Name")
      .option("-c, --configurations <names...>", "onemmiso | median | noresample", ["onemmiso"])
      .option("--num-processes <n...>", "preprocessing worker threads (legacy -np)")
      .option("--num-processes-fingerprint <n>", "fingerprint worker threads (legacy -npfp)")
      .option("--no-pp", "stop after planning (legacy --no_pp)")
      .option(
        "-p, --plans-name <name>",
        "plans identifier (legacy -overwrite_plans_name; the operator's and `ssl3d run`'s spec.plansName)",
        "nnsslPlans",
      )
      .option("--clean", "recompute the fingerprint even if one exists")
      .option("--planner <class>", "planner (legacy -pl); only ExperimentPlanner")
      .option("--on-error <mode>", "an image that fails: fail (default) the run, or skip it and list it")
      .action(
        async (o: {
          dataset: string[];
          configurations: string[];
          numProcesses?: string[];
          numProcessesFingerprint?: string;
          pp: boolean;
          clean?: boolean;
          planner?: string;
          onError?: string;
          plansName: string;
        }) => {
          checkPlanner(o.planner);
          const configs = parseConfigs(o.configurations);
          const onError = parseOnError(o.onError);
          const np = parseCounts(COUNTS.numProcesses, o.numProcesses, Math.min(4, defaultProcesses()));
          const npfp = parseCounts(COUNTS.numProcessesFingerprint, o.numProcessesFingerprint, defaultProcesses())[0]!;
          const line: PreprocessingSummaryLine = {
            images: 0,
            valid: 0,
            failed: 0,
            configurations: o.pp ? configs : [],
            plansFile: "",
            preprocessedDir: "",
          };
          const plansName = checkPlansName(o.plansName);
          for (const ds of parseDatasets(o.dataset)) {
            // one lock over the three stages: no other writer gets in between them
            const lock = lockDataset(preprocessedDatasetDir(ds), "ssl3d plan-and-preprocess");
            try {
              await extractFingerprint(ds, { np: npfp, clean: o.clean === true, onError });
              const { file } = await runPlan(ds, { plansName });
              line.plansFile = file;
              if (!o.pp) continue;
              const s = await runPreprocess(ds, configs, { np, onError, plansName });
              line.images += s.images;
              line.valid += s.valid;
              line.failed += s.failed;
              line.preprocessedDir = s.preprocessedDir;
            } finally {
              lock.release();
            }
          }
          const json = JSON.stringify(line);
          // a person at a terminal gets a sentence; pipes, pods and --log-format json the JSON line
          process.stdout.write(`${forPeople(process.stdout) ? formatPreprocessingSummary(line) : json}\n`);
          writeTerminationLog(json);
        },
      );
  },
};
