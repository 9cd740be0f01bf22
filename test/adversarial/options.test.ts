/**
 * Adversarial tier, "manifests and options" (docs/limits-and-safety.md, "Manifests and options"): global options
 * before the command keep nnssl-style flags working; absurd batch and patch sizes fail up front, quickly and small,
 * with the memory they would need; `ssl3d run` honours `spec.plansName` (the Plan stage writes and trains with it);
 * killing `ssl3d run` stops its trainer (no orphan, so a re-run does not start a second one).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { LOCK_FILE } from "../../runtime/src/io/folder-lock.js";
import { freePort } from "../helpers/net.js";
import { makeTestDataset, type TestDataset } from "../helpers/preprocess-dataset.js";
import { assertFails, BIN, NODE, ssl3d } from "./helpers/cli.js";

const work = mkdtempSync(join(tmpdir(), "ssl3d-adv-options-"));
let ds: TestDataset;

before(async () => {
  ds = await makeTestDataset(join(work, "root"), { id: 990, name: "Demo", images: 2, shape: [32, 32, 32] });
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

test("global options before the command: nnssl-style flags still translate", async () => {
  for (const globals of [["--verbose"], ["--log-format", "json"], ["--verbose", "--log-format", "json"]]) {
    const r = await ssl3d([...globals, "plan-and-preprocess", "-d", "990", "-np", "1", "-npfp", "1"], ds.env);
    assert.equal(r.status, 0, `${globals.join(" ")}: ${r.stderr}`);
    assert.equal((JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { valid: number }).valid, 2);
  }
  const bad = await ssl3d(["--verbose", "plan-and-preprocess", "-d", "990", "-np", "x"], ds.env);
  assertFails(bad, 2, [/--num-processes: expects a non-negative integer/]);
});

test("absurd batch and patch sizes fail up front with the memory they would need (fast, small)", async () => {
  const base = ["train", "990", "onemmiso", "-tr", "BaseMAETrainer", "--arch-preset", "resenc-xs", "--epochs", "1"];
  const cases: [string[], RegExp][] = [
    [["--batch-size", "1000000"], /batch size 1000000 .* needs at least [\d.]+ TiB .*SSL3D_MEMORY_LIMIT_BYTES/],
    [["--patch-size", "100000"], /needs at least [\d.]+ TiB/],
    [["--batch-size", "4096", "--patch-size", "256"], /needs at least [\d.]+ (GiB|TiB)/],
  ];
  for (const [extra, pattern] of cases) {
    const r = await ssl3d([...base, ...extra], ds.env);
    assertFails(r, 2, [pattern, /--batch-size|--patch-size/], { maxMs: 60_000, maxMiB: 1024 });
  }
  // the limit is an override, not a guess: a tiny limit refuses even a small batch
  const r = await ssl3d([...base, "--batch-size", "2", "--patch-size", "32"], {
    ...ds.env,
    SSL3D_MEMORY_LIMIT_BYTES: "1000",
  });
  assertFails(r, 2, [/SSL3D_MEMORY_LIMIT_BYTES is 0\.0 GiB/]);
});

// metricsPort: a free port (the CRD schema, which `ssl3d run` shares, requires 1-65535)
function manifests(plansName: string, epochs: number, metricsPort: number): string {
  return `apiVersion: ssl3d.io/v1alpha1
kind: Collection
metadata: {name: c}
spec:
  source: {pvc: {claimName: raw}}
  dataset: "990"
---
apiVersion: ssl3d.io/v1alpha1
kind: Plan
metadata: {name: p}
spec:
  collectionRef: {name: c}
  configurations: [onemmiso]
  plansName: ${plansName}
  numProcesses: 1
  preprocess: {image: x}
  output: {pvc: {claimName: pre}}
---
apiVersion: ssl3d.io/v1alpha1
kind: PretrainRun
metadata: {name: r}
spec:
  planRef: {name: p}
  image: x
  training:
    trainer: BaseMAETrainer
    configuration: onemmiso
    epochs: ${epochs}
    args: [--arch-preset, resenc-xs, --patch-size, "32", --batch-size, "1", --iters-per-epoch, "2", --val-iters, "1", --workers, "0"]
  numNodes: 1
  nprocPerNode: 1
  storage: {checkpoints: {claimName: results}}
  runPolicy: {maxRestarts: 0, resume: Latest}
  metrics: {port: ${metricsPort}}
`;
}

test("ssl3d run: spec.plansName is used by the Plan stage and the trainer; kill -9 of the runner stops the trainer", async () => {
  const state = join(work, "state");
  const file = join(work, "m.yaml");
  writeFileSync(file, manifests("myPlans", 1000, await freePort()));
  const results = join(work, "results");
  const args = [
    BIN,
    "run",
    "-f",
    file,
    "--state-dir",
    state,
    "--volume",
    `raw=${ds.env.nnssl_raw!}`,
    "--volume",
    `pre=${join(work, "pre")}`,
    "--volume",
    `results=${results}`,
  ];
  const runner = spawn(NODE, args, { env: { ...ds.env, SSL3D_LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  runner.stdout.on("data", (b: Buffer) => (out += b.toString()));
  runner.stderr.on("data", (b: Buffer) => (out += b.toString()));
  const closed = new Promise<void>((res) =>
    runner.on("close", () => {
      res();
    }),
  );
  // the trainer holds its results folder's lock: its pid is in the lock file; the run's results live in its own
  // folder on the volume, <name>-<uid>/results (the per-run folder of the api/ contract)
  const trainerDir = join("results", ds.datasetName, "BaseMAETrainer__myPlans__onemmiso");
  const findLock = (): string | undefined =>
    (existsSync(results) ? readdirSync(results) : [])
      .filter((d) => d.startsWith("r-"))
      .map((d) => join(results, d, trainerDir, LOCK_FILE))
      .find((f) => existsSync(f));
  const deadline = Date.now() + 600_000;
  let lockFile: string | undefined;
  while ((lockFile = findLock()) === undefined) {
    assert.ok(Date.now() < deadline, `the trainer never started:\n${out}`);
    assert.equal(runner.exitCode, null, `the runner exited early:\n${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(existsSync(join(work, "pre", ds.datasetName, "myPlans.json")), "the Plan stage wrote myPlans.json");
  const trainerPid = (JSON.parse(readFileSync(lockFile, "utf8")) as { pid: number }).pid;
  runner.kill("SIGKILL");
  await closed;
  const stopBy = Date.now() + 120_000;
  const alive = (): boolean => {
    try {
      process.kill(trainerPid, 0);
      return true;
    } catch {
      return false;
    }
  };
  while (alive() && Date.now() < stopBy) await new Promise((r) => setTimeout(r, 200));
  assert.ok(!alive(), `the trainer (pid ${trainerPid}) is still running 120 s after its runner was killed`);
});
