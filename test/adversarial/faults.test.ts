/**
 * Adversarial tier, "faults lose nothing and leave nothing behind" (docs/limits-and-safety.md, "Faults"):
 * - a run killed right after its last epoch's checkpoint_latest is completed by the resume (checkpoint_final with
 *   the same weights, progress.png, the epoch log with one line per epoch), deterministically and with a real kill -9;
 * - temporary files of killed checkpoint/plot writes are removed at the next start, nothing else;
 * - a full disk (a small tmpfs), a read-only disk and a busy metrics port are exit code 2 with one line naming the
 *   file or address, never "internal error", and a failed checkpoint write leaves no temporary file.
 * The tmpfs cases need root (mount); they are skipped, saying so, where mounting is not allowed.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createServer, type Server } from "node:net";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test, type TestContext } from "node:test";
import { decodeSafetensors } from "../../runtime/src/models/safetensors.js";
import { makeTestDataset, type TestDataset } from "../helpers/preprocess-dataset.js";
import { assertFails, BIN, NODE, ssl3d } from "./helpers/cli.js";

const work = mkdtempSync(join(tmpdir(), "ssl3d-adv-faults-"));
let ds: TestDataset;
const TRAIN = [
  "train",
  "1",
  "onemmiso",
  "-tr",
  "BaseMAETrainer",
  "--arch-preset",
  "resenc-xs",
  "--patch-size",
  "32",
  "--batch-size",
  "1",
  "--iters-per-epoch",
  "1",
  "--val-iters",
  "1",
  "--seed",
  "3",
  "--workers",
  "0",
];
const mounts: string[] = [];
let mountCount = 0;

before(async () => {
  ds = await makeTestDataset(join(work, "root"), { images: 2, shape: [32, 32, 32] });
  const r = await ssl3d(["plan-and-preprocess", "-d", "1", "-np", "1", "-npfp", "1"], ds.env);
  assert.equal(r.status, 0, r.stderr);
});

after(() => {
  for (const m of mounts) spawnSync("umount", ["-l", m]);
  rmSync(work, { recursive: true, force: true });
});

function foldDir(env: NodeJS.ProcessEnv): string {
  return join(env.nnssl_results!, ds.datasetName, "BaseMAETrainer__nnsslPlans__onemmiso", "fold_all");
}

function jsonlEpochs(fold: string): number[] {
  return readFileSync(join(fold, "training_log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as { epoch: number }).epoch);
}

function tensors(file: string): Map<string, Float32Array> {
  const { tensors: t } = decodeSafetensors(readFileSync(file), file);
  return new Map(
    [...t].filter(([k]) => !k.startsWith("optimizer_state.")).map(([k, v]) => [k, Float32Array.from(v.data)]),
  );
}

test("killed after the last epoch's checkpoint_latest: the resume writes checkpoint_final (same weights) and the plot; stale temps are removed", async () => {
  const env = { ...ds.env, nnssl_results: join(work, "results-a") };
  const r = await ssl3d([...TRAIN, "--epochs", "2"], env);
  assert.equal(r.status, 0, r.stderr);
  const fold = foldDir(env);
  const final = join(fold, "checkpoint_final.safetensors");
  const weights = tensors(final);
  // the state right after the last epoch's checkpoint_latest: log line and checkpoint written, nothing after
  renameSync(final, join(fold, "checkpoint_latest.safetensors"));
  rmSync(join(fold, "progress.png"));
  const stale = [
    ".checkpoint_latest.safetensors.tmp-4242-0badcafe",
    ".checkpoint_final.safetensors.tmp-4242-0badcafe",
    ".progress.png.tmp-4242-0badcafe",
  ];
  const keep = [".checkpoint_latest.safetensors.tmp-by-someone", "notes.txt", ".other.tmp-4242-0badcafe"];
  for (const n of [...stale, ...keep]) writeFileSync(join(fold, n), "x");

  const resumed = await ssl3d([...TRAIN, "--epochs", "2", "--resume"], env);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.ok(existsSync(final), "checkpoint_final written by the resume");
  assert.ok(!existsSync(join(fold, "checkpoint_latest.safetensors")), "checkpoint_latest removed after final");
  assert.ok(existsSync(join(fold, "progress.png")), "progress.png written by the resume");
  assert.deepEqual(jsonlEpochs(fold), [0, 1]);
  const after = tensors(final);
  assert.deepEqual([...after.keys()].sort(), [...weights.keys()].sort());
  for (const [k, v] of weights) assert.deepEqual(after.get(k), v, k);
  for (const n of stale) assert.ok(!existsSync(join(fold, n)), `${n} removed`);
  for (const n of keep) assert.ok(existsSync(join(fold, n)), `${n} kept`);
});

test("kill -9 as the last epoch's checkpoint is saved, then resume: final, plot and one log line per epoch, whatever the kill interrupted", async () => {
  const env = { ...ds.env, nnssl_results: join(work, "results-b"), SSL3D_LOG_LEVEL: "info" };
  const child = spawn(NODE, [BIN, "--log-format", "json", ...TRAIN, "--epochs", "2"], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let buf = "";
  child.stderr.on("data", (b: Buffer) => {
    buf += b.toString();
    for (const line of buf.split("\n"))
      if (line.includes('"msg":"Saved checkpoint"') && line.includes('"epoch":2')) child.kill("SIGKILL");
  });
  const code = await new Promise<number | null>((res) =>
    child.on("close", (c) => {
      res(c);
    }),
  );
  assert.ok(buf.includes('"epoch":2'), "the run reached its last checkpoint");
  const fold = foldDir(env);
  const resumed = await ssl3d([...TRAIN, "--epochs", "2", "--resume"], env);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.ok(existsSync(join(fold, "checkpoint_final.safetensors")));
  assert.ok(!existsSync(join(fold, "checkpoint_latest.safetensors")));
  assert.ok(existsSync(join(fold, "progress.png")));
  assert.deepEqual(jsonlEpochs(fold), [0, 1], `killed run exited ${String(code)}`);
  assert.deepEqual(
    readdirSync(fold).filter((n) => n.includes(".tmp-")),
    [],
  );
});

/** Mount a tmpfs of `size` at a new folder (read-only with `ro`), or skip the test when mounting is not allowed. */
function tmpfs(t: TestContext, size: string, ro = false): string | undefined {
  const dir = join(work, `mnt-${mountCount++}`);
  mkdirSync(dir, { recursive: true });
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}${ro ? ",ro" : ""}`, "tmpfs", dir], {
    encoding: "utf8",
  });
  if (r.status !== 0) {
    t.skip(`cannot mount a tmpfs here (${(r.stderr || r.error?.message || "").trim()}); needs root`);
    return undefined;
  }
  mounts.push(dir);
  return dir;
}

function unmount(dir: string): void {
  spawnSync("umount", [dir]);
  mounts.splice(mounts.indexOf(dir), 1);
}

test("disk full while preprocessing: exit 2, one line naming the file and ENOSPC", async (t) => {
  const mnt = tmpfs(t, "48k");
  if (mnt === undefined) return;
  try {
    const r = await ssl3d(["plan-and-preprocess", "-d", "1", "-np", "1", "-npfp", "1"], {
      ...ds.env,
      nnssl_preprocessed: mnt,
    });
    assertFails(r, 2, [new RegExp(mnt), /no space left on the device \(ENOSPC\)/], { maxMs: 120_000, maxMiB: 1024 });
  } finally {
    unmount(mnt);
  }
});

test("disk full while writing a checkpoint: exit 2 naming the checkpoint, no temporary file left", async (t) => {
  const mnt = tmpfs(t, "256k");
  if (mnt === undefined) return;
  try {
    const env = { ...ds.env, nnssl_results: mnt };
    const r = await ssl3d([...TRAIN, "--epochs", "1"], env);
    t.diagnostic(
      assertFails(r, 2, [/checkpoint_latest\.safetensors: cannot write: no space left on the device \(ENOSPC\)/], {
        maxMs: 180_000,
        maxMiB: 2048,
      }),
    );
    const fold = foldDir(env);
    if (existsSync(fold))
      assert.deepEqual(
        readdirSync(fold).filter((n) => n.includes(".tmp-")),
        [],
      );
  } finally {
    unmount(mnt);
  }
});

test("read-only disk: preprocessing and training exit 2 with 'read-only' naming the folder", async (t) => {
  const mnt = tmpfs(t, "1m", true);
  if (mnt === undefined) return;
  try {
    const p = await ssl3d(["plan-and-preprocess", "-d", "1", "-np", "1"], { ...ds.env, nnssl_preprocessed: mnt });
    assertFails(p, 2, [new RegExp(mnt), /read-only \(EROFS\)/], { maxMs: 60_000, maxMiB: 1024 });
    const tr = await ssl3d([...TRAIN, "--epochs", "1"], { ...ds.env, nnssl_results: mnt });
    assertFails(tr, 2, [new RegExp(mnt), /read-only \(EROFS\)/], { maxMs: 120_000, maxMiB: 2048 });
  } finally {
    unmount(mnt);
  }
});

test("metrics port in use: exit 2, one line naming the address", async () => {
  const busy: Server = createServer();
  await new Promise<void>((res) => busy.listen(0, "127.0.0.1", res));
  const port = (busy.address() as { port: number }).port;
  try {
    const r = await ssl3d([...TRAIN, "--epochs", "1", "--metrics-port", String(port)], {
      ...ds.env,
      nnssl_results: join(work, "results-port"),
    });
    assertFails(r, 2, [new RegExp(`127\\.0\\.0\\.1:${port}`), /already in use/, /--metrics-port/], {
      maxMs: 120_000,
      maxMiB: 2048,
    });
  } finally {
    busy.close();
  }
});
