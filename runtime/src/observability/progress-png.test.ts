import assert from "node:assert/strict";
import { test } from "node:test";
import { PNG } from "pngjs";
import { formatTick, renderChartSvg } from "./charts.js";
import { COLORS, PROGRESS_WIDTH, progressChart, renderProgressPng } from "./progress-png.js";

const N = 12;
const logging = {
  train_losses: Array.from({ length: N }, (_, i) => 1 / (i + 1) + 0.1),
  val_losses: Array.from({ length: N }, (_, i) => (i === 4 ? null : 1.2 / (i + 1) + 0.1)),
  lrs: Array.from({ length: N }, (_, i) => 0.01 * (1 - i / N) ** 0.9),
  epoch_start_timestamps: Array.from({ length: N }, (_, i) => 1000 + 30 * i),
  epoch_end_timestamps: Array.from({ length: N }, (_, i) => 1000 + 30 * i + 20 + (i % 3)),
};

function hexRgb(hex: string): number[] {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

test("progress chart: title, legend, axis names and tick labels are text in the SVG", () => {
  const svg = renderChartSvg(progressChart("Dataset990_Demo · BaseMAETrainer__nnsslPlans__onemmiso", logging));
  const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
  for (const t of [
    "Dataset990_Demo · BaseMAETrainer__nnsslPlans__onemmiso",
    "train loss",
    "validation loss",
    "epoch duration",
    "learning rate",
    "loss",
    "epoch duration (s)",
    "epoch",
  ]) {
    assert.ok(texts.includes(t), `missing text "${t}" (have: ${texts.slice(0, 40).join(" | ")})`);
  }
  // numeric tick labels on every axis: at least 3 x-ticks per panel and 3 y-ticks per panel
  const numeric = texts.filter((t) => /^-?[\d.]+(e-?\d+)?$/.test(t));
  assert.ok(numeric.length >= 18, `too few tick labels: ${numeric.join(" ")}`);
  assert.ok(texts.includes("0.01") || texts.includes("1e-2"), "learning-rate ticks missing");
});

test("progress.png: the three curves in their colours, and text (dark pixels) in the tick-label margin", () => {
  const png = PNG.sync.read(renderProgressPng("run", logging));
  assert.equal(png.width, PROGRESS_WIDTH);
  assert.ok(png.height > 700);
  const count = (hex: string, x0 = 0, x1 = png.width) => {
    const c = hexRgb(hex);
    let n = 0;
    for (let y = 0; y < png.height; y++)
      for (let x = x0; x < x1; x++) {
        const i = (y * png.width + x) * 4;
        if (png.data[i] === c[0] && png.data[i + 1] === c[1] && png.data[i + 2] === c[2]) n++;
      }
    return n;
  };
  for (const c of [COLORS.train, COLORS.val, COLORS.lr, COLORS.time])
    assert.ok(count(c) > 200, `curve ${c} missing (${count(c)} px)`);
  // tick labels left of the plot areas (x < 88): rendered glyphs, i.e. dark anti-aliased pixels
  let dark = 0;
  for (let y = 0; y < png.height; y++)
    for (let x = 0; x < 88; x++) {
      const i = (y * png.width + x) * 4;
      if (png.data[i]! < 120 && png.data[i + 1]! < 120 && png.data[i + 2]! < 120) dark++;
    }
  assert.ok(dark > 300, `no tick labels rendered (${dark} dark px): is the font loaded?`);
});

test("progress chart: no finished epoch yet still draws axes and says so", () => {
  const empty = { train_losses: [], val_losses: [], lrs: [], epoch_start_timestamps: [], epoch_end_timestamps: [] };
  const svg = renderChartSvg(progressChart("run", empty));
  assert.match(svg, /no epoch finished yet/);
  assert.ok(PNG.sync.read(renderProgressPng("run", empty)).width === PROGRESS_WIDTH);
});

test("formatTick: short labels", () => {
  assert.equal(formatTick(0), "0");
  assert.equal(formatTick(0.01), "0.01");
  assert.equal(formatTick(0.00012), "1.2e-4");
  assert.equal(formatTick(1234.5), "1234.5");
  assert.equal(formatTick(2e6), "2e6");
});
