/** `ssl3d arch` and `ssl3d export` through the real CLI entry (in-process). */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { main } from "../main.js";
import { createNetwork } from "../../models/registry.js";
import { loadNetwork, saveNetwork } from "../../models/network-io.js";
import { readSafetensors } from "../../models/safetensors.js";
import { tmp } from "../../../../test/helpers/torch-parity.js";

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const orig = process.stdout.write.bind(process.stdout);
  let out = "";
  process.stdout.write = (s: string | Uint8Array) => {
    out += typeof s === "string" ? s : Buffer.from(s).toString();
    return true;
  };
  try {
    return { code: await fn(), out };
  } finally {
    process.stdout.write = orig;
  }
}

test("ssl3d arch NAME --params --json", async () => {
  const r = await capture(() => main(["arch", "resenc-l", "--params", "--json"]));
  assert.equal(r.code, 0);
  assert.deepEqual(JSON.parse(r.out), { name: "resenc-l", params: 102348965 });
  assert.equal((await capture(() => main(["arch", "primus-m", "--params"]))).out.trim(), "151786529");
  assert.equal((await capture(() => main(["arch", "no-such-net"]))).code, 2);
});

test("ssl3d export writes safetensors / pth + adaptation_plan.json", async () => {
  await tf.setBackend("cpu");
  const dir = tmp("ssl3d-export-");
  const net = createNetwork("resenc-xs", { features: [4, 8], patchSize: [8, 8, 8], seed: 1 });
  await saveNetwork(net, join(dir, "network.safetensors"));
  const origSeg = net.weights.get("decoder.seg_layers.0.weight")!.dataSync();
  net.dispose();
  const r = await capture(() =>
    main(["export", dir, "--format", "safetensors", "--out", join(dir, "out", "w.safetensors")]),
  );
  assert.equal(r.code, 0);
  const st = await readSafetensors(join(dir, "out", "w.safetensors"));
  assert.ok(st.tensors.has("decoder.encoder.stem.convs.0.all_modules.0.weight"));
  // the export imports back (aliases accepted) to the same weights
  const { net: back } = await loadNetwork(join(dir, "out", "w.safetensors"));
  assert.deepEqual(back.weights.get("decoder.seg_layers.0.weight")!.dataSync(), origSeg);
  back.dispose();
  const plan = JSON.parse(readFileSync(join(dir, "out", "adaptation_plan.json"), "utf8")) as Record<string, unknown>;
  assert.equal(plan.key_to_encoder, "encoder.stages");
  assert.deepEqual(plan.keys_to_in_proj, ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"]);
  assert.equal((await capture(() => main(["export", dir, "--format", "pth-compatible"]))).code, 0);
  assert.ok(existsSync(join(dir, "network.export.pth")));
  assert.equal((await capture(() => main(["export", join(dir, "missing"), "--format", "pth-compatible"]))).code, 2);
  assert.equal(
    (await capture(() => main(["export", join(dir, "out"), "--format", "pth-compatible"]))).code,
    2,
    "a directory without a checkpoint",
  );
  assert.equal((await capture(() => main(["export", dir, "--format", "onnx"]))).code, 2);
});
