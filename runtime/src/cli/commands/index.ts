/** Registry of CLI sub-commands: one line per command module. */
import type { CliCommand } from "../command.js";
import { archCommand } from "./arch.js";
import { exportCommand } from "./export.js";

export const commands: readonly CliCommand[] = [
  archCommand,
  exportCommand,
];
