/**
 * Prometheus metrics of a training run (names fixed by the BRIEF contract, consumed by the delivery dashboards), in
 * their own prom-client Registry, served on `GET /metrics` by `serveMetrics(port)` while training runs. No run/step
 * labels: the scraper adds them by relabelling.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class TrainingMetrics {
  readonly registry = new Registry();
  readonly trainLoss = new Gauge({ name: "pretrain_train_loss", help: "Training loss of the last step (the mean of the epoch at epoch end).", registers: [this.registry] });
  readonly valLoss = new Gauge({ name: "pretrain_val_loss", help: "Mean validation loss of the last completed epoch.", registers: [this.registry] });
  readonly learningRate = new Gauge({ name: "pretrain_learning_rate", help: "Current learning rate.", registers: [this.registry] });
  readonly epoch = new Gauge({ name: "pretrain_epoch", help: "Current epoch (0-based).", registers: [this.registry] });
  readonly globalStep = new Gauge({ name: "pretrain_global_step", help: "Optimizer steps taken (including skipped non-finite steps).", registers: [this.registry] });
  readonly samples = new Counter({ name: "pretrain_samples_total", help: "Training samples (patches) consumed.", registers: [this.registry] });
  readonly stepDuration = new Histogram({
    name: "pretrain_step_duration_seconds",
    help: "Wall time of one training step (forward, backward, update), excluding waiting for data.",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  readonly lastCheckpoint = new Gauge({ name: "pretrain_last_checkpoint_timestamp_seconds", help: "Unix time of the last checkpoint written.", registers: [this.registry] });
  readonly nonFinite = new Counter({ name: "pretrain_nonfinite_steps_total", help: "Steps skipped because the loss or gradient norm was NaN/Inf.", registers: [this.registry] });
  readonly loaderPatches = new Counter({ name: "pretrain_loader_patches_total", help: "Patches produced by the data loader.", registers: [this.registry] });
  readonly loaderQueueDepth = new Gauge({ name: "pretrain_loader_queue_depth", help: "Batches built and waiting to be consumed.", registers: [this.registry] });
  readonly loaderWait = new Histogram({
    name: "pretrain_loader_wait_seconds",
    help: "Time the training step waited for the next batch.",
    buckets: [0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serve `/metrics` on `port` (0 = any free port) on all interfaces (a pod's metrics must be reachable). */
export async function serveMetrics(metrics: TrainingMetrics, port: number, host = "0.0.0.0"): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.url?.split("?")[0] !== "/metrics") {
      res.writeHead(404).end("not found\n");
      return;
    }
    metrics.registry.metrics().then(
      (body) => {
        res.writeHead(200, { "Content-Type": metrics.registry.contentType }).end(body);
      },
      (err: unknown) => {
        res.writeHead(500).end(String(err));
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
