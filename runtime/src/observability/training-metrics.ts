/**
 * Prometheus metrics of a training run (names listed in docs/training.md, "Metrics"; consumed by the delivery dashboards), in
 * their own prom-client Registry, served on `GET /metrics` by `serveMetrics(port)` while training runs. No run/step
 * labels: the scraper adds them by relabelling. The endpoint binds to 127.0.0.1 unless `SSL3D_METRICS_ADDRESS` says
 * otherwise (the operator sets 0.0.0.0 in pods so Prometheus can scrape them).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isIP, type AddressInfo, type Socket } from "node:net";
import { ConfigError, EnvironmentError } from "../errors.js";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { envString, processEnv, type Env, type SettingName } from "../config/settings.js";

export class TrainingMetrics {
  readonly registry = new Registry();
  readonly trainLoss = new Gauge({
    name: "pretrain_train_loss",
    help: "Training loss of the last step (the mean of the epoch at epoch end).",
    registers: [this.registry],
  });
  readonly valLoss = new Gauge({
    name: "pretrain_val_loss",
    help: "Mean validation loss of the last completed epoch.",
    registers: [this.registry],
  });
  readonly learningRate = new Gauge({
    name: "pretrain_learning_rate",
    help: "Current learning rate.",
    registers: [this.registry],
  });
  readonly epoch = new Gauge({ name: "pretrain_epoch", help: "Current epoch (0-based).", registers: [this.registry] });
  readonly globalStep = new Gauge({
    name: "pretrain_global_step",
    help: "Optimizer steps taken (including skipped non-finite steps).",
    registers: [this.registry],
  });
  readonly samples = new Counter({
    name: "pretrain_samples_total",
    help: "Training samples (patches) consumed.",
    registers: [this.registry],
  });
  readonly stepDuration = new Histogram({
    name: "pretrain_step_duration_seconds",
    help: "Wall time of one training step (forward, backward, update), excluding waiting for data.",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  readonly lastCheckpoint = new Gauge({
    name: "pretrain_last_checkpoint_timestamp_seconds",
    help: "Unix time of the last checkpoint written.",
    registers: [this.registry],
  });
  readonly nonFinite = new Counter({
    name: "pretrain_nonfinite_steps_total",
    help: "Steps skipped because the loss or gradient norm was NaN/Inf.",
    registers: [this.registry],
  });
  readonly loaderPatches = new Counter({
    name: "pretrain_loader_patches_total",
    help: "Patches produced by the data loader.",
    registers: [this.registry],
  });
  readonly loaderQueueDepth = new Gauge({
    name: "pretrain_loader_queue_depth",
    help: "Batches built and waiting to be consumed.",
    registers: [this.registry],
  });
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
  readonly host: string;
  close(): Promise<void>;
}

/** Limits of the endpoint (docs/limits-and-safety.md, "Metrics endpoint"). */
export interface MetricsServerOptions {
  /** Interface to bind (default `SSL3D_METRICS_ADDRESS`, else 127.0.0.1; pods get 0.0.0.0 from the operator). */
  readonly host?: string;
  /** Open connections at most; at the limit the longest-idle one is closed for a new one (default 32). */
  readonly maxConnections?: number;
  /** A connection without a request in flight is closed after this long; also the header deadline (default 5 s). */
  readonly idleTimeoutMs?: number;
  /** A request must be answered within this long (default 15 s). */
  readonly requestTimeoutMs?: number;
}

export const METRICS_LIMITS = {
  host: "127.0.0.1",
  maxConnections: 32,
  idleTimeoutMs: 5000,
  requestTimeoutMs: 15000,
} as const;
export const METRICS_ADDRESS_ENV = "SSL3D_METRICS_ADDRESS" satisfies SettingName;

/** The interface to bind: `SSL3D_METRICS_ADDRESS` when set, else loopback only. */
export function metricsHost(env: Env = processEnv()): string {
  const v = envString(METRICS_ADDRESS_ENV, env);
  if (v === undefined) return METRICS_LIMITS.host;
  if (isIP(v) === 0 && v !== "localhost")
    throw new ConfigError(`${METRICS_ADDRESS_ENV} must be an IP address (e.g. 127.0.0.1 or 0.0.0.0), got "${v}"`, {
      field: METRICS_ADDRESS_ENV,
    });
  return v;
}

interface Conn {
  busy: boolean;
  idleSince: number;
}

/** Closes idle connections first when the limit is reached; a new connection is refused only if all are busy. */
function trackConnections(server: Server, max: number, idleMs: number): void {
  const conns = new Map<Socket, Conn>();
  server.on("connection", (socket: Socket) => {
    if (conns.size >= max) {
      let oldest: Socket | undefined;
      let since = Infinity;
      for (const [s, c] of conns) if (!c.busy && c.idleSince < since) [oldest, since] = [s, c.idleSince];
      if (oldest === undefined) {
        socket.destroy();
        return;
      }
      conns.delete(oldest);
      oldest.destroy();
    }
    conns.set(socket, { busy: false, idleSince: performance.now() });
    socket.setTimeout(idleMs, () => {
      if (conns.get(socket)?.busy !== true) socket.destroy();
    });
    socket.once("close", () => conns.delete(socket));
  });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const c = conns.get(req.socket);
    if (c === undefined) return;
    c.busy = true;
    res.once("finish", () => {
      c.busy = false;
      c.idleSince = performance.now();
    });
  });
}

function handle(metrics: TrainingMetrics, req: IncomingMessage, res: ServerResponse): void {
  const url = req.url?.split("?")[0];
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { Allow: "GET, HEAD" }).end();
    return;
  }
  if (url === "/healthz" || url === "/readyz") {
    res.writeHead(200, { "Content-Type": "text/plain" }).end("ok\n");
    return;
  }
  if (url !== "/metrics") {
    res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
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
}

/**
 * Serve `GET /metrics` and `GET /healthz` on `port` (0 = any free port), on loopback unless told otherwise, with
 * bounded connections and idle time so idle or slow clients cannot starve a scrape. A busy port is an
 * EnvironmentError (exit code 2) naming the address.
 */
export async function serveMetrics(
  metrics: TrainingMetrics,
  port: number,
  opts: MetricsServerOptions = {},
): Promise<MetricsServer> {
  const host = opts.host ?? metricsHost();
  const idle = opts.idleTimeoutMs ?? METRICS_LIMITS.idleTimeoutMs;
  const server: Server = createServer((req, res) => {
    handle(metrics, req, res);
  });
  server.headersTimeout = idle;
  server.keepAliveTimeout = idle;
  server.requestTimeout = opts.requestTimeoutMs ?? METRICS_LIMITS.requestTimeoutMs;
  trackConnections(server, opts.maxConnections ?? METRICS_LIMITS.maxConnections, idle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      const why =
        err.code === "EADDRINUSE"
          ? "is already in use (another trainer on this machine?); choose another with --metrics-port or SSL3D_METRICS_PORT"
          : err.code === "EADDRNOTAVAIL"
            ? `is not an address of this machine; check ${METRICS_ADDRESS_ENV}`
            : `cannot be opened: ${err.message}`;
      reject(new EnvironmentError(`metrics endpoint ${host}:${port} ${why}`, { field: "--metrics-port", cause: err }));
    });
    server.listen(port, host, () => {
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    host,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
