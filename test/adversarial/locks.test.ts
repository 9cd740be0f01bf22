/**
 * Adversarial tier, "one writer per output folder" (docs/limits-and-safety.md, "Locks"): a live holder stops a
 * second preprocessor or trainer on the same folder with exit code 2 and a line naming the folder and the holder;
 * a lock left by kill -9, by a process whose pid was reused, or by a host that stopped refreshing it is recovered;
 * preprocessing parts lock side by side but not with a whole-folder writer.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { EnvironmentError } from "../../runtime/src/errors.js";
import { LOCK_FILE, liveHolder, lockFolder, processStartTime } from "../../runtime/src/io/folder-lock.js";
import { lockDataset } from "../../runtime/src/config/layout.js";
import { makeTestDataset } from "../helpers/preprocess-dataset.js";
import { assertFails, NODE, ROOT, ssl3d } from "./helpers/cli.js";

const work = mkdtempSync(join(tmpdir(), "ssl3d-adv-locks-"));
const holders: ChildProcess[] = [];
after(() => {
  for (const h of holders) h.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

/** Start a process holding the lock of `dir`; resolves once it holds it. */
async function holdLock(dir: string, name?: string): Promise<ChildProcess> {
  const child = spawn(
    NODE,
    [
      "--import",
      "tsx",
      join(import.meta.dirname, "helpers", "hold-lock.ts"),
      dir,
      ...(name === undefined ? [] : [name]),
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
  );
  holders.push(child);
  await new Promise<void>((res, rej) => {
    child.stdout.on("data", (b: Buffer) => {
      if (b.toString().includes("locked")) res();
    });
    child.on("exit", (c) => {
      rej(new Error(`lock holder exited ${String(c)}`));
    });
  });
  return child;
}

async function kill9(child: ChildProcess): Promise<void> {
  const gone = new Promise((res) => child.once("exit", res));
  child.kill("SIGKILL");
  await gone;
}

test("a live holder excludes a second writer; kill -9 leaves a stale lock that the next writer recovers", async () => {
  const dir = join(work, "folder");
  const holder = await holdLock(dir);
  assert.throws(
    () => lockFolder(dir, { owner: "second" }),
    (e: unknown) =>
      e instanceof EnvironmentError &&
      e.message.includes(dir) &&
      e.message.includes(`pid ${String(holder.pid)}`) &&
      e.message.includes("test holder"),
  );
  await kill9(holder);
  assert.ok(existsSync(join(dir, LOCK_FILE)), "kill -9 leaves the lock file");
  const lock = lockFolder(dir, { owner: "second" });
  const info = JSON.parse(readFileSync(join(dir, LOCK_FILE), "utf8")) as { pid: number; owner: string };
  assert.deepEqual([info.pid, info.owner], [process.pid, "second"]);
  lock.release();
  assert.ok(!existsSync(join(dir, LOCK_FILE)), "release removes the lock");
});

test("stale locks: a reused pid (other start time), a dead pid, garbage; another host's lock is live until it stops being refreshed", () => {
  const dir = join(work, "stale");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, LOCK_FILE);
  const base = { host: hostname(), owner: "old", since: "then", token: "t" };
  // pid 1 runs, but not since this start time
  const start1 = processStartTime(1);
  const cases: unknown[] = [
    { ...base, pid: 1, start: (start1 ?? 0) + 12345 },
    { ...base, pid: 2 ** 22 + 7, start: null },
  ];
  for (const c of cases) {
    writeFileSync(file, JSON.stringify(c));
    assert.equal(liveHolder(file), undefined, JSON.stringify(c));
    lockFolder(dir, { owner: "new" }).release();
  }
  writeFileSync(file, "{not json");
  lockFolder(dir, { owner: "new" }).release();
  const remote = { ...base, host: "another-host.invalid", pid: 1, start: null };
  writeFileSync(file, JSON.stringify(remote));
  assert.throws(() => lockFolder(dir, { owner: "new" }), /in use by old \(pid 1 on host another-host\.invalid/);
  const old = new Date(Date.now() - 120_000);
  utimesSync(file, old, old);
  assert.throws(() => lockFolder(dir, { owner: "new", env: { SSL3D_LOCK_STALE_SECONDS: "600" } }), /in use/);
  lockFolder(dir, { owner: "new", env: { SSL3D_LOCK_STALE_SECONDS: "60" } }).release();
});

test("preprocessing parts lock side by side; a whole-folder writer excludes them and is excluded by them", async () => {
  const dir = join(work, "parts");
  const p0 = await holdLock(dir, ".ssl3d.part-0-of-2.lock");
  const p1 = lockDataset(dir, "ssl3d preprocess", { part: 1, total: 2 });
  assert.throws(() => lockDataset(dir, "ssl3d plan"), /in use by test holder/);
  p1.release();
  await kill9(p0);
  const whole = await holdLock(dir);
  assert.throws(() => lockDataset(dir, "ssl3d preprocess", { part: 1, total: 2 }), /in use by test holder/);
  await kill9(whole);
  lockDataset(dir, "ssl3d preprocess", { part: 1, total: 2 }).release();
});

test("the CLI: a second plan-and-preprocess or train on a locked folder exits 2 naming the folder and the holder", async () => {
  const ds = await makeTestDataset(join(work, "cli"), { images: 2, shape: [20, 20, 20] });
  const pp = join(ds.env.nnssl_preprocessed!, ds.datasetName);
  const holder = await holdLock(pp);
  const r = await ssl3d(["plan-and-preprocess", "-d", "1", "-np", "1"], ds.env);
  assertFails(
    r,
    2,
    [
      new RegExp(pp.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")),
      /in use by test holder/,
      new RegExp(`pid ${String(holder.pid)}`),
    ],
    { maxMs: 60_000, maxMiB: 1024 },
  );
  await kill9(holder);
  const ok = await ssl3d(["plan-and-preprocess", "-d", "1", "-np", "1"], ds.env);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(!existsSync(join(pp, LOCK_FILE)), "the stale lock was recovered and released");

  const results = join(ds.env.nnssl_results!, ds.datasetName, "BaseMAETrainer__nnsslPlans__onemmiso");
  const trainer = await holdLock(results);
  const t = await ssl3d(
    [
      "train",
      "1",
      "onemmiso",
      "-tr",
      "BaseMAETrainer",
      "--arch-preset",
      "resenc-xs",
      "--patch-size",
      "16",
      "--batch-size",
      "1",
      "--epochs",
      "1",
      "--iters-per-epoch",
      "1",
    ],
    ds.env,
  );
  assertFails(t, 2, [/BaseMAETrainer__nnsslPlans__onemmiso/, /in use by test holder/], {
    maxMs: 120_000,
    maxMiB: 2048,
  });
  await kill9(trainer);
});
