/**
 * Everything the monitoring test needs to evaluate the chart's PromQL: the expressions of the Grafana dashboards
 * (helm/ssl3d/dashboards/*.json, Grafana variables substituted) and of the rendered PrometheusRule, the metric
 * selectors inside an expression, and a real Prometheus (Debian's /usr/bin/prometheus) on loopback.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHART, renderScenario } from "./chart.js";
import { launchPrometheus, type PrometheusProcess } from "./prometheus.js";
export { freePort } from "./net.js";

export interface PromExpression {
  /** Where it comes from, e.g. `dashboards/run.json: Step time [B]` or `rules: SSL3DOperatorDown`. */
  readonly origin: string;
  readonly expr: string;
}

/** Values the dashboards' Grafana variables take in the test (the labels the test's scrape config attaches). */
export const GRAFANA_VARS: Readonly<Record<string, string>> = {
  __rate_interval: "30s",
  __interval: "5s",
  __range: "5m",
  namespace: "ssl3d-test",
  run: "demo",
  job: "ssl3d-metrics",
};

export function substituteGrafanaVars(expr: string, vars: Readonly<Record<string, string>> = GRAFANA_VARS): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (m, name: string) => vars[name] ?? m);
}

interface DashboardJson {
  panels: { title: string; targets?: { refId: string; expr: string }[] }[];
  templating: { list: { name: string; type: string; definition?: string }[] };
}

/** Every PromQL expression of every dashboard: panel targets, and the metric of each `label_values()` variable. */
export function dashboardExpressions(): PromExpression[] {
  const dir = join(CHART, "dashboards");
  const out: PromExpression[] = [];
  for (const f of readdirSync(dir)
    .filter((n) => n.endsWith(".json"))
    .sort()) {
    const d = JSON.parse(readFileSync(join(dir, f), "utf8")) as DashboardJson;
    for (const p of d.panels) {
      for (const t of p.targets ?? [])
        out.push({ origin: `dashboards/${f}: ${p.title} [${t.refId}]`, expr: substituteGrafanaVars(t.expr) });
    }
    for (const v of d.templating.list) {
      if (v.type !== "query" || v.definition === undefined) continue;
      // label_values(selector, label) is Grafana's; the PromQL behind it is `group by (label) (selector)`.
      const m = /^label_values\((.*),\s*(\w+)\)$/.exec(v.definition);
      if (m === null) throw new Error(`dashboards/${f}: variable ${v.name}: unsupported query ${v.definition}`);
      out.push({
        origin: `dashboards/${f}: variable $${v.name}`,
        expr: substituteGrafanaVars(`group by (${m[2]!}) (${m[1]!})`),
      });
    }
  }
  return out;
}

export interface RuleGroups {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string; for?: string }[] }[];
}

/** The rule groups of the chart's PrometheusRule as rendered with alerts enabled (placeholders substituted). */
export function renderedRuleGroups(): RuleGroups {
  const pr = renderScenario("full").find((o) => o.kind === "PrometheusRule");
  if (pr === undefined) throw new Error("the full scenario renders no PrometheusRule");
  return (pr as unknown as { spec: RuleGroups }).spec;
}

export function ruleExpressions(groups: RuleGroups = renderedRuleGroups()): PromExpression[] {
  return groups.groups.flatMap((g) =>
    g.rules.map((r) => ({ origin: `rules: ${r.alert ?? r.record ?? "?"}`, expr: r.expr.trim() })),
  );
}

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan",
]);

/**
 * The vector selectors of an expression (`metric{matchers}` or `{__name__=~"..."}`), found lexically: strings,
 * grouping clauses, durations and function calls are skipped. Good enough for the chart's own expressions, which
 * the test also sends to Prometheus whole.
 */
export function vectorSelectors(expr: string): string[] {
  const out: string[] = [];
  // drop string literals outside label matchers (label_replace arguments, ...)
  let unquoted = "";
  let depth = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (c === "{") depth++;
    if (c === "}") depth--;
    if (depth === 0 && c === '"') {
      const end = expr.indexOf('"', i + 1);
      i = end === -1 ? expr.length : end;
      unquoted += '""';
      continue;
    }
    unquoted += c;
  }
  const s = unquoted.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const re = /([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(\{[^}]*\})|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    if (m[2] !== undefined) {
      out.push(`${m[1] ?? ""}${m[2]}`);
    } else if (m[3] !== undefined && m[4] === undefined && !KEYWORDS.has(m[3].toLowerCase()) && !/^\d/.test(m[3])) {
      // a bare identifier right after a number is a duration unit or exponent ([10m], 1e3): skip
      const before = s.slice(0, m.index);
      if (/[\d.]$/.test(before)) continue;
      out.push(m[3]);
    }
  }
  return [...new Set(out)];
}

/** The metric names an expression reads (for `{__name__=~"re"}` the regex itself, prefixed with `~`). */
export function metricNames(expr: string): string[] {
  return vectorSelectors(expr).map((sel) => {
    const name = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(sel)?.[1];
    if (name !== undefined) return name;
    const re = /__name__\s*=~\s*"([^"]*)"/.exec(sel)?.[1];
    return re === undefined ? sel : `~${re}`;
  });
}

/** Whether a child process has neither exited nor been killed (a function, so TypeScript does not narrow it). */
export function isRunning(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null;
}

export interface ScrapeTarget {
  readonly job: string;
  readonly address: string;
  /** Labels attached to every series of the target (what the chart's PodMonitor relabelling produces). */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface PromSample {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}
export interface PromQueryResult {
  resultType: string;
  result: PromSample[] | [number, string];
}

/** A real Prometheus server on loopback, scraping the given targets every second. Call stop() in a finally. */
export class PrometheusServer {
  private constructor(private readonly server: PrometheusProcess) {}

  get url(): string {
    return this.server.url;
  }

  static async start(targets: readonly ScrapeTarget[], ruleFiles: readonly string[] = []): Promise<PrometheusServer> {
    const config = {
      global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
      rule_files: ruleFiles,
      scrape_configs: targets.map((t) => ({
        job_name: t.job,
        static_configs: [{ targets: [t.address], labels: t.labels ?? {} }],
      })),
    };
    return new PrometheusServer(await launchPrometheus(mkdtempSync(join(tmpdir(), "ssl3d-prom-")), config));
  }

  /** Instant query; throws when Prometheus rejects the expression (parse or type error). */
  async query(expr: string, time?: number): Promise<PromQueryResult> {
    const params = new URLSearchParams({ query: expr });
    if (time !== undefined) params.set("time", String(time));
    const r = await fetch(`${this.url}/api/v1/query?${params.toString()}`);
    const body = (await r.json()) as { status: string; data?: PromQueryResult; error?: string; errorType?: string };
    if (body.status !== "success" || body.data === undefined)
      throw new Error(`${body.errorType ?? "error"}: ${body.error ?? r.statusText}`);
    return body.data;
  }

  /** Number of series with at least one sample in a range query over [start, end] (Unix seconds). */
  async countRange(expr: string, start: number, end: number, stepSeconds = 1): Promise<number> {
    const params = new URLSearchParams({
      query: expr,
      start: String(start),
      end: String(end),
      step: String(stepSeconds),
    });
    const r = await fetch(`${this.url}/api/v1/query_range?${params.toString()}`);
    const body = (await r.json()) as { status: string; data?: { result: PromSample[] }; error?: string };
    if (body.status !== "success" || body.data === undefined) throw new Error(body.error ?? r.statusText);
    return body.data.result.filter((x) => (x.values ?? []).length > 0).length;
  }

  /** Number of result elements of a query (scalars and strings count as 1). */
  async count(expr: string, time?: number): Promise<number> {
    const d = await this.query(expr, time);
    return d.resultType === "vector" || d.resultType === "matrix" ? (d.result as PromSample[]).length : 1;
  }

  async targetsUp(): Promise<Record<string, string>> {
    const r = await fetch(`${this.url}/api/v1/targets`);
    const body = (await r.json()) as {
      data: { activeTargets: { labels: { job: string }; health: string; lastError: string }[] };
    };
    return Object.fromEntries(
      body.data.activeTargets.map((t) => [t.labels.job, t.health === "up" ? "up" : `${t.health}: ${t.lastError}`]),
    );
  }

  stop(): Promise<void> {
    return this.server.stop();
  }
}
