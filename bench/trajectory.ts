/**
 * `npm run bench:trajectory -- --method mae --arch resenc-xs|primus-xs --steps N [--backend B]` — training-dynamics
 * parity: ssl3d's training loop and nnssl's training step in PyTorch (test/helpers/torch-trajectory.py) train N steps
 * from the same initial weights on the same batches and masks (test/helpers/trajectory.ts). Prints per step both
 * losses and their relative difference, then the relative difference of the final weights, the fp32 noise of the
 * reference (the same PyTorch run with 1 instead of 2 threads), the tolerance derived from it (docs/parity.md,
 * "Training dynamics") and the line `largest relative loss difference: <value>`. Exit code 1 when it exceeds the
 * tolerance.
 *
 * Flags: --epochs E (schedule length, default 1000 as upstream), --iters-per-epoch I (default 1: the LR moves every
 * step), --warmup W (Eva warm-up epochs, default 50), --batch B (2), --patch N (32), --seed S (1), --threads T (torch,
 * 2), --no-noise (skip the second reference run; no tolerance then), --plot FILE.png, --json FILE, --dir DIR.
 */
import { writeFile } from "node:fs/promises";
import { COLORS, renderChartSvg, svgToPng } from "../runtime/src/observability/charts.js";
import {
  TRAJECTORY_METHODS,
  lossTolerance,
  runTrajectory,
  type TrajectoryArch,
  type TrajectoryMethod,
} from "../test/helpers/trajectory.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: string): string => {
  const i = argv.indexOf(n);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : d;
};
const num = (n: string, d: string): number => {
  const v = Number(opt(n, d));
  if (!Number.isFinite(v)) {
    console.error(`bench:trajectory: ${n} must be a number, got "${opt(n, d)}"`);
    process.exit(2);
  }
  return v;
};

const method = opt("--method", "mae") as TrajectoryMethod;
const arch = opt("--arch", "resenc-xs") as TrajectoryArch;
if (!(TRAJECTORY_METHODS as readonly string[]).includes(method) || !["resenc-xs", "primus-xs"].includes(arch)) {
  console.error(
    `bench:trajectory: --method must be one of ${TRAJECTORY_METHODS.join(", ")} and --arch resenc-xs or primus-xs (got ${method}, ${arch})`,
  );
  process.exit(2);
}
const patch = num("--patch", "32");
const plot = opt("--plot", "");
const jsonOut = opt("--json", "");
const dir = opt("--dir", "");

const fmt = (v: number | null): string => (v === null ? "-" : v.toExponential(3));

const r = await runTrajectory({
  method,
  arch,
  steps: num("--steps", "30"),
  backend: opt("--backend", "cpu"),
  epochs: num("--epochs", "1000"),
  itersPerEpoch: num("--iters-per-epoch", "1"),
  warmupEpochs: num("--warmup", "50"),
  batchSize: num("--batch", "2"),
  patchSize: [patch, patch, patch],
  seed: num("--seed", "1"),
  torchThreads: num("--threads", "2"),
  noiseThreads: argv.includes("--no-noise") ? null : 1,
  ...(dir === "" ? {} : { dir }),
});

console.log(
  `${r.trainer} on ${r.architecture}, ${r.steps.length} steps (${method}, --arch ${arch}); working files in ${r.dir}`,
);
console.log("step  epoch  lr          loss ssl3d    loss torch    rel diff    torch(1 thread) rel diff");
for (const s of r.steps) {
  console.log(
    `${String(s.step).padStart(4)}  ${String(s.epoch).padStart(5)}  ${s.lr.toExponential(3)}  ${s.ours.toFixed(7).padStart(12)}  ${s.torch.toFixed(7).padStart(12)}  ${fmt(s.rel)}   ${fmt(s.noise)}`,
  );
}
console.log(`final weights relative difference: ${fmt(r.finalWeightRel)}`);
const tol = r.largestNoise === null ? null : lossTolerance(r.largestNoise);
if (r.largestNoise !== null) {
  console.log(
    `torch 2 vs 1 threads: largest relative loss difference ${fmt(r.largestNoise)}, final weights ${fmt(r.finalWeightNoise)}`,
  );
  console.log(`tolerance (docs/parity.md): ${fmt(tol)}`);
}
if (plot !== "") {
  // top: ssl3d and PyTorch loss per step; bottom: the relative loss difference (log scale)
  const pts = (f: (s: (typeof r.steps)[number]) => number) => r.steps.map((s, i) => [i + 1, f(s)] as const);
  await writeFile(
    plot,
    svgToPng(
      renderChartSvg({
        title: `ssl3d vs PyTorch: ${method} on ${arch}, ${r.steps.length} steps`,
        xName: "step",
        width: 1000,
        panelHeight: 260,
        panels: [
          {
            yName: "loss",
            series: [
              { name: "ssl3d", color: COLORS.train, points: pts((s) => s.ours) },
              { name: "PyTorch", color: COLORS.val, points: pts((s) => s.torch) },
            ],
          },
          {
            yName: "relative loss difference",
            logY: true,
            series: [
              { name: "|ssl3d - PyTorch| / |PyTorch|", color: COLORS.lr, points: pts((s) => Math.max(s.rel, 1e-9)) },
            ],
          },
        ],
      }),
    ),
  );
}
if (jsonOut !== "") await writeFile(jsonOut, JSON.stringify({ ...r, tolerance: tol }, null, 1));
console.log(
  `largest relative loss difference: ${fmt(r.largestRel)}${tol === null ? "" : r.largestRel < tol ? ` (below the tolerance ${fmt(tol)})` : ` (EXCEEDS the tolerance ${fmt(tol)})`}`,
);
if (tol !== null && !(r.largestRel < tol)) process.exitCode = 1;
