/**
 * Adversarial tier, "manifests and options" (docs/limits-and-safety.md, "Counts and ranges"): every numeric option of
 * every command has a bound in runtime/src/config/limits.ts and an absurd value fails up front, before anything is
 * read, started or written, with one line naming the option and, for counts that cost memory, what they would need.
 *
 * The CLI cases run the real `ssl3d` in child processes (exit code, one line, time, peak memory, sentinels outside
 * the roots and the roots themselves untouched); the coverage test walks the command definitions in-process, so a
 * numeric option added without a bound fails here.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Command } from "commander";
import { buildProgram } from "../../runtime/src/cli/main.js";
import { checkCount, COUNTS, LIMITS } from "../../runtime/src/config/limits.js";
import { ConfigError, exitCodeOf, oneLine } from "../../runtime/src/errors.js";
import { assertFails, assertSameTree, Sentinels, snapshotTree, ssl3d } from "./helpers/cli.js";

const BOUNDS = { maxMs: 90_000, maxMiB: 768 };
const work = mkdtempSync(join(tmpdir(), "ssl3d-adv-counts-"));
const roots = { nnssl_raw: join(work, "raw"), nnssl_preprocessed: join(work, "pre"), nnssl_results: join(work, "res") };
const sentinels = new Sentinels();

before(() => {
  for (const r of Object.values(roots)) mkdirSync(r, { recursive: true });
  sentinels.add(work, "x.json");
  sentinels.add(work, "x.zarr/");
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

function rootsEmpty(): void {
  for (const r of Object.values(roots)) assert.deepEqual(readdirSync(r), [], `${r} must stay empty`);
}

test("absurd thread and process counts fail up front in the CLI with the memory they would need (child processes)", async () => {
  const env = { ...process.env, ...roots };
  const train = ["train", "1", "onemmiso", "-tr", "BaseMAETrainer"];
  const cases: [string[], NodeJS.ProcessEnv, RegExp[]][] = [
    [
      [...train, "--workers", "100000"],
      env,
      [/--workers: 100000 data loader worker threads would need at least [\d.]+ GiB/, /SSL3D_MAX_THREADS/],
    ],
    [
      [...train, "-num_gpus", "100000"],
      env,
      [/--nproc-per-node: 100000 training processes would need at least [\d.]+ TiB/, /SSL3D_MAX_LOCAL_PROCESSES/],
    ],
    [train, { ...env, PET_NPROC_PER_NODE: "100000" }, [/PET_NPROC_PER_NODE: 100000 training processes/]],
    [
      ["plan-and-preprocess", "-d", "1", "-np", "100000"],
      env,
      [/--num-processes: 100000 preprocessing worker threads would need/],
    ],
    [
      ["fingerprint", "-d", "1"],
      { ...env, nnUNet_def_n_proc: "100000" },
      [/nnUNet_def_n_proc: 100000 preprocessing worker threads/],
    ],
    // within the count limit but beyond the memory: the memory is the reason given
    [
      ["preprocess", "-d", "1", "-np", "20"],
      { ...env, SSL3D_MAX_THREADS: "1000", SSL3D_MEMORY_LIMIT_BYTES: "100000000" },
      [
        /--num-processes: 20 preprocessing worker threads would need at least 160\.0 MiB/,
        /SSL3D_MEMORY_LIMIT_BYTES is 95\.4 MiB/,
      ],
    ],
  ];
  const results = await Promise.all(cases.map(([args, e]) => ssl3d(args, e)));
  results.forEach((r, i) => {
    assertFails(r, 2, cases[i]![2], BOUNDS);
  });
  rootsEmpty();
  sentinels.check();
});

/** Numeric options: a value of this form. */
const NUMERIC = /<(n|p|port|id|ids|n\.\.\.|ids\.\.\.|n\|x,y,z)>/;

/** For every numeric option (command → flag): an absurd value and what the one line must say. */
const ABSURD: Record<string, Record<string, [string[], RegExp]>> = {
  train: {
    "--epochs": [["--epochs", "2000000"], /--epochs: 2000000 epochs; at most 1000000 .*SSL3D_MAX_EPOCHS/],
    "--iters-per-epoch": [["--iters-per-epoch", "10000000"], /--iters-per-epoch: .*SSL3D_MAX_ITERS_PER_EPOCH/],
    "--val-iters": [["--val-iters", "10000000"], /--val-iters: .*SSL3D_MAX_ITERS_PER_EPOCH/],
    "--patch-size": [["--patch-size", "1,1,99999999999999999999"], /--patch-size: must be a positive integer or three/],
    "--batch-size": [
      ["--batch-size", "99999999999999999999"],
      /--batch-size: must be an integer from 1 to 9007199254740991/,
    ],
    "--seed": [["--seed", "4294967296"], /--seed: must be an integer from 0 to 4294967295/],
    "--metrics-port": [["--metrics-port", "70000"], /--metrics-port: must be an integer from 0 to 65535/],
    "--workers": [["--workers", "100000"], /--workers: 100000 data loader worker threads would need at least/],
    "--nproc-per-node": [
      ["--nproc-per-node", "100000"],
      /--nproc-per-node: 100000 training processes would need at least/,
    ],
  },
  fingerprint: {
    "--dataset": [["-d", "99999999999999999999"], /dataset: dataset "99999999999999999999" is neither an integer ID/],
    "--num-processes": [["--num-processes", "100000"], /--num-processes: 100000 preprocessing worker threads/],
  },
  "collection-summary": {
    "--dataset": [["-d", "99999999999999999999"], /dataset: dataset "99999999999999999999" is neither/],
  },
  plan: { "--dataset": [["-d", "1e3"], /dataset: dataset "1e3" is neither an integer ID/] },
  convert: {
    "--dataset": [["-d", "99999999999999999999"], /--dataset: must be an integer dataset ID/],
    "--jobs": [["--jobs", "100000"], /--jobs: 100000 files verified at once; at most \d+ .*SSL3D_MAX_THREADS/],
  },
  "convert-openmind": {
    "--dataset": [["-d", "99999999999999999999"], /--dataset: must be an integer dataset ID/],
    "--jobs": [["--jobs", "0"], /--jobs: expects an integer >= 1/],
  },
  "plan-and-preprocess": {
    "--dataset": [["-d", "99999999999999999999"], /dataset: dataset "99999999999999999999" is neither/],
    "--num-processes": [["--num-processes", "2", "100000"], /--num-processes: 100000 preprocessing worker threads/],
    "--num-processes-fingerprint": [
      ["--num-processes-fingerprint", "100000"],
      /--num-processes-fingerprint: 100000 fingerprint worker threads/,
    ],
  },
  preprocess: {
    "--dataset": [["-d", "99999999999999999999"], /dataset: dataset "99999999999999999999" is neither/],
    "--num-processes": [["--num-processes", "100000"], /--num-processes: 100000 preprocessing worker threads/],
    "--part": [["--part", "99999999999999999999"], /--part: expects a non-negative integer/],
    "--total-parts": [["--total-parts", "1e9"], /--total-parts: expects a non-negative integer/],
  },
  run: { "--metrics-port": [["--metrics-port", "70000"], /--metrics-port.*expected a port number/] },
};

/** The arguments before the options of a command (its required arguments and options). */
const PREFIX: Record<string, string[]> = {
  train: ["train", "1", "onemmiso", "-tr", "BaseMAETrainer"],
  fingerprint: ["fingerprint", "-d", "1"],
  plan: ["plan"],
  "collection-summary": ["collection-summary"],
  convert: ["convert", "folder", "/nonexistent", "-d", "1", "-n", "X"],
  "convert-openmind": ["convert-openmind", "--openmind-root-dir", "/nonexistent"],
  "plan-and-preprocess": ["plan-and-preprocess", "-d", "1"],
  preprocess: ["preprocess", "-d", "1"],
  run: ["run"],
};

test("every numeric option of every command has a bound (config/limits.ts) and an absurd value is a ConfigError naming it", async () => {
  const program = buildProgram();
  const saved = { ...process.env };
  Object.assign(process.env, roots);
  try {
    for (const cmd of program.commands as Command[]) {
      for (const opt of cmd.options) {
        if (!NUMERIC.test(opt.flags)) continue;
        const c = ABSURD[cmd.name()]?.[opt.long!];
        assert.ok(
          c !== undefined,
          `${cmd.name()} ${opt.long!}: numeric option without a bound and an adversarial case`,
        );
        // the case's own -d replaces the prefix's (a variadic -d would otherwise resolve the valid one first)
        const prefix = PREFIX[cmd.name()]!.filter(
          (a, i, all) => opt.long !== "--dataset" || (a !== "-d" && all[i - 1] !== "-d"),
        );
        const err = await buildProgram()
          .parseAsync([...prefix, ...c[0]], { from: "user" })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        assert.ok(err instanceof ConfigError, `${cmd.name()} ${opt.long!}: expected a ConfigError, got ${String(err)}`);
        assert.equal(exitCodeOf(err), 2);
        assert.match(oneLine(err), c[1], `${cmd.name()} ${opt.long!}`);
      }
    }
  } finally {
    for (const k of Object.keys(roots)) Reflect.deleteProperty(process.env, k);
    Object.assign(process.env, saved);
  }
  rootsEmpty();
});

test("count limits: overrides raise them, the memory check still holds, and in-range values pass", () => {
  assert.equal(checkCount(COUNTS.workers, "4", {}), 4);
  assert.equal(checkCount(COUNTS.workers, "0", {}), 0);
  assert.equal(checkCount(COUNTS.epochs, "1000", {}), 1000);
  assert.equal(checkCount(COUNTS.workers, "500", { [LIMITS.threads.env]: "500" }), 500);
  assert.throws(
    () => checkCount(COUNTS.workers, "500", { [LIMITS.threads.env]: "500", SSL3D_MEMORY_LIMIT_BYTES: String(2 ** 30) }),
    /500 data loader worker threads would need at least 3\.91 GiB .*SSL3D_MEMORY_LIMIT_BYTES is 1\.00 GiB/,
  );
  // one training process is the one already running: no memory check for it, even under a tiny limit
  assert.equal(checkCount(COUNTS.nprocPerNode, "1", { SSL3D_MEMORY_LIMIT_BYTES: "1000" }), 1);
  assert.throws(
    () => checkCount(COUNTS.nprocPerNode, "2", { SSL3D_MEMORY_LIMIT_BYTES: "1000" }),
    /2 training processes would need at least 128\.0 MiB/,
  );
  assert.throws(
    () => checkCount(COUNTS.nprocPerNode, "0", {}),
    (e: unknown) => e instanceof ConfigError && e.field === "--nproc-per-node",
  );
  assert.throws(() => checkCount(COUNTS.workers, "-1", {}), /expects a non-negative integer/);
  assert.throws(
    () => checkCount(COUNTS.workers, "4", { [LIMITS.threads.env]: "x" }),
    (e: unknown) => e instanceof ConfigError && e.field === LIMITS.threads.env,
  );
});

test("the tree snapshot the adversarial cases compare notices a file touched, rewritten with the same size, added or removed", () => {
  const dir = join(work, "snap");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "a.json"), "abc");
  const old = new Date(Date.now() - 60_000);
  utimesSync(join(dir, "a.json"), old, old);
  const before = snapshotTree(dir);
  assertSameTree(before, snapshotTree(dir));
  utimesSync(join(dir, "a.json"), new Date(), new Date());
  assert.throws(() => {
    assertSameTree(before, snapshotTree(dir));
  }, /changed a\.json/);
  writeFileSync(join(dir, "a.json"), "xyz");
  utimesSync(join(dir, "a.json"), old, old);
  assert.throws(() => {
    assertSameTree(before, snapshotTree(dir));
  }, /changed a\.json: .*sha256/);
  writeFileSync(join(dir, "a.json"), "abc");
  utimesSync(join(dir, "a.json"), old, old);
  writeFileSync(join(dir, "b"), "");
  assert.throws(() => {
    assertSameTree(before, snapshotTree(dir));
  }, /added b/);
  rmSync(join(dir, "a.json"));
  assert.throws(() => {
    assertSameTree(before, snapshotTree(dir));
  }, /removed a\.json/);
});
