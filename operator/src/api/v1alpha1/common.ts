/**
 * Schemas shared by the three kinds. Every field carries `.describe()` (it becomes `kubectl explain` text).
 * `meta()` keys starting with `x-kubernetes-` pass through to the CRD unchanged; `x-ssl3d-*` keys are markers that
 * scripts/gen-crds.ts rewrites into structural-schema constructs (int-or-string, preserve-unknown-fields).
 */
import { z } from "zod";

/** CEL rule making a field immutable once set (checked by the API server on update). */
export function immutable(what: string): { "x-kubernetes-validations": { rule: string; message: string }[] } {
  return { "x-kubernetes-validations": [{ rule: "self == oldSelf", message: `${what} is immutable` }] };
}

/** RFC 3339 timestamp as the API server writes it (metav1.Time). */
export const Timestamp = z.string().meta({ format: "date-time" });

/** A Kubernetes quantity: "4", 4, "16Gi", "500m". */
export const QuantitySchema = z
  .union([z.string().regex(/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]i?|Ki)?$/), z.number()])
  .meta({ "x-ssl3d-int-or-string": true })
  .describe("A Kubernetes quantity such as 4, \"500m\" or \"16Gi\".");

export const ResourceRequirementsSchema = z
  .object({
    requests: z.record(z.string(), QuantitySchema).optional().describe("Minimum resources, e.g. {cpu: 4, memory: 16Gi}."),
    limits: z
      .record(z.string(), QuantitySchema)
      .optional()
      .describe("Maximum resources; GPUs go here, e.g. {\"nvidia.com/gpu\": 8}."),
  })
  .describe("Compute resources of one container (same shape as a Pod's resources).");

export const TolerationSchema = z
  .object({
    key: z.string().optional().describe("Taint key the toleration applies to; empty matches all keys with operator Exists."),
    operator: z.enum(["Exists", "Equal"]).optional().describe("Exists or Equal (default Equal)."),
    value: z.string().optional().describe("Taint value to match when operator is Equal."),
    effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional().describe("Taint effect to match; empty matches all."),
    tolerationSeconds: z.number().int().optional().describe("For NoExecute: seconds the pod stays bound after the taint appears."),
  })
  .describe("A Pod toleration.");

export const NodeSelectorSchema = z.record(z.string(), z.string()).describe("Node labels the pods must match.");

export const LocalObjectReferenceSchema = z
  .object({ name: z.string().min(1).max(253).describe("Name of the object in the same namespace.") })
  .describe("Reference to an object in the same namespace.");

export const PvcMountSchema = z
  .object({
    claimName: z.string().min(1).max(253).describe("Name of a PersistentVolumeClaim in the same namespace."),
    subPath: z
      .string()
      .refine((p) => !p.startsWith("/") && !p.split("/").includes(".."), "must be relative and must not contain '..'")
      .meta({ "x-kubernetes-validations": [{ rule: "!self.startsWith('/') && !('..' in self.split('/'))", message: "subPath must be relative and must not contain '..'" }] })
      .optional()
      .describe("Relative directory inside the volume (no leading '/', no '..')."),
    readOnly: z.boolean().optional().describe("Mount read-only."),
  })
  .describe("A directory on a PersistentVolumeClaim.");
export type PvcMount = z.infer<typeof PvcMountSchema>;

export const EnvVarSchema = z
  .object({
    name: z.string().min(1).describe("Variable name (PET_*, SSL3D_* and nnssl_* are reserved for the operator)."),
    value: z.string().optional().describe("Literal value."),
  })
  .describe("An environment variable for the container.");

export const ConditionSchema = z
  .object({
    type: z.string().describe("Condition type, e.g. Ready, Running, Failed."),
    status: z.enum(["True", "False", "Unknown"]).describe("True, False or Unknown."),
    reason: z.string().describe("UpperCamelCase machine-readable reason."),
    message: z.string().describe("Human-readable sentence."),
    observedGeneration: z.number().int().optional().describe("metadata.generation the condition was computed from."),
    lastTransitionTime: Timestamp.describe("Last time the status flipped."),
  })
  .describe("A metav1.Condition.");
export type Condition = z.infer<typeof ConditionSchema>;

export const ConditionsSchema = z
  .array(ConditionSchema)
  .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] })
  .describe("Current state as metav1 conditions, one per type.");

/** Job-level knobs shared by the preprocessing and indexing Jobs. */
export const JobKnobsSchema = z.object({
  image: z.string().min(1).describe("Runtime image that provides the `ssl3d` CLI."),
  imagePullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).optional().describe("Image pull policy."),
  resources: ResourceRequirementsSchema.optional(),
  nodeSelector: NodeSelectorSchema.optional(),
  tolerations: z.array(TolerationSchema).optional().describe("Pod tolerations."),
  serviceAccountName: z.string().optional().describe("ServiceAccount of the Job's pod."),
  queueName: z.string().optional().describe("Kueue LocalQueue; set as label kueue.x-k8s.io/queue-name on the Job."),
  backoffLimit: z.number().int().min(0).default(0).describe("Pod retries before the Job fails."),
  activeDeadlineSeconds: z.number().int().min(1).optional().describe("Time limit of the Job."),
  ttlSecondsAfterFinished: z.number().int().min(0).optional().describe("Delete the finished Job after this many seconds."),
});
