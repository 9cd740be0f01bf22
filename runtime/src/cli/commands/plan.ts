/** `ssl3d plan -d ID` (alias `nnssl_plan_experiment`): fingerprint -> nnsslPlans.json. */
import type { Command } from "commander";
import { runPlan } from "../../planning/plan-stage.js";
import type { CliCommand } from "../command.js";
import { checkPlanner, parseDatasets } from "./preprocessing-options.js";

export const planCommand: CliCommand = {
  name: "plan",
  aliases: ["nnssl_plan_experiment"],
  legacyFlags: { "-pl": "--planner", "-plans_name": "--plans-name", "-overwrite_plans_name": "--plans-name" },
  register(program: Command): void {
    program
      .command("plan")
      .description(
        "write $nnssl_preprocessed/<Dataset>/nnsslPlans.json (onemmiso, median, noresample) from the fingerprint",
      )
      .requiredOption("-d, --dataset <ids...>", "dataset ID or DatasetNNN_Name")
      .option("--plans-name <name>", "plans identifier", "nnsslPlans")
      .option("--planner <class>", "planner (legacy -pl); only ExperimentPlanner")
      .action(async (o: { dataset: string[]; plansName: string; planner?: string }) => {
        checkPlanner(o.planner);
        for (const ds of parseDatasets(o.dataset)) {
          const { file, plan } = await runPlan(ds, { plansName: o.plansName });
          process.stdout.write(
            `${file}: median spacing ${plan.original_median_spacing_after_transp.join(" x ")} mm, transpose ${plan.transpose_forward.join(",")}\n`,
          );
        }
      });
  },
};
