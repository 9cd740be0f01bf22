/**
 * Dashboards and alerts are real: every PromQL expression of helm/ssl3d/dashboards/*.json and of the rendered
 * PrometheusRule is checked by Debian's promtool and evaluated by a real Prometheus, which scrapes
 *  - a short real training run (`ssl3d run -f examples/laptop.yaml --quick --metrics-port P`, whose `train` child
 *    serves the runtime's prom-client registry), with the labels the chart's PodMonitor adds, and
 *  - the operator's metrics endpoint (the operator running against the test API server of test/helpers/kube.ts).
 * Every expression must be accepted by Prometheus; each one returns data while its source is up, except the ones
 * listed in MAY_BE_EMPTY with the reason. The alerts' firing conditions are unit-tested with `promtool test rules`.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { stringify } from "yaml";
import { test, type TestContext } from "node:test";
import { commands } from "../../../runtime/src/cli/commands/index.js";
import { REPO, renderScenario } from "../../helpers/chart.js";
import {
  GRAFANA_VARS,
  PrometheusServer,
  isRunning,
  dashboardExpressions,
  freePort,
  metricNames,
  renderedRuleGroups,
  ruleExpressions,
  vectorSelectors,
  type PromExpression,
  type ScrapeTarget,
} from "../../helpers/monitoring.js";
import { run, runOk } from "../../helpers/tools.js";

/** Expressions that legitimately return nothing on a healthy CPU-only test run, with the reason. */
const MAY_BE_EMPTY: readonly { readonly origin: RegExp; readonly reason: string }[] = [
  {
    origin: /\(DCGM\)/,
    reason: "GPU panels read NVIDIA dcgm-exporter series; the test machine has no GPU and no exporter",
  },
  {
    origin: /^rules: /,
    reason:
      "an alert expression is empty while everything is healthy; promtool test rules shows each one fires (its selectors must still have data)",
  },
];

function mayBeEmpty(e: PromExpression): string | undefined {
  return MAY_BE_EMPTY.find((m) => m.origin.test(e.origin))?.reason;
}

const TRAINING_METRICS = /^pretrain_/;
const OPERATOR_METRICS =
  /^(controller_runtime_|workqueue_|ssl3d_pretrainruns_|~ssl3d_pretrainruns_|ssl3d_operator_|leader_election_|process_|nodejs_|up$)/;
/**
 * Selectors of series that exist only after a first event (a retry, a failed run, a reconcile error): empty on a
 * healthy run. The panels that read them are zero-filled, so the panels themselves must still return data.
 */
const EVENT_COUNTERS =
  /^(workqueue_retries_total|ssl3d_pretrainruns_(failed|restarted)_total|ssl3d_operator_informer_restarts_total)\b|result="error"/;

test("the rendered rules pass promtool check rules, and every alert fires in its promtool unit test", () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-rules-"));
  try {
    writeFileSync(join(dir, "rules.yaml"), JSON.stringify(renderedRuleGroups()));
    copyFileSync(
      join(REPO, "test", "fixtures", "monitoring", "alerts.promtool.yaml"),
      join(dir, "alerts.promtool.yaml"),
    );
    const check = run("/usr/bin/promtool", ["check", "rules", "rules.yaml"], { cwd: dir });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /SUCCESS: 6 rules found/);
    const unit = run("/usr/bin/promtool", ["test", "rules", "alerts.promtool.yaml"], { cwd: dir });
    assert.equal(unit.status, 0, unit.stdout + unit.stderr);
    // every alert of the chart has at least one unit test that expects it to fire
    const fixture = run("/usr/bin/grep", ["-o", "alertname: SSL3D[A-Za-z]*", "alerts.promtool.yaml"], {
      cwd: dir,
    }).stdout;
    for (const g of renderedRuleGroups().groups)
      for (const r of g.rules)
        assert.ok(fixture.includes(`alertname: ${r.alert ?? ""}`), `${r.alert ?? ""} has no promtool unit test`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("every expression reads only metric families of the training, operator and DCGM contracts", () => {
  const all = [...dashboardExpressions(), ...ruleExpressions()];
  assert.ok(all.length >= 40, `found ${all.length} expressions`);
  for (const e of all) {
    assert.ok(
      !/\$\w/.test(e.expr.replace(/\$labels|\$value/g, "")),
      `${e.origin}: unsubstituted variable in ${e.expr}`,
    );
    const names = metricNames(e.expr);
    assert.ok(names.length > 0, `${e.origin}: no selector found in ${e.expr}`);
    for (const n of names) {
      assert.ok(
        TRAINING_METRICS.test(n) || OPERATOR_METRICS.test(n) || /^DCGM_FI_DEV_/.test(n),
        `${e.origin}: unknown metric ${n}`,
      );
    }
  }
});

interface Source {
  readonly target: ScrapeTarget;
  readonly done: () => boolean;
  readonly stop: () => Promise<void>;
  readonly output: () => string;
  /** Sources that produce data only once (the training run) start after Prometheus scrapes their target. */
  readonly start?: () => void;
}

/** A short real training run through the local runner, serving the trainer's metrics on a loopback port. */
async function startTraining(t: TestContext): Promise<Source | undefined> {
  const names = new Set(commands.map((c) => c.name));
  for (const needed of ["run", "train", "plan-and-preprocess"]) {
    if (!names.has(needed)) {
      t.diagnostic(`training source unavailable: the CLI has no '${needed}' command yet`);
      return undefined;
    }
  }
  const port = await freePort();
  const state = mkdtempSync(join(tmpdir(), "ssl3d-mon-run-"));
  let child: ChildProcess | undefined;
  let out = "";
  // The laptop example without --quick (75 steps): long enough for several scrapes even on the fast native path.
  const start = (): void => {
    child = spawn(
      process.execPath,
      [
        join(REPO, "bin", "ssl3d.mjs"),
        "run",
        "-f",
        join(REPO, "examples", "laptop.yaml"),
        "--state-dir",
        state,
        "--metrics-port",
        String(port),
        "--log-format",
        "json",
      ],
      {
        cwd: REPO,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, CI: "true" },
      },
    );
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString();
    });
    child.stderr?.on("data", (b: Buffer) => {
      out += b.toString();
    });
  };
  return {
    target: {
      job: "ssl3d-training",
      address: `127.0.0.1:${port}`,
      labels: {
        namespace: GRAFANA_VARS.namespace!,
        pretrainrun: GRAFANA_VARS.run!,
        attempt: "0",
        pod: `${GRAFANA_VARS.run!}-a0-0`,
      },
    },
    start,
    done: () => child !== undefined && (child.exitCode !== null || child.signalCode !== null),
    output: () => out.slice(-4000),
    stop: async () => {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) {
        const c = child;
        const exited = new Promise((r) => c.once("exit", r));
        c.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
        if (isRunning(c)) c.kill("SIGKILL");
      }
      rmSync(state, { recursive: true, force: true });
    },
  };
}

interface TestClusterLike {
  readonly kubeconfigPath: string;
  stop(): Promise<void>;
}
interface KubeHelper {
  startTestCluster(opts?: { garbageCollector?: boolean }): Promise<TestClusterLike>;
}

/**
 * The operator's metrics endpoint: the operator (operator/src/main.ts) reconciling the laptop example on the real
 * test API server of test/helpers/kube.ts, with the chart's CRDs installed. Until those pieces exist the operator
 * expressions are only checked for validity.
 */
async function startOperator(t: TestContext): Promise<Source | undefined> {
  const helperFile = join(REPO, "test", "helpers", "kube.ts");
  const main = join(REPO, "operator", "src", "main.ts");
  const crds = renderScenario("default").filter((o) => o.kind === "CustomResourceDefinition");
  const missing = [
    [helperFile, existsSync(helperFile)],
    [main, existsSync(main)],
    ["helm/ssl3d/templates/crds", crds.length > 0],
  ] as const;
  const absent = missing.filter(([, ok]) => !ok).map(([f]) => relative(REPO, f));
  if (absent.length > 0) {
    t.diagnostic(`operator source unavailable: ${absent.join(", ")} not on this branch yet`);
    return undefined;
  }
  const helper = (await import(pathToFileURL(helperFile).href)) as KubeHelper;
  const cluster = await helper.startTestCluster();
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-mon-op-"));
  const kubectl = (args: readonly string[]): void => {
    runOk("/usr/bin/kubectl", ["--kubeconfig", cluster.kubeconfigPath, ...args], { timeoutMs: 120_000 });
  };
  writeFileSync(join(dir, "crds.yaml"), crds.map((o) => stringify(o)).join("---\n"));
  kubectl(["apply", "--server-side", "-f", join(dir, "crds.yaml")]);
  kubectl(["wait", "--for=condition=Established", "--timeout=60s", ...crds.map((o) => `crd/${o.metadata.name}`)]);
  kubectl(["create", "namespace", "laptop"]);
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", main], {
    cwd: REPO,
    stdio: ["ignore", "ignore", "pipe"],
    env: {
      ...process.env,
      KUBECONFIG: cluster.kubeconfigPath,
      SSL3D_OPERATOR_PORT: String(port),
      SSL3D_LEADER_ELECT: "true",
      SSL3D_OPERATOR_NAMESPACE: "default",
    },
  });
  let out = "";
  child.stderr.on("data", (b: Buffer) => {
    out += b.toString();
  });
  // something to reconcile: the laptop example's Collection, Plan and PretrainRun
  kubectl(["apply", "--server-side", "-n", "laptop", "-f", join(REPO, "examples", "laptop.yaml")]);
  return {
    target: { job: GRAFANA_VARS.job!, address: `127.0.0.1:${port}` },
    done: () => !isRunning(child),
    output: () => out.slice(-4000),
    stop: async () => {
      if (isRunning(child)) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (isRunning(child)) child.kill("SIGKILL");
      }
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test(
  "every dashboard and alert expression is valid in a real Prometheus and returns data from a real run",
  { timeout: 900_000 },
  async (t) => {
    const exprs = [...dashboardExpressions(), ...ruleExpressions()];
    const sources: Source[] = [];
    let prom: PrometheusServer | undefined;
    try {
      const training = await startTraining(t);
      if (training !== undefined) sources.push(training);
      const operator = await startOperator(t);
      if (operator !== undefined) sources.push(operator);
      // every piece has landed: both real sources must run (their absence is a failure, not a reason to skip)
      assert.ok(training !== undefined && operator !== undefined, "the training run and the operator must both start");
      prom = await PrometheusServer.start(sources.map((s) => s.target));
      // Start late sources only once Prometheus's scrape loop has sampled their target (as `up`, 0 while absent).
      for (const s of sources) {
        if (s.start === undefined) continue;
        for (let i = 0; (await prom.count(`up{job="${s.target.job}"}`)) === 0; i++) {
          assert.ok(i < 300, `Prometheus never scraped ${s.target.job}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        s.start();
      }

      // 1. Prometheus accepts every expression (parse and type check), with or without data.
      for (const e of exprs) {
        await assert.doesNotReject(prom.query(e.expr), `${e.origin}: ${e.expr}`);
      }

      const covered = (e: PromExpression): boolean =>
        // `up` is read for the operator's job only
        metricNames(e.expr).every((n) => TRAINING_METRICS.test(n) || OPERATOR_METRICS.test(n) || /^DCGM/.test(n));
      const expectData = exprs.filter((e) => covered(e) && mayBeEmpty(e) === undefined);
      const selectors = [
        ...new Set(
          exprs
            .filter(covered)
            .flatMap((e) => vectorSelectors(e.expr))
            .filter((s) => !s.startsWith("DCGM") && !EVENT_COUNTERS.test(s)),
        ),
      ];

      // 2. While the sources run, poll: every expected expression and every selector must return data at some point.
      const seen = new Set<string>();
      const startedAt = Date.now();
      const deadline = Date.now() + 420_000;
      let polls = 0;
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2000));
        polls++;
        for (const q of [...expectData.map((e) => e.expr), ...selectors]) {
          if (!seen.has(q) && (await prom.count(q)) > 0) seen.add(q);
        }
        const missing = [...expectData.map((e) => e.expr), ...selectors].filter((q) => !seen.has(q));
        if (missing.length === 0 || sources.some((s) => s.done())) break;
      }
      // What a poll missed (e.g. a gauge set seconds before the trainer exits) is looked up over the whole window.
      const windowStart = startedAt / 1000 - 5;
      const windowEnd = Date.now() / 1000;
      for (const q of [...expectData.map((e) => e.expr), ...selectors]) {
        if (!seen.has(q) && (await prom.countRange(q, windowStart, windowEnd)) > 0) seen.add(q);
      }
      const ups = await prom.targetsUp();
      const missingExprs = expectData.filter((e) => !seen.has(e.expr)).map((e) => `${e.origin}: ${e.expr}`);
      const missingSelectors = selectors.filter((s) => !seen.has(s));
      assert.deepEqual(
        missingSelectors,
        [],
        `selectors without data after ${polls} polls (targets ${JSON.stringify(ups)}):\n${sources.map((s) => s.output()).join("\n")}`,
      );
      assert.deepEqual(missingExprs, [], "expressions without data");
      for (const e of exprs) {
        const why = mayBeEmpty(e);
        if (why !== undefined) t.diagnostic(`${e.origin}: may be empty (${why})`);
      }
    } finally {
      await prom?.stop();
      for (const s of sources) await s.stop();
    }
  },
);
