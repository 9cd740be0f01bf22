/**
 * ssl3d-operator entry point (wiring only; `ssl3d-operator render -f FILE [--attempt N]` prints children without a cluster): kubeconfig, logger, metrics and health server, leader election, the
 * controller manager, graceful SIGTERM. Configuration by environment (see docs/operator.md):
 *   KUBECONFIG / in-cluster config; SSL3D_WATCH_NAMESPACE (default: all namespaces);
 *   SSL3D_OPERATOR_NAMESPACE (Lease namespace; default: the pod's namespace, else "default");
 *   SSL3D_OPERATOR_PORT (metrics + probes, default 8080; 0 = random); SSL3D_LEADER_ELECT (default true);
 *   SSL3D_LEASE_DURATION_SECONDS / SSL3D_RENEW_DEADLINE_SECONDS / SSL3D_RETRY_PERIOD_SECONDS (15 / 10 / 2);
 *   SSL3D_OPERATOR_CONCURRENCY (workers per kind, default 4); SSL3D_RESYNC_SECONDS (default 300);
 *   SSL3D_SCRAPE_CONCURRENCY / SSL3D_SCRAPE_TIMEOUT_SECONDS (rank-0 metrics poller: 4 in flight, 2 s each);
 *   SSL3D_KUEUE (auto / true / false: watch Kueue Workloads for runs Kueue admits as a whole).
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { httpStatus, KubeClient } from "./kube/client.js";
import { LeaderElector } from "./kube/leader.js";
import { Manager } from "./kube/manager.js";
import type { Logger } from "pino";
import { createLogger } from "./log.js";
import { parseKueueMode } from "./kueue-mode.js";
import { OperatorMetrics } from "./metrics.js";

function envNumber(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: expected a non-negative number, got "${v}"`);
  return n;
}

function podNamespace(): string {
  try {
    return readFileSync("/var/run/secrets/kubernetes.io/serviceaccount/namespace", "utf8").trim();
  } catch {
    return "default";
  }
}

interface Parts {
  log: Logger;
  client: KubeClient;
  metrics: OperatorMetrics;
  manager: Manager;
  identity: string;
}

/** Lease leader election (SSL3D_LEADER_ELECT, default on): the leader runs the controllers; losing the Lease exits. */
function leaderElector(p: Parts): LeaderElector | undefined {
  if (process.env.SSL3D_LEADER_ELECT === "false") return undefined;
  const { log, metrics, manager } = p;
  return new LeaderElector(
    p.client,
    {
      namespace: process.env.SSL3D_OPERATOR_NAMESPACE ?? podNamespace(),
      name: "ssl3d-operator",
      identity: p.identity,
      leaseDurationMs: envNumber("SSL3D_LEASE_DURATION_SECONDS", 15) * 1000,
      renewDeadlineMs: envNumber("SSL3D_RENEW_DEADLINE_SECONDS", 10) * 1000,
      retryPeriodMs: envNumber("SSL3D_RETRY_PERIOD_SECONDS", 2) * 1000,
    },
    log,
    {
      onStartedLeading: () => {
        metrics.leader.set({ name: "ssl3d-operator" }, 1);
        manager.start().catch((err: unknown) => {
          log.fatal({ err: String(err) }, "Could not start the controllers");
          process.exit(1);
        });
      },
      onStoppedLeading: () => {
        metrics.leader.set({ name: "ssl3d-operator" }, 0);
        // Like controller-runtime: a process that lost its Lease exits and is restarted as a standby.
        log.fatal("Lost the Lease; exiting");
        process.exit(1);
      },
    },
  );
}

/** /metrics, /healthz and /readyz. */
function probeServer(p: Parts, elector: LeaderElector | undefined, resyncMs: number): Server {
  const { metrics, manager } = p;
  return createServer((req, res) => {
    const url = req.url ?? "/";
    if (url.startsWith("/metrics")) {
      metrics.registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { "Content-Type": metrics.registry.contentType });
          res.end(text);
        })
        .catch((err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        });
      return;
    }
    if (url.startsWith("/healthz")) {
      res.writeHead(200);
      res.end("ok");
      return;
    }
    if (url.startsWith("/readyz")) {
      // A standby is ready (it serves probes and waits for the Lease); a leader once its caches are synced.
      // Watches reconnect at least every 30 s (client-node's inactivity timeout), so a cache that has seen nothing for
      // two resync periods is stalled (client-node issues #596, #958): report not ready so the pod gets attention.
      const leading = elector === undefined || elector.isLeader;
      const stalled = leading && manager.staleForMs() > 2 * resyncMs;
      const ready = !leading || (manager.synced && !stalled);
      res.writeHead(ready ? 200 : 503);
      res.end(
        ready ? (leading ? "ok (leader)" : "ok (standby)") : stalled ? "informers stalled" : "informers not synced",
      );
      return;
    }
    res.writeHead(404);
    res.end();
  });
}

/**
 * Whether the API server serves Kueue's Workloads (kueue.x-k8s.io/v1beta2), so runs labelled
 * kueue.x-k8s.io/queue-name are admitted through a Workload (ADR 0088). SSL3D_KUEUE=true|false overrides the check
 * (default auto: asked once at start; installing Kueue later takes an operator restart).
 */
export async function kueueServed(client: KubeClient, log: Logger): Promise<boolean> {
  const mode = parseKueueMode(process.env.SSL3D_KUEUE);
  if (mode !== "auto") return mode === "true";
  try {
    const g = await client.request<{ resources?: { name?: string }[] }>("GET", "/apis/kueue.x-k8s.io/v1beta2");
    return (g.resources ?? []).some((r) => r.name === "workloads");
  } catch (err) {
    if (httpStatus(err) !== 404) log.warn({ err: String(err) }, "Could not ask whether Kueue is installed");
    return false;
  }
}

export async function main(): Promise<void> {
  const log = createLogger();
  const client = KubeClient.fromDefault();
  const kueue = await kueueServed(client, log);
  log.info({ kueue }, kueue ? "Kueue's Workload API is served" : "Kueue's Workload API is not served");
  const metrics = new OperatorMetrics();
  const identity = `${hostname()}_${process.pid}_${randomBytes(3).toString("hex")}`;
  const resyncMs = envNumber("SSL3D_RESYNC_SECONDS", 300) * 1000;
  const manager = new Manager({
    client,
    log,
    metrics,
    namespace: process.env.SSL3D_WATCH_NAMESPACE || undefined,
    concurrency: envNumber("SSL3D_OPERATOR_CONCURRENCY", 4),
    resyncPeriodMs: resyncMs,
    scrapeConcurrency: envNumber("SSL3D_SCRAPE_CONCURRENCY", 4) || 1,
    scrapeTimeoutMs: envNumber("SSL3D_SCRAPE_TIMEOUT_SECONDS", 2) * 1000,
    identity,
    kueue,
  });
  const parts: Parts = { log, client, metrics, manager, identity };
  const elector = leaderElector(parts);
  const server = probeServer(parts, elector, resyncMs);
  await new Promise<void>((resolve) => server.listen(envNumber("SSL3D_OPERATOR_PORT", 8080), resolve));
  const addr = server.address();
  log.info(
    { port: typeof addr === "object" && addr !== null ? addr.port : addr, identity },
    "Serving /metrics, /healthz, /readyz",
  );

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "Shutting down");
    await manager.stop();
    await elector?.stop();
    server.close();
    client.close();
    log.info("Stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  if (elector === undefined) {
    await manager.start();
    return;
  }
  metrics.leader.set({ name: "ssl3d-operator" }, 0);
  elector.start();
}

if (process.argv[2] === "render") {
  // No cluster needed: print the children the operator would create (operator/src/render.ts).
  const { renderCli } = await import("./render.js");
  process.exitCode = renderCli(
    process.argv.slice(3),
    (s) => process.stdout.write(s),
    (s) => process.stderr.write(s),
  );
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`ssl3d-operator: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
