/**
 * `ssl3d doctor [--gpu] [--json]`: which tfjs backends load here and why not, TensorFlow's version, devices and loaded
 * CUDA libraries, the native kernels' build options (runtime/src/models/backend/doctor.ts). `--gpu` exits non-zero
 * with one line when TensorFlow registered no GPU, else checks conv3d against the CPU (TF32 off) and times one
 * ResEnc step; training pods run it as a preflight (PretrainRun `spec.preflight`).
 */
import { spawnSync } from "node:child_process";
import type { Command } from "commander";
import { EnvironmentError } from "../../errors.js";
import { doctorReport, formatDoctor, gpuCheck } from "../../models/backend/doctor.js";
import type { CliCommand } from "../command.js";

export const doctorCommand: CliCommand = {
  name: "doctor",
  register(program: Command): void {
    program
      .command("doctor")
      .description(
        "report the tfjs backends, TensorFlow and its devices, CUDA libraries and native kernels; --gpu checks the GPU",
      )
      .option(
        "--gpu",
        "require a GPU: conv3d parity against the CPU (TF32 off) and one timed ResEnc step; non-zero exit without one",
      )
      .option("--json", "print the report as JSON")
      .action(async (o: { gpu?: boolean; json?: boolean }) => {
        const report = doctorReport();
        const full = o.gpu === true ? { ...report, gpuCheck: await gpuCheck(report.tensorflow[0]!) } : report;
        process.stdout.write(o.json === true ? `${JSON.stringify(full, null, 2)}\n` : `${formatDoctor(full)}\n`);
      });
  },
};

/**
 * `ssl3d train --preflight`: `ssl3d doctor --gpu` in a child process (its GPU context and memory end with it, before
 * the ranks start); its one-line reason becomes this command's error.
 */
export function runPreflight(): void {
  const r = spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, "doctor", "--gpu"], {
    stdio: ["ignore", "inherit", "pipe"],
    encoding: "utf8",
  });
  if (r.status === 0) return;
  const line =
    r.stderr
      .split("\n")
      .find((l) => l.startsWith("ssl3d: error: "))
      ?.slice("ssl3d: error: ".length) ?? `ssl3d doctor --gpu failed (exit ${String(r.status)})`;
  throw new EnvironmentError(`preflight: ${line}`, { field: "--preflight" });
}
