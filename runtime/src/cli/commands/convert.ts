/** `ssl3d convert folder|bids|openmind SRC -d ID -n NAME` and the nnssl alias `nnssl_convert_openmind`. */
import { Option, type Command } from "commander";
import type { ConvertOptions, SourceKind } from "../../conversion/convert.js";
import { SOURCE_KINDS, convert, formatConvertReport } from "../../conversion/convert.js";
import { ConfigError } from "../../errors.js";
import { checkCount, COUNTS } from "../../config/limits.js";
import type { CliCommand } from "../command.js";

function datasetId(v: string): number {
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(Number(v)))
    throw new ConfigError(`must be an integer dataset ID, got "${v.slice(0, 40)}"`, { field: "--dataset" });
  return Number(v);
}

interface Opts {
  dataset: string;
  name: string;
  onError: "skip" | "fail";
  modality?: string;
  check: "full" | "header";
  jobs: string;
}

async function run(kind: SourceKind, src: string, o: Opts): Promise<void> {
  const opts: ConvertOptions = {
    kind,
    src,
    datasetId: datasetId(o.dataset),
    name: o.name,
    onError: o.onError,
    modality: o.modality,
    check: o.check,
    jobs: checkCount(COUNTS.jobs, o.jobs),
    onProblem: (p) =>
      process.stderr.write(`ssl3d: ${o.onError === "skip" ? "skipping" : "unusable"}: ${p.file}: ${p.reason}\n`),
  };
  process.stdout.write(formatConvertReport(await convert(opts)) + "\n");
}

const onErrorOption = (): Option =>
  new Option("--on-error <mode>", "unusable files: fail (write nothing) or skip them")
    .choices(["fail", "skip"])
    .default("fail");
const jobsOption = (): Option => new Option("--jobs <n>", "files verified concurrently").default("2");
const checkOption = (): Option =>
  new Option("--check <level>", "verify every voxel (full) or only headers and sizes (header)")
    .choices(["full", "header"])
    .default("full");

export const convertCommand: CliCommand = {
  name: "convert",
  register(program: Command): void {
    program
      .command("convert")
      .description(
        "build $nnssl_raw/DatasetNNN_NAME/pretrain_data.json from a folder of NIfTI files, a BIDS tree or the OpenMind download",
      )
      .addArgument(program.createArgument("<kind>", "source layout").choices(SOURCE_KINDS))
      .argument("<src>", "source folder (OpenMind: the folder holding openneuro_metadata.csv)")
      .requiredOption("-d, --dataset <id>", "dataset ID (3 digits in the folder name)")
      .requiredOption("-n, --name <name>", "dataset name (DatasetNNN_<name>)")
      .addOption(onErrorOption())
      .addOption(checkOption())
      .addOption(jobsOption())
      .option(
        "--modality <modality>",
        "folder mode: modality of every image (default: BIDS suffix if known, else 'unknown')",
      )
      .action(async (kind: SourceKind, src: string, o: Opts) => {
        await run(kind, src, o);
      });
  },
};

/** nnssl's `nnssl_convert_openmind --openmind_root_dir DIR` (writes Dataset745_OpenMind like upstream). */
export const convertOpenMindCommand: CliCommand = {
  name: "convert-openmind",
  aliases: ["nnssl_convert_openmind"],
  legacyFlags: { "--openmind_root_dir": "--openmind-root-dir" },
  register(program: Command): void {
    program
      .command("convert-openmind")
      .description("convert the OpenMind download (same as: convert openmind DIR -d 745 -n OpenMind)")
      .requiredOption("--openmind-root-dir <dir>", "folder holding openneuro_metadata.csv and OpenMind/")
      .option("-d, --dataset <id>", "dataset ID", "745")
      .option("-n, --name <name>", "dataset name", "OpenMind")
      .addOption(onErrorOption())
      .addOption(checkOption())
      .addOption(jobsOption())
      .action(async (o: Opts & { openmindRootDir: string }) => {
        await run("openmind", o.openmindRootDir, o);
      });
  },
};
