/** Collection: a pre-training dataset (an nnssl `pretrain_data.json` collection) on a PVC or in an object store. */
import { z } from "zod";
import { ConditionsSchema, JobKnobsSchema, PvcMountSchema, Timestamp } from "./common.js";
import { CollectionSummarySchema } from "./summary.js";

/**
 * Where the data lives. Only a PersistentVolumeClaim: an object-store source (uri) was never downloaded by any
 * Job, so it was removed from the API rather than kept as a field that silently does nothing
 * (docs/decisions/0061-contract-module.md). Unknown keys are refused by `ssl3d run`.
 */
export const CollectionSourceSchema = z
  .strictObject({
    pvc: PvcMountSchema.describe("The nnssl_raw root on a PersistentVolumeClaim (mounted read-only)."),
  })
  .describe("Where the data lives: the nnssl_raw root on a PersistentVolumeClaim.");

export const CollectionSpecSchema = z
  .object({
    source: CollectionSourceSchema,
    dataset: z
      .string()
      .regex(
        /^(\d{1,3}|Dataset\d{3}_[A-Za-z0-9_-]+)$/,
        "dataset must be a dataset ID (e.g. 745) or a DatasetNNN_Name folder",
      )
      .describe("nnssl dataset ID (e.g. 745) or folder name (e.g. Dataset745_OpenMind) below the source root."),
    indexing: JobKnobsSchema.extend({
      enabled: z.boolean().default(false).describe("Run an indexing Job that counts images and hashes the collection."),
      image: z
        .string()
        .min(1)
        .optional()
        .describe("Runtime image that provides the `ssl3d` CLI (required when enabled)."),
    })
      .meta({
        "x-kubernetes-validations": [
          {
            rule: "!self.enabled || has(self.image)",
            message: "indexing.image is required when indexing.enabled is true",
          },
        ],
      })
      .optional()
      .describe("Optional indexing Job (`ssl3d collection-summary -d DATASET --json`)."),
  })
  .describe("Desired state of a Collection.");
export type CollectionSpec = z.infer<typeof CollectionSpecSchema>;

export const CollectionPhases = ["Pending", "Indexing", "Ready", "Failed"] as const;
export type CollectionPhase = (typeof CollectionPhases)[number];

export const CollectionStatusSchema = z
  .object({
    observedGeneration: z.number().int().optional().describe("metadata.generation this status reflects."),
    phase: z.enum(CollectionPhases).optional().describe("Pending, Indexing, Ready or Failed."),
    conditions: ConditionsSchema.optional(),
    indexJobName: z.string().optional().describe("Name of the indexing Job of the current generation."),
    summary: CollectionSummarySchema.optional(),
    contentHash: z
      .string()
      .optional()
      .describe(
        "sha256 of the collection from the indexing Job, or of the source spec when not indexed; Plans built from another hash are Stale.",
      ),
    indexedTime: Timestamp.optional().describe("When the summary was recorded."),
  })
  .describe("Observed state of a Collection.");
export type CollectionStatus = z.infer<typeof CollectionStatusSchema>;

export const collectionCrd = {
  spec: CollectionSpecSchema,
  status: CollectionStatusSchema,
  description: "A pre-training dataset: an nnssl pretrain_data.json collection on a PersistentVolumeClaim.",
  printerColumns: [
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "Dataset", type: "string", jsonPath: ".spec.dataset" },
    { name: "Images", type: "integer", jsonPath: ".status.summary.images" },
    { name: "Bytes", type: "integer", jsonPath: ".status.summary.bytes", priority: 1 },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
  rootValidations: [],
} as const;
