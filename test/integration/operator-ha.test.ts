/**
 * High availability against a real API server: Lease leader election between two operator processes (only the
 * leader reconciles; after the leader is killed the standby takes over within the lease duration), and recovery
 * from an API server restart in the middle of a run.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { API_VERSION } from "../../api/v1alpha1/group.js";
import { freePort } from "../helpers/kube.js";
import {
  cr,
  createNamespace,
  createPods,
  eventually,
  getCr,
  getJob,
  jobFinished,
  jobRunning,
  readyPlan,
  startEnv,
  startManager,
  type Env,
} from "../helpers/operator.js";

const IMAGE = "example.invalid/ssl3d-runtime:test";
let env: Env;

before(async () => {
  env = await startEnv();
});
after(async () => {
  (env as Env | undefined)?.client.close();
  await (env as Env | undefined)?.cluster.stop();
});

function run(ns: string, name: string): ReturnType<typeof cr> {
  return cr("PretrainRun", ns, name, {
    planRef: { name: "plan" },
    image: IMAGE,
    numNodes: 1,
    storage: { checkpoints: { claimName: "ckpt" } },
  });
}

interface OperatorProc {
  child: ChildProcess;
  port: number;
  exited: Promise<void>;
}

const LEASE_S = 4;
const RETRY_S = 0.5;

async function startOperatorProcess(ns: string): Promise<OperatorProc> {
  const port = await freePort();
  const child = spawn(process.execPath, ["bin/ssl3d-operator.mjs"], {
    env: {
      ...process.env,
      // The chart's ServiceAccount with the chart's RBAC (the Lease Role is in the release namespace).
      KUBECONFIG: env.operatorKubeconfigPath,
      SSL3D_WATCH_NAMESPACE: ns,
      SSL3D_OPERATOR_NAMESPACE: env.operatorNamespace,
      SSL3D_OPERATOR_PORT: String(port),
      SSL3D_LEASE_DURATION_SECONDS: String(LEASE_S),
      SSL3D_RENEW_DEADLINE_SECONDS: "3",
      SSL3D_RETRY_PERIOD_SECONDS: String(RETRY_S),
      SSL3D_LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise<void>((r) =>
    child.on("exit", () => {
      r();
    }),
  );
  await eventually("operator /healthz", async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 60_000);
  return { child, port, exited };
}

async function reconcileCount(p: OperatorProc): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.port}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^controller_runtime_reconcile_total\{[^}]*\} (\d+)/gm)) n += Number(m[1]);
  return n;
}

async function leaseHolder(): Promise<string> {
  const l = await env.client.get<{ spec: { holderIdentity?: string } }>(
    "coordination.k8s.io/v1",
    "Lease",
    env.operatorNamespace,
    "ssl3d-operator",
  );
  return l?.spec.holderIdentity ?? "";
}

describe("high availability", () => {
  test("two operator processes: only the leader reconciles; the standby takes over within the lease duration", async () => {
    const ns = await createNamespace(env.client, "ha");
    const a = await startOperatorProcess(ns);
    const b = await startOperatorProcess(ns);
    try {
      const holder = await eventually("a leader", async () => (await leaseHolder()) || undefined, 20_000);
      const [leader, standby] = holder.includes(`_${a.child.pid}_`) ? [a, b] : [b, a];
      assert.ok(holder.includes(`_${leader.child.pid}_`), `holder ${holder}`);
      await readyPlan(env.client, ns, IMAGE);
      await env.client.create(run(ns, "first"));
      await eventually("first-a1 Job", () => getJob(env.client, ns, "first-a1"), 20_000);
      assert.ok((await reconcileCount(leader)) > 0);
      assert.equal(await reconcileCount(standby), 0, "the standby does not reconcile");
      const ready = await fetch(`http://127.0.0.1:${standby.port}/readyz`);
      assert.equal(ready.status, 200);

      const killedAt = Date.now();
      leader.child.kill("SIGKILL");
      await leader.exited;
      const newHolder = await eventually(
        "takeover",
        async () => {
          const h = await leaseHolder();
          return h.includes(`_${standby.child.pid}_`) ? h : undefined;
        },
        30_000,
      );
      const takeoverS = (Date.now() - killedAt) / 1000;
      assert.ok(newHolder);
      assert.ok(takeoverS <= LEASE_S + 2 * RETRY_S + 1.5, `takeover after ${takeoverS} s (lease ${LEASE_S} s)`);
      await env.client.create(run(ns, "second"));
      await eventually("second-a1 Job created by the new leader", () => getJob(env.client, ns, "second-a1"), 20_000);
      assert.ok((await reconcileCount(standby)) > 0);

      // Graceful SIGTERM exits 0 and releases the Lease.
      standby.child.kill("SIGTERM");
      await standby.exited;
      assert.equal(standby.child.exitCode, 0);
      assert.equal(await leaseHolder(), "");
    } finally {
      a.child.kill("SIGKILL");
      b.child.kill("SIGKILL");
    }
  });

  test("the operator recovers from an API server restart and converges", async (t) => {
    if (!env.cluster.canRestart) {
      t.skip(`the ${env.cluster.mode} cluster cannot be restarted by the tests`);
      return;
    }
    const ns = await createNamespace(env.client, "restart");
    const { manager } = startManager(env, ns);
    try {
      await readyPlan(env.client, ns, IMAGE);
      await env.client.create(run(ns, "before"));
      const j = await eventually("before-a1", () => getJob(env.client, ns, "before-a1"), 20_000);
      await createPods(env.client, j);
      await jobRunning(env.client, j);
      await eventually(
        "Running",
        async () => (await getCr(env.client, "PretrainRun", ns, "before")).status?.phase === "Running",
      );

      await env.cluster.restartApiServer();
      // Changes made after the restart must reach the operator through its re-established watches.
      await jobFinished(env.client, j, "Complete");
      await env.client.create(run(ns, "after"));
      await eventually(
        "before Succeeded",
        async () => (await getCr(env.client, "PretrainRun", ns, "before")).status?.phase === "Succeeded",
        60_000,
      );
      await eventually("after-a1 Job", () => getJob(env.client, ns, "after-a1"), 60_000);
      await sleep(200);
      assert.ok(manager.synced, "informers are synced again");
      const runs = await env.client.list(API_VERSION, "PretrainRun", ns);
      assert.equal(runs.items.length, 2);
    } finally {
      await manager.stop();
    }
  });
});
