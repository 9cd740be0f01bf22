/** Registry of CLI sub-commands: one line per command module. */
import type { CliCommand } from "../command.js";
import { collectionSummaryCommand } from "./collection-summary.js";
import { convertCommand, convertOpenMindCommand } from "./convert.js";
import { demoCommand } from "./demo.js";
import { inspectCommand } from "./inspect.js";
import { trainCommand } from "./train.js";

export const commands: readonly CliCommand[] = [
  inspectCommand,
  convertCommand,
  convertOpenMindCommand,
  collectionSummaryCommand,
  demoCommand,
  trainCommand,
];
