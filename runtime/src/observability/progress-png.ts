/**
 * `progress.png` like upstream's (spec 4.1): top panel train (blue) and validation (red) loss per epoch, bottom
 * panel the learning rate (green). Drawn pixel by pixel with pngjs (no text: axis ranges go to the JSONL log).
 */
import { PNG } from "pngjs";
import { writeFileAtomic } from "../io/atomic.js";

type Rgb = readonly [number, number, number];

class Canvas {
  readonly png: PNG;
  constructor(readonly w: number, readonly h: number) {
    this.png = new PNG({ width: w, height: h });
    this.png.data.fill(255);
  }
  set(x: number, y: number, c: Rgb): void {
    if (x < 0 || y < 0 || x >= this.w || y >= this.h) return;
    const i = (Math.round(y) * this.w + Math.round(x)) * 4;
    this.png.data[i] = c[0];
    this.png.data[i + 1] = c[1];
    this.png.data[i + 2] = c[2];
    this.png.data[i + 3] = 255;
  }
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thick = 1): void {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    for (let i = 0; i <= n; i++) {
      const x = x0 + ((x1 - x0) * i) / n;
      const y = y0 + ((y1 - y0) * i) / n;
      for (let dx = 0; dx < thick; dx++) for (let dy = 0; dy < thick; dy++) this.set(x + dx, y + dy, c);
    }
  }
}

export const COLORS = { train: [31, 119, 180] as Rgb, val: [214, 39, 40] as Rgb, lr: [44, 160, 44] as Rgb, axis: [0, 0, 0] as Rgb };

function panel(cv: Canvas, top: number, height: number, series: { values: readonly (number | null)[]; color: Rgb }[]): void {
  const left = 40;
  const right = cv.w - 20;
  const bottom = top + height;
  cv.line(left, top, left, bottom, COLORS.axis);
  cv.line(left, bottom, right, bottom, COLORS.axis);
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  if (all.length === 0) return;
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (hi - lo < 1e-12) {
    hi += 0.5 * Math.abs(hi) + 1e-6;
    lo -= 0.5 * Math.abs(lo) + 1e-6;
  }
  const n = Math.max(...series.map((s) => s.values.length));
  const xOf = (i: number) => (n <= 1 ? left + (right - left) / 2 : left + ((right - left) * i) / (n - 1));
  const yOf = (v: number) => bottom - 5 - ((height - 10) * (v - lo)) / (hi - lo);
  for (const s of series) {
    let prev: [number, number] | undefined;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        prev = undefined;
        return;
      }
      const p: [number, number] = [xOf(i), yOf(v)];
      if (prev !== undefined) cv.line(prev[0], prev[1], p[0], p[1], s.color, 2);
      else cv.line(p[0] - 1, p[1], p[0] + 1, p[1], s.color, 2);
      prev = p;
    });
  }
}

export function renderProgressPng(trainLosses: readonly (number | null)[], valLosses: readonly (number | null)[], lrs: readonly number[], width = 800, height = 600): Buffer {
  const cv = new Canvas(width, height);
  const h1 = Math.round(height * 0.62);
  panel(cv, 10, h1 - 20, [{ values: trainLosses, color: COLORS.train }, { values: valLosses, color: COLORS.val }]);
  panel(cv, h1 + 10, height - h1 - 20, [{ values: lrs, color: COLORS.lr }]);
  return PNG.sync.write(cv.png);
}

export async function writeProgressPng(file: string, trainLosses: readonly (number | null)[], valLosses: readonly (number | null)[], lrs: readonly number[]): Promise<void> {
  await writeFileAtomic(file, renderProgressPng(trainLosses, valLosses, lrs));
}
