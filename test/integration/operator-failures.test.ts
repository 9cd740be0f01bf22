/**
 * Issue 14's behaviour against a real kube-apiserver + etcd (no kubelet: the test plays the Job controller and the
 * kubelet's status writes, see docs/operator-testing.md): a deleted attempt Job resumes, exit code 3 fails the run
 * without restarts, a missing image is reported, children carry the restricted pod security and the rendezvous
 * Secret, and the API server itself refuses code-injecting environment variables and path escapes (CRD rules).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { API_VERSION } from "../../api/v1alpha1/group.js";
import { httpStatus } from "../../operator/src/kube/client.js";
import type { Manager } from "../../operator/src/kube/manager.js";
import {
  condition,
  cr,
  createNamespace,
  createPods,
  envOf,
  eventsFor,
  eventually,
  getCr,
  getJob,
  jobFinished,
  jobRunning,
  startEnv,
  startManager,
  terminatePod,
  type Env,
  type JobObj,
} from "../helpers/operator.js";

const IMAGE = "example.invalid/ssl3d-runtime:test";
let env: Env;
let manager: Manager;

before(async () => {
  env = await startEnv({ garbageCollector: true });
  ({ manager } = startManager(env, undefined));
});

after(async () => {
  await (manager as Manager | undefined)?.stop();
  (env as Env | undefined)?.client.close();
  await (env as Env | undefined)?.cluster.stop();
});

async function job(ns: string, name: string): Promise<JobObj> {
  return eventually(`Job ${ns}/${name}`, () => getJob(env.client, ns, name), 20_000);
}

async function readyPlan(ns: string): Promise<void> {
  await env.client.create(
    cr("Collection", ns, "col", { source: { pvc: { claimName: "raw" } }, dataset: "Dataset001_Demo" }),
  );
  await env.client.create(
    cr("Plan", ns, "plan", {
      collectionRef: { name: "col" },
      configurations: ["onemmiso"],
      preprocess: { image: IMAGE },
      output: { pvc: { claimName: "prep" } },
    }),
  );
  const j = await job(ns, "plan-prep");
  const pods = await createPods(env.client, j);
  await terminatePod(
    env.client,
    ns,
    pods[0]!.metadata.name,
    "preprocess",
    0,
    JSON.stringify({
      images: 4,
      valid: 4,
      failed: 0,
      configurations: ["onemmiso"],
      plansFile: "/p/plans.json",
      preprocessedDir: "/p/data",
    }),
  );
  await jobFinished(env.client, j, "Complete");
  await eventually("Plan Ready", async () => (await getCr(env.client, "Plan", ns, "plan")).status?.phase === "Ready");
}

function runSpec(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    planRef: { name: "plan" },
    image: IMAGE,
    numNodes: 2,
    storage: { checkpoints: { claimName: "ckpt" } },
    metrics: { scrapeIntervalSeconds: 0 },
    runPolicy: { maxRestarts: 3 },
    ...extra,
  };
}

describe("issue 14 against a real API server", () => {
  test("a deleted attempt Job resumes: the replacement resumes from the run's own checkpoint folder", async () => {
    const ns = await createNamespace(env.client, "deleted");
    await readyPlan(ns);
    await env.client.create(cr("PretrainRun", ns, "run", runSpec()));
    const a1 = await job(ns, "run-a1");
    const run = await getCr(env.client, "PretrainRun", ns, "run");
    const e1 = envOf(a1);
    assert.equal(e1.SSL3D_RESUME, "latest", "attempt 1 resumes too");
    assert.equal(e1.SSL3D_CHECKPOINT_DIR, `/checkpoints/run-${run.metadata.uid!}/checkpoints`);
    // restricted pods, rendezvous Secret and NetworkPolicy exist
    const pod = (
      a1.spec.template as unknown as {
        spec: { securityContext: { runAsNonRoot: boolean }; automountServiceAccountToken: boolean };
      }
    ).spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.automountServiceAccountToken, false);
    await eventually("NetworkPolicy", () => env.client.get("networking.k8s.io/v1", "NetworkPolicy", ns, "run"));
    const secret = await eventually("rendezvous Secret", () =>
      env.client.get<{ data?: Record<string, string>; metadata: { ownerReferences?: { uid: string }[] } }>(
        "v1",
        "Secret",
        ns,
        "run-rendezvous",
      ),
    );
    assert.equal(Buffer.from(secret.data?.token ?? "", "base64").toString().length, 64, "a random 32-byte token");
    assert.equal(secret.metadata.ownerReferences?.[0]?.uid, run.metadata.uid);
    // a user deletes the Job by hand (pods go with it)
    const pods = await createPods(env.client, a1);
    await jobRunning(env.client, a1);
    await env.client.delete("batch/v1", "Job", ns, "run-a1", "Background");
    for (const p of pods) await env.client.delete("v1", "Pod", ns, p.metadata.name, "Background").catch(() => false);
    const again = await eventually("a replacement Job", async () => {
      const j = await getJob(env.client, ns, "run-a1");
      return j !== undefined && j.metadata.uid !== a1.metadata.uid ? j : undefined;
    });
    assert.equal(envOf(again).SSL3D_RESUME, "latest");
    assert.equal(
      envOf(again).SSL3D_CHECKPOINT_DIR,
      e1.SSL3D_CHECKPOINT_DIR,
      "same folder: the checkpoints are continued, not overwritten",
    );
    // the token is not rotated under running ranks
    const secret2 = await env.client.get<{ data?: Record<string, string> }>("v1", "Secret", ns, "run-rendezvous");
    assert.equal(secret2?.data?.token, secret.data?.token);
  });

  test("exit code 3 on one rank fails the run at once, without restarts, with every rank's evidence", async () => {
    const ns = await createNamespace(env.client, "exit3");
    await readyPlan(ns);
    await env.client.create(cr("PretrainRun", ns, "run", runSpec()));
    const a1 = await job(ns, "run-a1");
    const pods = await createPods(env.client, a1);
    await jobRunning(env.client, a1);
    await terminatePod(
      env.client,
      ns,
      pods[1]!.metadata.name,
      "trainer",
      3,
      JSON.stringify({ exitCode: 3, reason: "DataError", message: "/data/preprocessed/x.zarr: truncated chunk" }),
    );
    await terminatePod(env.client, ns, pods[0]!.metadata.name, "trainer", 143, "stopped");
    await jobFinished(env.client, a1, "Failed");
    const r = await eventually("Failed", async () => {
      const x = await getCr(env.client, "PretrainRun", ns, "run");
      return x.status?.phase === "Failed" ? x : undefined;
    });
    assert.equal(condition(r, "Failed")?.reason, "DataError");
    assert.match(condition(r, "Failed")!.message, /truncated chunk/);
    assert.equal(r.status?.restarts, 0);
    const lf = r.status.lastFailure as { exitCode: number; ranks: { rank: number; exitCode: number }[] };
    assert.equal(lf.exitCode, 3);
    assert.deepEqual(
      lf.ranks.map((x) => [x.rank, x.exitCode]),
      [
        [0, 143],
        [1, 3],
      ],
    );
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal(await getJob(env.client, ns, "run-a2"), undefined, "no restart");
    assert.ok((await eventsFor(env.client, ns, "run")).some((e) => e.type === "Warning" && e.reason === "DataError"));
  });

  test("a missing image is reported as a condition and a Warning event", async () => {
    const ns = await createNamespace(env.client, "image");
    await readyPlan(ns);
    await env.client.create(cr("PretrainRun", ns, "run", runSpec({ image: "example.invalid/nope:1" })));
    const a1 = await job(ns, "run-a1");
    const pods = await createPods(env.client, a1);
    // the kubelet's report of a pull that fails
    await env.client.patch(
      "v1",
      "Pod",
      ns,
      pods[0]!.metadata.name,
      {
        status: {
          phase: "Pending",
          conditions: [{ type: "Ready", status: "False" }],
          containerStatuses: [
            {
              name: "trainer",
              ready: false,
              image: "example.invalid/nope:1",
              imageID: "",
              restartCount: 0,
              state: {
                waiting: { reason: "ImagePullBackOff", message: 'Back-off pulling image "example.invalid/nope:1"' },
              },
            },
          ],
        },
      },
      { subresource: "status" },
    );
    await jobRunning(env.client, a1, 1);
    const r = await eventually("Running=False/ImagePullBackOff", async () => {
      const x = await getCr(env.client, "PretrainRun", ns, "run");
      return condition(x, "Running")?.reason === "ImagePullBackOff" ? x : undefined;
    });
    assert.match(condition(r, "Running")!.message, /example.invalid\/nope:1/);
    await eventually("Warning event", async () =>
      (await eventsFor(env.client, ns, "run")).some((e) => e.type === "Warning" && e.reason === "ImagePullBackOff"),
    );
  });

  test("the API server refuses code-injecting env, reserved env, path escapes and more ranks than GPUs", async () => {
    const ns = await createNamespace(env.client, "cel");
    const refused = async (name: string, spec: Record<string, unknown>, re: RegExp): Promise<void> => {
      await assert.rejects(
        env.client.create(cr("PretrainRun", ns, name, spec)),
        (err: unknown) => httpStatus(err) === 422 && re.test(String(err)),
        name,
      );
    };
    await refused("a", runSpec({ env: [{ name: "NODE_OPTIONS", value: "--require=/tmp/x.js" }] }), /inject code/);
    await refused("b", runSpec({ env: [{ name: "LD_PRELOAD", value: "/x.so" }] }), /inject code/);
    await refused("c", runSpec({ env: [{ name: "SSL3D_RESUME", value: "none" }] }), /reserved/);
    await refused(
      "d",
      runSpec({ storage: { checkpoints: { claimName: "ckpt", subPath: "../../etc" } } }),
      /must be relative/,
    );
    await refused("e", runSpec({ storage: { checkpoints: { claimName: "../x" } } }), /claimName/);
    await refused(
      "f",
      runSpec({ nprocPerNode: 8, resourcesPerNode: { limits: { "nvidia.com/gpu": 4 } } }),
      /nprocPerNode must not exceed/,
    );
    await env.client.create(
      cr(
        "PretrainRun",
        ns,
        "ok",
        runSpec({
          nprocPerNode: 4,
          resourcesPerNode: { limits: { "nvidia.com/gpu": 4 } },
          env: [{ name: "WANDB_MODE", value: "offline" }],
        }),
      ),
    );
    assert.ok(await env.client.get(API_VERSION, "PretrainRun", ns, "ok"));
  });
});
