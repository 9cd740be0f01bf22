/** Registry of CLI sub-commands: one line per command module. */
import type { CliCommand } from "../command.js";
import { fingerprintCommand } from "./fingerprint.js";
import { inspectCommand } from "./inspect.js";
import { planAndPreprocessCommand } from "./plan-and-preprocess.js";
import { planCommand } from "./plan.js";
import { preprocessCommand } from "./preprocess.js";

export const commands: readonly CliCommand[] = [
  inspectCommand,
  fingerprintCommand,
  planCommand,
  preprocessCommand,
  planAndPreprocessCommand,
];
