import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { pythonBin } from "../../../test/helpers/python.js";
import { TrainingError } from "../errors.js";
import { AdamW, NonFiniteGuard, SgdNesterov, clipByGlobalNorm, type Optimizer, type OptimizerState } from "./optim.js";

await tf.setBackend("cpu");

/** Debian's python3-torch via the project venv (system site packages), or the system python if the venv is absent. */
function torchPython(): string {
  return existsSync(pythonBin()) ? pythonBin() : "/usr/bin/python3";
}

const P0 = [0.5, -1.25, 2.0, 0.75];
const GRADS = [
  [0.1, -0.2, 0.3, -0.4],
  [-0.5, 0.25, 0.05, 1.5],
  [0.7, 0.7, -0.9, 0.2],
  [0.0, -1.0, 0.4, 0.3],
];

function torchReference(opt: string): number[][] {
  const code = `
import json, sys, torch
torch.set_num_threads(1)
p = torch.nn.Parameter(torch.tensor(${JSON.stringify(P0)}, dtype=torch.float64))
o = ${opt}
grads = ${JSON.stringify(GRADS)}
out = []
for i, g in enumerate(grads):
    if i == 2:
        for grp in o.param_groups: grp["lr"] = grp["lr"] * 0.5
    p.grad = torch.tensor(g, dtype=torch.float64)
    o.step()
    out.append(p.detach().tolist())
print(json.dumps(out))
`;
  const r = spawnSync(torchPython(), ["-c", code], { encoding: "utf8", env: { ...process.env, OMP_NUM_THREADS: "1" } });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as number[][];
}

function runOurs(o: Optimizer): number[][] {
  const p = tf.variable(tf.tensor1d(P0));
  const params = new Map([["w", p]]);
  const out: number[][] = [];
  GRADS.forEach((g, i) => {
    if (i === 2) o.lr *= 0.5;
    const gt = tf.tensor1d(g);
    o.step(params, new Map([["w", gt]]));
    gt.dispose();
    out.push(Array.from(p.dataSync()));
  });
  p.dispose();
  o.dispose();
  return out;
}

function assertClose(a: number[][], b: number[][], tol: number): void {
  a.forEach((row, i) => {
    row.forEach((v, j) => {
      assert.ok(Math.abs(v - b[i]![j]!) < tol, `step ${i} [${j}]: ours ${v} torch ${b[i]![j]}`);
    });
  });
}

test("SGD Nesterov matches torch.optim.SGD(momentum=0.99, nesterov, wd=3e-5), incl. an LR change mid-run", () => {
  const ref = torchReference("torch.optim.SGD([p], lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)");
  assertClose(runOurs(new SgdNesterov()), ref, 1e-6);
});

test("AdamW matches torch.optim.AdamW(betas=(0.9,0.98), wd=5e-2)", () => {
  const ref = torchReference("torch.optim.AdamW([p], lr=3e-4, betas=(0.9, 0.98), weight_decay=5e-2)");
  assertClose(runOurs(new AdamW()), ref, 1e-6);
});

test("optimizer state round-trips: export, import into a fresh optimizer, continue identically", async () => {
  const mk = () => tf.variable(tf.tensor1d(P0));
  const a = mk();
  const b = mk();
  const oa = new AdamW({ lr: 1e-2 });
  const g1 = tf.tensor1d(GRADS[0]!);
  const g2 = tf.tensor1d(GRADS[1]!);
  oa.step(new Map([["w", a]]), new Map([["w", g1]]));
  b.assign(a);
  const state = await oa.exportState();
  const ob = new AdamW({ lr: 5 });
  const viaJson = JSON.parse(
    JSON.stringify(state, (_k, v: unknown) => (v instanceof Float32Array ? Array.from(v) : v)),
    (k, v: unknown) => (k === "data" ? Float32Array.from(v as number[]) : v),
  ) as OptimizerState;
  ob.importState(viaJson, new Map([["w", b]]));
  assert.equal(ob.lr, 1e-2);
  assert.equal(ob.stepCount, 1);
  oa.step(new Map([["w", a]]), new Map([["w", g2]]));
  ob.step(new Map([["w", b]]), new Map([["w", g2]]));
  assert.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
  assert.throws(() => {
    new SgdNesterov().importState(state, new Map([["w", b]]));
  }, TrainingError);
  for (const t of [a, b, g1, g2]) t.dispose();
  oa.dispose();
  ob.dispose();
});

test("a step leaks no tensors (slots created once)", () => {
  const p = tf.variable(tf.randomNormal([3, 3]));
  const params = new Map([["w", p]]);
  const o = new SgdNesterov();
  const g = tf.onesLike(p);
  o.step(params, new Map([["w", g]]));
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) o.step(params, new Map([["w", g]]));
  assert.equal(tf.memory().numTensors, before);
  o.dispose();
  g.dispose();
  p.dispose();
});

test("clipByGlobalNorm scales by min(1, max/(norm+1e-6)) as torch's clip_grad_norm_", () => {
  const g = new Map<string, tf.Tensor>([
    ["a", tf.tensor1d([3, 0])],
    ["b", tf.tensor1d([0, 4])],
  ]);
  const c = clipByGlobalNorm(g, 1);
  assert.ok(Math.abs(c.norm - 5) < 1e-6);
  assert.ok(Math.abs(c.grads.get("a")!.dataSync()[0]! - 3 / (5 + 1e-6)) < 1e-6);
  const u = clipByGlobalNorm(g, 12);
  assert.deepEqual(Array.from(u.grads.get("b")!.dataSync()), [0, 4]);
  // a norm equal to the threshold is still scaled by 5/(5 + 1e-6) (torch clamps the coefficient at 1, it does not
  // compare the norm with the threshold)
  const e = clipByGlobalNorm(g, 5);
  const b = e.grads.get("b")!.dataSync()[1]!;
  assert.ok(b < 4 && Math.abs(b - 4 * (5 / (5 + 1e-6))) < 1e-6, String(b));
  for (const m of [g, c.grads, u.grads, e.grads]) for (const t of m.values()) t.dispose();
});

test("NonFiniteGuard skips non-finite steps, resets on a good one, fails after N in a row", () => {
  const guard = new NonFiniteGuard(3);
  assert.equal(guard.check(1, 1, { epoch: 0, step: 0 }), true);
  assert.equal(guard.check(Number.NaN, 1, { epoch: 0, step: 1 }), false);
  assert.equal(guard.check(1, Infinity, { epoch: 0, step: 2 }), false);
  assert.equal(guard.check(1, 1, { epoch: 0, step: 3 }), true);
  assert.equal(guard.total, 2);
  guard.check(Number.NaN, 1, { epoch: 0, step: 4 });
  guard.check(Number.NaN, 1, { epoch: 0, step: 5 });
  assert.throws(
    () => guard.check(Number.NaN, 1, { epoch: 0, step: 6 }),
    (e: unknown) => e instanceof TrainingError && /3 consecutive non-finite/.test(e.message),
  );
});
