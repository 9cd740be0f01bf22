import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { main } from "../main.js";

async function run(args: string[], env: Record<string, string>): Promise<{ code: number; err: string }> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  const write = process.stderr.write.bind(process.stderr);
  let err = "";
  process.stderr.write = (chunk: string | Uint8Array) => {
    err += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return true;
  };
  try {
    return { code: await main(args), err };
  } finally {
    process.stderr.write = write;
    for (const k of Object.keys(env)) Reflect.deleteProperty(process.env, k);
    Object.assign(process.env, saved);
  }
}

test("ssl3d train: configuration problems are one line naming the file/field, exit 2", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-traincli-"));
  try {
    const pre = join(dir, "pre");
    mkdirSync(join(pre, "Dataset001_X"), { recursive: true });
    const env = {
      nnssl_preprocessed: pre,
      nnssl_results: join(dir, "res"),
      nnssl_raw: join(dir, "raw"),
      SSL3D_LOG_LEVEL: "silent",
    };
    let r = await run(["train", "1", "onemmiso", "-tr", "BaseMAETrainer"], env);
    assert.equal(r.code, 2);
    assert.match(r.err, /nnsslPlans\.json: plans file not found/);
    writeFileSync(
      join(pre, "Dataset001_X", "nnsslPlans.json"),
      JSON.stringify({ configurations: { onemmiso: { patch_size: null } } }),
    );
    r = await run(["train", "1", "median", "-tr", "BaseMAETrainer"], env);
    assert.equal(r.code, 2);
    assert.match(r.err, /configurations\.median: configuration "median" not in the plan \(has: onemmiso\)/);
    r = await run(["train", "1", "onemmiso", "-tr", "NopeTrainer"], env);
    assert.equal(r.code, 2);
    assert.match(r.err, /trainer: unknown trainer "NopeTrainer"/);
    r = await run(["train", "1", "onemmiso", "-tr", "BaseMAETrainer", "--arch-preset", "primus-xs"], env);
    assert.equal(r.code, 2);
    assert.match(r.err, /architecture "primus-xs" is vit/);
    assert.equal(r.err.trim().split("\n").length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
