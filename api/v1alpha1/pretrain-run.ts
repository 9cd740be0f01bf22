/** PretrainRun: multi-node self-supervised pre-training on a Ready Plan, one Indexed Job per attempt. */
import { z } from "zod";
import {
  ConditionsSchema,
  LocalObjectReferenceSchema as ObjectRef,
  QuantitySchema,
  SecurityIdentitySchema,
  segment,
  EnvVarSchema,
  LocalObjectReferenceSchema,
  NodeSelectorSchema,
  PvcMountSchema,
  relativePath,
  ResourceRequirementsSchema,
  Timestamp,
  TolerationSchema,
  immutable,
} from "./common.js";

export const RunPolicySchema = z
  .object({
    activeDeadlineSeconds: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        "Fail the run (reason DeadlineExceeded) after this many seconds of running, counted from the start or the last resume.",
      ),
    maxRestarts: z
      .number()
      .int()
      .min(0)
      .default(3)
      .describe("Gang restarts allowed after rank failures; preemptions (pods with DisruptionTarget) do not count."),
    resume: z
      .enum(["Latest", "None"])
      .default("Latest")
      .describe(
        "Every attempt (the first included) resumes from the latest checkpoint in the run's folder (Latest), or starts over (None).",
      ),
    ttlSecondsAfterFinished: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Delete the PretrainRun (and its children) this many seconds after it finished."),
    startupDeadlineSeconds: z
      .number()
      .int()
      .min(1)
      .default(1800)
      .describe(
        "An admitted attempt whose ranks are not all ready after this many seconds fails (reason StartupDeadlineExceeded) and counts as a restart.",
      ),
  })
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "has(self.activeDeadlineSeconds) == has(oldSelf.activeDeadlineSeconds) && (!has(self.activeDeadlineSeconds) || self.activeDeadlineSeconds == oldSelf.activeDeadlineSeconds)",
        message: "runPolicy.activeDeadlineSeconds is immutable",
      },
    ],
  })
  .describe("Restart, deadline and clean-up policy.");

export const GangSchedulers = ["none", "volcano", "coscheduling"] as const;

export const PretrainRunSpecSchema = z
  .object({
    planRef: LocalObjectReferenceSchema.meta(immutable("planRef")).describe(
      "The Plan whose preprocessed data to train on (immutable).",
    ),
    suspend: z
      .boolean()
      .default(false)
      .describe(
        "The run's admission gate (as JobSet's and TrainJob's spec.suspend), set by a user or a queue; a run labelled kueue.x-k8s.io/queue-name also waits for Kueue to admit its Workload, which is inactive while this is true: while true no pod runs (a running attempt is stopped, its ranks checkpoint on SIGTERM); false admits the run, which starts or resumes from the latest checkpoint, and the deadline clocks restart.",
      ),
    image: z.string().min(1).describe("Runtime image that provides the `ssl3d` CLI."),
    imagePullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).optional().describe("Image pull policy."),
    command: z
      .array(z.string())
      .optional()
      .describe("Container command; default [ssl3d, train, DATASET, CONFIGURATION, -tr, TRAINER, ...]."),
    env: z
      .array(EnvVarSchema)
      .max(64)
      .optional()
      .describe(
        "Extra environment variables, literal or valueFrom (reserved: PET_*, SSL3D_*, nnssl_*, MASTER_*, RANK, WORLD_SIZE; refused: NODE_OPTIONS, LD_PRELOAD and other code-loading variables).",
      ),
    envFrom: z
      .array(
        z
          .object({
            prefix: z
              .string()
              .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
              .optional()
              .describe("Prefix for every key."),
            secretRef: ObjectRef.optional().describe("All keys of a Secret."),
            configMapRef: ObjectRef.optional().describe("All keys of a ConfigMap."),
          })
          .meta({
            "x-kubernetes-validations": [
              {
                rule: "has(self.secretRef) != has(self.configMapRef)",
                message: "envFrom needs exactly one of secretRef and configMapRef",
              },
            ],
          })
          .describe(
            "Variables from all keys of a Secret or ConfigMap (keys that collide with reserved names are overridden by the operator's values).",
          ),
      )
      .max(16)
      .optional()
      .describe("Environment from Secrets or ConfigMaps."),
    training: z
      .object({
        trainer: segment("training.trainer").default("BaseMAETrainer").describe("nnssl trainer name (`-tr`)."),
        configuration: segment("training.configuration")
          .optional()
          .describe("Plan configuration to train on; default: the Plan's first configuration."),
        epochs: z
          .number()
          .int()
          .min(1)
          .optional()
          .describe("Epochs (`--epochs`); also the denominator of status.progress.percent."),
        modalities: z
          .array(
            z
              .string()
              .regex(/^[^,\s]+$/, "a modality name without commas or spaces")
              .max(64),
          )
          .min(1)
          .max(32)
          .optional()
          .describe("Train only on images of these modalities (`--modalities`, e.g. [T1w, T2w, FLAIR])."),
        args: z.array(z.string()).optional().describe("Further arguments appended to `ssl3d train`."),
        preflight: z
          .boolean()
          .default(false)
          .describe(
            "Check the GPU before training (`ssl3d train --preflight` runs `ssl3d doctor --gpu`): a pod without a working GPU fails at once with one line.",
          ),
      })
      .prefault({})
      .describe("What to train."),
    numNodes: z
      .number()
      .int()
      .min(1)
      .default(1)
      .meta(immutable("numNodes"))
      .describe("Nodes (pods) per attempt; one torchrun agent per node."),
    nprocPerNode: z
      .number()
      .int()
      .min(1)
      .default(1)
      .meta(immutable("nprocPerNode"))
      .describe("Worker processes per node (usually GPUs per node)."),
    resourcesPerNode: ResourceRequirementsSchema.optional(),
    nodeSelector: NodeSelectorSchema.optional(),
    tolerations: z.array(TolerationSchema).optional().describe("Pod tolerations."),
    priorityClassName: z.string().optional().describe("PriorityClass of the pods."),
    runtimeClassName: z.string().optional().describe("RuntimeClass of the pods (e.g. nvidia)."),
    serviceAccountName: z.string().optional().describe("ServiceAccount of the pods (its token is never mounted)."),
    imagePullSecrets: z.array(ObjectRef).optional().describe("Secrets for pulling the image."),
    affinity: z
      .looseObject({})
      .optional()
      .describe("Pod affinity (Kubernetes Affinity), merged with nothing: used as given."),
    topologySpreadConstraints: z
      .array(z.looseObject({}))
      .optional()
      .describe("Pod topology spread constraints (Kubernetes shape)."),
    podLabels: z
      .record(z.string(), z.string())
      .optional()
      .describe("Extra pod labels (e.g. Kueue topology requests); ssl3d.io/* keys are the operator's."),
    podAnnotations: z.record(z.string(), z.string()).optional().describe("Extra pod annotations."),
    volumes: z
      .array(
        z.looseObject({ name: z.string().min(1).max(63).describe("Volume name.") }).describe("A Kubernetes Volume."),
      )
      .max(16)
      .optional()
      .describe(
        "Extra pod volumes (Kubernetes shape); names data, checkpoints, dshm, tmp and run-secret are the operator's.",
      ),
    volumeMounts: z
      .array(
        z
          .object({
            name: z.string().min(1).describe("Volume name."),
            mountPath: z
              .string()
              .max(256)
              .refine(
                (p) => p.startsWith("/") && !p.split("/").includes(".."),
                "mountPath must be absolute without '..'",
              )
              .meta({
                "x-kubernetes-validations": [
                  {
                    rule: "self.startsWith('/') && !('..' in self.split('/'))",
                    message: "mountPath must be absolute without '..'",
                  },
                ],
              })
              .describe("Absolute path in the container."),
            subPath: relativePath("subPath").optional().describe("Relative path inside the volume."),
            readOnly: z.boolean().optional().describe("Mount read-only."),
          })
          .describe("A mount of an extra volume into the trainer container."),
      )
      .max(16)
      .optional()
      .describe("Mounts of the extra volumes."),
    terminationGracePeriodSeconds: z
      .number()
      .int()
      .min(0)
      .default(120)
      .describe("Seconds a rank has after SIGTERM (it writes a checkpoint of the current step before it exits)."),
    shmSize: QuantitySchema.default("8Gi").describe("Size of the memory-backed /dev/shm (data loader workers)."),
    securityContext: SecurityIdentitySchema.prefault({}),
    storage: z
      .object({
        data: PvcMountSchema.optional().describe(
          "Volume with nnssl_preprocessed; default: the Plan's output volume, read-only.",
        ),
        checkpoints: PvcMountSchema.extend({
          folder: segment("storage.checkpoints.folder")
            .optional()
            .describe(
              "The run's folder inside the volume (checkpoints/ and results/); default <name>-<uid>, so two runs never share checkpoints.",
            ),
        }).describe("Volume for checkpoints and results (ReadWriteMany for multi-node runs)."),
      })
      .meta(immutable("storage"))
      .describe("Volumes for data and checkpoints."),
    runPolicy: RunPolicySchema.prefault({}),
    scheduling: z
      .object({
        queueName: z
          .string()
          .optional()
          .describe(
            "Kueue LocalQueue, set as label kueue.x-k8s.io/queue-name on each attempt Job (Kueue admits attempt by attempt); ignored when the PretrainRun itself carries that label (then the run is the unit Kueue admits, through one Workload the operator creates).",
          ),
        gang: z
          .object({
            scheduler: z
              .enum(GangSchedulers)
              .default("none")
              .describe("Create a PodGroup for volcano or coscheduling (scheduler-plugins)."),
            schedulerName: z
              .string()
              .optional()
              .describe("Pod schedulerName; default volcano for volcano, unchanged otherwise."),
            scheduleTimeoutSeconds: z
              .number()
              .int()
              .min(1)
              .default(60)
              .describe("coscheduling: seconds to wait for the whole gang."),
            queue: z.string().optional().describe("volcano: the Queue of the PodGroup."),
          })
          .prefault({})
          .describe("Gang scheduling of all ranks."),
      })
      .prefault({})
      .describe("Queueing and gang scheduling."),
    metrics: z
      .object({
        port: z
          .number()
          .int()
          .min(1)
          .max(65535)
          .default(9090)
          .describe("Port of the trainer's Prometheus endpoint (SSL3D_METRICS_PORT)."),
        path: z
          .string()
          .regex(/^\/[A-Za-z0-9._~/-]*$/, "an absolute URL path")
          .default("/metrics")
          .describe("HTTP path of the endpoint."),
        scrapeIntervalSeconds: z
          .number()
          .int()
          .min(0)
          .default(30)
          .describe("How often the operator reads rank 0's metrics into status.progress (0 disables)."),
      })
      .prefault({})
      .describe("Training metrics endpoint; rank 0's values fill status.progress."),
  })
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "!has(self.resourcesPerNode) || !has(self.resourcesPerNode.limits) || !('nvidia.com/gpu' in self.resourcesPerNode.limits) || int(string(self.resourcesPerNode.limits['nvidia.com/gpu'])) >= self.nprocPerNode",
        message: "nprocPerNode must not exceed the nvidia.com/gpu limit (one GPU per local rank)",
      },
    ],
  })
  .superRefine((spec, ctx) => {
    const gpus = spec.resourcesPerNode?.limits?.["nvidia.com/gpu"];
    if (gpus !== undefined && Number(gpus) < spec.nprocPerNode) {
      ctx.addIssue({
        code: "custom",
        path: ["nprocPerNode"],
        message: `nprocPerNode ${spec.nprocPerNode} exceeds the nvidia.com/gpu limit ${String(gpus)} (one GPU per local rank)`,
      });
    }
  })
  .describe("Desired state of a PretrainRun.");
export type PretrainRunSpec = z.infer<typeof PretrainRunSpecSchema>;

export const PretrainRunPhases = [
  "Pending",
  "Queued",
  "Running",
  "Restarting",
  "Suspended",
  "Succeeded",
  "Failed",
] as const;
export type PretrainRunPhase = (typeof PretrainRunPhases)[number];

export const PretrainRunStatusSchema = z
  .object({
    observedGeneration: z.number().int().optional().describe("metadata.generation this status reflects."),
    phase: z
      .enum(PretrainRunPhases)
      .optional()
      .describe("Pending, Queued, Running, Restarting, Suspended, Succeeded or Failed."),
    conditions: ConditionsSchema.optional(),
    attempt: z.number().int().min(0).optional().describe("Current attempt (1-based; each attempt is one Indexed Job)."),
    activeJob: z.string().optional().describe("Name of the current attempt's Job."),
    restarts: z.number().int().min(0).optional().describe("Gang restarts so far, preemptions included."),
    restartsCountTowardsMax: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Gang restarts that count against runPolicy.maxRestarts."),
    startTime: Timestamp.optional().describe(
      "Start of the current active period (first start or last resume); the deadline counts from here.",
    ),
    completionTime: Timestamp.optional().describe("When the run succeeded or failed."),
    replicas: z
      .object({
        active: z.number().int().describe("Pods running or pending."),
        ready: z.number().int().describe("Pods ready."),
        succeeded: z.number().int().describe("Pods succeeded."),
        failed: z.number().int().describe("Pods failed."),
      })
      .optional()
      .describe("Pod counts of the current attempt."),
    lastFailure: z
      .object({
        attempt: z.number().int().describe("Attempt that failed."),
        reason: z
          .string()
          .describe(
            "RankFailed, Preempted, StartupDeadlineExceeded, or the runtime's reason (ConfigError, DataError, TrainingDiverged, CheckpointOwnedByAnotherRun).",
          ),
        message: z.string().describe("What failed."),
        time: Timestamp.describe("When the failure was observed."),
        exitCode: z
          .number()
          .int()
          .optional()
          .describe("Exit code that decided (2 configuration, 3 data, 4 diverged, 5 peer, 128+n signal)."),
        ranks: z
          .array(
            z.object({
              rank: z.number().int().describe("Node rank (Job completion index)."),
              exitCode: z.number().int().optional().describe("Exit code of the trainer container."),
              reason: z.string().optional().describe("Container termination reason (Error, OOMKilled, ...)."),
              message: z.string().optional().describe("Termination message (truncated)."),
            }),
          )
          .optional()
          .describe("Evidence of every rank that terminated."),
      })
      .optional()
      .describe("The most recent failed attempt."),
    progress: z
      .object({
        step: z.number().int().optional().describe("pretrain_global_step of rank 0."),
        epoch: z.number().int().optional().describe("pretrain_epoch of rank 0."),
        loss: z.string().optional().describe("pretrain_train_loss of rank 0."),
        percent: z.number().int().optional().describe("epoch / training.epochs in percent."),
        lastUpdatedTime: Timestamp.optional().describe("When rank 0's metrics were read."),
      })
      .optional()
      .describe("Training progress read from rank 0's /metrics."),
  })
  .describe("Observed state of a PretrainRun.");
export type PretrainRunStatus = z.infer<typeof PretrainRunStatusSchema>;

export const pretrainRunCrd = {
  spec: PretrainRunSpecSchema,
  status: PretrainRunStatusSchema,
  description: "Multi-node self-supervised pre-training of a 3D model on a Plan's preprocessed data.",
  printerColumns: [
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "Nodes", type: "integer", jsonPath: ".spec.numNodes" },
    { name: "Attempt", type: "integer", jsonPath: ".status.attempt" },
    { name: "Restarts", type: "integer", jsonPath: ".status.restarts" },
    { name: "Progress%", type: "integer", jsonPath: ".status.progress.percent" },
    { name: "Loss", type: "string", jsonPath: ".status.progress.loss", priority: 1 },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
  // Names become Job, Service and pod host names (`<run>-a<attempt>-<rank>.<run>`): DNS-1035 labels with room.
  rootValidations: [
    {
      rule: "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 48",
      message: "metadata.name must be a DNS-1035 label of at most 48 characters",
    },
  ],
} as const;
