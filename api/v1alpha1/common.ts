/**
 * Schemas shared by the three kinds. Every field carries `.describe()` (it becomes `kubectl explain` text).
 * `meta()` keys starting with `x-kubernetes-` pass through to the CRD unchanged; `x-ssl3d-*` keys are markers that
 * scripts/gen-crds.ts rewrites into structural-schema constructs (int-or-string, preserve-unknown-fields).
 */
import { z } from "zod";
import { CODE_INJECTION_ENV_RE2, envNameProblem, IMAGE_GID, IMAGE_UID, RESERVED_ENV_RE2 } from "../pod.js";

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
  .describe('A Kubernetes quantity such as 4, "500m" or "16Gi".');

export const ResourceRequirementsSchema = z
  .object({
    requests: z
      .record(z.string(), QuantitySchema)
      .optional()
      .describe("Minimum resources, e.g. {cpu: 4, memory: 16Gi}."),
    limits: z
      .record(z.string(), QuantitySchema)
      .optional()
      .describe('Maximum resources; GPUs go here, e.g. {"nvidia.com/gpu": 8}.'),
  })
  .describe("Compute resources of one container (same shape as a Pod's resources).");

export const TolerationSchema = z
  .object({
    key: z
      .string()
      .optional()
      .describe("Taint key the toleration applies to; empty matches all keys with operator Exists."),
    operator: z.enum(["Exists", "Equal"]).optional().describe("Exists or Equal (default Equal)."),
    value: z.string().optional().describe("Taint value to match when operator is Equal."),
    effect: z
      .enum(["NoSchedule", "PreferNoSchedule", "NoExecute"])
      .optional()
      .describe("Taint effect to match; empty matches all."),
    tolerationSeconds: z
      .number()
      .int()
      .optional()
      .describe("For NoExecute: seconds the pod stays bound after the taint appears."),
  })
  .describe("A Pod toleration.");

export const NodeSelectorSchema = z.record(z.string(), z.string()).describe("Node labels the pods must match.");

export const LocalObjectReferenceSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(253)
      .regex(
        /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
        "name must be a lower-case DNS-1123 name",
      )
      .describe("Name of the object in the same namespace."),
  })
  .describe("Reference to an object in the same namespace.");

/** A DNS-1123 subdomain (names of PersistentVolumeClaims, Secrets, ConfigMaps). */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** One path segment used as a folder name (plans identifier, configuration, checkpoint folder, trainer). */
export const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** A relative path: no leading '/', no '..' segment (the CEL rule below says the same to the API server). */
export function isRelativePath(p: string): boolean {
  return !p.startsWith("/") && !p.split("/").includes("..");
}
/** The API server's regular expressions are RE2 (no look-ahead), so the rule is CEL. */
const RELATIVE_PATH_CEL = "!self.startsWith('/') && !('..' in self.split('/'))";

/** A relative path inside a volume (subPath). */
export function relativePath(what: string): z.ZodString {
  return z
    .string()
    .max(256)
    .refine(isRelativePath, `${what} must be relative and must not contain '..'`)
    .meta({
      "x-kubernetes-validations": [
        { rule: RELATIVE_PATH_CEL, message: `${what} must be relative and must not contain '..'` },
      ],
    });
}

export function objectName(what: string): z.ZodString {
  return z.string().min(1).max(253).regex(DNS_SUBDOMAIN, `${what} must be a lower-case DNS-1123 name`);
}

export function segment(what: string): z.ZodString {
  return z
    .string()
    .min(1)
    .max(200)
    .regex(SEGMENT, `${what} must be one folder name (letters, digits, '.', '_', '-'; no '/')`);
}

export const PvcMountSchema = z
  .object({
    claimName: objectName("claimName").describe("Name of a PersistentVolumeClaim in the same namespace."),
    subPath: relativePath("subPath")
      .optional()
      .describe("Relative directory inside the volume (no leading '/', no '..')."),
    readOnly: z.boolean().optional().describe("Mount read-only."),
  })
  .describe("A directory on a PersistentVolumeClaim.");
export type PvcMount = z.infer<typeof PvcMountSchema>;

const KeyRefSchema = z
  .object({
    name: objectName("name").describe("Name of the Secret or ConfigMap."),
    key: z.string().min(1).max(253).describe("Key inside it."),
    optional: z.boolean().optional().describe("Allow the key or object to be missing."),
  })
  .describe("A key of a Secret or ConfigMap in the run's namespace.");

export const EnvVarSourceSchema = z
  .object({
    secretKeyRef: KeyRefSchema.optional(),
    configMapKeyRef: KeyRefSchema.optional(),
    fieldRef: z
      .object({ fieldPath: z.string().min(1).describe("Pod field, e.g. metadata.name.") })
      .optional()
      .describe("A field of the pod."),
    resourceFieldRef: z
      .object({
        resource: z.string().min(1).describe("e.g. limits.memory."),
        divisor: z.string().optional().describe("Unit divisor."),
      })
      .optional()
      .describe("A resource of the container."),
  })
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + (has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) == 1",
        message: "valueFrom needs exactly one source",
      },
    ],
  })
  .describe("Where the value comes from (exactly one source).");

export const EnvVarSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "an environment variable name (letters, digits, '_')")
      .refine((n) => envNameProblem(n) === undefined, { error: (i) => envNameProblem(String(i.input)) ?? "reserved" })
      .meta({
        "x-kubernetes-validations": [
          {
            rule: `!self.matches('${RESERVED_ENV_RE2}')`,
            message:
              "the name is reserved for the operator (PET_*, SSL3D_*, nnssl_*, MASTER_*, RANK, WORLD_SIZE, LOCAL_RANK, CUDA_VISIBLE_DEVICES)",
          },
          {
            rule: `!self.matches('${CODE_INJECTION_ENV_RE2}')`,
            message: "the variable would inject code into the runtime (NODE_OPTIONS, NODE_PATH, LD_*, ... are refused)",
          },
        ],
      })
      .describe(
        "Variable name (PET_*, SSL3D_*, nnssl_* and code-loading variables such as NODE_OPTIONS or LD_PRELOAD are refused).",
      ),
    value: z.string().optional().describe("Literal value."),
    valueFrom: EnvVarSourceSchema.optional(),
  })
  .meta({
    "x-kubernetes-validations": [
      { rule: "!(has(self.value) && has(self.valueFrom))", message: "set value or valueFrom, not both" },
    ],
  })
  .describe("An environment variable for the container.");
export type EnvVar = z.infer<typeof EnvVarSchema>;

/** Pod and container security identity; the defaults are the runtime image's user. */
export const SecurityIdentitySchema = z
  .object({
    runAsUser: z.number().int().min(1).default(IMAGE_UID).describe("UID of the containers (never 0)."),
    runAsGroup: z.number().int().min(1).default(IMAGE_GID).describe("GID of the containers."),
    fsGroup: z.number().int().min(1).default(IMAGE_GID).describe("Group that owns the mounted volumes."),
  })
  .describe("User and groups of the pods (restricted Pod Security: non-root).");
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
  serviceAccountName: z.string().optional().describe("ServiceAccount of the Job's pod (its token is not mounted)."),
  imagePullSecrets: z.array(LocalObjectReferenceSchema).optional().describe("Secrets for pulling the image."),
  securityContext: SecurityIdentitySchema.prefault({}),
  queueName: z.string().optional().describe("Kueue LocalQueue; set as label kueue.x-k8s.io/queue-name on the Job."),
  backoffLimit: z.number().int().min(0).default(0).describe("Pod retries before the Job fails."),
  activeDeadlineSeconds: z.number().int().min(1).optional().describe("Time limit of the Job."),
  ttlSecondsAfterFinished: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe("Delete the finished Job after this many seconds."),
});
