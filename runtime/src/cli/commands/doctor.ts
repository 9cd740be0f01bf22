/**
 * `ssl3d doctor [--gpu] [--json]`: which tfjs backends load here and why not, TensorFlow's version, devices and loaded
 * CUDA libraries, the native kernels' build options (runtime/src/models/backend/doctor.ts). `--gpu` exits non-zero
 * with one line when TensorFlow registered no GPU, else checks conv3d against the CPU (TF32 off) and times one
 * ResEnc step; training pods run it as a preflight (PretrainRun `spec.preflight`).
 */
import type { Command } from "commander";
import { doctorReport, formatDoctor, gpuCheck } from "../../models/backend/doctor.js";
import type { CliCommand } from "../command.js";

export const doctorCommand: CliCommand = {
  name: "doctor",
  register(program: Command): void {
    program
      .command("doctor")
      .description("report the tfjs backends, TensorFlow and its devices, CUDA libraries and native kernels; --gpu checks the GPU")
      .option("--gpu", "require a GPU: conv3d parity against the CPU (TF32 off) and one timed ResEnc step; non-zero exit without one")
      .option("--json", "print the report as JSON")
      .action(async (o: { gpu?: boolean; json?: boolean }) => {
        const report = doctorReport();
        const full = o.gpu === true ? { ...report, gpuCheck: await gpuCheck(report.tensorflow[0]!) } : report;
        process.stdout.write(o.json === true ? `${JSON.stringify(full, null, 2)}\n` : `${formatDoctor(full)}\n`);
      });
  },
};
