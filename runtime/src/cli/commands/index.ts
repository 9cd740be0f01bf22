/** Registry of CLI sub-commands: one line per command module. */
import type { CliCommand } from "../command.js";
import { collectionSummaryCommand } from "./collection-summary.js";
import { convertCommand, convertOpenMindCommand } from "./convert.js";
import { demoCommand } from "./demo.js";
import { fingerprintCommand } from "./fingerprint.js";
import { inspectCommand } from "./inspect.js";
import { planAndPreprocessCommand } from "./plan-and-preprocess.js";
import { planCommand } from "./plan.js";
import { preprocessCommand } from "./preprocess.js";
import { trainCommand } from "./train.js";

export const commands: readonly CliCommand[] = [
  inspectCommand,
  convertCommand,
  convertOpenMindCommand,
  collectionSummaryCommand,
  demoCommand,
  fingerprintCommand,
  planCommand,
  preprocessCommand,
  planAndPreprocessCommand,
  trainCommand,
];
