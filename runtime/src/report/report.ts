/**
 * `ssl3d report`: read a run's results folder, compute the method's validation pictures from its newest checkpoint
 * and write the self-contained HTML page (default `<results folder>/report.html`).
 */
import { join, resolve } from "node:path";
import { writeFileAtomic } from "../io/atomic.js";
import { selectBackend } from "../models/backend/select.js";
import type { Logger } from "../observability/log.js";
import { renderReportHtml } from "./html.js";
import { computePreview, type PreviewGrid } from "./preview.js";
import { readRunFolder } from "./run-folder.js";

export const REPORT_FILE = "report.html";

export interface ReportOptions {
  readonly out?: string;
  readonly checkpointDir?: string;
  /** Compute the validation pictures (default true). */
  readonly preview?: boolean;
  readonly backend?: string;
}

export async function writeRunReport(resultsDir: string, logger: Logger, o: ReportOptions = {}): Promise<string> {
  const run = await readRunFolder(resultsDir, o.checkpointDir === undefined ? {} : { checkpointDir: o.checkpointDir });
  let preview: PreviewGrid | { error: string } | undefined;
  if (o.preview !== false) {
    const ck = run.checkpoints[0];
    if (ck === undefined) preview = { error: "no checkpoint to compute them from" };
    else {
      try {
        // the training run already said its backend (one line per run on the terminal): this choice only at debug
        await selectBackend(o.backend, { announce: false });
        preview = await computePreview(ck);
      } catch (err) {
        // the rest of the report stays useful: say why the pictures are missing
        const msg = (err as Error).message.split("\n")[0] ?? String(err);
        logger.warn({ checkpoint: ck.file, err: msg }, "Validation pictures not computed");
        preview = { error: msg };
      }
    }
  }
  const out = resolve(o.out ?? join(run.baseDir, REPORT_FILE));
  await writeFileAtomic(out, renderReportHtml(run, preview));
  logger.info({ file: out, epochs: run.epochs.length, checkpoints: run.checkpoints.length }, "Report written");
  return out;
}
