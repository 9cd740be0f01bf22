/** Plan: an nnssl experiment plan plus the preprocessed data it produces, built by one preprocessing Job. */
import { z } from "zod";
import {
  ConditionsSchema,
  JobKnobsSchema,
  LocalObjectReferenceSchema,
  PvcMountSchema,
  segment,
  Timestamp,
} from "./common.js";
import { PreprocessSummarySchema } from "./summary.js";

export const PlanSpecSchema = z
  .object({
    collectionRef: LocalObjectReferenceSchema.describe("The Collection to plan and preprocess."),
    configurations: z
      .array(segment("configurations[]"))
      .optional()
      .describe("Configurations to preprocess (`-c`); default: the planner's default configuration."),
    plansName: segment("plansName").optional().describe("Plans identifier (`-p`); default: the planner's default."),
    numProcesses: z.number().int().min(1).optional().describe("Preprocessing worker processes (`-np`)."),
    extraArgs: z.array(z.string()).optional().describe("Further arguments appended to `ssl3d plan-and-preprocess`."),
    preprocess: JobKnobsSchema.describe("The preprocessing Job."),
    output: z
      .object({ pvc: PvcMountSchema.describe("Volume receiving nnssl_preprocessed (plans and preprocessed data).") })
      .describe("Where the plans and preprocessed data go."),
  })
  .meta({
    "x-kubernetes-validations": [{ rule: "self == oldSelf", message: "Plan spec is immutable: create a new Plan" }],
  })
  .describe("Desired state of a Plan (immutable: a Plan is a build product).");
export type PlanSpec = z.infer<typeof PlanSpecSchema>;

export const PlanPhases = ["Pending", "Running", "Ready", "Failed"] as const;
export type PlanPhase = (typeof PlanPhases)[number];

export const PlanStatusSchema = z
  .object({
    observedGeneration: z.number().int().optional().describe("metadata.generation this status reflects."),
    phase: z.enum(PlanPhases).optional().describe("Pending, Running, Ready or Failed."),
    conditions: ConditionsSchema.optional(),
    jobName: z.string().optional().describe("The preprocessing Job."),
    startTime: Timestamp.optional().describe("When the preprocessing Job was created."),
    completionTime: Timestamp.optional().describe("When the Plan became Ready or Failed."),
    dataset: z.string().optional().describe("Dataset of the Collection, as passed to `-d`."),
    collectionHash: z.string().optional().describe("contentHash of the Collection the Plan was built from."),
    outputs: PreprocessSummarySchema.optional(),
  })
  .describe("Observed state of a Plan.");
export type PlanStatus = z.infer<typeof PlanStatusSchema>;

export const planCrd = {
  spec: PlanSpecSchema,
  status: PlanStatusSchema,
  description:
    "An nnssl experiment plan and the preprocessed data built from a Collection by one Job (fully qualified: plans.ssl3d.io).",
  printerColumns: [
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "Collection", type: "string", jsonPath: ".spec.collectionRef.name" },
    { name: "Images", type: "integer", jsonPath: ".status.outputs.valid" },
    { name: "Stale", type: "string", jsonPath: '.status.conditions[?(@.type=="Stale")].status', priority: 1 },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
  rootValidations: [],
} as const;
