/**
 * Operator metrics with controller-runtime's names (existing dashboards work unchanged) plus ssl3d run counters.
 * Counters carry only bounded labels (controller, result, reason) — never a run name.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { RUN_STATE_METRIC } from "../../api/metrics.js";
import { PretrainRunPhases } from "../../api/v1alpha1/pretrain-run.js";
import type { QueueMetrics } from "./kube/work-queue.js";

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal = new Counter({
    name: "controller_runtime_reconcile_total",
    help: "Total number of reconciliations per controller",
    labelNames: ["controller", "result"],
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: "controller_runtime_reconcile_errors_total",
    help: "Total number of reconciliation errors per controller",
    labelNames: ["controller"],
    registers: [this.registry],
  });
  readonly terminalErrors = new Counter({
    name: "controller_runtime_terminal_reconcile_errors_total",
    help: "Total number of terminal reconciliation errors per controller",
    labelNames: ["controller"],
    registers: [this.registry],
  });
  readonly reconcileTime = new Histogram({
    name: "controller_runtime_reconcile_time_seconds",
    help: "Length of time per reconciliation per controller",
    labelNames: ["controller"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly activeWorkers = new Gauge({
    name: "controller_runtime_active_workers",
    help: "Number of currently used workers per controller",
    labelNames: ["controller"],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: "workqueue_depth",
    help: "Current depth of workqueue",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly queueAdds = new Counter({
    name: "workqueue_adds_total",
    help: "Total number of adds handled by workqueue",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly queueRetries = new Counter({
    name: "workqueue_retries_total",
    help: "Total number of retries handled by workqueue",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly queueLatency = new Histogram({
    name: "workqueue_queue_duration_seconds",
    help: "How long in seconds an item stays in workqueue before being requested",
    labelNames: ["name"],
    buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 10, 60],
    registers: [this.registry],
  });
  readonly workDuration = new Histogram({
    name: "workqueue_work_duration_seconds",
    help: "How long in seconds processing an item from workqueue takes",
    labelNames: ["name"],
    buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 10, 60],
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: "leader_election_master_status",
    help: "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly informerRestarts = new Counter({
    name: "ssl3d_operator_informer_restarts_total",
    help: "Informer restarts after watch or list errors",
    labelNames: ["resource"],
    registers: [this.registry],
  });
  readonly runsCreated = new Counter({
    name: "ssl3d_pretrainruns_created_total",
    help: "PretrainRuns whose first attempt Job was created",
    registers: [this.registry],
  });
  readonly runsSucceeded = new Counter({
    name: "ssl3d_pretrainruns_succeeded_total",
    help: "PretrainRuns that succeeded",
    registers: [this.registry],
  });
  readonly runsFailed = new Counter({
    name: "ssl3d_pretrainruns_failed_total",
    help: "PretrainRuns that failed",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly runsRestarted = new Counter({
    name: "ssl3d_pretrainruns_restarted_total",
    help: "Gang restarts of PretrainRuns",
    labelNames: ["reason"],
    registers: [this.registry],
  });

  // Per-run state (one series per existing run; removed when the run is deleted), so alerts on stuck or restarting
  // runs survive operator restarts: they read the current state, not counters of one operator process.
  readonly runPhase = new Gauge({
    name: RUN_STATE_METRIC,
    help: "1 for the current phase of each PretrainRun",
    labelNames: ["namespace", "name", "phase"],
    registers: [this.registry],
  });
  readonly runAttempt = new Gauge({
    name: "ssl3d_pretrainrun_attempt",
    help: "Current attempt of each PretrainRun",
    labelNames: ["namespace", "name"],
    registers: [this.registry],
  });
  readonly runRestarts = new Gauge({
    name: "ssl3d_pretrainrun_restarts",
    help: "Gang restarts of each PretrainRun so far (status.restarts)",
    labelNames: ["namespace", "name"],
    registers: [this.registry],
  });

  /** Records a run's state from its status (all phases present: the current one 1, the others 0). */
  setRunState(
    namespace: string,
    name: string,
    status: { phase?: string | undefined; attempt?: number | undefined; restarts?: number | undefined },
  ): void {
    for (const phase of PretrainRunPhases)
      this.runPhase.set({ namespace, name, phase }, status.phase === phase ? 1 : 0);
    this.runAttempt.set({ namespace, name }, status.attempt ?? 0);
    this.runRestarts.set({ namespace, name }, status.restarts ?? 0);
  }

  forgetRun(namespace: string, name: string): void {
    for (const phase of PretrainRunPhases) this.runPhase.remove({ namespace, name, phase });
    this.runAttempt.remove({ namespace, name });
    this.runRestarts.remove({ namespace, name });
  }

  constructor(defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
  }

  queueMetrics(): QueueMetrics {
    return {
      depth: (name, n) => {
        this.queueDepth.set({ name }, n);
      },
      add: (name) => {
        this.queueAdds.inc({ name });
      },
      retry: (name) => {
        this.queueRetries.inc({ name });
      },
      queueDuration: (name, s) => {
        this.queueLatency.observe({ name }, s);
      },
      workDuration: (name, s) => {
        this.workDuration.observe({ name }, s);
      },
    };
  }
}
