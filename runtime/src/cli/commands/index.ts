/** Registry of CLI sub-commands: one line per command module. */
import type { CliCommand } from "../command.js";
import { inspectCommand } from "./inspect.js";

export const commands: readonly CliCommand[] = [
  inspectCommand,
];
