/** `ssl3d arch NAME --params [--json]`: architecture facts without allocating weights. */
import type { Command } from "commander";
import type { CliCommand } from "../command.js";
import { architectureKeys, countParams, getArchitecture } from "../../models/registry.js";

export const archCommand: CliCommand = {
  name: "arch",
  register(program: Command): void {
    program
      .command("arch")
      .description(`show an architecture (${architectureKeys().join(", ")})`)
      .argument("<name>", "registry key, e.g. resenc-l or primus-m")
      .option("--params", "print the parameter count (1 input, 1 output channel)")
      .option("--json", 'print JSON: {"name":...,"params":N}')
      .action((name: string, o: { params?: boolean; json?: boolean }) => {
        const e = getArchitecture(name);
        const params = countParams(name);
        if (o.json === true) process.stdout.write(`${JSON.stringify({ name, params })}\n`);
        else if (o.params === true) process.stdout.write(`${params}\n`);
        else process.stdout.write(`${name} (${e.family}): ${e.description}; ${params} parameters\n`);
      });
  },
};
