/** `ssl3d collection-summary FILE|-d ID [--json]`: counts, bytes and content hash of a collection. */
import type { Command } from "commander";
import { writeFileSync } from "node:fs";
import { resolveDatasetName } from "../../config/env.js";
import { ConfigError } from "../../errors.js";
import { readCollection } from "../../io/collection-file.js";
import type { CollectionSummary } from "../../io/collection-summary.js";
import { summarizeCollection } from "../../io/collection-summary.js";
import type { CliCommand } from "../command.js";
import { envString } from "../../config/settings.js";
import { collectionFile } from "../../config/layout.js";

/** The collection file for `FILE` or `-d ID` (`$nnssl_raw/DatasetNNN_Name/pretrain_data.json`). */
export function collectionFileFor(file: string | undefined, dataset: string | undefined): string {
  if ((file === undefined) === (dataset === undefined))
    throw new ConfigError("give either a collection FILE or -d ID, not both or neither");
  if (file !== undefined) return file;
  return collectionFile(resolveDatasetName(dataset!));
}

export function formatSummary(file: string, s: CollectionSummary): string {
  const mods = Object.entries(s.modalities)
    .map(([m, n]) => `${m} ${n}`)
    .join(", ");
  return [
    `collection: ${file}`,
    `${s.datasets} dataset(s), ${s.subjects} subject(s), ${s.sessions} session(s), ${s.images} image(s)`,
    `images per modality: ${mods === "" ? "-" : mods}`,
    `bytes: ${s.bytes}`,
    `content hash: ${s.contentHash}`,
  ].join("\n");
}

export const collectionSummaryCommand: CliCommand = {
  name: "collection-summary",
  register(program: Command): void {
    program
      .command("collection-summary")
      .description("count datasets, subjects, sessions, images per modality, bytes, and hash a pretrain_data.json")
      .argument("[file]", "pretrain_data.json")
      .option("-d, --dataset <id>", "dataset ID or DatasetNNN_Name under $nnssl_raw")
      .option("--json", "print one JSON object (also written to $SSL3D_TERMINATION_LOG when set)")
      .action(async (file: string | undefined, o: { dataset?: string; json?: boolean }) => {
        const f = collectionFileFor(file, o.dataset);
        const summary = await summarizeCollection(await readCollection(f));
        const line = JSON.stringify(summary);
        process.stdout.write(o.json === true ? `${line}\n` : `${formatSummary(f, summary)}\n`);
        const log = envString("SSL3D_TERMINATION_LOG");
        if (log !== undefined) writeFileSync(log, line);
      });
  },
};
