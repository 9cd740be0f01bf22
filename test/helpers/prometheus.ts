/**
 * A real Prometheus (Debian's /usr/bin/prometheus, installed by scripts/setup.d/10-debian.sh) on loopback for tests:
 * temp config + data dir, a free port, a 1 s (configurable) scrape interval, HTTP API queries, stop. Reusable by any test that needs
 * to check what a scraper sees.
 *
 *   const prom = await startPrometheus([{ job: "trainer", target: `127.0.0.1:${port}` }]);
 *   try { const r = await prom.queryRange("pretrain_train_loss", start, end, 1); } finally { await prom.stop(); }
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
export { freePort } from "./net.js";
import { freePort } from "./net.js";

export const PROMETHEUS_BIN = process.env.SSL3D_PROMETHEUS ?? "/usr/bin/prometheus";

export function prometheusAvailable(): boolean {
  return existsSync(PROMETHEUS_BIN);
}

export interface ScrapeTarget {
  readonly job: string;
  /** host:port */
  readonly target: string;
  readonly metricsPath?: string;
}

export interface PromSample {
  readonly metric: Record<string, string>;
  readonly values: [number, string][];
}

export interface Prometheus {
  readonly url: string;
  /** Instant query: the `data.result` array. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  /** Range query (`start`, `end` in Unix seconds, `step` seconds): the `data.result` array. */
  queryRange(expr: string, start: number, end: number, step: number): Promise<PromSample[]>;
  /** Wait until `expr` returns at least one series (polling every 250 ms). */
  waitFor(expr: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

async function api<T>(url: string): Promise<T> {
  const res = await fetch(url);
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== "success") throw new Error(`prometheus API error: ${body.error ?? res.status}`);
  return body.data;
}

/** A running Prometheus process: its URL and how to stop it (which also removes its folder). */
export interface PrometheusProcess {
  readonly url: string;
  readonly proc: ChildProcess;
  readonly stop: () => Promise<void>;
}

/**
 * Start Prometheus with `config` (written into `dir`, which holds the TSDB too) on a free loopback port and wait
 * until it is ready. The one place that spawns Prometheus for tests (startPrometheus, monitoring's PrometheusServer).
 */
export async function launchPrometheus(dir: string, config: object): Promise<PrometheusProcess> {
  writeFileSync(join(dir, "prometheus.yml"), JSON.stringify(config)); // JSON is YAML
  const port = await freePort();
  const proc: ChildProcess = spawn(
    PROMETHEUS_BIN,
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((r) =>
        proc.once("exit", () => {
          r();
        }),
      );
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited with ${proc.exitCode}: ${stderr}`);
    }
    try {
      const r = await fetch(`${url}/-/ready`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus did not become ready in 30 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, proc, stop };
}

/** `scrapeIntervalMs` (default 1000): short intervals (e.g. 250) let a few-second run yield several samples. */
export async function startPrometheus(
  targets: readonly ScrapeTarget[],
  opts: { scrapeIntervalMs?: number } = {},
): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-prom-"));
  const interval = `${Math.max(1, Math.round(opts.scrapeIntervalMs ?? 1000))}ms`;
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval },
    scrape_configs: targets.map((t) => ({
      job_name: t.job,
      metrics_path: t.metricsPath ?? "/metrics",
      static_configs: [{ targets: [t.target] }],
    })),
  };
  const { url, stop } = await launchPrometheus(dir, config);
  const p: Prometheus = {
    url,
    query: (expr) =>
      api(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`).then(
        (d) => (d as { result: { metric: Record<string, string>; value: [number, string] }[] }).result,
      ),
    queryRange: (expr, start, end, step) =>
      api(`${url}/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${start}&end=${end}&step=${step}`).then(
        (d) => (d as { result: PromSample[] }).result,
      ),
    async waitFor(expr, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        if ((await p.query(expr)).length > 0) return;
        if (Date.now() > until) throw new Error(`timed out waiting for ${expr}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    stop,
  };
  return p;
}
