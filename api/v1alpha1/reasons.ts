/**
 * The reasons the operator writes into `status.conditions[].reason` of each kind and into its Events, one const object
 * per kind. They are part of the API: alert rules, docs/operator.md and users' scripts match on them, so they are
 * stable, UpperCamelCase, and every reconciler names them through these objects. An Event carries the reason of the
 * condition transition it reports (operator/src/controllers/common.ts `transitionEvents`); the PretrainRun's extra
 * Events (a resume, a restart) use PretrainRun reasons too.
 */
export const CollectionReason = {
  /** Ready=False: the spec does not validate (message names the field). */
  ValidationFailed: "ValidationFailed",
  /** Ready=True: source validated, indexing disabled. */
  Validated: "Validated",
  Indexing: "Indexing",
  /** Ready=False: the Job controller cannot create the indexing pod (FailedCreate: quota, Pod Security, ...). */
  PodCreationFailed: "PodCreationFailed",
  IndexingFailed: "IndexingFailed",
  /** The indexing Job completed but its termination message has not arrived yet. */
  WaitingForSummary: "WaitingForSummary",
  InvalidSummary: "InvalidSummary",
  Indexed: "Indexed",
} as const;
export type CollectionReason = (typeof CollectionReason)[keyof typeof CollectionReason];

export const PlanReason = {
  ValidationFailed: "ValidationFailed",
  /** Stale=True: the Collection's content hash moved away from the one this Plan was built from. */
  CollectionChanged: "CollectionChanged",
  CollectionDeleted: "CollectionDeleted",
  UpToDate: "UpToDate",
  WaitingForCollection: "WaitingForCollection",
  /** Ready=False: the preprocessing Job is suspended by its queue. */
  WaitingForAdmission: "WaitingForAdmission",
  Preprocessing: "Preprocessing",
  /** Ready=False: the Job controller cannot create the preprocessing pod (FailedCreate: quota, Pod Security, ...). */
  PodCreationFailed: "PodCreationFailed",
  PreprocessingFailed: "PreprocessingFailed",
  WaitingForSummary: "WaitingForSummary",
  InvalidSummary: "InvalidSummary",
  Preprocessed: "Preprocessed",
} as const;
export type PlanReason = (typeof PlanReason)[keyof typeof PlanReason];

export const PretrainRunReason = {
  ValidationFailed: "ValidationFailed",
  /** Failed=False after a spec that failed validation was fixed. */
  Validated: "Validated",
  PlanNotReady: "PlanNotReady",
  /** Created=False: the API server refused a child object. */
  ChildRefused: "ChildRefused",
  ChildrenApplied: "ChildrenApplied",
  JobCreated: "JobCreated",
  WaitingForAdmission: "WaitingForAdmission",
  Admitted: "Admitted",
  PodsNotReady: "PodsNotReady",
  AllPodsReady: "AllPodsReady",
  /** Restarting=False once the next attempt runs. */
  Restarted: "Restarted",
  Suspended: "Suspended",
  /** Suspended=True: Kueue evicted the run's Workload (preemption, deactivation, a stopped queue); attempt stopped. */
  Evicted: "Evicted",
  /** Suspended=True: the run's Workload is Finished while the run is not (deleting the Workload queues it again). */
  WorkloadFinished: "WorkloadFinished",
  Resumed: "Resumed",
  Completed: "Completed",
  Failed: "Failed",
  DeadlineExceeded: "DeadlineExceeded",
  StartupDeadlineExceeded: "StartupDeadlineExceeded",
  BackoffLimitExceeded: "BackoffLimitExceeded",
  /** An attempt ended by a disruption (DisruptionTarget): restarted without counting against maxRestarts. */
  Preempted: "Preempted",
  /** An attempt failed in a way worth a restart (a peer failure, a signal, an unknown exit code). */
  RankFailed: "RankFailed",
  /** Non-retryable attempt failures, from the deciding rank's exit code (api/termination.ts EXIT). */
  ConfigError: "ConfigError",
  DataError: "DataError",
  TrainingDiverged: "TrainingDiverged",
  /** The runtime refused a checkpoint directory that another run owns (its termination message names it). */
  CheckpointOwnedByAnotherRun: "CheckpointOwnedByAnotherRun",
  /** Running=False while an attempt's pods wait for something a user must fix. */
  ImagePullBackOff: "ImagePullBackOff",
  CreateContainerConfigError: "CreateContainerConfigError",
  Unschedulable: "Unschedulable",
  /** Running=False: the Job controller cannot create the attempt's pods (its FailedCreate Event: quota, Pod Security). */
  PodCreationFailed: "PodCreationFailed",
} as const;
export type PretrainRunReason = (typeof PretrainRunReason)[keyof typeof PretrainRunReason];
