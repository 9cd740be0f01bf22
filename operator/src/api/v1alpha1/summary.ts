/**
 * JSON the runtime's Jobs report through their container termination message (contracts in BRIEF.md):
 * `ssl3d collection-summary --json` and `ssl3d plan-and-preprocess`.
 */
import { z } from "zod";

export const CollectionSummarySchema = z
  .object({
    datasets: z.number().int().min(0).describe("Number of datasets."),
    subjects: z.number().int().min(0).describe("Number of subjects."),
    sessions: z.number().int().min(0).describe("Number of sessions."),
    images: z.number().int().min(0).describe("Number of images."),
    modalities: z.record(z.string(), z.number().int().min(0)).describe("Images per modality, e.g. {T1w: 120}."),
    bytes: z.number().int().min(0).describe("Total size of the image files in bytes."),
  })
  .describe("What the indexing Job counted.");
export type CollectionSummary = z.infer<typeof CollectionSummarySchema>;

export const CollectionSummaryMessageSchema = CollectionSummarySchema.extend({
  contentHash: z.string().regex(/^sha256:[0-9a-f]{64}$/),
});

export const PreprocessSummarySchema = z
  .object({
    images: z.number().int().min(0).describe("Images found."),
    valid: z.number().int().min(0).describe("Images preprocessed."),
    failed: z.number().int().min(0).describe("Images that failed preprocessing."),
    configurations: z.array(z.string()).describe("Configurations preprocessed."),
    plansFile: z.string().describe("Path of the plans JSON inside the output volume."),
    preprocessedDir: z.string().describe("Directory of the preprocessed data inside the output volume."),
  })
  .describe("What the preprocessing Job produced.");
export type PreprocessSummary = z.infer<typeof PreprocessSummarySchema>;

/** Parses a termination message (last non-empty line that is a JSON object). */
export function parseTerminationJson<T>(message: string | undefined, schema: z.ZodType<T>): { ok: true; value: T } | { ok: false; error: string } {
  if (message === undefined || message.trim() === "") return { ok: false, error: "the termination message is empty" };
  const lines = message.trim().split("\n").map((l) => l.trim()).filter((l) => l.startsWith("{"));
  const last = lines.at(-1);
  if (last === undefined) return { ok: false, error: `the termination message is not JSON: ${truncate(message, 200)}` };
  let json: unknown;
  try {
    json = JSON.parse(last);
  } catch {
    return { ok: false, error: `the termination message is not JSON: ${truncate(last, 200)}` };
  }
  const r = schema.safeParse(json);
  if (!r.success) return { ok: false, error: `the termination message does not match the contract: ${z.prettifyError(r.error).replace(/\n/g, "; ")}` };
  return { ok: true, value: r.data };
}

export function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}
