/** Registry of CLI sub-commands: every `CliCommand` exported by `all.ts` (one line per command there). */
import type { CliCommand } from "../command.js";
import * as all from "./all.js";

export const commands: readonly CliCommand[] = Object.values(all as Record<string, CliCommand>);
