/**
 * Operator benchmark: 500 PretrainRuns against a real kube-apiserver + etcd (test/helpers/kube.ts).
 * Reports the time until every run has its children (headless Service + attempt Job), the reconcile latency
 * p50/p99 (from the operator's controller_runtime_reconcile_time_seconds histogram) and the operator's RSS.
 * Baseline, measured in the same run: the bench client creating the same 500 Jobs + 500 Services directly (the
 * API-server floor the operator cannot beat); the headline is the ratio operator / baseline.
 * Targets: p99 < 1 s, RSS < 200 MB. The operator runs compiled (`npm run build`, as in the image), not through tsx.
 * Usage: npm run bench:operator [-- --runs N]; writes bench/results/operator.json.
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeJsonAtomic } from "../runtime/src/io/atomic.js";
import { API_VERSION } from "../api/v1alpha1/group.js";
import { freePort } from "../test/helpers/kube.js";
import {
  cr,
  createNamespace,
  createPods,
  eventually,
  getCr,
  getJob,
  jobFinished,
  startEnv,
  terminatePod,
} from "../test/helpers/operator.js";

const { values } = parseArgs({
  options: { runs: { type: "string", default: "500" }, concurrency: { type: "string", default: "8" } },
});
const N = Number(values.runs);
const C = Number(values.concurrency);
const IMAGE = "example.invalid/ssl3d-runtime:bench";

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

function rssMb(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? 0);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

/** histogram_quantile over cumulative buckets (linear interpolation inside a bucket, as Prometheus does). */
function quantile(q: number, buckets: [number, number][]): number {
  const total = buckets.at(-1)?.[1] ?? 0;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (!Number.isFinite(le)) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

const env = await startEnv();
const { client } = env;
try {
  // Baseline: the same children created directly.
  const baseNs = await createNamespace(client, "baseline");
  const t0 = performance.now();
  await pool([...Array(N).keys()], C, async (i) => {
    const name = `run-${i}`;
    await client.create({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace: baseNs },
      spec: { clusterIP: "None", selector: { run: name }, ports: [{ port: 29500 }] },
    });
    await client.create({
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: { name: `${name}-a1`, namespace: baseNs },
      spec: {
        completionMode: "Indexed",
        completions: 2,
        parallelism: 2,
        backoffLimit: 0,
        template: {
          spec: { restartPolicy: "Never", subdomain: name, containers: [{ name: "trainer", image: IMAGE }] },
        },
      },
    });
  });
  const baselineS = (performance.now() - t0) / 1000;

  // The operator as its own process, compiled as in the image (its RSS is what a Deployment would see).
  const tsc = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    stdio: "inherit",
  });
  if (tsc.status !== 0) throw new Error("npm run build failed");
  const ns = await createNamespace(client, "bench");
  const port = await freePort();
  const op = spawn(process.execPath, ["dist/operator/src/main.js"], {
    env: {
      ...process.env,
      KUBECONFIG: env.operatorKubeconfigPath,
      SSL3D_WATCH_NAMESPACE: ns,
      SSL3D_LEADER_ELECT: "false",
      SSL3D_OPERATOR_PORT: String(port),
      SSL3D_LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  try {
    await eventually("operator ready", async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok, 60_000);
    await client.create(
      cr("Collection", ns, "col", { source: { pvc: { claimName: "raw" } }, dataset: "Dataset001_Demo" }),
    );
    await client.create(
      cr("Plan", ns, "plan", {
        collectionRef: { name: "col" },
        configurations: ["onemmiso"],
        preprocess: { image: IMAGE },
        output: { pvc: { claimName: "prep" } },
      }),
    );
    const pj = await eventually("prep Job", () => getJob(client, ns, "plan-prep"), 30_000);
    const pods = await createPods(client, pj);
    await terminatePod(
      client,
      ns,
      pods[0]!.metadata.name,
      "preprocess",
      0,
      JSON.stringify({
        images: 1,
        valid: 1,
        failed: 0,
        configurations: ["onemmiso"],
        plansFile: "p",
        preprocessedDir: "d",
      }),
    );
    await jobFinished(client, pj, "Complete");
    await eventually(
      "Plan Ready",
      async () => (await getCr(client, "Plan", ns, "plan")).status?.phase === "Ready",
      30_000,
    );
    const idle = rssMb(op.pid!);

    const t1 = performance.now();
    await pool([...Array(N).keys()], C, (i) =>
      client.create(
        cr("PretrainRun", ns, `run-${i}`, {
          planRef: { name: "plan" },
          image: IMAGE,
          numNodes: 2,
          storage: { checkpoints: { claimName: "ckpt" } },
          metrics: { scrapeIntervalSeconds: 0 },
        }),
      ),
    );
    const createdS = (performance.now() - t1) / 1000;
    await eventually(
      `children of ${N} runs`,
      async () => {
        const [jobs, svcs] = await Promise.all([
          client.list("batch/v1", "Job", ns, "ssl3d.io/role=trainer"),
          client.list("v1", "Service", ns),
        ]);
        return jobs.items.length >= N && svcs.items.length >= N;
      },
      600_000,
    );
    const childrenS = (performance.now() - t1) / 1000;
    await eventually(
      `${N} runs with status`,
      async () =>
        (await client.list<{ status?: { activeJob?: string } }>(API_VERSION, "PretrainRun", ns)).items.filter(
          (r) => r.status?.activeJob !== undefined,
        ).length >= N,
      120_000,
    );
    const mem = rssMb(op.pid!);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const buckets: [number, number][] = [];
    for (const m of text.matchAll(/^controller_runtime_reconcile_time_seconds_bucket\{([^}]*)\} (\d+)/gm)) {
      const labels = m[1]!;
      const le = /le="([^"]+)"/.exec(labels)?.[1];
      if (!labels.includes('controller="pretrainrun"') || le === undefined) continue;
      buckets.push([le === "+Inf" ? Infinity : Number(le), Number(m[2])]);
    }
    const reconciles = buckets.at(-1)?.[1] ?? 0;
    const result = {
      date: new Date().toISOString(),
      runs: N,
      clientConcurrency: C,
      baselineDirectCreateSeconds: Number(baselineS.toFixed(2)),
      createPretrainRunsSeconds: Number(createdS.toFixed(2)),
      allChildrenSeconds: Number(childrenS.toFixed(2)),
      ratioOperatorToBaseline: Number((childrenS / baselineS).toFixed(2)),
      reconciles,
      reconcileP50Seconds: Number(quantile(0.5, buckets).toFixed(4)),
      reconcileP99Seconds: Number(quantile(0.99, buckets).toFixed(4)),
      operatorRssMb: Number(mem.rss.toFixed(1)),
      operatorPeakRssMb: Number(mem.peak.toFixed(1)),
      operatorIdleRssMb: Number(idle.rss.toFixed(1)),
      targets: { p99Below1s: quantile(0.99, buckets) < 1, peakRssBelow200Mb: mem.peak < 200 },
    };
    console.log(JSON.stringify(result, null, 2));
    await writeJsonAtomic(join("bench", "results", "operator.json"), result);
  } finally {
    const exited = new Promise((r) => op.on("exit", r));
    op.kill("SIGTERM");
    await exited;
  }
} finally {
  client.close();
  await env.cluster.stop();
}
