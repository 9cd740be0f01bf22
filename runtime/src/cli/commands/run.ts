/**
 * `ssl3d run [-f manifests.yaml] [--state-dir DIR] [--quick] [--metrics-port N] [--volume CLAIM=DIR ...]`:
 * runs Collection, Plan and PretrainRun manifests without a cluster (runtime/src/local/runner.ts). Without -f it
 * runs the embedded default, examples/laptop.yaml (the README's first command).
 */
import type { Command } from "commander";
import { resolve } from "node:path";
import { ConfigError } from "../../errors.js";
import { LAPTOP_MANIFESTS } from "../../local/laptop-manifests.js";
import { parseManifests, readManifests } from "../../local/manifests.js";
import { LocalRunner } from "../../local/runner.js";
import type { CliCommand } from "../command.js";

interface RunOptions {
  file?: string;
  stateDir: string;
  quick?: boolean;
  metricsPort?: string;
  volume: string[];
}

export function parseVolumes(specs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of specs) {
    const eq = s.indexOf("=");
    if (eq <= 0 || eq === s.length - 1)
      throw new ConfigError(`--volume ${s}: expected CLAIM=DIR`, { field: "--volume" });
    out[s.slice(0, eq)] = resolve(s.slice(eq + 1));
  }
  return out;
}

export const runCommand: CliCommand = {
  name: "run",
  register(program: Command): void {
    program
      .command("run")
      .description(
        "run Collection, Plan and PretrainRun manifests locally, without a cluster (default: the laptop demo)",
      )
      .option(
        "-f, --file <manifests>",
        "multi-document YAML of ssl3d.io/v1alpha1 manifests (default: embedded examples/laptop.yaml)",
      )
      .option("--state-dir <dir>", "status, logs, termination messages and volume folders", "ssl3d-local")
      .option("--quick", "shortened run for CI: fewer demo phantoms, 2 short epochs")
      .option("--metrics-port <port>", "serve training metrics on this port (overrides spec.metrics.port; 0 disables)")
      .option(
        "--volume <claim=dir>",
        "use DIR for the PersistentVolumeClaim CLAIM (repeatable)",
        (v: string, acc: string[]) => [...acc, v],
        [],
      )
      .action(async (o: RunOptions) => {
        const manifests =
          o.file === undefined
            ? parseManifests(LAPTOP_MANIFESTS, "<embedded examples/laptop.yaml>")
            : readManifests(o.file);
        let metricsPort: number | undefined;
        if (o.metricsPort !== undefined) {
          metricsPort = Number(o.metricsPort);
          if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535)
            throw new ConfigError(`--metrics-port ${o.metricsPort}: expected a port number`, {
              field: "--metrics-port",
            });
        }
        const runner = new LocalRunner({
          manifests,
          stateDir: o.stateDir,
          quick: o.quick === true,
          metricsPort,
          volumes: parseVolumes(o.volume),
        });
        const onSignal = (sig: NodeJS.Signals): void => {
          runner.interrupt(sig);
        };
        process.once("SIGINT", onSignal);
        process.once("SIGTERM", onSignal);
        try {
          await runner.runAll();
        } finally {
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
        }
      });
  },
};
