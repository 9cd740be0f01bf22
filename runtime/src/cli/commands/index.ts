/** Registry of CLI sub-commands: one line per command module. */
import type { CliCommand } from "../command.js";
import { runCommand } from "./run.js";

export const commands: readonly CliCommand[] = [
  runCommand,
];
