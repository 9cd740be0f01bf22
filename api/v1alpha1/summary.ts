/**
 * JSON the runtime's Jobs report through their container termination message (docs/operator.md, Collection and Plan):
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

export { parseTerminationJson, truncate } from "../termination.js";
