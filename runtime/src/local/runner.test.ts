/**
 * The local runner's orchestration: order, environment contract, status files, restarts, resume on re-run,
 * error propagation. The stage commands are played by a stand-in script that records its arguments and
 * environment (the real commands run in test/integration/delivery/local-run.test.ts).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { LAPTOP_MANIFESTS } from "./laptop-manifests.js";
import { parseManifests } from "./manifests.js";
import {
  LocalRunner,
  QUICK_TRAIN_ARGS,
  StepFailedError,
  isSummaryLine,
  prettyLogLine,
  trainArgs,
  type RunStatus,
} from "./runner.js";

const STANDIN = String.raw`
import { appendFileSync, mkdirSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
const [cmd, ...args] = process.argv.slice(2);
const env = process.env;
appendFileSync(env.CALLS, JSON.stringify({ cmd, args, env: Object.fromEntries(Object.entries(env).filter(([k]) => /^(PET_|SSL3D_|nnssl_|USER_)/.test(k))) }) + "\n");
const term = (s) => { if (env.SSL3D_TERMINATION_LOG) writeFileSync(env.SSL3D_TERMINATION_LOG, s); };
if (cmd === "demo") {
  mkdirSync(join(env.nnssl_raw, "Dataset990_Demo"), { recursive: true });
  writeFileSync(join(env.nnssl_raw, "Dataset990_Demo", "pretrain_data.json"), "{}");
} else if (cmd === "collection-summary") {
  const line = JSON.stringify({ datasets: 1, subjects: 2, sessions: 2, images: 4, modalities: { T1w: 2, T2w: 2 }, bytes: 10, contentHash: "sha256:" + "a".repeat(64) });
  process.stdout.write(line + "\n"); term(line);
} else if (cmd === "plan-and-preprocess") {
  term(JSON.stringify({ images: 4, valid: 4, failed: 0, configurations: ["onemmiso"], plansFile: "p.json", preprocessedDir: "d" }));
} else if (cmd === "train") {
  const fail = (env.FAIL_ATTEMPTS ?? "").split(",");
  if ((env.HANG_ATTEMPTS ?? "").split(",").includes(env.SSL3D_ATTEMPT)) {
    // a trainer that runs until SIGTERM, then writes its latest checkpoint and exits (as ssl3d train does)
    process.on("SIGTERM", () => { mkdirSync(env.SSL3D_CHECKPOINT_DIR, { recursive: true }); writeFileSync(join(env.SSL3D_CHECKPOINT_DIR, "checkpoint_latest.json"), "{}"); process.exit(143); });
    appendFileSync(env.CALLS + ".hang", "x");
    setInterval(() => {}, 1000);
  } else if (fail.includes(env.SSL3D_ATTEMPT)) { term("rank 0 lost its GPU"); process.stderr.write("boom\n"); process.exit(Number(env.FAIL_CODE ?? 1)); }
  mkdirSync(env.SSL3D_CHECKPOINT_DIR, { recursive: true });
  writeFileSync(join(env.SSL3D_CHECKPOINT_DIR, "checkpoint_final.json"), "{}");
  if (env.WRITE_RUN_INFO) {
    const fold = join(env.nnssl_results, "Dataset990_Demo", "BaseMAETrainer__nnsslPlans__onemmiso", "fold_all");
    mkdirSync(fold, { recursive: true });
    writeFileSync(join(fold, "run_info.json"), JSON.stringify({ checkpoint_dir: env.SSL3D_CHECKPOINT_DIR }));
  }
} else if (cmd === "report") {
  if (env.REPORT_FAIL) process.exit(1);
  process.stdout.write(join(args[0], "report.html") + "\n");
}
`;

interface Call {
  cmd: string;
  args: string[];
  env: Record<string, string>;
}

/** The parent environment without SSL3D_* (e.g. SSL3D_CACHE exported by scripts/test.sh), so only the contract shows. */
function parentEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SSL3D_")));
}

function setup(extraEnv: Record<string, string> = {}): {
  dir: string;
  callsFile: string;
  runner: (env?: Record<string, string>) => LocalRunner;
  calls: () => Call[];
  status: (n: string) => RunStatus;
} {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-runner-"));
  const script = join(dir, "standin.mjs");
  writeFileSync(script, STANDIN);
  const callsFile = join(dir, "calls.jsonl");
  writeFileSync(callsFile, "");
  const manifests = parseManifests(LAPTOP_MANIFESTS, "laptop.yaml");
  const sink = new PassThrough();
  sink.resume();
  return {
    dir,
    callsFile,
    runner: (env = extraEnv) =>
      new LocalRunner({
        manifests,
        stateDir: join(dir, "state"),
        quick: true,
        metricsPort: 0,
        volumes: { "ssl3d-results": join(dir, "results") },
        ssl3d: [process.execPath, script],
        env: { ...parentEnv(), CALLS: callsFile, ...env },
        print: () => undefined,
        childOutput: sink,
      }),
    calls: () =>
      readFileSync(callsFile, "utf8")
        .trim()
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Call),
    status: (n) => JSON.parse(readFileSync(join(dir, "state", "status", n), "utf8")) as RunStatus,
  };
}

test("runs demo, collection summary, preprocessing and training in order with the operator's environment contract", async () => {
  const s = setup();
  try {
    await s.runner().runAll();
    const calls = s.calls();
    assert.deepEqual(
      calls.map((c) => c.cmd),
      ["demo", "collection-summary", "plan-and-preprocess", "train"],
    );
    const raw = join(s.dir, "state", "volumes", "ssl3d-raw");
    assert.equal(calls[1]!.env.nnssl_raw, raw);
    assert.deepEqual(calls[1]!.args, ["-d", "990", "--json"]);
    assert.deepEqual(calls[2]!.args, ["-d", "990", "-c", "onemmiso", "-np", "2"]);
    assert.equal(calls[2]!.env.nnssl_preprocessed, join(s.dir, "state", "volumes", "ssl3d-preprocessed"));
    const train = calls[3]!;
    const uid = s.status("pretrainrun-demo.json").uid;
    assert.match(uid, /^[0-9a-f-]{36}$/);
    // --quick replaces the manifest's --epochs/--iters-per-epoch
    assert.deepEqual(train.args, [
      "990",
      "onemmiso",
      "-tr",
      "BaseMAETrainer",
      "--arch-preset",
      "resenc-xs",
      "--patch-size",
      "32",
      "--batch-size",
      "2",
      "--val-iters",
      "2",
      "--seed",
      "1",
      ...QUICK_TRAIN_ARGS,
    ]);
    assert.deepEqual(
      Object.fromEntries(
        Object.entries(train.env).filter(
          ([k]) => k.startsWith("PET_") || (k.startsWith("SSL3D_") && k !== "SSL3D_TERMINATION_LOG"),
        ),
      ),
      {
        PET_NNODES: "1",
        PET_NODE_RANK: "0",
        PET_NPROC_PER_NODE: "1",
        PET_MASTER_ADDR: "127.0.0.1",
        PET_MASTER_PORT: "29500",
        SSL3D_RUN: "demo",
        SSL3D_RUN_UID: uid,
        SSL3D_ATTEMPT: "1",
        SSL3D_CHECKPOINT_DIR: join(s.dir, "results", `demo-${uid}`, "checkpoints"),
        SSL3D_RESUME: "latest",
        SSL3D_RUN_SECRET_FILE: "",
        // local only: the child stops when the runner is gone (local/parent-watch.ts)
        SSL3D_PARENT_PID: String(process.pid),
      },
    );
    assert.equal(train.env.nnssl_results, join(s.dir, "results", `demo-${uid}`, "results"));
    assert.ok(existsSync(join(s.dir, "results", `demo-${uid}`, "checkpoints", "checkpoint_final.json")));
    assert.equal(s.status("pretrainrun-demo.json").phase, "Succeeded");
    assert.ok(existsSync(join(s.dir, "state", "logs", "pretrainrun-demo-a1.log")));

    // a re-run re-checks the collection, skips the up-to-date Plan and the finished run
    await s.runner().runAll();
    assert.deepEqual(
      s
        .calls()
        .slice(4)
        .map((c) => c.cmd),
      ["collection-summary"],
    );
  } finally {
    rmSync(s.dir, { recursive: true, force: true });
  }
});

test("a failed attempt is restarted as the next attempt, which resumes; maxRestarts bounds it", async () => {
  const s = setup({ FAIL_ATTEMPTS: "1,2" });
  try {
    await s.runner().runAll();
    const trains = s.calls().filter((c) => c.cmd === "train");
    assert.deepEqual(
      trains.map((c) => c.env.SSL3D_ATTEMPT),
      ["1", "2", "3"],
    );
    const st = s.status("pretrainrun-demo.json");
    assert.equal(st.phase, "Succeeded");
    assert.equal(st.restarts, 2);
  } finally {
    rmSync(s.dir, { recursive: true, force: true });
  }
  const t = setup({ FAIL_ATTEMPTS: "1,2,3,4" });
  try {
    await assert.rejects(t.runner().runAll(), (err: unknown) => {
      assert.ok(err instanceof StepFailedError);
      assert.match(err.message, /PretrainRun\/demo: 'ssl3d train 990 onemmiso .*' exited 1: rank 0 lost its GPU/);
      return true;
    });
    assert.equal(t.calls().filter((c) => c.cmd === "train").length, 3, "1 attempt + maxRestarts 2");
    assert.equal(t.status("pretrainrun-demo.json").phase, "Failed");
    // running `ssl3d run` again retries with the next attempt, which resumes from the latest checkpoint
    await t.runner({}).runAll();
    const trains = t.calls().filter((c) => c.cmd === "train");
    assert.deepEqual(
      trains.map((c) => c.env.SSL3D_ATTEMPT),
      ["1", "2", "3", "4"],
    );
    assert.equal(trains[3]!.env.SSL3D_RESUME, "latest");
    assert.equal(t.status("pretrainrun-demo.json").phase, "Succeeded");
  } finally {
    rmSync(t.dir, { recursive: true, force: true });
  }
});

test("a configuration or data error is not retried and keeps the child's exit code", async () => {
  const s = setup({ FAIL_ATTEMPTS: "1", FAIL_CODE: "3" });
  try {
    await assert.rejects(
      s.runner().runAll(),
      (err: unknown) => err instanceof StepFailedError && err.exitCode === 3 && err.file === "laptop.yaml",
    );
    assert.equal(s.calls().filter((c) => c.cmd === "train").length, 1);
  } finally {
    rmSync(s.dir, { recursive: true, force: true });
  }
});

test("SIGTERM reaches the trainer, the run is Interrupted, and the next invocation resumes with the next attempt", async () => {
  const s = setup({ HANG_ATTEMPTS: "1" });
  try {
    const r = s.runner();
    const done = r.runAll();
    // wait until the trainer runs, then stop the runner as Ctrl-C / a pod's SIGTERM would
    for (let i = 0; i < 200 && !existsSync(`${s.callsFile}.hang`); i++) await new Promise((res) => setTimeout(res, 50));
    r.interrupt("SIGTERM");
    await assert.rejects(done, /PretrainRun\/demo: interrupted by SIGTERM; run the same command again to resume/);
    assert.equal(s.status("pretrainrun-demo.json").phase, "Interrupted");
    const uid = s.status("pretrainrun-demo.json").uid;
    assert.ok(
      existsSync(join(s.dir, "results", `demo-${uid}`, "checkpoints", "checkpoint_latest.json")),
      "the trainer checkpointed on SIGTERM",
    );
    await s.runner({}).runAll();
    const trains = s.calls().filter((c) => c.cmd === "train");
    assert.deepEqual(
      trains.map((c) => [c.env.SSL3D_ATTEMPT, c.env.SSL3D_RESUME]),
      [
        ["1", "latest"],
        ["2", "latest"],
      ],
    );
    assert.equal(s.status("pretrainrun-demo.json").phase, "Succeeded");
  } finally {
    rmSync(s.dir, { recursive: true, force: true });
  }
});

test("without --quick the manifest's training options pass through unchanged", () => {
  const m = parseManifests(LAPTOP_MANIFESTS, "laptop.yaml");
  assert.deepEqual(trainArgs(m.runs[0]!, m.plans[0]!, "990", "onemmiso", false), [
    "train",
    "990",
    "onemmiso",
    "-tr",
    "BaseMAETrainer",
    "--epochs",
    "3",
    "--arch-preset",
    "resenc-xs",
    "--patch-size",
    "32",
    "--batch-size",
    "2",
    "--iters-per-epoch",
    "25",
    "--val-iters",
    "2",
    "--seed",
    "1",
  ]);
});

test("spec.training.modalities becomes --modalities (as the operator's default command)", () => {
  const yaml = LAPTOP_MANIFESTS.replace(/(\n\s+trainer: BaseMAETrainer\n)/, "$1    modalities: [T1w, FLAIR]\n");
  assert.notEqual(yaml, LAPTOP_MANIFESTS);
  const m = parseManifests(yaml, "laptop.yaml");
  const args = trainArgs(m.runs[0]!, m.plans[0]!, "990", "onemmiso", false);
  assert.deepEqual(args.slice(args.indexOf("--modalities"), args.indexOf("--modalities") + 2), [
    "--modalities",
    "T1w,FLAIR",
  ]);
  assert.throws(() => parseManifests(yaml.replace("[T1w, FLAIR]", '["T1w,FLAIR"]'), "laptop.yaml"), /modalities/);
});

test("a TTY mirror leaves out children's JSON summaries (the runner prints them as sentences) but keeps their logs", async () => {
  assert.equal(isSummaryLine('{"images":4,"valid":4}'), true);
  assert.equal(isSummaryLine('{"level":30,"msg":"x"}'), false);
  assert.equal(isSummaryLine("plain"), false);
  assert.equal(isSummaryLine("{not json"), false);
  const s = setup();
  const seen: string[] = [];
  const printed: string[] = [];
  const mirror = new PassThrough();
  mirror.on("data", (b: Buffer) => seen.push(b.toString()));
  try {
    const manifests = parseManifests(LAPTOP_MANIFESTS, "laptop.yaml");
    await new LocalRunner({
      manifests,
      stateDir: join(s.dir, "state"),
      quick: true,
      metricsPort: 0,
      volumes: {},
      ssl3d: [process.execPath, join(s.dir, "standin.mjs")],
      env: { ...process.env, CALLS: s.callsFile },
      print: (l) => printed.push(l),
      childOutput: mirror,
      prettyChildLogs: true,
    }).runAll();
    assert.doesNotMatch(seen.join(""), /contentHash/, "collection-summary's JSON line is not mirrored");
    assert.ok(
      printed.some((l) => /Collection\/demo: Ready: 4 image\(s\), 2 subject\(s\)/.test(l)),
      printed.join("\n"),
    );
    assert.ok(
      printed.some((l) => /Plan\/demo: Ready: 4\/4 image\(s\) preprocessed \(onemmiso\) in d$/.test(l)),
      printed.join("\n"),
    );
  } finally {
    rmSync(s.dir, { recursive: true, force: true });
  }
});

test("children's JSON log lines are shown as short readable lines; other lines pass through", () => {
  const line = JSON.stringify({
    level: 30,
    time: Date.UTC(2026, 0, 2, 3, 4, 5),
    pid: 1,
    hostname: "h",
    epoch: 1,
    trainLoss: 0.516848906,
    msg: "Epoch finished",
  });
  assert.equal(prettyLogLine(line), "  03:04:05 info Epoch finished epoch=1 trainLoss=0.51685");
  assert.equal(prettyLogLine("plain text"), "plain text");
  assert.equal(prettyLogLine('{"no":"msg"}'), '{"no":"msg"}');
});

test("after a Succeeded run the report of its results folder is written and its path printed; a failed report leaves the run Succeeded", async () => {
  for (const fail of [false, true]) {
    const s = setup();
    try {
      const lines: string[] = [];
      const sink = new PassThrough();
      sink.resume();
      const env = { ...parentEnv(), CALLS: s.callsFile, WRITE_RUN_INFO: "1", ...(fail ? { REPORT_FAIL: "1" } : {}) };
      const r = new LocalRunner({
        manifests: parseManifests(LAPTOP_MANIFESTS, "laptop.yaml"),
        stateDir: join(s.dir, "state"),
        quick: true,
        metricsPort: 0,
        volumes: { "ssl3d-results": join(s.dir, "results") },
        ssl3d: [process.execPath, join(s.dir, "standin.mjs")],
        env,
        print: (l) => lines.push(l),
        childOutput: sink,
      });
      await r.runAll();
      // per-run folders (issue 14): results and checkpoints live under <volume>/<name>-<uid>/
      const runDir = join(s.dir, "results", `demo-${s.status("pretrainrun-demo.json").uid}`);
      const base = join(runDir, "results", "Dataset990_Demo", "BaseMAETrainer__nnsslPlans__onemmiso");
      const report = s.calls().find((c) => c.cmd === "report");
      assert.deepEqual(report?.args, [base, "--checkpoints", join(runDir, "checkpoints")]);
      assert.equal(
        report.env.nnssl_preprocessed,
        join(s.dir, "state", "volumes", "ssl3d-preprocessed"),
        "the report child gets the training environment",
      );
      const said = lines.find((l) => l.includes("PretrainRun/demo: report") || l.includes("'ssl3d report"));
      assert.equal(
        said,
        fail
          ? `[3/3] PretrainRun/demo: 'ssl3d report ${base}' exited 1 (log: ${join(s.dir, "state", "logs", "pretrainrun-demo-a1.log")})`
          : `[3/3] PretrainRun/demo: report ${join(base, "report.html")}`,
      );
      assert.equal(s.status("pretrainrun-demo.json").phase, "Succeeded");
    } finally {
      rmSync(s.dir, { recursive: true, force: true });
    }
  }
});
