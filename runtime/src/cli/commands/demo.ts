/**
 * `ssl3d demo [--out DIR] [--quick]`: the main job on its embedded default (`npm start`). Generates phantom head
 * scans as a BIDS tree under `$nnssl_raw/Dataset990_Demo/ds-phantom`, converts them into the collection
 * `Dataset990_Demo`, inspects it, and fingerprints, plans and preprocesses it (`onemmiso`). The nnssl_* roots default to folders under DIR unless set.
 */
import type { Command } from "commander";
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { flattenCollection } from "../../config/collection.js";
import { formatDatasetName, requireRoot, ROOT_VARS } from "../../config/env.js";
import { convert, formatConvertReport } from "../../conversion/convert.js";
import { writePhantomBids } from "../../data/phantom.js";
import { readCollection } from "../../io/collection-file.js";
import { summarizeCollection } from "../../io/collection-summary.js";
import { readNifti } from "../../io/nifti.js";
import { extractFingerprint } from "../../planning/fingerprint.js";
import { runPlan } from "../../planning/plan-stage.js";
import { runPreprocess } from "../../preprocessing/preprocess.js";
import type { CliCommand } from "../command.js";
import { formatSummary } from "./collection-summary.js";
import { formatInspection, inspectVolume } from "./inspect.js";
import { envString, setProcessValue } from "../../config/settings.js";
import { rawDatasetDir } from "../../config/layout.js";

export const DEMO_DATASET_ID = 990;
export const DEMO_DATASET_NAME = "Demo";

export interface DemoOptions {
  readonly out: string;
  readonly quick: boolean;
  /** Fingerprint, plan and preprocess the collection too (default true; `ssl3d run` leaves that to its Plan stage). */
  readonly preprocess?: boolean;
  readonly print?: (line: string) => void;
}

export interface DemoResult {
  readonly out: string;
  readonly collectionFile: string;
}

/** Point unset nnssl_* roots at `<out>/<name>` (in this process's environment, so later stages see them). */
export function defaultRoots(out: string): void {
  for (const v of ROOT_VARS) if (envString(v) === undefined) setProcessValue(v, join(out, v));
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const print = o.print ?? ((l: string) => process.stdout.write(`${l}\n`));
  const out = resolve(o.out);
  defaultRoots(out);
  print(`ssl3d demo in ${out} (nnssl_raw=${requireRoot("nnssl_raw")})`);
  // the scans live in the dataset folder, so the collection's paths are $nnssl_raw-relative and relocatable
  const src = join(rawDatasetDir(formatDatasetName(DEMO_DATASET_ID, DEMO_DATASET_NAME)), "ds-phantom");
  await rm(src, { recursive: true, force: true });
  const files = await writePhantomBids(src, {
    seed: 42,
    subjects: o.quick ? 2 : 4,
    sessions: o.quick ? 1 : 2,
    modalities: o.quick ? ["T1w", "T2w"] : ["T1w", "T2w", "FLAIR"],
    masks: true,
    sizeRange: o.quick ? [20, 28] : [28, 40],
  });
  print(`\n[1/4] generated ${files.length} phantom scans (BIDS tree ${src})`);
  print(`\n[2/4] ssl3d convert bids ${src} -d ${DEMO_DATASET_ID} -n ${DEMO_DATASET_NAME}`);
  const report = await convert({
    kind: "bids",
    src,
    datasetId: DEMO_DATASET_ID,
    name: DEMO_DATASET_NAME,
    onError: "fail",
  });
  print(formatConvertReport(report));
  print(`\n[3/4] ssl3d collection-summary -d ${DEMO_DATASET_ID}; ssl3d inspect <first image>`);
  const collection = await readCollection(report.output);
  print(formatSummary(report.output, await summarizeCollection(collection)));
  const first = flattenCollection(collection)[0]!;
  print(formatInspection(first.image_path, inspectVolume(await readNifti(first.image_path))));
  if (o.preprocess === false) return { out, collectionFile: report.output };
  print(`\n[4/4] ssl3d plan-and-preprocess -d ${DEMO_DATASET_ID} -c onemmiso -np 2`);
  const dataset = `Dataset${DEMO_DATASET_ID}_${DEMO_DATASET_NAME}`;
  await extractFingerprint(dataset, { np: 2, clean: true, onError: "fail" });
  const plan = await runPlan(dataset);
  const pre = await runPreprocess(dataset, ["onemmiso"], { np: [2], onError: "fail" });
  print(`plans: ${plan.file}`);
  print(
    `preprocessed ${pre.valid}/${pre.images} image(s) into ${pre.preprocessedDir}${pre.failed > 0 ? ` (${pre.failed} failed)` : ""}`,
  );
  return { out, collectionFile: report.output };
}

export const demoCommand: CliCommand = {
  name: "demo",
  register(program: Command): void {
    program
      .command("demo")
      .description("generate phantom scans, build a pretrain_data.json collection from them, inspect and preprocess it")
      .option("--out <dir>", "working folder (nnssl_* roots default to sub-folders)", "ssl3d-demo")
      .option("--quick", "fewer and smaller phantoms")
      .option("--no-preprocess", "stop after building and inspecting the collection")
      .action(async (o: { out: string; quick?: boolean; preprocess: boolean }) => {
        await runDemo({ out: o.out, quick: o.quick === true, preprocess: o.preprocess });
      });
  },
};
